"""The attacks the course knows by name: one entry each, read by ``evaluate``, ``training``, ``recipes`` and the
caches' keys (``evalcache``), so that adding an attack is one entry and every cache sees its code.

Each ``Attack`` says which function runs (``fn(model, x, y, eps, **kwargs) -> x_adv``), the module whose source
decides its results (hashed into the cache keys), how it draws randomness (``seed``: the keyword that seeds it,
``random_flag``: a keyword that switches its randomness off), what ``evaluate`` fixes when it resolves the name and
what training accepts and sets by default (``None``: not a training attack).
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Callable, NamedTuple

from . import attacks, autoattack

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import tensorflow as tf  # noqa: E402


class Attack(NamedTuple):
    """One named attack (see the module's docstring)."""
    name: str
    function: Callable
    module: str
    seed: str | None = None
    random_flag: str | None = None
    measured: bool = True            # a name of ``evaluate``'s (``accuracy_under_attack`` etc.)
    measure_kwargs: dict | None = None
    training: frozenset | None = None
    training_defaults: Callable | None = None   # eps (maybe a tf.Variable) -> default keyword arguments in training


def noise(model, x, y, eps, *, targeted: bool = False, norm: str = "inf", seed: int | None = None):
    """``attacks.random_noise`` as an attack: it ignores the model, the labels and a target (a baseline)."""
    return attacks.random_noise(x, eps, norm=norm, seed=seed)


def _fgsm_rs_defaults(eps) -> dict:
    """FGSM from a random start (Wong et al. 2020): one PGD step of 1.25·ε (read from ``eps`` when traced)."""
    return {"steps": 1, "random_start": True, "step_size": 1.25 * tf.cast(eps, tf.float32)}


_PGD_TRAINING = frozenset({"steps", "step_size", "norm", "random_start", "restarts"})

ATTACKS = (
    Attack("fgsm", attacks.fgsm, "attacks", training=frozenset()),
    Attack("fgsm_rs", attacks.pgd, "attacks", seed="seed", random_flag="random_start", measured=False,
           training=frozenset({"step_size"}), training_defaults=_fgsm_rs_defaults),
    Attack("pgd", attacks.pgd, "attacks", seed="seed", random_flag="random_start",
           measure_kwargs={"early_stop": True},  # accuracy only asks whether each image can be misclassified
           training=_PGD_TRAINING, training_defaults=lambda eps: {"steps": 7}),
    Attack("noise", noise, "attacks", seed="seed"),
    *(Attack(scale, attacks.gradient_attack, "attacks", measure_kwargs={"scale": scale})
      for scale in ("raw", "max", "l2", "sign")),
    Attack("apgd", autoattack.apgd, "autoattack", seed="seed"),
    Attack("square", autoattack.square, "autoattack", seed="seed"),
)
_BY_NAME = {a.name: a for a in ATTACKS}

#: Names ``evaluate`` accepts, and names training accepts, in the order above.
MEASURED = tuple(a.name for a in ATTACKS if a.measured)
TRAINING = tuple(a.name for a in ATTACKS if a.training is not None)


def get(name: str) -> Attack:
    """The entry called ``name`` (a KeyError names the known ones)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no attack called {name!r}; known: {sorted(_BY_NAME)}") from None


def find(fn) -> Attack | None:
    """The entry whose function is ``fn`` (the one named like it, e.g. ``pgd`` for ``attacks.pgd``), or ``None``."""
    same = [a for a in ATTACKS if a.function is fn]
    return next((a for a in same if a.name == getattr(fn, "__name__", None)), same[0] if same else None)


def modules(*, training: bool = False) -> tuple:
    """The modules the attacks (only the training attacks with ``training=True``) come from, in order."""
    chosen = [a.module for a in ATTACKS if not training or a.training is not None]
    return tuple(dict.fromkeys(chosen))


def measure_function(name: str) -> Callable:
    """``fn(model, x, y, eps, **kwargs)`` that ``evaluate`` runs for attack ``name``."""
    entry = get(name)
    return partial(entry.function, **entry.measure_kwargs) if entry.measure_kwargs else entry.function


def draws_randomness(entry: Attack, kwargs: dict) -> bool:
    """Does ``entry``'s attack called with ``kwargs`` draw fresh random numbers (its seed left ``None`` while its
    randomness is on)?  Attacks without a seed keyword draw none."""
    if entry.seed is None:
        return False
    params = inspect.signature(entry.function).parameters
    if kwargs.get(entry.seed, params[entry.seed].default) is not None:
        return False
    if entry.random_flag is None:
        return True
    return bool(kwargs.get(entry.random_flag, params[entry.random_flag].default))

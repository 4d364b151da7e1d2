"""Retrain a shipped model from the recipe stored beside it, and compare the two: the proof that the recipes still
produce what the course ships (``tests/test_reproduce.py`` runs it in CI; ``python -m helpers.course reproduce``).

Each shipped model's ``.json`` holds its full key: the recipe (``standard``, ``adv-<attack>-<mode>``, ``ibp``), every
training argument, the data's fingerprint and the code version.  ``recipe_call`` turns a key back into the
``helpers.recipes`` call that asks for it, the call a notebook makes, so a retrained model goes through exactly the
code that a student's ``RETRAIN = True`` runs, under the op-determinism setting the original trained with (recorded
beside it: with it on and off, the same recipe trains to different last bits).  ``compare`` scores both models on
the validation split (never the test images), clean and under PGD at the dataset's standard ε, and applies the
paired test to each.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Callable, NamedTuple

from .. import _store

#: The fields every key has; ``recipe_call`` reads the rest as the recipe's arguments.
_COMMON = ("dataset", "data", "arch", "seed", "recipe", "code")
#: Each recipe's arguments, as its key names them (``validation`` is ``adversarial_model``'s ``validation_size``).
_ARGUMENTS = {
    "standard": ("epochs", "batch_size"),
    "ibp": ("epochs", "eps", "eps_train", "batch_size", "ramp", "kappa_end", "learning_rate"),
    "adv": ("epochs", "eps", "batch_size", "attack_kwargs", "learning_rate", "validation", "eps_warmup",
            "early_stopping", "validation_attack", "validation_attack_kwargs", "beta"),
}


class ReproduceError(ValueError):
    """A stored key that names no course recipe, or data that is not the data the model was trained on."""


class Comparison(NamedTuple):
    """A retrained model against the shipped one on the same validation images (``report.PairedDifference``s:
    retrained − shipped), and whether their weights are the same to the last bit."""
    clean: object
    pgd: object
    identical: bool

    @property
    def differs(self) -> bool:
        """A real difference, clean or under PGD: the paired 95 % interval excludes 0, or McNemar's p < 0.05."""
        return any(d.is_real or d.p_value < 0.05 for d in (self.clean, self.pgd))


def recipe_call(key: dict) -> tuple[Callable, dict]:
    """``(function, kwargs)``: the ``helpers.recipes`` call whose cache key is ``key`` (call it with the dataset)."""
    from .. import recipes

    recipe = key.get("recipe")
    family = "adv" if isinstance(recipe, str) and recipe.startswith("adv-") else recipe
    if family not in _ARGUMENTS or (family == "adv" and recipe.count("-") != 2):
        raise ReproduceError(f"recipe {recipe!r} is none of the course's: 'standard', 'ibp' or 'adv-<attack>-<mode>'")
    missing = [name for name in _COMMON if name not in key]
    unknown = sorted(set(key) - set(_COMMON) - set(_ARGUMENTS[family]))
    if missing or unknown:
        raise ReproduceError(f"the key of recipe {recipe!r} lacks {missing} or has fields no recipe takes: {unknown}")
    kwargs = {name: key[name] for name in _ARGUMENTS[family] if name in key}
    if isinstance(kwargs.get("learning_rate"), dict):   # a schedule, stored as Keras serialises it
        import keras

        kwargs["learning_rate"] = keras.optimizers.schedules.deserialize(kwargs["learning_rate"])
    if family == "adv":
        if key["arch"] != "cnn":
            raise ReproduceError(f"adversarial recipes train the course CNN, not arch {key['arch']!r}")
        _, attack, mode = recipe.split("-")
        kwargs.update(attack=attack, mode=mode, validation_size=kwargs.pop("validation", None))
        return recipes.adversarial_model, dict(kwargs, seed=key["seed"])
    function = recipes.standard_model if family == "standard" else recipes.ibp_model
    return function, dict(kwargs, arch=key["arch"], seed=key["seed"])


@functools.lru_cache(maxsize=2)
def _dataset(name: str):
    """Each dataset once per process: every shipped model of a run reads the same one."""
    from .. import data

    return data.load_dataset(name)


def dataset_of(key: dict):
    """The dataset a key was trained on, checked against the key's fingerprint of it."""
    ds = _dataset(key["dataset"])
    if ds.fingerprint() != key["data"]:
        raise ReproduceError(f"{key['dataset']} here (fingerprint {ds.fingerprint()}) is not the data this model was "
                             f"trained on ({key['data']})")
    return ds


def _shipped_meta(rel: str, folder=None) -> dict:
    path, why = _store.shipped(rel, folder)
    if path is None:
        raise ReproduceError(f"shipped {rel}: {why or 'not in the manifest'}")
    return json.loads(path.read_text(encoding="utf-8"))


def shipped_models(folder=None) -> list:
    """``[(stem, key)]``: each shipped model and the key stored beside it, sorted by stem."""
    files = _store.manifest(folder).get("files", {})
    return [(Path(rel).stem, _shipped_meta(rel, folder)["key"])
            for rel in sorted(f for f in files if f.startswith("models/") and f.endswith(".json"))]


def trained_deterministic(stem: str, folder=None) -> bool:
    """Whether TensorFlow's op determinism was on while the shipped model ``stem`` trained (its ``.json`` says)."""
    meta = _shipped_meta(f"models/{stem}.json", folder)
    if not isinstance(meta.get("op_determinism"), bool):
        raise ReproduceError(f"shipped model {stem} does not record whether op determinism was on while it trained "
                             f"('op_determinism' in its .json): regenerate with python -m helpers.course ship")
    return meta["op_determinism"]


def load_shipped(stem: str, folder=None):
    """``(model, history)`` of the shipped model ``stem`` (checksum verified)."""
    import keras

    path, why = _store.shipped(f"models/{stem}.keras", folder)
    if path is None:
        raise ReproduceError(f"shipped model {stem}: {why}")
    return keras.models.load_model(path, compile=False), _shipped_meta(f"models/{stem}.json", folder).get("history")


@contextlib.contextmanager
def op_determinism(on: bool):
    """TensorFlow's op determinism ``on`` (or off) inside the block, and as it was before after it."""
    import tensorflow as tf

    from .._private import disable_op_determinism, op_determinism_enabled

    def turn(state: bool):
        tf.config.experimental.enable_op_determinism() if state else disable_op_determinism()

    before = op_determinism_enabled()
    turn(on)
    try:
        yield
    finally:
        turn(before)


def retrain(key: dict, directory=None, *, deterministic: bool):
    """``(model, history)``: the recipe of ``key`` trained from scratch here, now, with TensorFlow's op determinism
    on or off (``deterministic``: as the original trained, ``trained_deterministic``; the setting is restored
    after), and cached in ``directory`` (default: the local model cache, where a series run with ``RETRAIN`` reads
    it)."""
    function, kwargs = recipe_call(key)
    ds = dataset_of(key)
    with op_determinism(deterministic):
        return function(ds, retrain=True, directory=directory, **kwargs)


def compare(fresh, shipped, ds, *, steps: int = 10) -> Comparison:
    """``fresh`` against ``shipped`` on ``ds``'s validation split, clean and under PGD-``steps`` (seed 0)."""
    import numpy as np

    from .. import attacks, data, evaluate, report

    def outcomes(model):
        clean = evaluate.predict(model, ds.x_val)[0] == ds.y_val
        adv = attacks.pgd(model, ds.x_val, ds.y_val, data.standard_eps(ds.name), steps=steps, seed=0)
        return clean, evaluate.predict(model, adv)[0] == ds.y_val

    (clean_a, pgd_a), (clean_b, pgd_b) = outcomes(fresh), outcomes(shipped)
    identical = all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), shipped.get_weights()))
    return Comparison(report.paired_difference(clean_a, clean_b), report.paired_difference(pgd_a, pgd_b), identical)


def same_history(a: dict, b: dict) -> bool:
    """Whether two training histories agree in every figure but the wall-clock ``time`` of each epoch."""
    return {k: v for k, v in (a or {}).items() if k != "time"} == {k: v for k, v in (b or {}).items() if k != "time"}


def reproduce(only: str | None = None, *, directory, log=print) -> list:
    """Retrain every shipped model whose stem contains ``only`` and compare it with the shipped one; return
    ``[(stem, Comparison)]``, each also said in one line."""
    chosen = [(stem, key) for stem, key in shipped_models() if only is None or only in stem]
    if not chosen:
        raise ReproduceError(f"no shipped model's name contains {only!r}: {[s for s, _ in shipped_models()]}")
    results = []
    for stem, key in chosen:
        fresh, _ = retrain(key, directory, deterministic=trained_deterministic(stem))
        result = compare(fresh, load_shipped(stem)[0], dataset_of(key))
        log(f"{stem}: retrained − shipped on {result.clean.n} validation images: clean {result.clean}; "
            f"PGD-10 {result.pgd}; weights {'identical' if result.identical else 'differ'}")
        results.append((stem, result))
    return results

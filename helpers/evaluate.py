"""Measuring models: accuracy, accuracy under attack over an ε grid, targeted success, perturbation sizes."""

from __future__ import annotations

import functools
import time
from functools import partial

import numpy as np

from . import attacks, autoattack, evalcache, registry
from ._checks import check_bool, check_choice, check_eps, check_images, check_labels, check_positive_int
from ._compiled import batched, compiled, input_specs
from ._store import function_hash

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import tensorflow as tf  # noqa: E402


def predict_logits(model, x) -> np.ndarray:
    """Logits for ``x`` (compiled forward pass, whole batches of ``attacks.EVAL_BATCH``), as float32."""
    check_images(x)
    fn = compiled(model, "logits", (), _logits, [input_specs(model)[0]])
    out = batched(fn, (np.asarray(x, np.float32),))
    return np.zeros((0, model.output_shape[-1]), np.float32) if out is None else out


def _logits(model, x):
    return tf.cast(model(x, training=False), tf.float32)


def predict(model, x):
    """``(predicted class, confidence)`` per example; confidence is the softmax probability of that class."""
    probs = tf.nn.softmax(predict_logits(model, x)).numpy()
    pred = probs.argmax(axis=1).astype(np.int64)
    return pred, probs[np.arange(len(pred)), pred]


def accuracy(model, x, y) -> float:
    """Fraction of ``x`` classified as ``y``."""
    check_images(x)
    check_labels(y, len(x))
    if len(x) == 0:
        raise ValueError("accuracy needs at least one example, got an empty batch")
    return float(np.mean(predict(model, x)[0] == np.asarray(y)))


def resolve_attack(attack):
    """Turn an attack name (one of ``registry.MEASURED``) or callable into ``fn(model, x, y, eps, **kwargs)``.

    ``"pgd"`` stops each image at its first success (accuracy only asks whether each image *can* be
    misclassified); ``"noise"`` ignores the model, the labels and a target (a baseline for targeted success rates
    too); ``"raw"``, ``"max"``, ``"l2"``, ``"sign"`` are the one-step rules of ``attacks.gradient_attack``."""
    if callable(attack):
        return attack
    check_choice("attack", attack, registry.MEASURED)
    return registry.measure_function(attack)


def _deterministic(attack, kwargs) -> bool:
    """Is ``attack`` a named attack that, with these arguments, gives the same images every time?"""
    if callable(attack):
        return False  # a callable's identity is not checked here: ``remembered`` does that
    return not registry.draws_randomness(registry.get(attack), kwargs)


def still_right(model, x, y, attack, eps, **attack_kwargs) -> np.ndarray:
    """Per image: is ``model`` still right after ``attack`` (name or callable, as in ``accuracy_under_attack``)?

    The boolean vector that paired comparisons (``report.paired_difference``) need; its mean is the accuracy under
    attack.  A named attack that is deterministic (no randomness, or a fixed ``seed``) is remembered with the model
    (``helpers.evalcache``): asking again, here or in another notebook, costs nothing.  ``"pgd"`` stops each image
    at its first success (``early_stop=True``): an image counts as broken if any step fooled the model.
    """
    fn = resolve_attack(attack)
    eps = check_eps(eps)
    y = np.asarray(y, np.int64)
    check_images(x)
    check_labels(y, len(x))
    x = np.asarray(x, np.float32)

    def compute():
        return {"right": predict(model, fn(model, x, y, eps, **attack_kwargs))[0] == y}

    return _remember("still-right", model, (x, y), attack, eps, attack_kwargs, compute)["right"]


def remembered(attack, *, deterministic: bool = False):
    """``attack`` (a function ``attack(model, x, y, eps, **kwargs)`` returning images, e.g. ``attacks.pgd``) whose
    results are remembered with the model when they are deterministic.

    ``pgd = evaluate.remembered(attacks.pgd)`` behaves exactly like ``attacks.pgd`` (tuples, as
    ``autoattack.square`` returns with ``return_queries=True``, come back as tuples); asking again for the same
    model, images, arguments and code (in this notebook, a later one or a rerun) reads the stored adversarial
    images instead of attacking again (``helpers.evalcache``).  What is remembered, and under what:

    - the key holds the attack's code (``_store.function_hash``): for a ``helpers`` function, the source of its
      module; for any other function (say, one written in a notebook cell), its code, its defaults and what it
      closes over, so an edited cell runs again, also after a kernel restart.  A function whose code cannot be
      hashed reliably (a callable object, or one that closes over a model, a list, ...) is never remembered;
    - randomness: an attack of ``helpers.registry`` is remembered unless it draws fresh random numbers (its
      ``seed`` left ``None`` while its randomness is on, e.g. ``attacks.pgd`` with a random start).  Any other
      function is remembered only when the call passes an explicit integer ``seed=`` or it is declared
      ``deterministic=True`` (it draws no random numbers at all): a function that draws random numbers without
      a seed parameter would otherwise be frozen at its first draw.
    """
    if not callable(attack):
        raise TypeError(f"remembered() needs an attack function, got {type(attack).__name__}")
    deterministic = check_bool("deterministic", deterministic)

    @functools.wraps(attack)
    def run(model, x, y, eps, **kwargs):
        code = function_hash(attack)  # at every call: a function it calls may have been redefined since
        if code is None or not (deterministic or _repeatable(attack, kwargs)):
            return attack(model, x, y, eps, **kwargs)
        check_images(x)
        x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
        name = f"{getattr(attack, '__module__', '')}.{getattr(attack, '__qualname__', type(attack).__name__)}"
        params = {"attack": name, "code": code, "eps": check_eps(eps), **kwargs}

        def compute():
            out = attack(model, x, y, eps, **kwargs)
            parts = out if isinstance(out, tuple) else (out,)
            return {f"out{i}": np.asarray(part) for i, part in enumerate(parts)}

        found = evalcache.remember("adversarial", model, (x, y), params, compute, compress=True)
        return found["out0"] if len(found) == 1 else tuple(found[f"out{i}"] for i in range(len(found)))

    return run


def _repeatable(attack, kwargs) -> bool:
    """Does ``attack(..., **kwargs)`` give the same result every time: a registry attack that draws no fresh random
    numbers with these arguments, or any other function called with an explicit integer ``seed``?"""
    while isinstance(attack, functools.partial):
        kwargs = {**attack.keywords, **kwargs}
        attack = attack.func
    entry = registry.find(attack)
    if entry is not None:
        return not registry.draws_randomness(entry, kwargs)
    seed = kwargs.get("seed")
    return isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)


def accuracy_under_attack(model, x, y, attack, eps_values, **attack_kwargs) -> dict:
    """``{eps: accuracy}`` of ``model`` on ``attack(model, x, y, eps, **attack_kwargs)`` for each ε.

    ``attack``: a name from ``registry.MEASURED`` (``"raw"``, ``"max"``, ``"l2"``, ``"sign"`` are the one-step rules of
    ``gradient_attack``) or a callable with the signature of ``attacks.fgsm``.  ε = 0 gives the clean accuracy.
    Deterministic named attacks are remembered with the model (see ``still_right``).
    """
    resolve_attack(attack)
    eps_list = [check_eps(e) for e in np.atleast_1d(eps_values)]
    if not eps_list:
        raise ValueError("eps_values must hold at least one value")
    if len(x) == 0:
        raise ValueError("accuracy needs at least one example, got an empty batch")
    return {e: float(np.mean(still_right(model, x, y, attack, e, **attack_kwargs))) for e in eps_list}


def targeted_success_rate(model, x, y, target, attack="pgd", eps=0.3, **attack_kwargs) -> float:
    """Fraction of examples *not already of class* ``target`` that the targeted attack turns into ``target``.

    ``y`` holds the true labels; ``target`` is one class index or a vector of per-example targets.  Deterministic
    named attacks are remembered with the model (see ``still_right``).
    """
    check_images(x)
    check_labels(y, len(x))
    y = np.asarray(y, np.int64)
    targets = np.broadcast_to(np.asarray(target, np.int64), y.shape).copy()
    keep = targets != y
    if not keep.any():
        raise ValueError("every example already belongs to its target class; nothing to attack")
    fn = resolve_attack(attack)
    eps = check_eps(eps)
    x_keep, t_keep = np.asarray(x, np.float32)[keep], targets[keep]

    def compute():
        x_adv = fn(model, x_keep, t_keep, eps, targeted=True, **attack_kwargs)
        return {"hit": predict(model, x_adv)[0] == t_keep}

    hit = _remember("targeted", model, (x_keep, t_keep), attack, eps, attack_kwargs, compute)["hit"]
    return float(np.mean(hit))


def success_matrix(model, x, y, attack="pgd", eps=0.3, *, num_classes=None, **attack_kwargs) -> np.ndarray:
    """``M[s, t]``: success rate of the targeted attack turning examples of true class ``s`` into class ``t``.

    The diagonal is NaN (nothing to do).  Costs one targeted attack of the whole batch per target class (remembered
    with the model for deterministic named attacks, see ``still_right``).
    """
    check_images(x)
    check_labels(y, len(x))
    y = np.asarray(y, np.int64)
    x = np.asarray(x, np.float32)
    k = int(num_classes or model.output_shape[-1])
    fn = resolve_attack(attack)
    eps = check_eps(eps)

    def compute():
        m = np.full((k, k), np.nan)
        for t in range(k):
            keep = y != t
            x_adv = fn(model, x[keep], np.full(keep.sum(), t, np.int64), eps, targeted=True, **attack_kwargs)
            hit = predict(model, x_adv)[0] == t
            for s in range(k):
                if s != t and np.any(y[keep] == s):
                    m[s, t] = hit[y[keep] == s].mean()
        return {"matrix": m}

    return _remember("success-matrix", model, (x, y), attack, eps, dict(attack_kwargs, k=k), compute)["matrix"]


def _remember(kind, model, arrays, attack, eps, attack_kwargs, compute) -> dict:
    """``compute()``, remembered with the model (``evalcache``) when ``attack`` is a deterministic named attack."""
    if not _deterministic(attack, attack_kwargs):
        return compute()
    return evalcache.remember(kind, model, arrays, {"attack": attack, "eps": eps, **attack_kwargs}, compute)


def perturbation_norms(x, x_adv) -> dict:
    """Per-example L∞ and L2 size of ``x_adv - x`` (after clipping, i.e. what the model really saw)."""
    x, x_adv = np.asarray(x, np.float32), np.asarray(x_adv, np.float32)
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv must have the same shape, got {x.shape} and {x_adv.shape}")
    d = (x_adv - x).reshape(len(x), -1)
    return {"linf": np.abs(d).max(axis=1) if d.size else np.zeros(len(x)), "l2": np.sqrt((d**2).sum(axis=1))}


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts ``C[true, predicted]``."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


# ---------------------------------------------------------------------------------- AutoAttack-grade evaluation

def strong_accuracy(model, x, y, eps, *, steps: int = 100, restarts: int = 1, queries: int = 1000, seed: int = 0,
                    norm: str = "inf") -> dict:
    """Robust accuracy under an ensemble of diverse attacks, in the spirit of AutoAttack (Croce & Hein 2020).

    Threat model: untargeted, ``||x' - x|| <= eps`` in ``norm`` (``"inf"`` or ``"l2"``), pixels in [0, 1].  Runs
    ``autoattack.apgd`` with the cross-entropy (``"apgd-ce"``) and with the scale-invariant DLR loss (``"apgd-dlr"``),
    ``steps`` steps and ``restarts`` restarts each, and the gradient-free ``autoattack.square`` with ``queries``
    queries (L∞ only: with ``norm="l2"`` its entry is ``None`` and it takes no part in ``"worst"``).
    Every attack runs on *all* images, so each per-attack figure is that attack's own accuracy (what it alone
    leaves), and ``"worst"`` counts an image as robust only if the model classifies it correctly and *no* attack
    fooled it: the per-image worst case, as AutoAttack reports (which runs the attacks in sequence on the
    survivors only; the result is the same).  ``worst <= each attack's figure <= clean accuracy``.  Attacking all
    images costs little more: each attack skips images the model already gets wrong and drops the ones it breaks,
    so the robust images, which both ways attack in full, dominate the time (measured on 1,000 MNIST test images,
    PGD-trained CNN, ε = 0.3, defaults: 35 s either way on 2 CPU cores; standard CNN: 3.3 s against 0.7 s).
    Returns ``{"apgd-ce", "apgd-dlr", "square", "worst"}`` (fractions of ``x``) and ``"seconds"`` (wall time of
    this call: near 0 when the result was remembered, see ``strong_robust``; set ``COURSE_EVAL_CACHE=0`` to time
    the attacks); ``strong_robust`` gives the same per image.
    """
    start = time.perf_counter()
    held = strong_robust(model, x, y, eps, steps=steps, restarts=restarts, queries=queries, seed=seed, norm=norm)
    result = {name: None if ok is None else float(np.mean(ok)) for name, ok in held.items()}
    result["seconds"] = time.perf_counter() - start
    return result


def strong_robust(model, x, y, eps, *, steps: int = 100, restarts: int = 1, queries: int = 1000, seed: int = 0,
                  norm: str = "inf") -> dict:
    """Per image, what ``strong_accuracy`` averages: ``{"apgd-ce", "apgd-dlr", "square", "worst"}`` -> boolean
    arrays, True where the model is still right after that attack (``"worst"``: right after every one of them);
    ``"square"`` is ``None`` for ``norm="l2"``.  Same arguments, checks and attacks as ``strong_accuracy``.
    With a fixed ``seed`` the result is remembered with the model (``helpers.evalcache``): a model evaluated in one
    notebook is not attacked again in the next."""
    check_choice("norm", norm, attacks.NORMS)
    check_images(x)
    check_labels(y, len(x))
    check_eps(eps)
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    check_positive_int(queries, "queries", minimum=0)
    if len(x) == 0:
        raise ValueError("the strong evaluation needs at least one example, got an empty batch")
    y = np.asarray(y, np.int64)
    params = dict(eps=float(eps), steps=steps, restarts=restarts, queries=queries, seed=seed, norm=norm)
    compute = partial(_strong_robust, model, x, y, **params)
    if seed is None:  # fresh randomness every call: nothing to remember
        return compute()
    return evalcache.remember("strong", model, (np.asarray(x, np.float32), y), params, compute)


def _strong_robust(model, x, y, *, eps, steps, restarts, queries, seed, norm) -> dict:
    robust = predict(model, x)[0] == y
    runs = {"apgd-ce": partial(autoattack.apgd, loss="ce", steps=steps, restarts=restarts, norm=norm, seed=seed),
            "apgd-dlr": partial(autoattack.apgd, loss="dlr", steps=steps, restarts=restarts, norm=norm, seed=seed),
            "square": partial(autoattack.square, queries=queries, seed=seed) if norm == "inf" else None}
    result = {}
    for name, run in runs.items():
        if run is None:
            result[name] = None
            continue
        result[name] = predict(model, run(model, x, y, eps))[0] == y
        robust &= result[name]
    result["worst"] = robust
    return result

"""Measuring models: accuracy, accuracy under attack over an ε grid, targeted success, perturbation sizes, the
AutoAttack-grade strong suite, and ``robustness_report``: the course's whole evaluation of any Keras classifier in
one call (and one command: ``python -m helpers.evaluate MODEL.keras --data DATA.npz --eps 0.3 --out report.html``)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from . import attacks, autoattack, certify, data, evalcache, plots, registry, report
from ._checks import check_bool, check_choice, check_eps, check_images, check_labels, check_positive_int
from ._compiled import batched, compiled, input_specs
from ._store import function_hash, write_atomic

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
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


# ------------------------------------------------------------------------- a robustness report for any Keras model

@dataclass(frozen=True)
class ReportSettings:
    """What ``robustness_report`` runs besides the strong suite (whose settings are ``strong_accuracy``'s defaults,
    so that its figures equal ``strong_accuracy``'s on the same images).

    ``pgd_steps``/``pgd_restarts``: the PGD row (L∞ or L2, random start, step 2.5·ε/steps, each image stopped at
    its first success).  PGD-40 with one start by default: the figure most papers quote, and restarts are left to
    the strong suite (APGD-CE, APGD-DLR and Square find what restarts would, and more), which keeps the whole
    report within 1.5 × the strong suite's time (``benchmarks/bench_report.py``).  ``short_steps``: the PGD of the
    accuracy-vs-ε curve, drawn at ``curve`` × ε (and ε) on the first ``curve_n`` images, and which the "more steps
    never help" check compares PGD-``pgd_steps`` with on those images;
    ``large_eps``: the budget at which every image must fall (default: 1 in L∞, √pixels in L2, i.e. the attacker
    may paint any image); ``tolerance``: images of slack in the "never helps" comparisons (floating-point ties).
    """

    pgd_steps: int = 40
    pgd_restarts: int = 1
    short_steps: int = 10
    strong_steps: int = 100
    strong_restarts: int = 1
    queries: int = 1000
    curve: tuple = (0.25, 0.5, 0.75, 1.0, 1.5)
    curve_n: int = 200
    large_eps: float | None = None
    tolerance: int = 1


@dataclass
class RobustnessReport:
    """What ``robustness_report`` found: ``figures`` (``{row: {"accuracy", "low", "high", "n", ...}}``, the 95 %
    Wilson interval in ``low``/``high``), ``checks`` (the masking checklist: ``{"check", "verdict", "detail"}``
    with verdict ``"pass"``, ``"FAIL"`` or ``"not run"``), ``paired`` (PGD against the worst case, same images),
    ``curve`` (accuracy vs ε), ``notes`` (what was done to the model or data, what could not be run), ``timings``
    (seconds per stage) and ``info`` (model, data, ε, settings).  ``str()`` reads it, ``to_json()`` and
    ``to_html(path)`` (one self-contained page, figures embedded) save it."""

    info: dict
    figures: dict
    checks: list
    paired: dict
    curve: dict
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """True when a check of the masking checklist failed: the figures are not to be trusted as they are."""
        return any(c["verdict"] == "FAIL" for c in self.checks)

    @property
    def seconds(self) -> float:
        return float(sum(self.timings.values()))

    def accuracy(self, row: str) -> float | None:
        """The accuracy of row ``row`` (e.g. ``"clean"``, ``"worst case"``), ``None`` if it was not measured."""
        found = self.figures.get(row)
        return None if found is None else found["accuracy"]

    def to_dict(self) -> dict:
        return {"info": self.info, "figures": self.figures, "checks": self.checks, "paired": self.paired,
                "curve": self.curve, "notes": self.notes, "timings": self.timings, "seconds": self.seconds,
                "flagged": self.flagged}

    def __str__(self) -> str:
        return self.text()

    def text(self, *, timings: bool = True) -> str:
        """The report in words (``str(report)``); ``timings=False`` leaves out the times (stable output)."""
        return report.robustness_text(self.to_dict(), timings=timings)

    def to_json(self, path=None) -> str:
        """The report as JSON text; with ``path``, also written there (atomically: complete or absent)."""
        text = json.dumps(self.to_dict(), indent=1, default=_json_default)
        if path is not None:
            write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        return text

    def to_html(self, path) -> Path:
        """Write one self-contained HTML page (figures embedded as PNG) to ``path``, atomically; return the path."""
        page = plots.robustness_page(self.to_dict())
        return write_atomic(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))


def _json_default(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def _activation_name(layer) -> str:
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    fn = getattr(layer, "activation", None)
    return "" if fn is None else getattr(fn, "__name__", "")


def _logits_below_softmax(model):
    """``(model returning the logits under a final softmax, note)``; ``(model, None)`` when it ends in no softmax.

    A final ``Softmax``/``Activation("softmax")`` layer is cut off, a final layer with ``activation="softmax"`` is
    rebuilt with a linear activation and the same weights (a functional model over the same layers).  A model whose
    softmax cannot be found in its layers (a subclassed model) but whose outputs are probabilities is attacked
    through the log of its probabilities, and the note says why its figures may then be masked."""
    last = model.layers[-1] if getattr(model, "layers", None) else None
    if last is not None and _activation_name(last) == "softmax" and getattr(model, "inputs", None):
        if isinstance(last, (keras.layers.Softmax, keras.layers.Activation)):
            head = keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
        else:
            layer = type(last).from_config({**last.get_config(), "activation": "linear",
                                            "name": f"{last.name}_logits"})
            out = layer(last.input)
            layer.set_weights(last.get_weights())
            head = keras.Model(model.inputs, out, name=f"{model.name}_logits")
        return head, (f"the model ends in a softmax (layer {last.name!r}): its logits, the input of that softmax, "
                      "are attacked (attacking probabilities would mask the gradients); accuracies are the same")
    return model, None


class _LogProbabilities(keras.layers.Layer):
    """log(p): logits with the same softmax as the probabilities ``p`` (up to a constant per image)."""

    def call(self, p):
        return keras.ops.log(keras.ops.maximum(p, 1e-30))


def _as_probabilities_wrapped(model, probe):
    """If ``model(probe)`` looks like probabilities (≥ 0, rows summing to 1), a model returning their log."""
    out = np.asarray(model(probe, training=False), np.float64)
    if not (out.min() >= 0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3)):
        return model, None
    inp = keras.Input(model.input_shape[1:])
    wrapped = keras.Model(inp, _LogProbabilities()(model(inp, training=False)), name=f"{model.name}_logprob")
    return wrapped, ("the model's outputs are probabilities (≥ 0, summing to 1) but no final softmax layer could be "
                     "cut off: its log-probabilities are attacked. Where a probability rounds to exactly 1 in "
                     "float32 their gradient vanishes, so the gradient attacks (FGSM, PGD, APGD-CE) may be masked; "
                     "APGD-DLR and Square are not affected. Return logits from the model for a sound evaluation")


def _in_unit_range(model, low: float, high: float):
    """``model`` taking images in [0, 1]: a ``Rescaling`` to ``[low, high]`` in front of it."""
    if (low, high) == (0.0, 1.0):
        return model
    inp = keras.Input(model.input_shape[1:])
    scaled = keras.layers.Rescaling(scale=high - low, offset=low, name="to_input_range")(inp)
    return keras.Model(inp, model(scaled, training=False), name=f"{model.name}_from_01")


def _check_input_range(input_range) -> tuple:
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise TypeError(f"input_range must be two numbers (low, high), e.g. (0, 1) or (0, 255), got "
                        f"{input_range!r}") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"input_range={input_range!r} is not allowed: it must be (low, high) with low < high, "
                         "both finite, e.g. (0, 1) or (0, 255)")
    return low, high


def _report_images(model, x, input_range) -> np.ndarray:
    """``x`` checked against the model and the declared ``input_range``, mapped to [0, 1] (float32)."""
    low, high = input_range
    arr = np.asarray(x)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"x must hold numbers (pixels), got dtype {arr.dtype}")
    want = tuple(model.input_shape[1:])
    if arr.ndim != 4:
        hint = " (grey images: add a channel axis, x[..., None])" if arr.ndim == 3 else ""
        raise ValueError(f"x must be a 4-D batch of images (N, height, width, channels), channels last, got shape "
                         f"{arr.shape}{hint}")
    if arr.shape[1:] != want:
        flipped = (arr.shape[1],) + arr.shape[2:] == (want[-1],) + want[:-1]
        hint = "; it looks channels-first: pass x.transpose(0, 2, 3, 1)" if flipped else ""
        raise ValueError(f"x has images of shape {arr.shape[1:]} but the model expects {want} (channels last){hint}")
    bad = ~np.isfinite(arr) if np.issubdtype(arr.dtype, np.floating) else np.zeros(arr.shape, bool)
    if bad.any():
        first = int(np.flatnonzero(bad.reshape(len(arr), -1).any(axis=1))[0])
        raise ValueError(f"x holds {int(bad.sum())} NaN or infinite values (the first in image {first})")
    if arr.size and (arr.min() < low or arr.max() > high):
        hint = (" (pass input_range=(0, 255) for 8-bit pixels, or divide x by 255)"
                if (low, high) == (0.0, 1.0) and arr.min() >= 0 and arr.max() <= 255 else "")
        raise ValueError(f"x holds pixel values in [{float(arr.min()):.4g}, {float(arr.max()):.4g}], outside the "
                         f"declared input_range [{low:g}, {high:g}]{hint}")
    return np.clip((arr.astype(np.float64) - low) / (high - low), 0.0, 1.0).astype(np.float32)


def _report_labels(y, n: int, classes: int) -> np.ndarray:
    """``y`` (class indices, or one-hot rows) as int64 class indices, checked against ``n`` images and ``classes``."""
    arr = np.asarray(y)
    if arr.ndim == 2:
        if arr.shape[1] != classes:
            raise ValueError(f"y is one-hot with {arr.shape[1]} classes but the model has {classes} outputs")
        if not (np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()):
            raise ValueError("y has 2 dimensions but is not one-hot (each row must hold a single 1, the rest 0)")
        arr = arr.argmax(axis=1)
    elif arr.ndim != 1:
        raise ValueError(f"y must hold class indices (shape (N,)) or one-hot rows (N, classes), got shape {arr.shape}")
    elif np.issubdtype(arr.dtype, np.floating) and arr.size and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise ValueError("y must hold whole class indices, found non-integer values")
    elif not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"y must hold class indices (integers), got dtype {arr.dtype}")
    if len(arr) != n:
        raise ValueError(f"x and y must have the same length, got {n} images and {len(arr)} labels")
    if arr.size and (arr.min() < 0 or arr.max() >= classes):
        raise ValueError(f"y must hold class indices in [0, {classes - 1}] (the model has {classes} outputs), "
                         f"found values in [{int(arr.min())}, {int(arr.max())}]")
    return arr.astype(np.int64)


def _as_functional(model, image_shape):
    """``model`` itself, or a subclassed model (no layer graph) called on a ``keras.Input`` of ``image_shape``."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    try:
        model.input_shape, model.output_shape  # noqa: B018  (a subclassed model has neither)
        return model
    except (AttributeError, ValueError):
        pass
    if len(image_shape) != 3:
        raise ValueError(f"x must be a 4-D batch of images (N, height, width, channels), got shape "
                         f"{(None, *image_shape)}")
    inp = keras.Input(tuple(image_shape))
    try:
        return keras.Model(inp, model(inp, training=False), name=model.name)
    except Exception as err:  # noqa: BLE001 - any failure to trace means the same thing to the user
        raise TypeError(f"the model {model.name!r} has no layer graph and cannot be called on a symbolic input "
                        f"of shape {tuple(image_shape)} ({err}); build it as a functional or Sequential model") from None


def _check_classifier(model) -> int:
    """The number of classes of ``model``, a ``keras.Model`` returning one score per class (else a clear error)."""
    shape = model.output_shape
    if isinstance(shape, list) or len(shape) != 2 or shape[-1] is None or shape[-1] < 2:
        raise ValueError(f"the model must return one vector of class scores per image, shape (N, classes) with "
                         f"classes >= 2; its output shape is {shape}")
    return int(shape[-1])


def _report_model(model, x01, input_range) -> tuple:
    """``(model taking [0, 1] images and returning logits, notes)``."""
    notes = []
    model, note = _logits_below_softmax(model)
    if note is None:
        probe = x01[:16] * (input_range[1] - input_range[0]) + input_range[0]
        model, note = _as_probabilities_wrapped(model, probe)
    notes += [note] if note else []
    if input_range != (0.0, 1.0):
        notes.append(f"inputs in [{input_range[0]:g}, {input_range[1]:g}]: the attacks work on images in [0, 1] "
                     "and the model is called on them rescaled; ε is a fraction of that range "
                     f"(ε = {1 / (input_range[1] - input_range[0]):.4g} is one unit of your inputs)")
    return _in_unit_range(model, *input_range), notes


class _Stages:
    """Times each stage of the report and tells ``progress`` (a function of one string) when one starts."""

    def __init__(self, progress):
        self.progress, self.timings = progress, {}

    def run(self, name: str, fn, *args, **kwargs):
        if self.progress is not None:
            self.progress(name)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def _figure(right, detail: str) -> dict:
    right = np.asarray(right, bool)
    acc = float(np.mean(right))
    low, high = report.wilson_interval(int(right.sum()), len(right))
    # min/max: at 0 % or 100 % the Wilson bound may round to a hair inside the figure (0.9999… for 1)
    return {"accuracy": acc, "low": min(low, acc), "high": max(high, acc), "n": int(len(right)), "detail": detail}


def robustness_report(model, x, y, eps, *, norm: str = "inf", n: int | None = None, input_range=(0.0, 1.0),
                      seed: int = 0, settings: ReportSettings | None = None, progress=None) -> RobustnessReport:
    """The course's honest evaluation of any Keras classifier, in one call: a ``RobustnessReport``.

    ``x``: images (N, height, width, channels), channels last, pixels in ``input_range`` (e.g. ``(0, 255)``: the
    model is then called on the images as given, the attacks work on them mapped to [0, 1], and ``eps`` is a
    fraction of the range: 8/255 is eight 8-bit steps); ``y``: class indices or one-hot rows; ``eps``: the budget in
    ``norm`` (``"inf"`` or ``"l2"``); ``n``: use the first ``n`` images only.  A model that ends in a softmax is
    attacked on its logits (see the report's notes); BatchNorm and Dropout run in inference mode.
    Measures clean accuracy, random noise, FGSM (L2: one normalised-gradient step), PGD-40, the strong
    suite (APGD-CE, APGD-DLR, Square and the worst case per image: ``strong_robust`` with its defaults, so its
    figures equal ``strong_accuracy``'s on the same images), certified accuracy (IBP, L∞, where ``certify`` supports
    the layers), accuracy at a large ε, an accuracy-vs-ε curve (``settings.curve_n`` images), the paired test of PGD
    against the worst case, and the masking checklist's verdicts; each figure with its 95 % interval.
    ``settings``: a ``ReportSettings``; ``progress``: a function called with each stage's name as it starts.
    """
    check_choice("norm", norm, attacks.NORMS)
    eps = check_eps(eps)
    settings = ReportSettings() if settings is None else settings
    if not isinstance(settings, ReportSettings):
        raise TypeError(f"settings must be a ReportSettings, got {type(settings).__name__}")
    stages = _Stages(progress)
    model = _as_functional(model, np.shape(x)[1:])
    classes = _check_classifier(model)
    input_range = _check_input_range(input_range)
    x01 = _report_images(model, x, input_range)
    labels = _report_labels(y, len(x01), classes)
    if n is not None:
        x01, labels = x01[:check_positive_int(n, "n")], labels[:n]
    if len(x01) == 0:
        raise ValueError("the report needs at least one image, got an empty batch")
    net, notes = stages.run("preparing the model", _report_model, model, x01, input_range)
    info = {"model": model.name, "n": len(x01), "eps": eps, "norm": norm, "input_range": list(input_range),
            "classes": classes, "image_shape": list(x01.shape[1:]), "seed": seed,
            "settings": asdict(settings)}
    figures = _attack_figures(net, x01, labels, eps, norm, seed, settings, stages)
    held = stages.run("strong suite (APGD-CE, APGD-DLR, Square)", strong_robust, net, x01, labels, eps,
                      steps=settings.strong_steps, restarts=settings.strong_restarts, queries=settings.queries,
                      seed=seed, norm=norm)
    names = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "square": "Square", "worst": "worst case"}
    for key, row in names.items():
        if held[key] is not None:
            figures[row] = _figure(held[key], "strong suite" if key != "worst" else
                                   "right after every attack of the strong suite (per image)")
    if held["square"] is None:
        notes.append("Square is an L∞ attack here: in L2 the strong suite's worst case is over APGD-CE and APGD-DLR")
    cert, why = stages.run("certification (IBP)", _certified, net, x01, labels, eps, norm)
    if cert is not None:
        figures["certified"] = _figure(cert, "proved for the whole ε-ball by interval bound propagation")
    notes += [why] if why else []
    large = stages.run("large-ε check", _large_eps_right, net, x01, labels, norm, seed, settings)
    curve = stages.run("accuracy vs ε", _curve, net, x01, labels, eps, norm, seed, settings)
    pgd_row = _pgd_name(settings)
    pair = report.paired_difference(figures[pgd_row]["right"], held["worst"])
    paired = {"attack_a": pgd_row, "attack_b": "worst case", **pair._asdict(), "text": str(pair)}
    checks = _masking_checks(figures, large, paired, curve.pop("at_eps"), figures[pgd_row]["right"],
                             settings.tolerance)
    for row in figures.values():
        row.pop("right", None)
    return RobustnessReport(info, figures, checks, paired, curve, notes, stages.timings)


def _pgd_name(settings, short: bool = False) -> str:
    if short:
        return f"PGD-{settings.short_steps}"
    restarts = f"×{settings.pgd_restarts}" if settings.pgd_restarts > 1 else ""
    return f"PGD-{settings.pgd_steps}{restarts}"


def _attack_figures(net, x, y, eps, norm, seed, settings, stages) -> dict:
    """Clean, noise, one-step and PGD rows (each with its per-image ``"right"``, dropped before the report)."""
    clean = stages.run("clean accuracy", lambda: predict(net, x)[0] == y)
    noise = stages.run("random noise", still_right, net, x, y, "noise", eps, norm=norm, seed=seed)
    fgsm = stages.run(_one_step_name(norm), still_right, net, x, y, _one_step(norm), eps)
    pgd = stages.run(_pgd_name(settings), still_right, net, x, y, "pgd", eps, steps=settings.pgd_steps,
                     restarts=settings.pgd_restarts, norm=norm, seed=seed)
    rows = {"clean": (clean, "no attack"),
            "noise": (noise, f"uniform random {'signs' if norm == 'inf' else 'direction'} of size ε"),
            _one_step_name(norm): (fgsm, "one gradient step of size ε"),
            _pgd_name(settings): (pgd, f"{_norm_name(norm)} PGD from a random start, step 2.5·ε/steps"
                                       + (", best of restarts" if settings.pgd_restarts > 1 else ""))}
    return {name: {**_figure(right, detail), "right": right} for name, (right, detail) in rows.items()}


def _one_step(norm: str) -> str:
    return "sign" if norm == "inf" else "l2"


def _one_step_name(norm: str) -> str:
    return "FGSM" if norm == "inf" else "FGM (L2)"


def _norm_name(norm: str) -> str:
    """``"L∞"`` or ``"L2"``."""
    return "L∞" if norm == "inf" else "L2"


def _certified(net, x, y, eps, norm) -> tuple:
    """``(per-image certified, None)``, or ``(None, why not)`` when IBP does not apply to this model or norm."""
    if norm != "inf":
        return None, "certified accuracy not computed: interval bound propagation here certifies L∞ balls only"
    try:
        certify.layer_chain(net)
    except (ValueError, TypeError) as err:  # layer_chain's errors name the unsupported layer or structure
        return None, f"certified accuracy not computed: {err}"
    return certify.certified(net, x, y, eps), None


def _large_eps(norm, shape, settings) -> float:
    if settings.large_eps is not None:
        return check_eps(settings.large_eps, "large_eps")
    return 1.0 if norm == "inf" else float(np.sqrt(np.prod(shape)))


def _large_eps_right(net, x, y, norm, seed, settings) -> dict:
    """PGD at a budget that lets the attacker paint any image: per image, still right?"""
    eps = _large_eps(norm, x.shape[1:], settings)
    steps = 2 * settings.short_steps
    right = still_right(net, x, y, "pgd", eps, steps=steps, norm=norm, seed=seed)
    return {"eps": eps, "steps": steps, **_figure(right, f"PGD-{steps} at ε = {eps:.3g}")}


def _curve(net, x, y, eps, norm, seed, settings) -> dict:
    """Accuracy (with 95 % intervals) under the one-step attack and PGD-short at ``settings.curve`` × ε and at ε,
    on the first ``settings.curve_n`` images; ``"at_eps"``: their per-image outcomes at ε (for the checklist)."""
    x, y = x[:settings.curve_n], y[:settings.curve_n]
    grid = [0.0] + sorted({round(float(f) * eps, 6) for f in (*settings.curve, 1.0) if f > 0})
    out = {"eps": grid, "n": int(len(x)), "curves": {}, "at_eps": {}}
    clean = predict(net, x)[0] == y
    for name, attack, kwargs in ((_one_step_name(norm), _one_step(norm), {}),
                                 (_pgd_name(settings, True), "pgd",
                                  dict(steps=settings.short_steps, norm=norm, seed=seed))):
        right = [clean if e == 0 else still_right(net, x, y, attack, e, **kwargs) for e in grid]
        out["at_eps"][name] = right[grid.index(round(eps, 6))]
        rows = [_figure(r, "") for r in right]
        out["curves"][name] = {k: [r[k] for r in rows] for k in ("accuracy", "low", "high")}
    return out


#: The gap (fraction of images) between PGD and the strong suite's worst case above which PGD alone is called
#: masked: a cross-entropy attack that leaves this many more images standing than APGD-DLR/Square has been fooled.
PGD_GAP = 0.05


def _masking_checks(figures, large, paired, at_eps, pgd_right, tolerance) -> list:
    """The masking checklist (``benchmarks/robustness_report.py``, notebook 06) as verdicts on this model."""
    count = {name: round(row["accuracy"] * row["n"]) for name, row in figures.items()}
    long_ = next(k for k in figures if k.startswith("PGD-"))
    fmt = {name: f"{name} {row['accuracy']:.1%}" for name, row in figures.items()}
    (one_step, one_right), (short, short_right) = at_eps.items()
    m = len(short_right)
    sub = {long_: int(np.sum(pgd_right[:m])), short: int(np.sum(short_right)), one_step: int(np.sum(one_right))}

    def check(name, passed, detail):
        return {"check": name, "verdict": "pass" if passed else "FAIL", "detail": detail}

    out = [check("more steps never help", sub[long_] <= sub[short] + tolerance
                 and sub[short] <= sub[one_step] + tolerance,
                 f"on the first {m:,} images: " + " ≤ ".join(f"{k} {v / m:.1%}" for k, v in sub.items())
                 + f" (within {tolerance} image)"),
           check(f"accuracy reaches 0 at a large ε", large["accuracy"] == 0,
                 f"{large['accuracy']:.1%} of the images survive PGD-{large['steps']} at ε = {large['eps']:.3g}, "
                 "a budget that lets the attacker paint any image" + ("" if large["accuracy"] == 0 else
                 ": the gradients do not lead the attack (masking), or the model is not what it seems")),
           check("noise weaker than PGD", count["noise"] + tolerance >= count[long_],
                 f"{fmt['noise']} ≥ {fmt[long_]}"),
           check("strong suite at least as strong as PGD", count["worst case"] <= count[long_] + tolerance,
                 f"worst case {figures['worst case']['accuracy']:.1%} ≤ {fmt[long_]}"),
           check(f"PGD within {PGD_GAP:.0%} of the strong suite",
                 not (paired["difference"] > PGD_GAP and paired["low"] > 0),
                 f"{long_} − worst case: {paired['text']}" + (
                     "" if paired["difference"] <= PGD_GAP else ": the cross-entropy gradient misleads PGD "
                     "(masking); trust the strong suite's figure, not PGD's"))]
    if "certified" in figures:
        out.append(check("certified ≤ strong", count["certified"] <= count["worst case"],
                         f"certified {figures['certified']['accuracy']:.1%} ≤ worst case "
                         f"{figures['worst case']['accuracy']:.1%}"))
    else:
        out.append({"check": "certified ≤ strong", "verdict": "not run", "detail": "no certificate (see the notes)"})
    return out


# --------------------------------------------------------------------------------------------------- the command

def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m helpers.evaluate",
        description="A robustness report for a saved Keras model: clean accuracy, noise, FGSM, PGD, the strong "
                    "suite (APGD-CE, APGD-DLR, Square, worst case per image), certified accuracy where IBP applies, "
                    "the masking checklist, an accuracy-vs-ε curve; every figure with its 95 % interval.")
    parser.add_argument("model", help="a saved Keras model (.keras)")
    parser.add_argument("--data", required=True, help=".npz holding arrays x and y, or the test split's pair (see "
                                                      "helpers.data.load_npz); labels as class indices or one-hot")
    parser.add_argument("--eps", type=float, required=True, help="the budget, in units of the [0, 1] pixel range")
    parser.add_argument("--norm", choices=attacks.NORMS, default="inf")
    parser.add_argument("--n", type=int, default=1000, help="use the first n images (default 1000; all if fewer)")
    parser.add_argument("--input-range", type=float, nargs=2, default=(0.0, 1.0), metavar=("LOW", "HIGH"),
                        help="the pixel range the model expects, e.g. 0 255 (default 0 1); "
                             "--eps stays a fraction of that range (8/255 = eight 8-bit steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="report.html", help="the HTML page to write; the JSON goes beside it")
    return parser


def main(argv=None) -> int:
    """``python -m helpers.evaluate MODEL.keras --data DATA.npz --eps 0.3 [--norm inf|l2] [--n 1000] --out
    report.html``: progress as it goes, the report printed, an HTML page and a JSON file written (atomically).
    Ctrl-C stops cleanly (exit code 130) and writes nothing; bad input exits with code 2 and the reason."""
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        _parser().error(f"--out must name an .html file, got {args.out!r}")
    start = time.perf_counter()

    def progress(stage):
        print(f"[{time.perf_counter() - start:7.1f} s] {stage}", flush=True)

    try:
        progress(f"loading {args.model} and {args.data}")
        model = keras.models.load_model(args.model, compile=False)
        x, y = data.load_npz(args.data)
        result = robustness_report(model, x, y, args.eps, norm=args.norm, n=args.n,
                                   input_range=tuple(args.input_range), seed=args.seed, progress=progress)
        progress("writing the report")
        text, page = result.to_json(), plots.robustness_page(result.to_dict())  # render first, then write:
        write_atomic(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))  # each file complete or absent
        write_atomic(out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    except KeyboardInterrupt:
        print("\ninterrupted: no report written", file=sys.stderr, flush=True)
        return 130
    except (ValueError, TypeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    print(result)
    print(f"wrote {out} and {out.with_suffix('.json')} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

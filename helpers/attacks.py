"""Gradient-based adversarial attacks, built from three small pieces (as in CleverHans):

1. ``input_gradient`` — the gradient of the attacker's objective with respect to the *input* images;
2. ``step_rule`` — turns that gradient into a step of a given size (``"raw"``, ``"max"``, ``"l2"``, ``"sign"``);
3. ``project`` — pulls a perturbation back into the ε-ball (L∞ or L2).

``gradient_attack`` and ``fgsm`` take one step; ``pgd`` loops over step + projection.  Every result is clipped to the
valid pixel range [0, 1].  Threat-model vocabulary: ``eps`` (budget, pixel-value units of [0, 1]), ``norm``
(``"inf"`` or ``"l2"``), ``targeted`` (with ``targeted=True``, ``y`` holds the *target* classes and the attack
lowers the loss toward them), ``steps``, ``step_size``, ``random_start``.

Called eagerly with NumPy arrays or tensors, the public functions validate their arguments, run a compiled
``tf.function`` (traced once per model and configuration, whole batches at a time) and return a NumPy array.
Called while TensorFlow is tracing (inside your own ``tf.function``, e.g. a training step) they return a tensor,
so the same attack can be used inside adversarial training.
"""

from __future__ import annotations

import weakref

import numpy as np

from ._checks import check_choice, check_eps, check_images, check_labels, check_positive_int

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

SCALES = ("raw", "max", "l2", "sign")
NORMS = ("inf", "l2")
EVAL_BATCH = 1024  # examples per compiled call: large enough to amortise overhead, small enough for CIFAR memory
_TINY = 1e-12
#: How PGD's loop is compiled: ``"unrolled"`` (a Python loop, one copy of the ops per step), ``"range"`` (a
#: ``tf.range`` graph loop) or ``"auto"``: unrolled up to ``UNROLL_MAX_STEPS`` steps, where it ran 20-45 % faster
#: on CPU, a graph loop beyond, where tracing an unrolled loop gets slow (3.5-5 s for 100 steps against 0.2 s;
#: whether the unrolled loop then also runs faster varied between machines).  ``benchmarks/bench_speed.py``
#: measures both; see the README for the figures.
PGD_LOOP = "auto"
UNROLL_MAX_STEPS = 20


# ----------------------------------------------------------------------------------- the three pieces (TF code)
def per_example_loss(model, x, y):
    """Cross-entropy of each example (shape ``(N,)``), computed from the model's logits."""
    logits = model(x, training=False)
    return keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)


def _objective_gradient(model, x, y, targeted):
    """Gradient of the attacker's objective w.r.t. ``x`` (TF code; no validation)."""
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)  # x is a plain tensor, not a variable: the tape must be told to record it
        # Summing (not averaging) keeps each example's gradient independent of the batch size.
        loss = tf.reduce_sum(per_example_loss(model, x, y))
    grad = tape.gradient(loss, x)
    return -grad if targeted else grad


def _reduce_axes(t):
    return list(range(1, len(t.shape)))


def step_rule(grad, eps, scale: str = "sign"):
    """Turn a gradient into a step of budget ``eps`` (per example):

    - ``"raw"``: ``eps * grad`` — the gradient times a constant; its size depends on the gradient's size;
    - ``"max"``: ``eps * grad / max|grad|`` — largest pixel change exactly ``eps``;
    - ``"l2"``: ``eps * grad / ||grad||_2`` — Euclidean length exactly ``eps``;
    - ``"sign"``: ``eps * sign(grad)`` — every pixel moves by ``eps`` (FGSM; the steepest step in L∞).
    Examples whose gradient is exactly zero get a zero step.
    """
    check_choice("scale", scale, SCALES)
    grad = tf.convert_to_tensor(grad, tf.float32)
    eps = tf.cast(eps, tf.float32)
    axes = _reduce_axes(grad)
    if scale == "raw":
        return eps * grad
    if scale == "sign":
        return eps * tf.sign(grad)
    if scale == "max":
        size = tf.reduce_max(tf.abs(grad), axis=axes, keepdims=True)
    else:
        size = tf.sqrt(tf.reduce_sum(tf.square(grad), axis=axes, keepdims=True))
    return eps * grad / tf.maximum(size, _TINY)


def project(delta, eps, norm: str = "inf"):
    """Project perturbations ``delta`` (per example) onto the ``norm`` ball of radius ``eps``."""
    check_choice("norm", norm, NORMS)
    delta = tf.convert_to_tensor(delta, tf.float32)
    eps = tf.cast(eps, tf.float32)
    if norm == "inf":
        return tf.clip_by_value(delta, -eps, eps)
    length = tf.sqrt(tf.reduce_sum(tf.square(delta), axis=_reduce_axes(delta), keepdims=True))
    return delta * tf.minimum(1.0, eps / tf.maximum(length, _TINY))


def _random_in_ball(shape, eps, norm, seed):
    """Uniform random perturbation in the ``norm`` ball of radius ``eps`` (stateless, from a ``[2]`` seed)."""
    if norm == "inf":
        return tf.random.stateless_uniform(shape, seed, -1.0, 1.0) * eps
    seeds = tf.random.experimental.stateless_split(seed, 2)
    direction = tf.random.stateless_normal(shape, seeds[0])
    direction = step_rule(direction, 1.0, "l2")
    dims = tf.cast(tf.reduce_prod(shape[1:]), tf.float32)
    radius = tf.random.stateless_uniform(tf.stack([shape[0], 1, 1, 1]), seeds[1]) ** (1.0 / dims)
    return direction * radius * eps


def _fgsm_graph(model, x, y, eps, scale="sign", targeted=False):
    grad = _objective_gradient(model, x, y, targeted)
    return tf.clip_by_value(x + step_rule(grad, eps, scale), 0.0, 1.0)


def _pgd_graph(model, x, y, eps, step_size, seed, *, steps, norm, random_start, targeted):
    """PGD as TF code: (random start) then ``steps`` × (gradient step, projection, clip to [0, 1]).

    Short loops are unrolled when traced, long ones become a graph loop (see ``PGD_LOOP``).  ``steps`` is
    static, so each value traces its own graph.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    eps = tf.cast(eps, tf.float32)
    step_size = tf.cast(step_size, tf.float32)
    rule = "sign" if norm == "inf" else "l2"
    if random_start:
        delta = _random_in_ball(tf.shape(x), eps, norm, seed)
        x_adv = tf.clip_by_value(x + delta, 0.0, 1.0)
    else:
        x_adv = x
    unroll = PGD_LOOP == "unrolled" or (PGD_LOOP == "auto" and steps <= UNROLL_MAX_STEPS)
    loop = range(steps) if unroll else tf.range(steps)
    for _ in loop:
        grad = _objective_gradient(model, x_adv, y, targeted)
        x_adv = x_adv + step_rule(grad, step_size, rule)
        x_adv = tf.clip_by_value(x + project(x_adv - x, eps, norm), 0.0, 1.0)
    return tf.stop_gradient(x_adv)


# ------------------------------------------------------------------------------- compiled, cached entry points
_compiled: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def _compiled_fn(model, kind, config, make):
    """One ``tf.function`` per (model, attack kind, static configuration), traced once for any batch size."""
    per_model = _compiled.setdefault(model, {})
    key = (kind, config)
    if key not in per_model:
        per_model[key] = make()
    return per_model[key]


def _specs(model):
    shape = tuple(model.input_shape[1:])
    return tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int64)


def _tracing(*tensors) -> bool:
    return not tf.executing_eagerly() or any(tf.is_symbolic_tensor(t) for t in tensors if tf.is_tensor(t))


def _validate(model, x, y, eps, targeted=False):
    if not callable(model):
        raise TypeError(f"model must be a Keras model (or callable returning logits), got {type(model).__name__}")
    check_images(x)
    n = int(np.shape(x)[0])
    if y is not None:
        check_labels(y, n, name="y (target classes)" if targeted else "y")
        if not isinstance(model, keras.Model):
            raise TypeError("model must be a keras.Model for the compiled attacks")
        if model.input_shape[1:] != tuple(np.shape(x)[1:]):
            raise ValueError(f"x has images of shape {tuple(np.shape(x)[1:])} but the model expects "
                             f"{tuple(model.input_shape[1:])}")
        classes = int(model.output_shape[-1])
        yv = np.asarray(y)
        if yv.size and (yv.min() < 0 or yv.max() >= classes):
            raise ValueError(f"y must hold class indices in [0, {classes - 1}], found [{yv.min()}, {yv.max()}]")
    return check_eps(eps)


def _batched(fn, x, y, *extra):
    """Run ``fn(x_batch, y_batch, *extra)`` over fixed-size chunks; returns a float32 NumPy array."""
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    out = [fn(tf.constant(x[i:i + EVAL_BATCH]), tf.constant(y[i:i + EVAL_BATCH]), *extra).numpy()
           for i in range(0, len(x), EVAL_BATCH)]
    return np.concatenate(out) if out else x.copy()


def input_gradient(model, x, y, *, targeted: bool = False):
    """Gradient of the attacker's objective with respect to the input images, one per example.

    Untargeted: the gradient of the cross-entropy loss of the true labels ``y`` — moving along it makes the model
    *more wrong*.  Targeted (``y`` = target classes): the *negative* gradient of the loss toward the targets —
    moving along it makes the targets *more likely*.  Either way, adding it helps the attacker.
    Same shape as ``x``; the loss is summed over the batch, so each example's gradient is its own.
    """
    if _tracing(x, y):
        return _objective_gradient(model, x, y, targeted)
    _validate(model, x, y, 0.0, targeted)
    xs, ys = _specs(model)
    fn = _compiled_fn(model, "grad", (bool(targeted),), lambda: tf.function(
        lambda xb, yb: _objective_gradient(model, xb, yb, targeted), input_signature=[xs, ys]))
    return _batched(fn, x, y)


def gradient_attack(model, x, y, eps, *, scale: str = "sign", targeted: bool = False):
    """One gradient step of budget ``eps`` with step rule ``scale`` (see ``step_rule``), clipped to [0, 1].

    ``x' = clip(x + step_rule(∇ₓ objective, eps, scale), 0, 1)``.  With ``scale="sign"`` this is FGSM.
    """
    check_choice("scale", scale, SCALES)
    check_choice("targeted", targeted, (False, True))
    if _tracing(x, y, eps):
        return _fgsm_graph(model, x, y, eps, scale, targeted)
    eps = _validate(model, x, y, eps, targeted)
    xs, ys = _specs(model)
    fn = _compiled_fn(model, "step", (scale, bool(targeted)), lambda: tf.function(
        lambda xb, yb, e: _fgsm_graph(model, xb, yb, e, scale, targeted),
        input_signature=[xs, ys, tf.TensorSpec((), tf.float32)]))
    return _batched(fn, x, y, tf.constant(eps, tf.float32))


def fgsm(model, x, y, eps, *, targeted: bool = False):
    """Fast Gradient Sign Method (Goodfellow et al. 2015): ``x' = clip(x ± eps · sign(∇ₓ L), 0, 1)``.

    L∞ threat model, one step.  Untargeted it climbs the loss of ``y``; targeted it descends the loss of the
    target classes ``y``.
    """
    return gradient_attack(model, x, y, eps, scale="sign", targeted=targeted)


def default_step_size(eps: float, steps: int) -> float:
    """Madry et al.'s rule of thumb: 2.5 · ε / steps, so the iterates can cross the whole ball and back."""
    return 2.5 * eps / steps


def _new_seed(seed):
    if seed is None:
        # Drawn from NumPy's global generator, which ``seed_everything`` seeds: reproducible in notebooks.
        return np.random.randint(0, 2**31 - 1, size=2, dtype=np.int64)
    return np.array([int(seed), 0], np.int64)


def pgd(model, x, y, eps, *, steps: int = 10, step_size: float | None = None, norm: str = "inf",
        random_start: bool = True, targeted: bool = False, restarts: int = 1, seed: int | None = None):
    """Projected Gradient Descent (Madry et al. 2018); with ``random_start=False`` and L∞ it is BIM.

    From a random point of the ε-ball (``random_start``), repeat ``steps`` times: step along the steepest-ascent
    direction of the ``norm`` (sign of the gradient for ``"inf"``, the L2-normalised gradient for ``"l2"``) by
    ``step_size`` (default 2.5·ε/steps), project back into the ε-ball around ``x``, clip to [0, 1].

    ``restarts`` > 1 runs the attack from several random starts and keeps, per example, the most successful
    result (misclassified — or, targeted, classified as the target — first, then highest objective).
    ``seed`` fixes the random starts (default: drawn from NumPy's global generator).
    The result always satisfies ``||x' - x|| <= eps`` in the chosen norm and ``0 <= x' <= 1``.
    """
    check_choice("norm", norm, NORMS)
    check_choice("targeted", targeted, (False, True))
    check_choice("random_start", random_start, (False, True))
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    if _tracing(x, y, eps):
        eps_t = tf.cast(eps, tf.float32)
        size = default_step_size(eps_t, steps) if step_size is None else step_size
        if seed is None:
            # A fresh seed at every call of the traced function (e.g. every training step); the stateful op
            # follows the global seed, so a seeded run stays reproducible.
            seed_t = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64)
        else:
            seed_t = tf.constant([int(seed), 0], tf.int64)
        return _pgd_graph(model, x, y, eps_t, size, seed_t, steps=steps, norm=norm,
                          random_start=random_start, targeted=targeted)
    eps = _validate(model, x, y, eps, targeted)
    step_size = default_step_size(eps, steps) if step_size is None else check_eps(step_size, "step_size")
    xs, ys = _specs(model)
    scalar = tf.TensorSpec((), tf.float32)
    fn = _compiled_fn(model, "pgd", (steps, norm, bool(random_start), bool(targeted), PGD_LOOP), lambda: tf.function(
        lambda xb, yb, e, a, s: _pgd_graph(model, xb, yb, e, a, s, steps=steps, norm=norm,
                                           random_start=random_start, targeted=targeted),
        input_signature=[xs, ys, scalar, scalar, tf.TensorSpec((2,), tf.int64)]))
    args = (tf.constant(eps, tf.float32), tf.constant(step_size, tf.float32))
    rng_seed = _new_seed(seed)
    runs = restarts if random_start else 1
    best = _batched(fn, x, y, *args, tf.constant(rng_seed))
    if runs > 1:
        best_score = _attack_score(model, best, y, targeted)
    for r in range(1, runs):
        x_adv = _batched(fn, x, y, *args, tf.constant(rng_seed + np.array([0, r], np.int64)))
        score = _attack_score(model, x_adv, y, targeted)
        better = score > best_score
        best = np.where(better[:, None, None, None], x_adv, best)
        best_score = np.where(better, score, best_score)
    return best


def _attack_score(model, x_adv, y, targeted):
    """Per-example score used to pick among restarts: success counts first, then the objective."""
    fn = _compiled_fn(model, "score", (bool(targeted),), lambda: tf.function(
        lambda xb, yb: _score_graph(model, xb, yb, targeted), input_signature=list(_specs(model))))
    return _batched(fn, x_adv, y)


def _score_graph(model, x, y, targeted):
    logits = model(x, training=False)
    loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    pred = tf.argmax(logits, axis=-1, output_type=tf.int64)
    success = tf.equal(pred, y) if targeted else tf.not_equal(pred, y)
    objective = -loss if targeted else loss
    # Objective values are squashed into (-1, 1) so any success outranks any failure.
    return tf.cast(success, tf.float32) * 2.0 + tf.tanh(objective)


def random_noise(x, eps, *, norm: str = "inf", seed: int | None = None):
    """A random perturbation of the same size as an attack's, the baseline every attack must beat.

    ``norm="inf"``: every pixel moves by ±eps with a random sign (same L∞ and L2 size as an FGSM step).
    ``norm="l2"``: a random Gaussian direction scaled to L2 length ``eps`` per example.
    The result is clipped to [0, 1] (which can only shrink the perturbation).
    """
    check_choice("norm", norm, NORMS)
    check_images(x)
    eps = check_eps(eps)
    rng = np.random.default_rng(seed if seed is not None else np.random.randint(0, 2**31 - 1))
    x = np.asarray(x, np.float32)
    if norm == "inf":
        delta = eps * rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape)
    else:
        delta = rng.standard_normal(x.shape).astype(np.float32)
        length = np.sqrt((delta.reshape(len(x), -1) ** 2).sum(axis=1)).reshape(-1, 1, 1, 1)
        delta = eps * delta / np.maximum(length, _TINY)
    return np.clip(x + delta, 0.0, 1.0).astype(np.float32)

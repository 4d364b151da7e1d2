"""Gradient-based adversarial attacks, built from three small pieces (as in CleverHans):

1. ``input_gradient`` — the gradient of the attacker's objective with respect to the *input* images;
2. ``step_rule`` — turns that gradient into a step of a given size (``"raw"``, ``"max"``, ``"l2"``, ``"sign"``);
3. ``project`` — pulls a perturbation back into the ε-ball (L∞ or L2).

``gradient_attack`` and ``fgsm`` take one step; ``pgd`` loops over step + projection.  AutoAttack's attacks (Croce &
Hein 2020) complete the set: ``apgd`` (PGD that tunes its own step size, with the cross-entropy or the scale-free
``dlr_loss``) and the score-based ``square`` (random search, no gradients).  Every result is clipped to the
valid pixel range [0, 1].  Threat-model vocabulary: ``eps`` (budget, pixel-value units of [0, 1]), ``norm``
(``"inf"`` or ``"l2"``), ``targeted`` (with ``targeted=True``, ``y`` holds the *target* classes and the attack
lowers the loss toward them), ``steps``, ``step_size``, ``random_start``.

Called eagerly with NumPy arrays or tensors, the public functions validate their arguments, run a compiled
``tf.function`` (traced once per model and configuration, whole batches at a time) and return a NumPy array.
Called while TensorFlow is tracing (inside your own ``tf.function``, e.g. a training step) they return a tensor,
so the same attack can be used inside adversarial training.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from ._checks import check_bool, check_choice, check_eps, check_images, check_labels, check_positive_int
from ._compiled import EVAL_BATCH, batched, chunk_seed, compiled, input_specs, tracing

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

SCALES = ("raw", "max", "l2", "sign")
NORMS = ("inf", "l2")
_TINY = 1e-12
#: Inside your own ``tf.function`` (e.g. a training step) PGD is unrolled up to this many steps (fastest on CPU)
#: and becomes a graph loop (``tf.while_loop``) beyond, where tracing an unrolled loop gets slow.
UNROLL_MAX_STEPS = 20
#: Called eagerly, PGD runs as compiled blocks of up to this many unrolled steps, called from Python: as fast as
#: unrolling (the step is one input-gradient pass: compute-bound), quick to trace, and it lets ``early_stop`` drop
#: finished examples between blocks.  ``benchmarks/bench_speed.py`` measures it.
BLOCK_STEPS = 10
#: The eager attacks (PGD, APGD, Square) run each compiled block on sub-batches of at most this many images, the
#: survivors re-packed after every block: on a CPU a step on 128 MNIST images is faster per image than on 512 (the
#: activations stay in the caches; ``benchmarks/bench_attack_speed.py``).  Random draws do not depend on it.
ATTACK_BATCH = 128
#: The eager attacks differentiate a single-channel first convolution with ``_conv2d_gradient`` (same numbers, faster
#: on a CPU); set to False before an attack is first compiled for a model to use TensorFlow's own gradient.
FAST_CONV_GRADIENT = True
__all__ = ["SCALES", "NORMS", "per_example_loss", "input_gradient", "step_rule", "project", "gradient_attack",
           "fgsm", "default_step_size", "pgd", "random_noise", "EVAL_BATCH"]


# ----------------------------------------------------------------------------------- the three pieces (TF code)
def cross_entropy(logits, y):
    """Cross-entropy of each example (shape ``(N,)``) from logits, in float32."""
    return keras.losses.sparse_categorical_crossentropy(y, tf.cast(logits, tf.float32), from_logits=True)


def per_example_loss(model, x, y):
    """Cross-entropy of each example (shape ``(N,)``), computed from the model's logits."""
    return cross_entropy(model(x, training=False), y)


def _computes_in_float16(model) -> bool:
    return any(getattr(layer, "compute_dtype", "float32") == "float16" for layer in getattr(model, "layers", ()))


def _loss_gradient(model, x, y, targeted=False, loss_fn=cross_entropy, *, fast=False):
    """``(per-example loss, gradient of the attacker's objective w.r.t. x, logits)`` as TF code.

    The objective is the summed loss (each example's gradient is then its own, whatever the batch size), negated
    when ``targeted``.  On a mixed-precision model (float16 inside, float32 logits) the gradient of a confidently
    classified image underflows in float16 and ``sign(0) = 0`` would leave its pixels unmoved; so the gradient is
    back-propagated from the logits scaled per example to a largest entry of 1, then unscaled in float32: the
    attack sees the gradient the same weights give in float32.  With ``fast`` (while tracing; used by the attacks'
    own compiled blocks) a single-channel first convolution is differentiated faster (``_conv2d_gradient``).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    if fast and FAST_CONV_GRADIENT and not tf.executing_eagerly():
        with tf.compat.v1.get_default_graph().gradient_override_map({"Conv2D": _FAST_CONV2D_GRADIENT}):
            logits = tf.cast(model(x, training=False), tf.float32)

        def backward(g_logits):  # symbolic gradients: unlike a tape, they honour the gradient override
            return tf.gradients(logits, x, grad_ys=g_logits)[0]
    else:
        with tf.GradientTape() as tape:
            tape.watch(x)  # x is a plain tensor, not a variable: the tape must be told to record it
            logits = tf.cast(model(x, training=False), tf.float32)

        def backward(g_logits):
            return tape.gradient(logits, x, output_gradients=g_logits)
    with tf.GradientTape() as head:
        head.watch(logits)
        losses = loss_fn(logits, y)
        objective = tf.reduce_sum(-losses if targeted else losses)
    g_logits = head.gradient(objective, logits)
    if not _computes_in_float16(model):
        return losses, backward(g_logits), logits
    scale = 1.0 / tf.maximum(tf.reduce_max(tf.abs(g_logits), axis=-1, keepdims=True), _TINY)
    grad = backward(g_logits * scale)
    return losses, grad / tf.reshape(scale, [-1] + [1] * (len(x.shape) - 1)), logits


_FAST_CONV2D_GRADIENT = "HelpersAttacksConv2D"


def _conv2d_gradient(op, grad):
    """Gradient of a ``Conv2D`` in the attacks' compiled blocks: TensorFlow's own, except for the input gradient of a
    stride-1 NHWC convolution of a *single-channel* input (the first layer of an MNIST model).

    There TensorFlow's ``Conv2DBackpropInput`` (oneDNN, one output channel) took up to ~40 % of a whole
    input-gradient pass of the course CNN (profiled on a 2-core CPU, batch 512).  The same sum — every kernel tap's
    contribution by one matrix product, then the taps' shifted copies added up — ran 2-2.5× faster, and equals it up
    to float rounding (``tests/test_autoattack.py`` checks it against the tape).  The kernel gets no gradient here:
    the attacks only differentiate with respect to the images.
    """
    x, kernel = op.inputs
    padding = op.get_attr("padding")
    if (op.get_attr("data_format") != b"NHWC" or list(op.get_attr("strides")) != [1, 1, 1, 1]
            or list(op.get_attr("dilations")) != [1, 1, 1, 1] or padding not in (b"VALID", b"SAME")
            or x.shape.rank != 4 or None in x.shape[1:] or x.shape[3] != 1 or None in kernel.shape):
        return _tf_conv2d_gradient(op, grad)
    kh, kw, _, channels = kernel.shape
    n, oh, ow = tf.shape(grad)[0], grad.shape[1], grad.shape[2]
    taps = tf.matmul(tf.reshape(kernel, [kh * kw, channels]), tf.reshape(grad, [-1, channels]), transpose_b=True)
    taps = tf.reshape(taps, tf.stack([kh, kw, n, oh, ow]))
    rows = [tf.pad(tf.add_n([tf.pad(taps[a, b], [[0, 0], [0, 0], [b, kw - 1 - b]]) for b in range(kw)]),
                   [[0, 0], [a, kh - 1 - a], [0, 0]]) for a in range(kh)]
    full = tf.add_n(rows)[..., None]  # gradient w.r.t. the (implicitly padded) input
    if padding == b"SAME":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        full = full[:, top:top + x.shape[1], left:left + x.shape[2]]
    return full, None


def _tf_conv2d_gradient(op, grad):
    from tensorflow.python.ops import nn_grad  # TensorFlow's registered Conv2D gradient (not public API)

    return nn_grad._Conv2DGrad(op, grad)  # noqa: SLF001


try:
    tf.RegisterGradient(_FAST_CONV2D_GRADIENT)(_conv2d_gradient)
except KeyError:  # already registered: this module was reloaded
    pass


def _objective_gradient(model, x, y, targeted):
    """Gradient of the attacker's objective w.r.t. ``x`` (TF code; no validation)."""
    return _loss_gradient(model, x, y, targeted)[1]


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


def _start(x, eps, norm, seed, random_start):
    """Where an iterative attack starts: ``x`` itself, or a uniform random point of the ε-ball (clipped)."""
    if not random_start:
        return x
    return tf.clip_by_value(x + _random_in_ball(tf.shape(x), eps, norm, seed), 0.0, 1.0)


def _success(logits, y, targeted):
    pred = tf.argmax(logits, axis=-1, output_type=tf.int64)
    return tf.equal(pred, y) if targeted else tf.not_equal(pred, y)


def _fgsm_graph(model, x, y, eps, scale="sign", targeted=False):
    grad = _loss_gradient(model, x, y, targeted, fast=True)[1]
    return tf.clip_by_value(x + step_rule(grad, eps, scale), 0.0, 1.0)


def _pgd_steps(model, x, x_adv, y, eps, step_size, *, steps, norm, targeted, freeze=False, unroll=True, fast=False):
    """``steps`` × (gradient step, projection into the ε-ball around ``x``, clip to [0, 1]) from ``x_adv``.

    Returns ``(x_adv, done)``.  With ``freeze``, an example stops moving at the first iterate where the attack
    already succeeds (``done``), so it is never walked back out of success.  TF code: unrolled when ``unroll``,
    else a ``tf.while_loop``.
    """
    x = tf.convert_to_tensor(x, tf.float32)
    eps, step_size = tf.cast(eps, tf.float32), tf.cast(step_size, tf.float32)
    rule = "sign" if norm == "inf" else "l2"

    def step(x_adv, done):
        _, grad, logits = _loss_gradient(model, x_adv, y, targeted, fast=fast)
        if freeze:
            done = tf.logical_or(done, _success(logits, y, targeted))
            grad = tf.where(tf.reshape(done, [-1, 1, 1, 1]), tf.zeros_like(grad), grad)
        x_adv = x_adv + step_rule(grad, step_size, rule)
        return tf.clip_by_value(x + project(x_adv - x, eps, norm), 0.0, 1.0), done

    state = (tf.convert_to_tensor(x_adv, tf.float32), tf.zeros(tf.shape(x)[:1], tf.bool))
    if unroll:
        for _ in range(steps):
            state = step(*state)
        return state
    _, x_adv, done = tf.while_loop(lambda i, *_: i < steps, lambda i, *s: (i + 1, *step(*s)), (0, *state))
    return x_adv, done


def _score_graph(model, x, y, targeted):
    """Per-example score that ranks attack results: success first, then the attacker's objective."""
    logits = tf.cast(model(x, training=False), tf.float32)
    loss = cross_entropy(logits, y)
    objective = -loss if targeted else loss
    # Objective values are squashed into (-1, 1) so any success (score >= 1) outranks any failure.
    return tf.cast(_success(logits, y, targeted), tf.float32) * 2.0 + tf.tanh(objective)


def _pgd_graph(model, x, y, eps, step_size, seed, *, steps, norm, random_start, targeted, restarts):
    """PGD as TF code, for use inside your own ``tf.function`` (e.g. a training step): every restart from its own
    random start, the best result per example kept.  Unrolled up to ``UNROLL_MAX_STEPS`` steps."""
    best = best_score = None
    for r in range(restarts):
        start = _start(x, eps, norm, tf.random.experimental.stateless_fold_in(seed, r), random_start)
        x_adv, _ = _pgd_steps(model, x, start, y, eps, step_size, steps=steps, norm=norm, targeted=targeted,
                              unroll=steps <= UNROLL_MAX_STEPS, fast=True)
        if restarts == 1:
            return tf.stop_gradient(x_adv)
        score = _score_graph(model, x_adv, y, targeted)
        if best is None:
            best, best_score = x_adv, score
        else:
            best = tf.where(tf.reshape(score > best_score, [-1, 1, 1, 1]), x_adv, best)
            best_score = tf.maximum(score, best_score)
    return tf.stop_gradient(best)


# ------------------------------------------------------------------------------------------------ entry points
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


def _arrays(x, y):
    return np.asarray(x, np.float32), np.asarray(y, np.int64)


_SCALAR = tf.TensorSpec((), tf.float32)
_SEED = tf.TensorSpec((2,), tf.int64)


def input_gradient(model, x, y, *, targeted: bool = False):
    """Gradient of the attacker's objective with respect to the input images, one per example.

    Untargeted: the gradient of the cross-entropy loss of the true labels ``y`` — moving along it makes the model
    *more wrong*.  Targeted (``y`` = target classes): the *negative* gradient of the loss toward the targets —
    moving along it makes the targets *more likely*.  Either way, adding it helps the attacker.
    Same shape as ``x``; the loss is summed over the batch, so each example's gradient is its own.
    """
    targeted = check_bool("targeted", targeted)
    if tracing(x, y):
        return _objective_gradient(model, x, y, targeted)
    _validate(model, x, y, 0.0, targeted)
    fn = compiled(model, "grad", (targeted,), partial(_objective_gradient, targeted=targeted), input_specs(model))
    out = batched(fn, _arrays(x, y))
    return np.asarray(x, np.float32).copy() if out is None else out


def gradient_attack(model, x, y, eps, *, scale: str = "sign", targeted: bool = False):
    """One gradient step of budget ``eps`` with step rule ``scale`` (see ``step_rule``), clipped to [0, 1].

    ``x' = clip(x + step_rule(∇ₓ objective, eps, scale), 0, 1)``.  With ``scale="sign"`` this is FGSM.
    """
    check_choice("scale", scale, SCALES)
    targeted = check_bool("targeted", targeted)
    if tracing(x, y, eps):
        return _fgsm_graph(model, x, y, eps, scale, targeted)
    eps = _validate(model, x, y, eps, targeted)
    fn = compiled(model, "step", (scale, targeted), partial(_fgsm_graph, scale=scale, targeted=targeted),
                  [*input_specs(model), _SCALAR])
    out = batched(fn, _arrays(x, y), (tf.constant(eps, tf.float32),))
    return np.asarray(x, np.float32).copy() if out is None else out


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
        random_start: bool = True, targeted: bool = False, restarts: int = 1, seed: int | None = None,
        early_stop: bool = False):
    """Projected Gradient Descent (Madry et al. 2018); with ``random_start=False`` and L∞ it is BIM.

    From a random point of the ε-ball (``random_start``), repeat ``steps`` times: step along the steepest-ascent
    direction of the ``norm`` (sign of the gradient for ``"inf"``, the L2-normalised gradient for ``"l2"``) by
    ``step_size`` (default 2.5·ε/steps), project back into the ε-ball around ``x``, clip to [0, 1].

    ``restarts`` > 1 runs the attack from several random starts and keeps, per example, the most successful
    result (misclassified — or, targeted, classified as the target — first, then highest objective); it needs
    ``random_start=True`` (without it every restart would repeat the same deterministic attack).
    ``seed`` fixes the random starts (default: drawn from NumPy's global generator); every chunk of
    ``EVAL_BATCH`` images and every restart draws its own.
    ``early_stop=True`` (for measuring accuracy) freezes each example at the first iterate where the attack
    succeeds and does not restart it: the same or a lower accuracy than without, in much less time.  Leave it off
    when you want the loss-maximising points (adversarial training, confidence plots).
    The result always satisfies ``||x' - x|| <= eps`` in the chosen norm and ``0 <= x' <= 1``.
    Called while tracing (inside your ``tf.function``) it returns a tensor; ``early_stop`` is then not available.
    """
    check_choice("norm", norm, NORMS)
    targeted = check_bool("targeted", targeted)
    random_start = check_bool("random_start", random_start)
    early_stop = check_bool("early_stop", early_stop)
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    if restarts > 1 and not random_start:
        raise ValueError(f"restarts={restarts} needs random_start=True: without a random start every restart "
                         "repeats the same deterministic attack")
    if tracing(x, y, eps):
        if early_stop:
            raise ValueError("early_stop=True is for eager evaluation; inside a tf.function use early_stop=False")
        eps_t = tf.cast(eps, tf.float32)
        size = default_step_size(eps_t, steps) if step_size is None else step_size
        # seed=None: a fresh seed at every call of the traced function (e.g. every training step); the stateful op
        # follows the global seed, so a seeded run stays reproducible.
        seed_t = (tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int64) if seed is None
                  else tf.constant([int(seed), 0], tf.int64))
        return _pgd_graph(model, x, y, eps_t, size, seed_t, steps=steps, norm=norm, random_start=random_start,
                          targeted=targeted, restarts=restarts)
    eps = _validate(model, x, y, eps, targeted)
    step_size = default_step_size(eps, steps) if step_size is None else check_eps(step_size, "step_size")
    x, y = _arrays(x, y)
    out, base_seed = x.copy(), _new_seed(seed)
    config = dict(steps=steps, norm=norm, random_start=random_start, targeted=targeted, restarts=restarts,
                  early_stop=early_stop)
    for c, i in enumerate(range(0, len(x), EVAL_BATCH)):
        out[i:i + EVAL_BATCH] = _pgd_chunk(model, x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH], eps, step_size,
                                           chunk_seed(base_seed, c), **config)
    return out


def _pgd_chunk(model, x, y, eps, step_size, seed, *, steps, norm, random_start, targeted, restarts, early_stop):
    """Eager PGD on one chunk: restarts and blocks of compiled steps driven from Python (see ``BLOCK_STEPS``)."""
    best, best_score = x.copy(), np.full(len(x), -np.inf, np.float32)
    todo = np.arange(len(x))
    scalars = (tf.constant(eps, tf.float32), tf.constant(step_size, tf.float32))
    for r in range(restarts):
        start = _start(tf.constant(x[todo]), scalars[0], norm, tf.random.experimental.stateless_fold_in(
            tf.constant(seed), r), random_start)
        x_adv, active, left = start.numpy(), np.arange(len(todo)), steps
        x_todo, y_todo, done = x[todo], y[todo], np.zeros(len(todo), bool)
        while left and active.size:
            k = min(BLOCK_STEPS, left)
            fn = compiled(model, "pgd-steps", (k, norm, targeted, early_stop), partial(
                _pgd_steps, steps=k, norm=norm, targeted=targeted, freeze=early_stop, fast=True),
                [input_specs(model)[0], *input_specs(model), _SCALAR, _SCALAR])
            for sub in _sub_batches(active):  # sub-batches: faster per image (see ATTACK_BATCH)
                moved, finished = fn(tf.constant(x_todo[sub]), tf.constant(x_adv[sub]), tf.constant(y_todo[sub]),
                                     *scalars)
                x_adv[sub], done[sub] = moved.numpy(), finished.numpy()
            active = active[~done[active]] if early_stop else active
            left -= k
        if restarts == 1 and not early_stop:
            return x_adv
        score = _attack_score(model, x_adv, y[todo], targeted)
        better = score > best_score[todo]
        best[todo[better]], best_score[todo[better]] = x_adv[better], score[better]
        if early_stop:
            todo = todo[best_score[todo] < 1.0]  # succeeded once: never attacked again
        if not todo.size:
            break
    return best


def _attack_score(model, x_adv, y, targeted):
    """Per-example score used to pick among restarts: success counts first, then the objective."""
    fn = compiled(model, "score", (targeted,), partial(_score_graph, targeted=targeted), list(input_specs(model)))
    return batched(fn, _arrays(x_adv, y))


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


# ------------------------------------------------------------------------ AutoAttack's attacks: APGD and Square
APGD_LOSSES = ("ce", "dlr")
_APGD_RHO = 0.75  # halve the step when fewer than this fraction of the steps since the last checkpoint helped
_APGD_MOMENTUM = 0.75
#: Square: initial fraction of pixels a square covers (AutoAttack's 0.8), and the query count its schedule of
#: square sizes is laid out for.  The schedule depends on the query *index* only, never on the budget, so a run
#: with more queries continues the run with fewer (same seed): more queries can never do worse.  At the default
#: budget of 1,000 queries it is AutoAttack's schedule (rescaled to the budget); measured on the PGD-trained MNIST
#: model at ε = 0.3, laying it out on 1,000 queries breaks 2.6 points more images in 1,000 queries than on 10,000
#: (the unscaled schedule), and as many as a schedule rescaled to 3,000 when given 3,000 queries.
SQUARE_P_INIT = 0.8
SQUARE_SCHEDULE_QUERIES = 1_000
SQUARE_BLOCK = 50  # queries per compiled block; finished images are dropped between blocks
__all__ += ["BLOCK_STEPS", "ATTACK_BATCH", "FAST_CONV_GRADIENT", "APGD_LOSSES", "dlr_loss", "margin", "apgd", "apgd_checkpoints",
            "square", "square_sides"]


def margin(logits, y):
    """``z_y - max_{j≠y} z_j`` per example (float32): positive while ``y`` wins, ≤ 0 once another class does."""
    logits = tf.cast(logits, tf.float32)
    onehot = tf.one_hot(y, tf.shape(logits)[-1], on_value=True, off_value=False)
    z_y = tf.reduce_sum(tf.where(onehot, logits, 0.0), axis=-1)
    return z_y - tf.reduce_max(tf.where(onehot, -np.inf, logits), axis=-1)


def dlr_loss(logits, y, *, targeted: bool = False):
    """Difference-of-logits-ratio loss (Croce & Hein 2020), per example, as the attacker's objective (maximised).

    Untargeted (``y`` = true classes): ``-(z_y - max_{j≠y} z_j) / (z_π1 - z_π3 + 1e-12)``, π sorting the logits in
    decreasing order.  Targeted (``y`` = target classes ``t``): ``-(z_c - z_t) / (z_π1 - (z_π3 + z_π4)/2 + 1e-12)``
    where ``c`` is the strongest non-target class (the true class while the image is still classified correctly;
    APGD-T writes the true class there, which the course's targeted convention does not pass).
    Both are unchanged when every logit of an example is shifted or scaled by a positive factor, so a model cannot
    hide behind large or saturated logits as it can with the cross-entropy.  Needs ≥ 3 classes (4 targeted).
    """
    logits = tf.cast(logits, tf.float32)
    k = 4 if targeted else 3
    if logits.shape[-1] is not None and logits.shape[-1] < k:
        raise ValueError(f"dlr_loss{' (targeted)' if targeted else ''} needs at least {k} classes, got logits of "
                         f"shape {tuple(logits.shape)}")
    top = tf.math.top_k(logits, k=k).values
    if targeted:
        return margin(logits, y) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + _TINY)


def _apgd_objective(loss, targeted):
    """The per-example objective APGD maximises, as ``fn(logits, y)``."""
    if loss == "dlr":
        return partial(dlr_loss, targeted=targeted)
    return _negated_ce if targeted else cross_entropy


def _negated_ce(logits, y):
    return -cross_entropy(logits, y)


def apgd_checkpoints(steps: int) -> dict:
    """``{iteration: window}``: after which (0-based) iterations APGD checks its progress, over how many steps.

    Checkpoints at ``ceil(p_j · steps)`` with p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)
    (Croce & Hein 2020), computed in whole steps as the reference implementation does.
    """
    window, shortest, shrink = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    checks, since = {}, 0
    for i in range(steps):
        since += 1
        if since == window:
            checks[i], window, since = window, max(window - shrink, shortest), 0
    return checks


def _apgd_start(x, eps, norm, seed):
    """APGD's random start (eager TF): a random point on the sphere of radius ε around ``x``, clipped to [0, 1]."""
    noise = (tf.random.stateless_uniform(x.shape, seed, -1.0, 1.0) if norm == "inf"
             else tf.random.stateless_normal(x.shape, seed))
    return tf.clip_by_value(x + step_rule(noise, eps, "max" if norm == "inf" else "l2"), 0.0, 1.0).numpy()


def _apgd_init(model, x_adv, y, eps, *, loss, targeted):
    """APGD's state at its start ``x_adv`` (TF code): one gradient pass."""
    obj, grad, logits = _loss_gradient(model, x_adv, y, False, _apgd_objective(loss, targeted), fast=True)
    n = tf.shape(x_adv)[:1]
    # (x_adv, x_prev, grad, step, x_best, grad_best, obj_best, obj_prev, n_up, best_at_check, halved_at_check,
    #  x_found, found): see _apgd_step
    return (x_adv, x_adv, grad, tf.fill(n, 2.0 * eps), x_adv, grad, obj, obj, tf.zeros(n), obj, tf.ones(n, tf.bool),
            x_adv, _success(logits, y, targeted))


def _apgd_move(x, x_adv, x_prev, grad, step, eps, norm, momentum):
    """Gradient step of per-example size ``step``, projection, then momentum (Croce & Hein's eq. 2), projected."""
    def into_ball(z):
        return tf.clip_by_value(x + project(z - x, eps, norm), 0.0, 1.0)

    z = into_ball(x_adv + step_rule(grad, tf.reshape(step, [-1, 1, 1, 1]), "sign" if norm == "inf" else "l2"))
    return into_ball(x_adv + momentum * (z - x_adv) + (1.0 - momentum) * (x_adv - x_prev))


def _apgd_step(model, x, y, eps, state, check, window, momentum, *, norm, loss, targeted):
    """One APGD iteration on a batch (TF code); at a checkpoint (``check``), halve the step where progress stalled."""
    x_adv, x_prev, grad, step, x_best, grad_best, obj_best, obj_prev, n_up, best_at_check, halved, x_found, found = (
        state)
    new = _apgd_move(x, x_adv, x_prev, grad, step, eps, norm, momentum)
    obj, grad, logits = _loss_gradient(model, new, y, False, _apgd_objective(loss, targeted), fast=True)
    fooled = _success(logits, y, targeted)
    x_found, found = _where(fooled, new, x_found), found | fooled
    n_up += tf.cast(obj > obj_prev, tf.float32)
    better = obj > obj_best
    x_best, grad_best = _where(better, new, x_best), _where(better, grad, grad_best)
    obj_best = tf.maximum(obj, obj_best)
    # Halve where fewer than ρ of the window's steps raised the objective, or where neither the step size nor the
    # best objective changed since the last checkpoint; the halved examples restart from their best point.
    halve = check & ((n_up <= window * _APGD_RHO) | (~halved & (best_at_check >= obj_best)))
    step = tf.where(halve, step / 2.0, step)
    moved, grad = _where(halve, x_best, new), _where(halve, grad_best, grad)
    halved, best_at_check = tf.where(check, halve, halved), tf.where(check, obj_best, best_at_check)
    n_up = tf.where(check, 0.0, n_up)
    return (moved, x_adv, grad, step, x_best, grad_best, obj_best, obj, n_up, best_at_check, halved, x_found, found)


def _where(cond, a, b):
    """Per-example ``tf.where`` on images: ``cond`` has shape ``(N,)``."""
    return tf.where(tf.reshape(cond, [-1] + [1] * (len(a.shape) - 1)), a, b)


def _apgd_steps(model, x, y, eps, *args, steps, norm, loss, targeted):
    """``steps`` APGD iterations, unrolled (TF code).  ``args``: the 13 state tensors, then per-step schedules
    ``checks`` (bool), ``windows`` and ``momenta`` (float32), each of length ``steps``."""
    state, (checks, windows, momenta) = tuple(args[:13]), args[13:]
    for j in range(steps):
        state = _apgd_step(model, x, y, eps, state, checks[j], windows[j], momenta[j], norm=norm, loss=loss,
                           targeted=targeted)
    return state


def _fold(seed, i):
    """A new ``[2]`` int64 stateless seed derived from ``seed`` and the integer ``i``."""
    return tf.cast(tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), i), tf.int64)


def _sub_batches(indices):
    """``indices`` split into near-equal groups of at most ``ATTACK_BATCH`` (no tiny last group)."""
    return np.array_split(indices, max(1, -(-len(indices) // ATTACK_BATCH))) if len(indices) else []


def _already_successful(model, x, y, targeted):
    """Per example: is the *clean* image already misclassified (targeted: already of the target class)?"""
    return _attack_score(model, x, y, targeted) >= 1.0


def _check_attack_model(model, loss="ce", targeted=False):
    classes = int(model.output_shape[-1])
    needed = (4 if targeted else 3) if loss == "dlr" else 2
    if classes < needed:
        raise ValueError(f"loss={loss!r}{' targeted' if targeted else ''} needs a model with at least {needed} "
                         f"classes, got {classes}")


def apgd(model, x, y, eps, *, loss: str = "ce", steps: int = 100, restarts: int = 1, norm: str = "inf",
         targeted: bool = False, seed: int | None = 0):
    """Auto-PGD (Croce & Hein 2020): PGD with momentum and a step size that tunes itself, per example.

    Threat model: white box (gradients), ``||x' - x|| <= eps`` in the ``norm`` (``"inf"`` or ``"l2"``), pixels in
    [0, 1]; untargeted (``y`` = true classes), or with ``targeted=True`` toward the classes ``y``.
    ``loss``: ``"ce"`` (cross-entropy) or ``"dlr"`` (``dlr_loss``: invariant to the scale of the logits, so it
    sees through models that only saturate their softmax).  From a random point on the ε-sphere, each of
    ``steps`` iterations takes a steepest-ascent step (sign of the gradient for L∞, its direction for L2) of
    per-example size η (first 2ε), projects, and adds momentum 0.75.  At checkpoints 22 %, 41 %, 57 %, … of the
    run (``apgd_checkpoints``) η halves wherever fewer than 75 % of the steps since the last checkpoint raised the
    objective, or neither η nor the best objective changed since it; those examples restart from their best point.
    As in AutoAttack, an image counts as broken as soon as one iterate is misclassified: images the model already
    gets wrong are returned unchanged, broken images drop out of the batch (their misclassified iterate is
    returned), and each of ``restarts`` random restarts only attacks images not broken yet; for the others the
    point of highest objective over all restarts is returned.  Costs ``steps + 1`` gradient passes per image and
    restart at most.  ``seed`` fixes the random starts (``None``: drawn from NumPy's global generator).
    Eager only (it drives compiled blocks of ``BLOCK_STEPS`` steps on sub-batches of ``ATTACK_BATCH`` images);
    inside your own ``tf.function`` use ``pgd``.
    """
    check_choice("loss", loss, APGD_LOSSES)
    check_choice("norm", norm, NORMS)
    targeted = check_bool("targeted", targeted)
    steps, restarts = check_positive_int(steps, "steps"), check_positive_int(restarts, "restarts")
    if tracing(x, y, eps):
        raise TypeError("apgd runs eagerly (compiled blocks driven from Python); inside a tf.function use pgd")
    eps = _validate(model, x, y, eps, targeted)
    _check_attack_model(model, loss, targeted)
    x, y = _arrays(x, y)
    out, base_seed = x.copy(), _new_seed(seed)
    if eps == 0.0 or not len(x):
        return out
    todo = np.flatnonzero(~_already_successful(model, x, y, targeted))
    config = dict(steps=steps, restarts=restarts, norm=norm, loss=loss, targeted=targeted)
    for c, i in enumerate(range(0, len(todo), EVAL_BATCH)):
        part = todo[i:i + EVAL_BATCH]
        out[part] = _apgd_chunk(model, x[part], y[part], eps, chunk_seed(base_seed, c), **config)
    return out


def _apgd_chunk(model, x, y, eps, seed, *, steps, restarts, norm, loss, targeted):
    """APGD with restarts on one chunk: broken images keep their misclassified point, the others their best."""
    best, best_obj, todo = x.copy(), np.full(len(x), -np.inf, np.float32), np.arange(len(x))
    for r in range(restarts):
        state = _apgd_run(model, x[todo], y[todo], eps, _fold(seed, r), steps=steps, norm=norm, loss=loss,
                          targeted=targeted)
        found, obj = state[12], state[6]
        best[todo[found]] = state[11][found]
        better = ~found & (obj > best_obj[todo])
        best[todo[better]], best_obj[todo[better]] = state[4][better], obj[better]
        todo = todo[~found]
        if not todo.size:
            break
    return best


def _apgd_specs(model, k):
    image = input_specs(model)[0]
    vec, flags = tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None,), tf.bool)
    state = [image, image, image, vec, image, image, vec, vec, vec, vec, flags, image, flags]
    schedule = [tf.TensorSpec((k,), tf.bool), tf.TensorSpec((k,), tf.float32), tf.TensorSpec((k,), tf.float32)]
    return [*input_specs(model), _SCALAR, *state, *schedule]


def _apgd_run(model, x, y, eps, seed, *, steps, norm, loss, targeted):
    """One APGD run from a random start: compiled blocks of ``BLOCK_STEPS`` steps on sub-batches of unbroken
    images.  Returns the 13 state arrays (see ``_apgd_init``)."""
    config = dict(norm=norm, loss=loss, targeted=targeted)
    checks, windows = np.zeros(steps, bool), np.zeros(steps, np.float32)
    for i, window in apgd_checkpoints(steps).items():
        checks[i], windows[i] = True, window
    momenta = np.full(steps, _APGD_MOMENTUM, np.float32)
    momenta[0] = 1.0  # the first step has no previous step to carry on
    eps_t = tf.constant(eps, tf.float32)
    init = compiled(model, "apgd-init", (loss, targeted), partial(_apgd_init, loss=loss, targeted=targeted),
                    [*input_specs(model), _SCALAR])
    start, state = _apgd_start(x, eps, norm, seed), None
    for sub in _sub_batches(np.arange(len(x))):
        part = [t.numpy() for t in init(tf.constant(start[sub]), tf.constant(y[sub]), eps_t)]
        state = [np.empty((len(x), *p.shape[1:]), p.dtype) for p in part] if state is None else state
        for s, p in zip(state, part):
            s[sub] = p
    active, i = np.flatnonzero(~state[12]), 0
    while i < steps and active.size:
        k = min(BLOCK_STEPS, steps - i)
        fn = compiled(model, "apgd-steps", (k, *config.values()), partial(_apgd_steps, steps=k, **config),
                      _apgd_specs(model, k))
        schedule = [tf.constant(a[i:i + k]) for a in (checks, windows, momenta)]
        for sub in _sub_batches(active):
            outs = fn(tf.constant(x[sub]), tf.constant(y[sub]), eps_t, *[tf.constant(s[sub]) for s in state],
                      *schedule)
            for s, o in zip(state, outs):
                s[sub] = o.numpy()
        active, i = active[~state[12][active]], i + k
    return state


def square_sides(queries: int, height: int, width: int) -> np.ndarray:
    """Side (pixels) of the square that Square tries at each of its ``queries - 1`` iterations after the first query.

    The fraction of pixels ``p`` starts at ``SQUARE_P_INIT`` and halves after 0.1 %, 0.5 %, 2 %, 5 %, 10 %, 20 %,
    40 %, 60 % and 80 % of ``SQUARE_SCHEDULE_QUERIES`` iterations (Andriushchenko et al.'s schedule; on a fixed
    horizon, so it never depends on the budget ``queries``), then stays at its smallest; side =
    ``round(sqrt(p · height · width))``, between 1 and ``min(height, width) - 1``.
    """
    halvings = np.array([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
    it = (np.arange(max(queries - 1, 0)) * (10_000 / SQUARE_SCHEDULE_QUERIES)).astype(np.int64)
    p = SQUARE_P_INIT / 2.0 ** np.searchsorted(halvings, it, side="left")
    sides = np.rint(np.sqrt(p * height * width)).astype(np.int32)
    return np.clip(sides, 1, max(min(height, width) - 1, 1))


def _square_init(model, x, y, eps, index, total, seed):
    """Square's start (TF code): vertical stripes of ±ε (one sign per image, column and channel); one query."""
    shape = tf.shape(x)
    signs = tf.gather(tf.random.stateless_uniform(tf.stack([total, shape[2], shape[3]]), seed), index) < 0.5
    x_adv = tf.clip_by_value(x + eps * tf.where(signs, -1.0, 1.0)[:, None], 0.0, 1.0)
    return x_adv, margin(model(x_adv, training=False), y)


def _square_candidate(x, x_best, eps, side, draw):
    """Each image's proposal (TF code): a ``side``×``side`` square at a random place set to ``x ± ε`` (one random
    sign per channel), clipped to [0, 1]; when that changes nothing, the signs of a random non-empty set of
    channels are flipped (the reference redraws until something changes)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    top = tf.cast(draw[:, 0] * tf.cast(height - side + 1, tf.float32), tf.int32)
    left = tf.cast(draw[:, 1] * tf.cast(width - side + 1, tf.float32), tf.int32)
    rows, cols = tf.range(height)[None], tf.range(width)[None]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    mask = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    sign = tf.where(draw[:, 3:] < 0.5, -1.0, 1.0)[:, None, None, :]
    flips = 1 + tf.cast(draw[:, 2] * (2.0**channels - 1.0), tf.int32)  # a non-empty set of channels, as bits
    flip = tf.bitwise.bitwise_and(tf.bitwise.right_shift(flips[:, None], tf.range(channels)[None]), 1)
    candidate = tf.where(mask, tf.clip_by_value(x + eps * sign, 0.0, 1.0), x_best)
    unchanged = tf.reduce_all(tf.abs(candidate - x_best) < 1e-7, axis=[1, 2, 3])
    flipped = sign * tf.where(flip > 0, -1.0, 1.0)[:, None, None, :]
    return _where(unchanged, tf.where(mask, tf.clip_by_value(x + eps * flipped, 0.0, 1.0), x_best), candidate)


def _square_steps(model, x, y, eps, x_best, best, used, index, total, seed, first, sides):
    """``len(sides)`` Square iterations on a batch (TF code, a graph loop), from global iteration ``first``.

    Each iteration queries one proposal per unbroken image (``best`` margin > 0) and keeps it when it lowers the
    margin.  The randomness of an image depends only on ``seed``, the iteration and its ``index`` among ``total``
    images, never on which other images are still in the batch.
    """
    channels = x.shape[3]

    def body(j, x_best, best, used):
        draw = tf.gather(tf.random.stateless_uniform(tf.stack([total, 3 + channels]), _fold(seed, first + j)), index)
        candidate = _square_candidate(x, x_best, eps, sides[j], draw)
        value = margin(model(candidate, training=False), y)
        active = best > 0.0
        better = active & (value < best)
        return (j + 1, _where(better, candidate, x_best), tf.where(better, value, best),
                used + tf.cast(active, tf.int32))

    def more(j, x_best, best, used):
        return (j < tf.shape(sides)[0]) & tf.reduce_any(best > 0.0)

    _, x_best, best, used = tf.while_loop(more, body, (0, x_best, best, used))
    return x_best, best, used


def square(model, x, y, eps, *, queries: int = 1000, norm: str = "inf", seed: int | None = 0,
           return_queries: bool = False):
    """Square attack (Andriushchenko et al. 2020): random search that only reads the model's output scores.

    Threat model: black box (scores, no gradients), untargeted, ``||x' - x||_∞ <= eps`` (``norm="inf"``; L2 is
    not implemented), pixels in [0, 1], at most ``queries`` model evaluations per image.
    It minimises the margin ``z_y - max_{j≠y} z_j`` (``margin``): the first query tries vertical stripes of ±ε;
    each further one sets a random square (side from ``square_sides``, shrinking as the search goes on) to
    ``x ± ε`` (random sign per channel) and keeps it when the margin drops.  Each image stops as soon as it is
    misclassified (margin ≤ 0); images the model already gets wrong are returned unchanged.  Gradient masking
    cannot fool it, which makes it the sanity check of a gradient-based evaluation.  ``queries=0`` returns ``x``.
    The schedule and every random draw depend only on ``seed`` and the query index, so with the same seed a
    larger budget continues the smaller one (never worse).  With ``return_queries=True`` it returns
    ``(x_adv, queries used per image)`` (0 for images misclassified to begin with).
    """
    check_choice("norm", norm, ("inf",))
    queries = check_positive_int(queries, "queries", minimum=0)
    return_queries = check_bool("return_queries", return_queries)
    if tracing(x, y, eps):
        raise TypeError("square runs eagerly (compiled blocks driven from Python), not inside a tf.function")
    eps = _validate(model, x, y, eps)
    x, y = _arrays(x, y)
    out, used = x.copy(), np.zeros(len(x), np.int64)
    if queries and eps > 0.0 and len(x):
        todo, base_seed = np.flatnonzero(~_already_successful(model, x, y, False)), _new_seed(seed)
        for c, i in enumerate(range(0, len(todo), EVAL_BATCH)):
            part = todo[i:i + EVAL_BATCH]
            out[part], used[part] = _square_chunk(model, x[part], y[part], eps, chunk_seed(base_seed, c), queries)
    return (out, used) if return_queries else out


def _square_chunk(model, x, y, eps, seed, queries):
    """Square on one chunk: the stripes query, then blocks of ``SQUARE_BLOCK`` iterations on sub-batches of the
    images not broken yet.  Returns ``(x_adv, queries used)``."""
    image, labels = input_specs(model)
    index, count = tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.int32)
    init = compiled(model, "square-init", (), _square_init, [image, labels, _SCALAR, index, count, _SEED])
    steps = compiled(model, "square-steps", (), _square_steps,
                     [image, labels, _SCALAR, image, tf.TensorSpec((None,), tf.float32), index, index, count,
                      _SEED, count, index])
    eps_t, total, seeds = tf.constant(eps, tf.float32), tf.constant(len(x), tf.int32), (_fold(seed, 0), _fold(seed, 1))
    x_best, best, used = np.empty_like(x), np.empty(len(x), np.float32), np.ones(len(x), np.int32)
    for sub in _sub_batches(np.arange(len(x), dtype=np.int32)):
        a, b = init(tf.constant(x[sub]), tf.constant(y[sub]), eps_t, tf.constant(sub), total, seeds[0])
        x_best[sub], best[sub] = a.numpy(), b.numpy()
    sides = square_sides(queries, x.shape[1], x.shape[2])
    active, i = np.flatnonzero(best > 0.0).astype(np.int32), 0
    while i < len(sides) and active.size:
        k = min(SQUARE_BLOCK, len(sides) - i)
        for sub in _sub_batches(active):
            outs = steps(tf.constant(x[sub]), tf.constant(y[sub]), eps_t, tf.constant(x_best[sub]),
                         tf.constant(best[sub]), tf.constant(used[sub]), tf.constant(sub), total, seeds[1],
                         tf.constant(i, tf.int32), tf.constant(sides[i:i + k]))
            x_best[sub], best[sub], used[sub] = (o.numpy() for o in outs)
        active, i = active[best[active] > 0.0], i + k
    return x_best, used

"""Gradient-based adversarial attacks, built from three small pieces (as in CleverHans):

1. ``input_gradient`` — the gradient of the attacker's objective with respect to the *input* images;
2. ``step_rule`` — turns that gradient into a step of a given size (``"raw"``, ``"max"``, ``"l2"``, ``"sign"``);
3. ``project`` — pulls a perturbation back into the ε-ball (L∞ or L2).

``gradient_attack`` and ``fgsm`` take one step; ``pgd`` loops over step + projection.  AutoAttack's attacks (Croce &
Hein 2020) complete the set in ``helpers.autoattack`` (``apgd``, ``dlr_loss``, ``square``, ...), built from this
module's public names (this module does not import it).  Every result is clipped to the valid pixel
range [0, 1].  Threat-model vocabulary: ``eps`` (budget, pixel-value units of [0, 1]), ``norm``
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
from ._compiled import (EVAL_BATCH, SCALAR_SPEC, batched, compiled, input_specs, new_seed, run_blocks, run_chunks,
                        tracing)
from .models import computes_in_float16

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
#: on a CPU); set to False before an attack is first compiled for a model to use TensorFlow's own gradient.  (Where
#: this TensorFlow lacks what it needs, ``FAST_CONV_AVAILABLE`` is False and TensorFlow's gradient is used anyway.)
FAST_CONV_GRADIENT = True
__all__ = ["SCALES", "NORMS", "per_example_loss", "input_gradient", "step_rule", "project", "gradient_attack",
           "fgsm", "default_step_size", "pgd", "random_noise", "EVAL_BATCH", "BLOCK_STEPS", "ATTACK_BATCH",
           "FAST_CONV_GRADIENT", "cross_entropy", "loss_gradient", "succeeded", "per_example_where",
           "check_attack_args", "already_successful"]


# ----------------------------------------------------------------------------------- the three pieces (TF code)
def cross_entropy(logits, y):
    """Cross-entropy of each example (shape ``(N,)``) from logits, in float32."""
    return keras.losses.sparse_categorical_crossentropy(y, tf.cast(logits, tf.float32), from_logits=True)


def per_example_loss(model, x, y):
    """Cross-entropy of each example (shape ``(N,)``), computed from the model's logits."""
    return cross_entropy(model(x, training=False), y)


def loss_gradient(model, x, y, targeted=False, loss_fn=cross_entropy, *, fast=False):
    """``(per-example loss, gradient of the attacker's objective w.r.t. x, logits)`` as TF code.

    The objective is the summed loss (each example's gradient is then its own, whatever the batch size), negated
    when ``targeted``.  On a mixed-precision model (float16 inside, float32 logits) the gradient of a confidently
    classified image underflows in float16 and ``sign(0) = 0`` would leave its pixels unmoved; so the gradient is
    back-propagated from the logits scaled per example to a largest entry of 1, then unscaled in float32: the
    attack sees the gradient the same weights give in float32.  With ``fast`` (while tracing; used by the attacks'
    own compiled blocks) a single-channel first convolution is differentiated faster (``_conv2d_gradient``).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    if fast and FAST_CONV_GRADIENT and FAST_CONV_AVAILABLE and not tf.executing_eagerly():
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
    if not computes_in_float16(model):
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
        return _TF_CONV2D_GRADIENT(op, grad)
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


def _resolve_tf_conv2d_gradient():
    """TensorFlow's own ``Conv2D`` gradient function, for the convolutions ``_conv2d_gradient`` leaves to it, with
    our gradient registered; None where this TensorFlow lacks a piece (``_Conv2DGrad`` is not public API, the
    gradient override is ``tf.compat.v1``): then the attacks differentiate with TensorFlow's gradient everywhere.
    Resolved once, at import."""
    try:
        from tensorflow.python.ops import nn_grad

        tf_gradient = nn_grad._Conv2DGrad  # noqa: SLF001
        tf.compat.v1.get_default_graph().gradient_override_map  # noqa: B018  (is the override still there?)
    except (ImportError, AttributeError):
        return None
    try:
        tf.RegisterGradient(_FAST_CONV2D_GRADIENT)(_conv2d_gradient)
    except KeyError:  # already registered: this module was reloaded
        pass
    return tf_gradient


_TF_CONV2D_GRADIENT = _resolve_tf_conv2d_gradient()
FAST_CONV_AVAILABLE = _TF_CONV2D_GRADIENT is not None


def _objective_gradient(model, x, y, targeted):
    """Gradient of the attacker's objective w.r.t. ``x`` (TF code; no validation)."""
    return loss_gradient(model, x, y, targeted)[1]


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


def _restart_seed(seed, r):
    """PGD's seed for restart ``r`` (graph and eager alike).  An int32 ``[2]`` seed, unlike ``_compiled.fold_seed``'s
    int64: the L2 start splits it, and a split depends on the dtype, so changing it would change every L2 start."""
    return tf.random.experimental.stateless_fold_in(seed, r)


def _start(x, eps, norm, seed, random_start):
    """Where an iterative attack starts: ``x`` itself, or a uniform random point of the ε-ball (clipped)."""
    if not random_start:
        return x
    return tf.clip_by_value(x + _random_in_ball(tf.shape(x), eps, norm, seed), 0.0, 1.0)


def succeeded(logits, y, targeted):
    """Per example (TF code): does the attack succeed on these logits (misclassified; targeted: the target wins)?"""
    pred = tf.argmax(logits, axis=-1, output_type=tf.int64)
    return tf.equal(pred, y) if targeted else tf.not_equal(pred, y)


def _fgsm_graph(model, x, y, eps, scale="sign", targeted=False):
    grad = loss_gradient(model, x, y, targeted, fast=True)[1]
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
        _, grad, logits = loss_gradient(model, x_adv, y, targeted, fast=fast)
        if freeze:
            done = tf.logical_or(done, succeeded(logits, y, targeted))
            grad = per_example_where(done, tf.zeros_like(grad), grad)
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
    return tf.cast(succeeded(logits, y, targeted), tf.float32) * 2.0 + tf.tanh(objective)


def _pgd_graph(model, x, y, eps, step_size, seed, *, steps, norm, random_start, targeted, restarts):
    """PGD as TF code, for use inside your own ``tf.function`` (e.g. a training step): every restart from its own
    random start, the best result per example kept.  Unrolled up to ``UNROLL_MAX_STEPS`` steps."""
    best = best_score = None
    for r in range(restarts):
        start = _start(x, eps, norm, _restart_seed(seed, r), random_start)
        x_adv, _ = _pgd_steps(model, x, start, y, eps, step_size, steps=steps, norm=norm, targeted=targeted,
                              unroll=steps <= UNROLL_MAX_STEPS, fast=True)
        if restarts == 1:
            return tf.stop_gradient(x_adv)
        score = _score_graph(model, x_adv, y, targeted)
        if best is None:
            best, best_score = x_adv, score
        else:
            best = per_example_where(score > best_score, x_adv, best)
            best_score = tf.maximum(score, best_score)
    return tf.stop_gradient(best)


def per_example_where(cond, a, b):
    """Per-example ``tf.where`` on images (TF code): ``cond`` has shape ``(N,)``."""
    return tf.where(tf.reshape(cond, [-1] + [1] * (len(a.shape) - 1)), a, b)


# ------------------------------------------------------------------------------------------------ entry points
def check_attack_args(model, x, y, eps, targeted=False) -> float:
    """Validate an attack's model, images, labels (or targets) and budget; return ``eps`` as a float."""
    if not callable(model):
        raise TypeError(f"model must be a Keras model (or callable returning logits), got {type(model).__name__}")
    check_images(x)
    n = int(np.shape(x)[0])
    if y is not None:
        label_name = "y (target classes)" if targeted else "y"
        check_labels(y, n, name=label_name)
        if not isinstance(model, keras.Model):
            raise TypeError("model must be a keras.Model for the compiled attacks")
        if model.input_shape[1:] != tuple(np.shape(x)[1:]):
            raise ValueError(f"x has images of shape {tuple(np.shape(x)[1:])} but the model expects "
                             f"{tuple(model.input_shape[1:])}")
        check_labels(y, n, name=label_name, num_classes=int(model.output_shape[-1]))  # and the class range
    return check_eps(eps)


def _arrays(x, y):
    return np.asarray(x, np.float32), np.asarray(y, np.int64)


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
    check_attack_args(model, x, y, 0.0, targeted)
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
    eps = check_attack_args(model, x, y, eps, targeted)
    fn = compiled(model, "step", (scale, targeted), partial(_fgsm_graph, scale=scale, targeted=targeted),
                  [*input_specs(model), SCALAR_SPEC])
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
    eps = check_attack_args(model, x, y, eps, targeted)
    step_size = default_step_size(eps, steps) if step_size is None else check_eps(step_size, "step_size")
    x, y = _arrays(x, y)
    config = dict(steps=steps, norm=norm, random_start=random_start, targeted=targeted, restarts=restarts,
                  early_stop=early_stop)
    return run_chunks(lambda xc, yc, seed_c: _pgd_chunk(model, xc, yc, eps, step_size, seed_c, **config), x, y,
                      new_seed(seed), (x.copy(),), batch=EVAL_BATCH)[0]


def _pgd_chunk(model, x, y, eps, step_size, seed, *, steps, norm, random_start, targeted, restarts, early_stop):
    """Eager PGD on one chunk: restarts and blocks of compiled steps driven from Python (see ``BLOCK_STEPS``)."""
    best, best_score = x.copy(), np.full(len(x), -np.inf, np.float32)
    todo = np.arange(len(x))
    scalars = (tf.constant(eps, tf.float32), tf.constant(step_size, tf.float32))

    def block(i, k):
        return compiled(model, "pgd-steps", (k, norm, targeted, early_stop), partial(
            _pgd_steps, steps=k, norm=norm, targeted=targeted, freeze=early_stop, fast=True),
            [input_specs(model)[0], *input_specs(model), SCALAR_SPEC, SCALAR_SPEC]), scalars

    for r in range(restarts):
        x_todo, y_todo, done = x[todo], y[todo], np.zeros(len(todo), bool)
        x_adv = _start(tf.constant(x_todo), scalars[0], norm, _restart_seed(tf.constant(seed), r), random_start).numpy()
        run_blocks(block, steps, BLOCK_STEPS, (x_todo, x_adv, y_todo), (x_adv, done),
                   (lambda rows: ~done[rows]) if early_stop else None, batch=ATTACK_BATCH)
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


def already_successful(model, x, y, targeted) -> np.ndarray:
    """Per example: is the *clean* image already misclassified (targeted: already of the target class)?"""
    return _attack_score(model, x, y, targeted) >= 1.0


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

"""Certification by interval bound propagation (IBP): *prove* that no perturbation in the ε-ball changes a prediction.

Threat model: the L∞ ball of radius ``eps`` (pixel-value units of [0, 1]; the float64 number given) around each
image, intersected with the valid pixel range [0, 1].  IBP pushes a box (one interval per value) through the
network, layer by layer:

- affine layers (``Dense``, ``Conv2D``) in centre/radius form: ``μ' = W μ + b``, ``r' = |W| r``;
- monotone layers (ReLU, max-pooling, flattening) map the lower and the upper end of the box separately.

The result brackets every logit the model can produce inside the ball.  The bounds are **sound** (every point of
the ball ∩ [0, 1] gives logits inside them) but **loose** (the box grows with depth, so most boxes hold logits no
input reaches).  A certificate is therefore a proof, and its absence proves nothing: certified accuracy is a
*lower* bound on robust accuracy, the accuracy under an attack (PGD) an *upper* bound.

Rounding.  ``certified``, ``certified_accuracy`` and ``margin_bounds`` are proofs in floating point too: a
certificate says that for every input of the ball both the exact real-valued network with the model's weights
*and* the model's own float32 forward pass give ``y`` a larger logit than every other class (a tie is no proof).
Assumed: the float32 pass computes each ``Dense``/``Conv2D`` output as a float32 sum of float32 products plus the
bias, in any order, with or without fused multiply-add (IEEE round-to-nearest, as TensorFlow's CPU kernels do; not
covered: TensorFloat-32, on by default for float32 matrix products on NVIDIA GPUs since Ampere, bfloat16 "fast
math" modes, Winograd or FFT convolutions); ReLU, max-pooling and flattening are exact.  Then each such output is
within ``c·(|W|·|h| + |b|) + a`` of the exact one (Higham 2002, *Accuracy and Stability of Numerical Algorithms*,
§3.1): ``n`` = fan-in + 3, ``c = γ_n = n·2⁻²⁴ / (1 - n·2⁻²⁴)`` (1e-4 for the 1,600 inputs of the course CNN's dense
layer), ``a = n·2⁻¹⁴⁹`` for underflow.  So the certification path computes its bounds in **float64**, widens the
box after every affine layer by that allowance (with ``|h| <= max(|lower|, |upper|)``), so that it holds the exact
and the float32 activations alike, and takes the allowance of both logits off every elided margin; ``c`` also
carries ``8·γ_(n+8)`` of float64, which covers the rounding of the float64 computation itself (1e-9 of the rest).
A margin counts when its bound is > 0.  The allowance is a worst case over summation orders: a few hundredths of a
logit for the course CNN (its actual float32 error is ~1e-5), enough to withhold a certificate from the few images
whose top two logits are that close.  Why float64 rather than float32 bounds rounded outwards: the bounds then do
not depend on how the float32 kernels round (TensorFloat-32, fast math), and the allowance for the model's own
rounding is needed either way; the price is the float64 passes, about three times slower on a CPU.  Layers
computing in float16 (mixed precision) are refused there: float16 rounding, in sums of hundreds of terms, would
swamp every margin — certify a float32 copy.  ``interval_bounds``, ``layer_bounds`` and ``worst_case_logits`` stay
in float32 and are sound only up to float32 rounding (they are for plotting and training).

Cheap enough to sit inside a training step: ``worst_case_logits`` gives the "specification" logits of Gowal et al.
(2019), whose cross-entropy is the IBP training loss.  Supported layers: those of ``models.build_model``
(``SUPPORTED_LAYERS``, with ``relu`` or ``linear`` activations) in a single chain from input to logits; float16
(mixed-precision) models are bounded in float32 by ``interval_bounds``.  Bounds are those of the model at inference
(``Dropout`` is the identity).  Called eagerly, the public functions validate their arguments and run a compiled
``tf.function`` on whole batches, returning NumPy arrays; called while TensorFlow is tracing they return tensors.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_eps, check_images, check_labels
from ._compiled import batched, compiled, input_specs, tracing

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

L = keras.layers
#: Layer classes IBP can bound (exact classes, not subclasses, whose ``call`` could do anything).
SUPPORTED_LAYERS = (L.InputLayer, L.Conv2D, L.Dense, L.ReLU, L.Activation, L.MaxPooling2D, L.Flatten, L.Dropout)
#: Activations allowed in ``Dense``, ``Conv2D`` and ``Activation`` layers.
SUPPORTED_ACTIVATIONS = ("relu", "linear")


# ---------------------------------------------------------------------------------------- the model as a chain
def _activation_name(fn) -> str:
    if fn is None or fn is keras.activations.linear:
        return "linear"
    if fn is keras.activations.relu:
        return "relu"
    return getattr(fn, "__name__", repr(fn))


def _check_layer(layer) -> None:
    """Raise ValueError, naming the layer and what is supported, unless IBP can bound ``layer``."""
    kind = type(layer).__name__
    supported = ", ".join(c.__name__ for c in SUPPORTED_LAYERS)
    if type(layer) not in SUPPORTED_LAYERS:
        raise ValueError(f"layer {layer.name!r} of class {kind} is not supported by interval bound propagation; "
                         f"supported layers: {supported} (activations: {', '.join(SUPPORTED_ACTIVATIONS)})")
    act = _activation_name(getattr(layer, "activation", None))
    if act not in SUPPORTED_ACTIVATIONS:
        raise ValueError(f"layer {layer.name!r} ({kind}) has activation {act!r}, which interval bound propagation "
                         f"does not support here; allowed activations: {', '.join(SUPPORTED_ACTIVATIONS)}")
    if getattr(layer.dtype_policy, "quantization_mode", None):
        raise ValueError(f"layer {layer.name!r} ({kind}) is quantized "
                         f"({layer.dtype_policy.quantization_mode}); only float layers can be bounded")


def layer_chain(model) -> list:
    """The layers of ``model`` from input to logits (input layer left out), checked one by one.

    Walks the model's layers forward through their public ``input``/``output``, so it accepts functional and
    built ``Sequential`` models whose layers form a single chain; raises ValueError on branches, unsupported layers or activations.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        raise ValueError(f"model {model.name!r} has no layer graph to follow: IBP needs a functional model or a "
                         "Sequential model built with an input shape (not a subclassed model)")
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"IBP needs a model with one input and one output; {model.name!r} has {len(inputs)} "
                         f"inputs and {len(outputs)} outputs")
    chain, tensor = [], inputs[0]
    for layer in model.layers:  # functional and Sequential models list their layers in graph order
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            layer_in, layer_out = layer.input, layer.output  # public; raise if the layer is used more than once
        except (AttributeError, ValueError):
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) is used more than once; IBP here "
                             "needs a single chain of layers from the input to the logits") from None
        if isinstance(layer_in, (list, tuple, dict)):
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) takes {len(layer_in)} inputs; IBP "
                             "here needs a single chain of layers from the input to the logits")
        if layer_in is not tensor:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) does not take the previous layer's "
                             "output: the model branches, or shares the layer with another model (build it from "
                             "layers of its own); IBP here needs a single chain from the input to the logits")
        _check_layer(layer)
        chain.append(layer)
        tensor = layer_out
    if tensor is not outputs[0]:
        raise ValueError(f"the layers of {model.name!r} do not form a single chain ending at its output; IBP here "
                         "needs a single chain of layers from the input to the logits")
    if len(outputs[0].shape) != 2:
        raise ValueError(f"IBP needs logits of shape (N, classes); {model.name!r} returns {outputs[0].shape}")
    return chain


# ------------------------------------------------------------------------------------- rounding allowances
#: Unit roundoff of float64, in which the certification path computes its bounds.
_U64 = 2.0 ** -53


def _gamma(n: int, unit: float) -> float:
    """Higham's ``γ_n = n·u / (1 - n·u)``, the relative error bound of ``n`` roundings (inf when ``n·u >= 1/2``)."""
    return n * unit / (1.0 - n * unit) if n * unit < 0.5 else float("inf")


def _rounding(layer) -> tuple:
    """``(c, a, limit)`` for an affine ``layer`` as the deployed model computes it (see the module docstring).

    Every output of the deployed layer is within ``c·(|W|·|h| + |b|) + a`` of the exact ``W h + b``, for any
    summation order, with or without FMA: ``n`` = fan-in + 3 roundings at most (products, additions, the bias),
    ``a = n·(smallest subnormal)`` for products that underflow.  ``c`` also holds ``8·γ_(n+8)`` of float64 for the
    rounding of the bound computation itself.  ``limit``: the largest finite value of the layer's compute dtype.
    """
    info = np.finfo(np.dtype(layer.compute_dtype))
    n = int(np.prod(layer.kernel.shape[:-1])) + 3
    c = _gamma(n, float(info.eps) / 2) + 8 * _gamma(n + 8, _U64)
    return c, n * float(info.smallest_subnormal), float(info.max)


def _check_rounding_covered(chain) -> None:
    """Raise ValueError, naming the layer, unless the rounding analysis of the certificates covers ``chain``."""
    for layer in chain:
        kind = type(layer).__name__
        if kind in ("Dense", "Conv2D") and (layer.compute_dtype not in ("float32", "float64")
                                            or layer.kernel.dtype != layer.compute_dtype):
            raise ValueError(f"layer {layer.name!r} ({kind}) computes in {layer.compute_dtype} with "
                             f"{layer.kernel.dtype} weights; certificates cover layers computing in float32 or "
                             "float64 with weights of that dtype (float16 rounding would swamp every margin): "
                             "certify a float32 copy, e.g. build_model(..., mixed_precision=False) + set_weights")
        if type(layer) is L.ReLU and (layer.negative_slope or layer.threshold or (
                layer.max_value is not None and float(np.float32(layer.max_value)) != layer.max_value)):
            raise ValueError(f"ReLU layer {layer.name!r} has negative_slope={layer.negative_slope}, threshold="
                             f"{layer.threshold}, max_value={layer.max_value}; certificates cover the exact "
                             "max(x, 0), optionally capped at a max_value that float32 represents exactly")


# ------------------------------------------------------------------------------------- propagation (TF code)
def _input_box(x, eps, dtype=tf.float32):
    """The L∞ ball of radius ``eps`` around ``x``, clipped to the pixel range [0, 1], in ``dtype``."""
    x = tf.cast(x, dtype)
    eps = tf.cast(eps, dtype)
    return tf.clip_by_value(x - eps, 0.0, 1.0), tf.clip_by_value(x + eps, 0.0, 1.0)


def _affine(layer, lower, upper, sound=False):
    """Bounds after a ``Dense``/``Conv2D`` (before its activation): ``μ' = W μ + b``, ``r' = |W| r``.

    In the dtype of ``lower`` (float32, or float64 when ``sound``).  ``sound``: the radius also takes the rounding
    allowance ``c·(|W|·m + |b|) + a`` (``_rounding``; ``m = max(|lower|, |upper|)``), computed as
    ``|W|·(r + c·m) + c·|b| + a``, so the box holds the deployed float32 outputs too; where ``r' / c`` (which
    bounds every partial sum) leaves the compute dtype's range, the deployed layer may overflow: no bound.
    """
    dtype = lower.dtype
    mu, r = (upper + lower) / 2.0, (upper - lower) / 2.0
    if sound:
        c, a, limit = _rounding(layer)
        r = r + c * tf.maximum(-lower, upper)  # lower <= upper, so this is max(|lower|, |upper|)
    w = tf.cast(layer.kernel, dtype)  # float32 even when the layer computes in float16 (unless sound: float64)
    if type(layer) is L.Dense:
        mu, r = keras.ops.matmul(mu, w), keras.ops.matmul(r, tf.abs(w))
    else:
        mu, r = layer.convolution_op(mu, w), layer.convolution_op(r, tf.abs(w))
    if layer.use_bias:
        b = tf.cast(layer.bias, dtype)
        if type(layer) is L.Conv2D and layer.data_format == "channels_first":
            b = tf.reshape(b, (1, -1, 1, 1))
        mu = mu + b
        if sound:
            r = r + c * tf.abs(b)
    if sound:
        r = r + a
        r = tf.where(r > c * limit, tf.constant(np.inf, dtype), r)
    return mu - r, mu + r


def _propagate(chain, lower, upper, sound=False):
    """Push the box ``[lower, upper]`` through ``chain`` (from ``layer_chain``); returns the output box."""
    for layer in chain:
        kind = type(layer)
        if kind in (L.Dense, L.Conv2D):
            lower, upper = _affine(layer, lower, upper, sound)
        if kind in (L.ReLU, L.MaxPooling2D, L.Flatten):
            # Monotone non-decreasing, element by element: the ends of the box map to the ends of the new box.
            lower, upper = layer.call(lower), layer.call(upper)
        elif _activation_name(getattr(layer, "activation", None)) == "relu":
            lower, upper = tf.nn.relu(lower), tf.nn.relu(upper)
        # InputLayer, Dropout (at inference) and linear activations are the identity.
    return lower, upper


def layer_bounds(model, x, eps) -> list:
    """``[(layer name, lower, upper), ...]``: the box after every layer of ``model`` (after its activation), for
    looking at how interval bounds grow through the network.  Eager, NumPy arrays; the first entry is the input box.
    """
    _validate(model, x, None, eps)
    lower, upper = _input_box(np.asarray(x, np.float32), check_eps(eps))
    out = [("input", lower.numpy(), upper.numpy())]
    for layer in layer_chain(model):
        if type(layer) is L.InputLayer:
            continue
        lower, upper = _propagate([layer], lower, upper)
        out.append((layer.name, lower.numpy(), upper.numpy()))
    return out


def _interval_graph(chain, x, eps):
    return _propagate(chain, *_input_box(x, eps))


def _elided_margin(last, lower, upper, y, sound):
    """Lower bounds of ``z_y - z_j`` (``(N, K)``) through the linear ``Dense`` layer ``last`` from the box of its
    input; ``sound``: minus the rounding allowances ``e_y + e_j`` of the two deployed logits (``_rounding``)."""
    dtype = lower.dtype
    mu, r = (upper + lower) / 2.0, (upper - lower) / 2.0
    w = tf.cast(last.kernel, dtype)                            # (D, K)
    diff = tf.gather(tf.transpose(w), y)[:, :, None] - w[None]  # (N, D, K): w_y - w_j, per example
    margin = tf.einsum("nd,ndk->nk", mu, diff) - tf.einsum("nd,ndk->nk", r, tf.abs(diff))
    if last.use_bias:
        b = tf.cast(last.bias, dtype)
        margin = margin + (tf.gather(b, y)[:, None] - b[None, :])
    if sound:
        c, a, limit = _rounding(last)
        e = c * keras.ops.matmul(tf.maximum(-lower, upper), tf.abs(w)) + a  # (N, K): the allowance of each logit
        if last.use_bias:
            e = e + c * tf.abs(b)
        e = tf.where(e > c * limit, tf.constant(np.inf, dtype), e)            # the deployed logit may overflow
        margin = margin - (tf.gather(e, y, batch_dims=1)[:, None] + e)
    return margin


def _margin_graph(chain, x, y, eps, sound=False):
    """Lower bounds of ``z_y - z_j`` (shape ``(N, K)``, 0 at ``j = y``), the last Dense layer elided when linear.

    ``sound=False``: float32 (``worst_case_logits``).  ``sound=True``: float64 bounds that also cover the rounding
    of the deployed float32 model (module docstring); a bound that overflowed is ``-inf``.
    """
    y = tf.cast(y, tf.int64)
    box = _input_box(x, eps, tf.float64 if sound else tf.float32)
    last = chain[-1] if chain else None
    margin = None
    if type(last) is L.Dense and _activation_name(last.activation) == "linear":
        lower, upper = _propagate(chain[:-1], *box, sound)
        if lower.shape.rank == 2:
            margin = _elided_margin(last, lower, upper, y, sound)
            if not sound:
                return margin  # exactly 0 at j = y already (and differentiable as it is)
    if margin is None:  # the looser difference of the logit intervals, lower(z_y) - upper(z_j)
        lower, upper = _propagate(chain, *box, sound)
        margin = tf.gather(lower, y, batch_dims=1)[:, None] - upper
    margin = tf.where(_is_label(y, tf.shape(margin)[-1]), tf.zeros_like(margin), margin)
    if sound:  # inf - inf (an overflowed bound) is no bound at all
        margin = tf.where(tf.math.is_nan(margin), tf.constant(-np.inf, margin.dtype), margin)
    return margin


def _is_label(y, num_classes):
    """Boolean ``(N, K)`` mask, True at ``j = y``."""
    return tf.equal(tf.range(tf.cast(num_classes, tf.int64))[None, :], y[:, None])


def _sound_margin_graph(chain, x, y, eps):
    return _margin_graph(chain, x, y, eps, sound=True)


def _certified_graph(chain, x, y, eps):
    margin = _sound_margin_graph(chain, x, y, eps)
    is_label = _is_label(tf.cast(y, tf.int64), tf.shape(margin)[-1])
    return tf.reduce_all(tf.logical_or(is_label, margin > 0.0), axis=-1)


# ------------------------------------------------------------------------------------------- public functions
def _validate(model, x, y, eps) -> float:
    """Eager argument checks shared by the public functions; returns ``eps`` as a float."""
    check_images(x)
    want = tuple(model.input_shape[1:])
    if tuple(np.shape(x)[1:]) != want:
        raise ValueError(f"x has images of shape {tuple(np.shape(x)[1:])} but the model expects {want}")
    if y is not None:
        check_labels(y, int(np.shape(x)[0]), num_classes=int(model.output_shape[-1]))
    return check_eps(eps)


def _run(model, kind, graph, x, y, eps, eps_dtype=tf.float32):
    """Eager path: validate, then run ``graph`` compiled over whole batches; returns NumPy array(s).

    ``eps`` is passed to ``graph`` in ``eps_dtype`` (float64 for the certificates: the number the caller gave).
    """
    eps = _validate(model, x, y, eps)
    x_spec, y_spec = input_specs(model)
    specs = [x_spec] + ([y_spec] if y is not None else []) + [tf.TensorSpec((), eps_dtype)]
    fn = compiled(model, kind, (), lambda m, *args: graph(layer_chain(m), *args), specs)
    arrays = (np.asarray(x, np.float32),) + (() if y is None else (np.asarray(y, np.int64),))
    out = batched(fn, arrays, (tf.constant(eps, eps_dtype),))
    if out is None:
        raise ValueError("x must hold at least one image, got an empty batch")
    return out


def interval_bounds(model, x, eps):
    """``(lower, upper)``: bounds on every logit over the L∞ ball of radius ``eps`` around ``x`` ∩ [0, 1].

    Shapes ``(N, classes)``, float32.  For every ``x'`` with ``|x' - x|∞ <= eps`` and ``0 <= x' <= 1``:
    ``lower <= model(x') <= upper`` (up to float32 rounding; a float16 model's own rounding can stray further).
    At ``eps = 0`` both equal the logits.  Sound but loose: see the module docstring.  Computed in float32 without
    rounding allowances, unlike ``margin_bounds`` and ``certified``.
    """
    chain = layer_chain(model)
    if tracing(x, eps):
        return _interval_graph(chain, x, eps)
    return _run(model, "ibp-interval", _interval_graph, x, None, eps)


def margin_bounds(model, x, y, eps):
    """Lower bounds of the margins ``z_y - z_j`` over the ε-ball ∩ [0, 1], shape ``(N, classes)``, 0 at ``j = y``.

    The last ``Dense`` layer (when its activation is linear, as in the course's models) is *elided* into the
    margin: with ``h`` the penultimate activations, bounded by IBP in centre/radius form ``(μ, r)``,
    ``z_y - z_j = (w_y - w_j)·h + (b_y - b_j) >= (w_y - w_j)·μ - |w_y - w_j|·r + (b_y - b_j)``.
    This is never looser, and usually much tighter, than ``lower_y - upper_j`` from ``interval_bounds``, which
    lets ``w_y·h`` and ``w_j·h`` take their extremes at two different ``h``.  A margin bound > 0 for every
    ``j != y`` proves that no input of the ball is classified other than ``y``.

    Float64, and sound in floating point: the bounds hold for the exact network and for the model's float32
    forward pass, whose rounding allowance (about 10⁻⁴ relative for the course CNN) they include — see "Rounding"
    in the module docstring.  Raises ValueError for layers that analysis does not cover (float16 ones).
    """
    return _sound(model, "ibp-margin", _sound_margin_graph, x, y, eps)


def certified(model, x, y, eps):
    """Per example: is the prediction ``y`` *proved* for the whole ε-ball ∩ [0, 1] (all margin bounds > 0)?

    A proof for the exact network and for the model's float32 forward pass alike (``margin_bounds``, which
    include the rounding allowance); a tie, or a margin thinner than the model's rounding, is no proof.
    """
    proved = _sound(model, "ibp-certified", _certified_graph, x, y, eps)
    return proved if tracing(x, y, eps) else proved.astype(bool)


def _sound(model, name: str, graph, x, y, eps):
    """``graph(chain, x, y, eps)`` on the checked layer chain of ``model`` in float64: traced into the caller's
    graph, or run eagerly as the compiled function ``name`` on arrays."""
    chain = layer_chain(model)
    _check_rounding_covered(chain)
    if tracing(x, y, eps):
        return graph(chain, x, y, eps)
    return _run(model, name, graph, x, y, eps, tf.float64)


def certified_accuracy(model, x, y, eps) -> float:
    """Fraction of ``x`` whose correct classification ``y`` is proved for the whole ε-ball ∩ [0, 1] (IBP).

    A lower bound on the accuracy under *any* L∞ attack of budget ``eps``; ``evaluate.accuracy_under_attack``
    with PGD gives an upper bound.  Certified ≤ robust ≤ clean accuracy.
    """
    if len(np.shape(x)) and np.shape(x)[0] == 0:
        raise ValueError("certified_accuracy needs at least one example, got an empty batch")
    return float(np.mean(certified(model, x, y, eps)))


def worst_case_logits(model, x, y, eps):
    """The "specification" logits of IBP training (Gowal et al. 2019), as a tensor (TF code, differentiable).

    ``ẑ_j = -margin_bounds_j``, an upper bound of ``z_j - z_y`` over the ε-ball, and ``ẑ_y = 0``, computed in
    float32 without the rounding allowances of ``margin_bounds`` (a training loss needs no proof):
    ``CE(ẑ, y)`` is an upper bound of the worst-case cross-entropy in the ball, the IBP robust loss.
    Gradients flow to the model's weights, so it can be used in a ``train_step``; ``eps`` may be a tensor or a
    ``tf.Variable`` (an ε ramp).  Eagerly it validates its arguments and computes without compiling (so a
    surrounding ``GradientTape`` records it); it always returns a tensor.
    """
    chain = layer_chain(model)
    if not tracing(x, y, eps):
        _validate(model, x, y, eps)
    return -_margin_graph(chain, x, y, eps)

"""Certification by interval bound propagation (IBP): *prove* that no perturbation in the ε-ball changes a prediction.

Threat model: the L∞ ball of radius ``eps`` (pixel-value units of [0, 1]) around each image, intersected with the
valid pixel range [0, 1].  IBP pushes a box (one interval per value) through the network, layer by layer:

- affine layers (``Dense``, ``Conv2D``) in centre/radius form: ``μ' = W μ + b``, ``r' = |W| r``;
- monotone layers (ReLU, max-pooling, flattening) map the lower and the upper end of the box separately.

The result brackets every logit the model can produce inside the ball.  The bounds are **sound** (every point of
the ball ∩ [0, 1] gives logits inside them, up to float32 rounding) but **loose** (the box grows with depth, so
most boxes hold logits no input reaches).  A certificate is therefore a proof, and its absence proves nothing:
certified accuracy is a *lower* bound on robust accuracy, the accuracy under an attack (PGD) an *upper* bound.

Cheap enough to sit inside a training step: ``worst_case_logits`` gives the "specification" logits of Gowal et al.
(2019), whose cross-entropy is the IBP training loss.  Supported layers: those of ``models.build_model``
(``SUPPORTED_LAYERS``, with ``relu`` or ``linear`` activations) in a single chain from input to logits; float16
(mixed-precision) models are bounded in float32.  Bounds are those of the model at inference (``Dropout`` is the
identity).  Called eagerly, the public functions validate their arguments and run a compiled ``tf.function`` on
whole batches, returning NumPy arrays; called while TensorFlow is tracing they return tensors.
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

    Follows the model's own graph backwards from its output, so it accepts functional and built ``Sequential``
    models whose layers form a single chain; raises ValueError on branches, unsupported layers or activations.
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
    chain, tensor = [], outputs[0]
    while tensor is not inputs[0]:
        layer, node_index, _ = tensor._keras_history
        node = layer._inbound_nodes[node_index]
        if len(node.input_tensors) != 1:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}) takes {len(node.input_tensors)} "
                             "inputs; IBP here needs a single chain of layers from the input to the logits")
        _check_layer(layer)
        chain.append(layer)
        tensor = node.input_tensors[0]
    if len(outputs[0].shape) != 2:
        raise ValueError(f"IBP needs logits of shape (N, classes); {model.name!r} returns {outputs[0].shape}")
    return chain[::-1]


# ------------------------------------------------------------------------------------- propagation (TF code)
def _input_box(x, eps):
    """The L∞ ball of radius ``eps`` around ``x``, clipped to the pixel range [0, 1]."""
    x = tf.cast(x, tf.float32)
    eps = tf.cast(eps, tf.float32)
    return tf.clip_by_value(x - eps, 0.0, 1.0), tf.clip_by_value(x + eps, 0.0, 1.0)


def _affine(layer, lower, upper):
    """Bounds after a ``Dense``/``Conv2D`` (before its activation): ``μ' = W μ + b``, ``r' = |W| r``."""
    mu, r = (upper + lower) / 2.0, (upper - lower) / 2.0
    w = tf.cast(layer.kernel, tf.float32)  # float32 even when the layer computes in float16
    if type(layer) is L.Dense:
        mu, r = keras.ops.matmul(mu, w), keras.ops.matmul(r, tf.abs(w))
    else:
        mu, r = layer.convolution_op(mu, w), layer.convolution_op(r, tf.abs(w))
    if layer.use_bias:
        b = tf.cast(layer.bias, tf.float32)
        if type(layer) is L.Conv2D and layer.data_format == "channels_first":
            b = tf.reshape(b, (1, -1, 1, 1))
        mu = mu + b
    return mu - r, mu + r


def _propagate(chain, lower, upper):
    """Push the box ``[lower, upper]`` through ``chain`` (from ``layer_chain``); returns the output box."""
    for layer in chain:
        kind = type(layer)
        if kind in (L.Dense, L.Conv2D):
            lower, upper = _affine(layer, lower, upper)
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


def _margin_graph(chain, x, y, eps):
    """Lower bounds of ``z_y - z_j`` (shape ``(N, K)``, 0 at ``j = y``), the last Dense layer elided when linear."""
    y = tf.cast(y, tf.int64)
    last = chain[-1] if chain else None
    if type(last) is L.Dense and _activation_name(last.activation) == "linear":
        lower, upper = _propagate(chain[:-1], *_input_box(x, eps))
        if lower.shape.rank == 2:
            mu, r = (upper + lower) / 2.0, (upper - lower) / 2.0
            w = tf.cast(last.kernel, tf.float32)                       # (D, K)
            diff = tf.gather(tf.transpose(w), y)[:, :, None] - w[None]  # (N, D, K): w_y - w_j, per example
            margin = tf.einsum("nd,ndk->nk", mu, diff) - tf.einsum("nd,ndk->nk", r, tf.abs(diff))
            if last.use_bias:
                b = tf.cast(last.bias, tf.float32)
                margin = margin + (tf.gather(b, y)[:, None] - b[None, :])
            return margin
    # Otherwise: the looser difference of the logit intervals, lower(z_y) - upper(z_j).
    lower, upper = _interval_graph(chain, x, eps)
    onehot = _is_label(y, tf.shape(upper)[-1])
    margin = tf.gather(lower, y, batch_dims=1)[:, None] - upper
    return tf.where(onehot, tf.zeros_like(margin), margin)


def _is_label(y, num_classes):
    """Boolean ``(N, K)`` mask, True at ``j = y``."""
    return tf.equal(tf.range(tf.cast(num_classes, tf.int64))[None, :], y[:, None])


def _certified_graph(chain, x, y, eps):
    margin = _margin_graph(chain, x, y, eps)
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


def _run(model, kind, graph, x, y, eps):
    """Eager path: validate, then run ``graph`` compiled over whole batches; returns NumPy array(s)."""
    eps = _validate(model, x, y, eps)
    x_spec, y_spec = input_specs(model)
    specs = [x_spec] + ([y_spec] if y is not None else []) + [tf.TensorSpec((), tf.float32)]
    fn = compiled(model, kind, (), lambda m, *args: graph(layer_chain(m), *args), specs)
    arrays = (np.asarray(x, np.float32),) + (() if y is None else (np.asarray(y, np.int64),))
    out = batched(fn, arrays, (tf.constant(eps, tf.float32),))
    if out is None:
        raise ValueError("x must hold at least one image, got an empty batch")
    return out


def interval_bounds(model, x, eps):
    """``(lower, upper)``: bounds on every logit over the L∞ ball of radius ``eps`` around ``x`` ∩ [0, 1].

    Shapes ``(N, classes)``, float32.  For every ``x'`` with ``|x' - x|∞ <= eps`` and ``0 <= x' <= 1``:
    ``lower <= model(x') <= upper`` (up to float32 rounding; a float16 model's own rounding can stray further).
    At ``eps = 0`` both equal the logits.  Sound but loose: see the module docstring.
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
    """
    chain = layer_chain(model)
    if tracing(x, y, eps):
        return _margin_graph(chain, x, y, eps)
    return _run(model, "ibp-margin", _margin_graph, x, y, eps)


def certified(model, x, y, eps):
    """Per example: is the prediction ``y`` *proved* for the whole ε-ball ∩ [0, 1] (all margin bounds > 0)?"""
    chain = layer_chain(model)
    if tracing(x, y, eps):
        return _certified_graph(chain, x, y, eps)
    return _run(model, "ibp-certified", _certified_graph, x, y, eps).astype(bool)


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

    ``ẑ_j = -margin_bounds_j``, an upper bound of ``z_j - z_y`` over the ε-ball, and ``ẑ_y = 0``:
    ``CE(ẑ, y)`` is an upper bound of the worst-case cross-entropy in the ball, the IBP robust loss.
    Gradients flow to the model's weights, so it can be used in a ``train_step``; ``eps`` may be a tensor or a
    ``tf.Variable`` (an ε ramp).  Eagerly it validates its arguments and computes without compiling (so a
    surrounding ``GradientTape`` records it); it always returns a tensor.
    """
    chain = layer_chain(model)
    if not tracing(x, y, eps):
        _validate(model, x, y, eps)
    return -_margin_graph(chain, x, y, eps)

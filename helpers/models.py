"""Models: a small CNN that returns logits, standard training with ``fit``, and seeding for reproducible runs.

Which models the course trains, and the on-disk cache that shares them between notebooks, live in
``helpers.recipes``.
"""

from __future__ import annotations

import time

import numpy as np

from ._checks import (check_bool, check_choice, check_images, check_labels, check_learning_rate,
                      check_positive_int)

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from ._private import disable_op_determinism  # noqa: E402

ARCHITECTURES = ("cnn", "cnn_wide", "mlp")


def seed_everything(seed: int = 0, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow, and (by default) make TensorFlow ops deterministic.

    Determinism is what lets ``pytest --nbval`` compare a re-executed notebook with its committed outputs.
    It holds on the same hardware only, so notebooks print rounded figures.
    """
    seed = check_positive_int(seed, "seed", minimum=0)
    deterministic = check_bool("deterministic", deterministic)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        disable_op_determinism()


def build_model(input_shape, num_classes: int, *, arch: str = "cnn", seed: int | None = None,
                mixed_precision: bool = False) -> keras.Model:
    """Build an (uncompiled) classifier that maps images in [0, 1] to **logits** (no softmax).

    Logits, not probabilities: the attacks differentiate the cross-entropy, and a softmax output followed by a
    log saturates (gradients vanish where the model is confident).

    Args:
        input_shape: ``(H, W, C)``, e.g. ``(28, 28, 1)`` for MNIST or ``(32, 32, 3)`` for CIFAR-10.
        num_classes: number of classes (>= 2).
        arch: ``"cnn"`` (two conv blocks, ~0.2M parameters, the course default), ``"cnn_wide"`` (twice the
            channels, for transfer experiments and harder data) or ``"mlp"`` (no convolutions).
        seed: seeds the weight initialisers, so two models built with the same seed start identical.
        mixed_precision: compute in float16 with float32 weights (Keras' ``"mixed_float16"`` policy; the logits
            stay float32).  Off by default: CPUs gain nothing from it; recent GPUs train up to 2-3× faster.
    """
    check_choice("arch", arch, ARCHITECTURES)
    input_shape = _check_input_shape(input_shape, arch)
    num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
    mixed_precision = check_bool("mixed_precision", mixed_precision)
    init_seed = 0 if seed is None else check_positive_int(seed, "seed", minimum=0)
    policy = "mixed_float16" if mixed_precision else None  # None: the global policy (float32 by default)

    def kinit(i):
        return keras.initializers.GlorotUniform(seed=init_seed * 1000 + i)

    L = keras.layers
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if arch in ("cnn", "cnn_wide"):
        w = 2 if arch == "cnn_wide" else 1
        x = L.Conv2D(32 * w, 3, activation="relu", kernel_initializer=kinit(1), name="conv1", dtype=policy)(x)
        x = L.MaxPooling2D(2, name="pool1", dtype=policy)(x)
        x = L.Conv2D(64 * w, 3, activation="relu", kernel_initializer=kinit(2), name="conv2", dtype=policy)(x)
        x = L.MaxPooling2D(2, name="pool2", dtype=policy)(x)
        x = L.Flatten(name="flatten", dtype=policy)(x)
        x = L.Dense(128 * w, activation="relu", kernel_initializer=kinit(3), name="dense", dtype=policy)(x)
    else:
        x = L.Flatten(name="flatten", dtype=policy)(x)
        x = L.Dense(256, activation="relu", kernel_initializer=kinit(1), name="dense1", dtype=policy)(x)
        x = L.Dense(128, activation="relu", kernel_initializer=kinit(2), name="dense2", dtype=policy)(x)
    # The logits stay float32 under mixed precision: a float16 softmax cross-entropy loses precision.
    logits = L.Dense(num_classes, kernel_initializer=kinit(9), name="logits",
                     dtype="float32" if mixed_precision else None)(x)
    return keras.Model(inputs, logits, name=arch)


#: The smallest image side the CNNs take: two 3×3 convolutions and two 2×2 poolings leave 1×1 of a 10×10 image.
MIN_CNN_SIDE = 10


def _check_input_shape(input_shape, arch: str) -> tuple[int, int, int]:
    """``input_shape`` as a tuple of three ints >= 1 (and >= ``MIN_CNN_SIDE`` high and wide for a CNN)."""
    dims = tuple(input_shape)
    if len(dims) != 3 or any(isinstance(d, bool) for d in dims):
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape}")
    if not all(isinstance(d, (int, np.integer)) for d in dims):
        raise TypeError(f"input_shape must hold whole numbers (height, width, channels), got {input_shape}")
    dims = tuple(int(d) for d in dims)
    if min(dims) < 1:
        raise ValueError(f"input_shape must be (height, width, channels), got {dims}")
    if arch != "mlp" and min(dims[:2]) < MIN_CNN_SIDE:
        raise ValueError(f"arch={arch!r} needs images of at least {MIN_CNN_SIDE}×{MIN_CNN_SIDE} pixels, got "
                         f"input_shape={dims}; use arch='mlp' for smaller images")
    return dims


def compile_model(model: keras.Model, *, learning_rate=1e-3) -> keras.Model:
    """Compile for training on integer labels with a from-logits cross-entropy and Adam (loss-scaled when the
    model computes in float16, see ``build_model(mixed_precision=True)``).  A model that ends in a softmax is
    refused: its probabilities would be read as logits."""
    learning_rate = check_learning_rate(learning_rate)
    if _ends_in_softmax(model):
        raise ValueError(f"model {model.name!r} ends in a softmax, but compile_model's loss reads logits "
                         "(from_logits=True), as the attacks do: drop the final softmax (build_model returns logits)")
    model.compile(
        optimizer=loss_scaled(keras.optimizers.Adam(learning_rate), model),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _ends_in_softmax(model) -> bool:
    """Whether ``model``'s output layer is a softmax (probabilities out, not logits): a ``Softmax`` layer, or a
    layer whose activation is the softmax."""
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    return getattr(getattr(last, "activation", None), "__name__", "") == "softmax" or _ends_in_softmax(last)


def computes_in_float16(model) -> bool:
    """Whether any layer of ``model``, nested models included, computes in float16 (mixed precision)."""
    for layer in getattr(model, "layers", ()):
        if getattr(layer, "compute_dtype", "float32") == "float16" or computes_in_float16(layer):
            return True
    return False


def loss_scaled(optimizer, model):
    """``optimizer`` wrapped in Keras' ``LossScaleOptimizer`` when ``model`` computes in float16 (small float16
    gradients would underflow to 0 without it), else ``optimizer`` unchanged."""
    optimizer = keras.optimizers.get(optimizer)
    if computes_in_float16(model) and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def train_model(model: keras.Model, x, y, *, epochs: int = 5, batch_size: int = 128, learning_rate=None,
                validation_data=None, seed: int = 0, verbose: int = 0, callbacks=None):
    """Standard (non-adversarial) training with ``model.fit``; returns the Keras ``History``.

    An uncompiled model is compiled with ``compile_model`` (Adam, ``learning_rate`` or 1e-3); a compiled one keeps
    its optimizer (then ``learning_rate`` must be left out).  ``verbose=0`` by default: progress bars make notebook
    outputs large and differ from run to run.
    """
    num_classes = int(model.output_shape[-1])
    check_images(x)
    check_labels(y, len(x), num_classes=num_classes)
    _check_validation_arrays(validation_data, num_classes)
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    if learning_rate is not None:
        check_learning_rate(learning_rate)
    keras.utils.set_random_seed(check_positive_int(seed, "seed", minimum=0))
    if existing_optimizer(model, learning_rate, "recompile it (models.compile_model) instead") is None:
        compile_model(model, learning_rate=1e-3 if learning_rate is None else learning_rate)
    return model.fit(np.asarray(x, np.float32), np.asarray(y, np.int64), epochs=epochs, batch_size=batch_size,
                     validation_data=validation_data, shuffle=True, verbose=verbose,
                     callbacks=callbacks)


def _check_validation_arrays(validation_data, num_classes: int) -> None:
    """Check ``validation_data`` given as arrays, ``(x_val, y_val)`` (or with sample weights, as Keras allows),
    as ``x`` and ``y`` are checked; anything else (None, a ``tf.data.Dataset``) is left to Keras."""
    if not isinstance(validation_data, (tuple, list)):
        return
    if len(validation_data) not in (2, 3):
        raise ValueError(f"validation_data must be (x_val, y_val) (or (x_val, y_val, sample_weight)), got a "
                         f"{type(validation_data).__name__} of {len(validation_data)} items")
    x_val, y_val = validation_data[:2]
    check_images(x_val, "validation_data images")
    check_labels(y_val, len(x_val), "validation_data labels", num_classes=num_classes)


def existing_optimizer(model: keras.Model, learning_rate, remedy: str):
    """The optimizer ``model`` was compiled with (None if it is not compiled).  Training continues with it, so a
    ``learning_rate`` passed as well would be silently ignored: refused, with ``remedy`` in the message."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and learning_rate is not None:
        raise ValueError(f"the model is already compiled with {type(optimizer).__name__}, whose learning rate "
                         f"would silently win over learning_rate=; {remedy}")
    return optimizer


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock seconds per epoch, logged as ``time`` (so ``History`` keeps them) and kept in ``times``."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)
        if logs is not None:
            logs["time"] = self.times[-1]

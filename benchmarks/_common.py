"""Pieces the benchmark scripts share: the models they measure and the forward+backward pass they time against."""

from __future__ import annotations

import sys

import keras
import tensorflow as tf

from helpers import models, recipes, training


def course_model(ds, kind, fallback=False):
    """``recipes.course_model(ds, kind)``, or (if that fails, or with ``fallback``) a stand-in of the same kind.

    The stand-ins: ``"standard"`` 10 epochs of ordinary training; ``"pgd"`` PGD-7 adversarial training (adversarial
    examples only, ε = 0.3), 20 epochs of batch 64 at a constant learning rate.
    """
    if not fallback:
        try:
            return recipes.course_model(ds, kind)[0]
        except Exception as err:  # noqa: BLE001 - a benchmark should still run: say so and train a stand-in
            print(f"recipes.course_model(ds, {kind!r}) failed ({err!r}); training a stand-in", file=sys.stderr)
    keras.utils.set_random_seed(0)
    model = models.build_model(ds.input_shape, ds.num_classes, seed=0)
    if kind == "standard":
        models.train_model(model, ds.x_train, ds.y_train, epochs=10)
    else:
        training.adversarial_train(model, ds.x_train, ds.y_train, attack="pgd", eps=0.3, epochs=20, batch_size=64,
                                   mode="adversarial", attack_kwargs={"steps": 7})
    return model


def forward_backward(model):
    """A compiled ``(x, y) -> weight gradients`` of the cross-entropy, ``training=True``: one training pass."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        return tape.gradient(loss, model.trainable_variables)

    return step

"""The base of the course's training wrappers (``training.AdversarialModel``, ``training.IBPModel``).

A wrapper is a ``keras.Model`` around a classifier (logits out) with its own ``train_step`` and ``test_step`` — the
Keras guide "Customizing what happens in fit()" — so ``fit`` trains the classifier *in place* with everything Keras
brings (History, callbacks, schedules, ``tf.data``, ``tf.distribute``, loss scaling).  What every wrapper shares
lives here once: calling the classifier, the strategy it was built under, ``compile`` (from-logits cross-entropy by
default, loss scaling under mixed precision, no XLA under op determinism), unpacking a batch, one optimiser step,
and the replica-corrected metrics.  A subclass adds its third metric and writes its steps.
"""

from __future__ import annotations

from typing import Callable

from ._checks import check_eps
from ._private import adopt_strategy, op_determinism_enabled
from .models import loss_scaled

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

_XLA_MESSAGE = ("jit_compile=True cannot run while TensorFlow's op determinism is on (XLA has no deterministic "
                "max-pool gradient); call models.seed_everything(seed, deterministic=False) first, or train without "
                "jit_compile")


class WrapperModel(keras.Model):
    """Trains ``classifier`` in place; reports ``loss``, ``clean_accuracy`` and the metric ``third`` a subclass
    makes (``third()``, e.g. accuracy under attack).  ``eps`` is the radius the subclass trains and validates at."""

    def __init__(self, classifier, *, eps, third: Callable[[], keras.metrics.Metric], **kwargs):
        super().__init__(**kwargs)
        if not isinstance(classifier, keras.Model):
            raise TypeError(f"classifier must be a keras.Model returning logits, got {type(classifier).__name__}")
        self.classifier, self.eps = classifier, check_eps(eps)
        adopt_strategy(self, classifier)  # a wrapper made outside the classifier's strategy scope still uses it
        with self.distribute_strategy.scope():
            self.loss_tracker = keras.metrics.Mean(name="loss")
            self.clean_accuracy = keras.metrics.SparseCategoricalAccuracy(name="clean_accuracy")
            self.third_metric = third()

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.clean_accuracy, self.third_metric]

    def compile(self, optimizer="adam", loss=None, metrics=None, jit_compile="auto", weighted_metrics=None,
                **kwargs):
        """``keras.Model.compile`` with the from-logits cross-entropy as the default loss; the optimizer is
        loss-scaled when the classifier computes in float16.  ``metrics`` and ``weighted_metrics`` are refused
        (the wrapper reports its own three and weighs no examples).  No XLA while op determinism is on:
        ``jit_compile=True`` is refused, and Keras' automatic choice (``"auto"``, which turns XLA on by itself on a GPU
        machine) is overridden to ``False``."""
        names = [m.name for m in self.metrics]
        for arg, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value:
                raise ValueError(f"{type(self).__name__} reports its own metrics {names}; compile({arg}=...) is not "
                                 "supported (evaluate other metrics on the classifier: wrapper.classifier)")
        deterministic = op_determinism_enabled()
        if jit_compile is True and deterministic:
            raise ValueError(_XLA_MESSAGE)
        with self.distribute_strategy.scope():
            super().compile(optimizer=loss_scaled(optimizer, self.classifier),
                            loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            jit_compile=jit_compile, **kwargs)
        if deterministic and self.jit_compile:  # "auto" resolved to XLA (a GPU machine): it would fail later
            self.jit_compile = False

    def unpack(self, data):
        """``(images, int64 labels)`` of a batch from ``fit``/``evaluate``; labels must have shape (N,); a sample weight
        is refused."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} does not weigh examples: fit/evaluate got a sample_weight "
                             "(or class_weight); train without it, or repeat the examples that should count more")
        if y is None:
            raise ValueError(f"{type(self).__name__} needs labels: fit(x, y) or a dataset of (images, labels)")
        if y.shape.rank not in (None, 1):  # (N, 1) labels would broadcast against (N,) ones, or crash in TensorFlow
            raise ValueError(f"{type(self).__name__} got labels of shape {tuple(y.shape)} per batch; labels must be "
                             "integer class indices of shape (N,), one per image (reshape (N, 1) labels: "
                             "y.reshape(-1))")
        return x, tf.cast(y, tf.int64)

    def minimise(self, tape, scaled_loss):
        """One optimiser step on the gradient of ``scaled_loss`` (``optimizer.scale_loss(loss)``, taken inside
        ``tape``) with respect to the classifier's trainable weights."""
        grads = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)

    def report(self, loss, y, clean_logits):
        """Update ``loss`` and ``clean_accuracy`` (the subclass has updated its third metric) and return the logs."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(loss * replicas, sample_weight=tf.shape(y)[0])  # undo the replica scaling
        self.clean_accuracy.update_state(y, clean_logits)
        return {m.name: m.result() for m in self.metrics}


__all__ = ["WrapperModel"]

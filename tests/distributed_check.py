"""Run by tests/test_training.py in a fresh process: TensorFlow's devices can only be split before first use.

Splits the CPU into two logical devices, trains the same model with the same batches (a) on one device and
(b) under a ``MirroredStrategy`` over both, from a ``tf.data.Dataset`` (mode "double") or from arrays (mode
"adversarial"), and prints the results as JSON.
"""

import json
import sys

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from helpers import data, models, training  # noqa: E402

ds = data.load_dataset("mnist_5k").subset(256, 64, seed=0)
batches = tf.data.Dataset.from_tensor_slices((ds.x_train, ds.y_train.astype(np.int32))).batch(64)
mode = sys.argv[1] if len(sys.argv) > 1 else "double"


def train(strategy):
    with strategy.scope():
        model = models.build_model(ds.input_shape, ds.num_classes, seed=0)
        # Plain SGD: its update is proportional to the gradient, so a wrongly scaled loss would show.
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        # "double": a tf.data.Dataset of batches; "adversarial": in-memory arrays, shuffled by adversarial_train.
        data_args = (batches, None) if mode == "double" else (ds.x_train, ds.y_train)
        h = training.adversarial_train(model, *data_args, attack="fgsm", eps=0.1, epochs=2, mode=mode,
                                       batch_size=64, validation_data=(ds.x_test, ds.y_test))
    return model.get_weights(), h.history


single_w, single_h = train(tf.distribute.get_strategy())
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
multi_w, multi_h = train(mirrored)
print(json.dumps(dict(
    replicas=mirrored.num_replicas_in_sync,
    max_weight_diff=max(float(np.abs(a - b).max()) for a, b in zip(single_w, multi_w)),
    single=single_h, multi=multi_h)))

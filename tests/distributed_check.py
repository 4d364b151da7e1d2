"""Run by tests/test_training.py in a fresh process: TensorFlow's devices can only be split before first use.

Splits the CPU into two logical devices, trains the same model with the same batches (a) on one device and
(b) under a ``MirroredStrategy`` over both, and prints the results as JSON, one line per mode given as an argument.
Modes: ``"double"`` trains on a
``tf.data.Dataset`` with ``fit`` inside the scope; ``"adversarial"`` on arrays with ``adversarial_train`` inside the
scope; ``"outside"`` builds the classifier inside the scope and calls ``adversarial_train`` outside it, as one may with
any Keras model.
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

ds = data.load_dataset("mnist_5k").subset(256, 64, n_val=64, seed=0)
batches = tf.data.Dataset.from_tensor_slices((ds.x_train, ds.y_train.astype(np.int32))).batch(64)
keras.config.disable_traceback_filtering()


def train_in(strategy, mode):
    args = dict(attack="fgsm", eps=0.1, mode="adversarial" if mode != "double" else "double")
    with strategy.scope():
        model = models.build_model(ds.input_shape, ds.num_classes, seed=0)
        if mode == "double":
            adv = training.AdversarialModel(model, **args)
            # Plain SGD: its update is proportional to the gradient, so a wrongly scaled loss would show.
            adv.compile(optimizer=keras.optimizers.SGD(0.1))
            h = adv.fit(batches, epochs=2, validation_data=(ds.x_val, ds.y_val), verbose=0)
            return model.get_weights(), h.history
        if mode == "adversarial":
            h = training.adversarial_train(model, ds.x_train, ds.y_train, epochs=2, batch_size=64, seed=0,
                                           optimizer=keras.optimizers.SGD(0.1),
                                           validation_data=(ds.x_val, ds.y_val), **args)
            return model.get_weights(), h.history
    h = training.adversarial_train(model, ds.x_train, ds.y_train, epochs=2, batch_size=64, seed=0,
                                   learning_rate=1e-3, validation_data=(ds.x_val, ds.y_val), **args)
    return model.get_weights(), h.history


for mode in sys.argv[1:] or ["double"]:  # one interpreter for all modes: TensorFlow starts once
    models.seed_everything(0)
    single_w, single_h = train_in(tf.distribute.get_strategy(), mode)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    models.seed_everything(0)
    multi_w, multi_h = train_in(mirrored, mode)
    print(json.dumps(dict(
        mode=mode, replicas=mirrored.num_replicas_in_sync,
        max_weight_diff=max(float(np.abs(a - b).max()) for a, b in zip(single_w, multi_w)),
        single=single_h, multi=multi_h)), flush=True)

"""The shared base of the training wrappers (helpers.wrapper) and the private names isolated in helpers._private."""

import keras
import numpy as np
import pytest

from helpers import _private, models, training
from helpers.wrapper import WrapperModel


def tiny_classifier(seed=0, mixed_precision=False):
    keras.utils.set_random_seed(seed)  # (not seed_everything: it would switch op determinism back on)
    return models.build_model((28, 28, 1), 10, seed=seed, mixed_precision=mixed_precision)


def ibp_classifier():
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(10)(h))


WRAPPERS = {
    "adversarial": lambda: training.AdversarialModel(tiny_classifier(), attack="fgsm", eps=0.1),
    "ibp": lambda: training.IBPModel(ibp_classifier(), eps=0.1, ramp_steps=2),
}


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((8, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 8)


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_both_wrappers_share_the_base(kind):
    wrapper = WRAPPERS[kind]()
    assert isinstance(wrapper, WrapperModel)
    third = {"adversarial": "adv_accuracy", "ibp": "certified_accuracy"}[kind]
    assert [m.name for m in wrapper.metrics] == ["loss", "clean_accuracy", third]


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_sample_and_class_weights_are_refused_with_a_clear_error(kind, data):
    x, y = data
    wrapper = WRAPPERS[kind]()
    wrapper.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="does not weigh examples"):
        wrapper.fit(x, y, sample_weight=np.ones(len(y)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="does not weigh examples"):
        wrapper.fit(x, y, class_weight={c: 1.0 for c in range(10)}, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="does not weigh examples"):
        wrapper.evaluate(x, y, sample_weight=np.ones(len(y)), verbose=0)


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_compile_metrics_are_refused(kind):
    with pytest.raises(ValueError, match=r"reports its own metrics \['loss', 'clean_accuracy'"):
        WRAPPERS[kind]().compile(optimizer="sgd", metrics=["accuracy"])


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_keras_automatic_xla_choice_is_overridden_under_op_determinism(kind, monkeypatch):
    """On a GPU machine Keras' jit_compile="auto" turns XLA on by itself, which fails on the deterministic max-pool
    gradient; the wrappers must turn it off when op determinism is on (and only then).  Simulated here: a GPU
    machine (Keras resolves "auto" to XLA) with a Keras that does not check determinism itself (before
    keras-team/keras#20315, which requirements still allow)."""
    monkeypatch.setattr(keras.Model, "_resolve_auto_jit_compile", lambda self: True, raising=True)
    monkeypatch.setattr("keras.src.trainers.trainer.model_supports_jit", lambda model: True)
    models.seed_everything(0, deterministic=False)
    try:
        free = WRAPPERS[kind]()
        free.compile(optimizer="sgd")
        assert free.jit_compile is True  # the patched "GPU machine": Keras chose XLA by itself
    finally:
        models.seed_everything(0)
    guarded = WRAPPERS[kind]()
    guarded.compile(optimizer="sgd")
    assert guarded.jit_compile is False
    with pytest.raises(ValueError, match="jit_compile=True cannot run while TensorFlow's op determinism is on"):
        WRAPPERS[kind]().compile(optimizer="sgd", jit_compile=True)


def test_a_nested_mixed_precision_classifier_gets_a_loss_scaled_optimizer():
    inner = tiny_classifier(mixed_precision=True)
    outer = keras.Sequential([keras.Input((28, 28, 1)), inner])
    assert models.computes_in_float16(outer) and not models.computes_in_float16(tiny_classifier())
    adv = training.AdversarialModel(outer, attack="fgsm", eps=0.1)
    adv.compile(optimizer=keras.optimizers.SGD(0.1))
    assert isinstance(adv.optimizer, keras.optimizers.LossScaleOptimizer)
    plain = training.AdversarialModel(tiny_classifier(), attack="fgsm", eps=0.1)
    plain.compile(optimizer=keras.optimizers.SGD(0.1))
    assert not isinstance(plain.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.slow
def test_the_wrapper_trains_the_classifier_in_place(data):
    x, y = data
    clf = tiny_classifier()
    before = [w.copy() for w in clf.get_weights()]
    adv = training.AdversarialModel(clf, attack="fgsm", eps=0.1)
    adv.compile(optimizer=keras.optimizers.SGD(0.1))
    logs = adv.fit(x, y, epochs=1, batch_size=8, verbose=0).history
    assert sorted(logs) == ["adv_accuracy", "clean_accuracy", "loss"]
    assert any(not np.array_equal(a, b) for a, b in zip(before, clf.get_weights()))


def test_op_determinism_reads_as_on_when_tensorflow_hides_its_flag(monkeypatch):
    """If a TF release moves the private getter, the cautious answer (on: no XLA) is given, not an ImportError."""
    models.seed_everything(0, deterministic=False)
    try:
        assert _private.op_determinism_enabled() is False
        monkeypatch.setattr(_private, "_tf_config", None)
        assert _private.op_determinism_enabled() is True
    finally:
        monkeypatch.undo()
        models.seed_everything(0)
    assert _private.op_determinism_enabled() is True


def test_a_wrapper_made_outside_the_strategy_scope_adopts_the_classifiers():
    import tensorflow as tf

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        clf = tiny_classifier()
    adv = training.AdversarialModel(clf, attack="fgsm", eps=0.1)
    assert adv.distribute_strategy is strategy

"""Fast oracles for the rules of ``helpers.training`` and ``helpers.wrapper``: tiny models (a Dense layer on 4×4×1
inputs) and made-up curves, no real training.  Each test here was watched failing on the code before its fix."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import training


def _dense(scale=1.0, dtype=None, seed=0):
    """logits = Dense(10)(flatten(x)) on 4×4×1 images; ``scale`` is the weights' standard deviation."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(10, dtype=dtype, kernel_initializer=keras.initializers.RandomNormal(stddev=scale))
    return keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))


def _images(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 4, 4, 1), dtype=np.float32), rng.integers(0, 10, n)


# ------------------------------------------------------------------------------------------------- TRADES' attack
def _trades_reference(model, x, eps, steps):
    """``trades_attack`` as it was before float16 models got the rescaled gradient (a float32 model's reference)."""
    step = 2.5 * eps / steps
    p_clean = tf.nn.softmax(tf.cast(model(x, training=False), tf.float32))
    x_adv = tf.clip_by_value(x + 0.001 * tf.random.normal(tf.shape(x)), 0.0, 1.0)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            log_q = tf.nn.log_softmax(tf.cast(model(x_adv, training=False), tf.float32))
            kl = tf.reduce_sum(p_clean * (tf.math.log(p_clean + 1e-12) - log_q))
        x_adv = x_adv + step * tf.sign(tape.gradient(kl, x_adv))
        x_adv = tf.clip_by_value(x + tf.clip_by_value(x_adv - x, -eps, eps), 0.0, 1.0)
    return x_adv


def test_trades_attack_moves_every_image_of_a_float16_model():
    """Confident float16 logits: the KL gradient underflows in float16 unless rescaled (before: 22 % of the images
    never left the tiny random start)."""
    x, _ = _images()
    model = _dense(scale=6.0, dtype="mixed_float16")
    tf.random.set_seed(0)
    moved = np.abs(training.trades_attack(model, tf.constant(x), 0.1, steps=3).numpy() - x).reshape(len(x), -1)
    assert moved.max(axis=1).min() > 0.05


def test_trades_attack_on_a_float32_model_is_unchanged():
    x, _ = _images()
    model = _dense(scale=6.0)
    tf.random.set_seed(0)
    got = training.trades_attack(model, tf.constant(x), 0.1, steps=3).numpy()
    tf.random.set_seed(0)
    np.testing.assert_array_equal(got, _trades_reference(model, tf.constant(x), 0.1, 3).numpy())


# ------------------------------------------------------------------------------------------------- StallMonitor
def _monitor(adv, clean, **kwargs):
    """A StallMonitor on a 10-class model, driven through made-up epochs (adv_accuracy, clean_accuracy)."""
    monitor = training.StallMonitor(**kwargs)
    monitor.set_model(_dense())
    monitor.on_train_begin()
    for epoch, (a, c) in enumerate(zip(adv, clean)):
        monitor.on_epoch_end(epoch, {"loss": 2.3, "adv_accuracy": a, "clean_accuracy": c})
    monitor.on_train_end()
    return monitor


def _stall_warnings(record):
    return [w for w in record if issubclass(w.category, training.StallWarning)]


def test_stall_monitor_is_quiet_after_one_epoch_of_a_fresh_model(recwarn):
    assert _monitor([0.1], [0.19]).stalled_at is None
    assert _monitor([0.1], [0.1]).stalled_at is None  # even at chance: 1 epoch < patience 3 says nothing yet
    assert _monitor([0.1, 0.1], [0.1, 0.1]).stalled_at is None
    assert not _stall_warnings(recwarn)


def test_stall_monitor_is_quiet_while_the_clean_accuracy_learns(recwarn):
    """A robust model at a large ε sits near chance under attack for a while; its clean accuracy shows it learns."""
    assert _monitor([0.1, 0.12, 0.13, 0.14], [0.6, 0.62, 0.65, 0.7]).stalled_at is None
    assert _monitor([0.1, 0.1, 0.1], [0.1, 0.1, 0.6]).stalled_at is None
    assert not _stall_warnings(recwarn)


def test_stall_monitor_warns_at_the_users_line_when_both_stay_at_chance():
    with pytest.warns(training.StallWarning, match=r"for 3 epochs") as record:
        monitor = _monitor([0.1, 0.12, 0.09, 0.1], [0.11, 0.1, 0.13, 0.1])
    assert monitor.stalled_at == 2
    assert [w.filename for w in _stall_warnings(record)] == [__file__]  # not training.py


@pytest.mark.parametrize("far", [0.0, 0.2])
def test_stall_monitor_chance_test_is_two_sided(far, recwarn):
    """0.0 for 10 classes is 0.1 away from chance (tolerance 0.05): below chance is not at chance, as above is not."""
    assert _monitor([far] * 4, [0.1] * 4).stalled_at is None
    assert _monitor([0.1] * 4, [far] * 4).stalled_at is None
    assert not _stall_warnings(recwarn)
    with pytest.warns(training.StallWarning):  # within the tolerance on either side: at chance
        assert _monitor([0.06, 0.14, 0.1], [0.14, 0.06, 0.1]).stalled_at == 2


# ------------------------------------------------------------------------------------------------- find_collapse
# Defaults: level 0.3, hold 2, drop 0.2, within 2, own_high 0.7.  Binary-exact values (0.25, 0.5, 0.75) where a
# boundary is tested, so that ">=" against ">" is decided by the rule, not by rounding.
HIGH_OWN = [0.9] * 8


def test_find_collapse_finds_the_first_collapse_at_its_epochs():
    assert training.find_collapse([0.1, 0.35, 0.4, 0.1, 0.1], HIGH_OWN[:5]) == (2, 3)
    assert training.find_collapse([0.5, 0.5, 0.1, 0.5, 0.5, 0.1], HIGH_OWN[:6]) == (1, 2)  # the first of two
    assert training.find_collapse([0.5, 0.5, 0.2], HIGH_OWN[:3]) == (1, 2)  # the last epoch can be the fall


def test_find_collapse_needs_the_training_attack_still_beaten():
    """When accuracy under the model's own attack falls too, the model has not learnt to beat just its training
    attack: that is no catastrophic overfitting."""
    assert training.find_collapse([0.5, 0.5, 0.1], [0.9, 0.9, 0.2]) is None
    assert training.find_collapse([0.5, 0.5, 0.1], [0.9, 0.9, 0.69]) is None
    assert training.find_collapse([0.5, 0.5, 0.1], [0.9, 0.9, 0.7]) == (1, 2)  # own_high is inclusive
    assert training.find_collapse([0.5, 0.5, 0.1], [0.1, 0.1, 0.75]) == (1, 2)  # own is read at the fall only


def test_find_collapse_needs_pgd_held_for_hold_epochs():
    assert training.find_collapse([0.1, 0.5, 0.1, 0.5, 0.05], HIGH_OWN[:5]) is None  # never 2 epochs in a row
    assert training.find_collapse([0.1, 0.5, 0.1], HIGH_OWN[:3], hold=1) == (1, 2)
    assert training.find_collapse([0.1, 0.5, 0.5, 0.1], HIGH_OWN[:4], hold=3) is None
    assert training.find_collapse([0.5, 0.5, 0.5, 0.1], HIGH_OWN[:4], hold=3) == (2, 3)
    assert training.find_collapse([0.25, 0.25, 0.0], HIGH_OWN[:3], level=0.25) == (1, 2)  # level is inclusive
    assert training.find_collapse([0.25, 0.5, 0.0], HIGH_OWN[:3], level=0.3) is None


def test_find_collapse_drop_is_at_least_drop():
    assert training.find_collapse([0.75, 0.75, 0.5], HIGH_OWN[:3], drop=0.25) == (1, 2)  # exactly drop: a fall
    assert training.find_collapse([0.75, 0.75, 0.5], HIGH_OWN[:3], drop=0.375) is None
    assert training.find_collapse([0.5, 0.5, 0.45, 0.4, 0.35], HIGH_OWN[:5]) is None  # a slow decline


def test_find_collapse_counts_the_fall_only_within_within_epochs():
    """pgd held at 0.5 until epoch 1 and reaches 0.28 (0.22 lower) at epoch 3 or 4; no other pair drops 0.2."""
    assert training.find_collapse([0.5, 0.5, 0.42, 0.28], HIGH_OWN[:4]) == (1, 3)  # 2 epochs later: within 2
    assert training.find_collapse([0.5, 0.5, 0.42, 0.35, 0.28], HIGH_OWN[:5]) is None  # 3 epochs later
    assert training.find_collapse([0.5, 0.5, 0.42, 0.35, 0.28], HIGH_OWN[:5], within=3) == (1, 4)
    assert training.find_collapse([0.5, 0.5, 0.42, 0.28], HIGH_OWN[:4], within=1) is None


# ------------------------------------------------------------------------------------------------- input checks
def _fit_recorder(monkeypatch):
    """Replace ``AdversarialModel.fit`` by a stand-in that records its arguments and returns a one-epoch History."""
    seen = {}

    def fit(self, x, y=None, **kwargs):
        seen.update(kwargs, x=x, y=y, wrapper=self)
        history = keras.callbacks.History()
        history.epoch, history.history, history.params = [0], {"loss": [1.0]}, {}
        return history

    monkeypatch.setattr(training.AdversarialModel, "fit", fit)
    return seen


def test_validation_data_may_be_a_dataset(monkeypatch):
    """It went through the array checks and failed with NumPy's "inhomogeneous shape"; it now reaches fit as it is
    (tests/test_training.py trains with one for real)."""
    x, y = _images()
    val = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).batch(16)
    seen = _fit_recorder(monkeypatch)
    training.adversarial_train(_dense(), x, y, attack="fgsm", eps=0.1, epochs=1, validation_data=val)
    assert seen["validation_data"] is val
    bad = tf.data.Dataset.from_tensor_slices((x[:32], y[:32].astype(np.float32))).batch(16)
    with pytest.raises(TypeError, match="the validation dataset yields labels of dtype float32"):
        training.adversarial_train(_dense(), x, y, attack="fgsm", eps=0.1, epochs=1, validation_data=bad)


def test_labels_of_shape_n_by_1_are_refused_before_tensorflow_chokes():
    x, y = _images()
    column = tf.data.Dataset.from_tensor_slices((x, y[:, None])).batch(16)
    with pytest.raises(ValueError, match=r"labels of shape \(None, 1\).*shape \(N,\)"):
        training.adversarial_train(_dense(), column, None, attack="fgsm", eps=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"validation dataset yields labels of shape \(None, 1\)"):
        training.adversarial_train(_dense(), x, y, attack="fgsm", eps=0.1, epochs=1, validation_data=column)
    for wrapper in (training.AdversarialModel(_dense(), attack="fgsm", eps=0.1),
                    training.IBPModel(_dense(), eps=0.1, ramp_steps=2)):
        wrapper.compile(optimizer="sgd")
        with pytest.raises(ValueError, match=r"labels of shape \(32, 1\) per batch.*shape \(N,\)"):
            wrapper.fit(x, y[:, None], batch_size=32, epochs=1, verbose=0)


# ------------------------------------------------------------------------------------------------- settings refused
def test_compile_refuses_weighted_metrics_it_would_ignore():
    for wrapper in (training.AdversarialModel(_dense(), attack="fgsm", eps=0.1),
                    training.IBPModel(_dense(), eps=0.1, ramp_steps=2)):
        with pytest.raises(ValueError, match=r"compile\(weighted_metrics=\.\.\.\) is not supported"):
            wrapper.compile(optimizer="sgd", weighted_metrics=["accuracy"])


def test_an_eps_ramp_longer_than_the_run_is_refused():
    x, y = _images()
    with pytest.raises(ValueError, match=r"eps_warmup=5 is longer than the run \(epochs=4\)"):
        training.adversarial_train(_dense(), x, y, attack="fgsm", eps=0.1, epochs=4, eps_warmup=5)
    adv = training.AdversarialModel(_dense(), attack="fgsm", eps=0.1)
    adv.compile(optimizer="sgd")
    with pytest.raises(ValueError, match=r"eps_warmup=3 is longer than the run \(epochs=2\)"):
        adv.fit(x, y, epochs=2, verbose=0, callbacks=[training.EpsWarmup(3)])
    wrap = training.AdversarialModel(_dense(), attack="pgd", eps=0.3, mode="adversarial")  # "auto": a quarter
    assert [wrap.warmup_epochs(n) for n in (1, 2, 3, 4, 8)] == [0, 1, 1, 1, 2]
    assert training.AdversarialModel(_dense(), attack="fgsm", eps=0.1, eps_warmup=4).warmup_epochs(4) == 4


def _fit_through(monkeypatch, val_adv):
    """Replace ``AdversarialModel.fit`` by a made-up run that drives its callbacks: epoch e logs ``val_adv[e]`` (None:
    no validation that epoch) and it stops when a callback says so."""
    def fit(self, x, y=None, *, epochs, callbacks, **kwargs):
        for c in callbacks:
            c.set_model(self)
            c.on_train_begin()
        history = keras.callbacks.History()
        history.epoch, history.history, history.params = [], {"loss": []}, {}
        for epoch, value in enumerate(val_adv[:epochs]):
            logs = {"loss": 1.0} if value is None else {"loss": 1.0, "val_adv_accuracy": value}
            for c in callbacks:
                c.on_epoch_end(epoch, logs)
            history.epoch.append(epoch)
            history.history["loss"].append(1.0)
            if self.stop_training:
                break
        for c in callbacks:
            c.on_train_end()
        return history

    monkeypatch.setattr(training.AdversarialModel, "fit", fit)


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = epoch >= self.epoch


@pytest.mark.parametrize("val_adv, kwargs, best", [
    ([0.2, 0.5, 0.4, 0.3, 0.1, 0.1], {}, 1),                              # Keras' best epoch, its weights restored
    ([0.5, 0.4, 0.3, 0.2, 0.1, 0.1], dict(eps_warmup=4), 3),              # ramp epochs 0-2 are never the best
    ([0.2, 0.5, 0.6, 0.7, 0.8, 0.9], dict(eps_warmup=4, callbacks=[_StopAfter(1)]), 1),  # stopped inside the ramp
    ([None] * 6, {}, 5),                                                  # never validated: the last epoch's weights
])
@pytest.mark.filterwarnings("ignore:Early stopping conditioned on metric")
def test_best_epoch_is_the_epoch_whose_weights_are_returned(monkeypatch, val_adv, kwargs, best):
    """Keras' EarlyStopping keeps best_epoch = 0 when it considered no epoch; the weights are the last epoch's then."""
    x, y = _images()
    _fit_through(monkeypatch, val_adv)
    h = training.adversarial_train(_dense(), x, y, attack="fgsm", eps=0.1, epochs=6, early_stopping=2,
                                   validation_data=(x[:8], y[:8]), **kwargs)
    assert h.params["best_epoch"] == best


# ------------------------------------------------------------------------------------------------- adversarial_train
def _public_functions(module):
    """``(name, function)`` of a module's public functions and its classes' public methods and ``__init__``."""
    import inspect

    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj):
            yield name, obj
        elif inspect.isclass(obj):
            yield from ((f"{name}.{m}", f) for m, f in vars(obj).items()
                        if inspect.isfunction(f) and (not m.startswith("_") or m == "__init__"))


def test_no_public_function_of_the_training_modules_has_more_than_12_named_parameters():
    import inspect

    from helpers import schedules, wrapper

    def named(fn):
        return sum(p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in inspect.signature(fn).parameters.values())

    found = [name for module in (training, wrapper, schedules) for name, _ in _public_functions(module)]
    assert "adversarial_train" in found and "AdversarialModel.__init__" in found
    assert [(name, named(fn)) for module in (training, wrapper, schedules)
            for name, fn in _public_functions(module) if named(fn) > 12] == []


def test_adversarial_train_is_a_thin_layer_over_adversarial_model(monkeypatch):
    """The wrapper's settings build the AdversarialModel; every other keyword goes to fit."""
    x, y = _images()
    seen = _fit_recorder(monkeypatch)
    stop = keras.callbacks.TerminateOnNaN()
    training.adversarial_train(_dense(), x, y, attack="pgd", eps=0.2, mode="trades", beta=2.0, epochs=3,
                               attack_kwargs={"steps": 2}, eps_warmup=0, callbacks=[stop], verbose=2,
                               initial_epoch=1)
    assert {k: seen[k] for k in ("epochs", "verbose", "initial_epoch", "batch_size")} == dict(
        epochs=3, verbose=2, initial_epoch=1, batch_size=128)
    assert seen["callbacks"] == [stop]
    assert seen["wrapper"].recipe == dict(attack="pgd", eps=0.2, mode="trades", attack_kwargs={"steps": 2})
    assert (seen["wrapper"].beta, seen["wrapper"].eps_warmup) == (2.0, 0)
    adv = training.AdversarialModel(_dense(), attack="fgsm", eps=0.1, mode="adversarial")
    training.adversarial_train(adv, x, y, epochs=1)  # a wrapper you built trains with its own settings
    assert adv.optimizer is not None and adv.recipe["mode"] == "adversarial"
    with pytest.raises(TypeError, match=r"already an AdversarialModel.*\['mode'\]"):
        training.adversarial_train(adv, x, y, epochs=1, mode="double")
    with pytest.raises(TypeError, match="needs eps="):
        training.adversarial_train(_dense(), x, y, attack="fgsm", epochs=1)


def test_eps_warmup_ramps_linearly_to_the_full_eps_at_its_last_epoch():
    adv = training.AdversarialModel(_dense(), attack="fgsm", eps=0.3)
    ramp = training.EpsWarmup(3)
    ramp.set_model(adv)
    seen = []
    for epoch in range(5):
        ramp.on_epoch_begin(epoch)
        logs = {}
        ramp.on_epoch_end(epoch, logs)
        seen.append(logs["eps"])
    np.testing.assert_allclose(seen, [0.1, 0.2, 0.3, 0.3, 0.3], rtol=1e-6)
    assert adv.eps == pytest.approx(0.3)  # validation stays at the full ε

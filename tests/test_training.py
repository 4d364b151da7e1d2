import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import _private, attacks, evaluate, models, schedules, selfcheck, training


@pytest.fixture(scope="module")
def small(mnist):
    return mnist.subset(800, 200, n_val=200, seed=0)


def fresh(ds, seed=0):
    models.seed_everything(seed)
    return models.build_model(ds.input_shape, ds.num_classes, seed=seed)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["double", "adversarial"])
def test_adversarial_training_reduces_loss_and_reports_history(small, mode):
    model = fresh(small)
    h = training.adversarial_train(model, small.x_train, small.y_train, attack="fgsm", eps=0.1, epochs=3,
                                   batch_size=64, mode=mode, validation_data=(small.x_val, small.y_val))
    assert isinstance(h, keras.callbacks.History)
    for key in ("loss", "clean_accuracy", "adv_accuracy", "val_loss", "val_clean_accuracy", "val_adv_accuracy"):
        assert len(h.history[key]) == 3, key
    assert h.epoch == [0, 1, 2]
    assert h.history["loss"][-1] < 0.8 * h.history["loss"][0]
    assert h.history["clean_accuracy"][-1] > h.history["clean_accuracy"][0]
    assert all(0.0 <= v <= 1.0 for v in h.history["adv_accuracy"])
    assert h.model.recipe["mode"] == mode
    # the wrapped classifier was trained in place: the History's last validation figures are its own
    assert evaluate.accuracy(model, small.x_val, small.y_val) == pytest.approx(h.history["val_clean_accuracy"][-1])


@pytest.mark.slow
def test_the_step_is_an_ordinary_keras_fit(small):
    """AdversarialModel + compile + fit, with Keras' own callbacks and schedules, as in the Keras guide."""
    clf = fresh(small)
    adv = training.AdversarialModel(clf, attack="pgd", eps=0.1, mode="adversarial", attack_kwargs={"steps": 2},
                                    validation_attack="pgd", validation_attack_kwargs={"steps": 5})
    schedule = keras.optimizers.schedules.ExponentialDecay(2e-3, decay_steps=13, decay_rate=0.5)
    adv.compile(optimizer=keras.optimizers.Adam(schedule))
    stop = keras.callbacks.EarlyStopping("val_adv_accuracy", mode="max", patience=1, restore_best_weights=True)
    h = adv.fit(small.x_train, small.y_train, batch_size=64, epochs=3, verbose=0, callbacks=[stop],
                validation_data=(small.x_val, small.y_val))
    assert set(h.history) >= {"loss", "clean_accuracy", "adv_accuracy", "val_clean_accuracy", "val_adv_accuracy"}
    assert int(adv.optimizer.iterations) == 13 * len(h.epoch)  # 800 images / batch 64 = 13 steps per epoch
    got = adv.evaluate(small.x_val, small.y_val, verbose=0, return_dict=True)
    assert got["clean_accuracy"] == pytest.approx(h.history["val_clean_accuracy"][stop.best_epoch])
    assert adv.predict(small.x_val[:5], verbose=0).shape == (5, 10)


@pytest.mark.slow
def test_pgd_training_beats_standard_training_under_attack(small, trained_model):
    std = trained_model  # standard training (the session's; measured PGD-10 accuracy 0.08 here, 0.065 after 6 epochs
    rob = fresh(small)   # of standard training on these 800 images, which this test trained before)
    training.adversarial_train(rob, small.x_train, small.y_train, attack="pgd", eps=0.2, epochs=6, batch_size=64,
                               mode="double", attack_kwargs={"steps": 3})
    x, y = small.x_val, small.y_val
    std_acc = evaluate.accuracy(std, attacks.pgd(std, x, y, 0.2, steps=10, seed=0), y)
    rob_acc = evaluate.accuracy(rob, attacks.pgd(rob, x, y, 0.2, steps=10, seed=0), y)
    assert rob_acc > std_acc + 0.2


@pytest.mark.slow
def test_callable_attack_is_used_inside_the_step(small):
    seen = []

    def noise_attack(model, x, y, eps):
        seen.append(tf.executing_eagerly())
        return tf.clip_by_value(x + eps * tf.sign(tf.random.normal(tf.shape(x))), 0.0, 1.0)

    model = fresh(small)
    h = training.adversarial_train(model, small.x_train[:192], small.y_train[:192], attack=noise_attack, eps=0.1,
                                   epochs=2, batch_size=64)
    assert seen and not any(seen)  # traced into the compiled step, never run eagerly
    assert len(seen) <= 2 and h.model.recipe["attack"] == "noise_attack"


@pytest.mark.slow
def test_train_step_traces_at_most_twice(small, monkeypatch):
    traces = []
    orig = attacks.loss_gradient

    def counting(*a, **k):
        traces.append(1)
        return orig(*a, **k)

    monkeypatch.setattr(attacks, "loss_gradient", counting)
    # 250 examples in batches of 64: three full batches and a short one, over two epochs.  Keras traces the step
    # once, and at most once more with a relaxed batch dimension for the short batch (reduce_retracing).
    training.adversarial_train(fresh(small), small.x_train[:250], small.y_train[:250], attack="fgsm", eps=0.1,
                               epochs=2, batch_size=64)
    assert 1 <= len(traces) <= 2


@pytest.mark.slow
def test_training_is_reproducible(small):
    def run():
        model = fresh(small, seed=3)
        training.adversarial_train(model, small.x_train[:256], small.y_train[:256], attack="pgd", eps=0.1,
                                   epochs=1, batch_size=64, attack_kwargs={"steps": 2}, seed=3)
        return model.get_weights()[0]

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="triple"), r"mode='triple'.*'double', 'adversarial'"),
    (dict(attack="cw"), r"attack='cw'.*'fgsm', 'fgsm_rs', 'pgd'"),
    (dict(attack=3), r"attack must be 'fgsm', 'fgsm_rs', 'pgd' or a callable"),
    (dict(eps_warmup=-1), r"eps_warmup=-1"),
    (dict(early_stopping=2), r"needs validation_data"),
    (dict(early_stopping=0, validation_data=None), r"early_stopping=0"),
    (dict(validation_attack=5), r"attack must be 'fgsm', 'fgsm_rs', 'pgd' or a callable"),
    (dict(attack="fgsm_rs", attack_kwargs={"steps": 2}), r"\['steps'\]"),
    (dict(eps=-0.1), r"eps=-0.1"),
    (dict(epochs=0), r"epochs=0"),
    (dict(batch_size=0), r"batch_size=0"),
    (dict(attack="pgd", attack_kwargs={"stepz": 3}), r"\['stepz'\]"),
    (dict(attack="fgsm", attack_kwargs={"steps": 3}), r"\['steps'\]"),
    (dict(optimizer=keras.optimizers.SGD(0.1), learning_rate=0.1), r"either optimizer= or learning_rate="),
])
def test_bad_arguments(small, kwargs, match):
    args = dict(attack="fgsm", eps=0.1, epochs=1)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        training.adversarial_train(fresh(small), small.x_train[:10], small.y_train[:10], **args)


def test_bad_data(small):
    x, y = small.x_train[:10], small.y_train[:10]
    with pytest.raises(ValueError, match="same length"):
        training.adversarial_train(fresh(small), x, y[:9], eps=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        training.adversarial_train(fresh(small), x * 255, y, eps=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\], found values in \[.*, 12\]"):
        training.adversarial_train(fresh(small), x, np.where(y == y[0], 12, y), eps=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"validation y must hold class indices"):
        training.adversarial_train(fresh(small), x, y, eps=0.1, epochs=1, validation_data=(x, y - 1))
    with pytest.raises(TypeError, match="classifier must be a keras.Model"):
        training.AdversarialModel(lambda x: x, eps=0.1)


@pytest.mark.slow
def test_a_learning_rate_is_never_silently_ignored(small):
    model = fresh(small)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="already compiled with SGD"):
        training.adversarial_train(model, small.x_train[:64], small.y_train[:64], eps=0.1, epochs=1,
                                   learning_rate=0.1)
    before = [w.copy() for w in model.get_weights()]
    training.adversarial_train(model, small.x_train[:64], small.y_train[:64], attack="fgsm", eps=0.1, epochs=1)
    for a, b in zip(before, model.get_weights()):  # continued with the model's own optimizer: rate 0
        np.testing.assert_array_equal(a, b)


def test_warmup_cosine_schedule():
    sched = schedules.warmup_cosine(2e-3, 100, warmup=0.2)
    lrs = [float(sched(s)) for s in (0, 10, 20, 60, 100)]
    assert lrs[0] == pytest.approx(0.0, abs=1e-9) and lrs[1] == pytest.approx(1e-3, rel=1e-3)
    assert lrs[2] == pytest.approx(2e-3, rel=1e-3) and lrs[2] > lrs[3] > lrs[4]
    with pytest.raises(ValueError, match="warmup=1.5"):
        schedules.warmup_cosine(1e-3, 10, warmup=1.5)
    with pytest.raises(ValueError, match="steps=0"):
        schedules.warmup_cosine(1e-3, 0)
    assert schedules.steps_per_epoch(3500, 64) == 55


@pytest.mark.slow
def test_eps_warmup_ramps_the_budget(small):
    h = training.adversarial_train(fresh(small), small.x_train[:128], small.y_train[:128], attack="fgsm", eps=0.3,
                                   epochs=4, batch_size=64, eps_warmup=3)
    np.testing.assert_allclose(h.history["eps"], [0.1, 0.2, 0.3, 0.3], rtol=1e-6)


@pytest.mark.slow
def test_warmup_epochs_never_count_as_the_best(small):
    # During the warm-up the training attack is weak, and a model scored at a warm-up ε looks robust. Early
    # stopping may only pick epochs trained (and validated) at the full ε.
    model = fresh(small)
    val = (small.x_val[:100], small.y_val[:100])
    h = training.adversarial_train(model, small.x_train[:256], small.y_train[:256], attack="fgsm", eps=0.3,
                                   epochs=6, batch_size=64, eps_warmup=4, early_stopping=1, validation_data=val)
    assert h.params["best_epoch"] >= 3  # epochs 0-2 ran at 0.075, 0.15, 0.225
    # the validation figures are measured at the full ε in every epoch, warm-up or not
    best = h.params["best_epoch"]
    full_eps = evaluate.accuracy(model, attacks.fgsm(model, *val, 0.3), val[1])
    assert full_eps == pytest.approx(h.history["val_adv_accuracy"][best])


@pytest.mark.slow
def test_fgsm_rs_is_one_random_start_step(small):
    model = fresh(small)
    h = training.adversarial_train(model, small.x_train[:256], small.y_train[:256], attack="fgsm_rs", eps=0.1,
                                   epochs=2, batch_size=64, validation_data=(small.x_val[:64], small.y_val[:64]))
    assert len(h.history["val_adv_accuracy"]) == 2 and h.model.recipe["attack"] == "fgsm_rs"
    fn = training.make_attack("fgsm_rs", 0.1)
    x, y = small.x_val[:128], small.y_val[:128]
    x_adv = tf.function(lambda a, b: fn(model, a, b))(tf.constant(x), tf.constant(y)).numpy()
    assert np.abs(x_adv - x).max() <= 0.1 + 1e-6 and not np.array_equal(x_adv, attacks.fgsm(model, x, y, 0.1))
    # From a uniform start u in [-ε, ε], one sign step of 1.25·ε, projected: a pixel not clipped to [0, 1] moves by
    # at least 0.25·ε (|u ± 1.25·ε| >= 0.25·ε) unless its gradient is exactly 0, by less than ε on some pixels (the
    # random start), and mostly in the direction of the sign of the clean image's gradient.
    # Uniform noise fails the first (a quarter of its pixels move less), ±ε noise the second, both the third.
    delta, inside = x_adv - x, (x_adv > 0.0) & (x_adv < 1.0)
    g = attacks.input_gradient(model, x, y)
    moved = inside & (g != 0)
    assert np.mean(np.abs(delta[moved]) < 0.025 - 1e-6) < 0.01  # measured: none
    assert np.mean(np.abs(delta[inside]) < 0.09) > 0.1  # measured: 17 %
    assert np.mean(np.sign(delta[moved]) == np.sign(g[moved])) > 0.6  # measured: 68 % (noise: 50 %)


@pytest.mark.slow
def test_early_stopping_restores_the_best_epoch(small):
    model = fresh(small)
    val = (small.x_val[:64], small.y_val[:64])
    h = training.adversarial_train(model, small.x_train[:256], small.y_train[:256], attack="fgsm", eps=0.1,
                                   epochs=12, batch_size=64, validation_data=val, early_stopping=1,
                                   validation_attack="pgd", validation_attack_kwargs={"steps": 3})
    best = h.params["best_epoch"]
    accs = h.history["val_adv_accuracy"]
    assert accs[best] == max(accs)
    assert len(accs) == 12 or len(accs) == best + 2  # stopped one epoch after the last improvement
    # The restored weights are the best epoch's: re-evaluating gives its (deterministic, clean) accuracy.
    assert evaluate.accuracy(model, *val) == pytest.approx(h.history["val_clean_accuracy"][best])


def test_cyclic_and_piecewise_schedules():
    sched = schedules.cyclic(5e-3, 100, peak_at=0.4)
    lrs = [float(sched(s)) for s in (0, 20, 40, 70, 100, 150)]
    np.testing.assert_allclose(lrs, [0.0, 2.5e-3, 5e-3, 2.5e-3, 0.0, 0.0], atol=1e-9)
    assert isinstance(keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(sched)),
                      schedules.Cyclic)
    pw = schedules.piecewise([1e-3, 1e-4], [50])
    assert float(pw(10)) == pytest.approx(1e-3) and float(pw(60)) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="peak_at=1.0"):
        schedules.cyclic(1e-3, 10, peak_at=1.0)
    with pytest.raises(ValueError, match="one more value than boundaries"):
        schedules.piecewise([1e-3], [5])
    with pytest.raises(ValueError, match="increasing"):
        schedules.piecewise([1e-3, 1e-4, 1e-5], [50, 20])


@pytest.mark.slow
def test_an_optimizer_passed_twice_continues_its_schedule(small):
    model = fresh(small)
    optimizer = keras.optimizers.Adam(schedules.piecewise([1e-3, 0.0], [2]))  # two real steps, then rate zero
    args = dict(attack="fgsm", eps=0.1, epochs=1, batch_size=64, optimizer=optimizer)
    training.adversarial_train(model, small.x_train[:256], small.y_train[:256], **args)
    after = [w.copy() for w in model.get_weights()]
    training.adversarial_train(model, small.x_train[:256], small.y_train[:256], **args)
    assert int(optimizer.iterations) == 8
    for a, b in zip(after, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the optimizer kept its schedule: steps 4..7 had rate 0


def sgd_adv(ds):
    adv = training.AdversarialModel(fresh(ds), attack="fgsm", eps=0.1, mode="double")
    adv.compile(optimizer=keras.optimizers.SGD(0.1))
    return adv


@pytest.mark.slow
def test_dataset_input_trains_like_arrays(small):
    x, y = small.x_train[:256], small.y_train[:256]
    a, b = sgd_adv(small), sgd_adv(small)
    ha = a.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    batches = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))).batch(64)
    hb = b.fit(batches, epochs=1, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-6)
    assert hb.history["loss"][0] == pytest.approx(ha.history["loss"][0], rel=1e-5)
    assert hb.history["adv_accuracy"] == ha.history["adv_accuracy"]


@pytest.mark.slow
def test_a_validation_dataset_validates_like_arrays(small):
    x, y = small.x_train[:64], small.y_train[:64]
    xv, yv = small.x_val[:50], small.y_val[:50]
    runs = [training.adversarial_train(fresh(small), x, y, attack="fgsm", eps=0.1, epochs=1, validation_data=val)
            for val in ((xv, yv), tf.data.Dataset.from_tensor_slices((xv, yv)).batch(25))]
    for key in ("val_clean_accuracy", "val_adv_accuracy"):
        assert runs[1].history[key] == pytest.approx(runs[0].history[key]), key


@pytest.mark.slow
def test_bad_datasets(small):
    x, y = small.x_train[:64], small.y_train[:64]
    d = tf.data.Dataset.from_tensor_slices
    cases = [
        ((d((x, y)).batch(32), y), ValueError, "y must be None"),
        ((d((x, y)), None), ValueError, "batch the dataset"),
        ((d(x).batch(32), None), ValueError, r"\(images, labels\)"),
        ((d(((x * 255).astype(np.uint8), y)).batch(32), None), TypeError, "float32 in"),
        ((d((x, y.astype(np.float32))).batch(32), None), TypeError, "integer class indices"),
        ((d((x * 2, y)).batch(32), None), ValueError, r"outside \[0, 1\]"),
        ((d((x[:0], y[:0])).batch(32), None), ValueError, "no examples"),
    ]
    for (data_x, data_y), err, match in cases:
        with pytest.raises(err, match=match):
            training.adversarial_train(fresh(small), data_x, data_y, attack="fgsm", eps=0.1, epochs=1)


@pytest.mark.slow
def test_mirrored_strategy_on_two_devices_matches_one_device():
    # A fresh interpreter: TensorFlow's CPU can be split into two logical devices only before it is first used.
    script = Path(__file__).with_name("distributed_check.py")
    modes = ["double", "adversarial", "outside"]
    out = subprocess.run([sys.executable, str(script), *modes], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(line) for line in out.stdout.strip().splitlines() if line.startswith("{")]
    assert [r["mode"] for r in results] == modes
    for result in results:
        assert result["replicas"] == 2
        # Same batches, same start, plain SGD: summing two half-batch gradients must give the full-batch step.
        assert result["max_weight_diff"] < 1e-5, result
        assert result["multi"]["adv_accuracy"] == result["single"]["adv_accuracy"]
        assert result["multi"]["val_adv_accuracy"] == result["single"]["val_adv_accuracy"]
        assert result["multi"]["loss"] == pytest.approx(result["single"]["loss"], rel=1e-5)


@pytest.mark.slow
def test_mixed_precision_model_trains_with_loss_scaling(small):
    model = models.build_model(small.input_shape, small.num_classes, seed=0, mixed_precision=True)
    assert model.get_layer("conv1").compute_dtype == "float16" and model.output.dtype == "float32"
    h = training.adversarial_train(model, small.x_train[:256], small.y_train[:256], attack="fgsm", eps=0.1,
                                   epochs=2, batch_size=64)
    assert isinstance(h.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(h.history["loss"]).all() and h.history["loss"][1] < h.history["loss"][0]
    x_adv = attacks.fgsm(model, small.x_val[:32], small.y_val[:32], 0.1)
    assert x_adv.dtype == np.float32 and np.abs(x_adv - small.x_val[:32]).max() <= 0.1 + 1e-6


@pytest.mark.slow
def test_xla_compiled_step_matches_the_plain_one(small):
    x, y = small.x_train[:128], small.y_train[:128]
    plain, xla = fresh(small), fresh(small)
    sgd = dict(attack="fgsm", eps=0.1, epochs=1, batch_size=64)
    models.seed_everything(0)  # deterministic: XLA must refuse clearly
    with pytest.raises(ValueError, match="jit_compile=True cannot run while TensorFlow's op determinism is on"):
        training.adversarial_train(xla, x, y, jit_compile=True, **sgd)
    models.seed_everything(0, deterministic=False)
    try:
        assert not _private.op_determinism_enabled()
        training.adversarial_train(plain, x, y, optimizer=keras.optimizers.SGD(0.1), **sgd)
        training.adversarial_train(xla, x, y, optimizer=keras.optimizers.SGD(0.1), jit_compile=True, **sgd)
    finally:
        models.seed_everything(0)
    assert _private.op_determinism_enabled()
    for a, b in zip(plain.get_weights(), xla.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-4)


class StudentStep(keras.Model):
    """A hand-written step as a student writes it in notebook 05, with switches for the usual mistakes."""

    def __init__(self, classifier, eps, mistake=None):
        super().__init__()
        self.classifier, self.eps, self.mistake = classifier, eps, mistake
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def train_step(self, data):
        x, y = data
        x_adv = tf.stop_gradient(attacks.fgsm(self.classifier, x, y, self.eps))
        x_in, y_in = tf.concat([x, x_adv], 0), tf.concat([y, y], 0)
        if self.mistake == "adversarial":
            x_in, y_in = x_adv, y
        elif self.mistake == "clean":
            x_in, y_in = x, y
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y_in, self(x_in, training=True))
            if self.mistake == "sum":
                loss = loss * tf.cast(tf.shape(x_in)[0], loss.dtype)
            if self.mistake == "eps":
                loss = self.loss_fn(y_in, self(tf.concat([x, tf.clip_by_value(x + 0.5, 0, 1)], 0), training=True))
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return {"loss": loss}


@pytest.mark.parametrize("mistake, verdict", [(None, "double"), ("adversarial", "adversarial"), ("clean", "clean"),
                                              ("sum", "scaled"), ("eps", "none")])
@pytest.mark.slow
def test_diagnose_step_names_what_a_hand_written_step_does(small, mistake, verdict):
    x, y = small.x_train[:32], small.y_train[:32]
    match, message = selfcheck.diagnose_step(lambda c: StudentStep(c, 0.1, mistake), x, y, eps=0.1)
    assert match == verdict, message
    assert ("correct" in message) == (verdict == "double")


@pytest.mark.slow
def test_ibp_training_certifies_what_standard_training_cannot(small, ibp_run, trained_model):
    from helpers import certify

    # IBPModel.fit as the certification tests' model was trained (conftest's ibp_run: 10 epochs on 500 digits,
    # validated each epoch); the standard model is the session's trained_model (3 epochs of standard training).
    clf, h, ds = ibp_run
    assert set(h.history) >= {"loss", "clean_accuracy", "certified_accuracy", "val_certified_accuracy"}
    assert len(h.history["val_certified_accuracy"]) == 10
    ibp = training.IBPModel(fresh(small), eps=0.1, ramp_steps=4 * 13, kappa_end=0.5)
    eps_t, kappa = ibp.schedule(tf.constant(26))
    assert float(eps_t) == pytest.approx(0.05) and float(kappa) == pytest.approx(0.75)  # half-way up the ramp
    cert_ibp = certify.certified_accuracy(clf, ds.x_val, ds.y_val, 0.1)
    assert cert_ibp == pytest.approx(h.history["val_certified_accuracy"][-1], abs=1e-6)  # test_step = certify
    assert cert_ibp > certify.certified_accuracy(trained_model, ds.x_val, ds.y_val, 0.1) + 0.1
    with pytest.raises(ValueError, match="kappa_end=1.5"):
        training.IBPModel(fresh(small), eps=0.1, ramp_steps=10, kappa_end=1.5)
    softmax_out = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                    keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(ValueError, match="softmax"):
        training.IBPModel(softmax_out, eps=0.1, ramp_steps=10)


@pytest.mark.slow
def test_trades_mode_trains_on_the_kl_attack(small):
    model = fresh(small)
    h = training.adversarial_train(model, small.x_train[:256], small.y_train[:256], attack="pgd", eps=0.1, epochs=2,
                                   batch_size=64, mode="trades", beta=6.0, attack_kwargs={"steps": 3},
                                   validation_data=(small.x_val[:64], small.y_val[:64]))
    assert np.isfinite(h.history["loss"]).all() and h.history["loss"][1] < h.history["loss"][0]
    x = tf.constant(small.x_val[:16])
    x_adv = training.trades_attack(model, x, 0.1, steps=3).numpy()
    assert np.abs(x_adv - small.x_val[:16]).max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with pytest.raises(ValueError, match="mode='trades' uses its own KL attack"):
        training.AdversarialModel(fresh(small), attack="fgsm", eps=0.1, mode="trades")


# ------------------------------------------------------------------------------- stalls at chance (issue 20)
class _FakeModel:
    """Stands in for the trained model of a callback: its output shape and a stop flag."""
    output_shape = (None, 10)
    stop_training = False


def _monitor_on(curve, end=True, clean=None, **kwargs):
    """Drive a StallMonitor through made-up epochs: ``curve`` is adv_accuracy, ``clean`` clean_accuracy (default
    the same values: a model at chance predicts one class, clean or attacked)."""
    monitor = training.StallMonitor(**kwargs)
    monitor.set_model(_FakeModel())
    monitor.on_train_begin()
    for epoch, (value, clean_value) in enumerate(zip(curve, curve if clean is None else clean)):
        monitor.on_epoch_end(epoch, {"adv_accuracy": value, "clean_accuracy": clean_value})
    if end:
        monitor.on_train_end()
    return monitor


def test_stall_monitor_warns_when_training_stays_at_chance():
    with pytest.warns(training.StallWarning, match=r"stalled.*chance \(0\.10\).*eps_warmup"):
        monitor = _monitor_on([0.08, 0.10, 0.09, 0.10])
    assert monitor.stalled_at == 2 and not monitor.model.stop_training
    with pytest.warns(training.StallWarning):
        assert _monitor_on([0.1, 0.09, 0.1], stop=True).model.stop_training


def test_stall_monitor_never_reports_a_run_shorter_than_its_patience(recwarn):
    # (It used to report a short run that ended at chance: a fresh model after 1 epoch was called stalled.)
    assert _monitor_on([0.1, 0.09], end=False).stalled_at is None
    assert _monitor_on([0.1, 0.09]).stalled_at is None
    assert not [w for w in recwarn if issubclass(w.category, training.StallWarning)]


@pytest.mark.parametrize("curve", [[0.04, 0.13, 0.21, 0.30], [0.1, 0.1, 0.2, 0.1, 0.3], [0.45]])
def test_stall_monitor_is_quiet_while_training_moves(curve, recwarn):
    assert _monitor_on(curve).stalled_at is None
    assert not [w for w in recwarn if issubclass(w.category, training.StallWarning)]


@pytest.mark.slow
def test_eps_ramps_by_default_only_where_training_stalls(small):
    def wrap(attack, mode, **kw):
        return training.AdversarialModel(fresh(small), attack=attack, eps=0.3, mode=mode, **kw)
    assert wrap("pgd", "adversarial").warmup_epochs(20) == 5
    assert wrap("pgd", "adversarial").warmup_epochs(1) == 0
    assert wrap("fgsm", "adversarial").warmup_epochs(20) == 0
    assert wrap("pgd", "double").warmup_epochs(20) == 0
    assert wrap("pgd", "adversarial", eps_warmup=0).warmup_epochs(20) == 0
    assert wrap("fgsm", "double", eps_warmup=3).warmup_epochs(20) == 3
    with pytest.raises(ValueError, match="eps_warmup"):
        wrap("pgd", "adversarial", eps_warmup=-1)
    h = training.adversarial_train(fresh(small), small.x_train[:64], small.y_train[:64], attack="pgd", eps=0.3,
                                   epochs=4, batch_size=64, mode="adversarial", attack_kwargs={"steps": 1})
    np.testing.assert_allclose(h.history["eps"], [0.3] * 4, rtol=1e-6)      # 4 // 4 = 1 epoch: no ramp
    h = training.adversarial_train(fresh(small), small.x_train[:64], small.y_train[:64], attack="pgd", eps=0.3,
                                   epochs=8, batch_size=64, mode="adversarial", attack_kwargs={"steps": 1})
    np.testing.assert_allclose(h.history["eps"], [0.15] + [0.3] * 7, rtol=1e-6)  # 8 // 4 = 2 epochs


@pytest.mark.slow
def test_a_real_stall_is_reported_even_when_early_stopping_restores_it(mnist):
    # Seed 2 of PGD-7 at ε = 0.3 from the first step stays at chance (benchmarks/results/stall_rate.md).
    models.seed_everything(2)
    model = models.build_model(mnist.input_shape, mnist.num_classes, seed=2)
    adv = training.AdversarialModel(model, attack="pgd", eps=0.3, mode="adversarial", eps_warmup=0)
    adv.compile(optimizer=keras.optimizers.Adam(1e-3))
    # patience 2: all 3 epochs run (a StallMonitor never reports fewer epochs than its patience, 3)
    stop = keras.callbacks.EarlyStopping("val_adv_accuracy", mode="max", patience=2, restore_best_weights=True)
    keras.utils.set_random_seed(2)
    with pytest.warns(training.StallWarning, match="stalled"):
        h = adv.fit(mnist.x_train, mnist.y_train, batch_size=64, epochs=3, verbose=0, callbacks=[stop],
                    validation_data=(mnist.x_val[:100], mnist.y_val[:100]))
    assert max(h.history["adv_accuracy"]) < 0.15


# ------------------------------------------------------------------------- the losses against their formulas
def _dense_classifier(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Dense(12, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(4)(h))


def _batch(n=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 6, 6, 1), dtype=np.float32), rng.integers(0, 4, n)


def _ce(logits, y):
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def test_trades_loss_is_ce_plus_beta_times_kl():
    """One TRADES step at learning rate 0 reports CE(f(x), y) + β·KL(softmax f(x) ‖ softmax f(x')), computed here
    by hand, with x' from a fixed stand-in attack."""
    x, y = _batch()
    clf = _dense_classifier()
    adv = training.AdversarialModel(clf, attack="pgd", eps=0.1, mode="trades", beta=3.0)
    adv.attack = lambda model, xb, yb: tf.clip_by_value(xb + 0.1 * tf.sign(xb - 0.5), 0.0, 1.0)
    adv.compile(optimizer=keras.optimizers.SGD(0.0))
    logs = adv.train_step((tf.constant(x), tf.constant(y)))
    x_adv = np.clip(x + 0.1 * np.sign(x - 0.5), 0.0, 1.0)
    clean, moved = clf(x).numpy().astype(np.float64), clf(x_adv).numpy().astype(np.float64)
    p = np.exp(clean - clean.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    q = np.exp(moved - moved.max(1, keepdims=True)); q /= q.sum(1, keepdims=True)
    kl = np.mean(np.sum(p * np.log(p / q), axis=1))
    assert kl > 1e-4  # the stand-in attack moves the prediction: the KL term is really there
    np.testing.assert_allclose(float(logs["loss"]), _ce(clean, y) + 3.0 * kl, rtol=1e-4)


def test_ibp_loss_mixes_clean_and_worst_case_ce_on_its_schedule():
    """At optimiser step 3 of a 4-step ramp (after 1 warm-up step): ε_t = ½·eps_train, κ_t = 1 − ½(1 − κ_end); the
    reported loss is κ_t·CE(z, y) + (1 − κ_t)·CE(ẑ, y), ẑ the worst-case logits at ε_t; test_step reports CE(ẑ) at ε."""
    from helpers import certify

    x, y = _batch()
    clf = _dense_classifier()
    ibp = training.IBPModel(clf, eps=0.1, eps_train=0.2, ramp_steps=4, warmup_steps=1, kappa_end=0.2)
    ibp.compile(optimizer=keras.optimizers.SGD(0.0))
    ibp.optimizer.build(ibp.trainable_variables)
    ibp.optimizer.iterations.assign(3)
    eps_t, kappa = (float(v) for v in ibp.schedule(3))
    assert (eps_t, kappa) == pytest.approx((0.1, 0.6))
    logs = ibp.train_step((tf.constant(x), tf.constant(y)))
    z, z_hat = clf(x).numpy(), certify.worst_case_logits(clf, x, y, eps_t).numpy()
    assert _ce(z_hat, y) > _ce(z, y) + 1e-3  # the two terms differ, so a wrong weighting shows
    np.testing.assert_allclose(float(logs["loss"]), kappa * _ce(z, y) + (1 - kappa) * _ce(z_hat, y), rtol=1e-4)
    for m in ibp.metrics:
        m.reset_state()
    logs = ibp.test_step((tf.constant(x), tf.constant(y)))
    np.testing.assert_allclose(float(logs["loss"]),
                               _ce(certify.worst_case_logits(clf, x, y, 0.1).numpy(), y), rtol=1e-4)

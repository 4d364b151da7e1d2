import numpy as np
import pytest
import tensorflow as tf

from helpers import _compiled, attacks, autoattack, evaluate, models


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def closed_form_grad(x, y, w, b):
    """d CE(softmax(Wx + b), y) / dx = W (p - onehot(y)), per example."""
    flat = x.reshape(len(x), -1)
    p = softmax(flat @ w + b)
    p[np.arange(len(y)), y] -= 1.0
    return (p @ w.T).reshape(x.shape)


@pytest.fixture
def lin_batch():
    rng = np.random.default_rng(2)
    x = rng.uniform(0.3, 0.7, size=(5, 4, 4, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0], np.int64)
    return x, y


def test_input_gradient_matches_closed_form(linear_model, lin_batch):
    model, w, b = linear_model
    x, y = lin_batch
    np.testing.assert_allclose(attacks.input_gradient(model, x, y), closed_form_grad(x, y, w, b), rtol=1e-4,
                               atol=1e-6)
    # Targeted: minus the gradient of the loss toward the target, so adding it helps the attacker.
    np.testing.assert_allclose(attacks.input_gradient(model, x, y, targeted=True),
                               -closed_form_grad(x, y, w, b), rtol=1e-4, atol=1e-6)


def test_gradient_is_per_example_and_batch_size_independent(linear_model, lin_batch):
    model, _, _ = linear_model
    x, y = lin_batch
    whole = attacks.input_gradient(model, x, y)
    one = attacks.input_gradient(model, x[:1], y[:1])
    np.testing.assert_allclose(whole[:1], one, rtol=1e-5)


@pytest.mark.parametrize("scale", ["raw", "max", "l2", "sign"])
def test_step_rules_have_the_documented_size(linear_model, lin_batch, scale):
    model, w, b = linear_model
    x, y = lin_batch  # pixels in [0.3, 0.7] and eps 0.05: no clipping, the step is seen exactly
    eps = 0.05
    delta = (attacks.gradient_attack(model, x, y, eps, scale=scale) - x).reshape(len(x), -1)
    g = closed_form_grad(x, y, w, b).reshape(len(x), -1)
    if scale == "raw":
        np.testing.assert_allclose(delta, eps * g, rtol=1e-3, atol=1e-6)
    elif scale == "max":
        np.testing.assert_allclose(np.abs(delta).max(axis=1), eps, rtol=1e-4)
        np.testing.assert_allclose(delta / eps, g / np.abs(g).max(axis=1, keepdims=True), rtol=1e-3, atol=1e-5)
    elif scale == "l2":
        np.testing.assert_allclose(np.linalg.norm(delta, axis=1), eps, rtol=1e-4)
    else:
        np.testing.assert_allclose(np.abs(delta), eps, rtol=1e-4)
        assert np.all(np.sign(delta) == np.sign(g))


def test_fgsm_is_the_sign_rule_and_clips_to_unit_range(shipped_model, batch):
    x, y = batch
    adv = attacks.fgsm(shipped_model, x, y, 0.3)
    np.testing.assert_array_equal(adv, attacks.gradient_attack(shipped_model, x, y, 0.3, scale="sign"))
    assert adv.dtype == np.float32 and adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.abs(adv - x).max() <= 0.3 + 1e-6
    # MNIST background pixels are 0: pushed down, they must stay at 0 (clipped), not go negative.
    assert np.mean(adv == 0.0) > 0.3


def test_fgsm_eps_zero_is_identity(shipped_model, batch):
    x, y = batch
    np.testing.assert_array_equal(attacks.fgsm(shipped_model, x, y, 0.0), x)


def test_fgsm_collapses_accuracy(shipped_model, batch):
    x, y = batch
    clean = evaluate.accuracy(shipped_model, x, y)
    assert clean > 0.9
    assert evaluate.accuracy(shipped_model, attacks.fgsm(shipped_model, x, y, 0.2), y) < clean - 0.4


@pytest.mark.slow
@pytest.mark.parametrize("norm,eps", [("inf", 0.3), ("l2", 2.0)])
def test_pgd_stays_in_ball_and_unit_range(trained_model, batch, norm, eps):
    x, y = batch
    adv = attacks.pgd(trained_model, x, y, eps, steps=5, norm=norm, seed=0)
    d = (adv - x).reshape(len(x), -1)
    size = np.abs(d).max(axis=1) if norm == "inf" else np.linalg.norm(d, axis=1)
    assert size.max() <= eps * (1 + 1e-5)
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert size.mean() > 0.5 * eps  # it actually uses its budget


@pytest.mark.slow
def test_pgd_at_least_as_strong_as_fgsm(trained_model, batch):
    x, y = batch
    acc = {name: evaluate.accuracy(trained_model, adv, y) for name, adv in {
        "fgsm": attacks.fgsm(trained_model, x, y, 0.2),
        "pgd": attacks.pgd(trained_model, x, y, 0.2, steps=10, seed=0),
    }.items()}
    assert acc["pgd"] < acc["fgsm"] - 0.1
    assert acc["pgd"] < 0.3


@pytest.mark.slow
def test_l2_pgd_beats_l2_single_step(trained_model, batch):
    x, y = batch
    clean = evaluate.accuracy(trained_model, x, y)
    one = evaluate.accuracy(trained_model, attacks.gradient_attack(trained_model, x, y, 1.5, scale="l2"), y)
    many_adv = attacks.pgd(trained_model, x, y, 1.5, norm="l2", steps=10, seed=0)
    many = evaluate.accuracy(trained_model, many_adv, y)
    assert one < clean - 0.1  # a single L2 step of length 1.5 already hurts (measured: 0.91 -> 0.67)
    assert many < one - 0.05  # ten steps do clearly better (measured: 0.55)
    # every step counts: ten steps reach a higher loss than the first of them alone, image by image
    first = attacks.pgd(trained_model, x, y, 1.5, norm="l2", steps=1, step_size=attacks.default_step_size(1.5, 10),
                        seed=0)
    gain = attacks.per_example_loss(trained_model, many_adv, y).numpy() - attacks.per_example_loss(
        trained_model, first, y).numpy()
    assert np.mean(gain > 0) > 0.9


@pytest.mark.slow
def test_restarts_never_hurt_the_attacker(trained_model, batch):
    x, y = batch
    one = attacks.pgd(trained_model, x, y, 0.05, steps=3, seed=3)
    five = attacks.pgd(trained_model, x, y, 0.05, steps=3, seed=3, restarts=5)
    assert evaluate.accuracy(trained_model, five, y) <= evaluate.accuracy(trained_model, one, y)
    # per image: the first restart is the single run, and keeping the best of five can only raise the score ...
    s1, s5 = (attacks._attack_score(trained_model, adv, y, False) for adv in (one, five))
    assert np.all(s5 >= s1 - 1e-6)
    # ... and the other four starts really are other attacks: they find higher losses (measured: 66 of 256 images)
    assert np.sum(s5 > s1 + 1e-3) >= 20


@pytest.mark.slow
def test_pgd_is_reproducible_with_a_seed(trained_model, batch):
    x, y = batch
    a = attacks.pgd(trained_model, x, y, 0.1, steps=2, seed=7)
    np.testing.assert_array_equal(a, attacks.pgd(trained_model, x, y, 0.1, steps=2, seed=7))
    assert not np.array_equal(a, attacks.pgd(trained_model, x, y, 0.1, steps=2, seed=8))


@pytest.mark.slow
def test_bim_without_random_start_is_deterministic(trained_model, batch):
    x, y = batch
    a = attacks.pgd(trained_model, x, y, 0.1, steps=3, random_start=False)
    np.testing.assert_array_equal(a, attacks.pgd(trained_model, x, y, 0.1, steps=3, random_start=False))


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_targeted_attack_raises_target_probability(trained_model, batch, attack):
    x, y = batch
    target = np.full(len(y), 3, np.int64)
    keep = y != 3
    x, target = x[keep], target[keep]
    fn = attacks.fgsm if attack == "fgsm" else attacks.pgd
    adv = fn(trained_model, x, target, 0.2, targeted=True)

    def p3(images):
        return tf.nn.softmax(evaluate.predict_logits(trained_model, images)).numpy()[:, 3]

    assert p3(adv).mean() > p3(x).mean() + 0.05
    if attack == "pgd":
        assert np.mean(evaluate.predict(trained_model, adv)[0] == 3) > 0.5


def test_project_onto_the_linf_and_l2_balls():
    rng = np.random.default_rng(4)
    delta = rng.normal(size=(6, 5, 5, 1)).astype(np.float32)
    delta[0] = 0.0  # the zero perturbation stays zero (no division by its length)
    delta[1] *= 1e-3  # inside both balls: unchanged
    eps = 0.5
    linf = attacks.project(delta, eps, "inf").numpy()
    np.testing.assert_array_equal(linf, np.clip(delta, -eps, eps))
    l2 = attacks.project(delta, eps, "l2").numpy()
    length = np.linalg.norm(delta.reshape(6, -1), axis=1)
    projected = np.linalg.norm(l2.reshape(6, -1), axis=1)
    outside = length > eps
    assert outside[2:].all() and not outside[:2].any()
    np.testing.assert_allclose(projected[outside], eps, rtol=1e-5)  # outside: pulled onto the sphere ...
    cos = (l2 * delta).reshape(6, -1).sum(1)[outside] / (projected * length)[outside]
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)  # ... along the same direction
    np.testing.assert_array_equal(l2[:2], delta[:2])  # inside: unchanged
    np.testing.assert_array_equal(attacks.project(l2, eps, "l2").numpy()[:2], l2[:2])
    per_example = attacks.project(delta[2:3], eps, "l2").numpy()
    np.testing.assert_allclose(per_example, l2[2:3], rtol=1e-6)  # each example on its own


def test_random_noise_sizes_and_seed():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.4, 0.6, size=(4, 6, 6, 1)).astype(np.float32)
    noisy = attacks.random_noise(x, 0.1, seed=1)
    np.testing.assert_allclose(np.abs(noisy - x), 0.1, rtol=1e-5)
    np.testing.assert_array_equal(noisy, attacks.random_noise(x, 0.1, seed=1))
    l2 = attacks.random_noise(x, 0.5, norm="l2", seed=1)
    np.testing.assert_allclose(np.linalg.norm((l2 - x).reshape(4, -1), axis=1), 0.5, rtol=1e-5)
    edge = attacks.random_noise(np.zeros_like(x), 0.3, seed=2)
    assert edge.min() == 0.0 and edge.max() <= 0.3 + 1e-7


def test_noise_much_weaker_than_fgsm(shipped_model, batch):
    x, y = batch
    noise = evaluate.accuracy(shipped_model, attacks.random_noise(x, 0.2, seed=0), y)
    fgsm = evaluate.accuracy(shipped_model, attacks.fgsm(shipped_model, x, y, 0.2), y)
    assert noise > fgsm + 0.3


def test_compiled_once_per_configuration(shipped_model, batch):
    x, y = batch
    attacks.fgsm(shipped_model, x, y, 0.1)
    fn = _compiled._cache[shipped_model][("step", ("sign", False))]
    before = fn.experimental_get_tracing_count()
    attacks.fgsm(shipped_model, x[:17], y[:17], 0.2)  # other batch size and ε: no new trace
    attacks.fgsm(shipped_model, x[:100], y[:100], 0.05)
    assert fn.experimental_get_tracing_count() == before == 1


@pytest.mark.slow
def test_usable_inside_tf_function(trained_model, batch):
    x, y = batch

    @tf.function
    def step(xb, yb):
        return attacks.fgsm(trained_model, xb, yb, 0.1), attacks.pgd(trained_model, xb, yb, 0.1, steps=2)

    a, p = step(tf.constant(x[:8]), tf.constant(y[:8]))
    assert isinstance(a, tf.Tensor)
    np.testing.assert_allclose(a.numpy(), attacks.fgsm(trained_model, x[:8], y[:8], 0.1), atol=1e-6)
    assert np.abs(p.numpy() - x[:8]).max() <= 0.1 + 1e-6


@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: attacks.fgsm(m, x, y, -0.1), r"eps=-0.1"),
    (lambda m, x, y: attacks.fgsm(m, x, y, float("nan")), r"eps=nan"),
    (lambda m, x, y: attacks.fgsm(m, x, y, "big"), r"eps must be a real number"),
    (lambda m, x, y: attacks.fgsm(m, x * 2 + 0.5, y, 0.1), r"\[0, 1\]"),
    (lambda m, x, y: attacks.fgsm(m, x[0], y, 0.1), r"4-D batch"),
    (lambda m, x, y: attacks.fgsm(m, (x * 255).astype(np.uint8), y, 0.1), r"divide uint8"),
    (lambda m, x, y: attacks.fgsm(m, x, y[:-1], 0.1), r"same length"),
    (lambda m, x, y: attacks.fgsm(m, x, y + 10, 0.1), r"class indices"),
    (lambda m, x, y: attacks.fgsm(m, np.zeros((2, 32, 32, 3), np.float32), y[:2], 0.1), r"model expects"),
    (lambda m, x, y: attacks.gradient_attack(m, x, y, 0.1, scale="l1"), r"scale='l1'.*'raw', 'max', 'l2', 'sign'"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, norm="l1"), r"norm='l1'.*'inf', 'l2'"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, steps=0), r"steps=0"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, steps=2.5), r"steps must be an integer"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, restarts=0), r"restarts=0"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, restarts=3, random_start=False), r"restarts=3 needs random_start"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, early_stop=1), r"early_stop must be True or False, got 1"),
    (lambda m, x, y: attacks.pgd(m, x, y, 0.1, step_size=-1.0), r"step_size=-1.0"),
    (lambda m, x, y: attacks.random_noise(x, 0.1, norm="l0"), r"norm='l0'"),
    (lambda m, x, y: attacks.random_noise(x, -1), r"eps=-1"),
])
def test_bad_arguments_raise_clear_errors(shipped_model, batch, call, match):
    x, y = batch
    with pytest.raises((ValueError, TypeError), match=match):
        call(shipped_model, x[:4], y[:4])


@pytest.mark.slow
def test_restarts_run_inside_a_tf_function(trained_model, batch, monkeypatch):
    x, y = batch
    x, y = tf.constant(x[:64]), tf.constant(y[:64])
    starts = []
    real = attacks._random_in_ball
    monkeypatch.setattr(attacks, "_random_in_ball", lambda *a: starts.append(1) or real(*a))

    def traced(restarts):
        return tf.function(lambda xb, yb: attacks.pgd(trained_model, xb, yb, 0.1, steps=2, seed=5,
                                                      restarts=restarts))(x, y).numpy()

    one, four = traced(1), traced(4)
    assert len(starts) == 1 + 4  # one random start per restart, traced into the graph
    score = attacks._attack_score
    s1, s4 = score(trained_model, one, y.numpy(), False), score(trained_model, four, y.numpy(), False)
    assert np.all(s4 >= s1 - 1e-6)  # the first restart is the single run: keeping the best can only help
    assert np.any(s4 > s1 + 1e-3)


@pytest.mark.slow
def test_every_chunk_draws_its_own_random_start(trained_model, batch, monkeypatch):
    x, y = batch
    monkeypatch.setattr(attacks, "EVAL_BATCH", 4)
    same = np.repeat(x[:1], 8, axis=0)
    adv = attacks.pgd(trained_model, same, np.repeat(y[:1], 8), 0.2, steps=1, step_size=0.0, seed=0)
    assert len({a.tobytes() for a in adv}) == 8  # 8 copies, 2 chunks: 8 different random starts


@pytest.mark.slow
def test_early_stop_is_at_least_as_strong_and_stops(trained_model, batch):
    x, y = batch
    full = attacks.pgd(trained_model, x, y, 0.1, steps=20, seed=1)
    early = attacks.pgd(trained_model, x, y, 0.1, steps=20, seed=1, early_stop=True)
    assert evaluate.accuracy(trained_model, early, y) <= evaluate.accuracy(trained_model, full, y)
    fooled = evaluate.predict(trained_model, early)[0] != y
    # frozen at the first success: fooled images moved less than the loss-maximising run moved them
    moved_early = np.abs(early - x)[fooled].mean()
    moved_full = np.abs(full - x)[fooled].mean()
    assert moved_early < moved_full
    restarted = attacks.pgd(trained_model, x, y, 0.1, steps=20, seed=1, early_stop=True, restarts=3)
    assert evaluate.accuracy(trained_model, restarted, y) <= evaluate.accuracy(trained_model, early, y)
    assert np.abs(restarted - x).max() <= 0.1 + 1e-6


@pytest.mark.slow
def test_a_dropped_model_is_freed(mnist):
    import gc
    import weakref

    model = models.build_model(mnist.input_shape, mnist.num_classes, seed=3)
    x, y = mnist.x_val[:32], mnist.y_val[:32]
    attacks.fgsm(model, x, y, 0.1)
    attacks.pgd(model, x, y, 0.1, steps=2, restarts=2)
    attacks.input_gradient(model, x, y)
    evaluate.accuracy(model, x, y)
    assert len(_compiled.cached_kinds(model)) >= 4
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None, "the compiled-function cache keeps a dropped model alive"


@pytest.mark.slow
def test_mixed_precision_attacks_see_the_float32_gradient(trained_model, mnist):
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    # A confident model (logits × 3, as after long training): in float16 back-propagation its input gradients
    # underflow to exactly 0 on about half of these images, and FGSM's sign(0) = 0 would not move them.
    weights = trained_model.get_weights()
    weights[-2], weights[-1] = 3 * weights[-2], 3 * weights[-1]
    full = models.build_model(mnist.input_shape, mnist.num_classes)
    half = models.build_model(mnist.input_shape, mnist.num_classes, mixed_precision=True)
    full.set_weights(weights)
    half.set_weights(weights)
    g32 = attacks.input_gradient(full, x, y)
    g16 = attacks.input_gradient(half, x, y)
    zero32 = np.all(g32.reshape(len(x), -1) == 0, axis=1)
    zero16 = np.all(g16.reshape(len(x), -1) == 0, axis=1)
    assert zero16.sum() <= zero32.sum()  # float16 back-propagation must not zero out confident images
    # the same direction as float32 (cosine near 1) wherever float32 has a gradient
    flat32, flat16 = g32.reshape(len(x), -1)[~zero32], g16.reshape(len(x), -1)[~zero32]
    cos = (flat32 * flat16).sum(1) / np.linalg.norm(flat32, axis=1) / np.maximum(np.linalg.norm(flat16, axis=1), 1e-30)
    assert np.median(cos) > 0.99 and cos.min() > 0.9
    acc32 = evaluate.accuracy(full, attacks.fgsm(full, x, y, 0.15), y)
    acc16 = evaluate.accuracy(half, attacks.fgsm(half, x, y, 0.15), y)
    assert acc16 <= acc32 + 0.02  # as strong as on the float32 model


# ------------------------------------------------------------------- the fast first-layer gradient and its fallback
@pytest.mark.slow
def test_without_tensorflows_private_conv_gradient_the_attacks_use_tensorflows_own(trained_model, batch,
                                                                                   monkeypatch):
    """``nn_grad._Conv2DGrad`` is not public API: where a TensorFlow lacks it, the fast path is off (resolved once, at
    import) and the attacks differentiate with TensorFlow's own gradient: same gradients, same attacks."""
    import keras
    from tensorflow.python.ops import nn_grad

    assert attacks.FAST_CONV_AVAILABLE and attacks._TF_CONV2D_GRADIENT is nn_grad._Conv2DGrad
    monkeypatch.delattr(nn_grad, "_Conv2DGrad")
    assert attacks._resolve_tf_conv2d_gradient() is None
    monkeypatch.setattr(attacks, "_TF_CONV2D_GRADIENT", None)
    monkeypatch.setattr(attacks, "FAST_CONV_AVAILABLE", False)
    x, y = batch[0][:64], batch[1][:64]
    xt, yt = tf.constant(x), tf.constant(y)
    fn = tf.function(lambda a, b: attacks.loss_gradient(trained_model, a, b, fast=True)[1])
    ops = [op.type for op in fn.get_concrete_function(xt, yt).graph.get_operations()]
    assert ops.count("Conv2DBackpropInput") == 2  # no override: TensorFlow's gradient for both convolutions
    tape = tf.function(lambda a, b: attacks.loss_gradient(trained_model, a, b)[1])(xt, yt).numpy()
    np.testing.assert_allclose(fn(xt, yt).numpy(), tape, rtol=1e-4, atol=1e-5 * np.abs(tape).max())
    # a copy of the model, so that the attacks are compiled anew, without the fast path
    plain = keras.models.clone_model(trained_model)
    plain.set_weights(trained_model.get_weights())
    for attack in (lambda m: attacks.pgd(m, x, y, 0.1, steps=3, seed=0),
                   lambda m: autoattack.apgd(m, x, y, 0.1, steps=3, seed=0)):
        with_fast, without = attack(trained_model), attack(plain)
        assert np.mean(with_fast == without) > 0.999  # equal up to float rounding of a few gradient signs
        assert np.abs(without - x).max() <= 0.1 + 1e-6


@pytest.mark.slow
def test_the_fast_path_is_resolved_at_import(tmp_path):
    """The same in a fresh interpreter where TensorFlow's private gradient is gone before helpers.attacks loads."""
    import subprocess
    import sys

    script = ("from tensorflow.python.ops import nn_grad\n"
              "del nn_grad._Conv2DGrad\n"
              "import numpy as np\n"
              "from helpers import attacks, models\n"
              "assert not attacks.FAST_CONV_AVAILABLE\n"
              "m = models.build_model((28, 28, 1), 10, seed=0)\n"
              "x = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32)\n"
              "adv = attacks.pgd(m, x, np.arange(8) % 10, 0.1, steps=2, seed=0)\n"
              "assert np.abs(adv - x).max() <= 0.1 + 1e-6 and np.abs(adv - x).max() > 0\n"
              "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]


@pytest.mark.slow
def test_attacks_run_a_dropout_batchnorm_model_in_inference_mode(mnist):
    """Dropout and BatchNorm behave differently in training: every attack must use the model in inference mode, so
    that it is deterministic (the same result twice) and equals the attack on the same model forced to inference."""
    import keras

    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = keras.Input(mnist.input_shape)
    h = L.Conv2D(8, 3, activation="relu")(inputs)
    h = L.BatchNormalization()(h)
    h = L.Flatten()(L.MaxPooling2D()(h))
    model = keras.Model(inputs, L.Dense(mnist.num_classes)(L.Dropout(0.5)(L.Dense(32, activation="relu")(h))))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(mnist.x_train[:512], mnist.y_train[:512], epochs=1, batch_size=64, verbose=0)  # BatchNorm statistics
    x, y = mnist.x_val[:64], mnist.y_val[:64]

    outer = keras.Input(mnist.input_shape)
    frozen = keras.Model(outer, model(outer, training=False))  # the same weights, always in inference mode
    assert not np.allclose(model(x, training=True), frozen(x, training=True))  # the modes do differ
    runs = {"fgsm": lambda m: attacks.fgsm(m, x, y, 0.1),
            "pgd": lambda m: attacks.pgd(m, x, y, 0.1, steps=3, seed=0),
            "apgd": lambda m: autoattack.apgd(m, x, y, 0.1, loss="dlr", steps=3, seed=0),
            "square": lambda m: autoattack.square(m, x, y, 0.1, queries=20, seed=0),
            "gradient": lambda m: attacks.input_gradient(m, x, y)}
    for name, run in runs.items():
        first = run(model)
        np.testing.assert_array_equal(first, run(model), err_msg=f"{name} is not deterministic")
        np.testing.assert_allclose(first, run(frozen), atol=1e-6, err_msg=f"{name} differs from inference mode")
    with tf.GradientTape() as tape:  # FGSM by hand, in inference mode
        xt = tf.constant(x)
        tape.watch(xt)
        loss = tf.reduce_sum(attacks.cross_entropy(model(xt, training=False), y))
    by_hand = np.clip(x + 0.1 * np.sign(tape.gradient(loss, xt).numpy()), 0.0, 1.0)
    assert np.mean(attacks.fgsm(model, x, y, 0.1) == by_hand) > 0.999

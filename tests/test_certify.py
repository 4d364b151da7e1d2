import functools
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf

import keras

from helpers import attacks, certify, evaluate, models

L = keras.layers


def _seeded(model, seed):
    """Give ``model`` reproducible random weights: kernels N(0, 1/fan_in), biases N(0, 0.25) (so they matter)."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=w.shape) / np.sqrt(np.prod(w.shape[:-1])) if w.ndim > 1 else
               0.5 * rng.normal(size=w.shape) for w in model.get_weights()]
    model.set_weights([w.astype(np.float32) for w in weights])
    return model


@functools.lru_cache  # built once per seed: tests share the model and what was compiled for it (don't train it)
def small_cnn(seed=0):
    """Conv2D+ReLU, MaxPool, Conv2D ('same', linear) + ReLU layer, Flatten, Dense+relu, Dropout, Activation, Dense."""
    inputs = keras.Input((8, 8, 1))
    h = L.Conv2D(4, 3, activation="relu")(inputs)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(3, 2, padding="same", strides=1)(h)
    h = L.ReLU()(h)
    h = L.Flatten()(h)
    h = L.Dense(6)(h)
    h = L.Activation("relu")(h)
    h = L.Dropout(0.5)(h)
    return _seeded(keras.Model(inputs, L.Dense(4)(h)), seed)


@functools.lru_cache
def small_mlp(seed=1):
    return _seeded(keras.Sequential([keras.Input((6, 6, 1)), L.Flatten(), L.Dense(16, activation="relu"),
                                     L.Dense(8, activation="relu"), L.Dense(3)]), seed)


def unit_batch(shape, n, seed):
    """Random images in [0, 1] with some pixels exactly 0 and 1, so clipping to [0, 1] matters."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, *shape)).astype(np.float32)
    x[rng.uniform(size=x.shape) < 0.2] = 0.0
    x[rng.uniform(size=x.shape) < 0.1] = 1.0
    return x


def points_in_ball(x, eps, per_image, seed):
    """``per_image`` points of the L∞ ball ∩ [0, 1] around each image: half uniform, half corners (±eps)."""
    rng = np.random.default_rng(seed)
    reps = np.repeat(x, per_image, axis=0)
    delta = rng.uniform(-eps, eps, size=reps.shape)
    corner = rng.uniform(size=len(reps)) < 0.5
    delta[corner] = eps * np.sign(delta[corner])
    return into_ball(np.clip(reps + delta, 0.0, 1.0).astype(np.float32), reps, eps)


def into_ball(points, centres, eps):
    """``points`` as float32 images inside the ball ``|p - centre| <= eps`` (exactly, for the float64 ``eps``):
    float32 rounding (of ``eps``, of ``x ± eps``) can put a corner of the ball just outside it."""
    centres = centres.astype(np.float64)
    points = np.clip(points.astype(np.float64), centres - eps, centres + eps).astype(np.float32)
    outside = np.abs(points.astype(np.float64) - centres) > eps  # rounded outwards by at most half a step
    points = np.where(outside, np.nextafter(points, centres.astype(np.float32)), points)
    assert np.all(np.abs(points.astype(np.float64) - centres) <= eps)
    return points


def margins(z, y):
    return z[np.arange(len(y)), y][:, None] - z


def assert_sound(model, x, y, eps, points, labels_of_points):
    """The logits and margins of ``points`` lie within the bounds of the images they came from.

    The float32 logit bounds up to a float32 tolerance; the margin bounds exactly: they cover the float32 model.
    """
    lo, up = certify.interval_bounds(model, x, eps)
    mb = certify.margin_bounds(model, x, y, eps)
    idx = np.repeat(np.arange(len(x)), len(points) // len(x)) if labels_of_points is None else labels_of_points
    z = evaluate.predict_logits(model, into_ball(points, x[idx], eps))
    tol = 1e-4 + 1e-5 * np.abs(z)
    assert np.all(lo[idx] <= z + tol), np.max(lo[idx] - z)
    assert np.all(z <= up[idx] + tol), np.max(z - up[idx])
    assert mb.dtype == np.float64
    assert np.all(margins(z.astype(np.float64), y[idx]) >= mb[idx]), np.max(mb[idx] - margins(z, y[idx]))


@pytest.fixture(scope="module")
def tiny_trained():
    """The course CNN after one epoch on 500 digits (trained here: a few seconds)."""
    from helpers import data

    ds = data.load_dataset("mnist_5k").subset(500, 100)
    models.seed_everything(0)
    model = models.build_model(ds.input_shape, ds.num_classes, arch="cnn", seed=0)
    models.train_model(model, ds.x_train, ds.y_train, epochs=1, batch_size=32)
    return model, ds.x_test[:48].copy(), ds.y_test[:48].copy()


@pytest.fixture(scope="module")
def ibp_trained(ibp_run):
    """The course CNN IBP-trained for ε = 0.1 on 500 digits (conftest's ``ibp_run``), on its 100 test digits."""
    model, _, ds = ibp_run
    return model, ds.x_test.copy(), ds.y_test.copy()


# ----------------------------------------------------------------------------------------------------- soundness
@pytest.mark.parametrize("build,shape,eps", [(small_cnn, (8, 8, 1), 0.05), (small_cnn, (8, 8, 1), 0.3),
                                             (small_mlp, (6, 6, 1), 0.1)])
@pytest.mark.slow
def test_random_networks_bounds_hold_at_random_and_pgd_points(build, shape, eps):
    model = build()
    x = unit_batch(shape, 6, seed=3)
    y = np.argmax(evaluate.predict_logits(model, x), axis=1).astype(np.int64)
    pts = np.concatenate([x, points_in_ball(x, eps, 200, seed=4)])
    idx = np.concatenate([np.arange(len(x)), np.repeat(np.arange(len(x)), 200)])
    assert_sound(model, x, y, eps, pts, idx)
    k = model.output_shape[-1]
    for adv in (attacks.pgd(model, x, y, eps, steps=10, seed=0),
                attacks.pgd(model, x, (y + 1) % k, eps, steps=10, targeted=True, seed=1)):
        assert np.abs(adv - x).max() <= eps + 1e-6
        assert_sound(model, x, y, eps, adv, np.arange(len(x)))


@pytest.mark.slow
def test_trained_course_model_bounds_hold(tiny_trained):
    model, x, y = tiny_trained
    eps = 0.05
    pts = points_in_ball(x[:16], eps, 64, seed=5)
    assert_sound(model, x[:16], y[:16], eps, pts, None)
    for adv in (attacks.pgd(model, x, y, eps, steps=10, seed=0),
                attacks.pgd(model, x, (y + 3) % 10, eps, steps=10, targeted=True, seed=0)):
        assert_sound(model, x, y, eps, adv, np.arange(len(x)))


@pytest.mark.slow
def test_mixed_precision_model_is_bounded_in_float32():
    model = models.build_model((12, 12, 1), 5, arch="cnn", seed=0, mixed_precision=True)
    x = unit_batch((12, 12, 1), 4, seed=6)
    lo, up = certify.interval_bounds(model, x, 0.05)
    assert lo.dtype == up.dtype == np.float32
    z = evaluate.predict_logits(model, points_in_ball(x, 0.05, 50, seed=7))
    idx = np.repeat(np.arange(4), 50)
    slack = 2e-3 * (1 + np.abs(z))  # the model itself rounds to float16
    assert np.all(lo[idx] <= z + slack) and np.all(z <= up[idx] + slack)


# ------------------------------------------------------------------------------------------ exactness, growth
@pytest.mark.slow
@pytest.mark.parametrize("build,shape", [(small_cnn, (8, 8, 1)), (small_mlp, (6, 6, 1))])
def test_exact_at_eps_zero_and_widening_with_eps(build, shape):
    model = build()
    x = unit_batch(shape, 5, seed=8)
    z = evaluate.predict_logits(model, x)
    y = np.argmax(z, axis=1).astype(np.int64)
    lo, up = certify.interval_bounds(model, x, 0.0)
    np.testing.assert_allclose(lo, z, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(up, z, rtol=1e-5, atol=1e-5)
    # The margin bounds hold the float32 model's rounding allowance: below its margins, by less than 1e-4 here.
    mb, exact = certify.margin_bounds(model, x, y, 0.0), margins(z.astype(np.float64), y)
    assert np.all(mb <= exact) and np.all(mb >= exact - 1e-4)
    prev_lo, prev_up, prev_m = lo, up, certify.margin_bounds(model, x, y, 0.0)
    for eps in (0.01, 0.05, 0.1, 0.3, 1.0):
        lo, up = certify.interval_bounds(model, x, eps)
        m = certify.margin_bounds(model, x, y, eps)
        assert np.all(lo <= prev_lo + 1e-5) and np.all(up >= prev_up - 1e-5) and np.all(m <= prev_m + 1e-5)
        prev_lo, prev_up, prev_m = lo, up, m
    assert np.all(up - lo > 0)
    # The input box is clipped to [0, 1]: beyond eps = 1 nothing changes.
    np.testing.assert_array_equal(certify.interval_bounds(model, x, 5.0)[0], lo)


@pytest.mark.slow
def test_elided_margin_is_never_looser_than_logit_intervals(tiny_trained):
    model, x, y = tiny_trained
    lo, up = certify.interval_bounds(model, x, 0.02)
    mb = certify.margin_bounds(model, x, y, 0.02)
    naive = lo[np.arange(len(y)), y][:, None] - up
    naive[np.arange(len(y)), y] = 0.0
    assert np.all(mb >= naive - 1e-4)
    assert np.mean(mb > naive + 1e-3) > 0.5  # and much tighter for most pairs
    np.testing.assert_array_equal(mb[np.arange(len(y)), y], 0.0)


# ------------------------------------------------------------------------------------------------ by hand
def hand_model():
    """flatten(x) = (x0, x1) -> h = relu(W1ᵀx + b1) -> z = W2ᵀh + b2, with small integer-ish weights."""
    inputs = keras.Input((1, 2, 1))
    d1, d2 = L.Dense(2, activation="relu"), L.Dense(2)
    model = keras.Model(inputs, d2(d1(L.Flatten()(inputs))))
    d1.set_weights([np.array([[1.0, -1.0], [1.0, 1.0]], np.float32), np.array([0.0, 0.1], np.float32)])
    d2.set_weights([np.array([[1.0, 2.0], [-1.0, 1.0]], np.float32), np.array([0.0, -1.0], np.float32)])
    return model


@pytest.mark.slow
def test_hand_computed_two_layer_bounds():
    model = hand_model()
    x = np.array([0.5, 0.5, 0.95, 0.05], np.float32).reshape(2, 1, 2, 1)
    # Image 0, eps 0.1: x0, x1 in [0.4, 0.6].  Pre-activations u0 = x0 + x1 in [0.8, 1.2],
    # u1 = -x0 + x1 + 0.1 in [-0.1, 0.3]; h0 in [0.8, 1.2], h1 in [0, 0.3].
    # z0 = h0 - h1 in [0.5, 1.2];  z1 = 2 h0 + h1 - 1 in [0.6, 1.7].
    # Image 1: the box is clipped to x0 in [0.85, 1.0], x1 in [0.0, 0.15]: u0 in [0.85, 1.15], u1 in [-0.9, -0.6],
    # so h1 = 0: z0 = h0 in [0.85, 1.15], z1 = 2 h0 - 1 in [0.7, 1.3].
    lo, up = certify.interval_bounds(model, x, 0.1)
    np.testing.assert_allclose(lo, [[0.5, 0.6], [0.85, 0.7]], atol=1e-6)
    np.testing.assert_allclose(up, [[1.2, 1.7], [1.15, 1.3]], atol=1e-6)
    # Elided margins.  y = 0: z0 - z1 = -h0 - 2 h1 + 1 >= -1.2 - 0.6 + 1 = -0.8 (logit intervals: 0.5 - 1.7 = -1.2);
    # image 1: -h0 + 1 >= -0.15.  y = 1: z1 - z0 = h0 + 2 h1 - 1 >= 0.8 + 0 - 1 = -0.2; image 1: >= 0.85 - 1.
    # (margin_bounds take off the float32 model's rounding allowance, a few 1e-6 here, so they are never above the
    # values by hand, up to the float32 rounding of the weights 0.1 and of x)
    for y, want in (([0, 0], [[0, -0.8], [0, -0.15]]), ([1, 1], [[-0.2, 0], [-0.15, 0]])):
        mb = certify.margin_bounds(model, x, np.array(y), 0.1)
        np.testing.assert_allclose(mb, want, atol=1e-5)
        assert np.all(mb <= np.array(want) + 1e-8)
    np.testing.assert_allclose(certify.worst_case_logits(model, x, np.array([1, 0]), 0.1).numpy(),
                               [[0.2, 0], [0, 0.15]], atol=1e-6)
    # eps = 0.02.  Image 0 as class 1: h0 in [0.96, 1.04], h1 in [0.06, 0.14], z1 - z0 >= 0.96 + 0.12 - 1 = 0.08 > 0:
    # certified.  Image 1 as class 0: h1 = 0, h0 in [0.96, 1.04], z0 - z1 = 1 - h0 >= -0.04: not certified.
    assert certify.certified(model, x, np.array([1, 0]), 0.02).tolist() == [True, False]
    # A tie is no proof: with all weights zero every logit is 0 and every margin bound exactly 0.
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    assert not certify.certified(model, x, np.array([1, 0]), 0.0).any()


# ----------------------------------------------------------------------------------- accuracies and training use
@pytest.mark.slow
@pytest.mark.parametrize("which,eps", [("ibp", 0.05), ("ibp", 0.1), ("standard", 0.001), ("standard", 0.05)])
def test_certified_below_pgd_below_clean(request, which, eps):
    model, x, y = request.getfixturevalue("ibp_trained" if which == "ibp" else "tiny_trained")
    cert = certify.certified(model, x, y, eps)
    adv = attacks.pgd(model, x, y, eps, steps=10, seed=0)
    robust = evaluate.predict(model, adv)[0] == y
    clean = evaluate.predict(model, x)[0] == y
    assert cert.dtype == bool and cert.shape == (len(x),)
    assert np.all(robust[cert]) and np.all(clean[cert])  # a proof that PGD cannot break
    acc = certify.certified_accuracy(model, x, y, eps)
    assert acc == pytest.approx(cert.mean())
    assert acc <= robust.mean() <= clean.mean()
    if which == "ibp":
        assert acc > 0.2  # IBP training makes the bounds tight enough to prove a good share...
        assert certify.certified_accuracy(request.getfixturevalue("tiny_trained")[0], x, y, eps) < 0.05  # ...not so


@pytest.mark.slow
def test_ibp_trained_model_bounds_hold(ibp_trained):
    model, x, y = ibp_trained
    adv = attacks.pgd(model, x[:64], y[:64], 0.1, steps=10, seed=0)
    assert_sound(model, x[:64], y[:64], 0.1, adv, np.arange(64))


@pytest.mark.slow
def test_worst_case_logits_trains_inside_tf_function():
    model = _seeded(keras.models.clone_model(small_mlp()), 1)  # a copy: this test trains it
    x = unit_batch((6, 6, 1), 16, seed=9)
    y = np.arange(16, dtype=np.int64) % 3
    eps = tf.Variable(0.05, trainable=False)  # an ε ramp changes it without retracing
    opt = keras.optimizers.Adam(1e-2)

    @tf.function
    def step(xb, yb):
        with tf.GradientTape() as tape:
            z_hat = certify.worst_case_logits(model, xb, yb, eps)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(yb, z_hat, from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, z_hat, grads

    expected = certify.worst_case_logits(model, x, y, 0.05).numpy()
    np.testing.assert_allclose(expected, -certify.margin_bounds(model, x, y, 0.05), rtol=1e-4, atol=1e-4)
    loss0, z_hat, grads = step(tf.constant(x), tf.constant(y))
    np.testing.assert_allclose(z_hat.numpy(), expected, rtol=1e-5, atol=1e-5)  # computed before the update
    assert all(g is not None and np.any(g.numpy() != 0) for g in grads)
    for _ in range(20):
        loss, _, _ = step(tf.constant(x), tf.constant(y))
    assert float(loss) < float(loss0)
    with tf.GradientTape() as tape:  # eagerly too: a tensor the tape records, not a NumPy array
        z_hat = certify.worst_case_logits(model, x, y, 0.05)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, z_hat, from_logits=True))
    assert all(g is not None for g in tape.gradient(loss, model.trainable_variables))


@pytest.mark.slow
def test_traced_calls_return_tensors_equal_to_eager_arrays():
    model = small_cnn()
    x = unit_batch((8, 8, 1), 4, seed=10)
    y = np.array([0, 1, 2, 3], np.int64)
    eager = (*certify.interval_bounds(model, x, 0.1), certify.margin_bounds(model, x, y, 0.1),
             certify.certified(model, x, y, 0.0), certify.worst_case_logits(model, x, y, 0.1))
    assert all(isinstance(a, np.ndarray) for a in eager[:4]) and tf.is_tensor(eager[4])

    @tf.function
    def all_four(xb, yb):
        return (*certify.interval_bounds(model, xb, 0.1), certify.margin_bounds(model, xb, yb, 0.1),
                certify.certified(model, xb, yb, 0.0), certify.worst_case_logits(model, xb, yb, 0.1))

    traced = all_four(tf.constant(x), tf.constant(y))
    assert all(tf.is_tensor(t) for t in traced)
    for a, t in zip(eager, traced):
        np.testing.assert_allclose(np.asarray(a, np.float32), t.numpy().astype(np.float32), rtol=1e-5, atol=1e-5)
    # worst_case_logits: the float32 margins; margin_bounds: the sound ones, lower by the rounding allowance
    assert np.all(-eager[4].numpy() >= eager[2]) and np.all(-eager[4].numpy() <= eager[2] + 1e-4)


@pytest.mark.slow
def test_dropout_is_the_identity():
    model = small_cnn()
    x = unit_batch((8, 8, 1), 3, seed=11)
    assert isinstance(model.layers[-2], L.Dropout)
    kept = [layer for layer in model.layers[1:] if not isinstance(layer, L.Dropout)]
    bare = keras.Sequential([keras.Input((8, 8, 1)), *[type(k).from_config(k.get_config()) for k in kept]])
    for k, b in zip(kept, bare.layers):
        b.set_weights(k.get_weights())
    for a, b in zip(certify.interval_bounds(model, x, 0.1), certify.interval_bounds(bare, x, 0.1)):
        np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------------------------------------------- refusals
def _with(*layers, shape=(4, 4, 1)):
    return keras.Sequential([keras.Input(shape), *layers])


@pytest.mark.parametrize("model,match", [
    (_with(L.BatchNormalization(name="bn"), L.Flatten(), L.Dense(3)),
     r"layer 'bn' of class BatchNormalization is not supported.*supported layers: InputLayer, Conv2D, Dense"),
    (_with(L.Flatten(), L.Dense(3, activation="softmax", name="probs")),
     r"layer 'probs' \(Dense\) has activation 'softmax'.*allowed activations: relu, linear"),
    (_with(L.Flatten(), L.Dense(3), L.Activation("tanh", name="act")), r"'act' \(Activation\).*'tanh'"),
    (_with(L.Conv2D(2, 3, activation="sigmoid", name="c"), L.Flatten(), L.Dense(3)), r"'c' \(Conv2D\).*'sigmoid'"),
    (_with(L.AveragePooling2D(2, name="avg"), L.Flatten(), L.Dense(3)), r"'avg' of class AveragePooling2D"),
    (_with(L.Flatten(), L.Dense(3)), None),
])
def test_unsupported_layers_are_refused_by_name(model, match):
    x = np.full((2, 4, 4, 1), 0.5, np.float32)
    if match is None:
        certify.interval_bounds(model, x, 0.1)  # the same chain without the bad layer is fine
        return
    for call in (lambda: certify.interval_bounds(model, x, 0.1),
                 lambda: certify.certified_accuracy(model, x, np.array([0, 1]), 0.1)):
        with pytest.raises(ValueError, match=match):
            call()


def test_non_chain_and_subclassed_models_are_refused():
    inputs = keras.Input((4, 4, 1))
    flat = L.Flatten()(inputs)
    residual = keras.Model(inputs, L.Dense(3)(L.Add(name="add")([flat, L.Dense(16)(flat)])))
    with pytest.raises(ValueError, match=r"'add' \(Add\) takes 2 inputs"):
        certify.interval_bounds(residual, np.zeros((1, 4, 4, 1), np.float32), 0.1)

    model = small_cnn()  # a model sharing its layers with another: refused (the walk reads each layer's graph)
    shared = keras.Model(model.inputs, model.layers[-1](model.layers[-3].output))
    with pytest.raises(ValueError, match="shares the layer with another model"):
        certify.interval_bounds(shared, np.zeros((1, 8, 8, 1), np.float32), 0.1)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional model or a Sequential model"):
        certify.interval_bounds(Sub(), np.zeros((1, 4, 4, 1), np.float32), 0.1)
    with pytest.raises(TypeError, match="keras.Model"):
        certify.interval_bounds(lambda x: x, np.zeros((1, 4, 4, 1), np.float32), 0.1)


@pytest.mark.parametrize("x,y,eps,err,match", [
    (None, None, -0.1, ValueError, r"eps=-0.1 is not allowed"),
    (None, None, float("nan"), ValueError, r"eps=nan"),
    (None, None, [0.1, 0.2], TypeError, r"eps must be a real number"),
    (np.zeros((2, 6, 6), np.float32), None, 0.1, ValueError, r"4-D batch"),
    (np.zeros((2, 6, 6, 1), np.uint8), None, 0.1, TypeError, r"divide uint8 images by 255"),
    (np.full((2, 6, 6, 1), 2.0, np.float32), None, 0.1, ValueError, r"pixel values in \[0, 1\]"),
    (np.zeros((2, 5, 5, 1), np.float32), None, 0.1, ValueError, r"shape \(5, 5, 1\) but the model expects"),
    (None, np.array([0.0, 1.0]), 0.1, TypeError, r"integer class labels"),
    (None, np.array([0, 1, 2]), 0.1, ValueError, r"2 images and 3 labels"),
    (None, np.array([0, 3]), 0.1, ValueError, r"class indices in \[0, 2\]"),
])
def test_bad_arguments_raise_like_the_attacks(x, y, eps, err, match):
    model = small_mlp()
    bad_y = y is not None
    x = np.full((2, 6, 6, 1), 0.5, np.float32) if x is None else x
    y = np.array([0, 1], np.int64) if y is None else y
    for fn in (certify.margin_bounds, certify.certified, certify.certified_accuracy, certify.worst_case_logits):
        with pytest.raises(err, match=match):
            fn(model, x, y, eps)
    if not bad_y:
        with pytest.raises(err, match=match):
            certify.interval_bounds(model, x, eps)


def test_certified_accuracy_needs_examples():
    with pytest.raises(ValueError, match="at least one example"):
        certify.certified_accuracy(small_mlp(), np.zeros((0, 6, 6, 1), np.float32), np.zeros(0, np.int64), 0.1)


def test_layer_bounds_follow_the_network_and_end_at_the_logit_bounds():
    from helpers import data, models

    ds = data.load_dataset("mnist_5k")
    model = models.build_model(ds.input_shape, ds.num_classes, seed=4)
    x = ds.x_test[:3]
    steps = certify.layer_bounds(model, x, 0.05)
    assert [name for name, _, _ in steps] == ["input"] + [layer.name for layer in model.layers[1:]]
    lo, hi = certify.interval_bounds(model, x, 0.05)
    np.testing.assert_allclose(steps[-1][1], lo, atol=1e-5)
    np.testing.assert_allclose(steps[-1][2], hi, atol=1e-5)
    assert all(np.all(l <= u + 1e-6) for _, l, u in steps)
    np.testing.assert_allclose(steps[0][1], np.clip(x - 0.05, 0, 1))


# ------------------------------------------------------------------------------------------- floating point
def one_pixel_model(bias):
    """z_0 = x + bias, z_1 = 0 for a one-pixel image x: the margin z_0 - z_1 is x + bias."""
    model = keras.Sequential([keras.Input((1, 1, 1)), L.Flatten(), L.Dense(2)])
    model.layers[-1].set_weights([np.array([[1.0, 0.0]], np.float32), np.array([bias, 0.0], np.float32)])
    return model


@pytest.mark.slow
def test_certificates_are_sound_where_float32_rounding_fakes_a_margin():
    # One pixel x = 127/4096 and a radius eps that float32 holds exactly, so casting loses nothing: the corner
    # x - eps of the ball is itself a float32 number.  In float32, IBP's centre/radius form (μ = (u+l)/2,
    # r = (u-l)/2 at the scale of u = x + eps ≈ 0.06) gets μ - r wrong by ~1e-9, 128 times the spacing of
    # float32 numbers near x - eps ≈ 2e-4 (found by a search over float32 values; checked exactly below).
    x, eps = np.float32(127 / 4096), float(np.float32(0.030800940468907356))
    corner = np.float32(x - np.float32(eps))
    assert Fraction(float(x)) - Fraction(eps) == Fraction(float(corner))  # an image of the ball, exactly
    bias = -np.nextafter(corner, np.float32(1))  # the margin x' + bias is negative at the corner, by one step
    model, images, label = one_pixel_model(bias), np.full((1, 1, 1, 1), x, np.float32), np.array([0])
    # Exactly, the margin bound is (x - eps) + bias < 0; in float32 the (old) bound comes out positive...
    assert Fraction(float(corner)) + Fraction(float(bias)) < 0
    float32_bound = -certify.worst_case_logits(model, images, label, eps).numpy()[0, 1]
    assert 0 < float32_bound < 1e-8
    # ...and the model misclassifies the corner, an image of the ball: a float32 certificate would be false.
    z = evaluate.predict_logits(model, np.full((1, 1, 1, 1), corner, np.float32))[0]
    assert z[0] < z[1]
    assert certify.margin_bounds(model, images, label, eps)[0, 1] < 0
    assert not certify.certified(model, images, label, eps)[0]
    # With a true margin of 1e-6 (far above the rounding allowance, ~1.5e-8 here) the certificate is given.
    model = one_pixel_model(np.float32(-corner + np.float32(1e-6)))
    assert 0 < certify.margin_bounds(model, images, label, eps)[0, 1] <= 1e-6
    assert certify.certified(model, images, label, eps)[0]


@pytest.fixture(scope="module")
def untrained():
    """The course CNN as built, on 1,000 test digits: its logits are close together, so some margins are thin."""
    from helpers import data

    ds = data.load_dataset("mnist_5k")
    return models.build_model(ds.input_shape, ds.num_classes, seed=0), ds.x_test[:1000], ds.y_test[:1000]


@pytest.mark.parametrize("which,eps", [("untrained", 0.0), ("tiny_trained", 0.0), ("tiny_trained", 0.0005),
                                       ("ibp_trained", 0.1)])
@pytest.mark.slow
def test_sound_certificates_differ_from_float32_ones_only_within_the_allowance(request, which, eps):
    model, x, y = request.getfixturevalue(which)
    float32 = -certify.worst_case_logits(model, x, y, eps).numpy().astype(np.float64)  # the unsound margins
    sound = certify.margin_bounds(model, x, y, eps)
    others = np.arange(float32.shape[1])[None, :] != y[:, None]
    gap = float32 - sound  # the rounding allowance (and the float32 rounding of the float32 margins)
    assert np.all(gap >= -1e-6 * (1 + np.abs(float32)))
    assert np.max(gap) < 0.1, np.max(gap)  # a few hundredths of a logit for the course CNN
    ok32, ok = np.all(float32 > 0, axis=1, where=others), certify.certified(model, x, y, eps)
    np.testing.assert_array_equal(ok, np.all(sound > 0, axis=1, where=others))
    assert np.all(ok32[ok])  # never more than float32 certifies...
    thin = np.min(np.where(others, float32 - np.max(gap, axis=1, keepdims=True), np.inf), axis=1) <= 0
    assert np.all(ok[ok32 & ~thin])  # ...and only less where a float32 margin is within the allowance
    assert ok.mean() >= ok32.mean() - 0.02 and ok.mean() > 0.1


def test_certificates_refuse_what_their_rounding_analysis_does_not_cover():
    half = models.build_model((12, 12, 1), 5, arch="cnn", seed=0, mixed_precision=True)
    x, y = unit_batch((12, 12, 1), 2, seed=12), np.array([0, 1])
    certify.interval_bounds(half, x, 0.05)  # float32 bounds: fine
    for fn in (certify.certified, certify.certified_accuracy, certify.margin_bounds):
        with pytest.raises(ValueError, match=r"layer 'conv1' \(Conv2D\) computes in float16.*certify a float32 copy"):
            fn(half, x, y, 0.05)
    leaky = _with(L.Flatten(), L.Dense(4), L.ReLU(negative_slope=0.1, name="leaky"), L.Dense(3))
    with pytest.raises(ValueError, match=r"ReLU layer 'leaky' has negative_slope=0.1.*exact max\(x, 0\)"):
        certify.certified(leaky, np.full((2, 4, 4, 1), 0.5, np.float32), y, 0.1)


# ------------------------------------------------------------------- the rounding allowances, one at a time
# Exactly, each network below gives class 1 a margin of 2⁻³⁰ (or 1) over class 0 at the image of ones; the deployed
# float32 forward pass rounds that margin away, the logits tie and argmax picks class 0.  Only the allowance for
# that layer's rounding stops a certificate of class 1 (which the float64 bounds alone would give: exact margin > 0).
TINY = np.float32(2.0 ** -30)


def last_layer_rounds():
    """z = (x, x + 2⁻³⁰) for a one-pixel x: at x = 1 float32 gives (1, 1), a tie — the last layer's rounding."""
    model = keras.Sequential([keras.Input((1, 1, 1)), L.Flatten(), L.Dense(2)])
    model.layers[-1].set_weights([np.array([[1.0, 1.0]], np.float32), np.array([0.0, TINY], np.float32)])
    return model


def hidden_layer_rounds():
    """h = relu(x₀ + 2⁻³⁰·x₁ - x₂), z = (0, 2³⁰·h): at x = (1, 1, 1) exactly h = 2⁻³⁰ and z₁ = 1, but float32 rounds
    1 + 2⁻³⁰ to 1, so h = 0 and z = (0, 0), a tie — the hidden layer's rounding, which the last layer's allowance
    (relative to |W|·|h| ≈ 1e-7 · z₁) cannot cover.  (TensorFlow's CPU kernels sum these three products in order;
    the test checks the tie first.)"""
    inputs = keras.Input((1, 3, 1))
    hidden, last = L.Dense(1, activation="relu"), L.Dense(2)
    model = keras.Model(inputs, last(hidden(L.Flatten()(inputs))))
    hidden.set_weights([np.array([[1.0], [TINY], [-1.0]], np.float32), np.zeros(1, np.float32)])
    last.set_weights([np.array([[0.0, 2.0 ** 30]], np.float32), np.zeros(2, np.float32)])
    return model


def exact_margin(model):
    """z₁ - z₀ of the exact network at the image of ones (as a Fraction)."""
    w = [[Fraction(float(v)) for v in np.ravel(a)] for a in model.get_weights()]
    if len(w) == 2:
        return sum(w[0][1::2]) - sum(w[0][0::2]) + w[1][1] - w[1][0]
    h = max(sum(w[0]) + w[1][0], 0)
    return h * (w[2][1] - w[2][0]) + w[3][1] - w[3][0]


@pytest.mark.parametrize("build,shape,eps", [(last_layer_rounds, (1, 1, 1), 0.01),
                                             (hidden_layer_rounds, (1, 3, 1), 0.0)])
def test_no_certificate_where_float32_rounding_ties_the_deployed_logits(build, shape, eps):
    model, ones, y = build(), np.ones((1, *shape), np.float32), np.array([1])
    z = evaluate.predict_logits(model, ones)[0]
    assert z[0] == z[1] and np.argmax(z) == 0  # the deployed model does not classify the image as 1...
    assert exact_margin(model) > 0  # ...though the exact network does: without the allowance, certified says True
    assert not certify.certified(model, ones, y, eps)[0]
    # A clear margin (0.5 instead of 2⁻³⁰, far above any rounding) is certified, by the same compiled function.
    weights = model.get_weights()
    if len(weights) == 2:
        weights[1] = np.array([0.0, 0.5], np.float32)
    else:
        weights[1] = np.array([0.5], np.float32)
    model.set_weights(weights)
    assert exact_margin(model) >= 0.5
    assert certify.certified(model, ones, y, eps)[0]

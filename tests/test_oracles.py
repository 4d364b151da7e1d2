"""Fast oracles: tiny models and made-up numbers whose right answers are known in closed form.

Each test pins down one rule that a plausible one-line bug would break (``benchmarks/plant_bugs.py`` plants such
bugs and checks that the quick loop catches them): the ε-ball of PGD, the direction of a targeted attack, APGD's
step halving, Square's acceptance rule, the seeds of the chunks, the certificate's interval arithmetic, the
statistics of ``report``, the bookkeeping of ``evaluate`` and the splits of ``data``.  A linear model
``z = Wᵀ·flatten(x) + b`` has the input gradient ``W (softmax(z) - onehot(y))`` of its cross-entropy.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras

from helpers import attacks, autoattack, certify, data, evaluate, report, selfcheck

L = keras.layers
SHAPE, K = (4, 4, 1), 3


def linear(w, b, shape=SHAPE):
    inputs = keras.Input(shape)
    dense = L.Dense(len(b))
    model = keras.Model(inputs, dense(L.Flatten()(inputs)))
    dense.set_weights([np.asarray(w, np.float32), np.asarray(b, np.float32)])
    return model


@pytest.fixture(scope="module")
def lin():
    """``(model, W, b)``: a linear 3-class model on 4×4 images, weights of both signs and of unequal sizes."""
    rng = np.random.default_rng(7)
    w, b = rng.normal(size=(16, K)).astype(np.float32), np.array([0.3, -0.2, 0.1], np.float32)
    return linear(w, b), w, b


@pytest.fixture(scope="module")
def images():
    """Six images with pixels inside (0, 1) and exactly at 0 and 1, so that both the ball and [0, 1] bind."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0.1, 0.9, size=(6, *SHAPE)).astype(np.float32)
    x[:, 0, :2], x[:, 3, 2:] = 0.0, 1.0
    return x


@pytest.fixture
def short_blocks(monkeypatch):
    """PGD's compiled blocks one step long: the same iterates, less to trace for these few-step attacks."""
    monkeypatch.setattr(attacks, "BLOCK_STEPS", 1)


def ce_gradient(w, b, x, y):
    """The analytic gradient of the cross-entropy of a linear model with respect to its input."""
    z = x.reshape(len(x), -1) @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return (p @ w.T).reshape(x.shape)


# ---------------------------------------------------------------------------------------------------- attacks
def test_fgsm_is_the_signed_analytic_gradient_step(lin, images):
    model, w, b = lin
    y = np.arange(len(images)) % K
    g = ce_gradient(w, b, images, y)
    want = np.clip(images + 0.1 * np.sign(g), 0.0, 1.0)
    np.testing.assert_allclose(attacks.fgsm(model, images, y, 0.1), want, atol=1e-6)


@pytest.mark.parametrize("norm", ["inf", "l2"])
def test_pgd_stays_in_the_ball_and_in_the_pixel_range(lin, images, norm, short_blocks):
    # Three steps of 0.2 would carry the iterates 0.6 away (and out of [0, 1]) without the projection and clip.
    model, _, _ = lin
    y = np.arange(len(images)) % K
    adv = attacks.pgd(model, images, y, 0.05, steps=3, step_size=0.2, norm=norm, random_start=False)
    d = (adv - images).reshape(len(adv), -1)
    size = np.abs(d).max(axis=1) if norm == "inf" else np.sqrt((d.astype(np.float64) ** 2).sum(axis=1))
    assert np.all(size <= 0.05 + 1e-5) and np.all(size > 0.01)
    assert adv.min() >= 0.0 and adv.max() <= 1.0


def test_l2_step_and_projection_are_per_example():
    grad = np.zeros((2, 2, 2, 1), np.float32)
    grad[0, 0, 0], grad[1] = 3.0, 0.25          # L2 lengths 3 and 0.5
    step = attacks.step_rule(grad, 0.5, "l2").numpy()
    np.testing.assert_allclose(np.sqrt((step ** 2).sum(axis=(1, 2, 3))), [0.5, 0.5], rtol=1e-6)
    proj = attacks.project(grad, 1.0, "l2").numpy()
    np.testing.assert_allclose(proj[0], grad[0] / 3.0, rtol=1e-6)  # shrunk onto the sphere of radius 1
    np.testing.assert_array_equal(proj[1], grad[1])                 # already inside: unchanged


def test_succeeded_reads_targeted():
    logits = tf.constant([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    y = tf.constant([0, 0], tf.int64)
    assert attacks.succeeded(logits, y, False).numpy().tolist() == [False, True]
    assert attacks.succeeded(logits, y, True).numpy().tolist() == [True, False]  # the target wins


def test_targeted_pgd_reaches_the_target_of_a_linear_model(lin, images, short_blocks):
    model, _, _ = lin
    pred = evaluate.predict(model, images)[0]
    target = (pred + 1) % K
    # early_stop freezes an image once the attack succeeds: it must read "succeeded" as "the target wins"
    adv = attacks.pgd(model, images, target, 1.0, steps=3, step_size=0.5, targeted=True, seed=0, early_stop=True)
    assert np.all(evaluate.predict(model, adv)[0] == target)


def test_pgd_restarts_return_an_attacked_image(lin, images, short_blocks):
    model, w, b = lin
    y = evaluate.predict(model, images)[0]
    adv = attacks.pgd(model, images, y, 0.02, steps=3, norm="l2", restarts=2, seed=0)
    loss = [attacks.per_example_loss(model, v, y).numpy() for v in (images, adv)]
    assert np.all(loss[1] > loss[0])


def test_chunks_draw_different_random_starts(lin, monkeypatch):
    monkeypatch.setattr(attacks, "EVAL_BATCH", 4)  # two chunks of four identical images
    model, _, _ = lin
    x = np.full((8, *SHAPE), 0.5, np.float32)
    adv = attacks.pgd(model, x, np.zeros(8, np.int64), 0.1, steps=1, step_size=0.0, seed=0)
    assert not np.allclose(adv[:4], adv[4:])


# -------------------------------------------------------------------------------------------------- autoattack
def test_margin_and_dlr_on_made_up_logits():
    z, y = tf.constant([[3.0, 1.0, 2.0, 0.0], [-1.0, -2.0, -3.0, -4.0]]), tf.constant([1, 0])
    np.testing.assert_allclose(autoattack.margin(z, y).numpy(), [-2.0, 1.0])
    # -(z_y - max_{j≠y} z_j) / (z_π1 - z_π3): (1 - 3) / (3 - 1) -> 1;  -(-1 + 2) / (-1 + 3) -> -0.5
    np.testing.assert_allclose(autoattack.dlr_loss(z, y).numpy(), [1.0, -0.5], rtol=1e-6)


def peak_model(c, k=4.0):
    """One pixel: z₀ = 0, z₁ = -1 - k·|x - c|.  The cross-entropy of class 0 peaks at x = c (never misclassified)."""
    inputs = keras.Input((1, 1, 1))
    hidden, last = L.Dense(2, activation="relu"), L.Dense(2)
    model = keras.Model(inputs, last(hidden(L.Flatten()(inputs))))
    hidden.set_weights([np.array([[1.0, -1.0]], np.float32), np.array([-c, c], np.float32)])
    last.set_weights([np.array([[0.0, -k], [0.0, -k]], np.float32), np.array([0.0, -1.0], np.float32)])
    return model


def test_apgd_halves_its_step_to_reach_an_interior_peak(monkeypatch):
    # With η = 2ε the iterates jump across the peak; only halving where the objective stalls (APGD's rule) brings
    # them within 1e-3 of it in 100 steps (halving where it rose instead leaves them ~5e-3 away).
    monkeypatch.setattr(attacks, "BLOCK_STEPS", 4)  # short compiled blocks: quick to trace
    eps, c = 0.2, 0.5
    x = (c - np.linspace(-0.9, 0.9, 8) * eps).reshape(-1, 1, 1, 1).astype(np.float32)
    adv = autoattack.apgd(peak_model(c), x, np.zeros(len(x), np.int64), eps, steps=100, seed=0)
    assert np.abs(adv - c).max() < 1e-3


def test_apgd_returns_the_fooling_iterate_not_the_highest_loss_one():
    # One pixel t, true class 0: z = (0, z1, z2) with z1 = z2 = -0.1 + 0.1·(t - 0.5) below t = 0.599 (correct,
    # cross-entropy about 1.02) and, above it, z1 climbing to 0.1 at t = 0.6 and z2 falling to -10: class 1 wins there
    # with a lower cross-entropy (0.74).  The first step (η = 2ε) goes from the random start straight to t = 0.6: a
    # broken image must come back as that misclassified iterate, not as the start, which had the highest loss.
    inputs = keras.Input((1, 1, 1))
    hidden, last = L.Dense(2, activation="relu"), L.Dense(3)
    model = keras.Model(inputs, last(hidden(L.Flatten()(inputs))))
    hidden.set_weights([np.array([[1.0, 1.0]], np.float32), np.array([0.0, -0.599], np.float32)])  # t, relu(t - c)
    last.set_weights([np.array([[0.0, 0.1, 0.1], [0.0, 190.0, -1e4]], np.float32),
                      np.array([0.0, -0.15, -0.15], np.float32)])
    x = np.full((8, 1, 1, 1), 0.5, np.float32)
    adv = autoattack.apgd(model, x, np.zeros(8, np.int64), 0.1, steps=2, seed=0)
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    assert np.all(evaluate.predict(model, adv)[0] == 1)


def test_square_keeps_only_proposals_that_lower_the_margin(lin, images):
    model, w, _ = lin
    strong = linear(w, [5.0, 0.0, 0.0])  # class 0 by a wide margin: no image is broken, the search runs on
    y = np.zeros(len(images), np.int64)
    margins = [autoattack.margin(evaluate.predict_logits(strong, autoattack.square(strong, images, y, 0.05,
                                                                                   queries=q, seed=0)), y).numpy()
               for q in (1, 15, 40)]
    assert np.all(margins[1] <= margins[0] + 1e-6) and np.all(margins[2] <= margins[1] + 1e-6)
    assert np.any(margins[2] < margins[0] - 1e-3)


# ------------------------------------------------------------------------------------------------------ certify
def test_interval_bounds_through_a_negative_weight():
    # x = 0.4, eps = 0.1: x' in [0.3, 0.5], h = 1 - x' in [0.5, 0.7], z = (h, 0).
    # Margins: z0 - z1 = h >= 0.5 (y = 0);  z1 - z0 = -h >= -0.7 (y = 1).
    inputs = keras.Input((1, 1, 1))
    hidden, last = L.Dense(1), L.Dense(2)
    model = keras.Model(inputs, last(hidden(L.Flatten()(inputs))))
    hidden.set_weights([np.array([[-1.0]], np.float32), np.array([1.0], np.float32)])
    last.set_weights([np.array([[1.0, 0.0]], np.float32), np.zeros(2, np.float32)])
    x = np.full((2, 1, 1, 1), 0.4, np.float32)
    mb = certify.margin_bounds(model, x, np.array([0, 1]), 0.1)
    np.testing.assert_allclose(mb, [[0.0, 0.5], [-0.7, 0.0]], atol=1e-5)


# ------------------------------------------------------------------------------------------------------- report
def test_wilson_and_newcombe_intervals_match_published_values():
    # Newcombe (1998), Statistics in Medicine 17: 81/263 -> [0.2553, 0.3662] (Wilson); 56/70 - 48/80 -> [0.0524,
    # 0.3339] (method 10, from the two Wilson intervals).
    np.testing.assert_allclose(report.wilson_interval(81, 263), (0.2553, 0.3662), atol=1e-4)
    d, low, high = report.difference_interval(56 / 70, 48 / 80, 70, 80)
    np.testing.assert_allclose((d, low, high), (0.2, 0.0524, 0.3339), atol=1e-4)


def test_paired_difference_counts_the_discordant_images():
    a = np.array([1, 1, 1, 0, 0, 0, 0, 1], bool)  # right under A
    b = np.array([1, 0, 0, 1, 0, 0, 0, 1], bool)  # right under B: 2 right only under A, 1 only under B, 3 neither
    result = report.paired_difference(a, b)
    assert (result.b, result.c, result.n) == (2, 1, 8)
    assert result.p_value == 1.0  # 2·P(X <= 1), X ~ Binomial(3, 1/2) = 2·4/8
    assert report.mcnemar_exact(1, 6) == pytest.approx(2 * (1 + 7) / 2 ** 7)


# ---------------------------------------------------------------------------------------------------- selfcheck
def test_selfcheck_accepts_right_answers():
    g = np.random.default_rng(0).normal(size=(3, 2, 2, 1))
    right_gain = lambda g, eps, norm: eps * (np.abs(g).reshape(len(g), -1).sum(axis=1) if norm == "inf"  # noqa: E731
                                             else np.sqrt((g.reshape(len(g), -1) ** 2).sum(axis=1)))
    assert selfcheck.best_linear_gain(right_gain, g, 0.1, 1.0)

    def right_box(lower, upper, w, b):
        mu, r = (upper + lower) / 2, (upper - lower) / 2
        return mu @ w + b - r @ np.abs(w), mu @ w + b + r @ np.abs(w)

    box = (np.zeros((2, 3)), np.ones((2, 3)))
    assert selfcheck.dense_interval(right_box, box, np.array([[1.0, -2.0], [0.5, 1.0], [-1.0, 0.0]]),
                                    np.array([0.1, -0.1]))
    pred, y = np.array([0, 1, 1, 2, 0, 2, 1, 0]), np.array([0, 1, 0, 2, 0, 1, 1, 0])
    conf = np.array([0.9, 0.5, 0.1, 0.8, 0.6, 0.2, 0.7, 0.95])  # the mistakes (2, 5) are the least confident
    assert selfcheck.least_confident([1, 4], pred, conf, y, k=2)


def test_selfcheck_random_search_refuses_a_margin_that_goes_back_up(lin, images):
    model, w, b = lin
    y = evaluate.predict(model, images)[0]
    other = np.argsort(images.reshape(len(images), -1) @ w + b, axis=1)[:, -2]  # the runner-up class
    down = -np.sign(w[:, y] - w[:, other]).T.reshape(images.shape)

    def search(model, x, x_best, y, eps, rng):  # step 1 lowers the margin (a 2×2 square), step 2 undoes it
        if np.array_equal(x_best, x):
            out = x.copy()
            out[:, 1:3, 1:3] = np.clip(x + eps * down, 0, 1)[:, 1:3, 1:3]
            return out
        return x.copy()

    with pytest.raises(AssertionError, match="step 2: the margin of an image must never go up"):
        selfcheck.random_search_step(search, model, images, y, 0.05, steps=3, side=2)


def test_selfcheck_fgsm_names_a_flipped_sign(lin, images):
    model, w, b = lin
    y = evaluate.predict(model, images)[0]

    def flipped(model, x, y, eps):
        return np.clip(x - eps * np.sign(ce_gradient(w, b, x, y)), 0, 1).astype(np.float32)

    with pytest.raises(AssertionError, match="the sign is flipped"):
        selfcheck.fgsm(flipped, model, images, y, 0.1)


# ----------------------------------------------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def pixel_classes():
    """A linear model on 1×3 images that predicts the brightest pixel, and one image of each class."""
    return linear(10 * np.eye(K), np.zeros(K), shape=(1, K, 1)), np.eye(K, dtype=np.float32).reshape(K, 1, K, 1)


def test_targeted_rates_leave_out_images_already_of_the_target(pixel_classes):
    model, x = pixel_classes
    y = np.arange(K)

    def identity(model, x, y, eps, targeted=False):
        return x

    assert evaluate.targeted_success_rate(model, x, y, 0, attack=identity) == 0.0

    def only_toward_1(model, x, t, eps, targeted=False):  # turns every image into class 1, and nothing else
        return np.repeat(np.eye(K, dtype=np.float32)[1].reshape(1, 1, K, 1), len(x), axis=0) if t[0] == 1 else x

    m = evaluate.success_matrix(model, x, y, attack=only_toward_1, eps=0.1)
    want = np.zeros((K, K))
    want[[0, 2], 1] = 1.0
    np.fill_diagonal(want, np.nan)
    np.testing.assert_array_equal(m, want)


def test_perturbation_norms_and_confusion_are_per_example():
    x = np.zeros((2, 2, 2, 1), np.float32)
    adv = x.copy()
    adv[0, 0, 0], adv[1] = 0.3, 0.1
    norms = evaluate.perturbation_norms(x, adv)
    np.testing.assert_allclose(norms["linf"], [0.3, 0.1], rtol=1e-6)
    np.testing.assert_allclose(norms["l2"], [0.3, 0.2], rtol=1e-6)
    np.testing.assert_array_equal(evaluate.confusion_matrix([0, 0, 1], [1, 1, 1], 2), [[0, 2], [0, 1]])


def test_strong_worst_case_is_right_only_if_every_attack_fails(pixel_classes):
    model, x = pixel_classes
    out = evaluate.strong_robust(model, x, np.arange(K), 1.0, steps=2, queries=2, seed=None)
    assert out["apgd-ce"].sum() == 0 and not out["worst"].any()  # ε = 1: APGD breaks every image


# --------------------------------------------------------------------------------------------------------- data
def test_validation_draw_gives_the_largest_remainders_their_extra_example():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)  # 3 of 10: quotas 1.5, 0.9, 0.6 -> 1, 1, 1
    idx = data.validation_indices(labels, 3)
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=3), [1, 1, 1])


def test_mnist_5k_splits_sizes_and_pixel_scale(mnist):
    assert (len(mnist.y_train), len(mnist.y_val), len(mnist.y_test)) == (3500, 500, 1000)
    assert mnist.x_train.max() == 1.0 and mnist.x_test.max() == 1.0  # 255 / 255
    small = mnist.subset(100, 50, n_val=20)
    assert (len(small.y_train), len(small.y_val), len(small.y_test)) == (100, 20, 50)
    assert (mnist.x_test == small.x_test[0]).all(axis=(1, 2, 3)).any()  # the test subset comes from the test split

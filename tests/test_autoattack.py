"""AutoAttack's attacks: the DLR loss, APGD (white box) and Square (black box), and ``evaluate.strong_accuracy``."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from helpers import attacks, autoattack, evaluate, models, training


def linear_logits(x, w, b):
    return x.reshape(len(x), -1) @ w + b


def box(x, eps):
    """Per-pixel bounds of the ε-ball (L∞) intersected with [0, 1], flattened."""
    flat = x.reshape(len(x), -1)
    return np.maximum(flat - eps, 0.0), np.minimum(flat + eps, 1.0)


def numpy_ce(z, y):
    z = z - z.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), y]


@pytest.fixture(scope="module")
def robust_model(mnist):
    """A quickly PGD-trained CNN (2 epochs of PGD-3 at ε = 0.3 on 1,000 images): gradients that are harder to follow
    than a standard model's, so the strength of the attacks can differ."""
    small = mnist.subset(n_train=1000, seed=0)
    models.seed_everything(0)
    model = models.build_model(mnist.input_shape, mnist.num_classes, seed=0)
    training.adversarial_train(model, small.x_train, small.y_train, attack="pgd", eps=0.3, epochs=2, batch_size=64,
                               mode="adversarial", attack_kwargs={"steps": 3})
    return model


# ----------------------------------------------------------------------------------------------------- DLR loss
def test_dlr_loss_matches_its_formula_and_ignores_shift_and_scale():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(64, 10)).astype(np.float32) * 3
    y, t = rng.integers(0, 10, 64), rng.integers(0, 10, 64)
    t = np.where(t == y, (t + 1) % 10, t)
    s = -np.sort(-z, axis=1)
    others = np.where(np.eye(10, dtype=bool)[y], -np.inf, z).max(axis=1)
    zy = z[np.arange(64), y]
    np.testing.assert_allclose(autoattack.dlr_loss(z, y).numpy(), -(zy - others) / (s[:, 0] - s[:, 2] + 1e-12),
                               rtol=1e-5)
    # Targeted: the strongest class other than the target t competes with it.
    zt = z[np.arange(64), t]
    rival = np.where(np.eye(10, dtype=bool)[t], -np.inf, z).max(axis=1)
    np.testing.assert_allclose(autoattack.dlr_loss(z, t, targeted=True).numpy(),
                               -(rival - zt) / (s[:, 0] - 0.5 * (s[:, 2] + s[:, 3]) + 1e-12), rtol=1e-5)
    for targeted, labels in ((False, y), (True, t)):
        base = autoattack.dlr_loss(z, labels, targeted=targeted).numpy()
        for shifted in (z + 7.5, z - 100.0, 4.0 * z, 0.25 * z + 3.0, 1000.0 * z):
            np.testing.assert_allclose(autoattack.dlr_loss(shifted, labels, targeted=targeted).numpy(), base,
                                       rtol=1e-4, atol=1e-5)
    # A model that merely scales its logits up changes the cross-entropy, not the DLR loss.
    assert not np.allclose(attacks.cross_entropy(10 * z, y).numpy(), attacks.cross_entropy(z, y).numpy())


def test_apgd_checkpoints_follow_the_paper():
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99: checks after iterations ceil(p·100) (1-based).
    assert autoattack.apgd_checkpoints(100) == {21: 22, 40: 19, 56: 16, 69: 13, 79: 10, 86: 7, 92: 6, 98: 6}
    assert autoattack.apgd_checkpoints(1) == {0: 1}


@pytest.mark.slow
def test_fast_first_layer_gradient_is_the_tapes(trained_model, batch):
    """The attacks' compiled blocks differentiate a single-channel first convolution their own (faster) way; the
    gradient must be the tape's up to float rounding (VALID and SAME padding, both losses), and really be used."""
    import keras

    x, y = tf.constant(batch[0][:64]), tf.constant(batch[1][:64])
    same = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8, 5, padding="same", activation="relu"),
                             keras.layers.Conv2D(4, 3, strides=2), keras.layers.Flatten(), keras.layers.Dense(10)])
    for model in (trained_model, same):
        for loss_fn in (attacks.cross_entropy, autoattack.dlr_loss):
            fns = [tf.function(lambda a, b, m=model, f=loss_fn, fast=fast: attacks.loss_gradient(
                m, a, b, loss_fn=f, fast=fast)[1]) for fast in (False, True)]
            tape, fast = (f(x, y).numpy() for f in fns)
            np.testing.assert_allclose(fast, tape, rtol=1e-4, atol=1e-5 * np.abs(tape).max())
            kinds = [[op.type for op in f.get_concrete_function(x, y).graph.get_operations()] for f in fns]
            # only the second convolution still uses TensorFlow's input gradient
            assert kinds[0].count("Conv2DBackpropInput") == 2 and kinds[1].count("Conv2DBackpropInput") == 1


# ------------------------------------------------------------------------------------- constraints and budgets
@pytest.mark.parametrize("attack,norm,eps", [("apgd-ce", "inf", 0.1), ("apgd-dlr", "inf", 0.1),
                                             ("apgd-ce", "l2", 1.0), ("square", "inf", 0.1)])
@pytest.mark.slow
def test_results_stay_in_the_ball_and_unit_range(trained_model, batch, attack, norm, eps):
    x, y = batch[0][:128], batch[1][:128]
    if attack == "square":
        adv = autoattack.square(trained_model, x, y, eps, queries=60, seed=1)
    else:
        adv = autoattack.apgd(trained_model, x, y, eps, loss=attack[5:], steps=8, norm=norm, seed=1)
    assert adv.dtype == np.float32 and adv.shape == x.shape
    d = (adv - x).reshape(len(x), -1)
    size = np.abs(d).max(axis=1) if norm == "inf" else np.linalg.norm(d, axis=1)
    assert size.max() <= eps * (1 + 1e-5)
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert size.mean() > 0.5 * eps  # it uses its budget
    drop = 0.02 if attack == "square" else 0.1  # a black-box search with 60 queries only starts to bite
    assert evaluate.accuracy(trained_model, adv, y) < evaluate.accuracy(trained_model, x, y) - drop


def test_already_misclassified_images_are_left_alone(shipped_model, batch):
    x, y = batch[0][:64], batch[1][:64]
    wrong = (evaluate.predict(shipped_model, x)[0] + 1) % 10  # "labels" the model gets wrong: nothing to attack
    np.testing.assert_array_equal(autoattack.apgd(shipped_model, x, wrong, 0.2, steps=3), x)
    adv, used = autoattack.square(shipped_model, x, wrong, 0.2, queries=20, return_queries=True)
    np.testing.assert_array_equal(adv, x)
    assert not used.any()
    np.testing.assert_array_equal(autoattack.apgd(shipped_model, x, y, 0.0, steps=3), x)


# --------------------------------------------------------------------------------------- APGD on linear models
@pytest.mark.slow
def test_apgd_reaches_the_analytic_optimum_of_a_linear_model(linear_model):
    """Two live classes (the third never competes): the margin is linear in x, so its minimum over the ε-ball ∩
    [0, 1] is the corner given by the sign of the weight difference, clipped.  APGD must reach it exactly where the
    optimum is still classified correctly, and misclassify every image where it is not."""
    model, w, b = linear_model
    w[:, 2], b[2] = 0.0, -1e3
    model.layers[-1].set_weights([w, b])
    x = np.random.default_rng(5).uniform(0, 1, size=(200, 4, 4, 1)).astype(np.float32)
    y = linear_logits(x, w, b).argmax(axis=1).astype(np.int64)
    rival = 1 - y
    d = (w[:, y] - w[:, rival]).T
    for eps in (0.05, 0.15):
        lo, hi = box(x, eps)
        optimum = (np.where(d > 0, lo, hi) * d).sum(axis=1) + b[y] - b[rival]
        robust = optimum > 0
        assert 0.05 < robust.mean() < 0.95
        for loss in ("ce", "dlr"):
            z = linear_logits(autoattack.apgd(model, x, y, eps, loss=loss, steps=10), w, b)
            reached = z[np.arange(len(x)), y] - z[np.arange(len(x)), rival]
            np.testing.assert_array_equal(reached > 0, robust)
            np.testing.assert_allclose(reached[robust], optimum[robust], atol=1e-5)


@pytest.mark.slow
def test_apgd_maximises_the_cross_entropy_of_a_three_class_linear_model(linear_model):
    """The cross-entropy of a linear model is convex in x: its maximum over the box is at one of the 2^16 corners,
    found here by enumeration.  APGD never exceeds it (that would leave the box) and reaches it on most images
    (a convex maximum can also have local maxima, where any ascent method may stop)."""
    model, w, b = linear_model
    x = np.random.default_rng(5).uniform(0, 1, size=(300, 4, 4, 1)).astype(np.float32)
    y = linear_logits(x, w, b).argmax(axis=1).astype(np.int64)
    eps = 0.15
    adv = autoattack.apgd(model, x, y, eps, steps=50, restarts=3, seed=1)
    keep = np.flatnonzero(evaluate.predict(model, adv)[0] == y)[:30]  # not broken: APGD returns its best point
    assert len(keep) >= 20
    lo, hi = box(x, eps)
    corners = np.array(list(itertools.product([0.0, 1.0], repeat=16)), np.float32)
    gaps = []
    for i in keep:
        points = lo[i] + corners * (hi[i] - lo[i])
        best = numpy_ce(points @ w + b, np.full(len(points), y[i])).max()
        gaps.append((best - numpy_ce(linear_logits(adv[i:i + 1], w, b), y[i:i + 1])[0]) / best)
    gaps = np.array(gaps)
    assert gaps.min() > -1e-5
    assert np.mean(gaps < 1e-4) >= 0.85


# ------------------------------------------------------------------------------------------ strength on CNNs
@pytest.mark.slow
def test_apgd_at_least_as_strong_as_pgd_at_equal_steps(trained_model, robust_model, mnist):
    x, y = mnist.x_test[:300], mnist.y_test[:300]
    for model, eps in ((trained_model, 0.1), (robust_model, 0.15)):
        pgd = evaluate.accuracy(model, attacks.pgd(model, x, y, eps, steps=20, seed=0, early_stop=True), y)
        ce = evaluate.accuracy(model, autoattack.apgd(model, x, y, eps, steps=20, seed=0), y)
        dlr = evaluate.accuracy(model, autoattack.apgd(model, x, y, eps, loss="dlr", steps=20, seed=0), y)
        clean = evaluate.accuracy(model, x, y)
        assert 0.2 < pgd < clean - 0.1  # a setting where the attacks have work to do
        assert ce <= pgd and dlr <= pgd + 0.02
    assert dlr < ce - 0.02  # on the adversarially trained model the scale-free loss finds more


@pytest.mark.slow
def test_apgd_restarts_never_hurt_and_seed_reproduces(robust_model, mnist):
    x, y = mnist.x_test[:200], mnist.y_test[:200]
    one = autoattack.apgd(robust_model, x, y, 0.15, steps=10, seed=3)
    np.testing.assert_array_equal(one, autoattack.apgd(robust_model, x, y, 0.15, steps=10, seed=3))
    three = autoattack.apgd(robust_model, x, y, 0.15, steps=10, seed=3, restarts=3)
    broken1 = evaluate.predict(robust_model, one)[0] != y
    broken3 = evaluate.predict(robust_model, three)[0] != y
    assert np.all(broken3[broken1])  # the first restart is the single run; later ones only add
    assert broken3.sum() > broken1.sum()


@pytest.mark.slow
def test_targeted_apgd_reaches_the_target(trained_model, batch):
    x, y = batch
    keep = y != 3
    target = np.full(keep.sum(), 3, np.int64)
    for loss in ("ce", "dlr"):
        adv = autoattack.apgd(trained_model, x[keep], target, 0.2, loss=loss, steps=10, targeted=True)
        assert np.mean(evaluate.predict(trained_model, adv)[0] == 3) > 0.6


# ------------------------------------------------------------------------------------------------------ Square
def reference_p(i, n_queries, p_init=0.8):
    """The fraction of pixels of Square's i-th iteration in the reference implementation (fra31/auto-attack,
    ``autoattack/square.py``, ``SquareAttack.p_selection`` with ``resc_schedule=True``): the iteration is rescaled to
    a horizon of 10,000, then p_init is halved once for each of these bounds that it exceeds."""
    it = int(i / n_queries * 10000)
    return p_init / 2 ** sum(it > bound for bound in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))


@pytest.mark.parametrize("queries,height,width", [(1000, 28, 28), (300, 28, 28), (5000, 28, 28), (1000, 32, 32),
                                                  (40, 8, 6)])
def test_square_sides_follow_the_reference_schedule(queries, height, width):
    """Side of iteration i: ``max(round(sqrt(p_i · h · w)), 1)`` as in the reference, p_i on its schedule laid out for
    ``SQUARE_SCHEDULE_QUERIES`` whatever the budget (so a larger budget continues a smaller one); at most h - 1."""
    horizon = autoattack.SQUARE_SCHEDULE_QUERIES
    expected = [min(max(int(round(np.sqrt(reference_p(i, horizon) * height * width))), 1), min(height, width) - 1)
                for i in range(queries - 1)]
    np.testing.assert_array_equal(autoattack.square_sides(queries, height, width), expected)
    assert autoattack.SQUARE_P_INIT == 0.8 and horizon == 1000  # AutoAttack's p_init, at the default budget
    sides = autoattack.square_sides(queries, height, width)
    if queries == 1000 and height == 28:  # the reference's numbers for MNIST: 25 px first, 1 px at the end
        assert sides[0] == 25 and sides[1] == 25 and sides[2] == 18 and sides[-1] == 1
    np.testing.assert_array_equal(autoattack.square_sides(queries + 500, height, width)[:len(sides)], sides)


@pytest.mark.slow
def test_square_budget_zero_and_more_queries_never_worse(trained_model, batch):
    x, y = batch[0][:128], batch[1][:128]
    np.testing.assert_array_equal(autoattack.square(trained_model, x, y, 0.1, queries=0), x)
    few, used_few = autoattack.square(trained_model, x, y, 0.1, queries=30, seed=4, return_queries=True)
    many, used_many = autoattack.square(trained_model, x, y, 0.1, queries=150, seed=4, return_queries=True)
    assert used_few.max() <= 30 and used_many.max() <= 150
    broken_few = evaluate.predict(trained_model, few)[0] != y
    broken_many = evaluate.predict(trained_model, many)[0] != y
    assert 0 < broken_few.sum() < broken_many.sum()
    assert np.all(broken_many[broken_few])
    # the larger budget continues the smaller run: images broken early are broken identically
    np.testing.assert_array_equal(many[broken_few], few[broken_few])
    np.testing.assert_array_equal(used_many[broken_few], used_few[broken_few])
    # each image stops at its first success; the others spend the whole budget
    assert np.median(used_many[broken_many]) < 75
    clean_ok = evaluate.predict(trained_model, x)[0] == y
    assert np.all(used_many[clean_ok & ~broken_many] == 150)


@pytest.mark.slow
def test_square_sees_through_masked_gradients(trained_model, batch):
    """A model whose input gradient is zero everywhere (a stop-gradient in front): gradient attacks go nowhere,
    the score-based Square attack does as well as on the original model."""
    import keras

    x, y = batch[0][:128], batch[1][:128]
    inputs = keras.Input(trained_model.input_shape[1:])
    # 0·x + stop_gradient(x): the same images reach the model, the gradient is exactly zero
    masked = keras.Model(inputs, trained_model(keras.layers.Lambda(lambda t: 0.0 * t + tf.stop_gradient(t))(inputs)))
    clean = evaluate.accuracy(masked, x, y)
    after_pgd = evaluate.accuracy(masked, autoattack.apgd(masked, x, y, 0.15, steps=10), y)
    after_square = evaluate.accuracy(masked, autoattack.square(masked, x, y, 0.15, queries=200), y)
    assert after_pgd > clean - 0.15  # only its random start
    assert after_square < after_pgd - 0.2


# ------------------------------------------------------------------------------------------- strong_accuracy
@pytest.mark.slow
def test_strong_accuracy_is_the_per_image_worst_case(trained_model, batch):
    x, y = batch[0][:128], batch[1][:128]
    result = evaluate.strong_accuracy(trained_model, x, y, 0.08, steps=10, queries=50, seed=0)
    assert set(result) == {"apgd-ce", "apgd-dlr", "square", "worst", "seconds"}
    clean = evaluate.accuracy(trained_model, x, y)
    for name in ("apgd-ce", "apgd-dlr", "square"):
        assert result["worst"] <= result[name] <= clean
    # the same attacks run by hand: each figure is that attack's accuracy on all images, "worst" the per-image AND
    held = {name: evaluate.predict(trained_model, adv)[0] == y for name, adv in {
        "apgd-ce": autoattack.apgd(trained_model, x, y, 0.08, steps=10, seed=0),
        "apgd-dlr": autoattack.apgd(trained_model, x, y, 0.08, loss="dlr", steps=10, seed=0),
        "square": autoattack.square(trained_model, x, y, 0.08, queries=50, seed=0)}.items()}
    for name, ok in held.items():
        assert result[name] == pytest.approx(ok.mean())
    assert result["worst"] == pytest.approx(np.mean(held["apgd-ce"] & held["apgd-dlr"] & held["square"]))
    assert result["seconds"] > 0
    per_image = evaluate.strong_robust(trained_model, x, y, 0.08, steps=10, queries=50, seed=0)
    for name, ok in held.items():
        np.testing.assert_array_equal(per_image[name], ok)
    np.testing.assert_array_equal(per_image["worst"], held["apgd-ce"] & held["apgd-dlr"] & held["square"])
    l2 = evaluate.strong_accuracy(trained_model, x[:32], y[:32], 1.0, steps=3, norm="l2")
    assert l2["square"] is None and l2["worst"] <= min(l2["apgd-ce"], l2["apgd-dlr"])


# ------------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("call,match", [
    (lambda m, x, y: autoattack.apgd(m, x, y, 0.1, loss="cw"), r"loss='cw'.*'ce', 'dlr'"),
    (lambda m, x, y: autoattack.apgd(m, x, y, 0.1, norm="l1"), r"norm='l1'.*'inf', 'l2'"),
    (lambda m, x, y: autoattack.apgd(m, x, y, 0.1, steps=0), r"steps=0"),
    (lambda m, x, y: autoattack.apgd(m, x, y, 0.1, restarts=0), r"restarts=0"),
    (lambda m, x, y: autoattack.apgd(m, x, y, 0.1, steps=1.5), r"steps must be an integer"),
    (lambda m, x, y: autoattack.apgd(m, x, y, 0.1, targeted="yes"), r"targeted must be True or False"),
    (lambda m, x, y: autoattack.apgd(m, x, y, -0.1), r"eps=-0.1"),
    (lambda m, x, y: autoattack.apgd(m, x, y[:-1], 0.1), r"same length"),
    (lambda m, x, y: autoattack.apgd(m, x * 3, y, 0.1), r"\[0, 1\]"),
    (lambda m, x, y: autoattack.square(m, x, y, 0.1, norm="l2"), r"norm='l2'.*allowed values are 'inf'"),
    (lambda m, x, y: autoattack.square(m, x, y, 0.1, queries=-1), r"queries=-1"),
    (lambda m, x, y: autoattack.square(m, x, y, 0.1, queries=10.0), r"queries must be an integer"),
    (lambda m, x, y: autoattack.square(m, x, y + 10, 0.1), r"class indices"),
    (lambda m, x, y: evaluate.strong_accuracy(m, x, y, 0.1, norm="l1"), r"norm='l1'"),
    (lambda m, x, y: evaluate.strong_accuracy(m, x, y, 0.1, steps=0), r"steps=0"),
    (lambda m, x, y: evaluate.strong_accuracy(m, x[:0], y[:0], 0.1), r"at least one example"),
])
def test_bad_arguments_raise_clear_errors(shipped_model, batch, call, match):
    x, y = batch
    with pytest.raises((ValueError, TypeError), match=match):
        call(shipped_model, x[:4], y[:4])


def test_dlr_needs_enough_classes(linear_model):
    model, _, _ = linear_model  # three classes: enough untargeted, not targeted
    x = np.full((2, 4, 4, 1), 0.5, np.float32)
    autoattack.apgd(model, x, np.array([0, 1]), 0.1, loss="dlr", steps=1)
    with pytest.raises(ValueError, match=r"at least 4 classes, got 3"):
        autoattack.apgd(model, x, np.array([0, 1]), 0.1, loss="dlr", steps=1, targeted=True)
    with pytest.raises(ValueError, match=r"needs at least 3 classes"):
        autoattack.dlr_loss(np.zeros((2, 2), np.float32), np.array([0, 1]))


@pytest.mark.slow
def test_apgd_refuses_to_be_traced(trained_model, batch):
    x, y = batch

    @tf.function
    def inside(xb, yb):
        return autoattack.apgd(trained_model, xb, yb, 0.1, steps=2)

    with pytest.raises(TypeError, match="eagerly"):
        inside(tf.constant(x[:4]), tf.constant(y[:4]))

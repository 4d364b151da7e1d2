"""The exercises' self-checks (helpers.selfcheck): every check passes the notebook's solution, rejects wrong answers
(doing nothing, a constant, the typical mistake) with an AssertionError, and meets the student version's stub with
one "not written yet" line and no exception.  Tiny stand-ins: a random-weight course CNN on a few bundled images."""

import numpy as np
import pytest

from helpers import NotWrittenYet, exercise, selfcheck


def stub(*args, **kwargs):
    raise NotWrittenYet("exercise")


def not_written(capsys, number, what):
    return f"Exercise {number} is not written yet: fill in {what} above, then run this cell again." in \
        capsys.readouterr().out


@pytest.fixture(scope="module")
def cnn():
    from helpers import models

    return models.build_model((28, 28, 1), 10, seed=0)


@pytest.fixture(scope="module")
def images(mnist):
    return mnist.x_test[:48].copy(), mnist.y_test[:48].copy()


# ------------------------------------------------------------------------------------------------ the stub
def test_stub_recognised_only_for_exercises(capsys):
    assert exercise.is_stub(NotWrittenYet("exercise")) and exercise.is_stub(NotImplementedError("exercise"))
    assert not exercise.is_stub(NotImplementedError("Layer has no call()"))
    with selfcheck.skip_if_not_written(2):
        stub()
        raise AssertionError("not reached")
    assert capsys.readouterr().out == "(skipped: exercise 2 is not written yet)\n"
    with pytest.raises(NotImplementedError, match="no call"), selfcheck.skip_if_not_written(2):
        raise NotImplementedError("Layer has no call()")
    with pytest.raises(ValueError), selfcheck.skip_if_not_written(2):
        raise ValueError("a real error")


def test_keras_fit_keeps_the_stub_recognisable():
    """A stub train_step raises while fit traces it: the exception must come out as NotWrittenYet."""
    import keras

    class Stubbed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

        def train_step(self, data):
            raise NotWrittenYet("exercise")

    model = Stubbed()
    model.compile(optimizer="sgd")
    with pytest.raises(NotWrittenYet):
        model.fit(np.zeros((4, 3), np.float32), np.zeros(4), verbose=0)


# ------------------------------------------------------------------------------------------------ 01
def good_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def naive_softmax(z):
    e = np.exp(np.asarray(z, np.float64))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("wrong", [
    naive_softmax,                                                       # no max-shift: overflows
    lambda z: np.asarray(z, np.float64),                                 # does nothing
    lambda z: np.full(np.shape(z), 1 / np.shape(z)[1]),                  # a constant
    lambda z: np.exp(z - np.max(z)) / np.exp(z - np.max(z)).sum(axis=0, keepdims=True),  # normalised per column
])
def test_softmax(wrong, capsys):
    logits = np.random.default_rng(0).normal(0, 6, (50, 10)).astype(np.float32)
    assert selfcheck.softmax(good_softmax, logits) is True
    assert "softmax: correct" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        selfcheck.softmax(wrong, logits)
    assert selfcheck.softmax(stub, logits) is None and not_written(capsys, 1, "softmax()")


def test_softmax_names_the_overflow():
    with pytest.raises(AssertionError, match="subtract each row's largest logit"):
        selfcheck.softmax(naive_softmax, np.zeros((3, 4), np.float32))   # the made-up logits overflow


def least_case():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, 200)
    pred = np.where(rng.uniform(size=200) < 0.9, y, (y + 1) % 10)
    conf = rng.uniform(0.3, 1.0, 200)
    right = np.flatnonzero(pred == y)
    return pred, conf, y, right, right[np.argsort(conf[right])[:6]]


def test_least_confident(capsys):
    pred, conf, y, right, least = least_case()
    assert selfcheck.least_confident(least, pred, conf, y) is True
    assert "the six least confident correct predictions" in capsys.readouterr().out
    wrong = {"six copies of one index": np.repeat(least[:1], 6), "a constant": np.arange(6),
             "indices into the correct ones": np.argsort(conf[right])[:6],
             "five of six": least[:5], "a mask": np.isin(np.arange(200), least),
             "most confident": right[np.argsort(conf[right])[-6:]]}
    for name, answer in wrong.items():
        with pytest.raises(AssertionError):
            selfcheck.least_confident(answer, pred, conf, y)
    with pytest.raises(AssertionError, match="repeats"):
        selfcheck.least_confident(np.repeat(least[:1], 6), pred, conf, y)
    assert selfcheck.least_confident(None, pred, conf, y) is None and not_written(capsys, 3, "least")


# ------------------------------------------------------------------------------------------------ 02, 04
def fgsm_step(direction, clip=True):
    """FGSM written by hand (as in notebooks 02 and 04); direction -1 flips the sign."""
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def attack(model, x, y, eps):
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_fn(y, model(x, training=False))
        out = x + direction * eps * tf.sign(tape.gradient(loss, x))
        return (tf.clip_by_value(out, 0.0, 1.0) if clip else out).numpy()
    return attack


@pytest.mark.slow
def test_fgsm(cnn, images, capsys):
    x, y = images
    assert selfcheck.fgsm(fgsm_step(+1), cnn, x, y, 0.2) is True
    assert "accuracy after your FGSM" in capsys.readouterr().out
    wrong = {"flipped sign": (fgsm_step(-1), "flipped"), "no clip": (fgsm_step(+1, clip=False), "clip"),
             "does nothing": (lambda m, x, y, e: x, "clean images"),
             "a constant": (lambda m, x, y, e: np.zeros_like(x), "")}
    for name, (answer, says) in wrong.items():
        with pytest.raises(AssertionError, match=says or None):
            selfcheck.fgsm(answer, cnn, x, y, 0.2)
    with pytest.raises(AssertionError, match="returned None"):
        selfcheck.fgsm(lambda m, x, y, e: None, cnn, x, y, 0.2)
    assert selfcheck.fgsm(stub, cnn, x, y, 0.2) is None and not_written(capsys, 1, "my_fgsm()")


@pytest.mark.slow
def test_targeted_fgsm(cnn, images, capsys):
    x, _ = images
    t = np.full(len(x), 3)
    assert selfcheck.targeted_fgsm(fgsm_step(-1), cnn, x, t, 0.3, "3") is True
    assert "into '3'" in capsys.readouterr().out
    for answer, says in [(fgsm_step(+1), "flipped"), (lambda m, x, t, e: x, "clean images"),
                         (fgsm_step(-1, clip=False), "clip"), (lambda m, x, t, e: np.ones_like(x), "")]:
        with pytest.raises(AssertionError, match=says or None):
            selfcheck.targeted_fgsm(answer, cnn, x, t, 0.3, "3")
    assert selfcheck.targeted_fgsm(stub, cnn, x, t, 0.3) is None and not_written(capsys, 1, "my_targeted_fgsm()")


# ------------------------------------------------------------------------------------------------ 03
def good_gain(g, eps, norm):
    g = np.asarray(g, np.float64).reshape(len(g), -1)
    return eps * (np.abs(g).sum(axis=1) if norm == "inf" else np.sqrt((g ** 2).sum(axis=1)))


@pytest.mark.parametrize("wrong", [
    lambda g, eps, norm: good_gain(g, eps, "l2" if norm == "inf" else "inf"),   # norms swapped (not the dual)
    lambda g, eps, norm: np.zeros(len(g)),                                      # does nothing
    lambda g, eps, norm: np.full(len(g), 1e9),                                  # a constant that no step beats
    lambda g, eps, norm: good_gain(g, 1.0, norm),                               # forgets eps
    lambda g, eps, norm: good_gain(g, eps, norm).sum(),                         # one number for the batch
    lambda g, eps, norm: eps * np.abs(np.asarray(g)).reshape(len(g), -1).max(axis=1),  # the max step's gain
])
def test_best_linear_gain(wrong, capsys):
    g = np.random.default_rng(2).normal(size=(20, 6, 6, 1))
    assert selfcheck.best_linear_gain(good_gain, g, 0.002, 0.05) is True
    assert "no step beats it" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        selfcheck.best_linear_gain(wrong, g, 0.002, 0.05)
    assert selfcheck.best_linear_gain(stub, g, 0.002, 0.05) is None and not_written(capsys, 1, "best_linear_gain()")


# ------------------------------------------------------------------------------------------------ 05
def adversarial_model_class(mode):
    """The notebook's MyAdversarialModel, with its step's mode: "double" (the solution), "adversarial", "clean",
    "nothing" (no update), or "stub"."""
    import keras
    import tensorflow as tf

    from helpers import attacks

    class Model(keras.Model):
        def __init__(self, classifier, eps):
            super().__init__()
            self.classifier, self.eps = classifier, eps
            self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def call(self, x, training=False):
            return self.classifier(x, training=training)

        def train_step(self, data):
            x, y = data
            if mode == "stub":
                raise NotWrittenYet("exercise")
            x_adv = tf.stop_gradient(attacks.fgsm(self.classifier, x, y, self.eps))
            x_in, y_in = {"double": (tf.concat([x, x_adv], 0), tf.concat([y, y], 0)), "adversarial": (x_adv, y),
                          "clean": (x, y), "nothing": (x, y)}[mode]
            with tf.GradientTape() as tape:
                loss = self.loss_fn(y_in, self(x_in, training=True))
            if mode != "nothing":
                grads = tape.gradient(loss, self.trainable_variables)
                self.optimizer.apply(grads, self.trainable_variables)
            return {"loss": loss}
    return Model


@pytest.mark.slow
def test_train_step(mnist, capsys):
    x, y = mnist.x_train[:32, 8:20, 8:20].copy(), mnist.y_train[:32].copy()   # 12 × 12 crops: a small CNN
    check = lambda mode: selfcheck.train_step(lambda c: adversarial_model_class(mode)(c, 0.3), x, y, 0.3)
    assert check("double") is True and "double-batch step" in capsys.readouterr().out
    for mode, says in [("adversarial", "adversarial examples only"), ("nothing", "matches none")]:
        with pytest.raises(AssertionError, match=says or None):
            check(mode)
    assert check("stub") is None and not_written(capsys, 1, "train_step")


def test_training_run(capsys):
    import keras

    def tiny(value):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.set_weights([np.full((3, 2), value, np.float32), np.zeros(2, np.float32)])
        return model

    mine, twin = tiny(0.5), tiny(0.5)
    assert selfcheck.training_run({"your step": (0.93, 0.54), "helpers twin": (0.93, 0.545)}, mine, twin) is True
    assert "weight difference between the two: 0.0e+00" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="within 1 point"):   # an untrained classifier, say
        selfcheck.training_run({"your step": (0.10, 0.02), "helpers twin": (0.93, 0.54)}, tiny(0.1), twin)
    assert selfcheck.training_run({"helpers twin": (0.93, 0.54)}, mine, twin) is None
    assert "(skipped: exercise 1 is not written yet)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ 06
def good_worst(model, x_advs, y):
    from helpers import evaluate

    robust = np.ones(len(y), bool)
    for xa in x_advs:
        robust &= evaluate.predict(model, xa)[0] == y
    return float(robust.mean())


def per_attack(model, x_advs, y):
    from helpers import evaluate

    return np.array([np.mean(evaluate.predict(model, xa)[0] == y) for xa in x_advs])


@pytest.mark.parametrize("wrong,says", [
    (lambda m, xs, y: float(per_attack(m, xs, y).min()), "strongest single attack"),
    (lambda m, xs, y: float(per_attack(m, xs, y).mean()), ""),
    (lambda m, xs, y: 0.0, ""),
    (lambda m, xs, y: 0.2, ""),                                  # the first made-up answer, as a constant
    (lambda m, xs, y: 1 - good_worst(m, xs, y), ""),
])
def test_worst_case_accuracy(cnn, images, wrong, says, capsys):
    from helpers import attacks

    x, y = images
    advs = {"fgsm": attacks.fgsm(cnn, x, y, 0.1), "noise": attacks.random_noise(x, 0.3, seed=0)}
    zoo, adv = {"random": cnn}, {("random", a): xa for a, xa in advs.items()}
    worst = selfcheck.worst_case_accuracy(good_worst, zoo, adv, y, list(advs))
    assert worst["random"] == good_worst(cnn, list(advs.values()), y)
    assert "worst case over the 2 L∞ attacks" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=says or None):
        selfcheck.worst_case_accuracy(wrong, zoo, adv, y, list(advs))
    assert selfcheck.worst_case_accuracy(stub, zoo, adv, y, list(advs)) is None
    assert not_written(capsys, 1, "worst_case_accuracy()")


# ------------------------------------------------------------------------------------------------ 07
def fgsm_rs_answer(project=True, start=True):
    """Notebook 07's my_fgsm_rs, or a typical wrong version of it."""
    from helpers import attacks

    def my_fgsm_rs(model, x, y, eps, alpha, delta):
        x0 = np.clip(x + delta, 0.0, 1.0) if start else x
        step = x0 + alpha * np.sign(np.asarray(attacks.input_gradient(model, x0, y)))
        return np.clip(np.clip(step, x - eps, x + eps) if project else step, 0.0, 1.0)
    return my_fgsm_rs


def test_fgsm_rs(cnn, images, capsys):
    x, y = images
    assert selfcheck.fgsm_rs(fgsm_rs_answer(), cnn, x, y, 0.3) is True
    assert "matches the reference on two random starts" in capsys.readouterr().out
    wrong = {"no projection": (fgsm_rs_answer(project=False), "project back"),
             "no random start": (fgsm_rs_answer(start=False), "plain FGSM"),
             "the start itself": (lambda m, x, y, e, a, d: np.clip(x + d, 0, 1), "step of size alpha is missing"),
             "a constant": (lambda m, x, y, e, a, d: np.zeros_like(x), "")}
    for name, (answer, says) in wrong.items():
        with pytest.raises(AssertionError, match=says or None):
            selfcheck.fgsm_rs(answer, cnn, x, y, 0.3)
    assert selfcheck.fgsm_rs(stub, cnn, x, y, 0.3) is None and not_written(capsys, 1, "my_fgsm_rs()")


def test_fgsm_rs_shortcut_fails_the_hidden_test(cnn, images):
    from helpers import attacks

    x, y = images
    cheat = lambda m, x, y, e, a, d: attacks.pgd(m, x, y, e, steps=1, step_size=a, seed=0)   # noqa: E731
    selfcheck.fgsm_rs(fgsm_rs_answer(), cnn, x, y, 0.3)
    selfcheck.graded("fgsm_rs")
    try:
        selfcheck.fgsm_rs(cheat, cnn, x, y, 0.3)
    except AssertionError:
        pass      # a different random start than the check's: it fails the visible check already
    else:
        with pytest.raises(AssertionError, match="the exercise is to write it yourself"):
            selfcheck.graded("fgsm_rs")


def detector_class(variant="solution"):
    """Notebook 08's CollapseDetector (training.find_collapse on the curves so far), or a typical wrong version."""
    import keras

    from helpers import training

    class CollapseDetector(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.pgd, self.own, self.held, self.last, self.collapsed_at = [], [], 0.0, None, None

        def on_epoch_end(self, epoch, logs=None):
            if variant == "stub":
                raise NotWrittenYet("exercise")
            value = logs["val_adv_accuracy"]
            self.pgd.append(value)
            self.own.append(logs["adv_accuracy"])
            if variant == "own rule":     # the old rule: a fall below the level held for two epochs, own ignored
                fired = self.last is not None and value < self.held - 0.2
                if self.last is not None:
                    self.held = max(self.held, min(self.last, value))
                self.last = value
            else:
                fired = variant == "always" or training.find_collapse(self.pgd, self.own) is not None
            if fired and self.collapsed_at is None and variant != "nothing":
                self.collapsed_at = epoch + 1 if variant == "epoch + 1" else epoch
                if variant != "never stops":
                    self.model.stop_training = True
    return CollapseDetector


CURVES = {"FGSM": ([0.12, 0.08, 0.04, 0.06, 0.13, 0.28, 0.41], [0.1, 0.3, 0.5, 0.6, 0.7, 0.7, 0.8]),
          "collapsing": ([0.2, 0.4, 0.5, 0.1, 0.05], [0.5, 0.8, 0.9, 0.9, 0.9])}


@pytest.mark.parametrize("variant,says", [
    ("never stops", "stop_training = True"), ("nothing", "stop_training = True"), ("always", "before the collapse"),
    ("epoch + 1", "collapsed_at should be"), ("own rule", "everything fell"),
])
def test_collapse_detector(variant, says, capsys):
    found = selfcheck.collapse_detector(detector_class(), CURVES)
    assert found == {"FGSM": None, "collapsing": 3}
    out = capsys.readouterr().out
    assert f"{'FGSM':28s} no collapse" in out and f"{'collapsing':28s} collapse detected after epoch 4" in out
    with pytest.raises(AssertionError, match=says or None):
        selfcheck.collapse_detector(detector_class(variant), CURVES)
    assert selfcheck.collapse_detector(detector_class("stub"), CURVES) is None
    assert not_written(capsys, 1, "on_epoch_end()")


def test_collapse_detector_follows_find_collapse_on_real_runs():
    """The expectation on a real run is training.find_collapse's verdict, whatever the CPU made of the run."""
    runs = {"late fall": ([0.1, 0.35, 0.4, 0.1, 0.1], [0.9] * 5),
            "own attack fell too": ([0.5, 0.5, 0.1], [0.9, 0.9, 0.2])}
    assert selfcheck.collapse_detector(detector_class(), runs) == {"late fall": 3, "own attack fell too": None}
    with pytest.raises(AssertionError, match="no collapse, but your detector stopped training"):
        selfcheck.collapse_detector(detector_class("own rule"), {"own attack fell too": runs["own attack fell too"]})


# ------------------------------------------------------------------------------------------------ 09
def good_interval(lower, upper, W, b):
    mu, r = (upper + lower) / 2, (upper - lower) / 2
    return mu @ W + b - r @ np.abs(W), mu @ W + b + r @ np.abs(W)


@pytest.mark.parametrize("wrong,says", [
    (lambda lo, hi, W, b: ((lo + hi) / 2 @ W + b - (hi - lo) / 2 @ W, (lo + hi) / 2 @ W + b + (hi - lo) / 2 @ W),
     "lower bounds lie above"),                                                     # W instead of |W|
    (lambda lo, hi, W, b: (lo, hi), "shape"),                                        # does nothing
    (lambda lo, hi, W, b: (np.zeros((len(lo), W.shape[1])),) * 2, "interval rule"),  # a constant
    (lambda lo, hi, W, b: (lo @ W + b, hi @ W + b), ""),                              # the ends, not the box
    (lambda lo, hi, W, b: good_interval(lo, hi, W, b)[0], "pair"),                    # one bound only
])
def test_dense_interval(wrong, says, capsys):
    rng = np.random.default_rng(3)
    lower = rng.normal(size=(6, 12))
    upper = lower + rng.uniform(0, 0.5, size=lower.shape)
    W, b = rng.normal(size=(12, 7)), rng.normal(size=7)
    certified = tuple(np.maximum(v, 0) for v in good_interval(lower, upper, W, b))
    assert selfcheck.dense_interval(good_interval, (lower, upper), W, b, certified=certified) is True
    assert "contains every random point" in capsys.readouterr().out
    with pytest.raises(AssertionError, match=says or None):
        selfcheck.dense_interval(wrong, (lower, upper), W, b, certified=certified)
    assert selfcheck.dense_interval(stub, (lower, upper), W, b) is None and not_written(capsys, 1, "dense_interval()")


# ------------------------------------------------------------------------------------------------ 10
def good_dlr(z, y):
    z = np.asarray(z, np.float64)
    rows = np.arange(len(z))
    others = z.copy()
    others[rows, y] = -np.inf
    top = -np.sort(-z, axis=1)
    return -(z[rows, y] - others.max(axis=1)) / (top[:, 0] - top[:, 2] + 1e-12)


@pytest.mark.parametrize("wrong", [
    lambda z, y: -(z[np.arange(len(z)), y] - np.where(np.eye(z.shape[1], dtype=bool)[y], -np.inf, z).max(1))
    / (z[:, 0] - z[:, 2] + 1e-12),                                                  # no sort: logits 0 and 2
    lambda z, y: good_dlr(z, y) * (np.sort(z, 1)[:, -1] - np.sort(z, 1)[:, -3]) / (z.max(1) - z.min(1)),  # max − min
    lambda z, y: -good_dlr(z, y),                                                    # sign flipped
    lambda z, y: np.zeros(len(z)),                                                   # a constant
    lambda z, y: z,                                                                  # does nothing
])
def test_dlr(wrong, capsys):
    rng = np.random.default_rng(4)
    z, y = rng.normal(0, 3, (40, 10)), rng.integers(0, 10, 40)
    assert selfcheck.dlr(good_dlr, z, y) is True and "my_dlr: matches" in capsys.readouterr().out
    with pytest.raises(AssertionError):
        selfcheck.dlr(wrong, z, y)
    assert selfcheck.dlr(stub, z, y) is None and not_written(capsys, 1, "my_dlr()")


def search_step(*, keep="lower", around="x", square=True, clip=True):
    """The notebook's random_search_step, or a typical wrong version of it."""
    import tensorflow as tf

    from helpers import autoattack, evaluate

    def step(model, x, x_best, y, eps, rng, side=5):
        n, h, w, _ = x.shape
        proposal = x_best.copy()
        for i in range(n):
            r, c = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            sign = rng.choice([-1.0, 1.0])
            base = x if around == "x" else x_best
            if square:
                proposal[i, r:r + side, c:c + side] = base[i, r:r + side, c:c + side] + sign * eps
            else:
                proposal[i] = base[i] + sign * eps
        proposal = np.clip(proposal, 0.0, 1.0) if clip else proposal

        def margins(images):
            return autoattack.margin(tf.constant(evaluate.predict_logits(model, np.clip(images, 0, 1))),
                                     tf.constant(y)).numpy()
        better = {"lower": margins(proposal) < margins(x_best), "higher": margins(proposal) > margins(x_best),
                  "always": np.ones(n, bool), "never": np.zeros(n, bool)}[keep]
        return np.where(better[:, None, None, None], proposal, x_best)
    return step


@pytest.mark.parametrize("wrong,says", [
    (search_step(keep="never"), "only 0%"),                    # returns x_best unchanged
    (search_step(keep="always"), "never go up"),               # keeps every proposal
    (search_step(keep="higher"), "never go up"),               # the comparison flipped
    (search_step(around="x_best"), "ε-box"),                   # x_best ± eps: leaves the ball
    (search_step(square=False), "square"),                     # the whole image
    (search_step(clip=False), "ε-box"),                        # no clip to [0, 1]
    (lambda model, x, x_best, y, eps, rng: None, "None"),      # does nothing
])
def test_random_search_step_names_what_is_wrong(cnn, images, wrong, says):
    x, y = images[0][:24], images[1][:24]
    with pytest.raises(AssertionError, match=says or None):
        selfcheck.random_search_step(wrong, cnn, x, y, 0.3, steps=10)


def test_random_search_step_passes_the_notebooks_answer_and_knows_the_stub(cnn, images, capsys):
    x, y = images[0][:24], images[1][:24]
    assert selfcheck.random_search_step(search_step(), cnn, x, y, 0.3, steps=10) is True
    assert "10 random-search steps" in capsys.readouterr().out
    assert selfcheck.random_search_step(stub, cnn, x, y, 0.3) is None
    assert not_written(capsys, 2, "random_search_step()")

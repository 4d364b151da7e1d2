import numpy as np
import pytest

from helpers import models


@pytest.mark.parametrize("shape,arch", [((28, 28, 1), "cnn"), ((32, 32, 3), "cnn"), ((32, 32, 3), "cnn_wide"),
                                        ((28, 28, 1), "mlp")])
def test_build_model_returns_logits(shape, arch):
    model = models.build_model(shape, 10, arch=arch)
    out = model(np.random.default_rng(0).uniform(size=(3, *shape)).astype(np.float32)).numpy()
    assert out.shape == (3, 10)
    # Logits, not probabilities: rows are not a probability distribution.
    assert not np.allclose(out.sum(axis=1), 1.0)
    assert out.min() < 0 or out.max() > 1


def test_same_seed_same_weights_other_seed_other_weights():
    a, b = models.build_model((28, 28, 1), 10, seed=1), models.build_model((28, 28, 1), 10, seed=1)
    c = models.build_model((28, 28, 1), 10, seed=2)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_shape=(28, 28, 1), num_classes=10, arch="resnet"), r"arch='resnet'.*'cnn'"),
    (dict(input_shape=(28, 28), num_classes=10), r"input_shape must be \(height, width, channels\)"),
    (dict(input_shape=(28, 28, 1), num_classes=1), r"num_classes=1"),
])
def test_build_model_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.build_model(**kwargs)


@pytest.mark.slow
def test_train_model_learns(mnist):
    models.seed_everything(0)
    model = models.build_model(mnist.input_shape, mnist.num_classes)
    hist = models.train_model(model, mnist.x_train[:1000], mnist.y_train[:1000], epochs=3)
    assert hist.history["loss"][-1] < 0.7 * hist.history["loss"][0]


def test_train_model_refuses_a_learning_rate_it_would_ignore(mnist):
    model = models.compile_model(models.build_model(mnist.input_shape, mnist.num_classes), learning_rate=1e-3)
    with pytest.raises(ValueError, match="already compiled with Adam"):
        models.train_model(model, mnist.x_train[:64], mnist.y_train[:64], epochs=1, learning_rate=1e-2)
    with pytest.raises(ValueError, match=r"class indices in \[0, 9\]"):
        models.train_model(model, mnist.x_train[:4], np.array([0, 1, 2, 10]), epochs=1)


# --- flags are booleans, seeds and sizes whole numbers: a wrong type is refused, not read as something else -----

@pytest.mark.parametrize("kwargs,error,match", [
    (dict(mixed_precision=1), TypeError, "mixed_precision must be True or False"),
    (dict(mixed_precision="no"), TypeError, "mixed_precision must be True or False"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),       # was int(1.5): the weights of seed=1
    (dict(seed=True), TypeError, "seed must be an integer"),
    (dict(seed=-1), ValueError, "seed=-1"),
    (dict(input_shape=(28.5, 28, 1)), TypeError, r"input_shape must hold whole numbers"),  # was 28
    (dict(input_shape=(8, 8, 1)), ValueError, r"arch='cnn' needs images of at least 10×10.*'mlp'"),
])
def test_build_model_refuses_arguments_it_would_misread(kwargs, error, match):
    with pytest.raises(error, match=match):
        models.build_model(**{"input_shape": (28, 28, 1), "num_classes": 10, **kwargs})


def test_build_model_still_takes_numpy_integers_and_small_mlp_inputs():
    model = models.build_model(tuple(np.array([12, 12, 1])), np.int64(3), seed=np.int64(2), arch="mlp",
                               mixed_precision=np.bool_(False))
    assert model.input_shape == (None, 12, 12, 1) and model.output_shape == (None, 3)
    assert models.build_model((10, 10, 1), 2).output_shape == (None, 2)  # the smallest image the CNN takes


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(deterministic="no"), TypeError, "deterministic must be True or False"),  # "no" is truthy: was on
    (dict(deterministic=0), TypeError, "deterministic must be True or False"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
])
def test_seed_everything_refuses_misread_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        models.seed_everything(**kwargs)


def _tiny_data(n=16):
    rng = np.random.default_rng(0)
    return rng.uniform(size=(n, 12, 12, 1)).astype(np.float32), rng.integers(0, 3, n)


@pytest.mark.parametrize("bad,error,match", [
    (lambda x, y: (x * 255, y), ValueError, r"validation_data images must hold pixel values in \[0, 1\]"),  # silently trained on
    (lambda x, y: (x, np.full(len(y), 7)), ValueError, r"class indices in \[0, 2\]"),
    (lambda x, y: (x, y[:-1]), ValueError, "same length"),
    (lambda x, y: (x,), ValueError, r"validation_data must be \(x_val, y_val\)"),
])
def test_train_model_checks_validation_arrays(bad, error, match):
    x, y = _tiny_data()
    model = models.build_model((12, 12, 1), 3, arch="mlp")
    with pytest.raises(error, match=match):
        models.train_model(model, x, y, epochs=1, validation_data=bad(x, y))
    with pytest.raises(TypeError, match="seed must be an integer"):
        models.train_model(model, x, y, epochs=1, seed=True)


@pytest.mark.parametrize("lr,error", [(-1e-2, ValueError), (0.0, ValueError), (float("nan"), ValueError),
                                      (True, TypeError), ("fast", TypeError)])
def test_a_learning_rate_that_cannot_train_is_refused(lr, error):
    # a negative rate climbed the loss (1.1 -> 3.5 -> 9.2 in three epochs) without a word
    model = models.build_model((12, 12, 1), 3, arch="mlp")
    with pytest.raises(error, match="learning_rate"):
        models.compile_model(model, learning_rate=lr)
    x, y = _tiny_data()
    with pytest.raises(error, match="learning_rate"):
        models.train_model(model, x, y, epochs=1, learning_rate=lr)


def test_a_schedule_is_still_a_learning_rate():
    import keras

    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)
    model = models.compile_model(models.build_model((12, 12, 1), 3, arch="mlp"), learning_rate=schedule)
    assert model.optimizer.learning_rate is not None
    models.compile_model(model, learning_rate=np.float32(1e-3))


@pytest.mark.parametrize("head", ["dense", "layer", "activation"])
def test_a_model_that_outputs_probabilities_is_refused(head):
    # compile_model's loss reads logits (from_logits=True): a softmax output was trained with a wrong loss, silently
    import keras

    inputs = keras.Input((12, 12, 1))
    x = keras.layers.Flatten()(inputs)
    if head == "dense":
        out = keras.layers.Dense(3, activation="softmax")(x)
    else:
        x = keras.layers.Dense(3)(x)
        out = keras.layers.Softmax()(x) if head == "layer" else keras.layers.Activation("softmax")(x)
    model = keras.Model(inputs, out)
    with pytest.raises(ValueError, match="ends in a softmax.*logits"):
        models.compile_model(model)
    x, y = _tiny_data()
    with pytest.raises(ValueError, match="ends in a softmax"):
        models.train_model(model, x, y, epochs=1)

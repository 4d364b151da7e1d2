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

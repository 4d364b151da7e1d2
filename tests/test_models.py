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


def test_train_model_learns(mnist):
    models.seed_everything(0)
    model = models.build_model(mnist.input_shape, mnist.num_classes)
    hist = models.train_model(model, mnist.x_train[:1000], mnist.y_train[:1000], epochs=3)
    assert hist.history["loss"][-1] < 0.7 * hist.history["loss"][0]


def _tiny_trainer(calls):
    def train():
        calls.append(1)
        return models.build_model((8, 8, 1), 3, arch="mlp"), {"loss": [1.0, 0.5]}
    return train


def test_cache_trains_once_then_loads(tmp_path):
    calls = []
    key = dict(dataset="toy", arch="mlp", epochs=1, seed=0)
    m1, h1, cached1 = models.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    m2, h2, cached2 = models.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    assert (cached1, cached2) == (False, True) and len(calls) == 1
    assert h1 == h2 == {"loss": [1.0, 0.5]}
    for w1, w2 in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    # A different recipe is a different file.
    models.load_or_train(dict(key, seed=1), _tiny_trainer(calls), directory=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.keras"))) == 2


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    import keras

    def broken_save(self, path, *a, **k):
        with open(path, "wb") as fh:
            fh.write(b"half a model")
        raise KeyboardInterrupt("interrupted while saving")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        models.load_or_train(dict(dataset="toy"), _tiny_trainer([]), directory=tmp_path)
    # No model file, final or temporary, is left (the history JSON may be: without its model it is never read).
    assert not list(tmp_path.glob("*.keras")) and not list(tmp_path.glob(".*"))


def test_unreadable_cache_entry_is_retrained(tmp_path):
    key = dict(dataset="toy", arch="mlp")
    path = tmp_path / f"{models.cache_key(**key)}.keras"
    path.write_bytes(b"not a keras file")
    calls = []
    with pytest.warns(UserWarning, match="unreadable cached model"):
        _, _, cached = models.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    assert not cached and len(calls) == 1
    models.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    assert len(calls) == 1


def test_standard_model_uses_cache(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    small = mnist.subset(500, 100)
    a, ha = models.standard_model(small, epochs=2)
    assert len(list(tmp_path.glob("*.keras"))) == 1
    b, hb = models.standard_model(small, epochs=2)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    assert ha == hb and len(ha["val_accuracy"]) == 2 and len(ha["time"]) == 2

"""Shared fixtures: the course's shipped standard CNN, a small model trained once per test session on the bundled
data (cached), and tiny linear models.

Two things make the quick loop (``pytest -m "not slow" tests``) cheaper, both for this test process only (notebooks,
which nbval runs in their own kernels, are untouched):

* scikit-learn is not imported: Keras imports it at start-up for its scikit-learn wrappers, which the course never
  uses (about 0.5 s of every run);
* AutoGraph does not rewrite ``helpers``' own code when it is traced: its graph code has no Python control flow on
  tensors (without AutoGraph such code fails loudly rather than passing: "using a tf.Tensor as a Python bool"), so
  the graphs hold the same ops, and each new attack configuration traces 25-30 % faster.  Functions the tests
  themselves define are still converted.  ``COURSE_TEST_AUTOGRAPH=1`` keeps the default (AutoGraph everywhere).
"""

import os
import sys
from pathlib import Path

import matplotlib

import numpy as np
import pytest

matplotlib.use("Agg")  # unit tests draw off-screen (set here, not in the environment that notebook kernels inherit)
sys.modules.setdefault("sklearn", None)  # before TensorFlow and Keras: `import sklearn` fails, Keras goes without

if os.environ.get("COURSE_TEST_AUTOGRAPH", "").strip().lower() not in ("1", "true", "yes"):
    try:  # a private TensorFlow module: if a release moves it, the tests run with AutoGraph (slower, same result)
        from tensorflow.python.autograph.core import config as _autograph

        _autograph.CONVERSION_RULES = (_autograph.DoNotConvert("helpers"), *_autograph.CONVERSION_RULES)
    except (ImportError, AttributeError):
        pass

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "shipped" / "models"


@pytest.fixture(scope="session")
def mnist():
    from helpers.data import load_dataset

    return load_dataset("mnist_5k")


@pytest.fixture(scope="session")
def shipped_model():
    """The course's standard CNN as shipped in ``data/shipped`` (10 epochs on mnist_5k, seed 0; ~98 % test accuracy),
    read straight from its file: no training, and no retraining when a mutant or an edit changes the code version
    that ``modelcache`` keys on (the tests that use it need *a* well-trained CNN, not these exact weights)."""
    import keras

    (path,) = sorted(SHIPPED.glob("mnist_5k-cnn-standard-10-0-*.keras"))
    return keras.models.load_model(path, compile=False)


@pytest.fixture
def asked_key(monkeypatch):
    """``ask(call)``: the full key (code version included) that ``call()`` asks ``helpers.modelcache`` for, caught on
    its way to the cache by a stand-in for ``recipes.load_or_train``: nothing is loaded or trained."""
    from helpers import modelcache, recipes

    def ask(call):
        caught = []

        def catch(key, train_fn, **_):
            caught.append(key)
            raise StopIteration

        monkeypatch.setattr(recipes, "load_or_train", catch)
        with pytest.raises(StopIteration):
            call()
        return modelcache._full_key(caught[0])

    return ask


@pytest.fixture(scope="session")
def trained_model(mnist):
    """The course CNN after 3 epochs of standard training (~98 % train accuracy on mnist_5k).

    Kept in the model cache (``_store.cache_dir()/tests``, keyed like every cached model, so a code change
    retrains it): the quick loop trains it once, then loads it."""
    from helpers import _store, models, recipes

    models.seed_everything(0)
    return recipes.standard_model(mnist, epochs=3, directory=_store.cache_dir() / "tests")[0]


@pytest.fixture(scope="session")
def ibp_run(mnist):
    """The course CNN IBP-trained for ε = 0.1 on 500 digits (10 epochs, ~4 s), validated after each epoch on the 500
    validation digits: it certifies a good share at 0.1.  ``(classifier, History, data)``, shared by the
    certification tests and the training test of IBPModel (read it, do not train it further)."""
    import keras

    from helpers import models, training

    ds = mnist.subset(500, 100)
    models.seed_everything(0)
    model = models.build_model(ds.input_shape, ds.num_classes, arch="cnn", seed=0)
    # A clean warm-up and a slow ramp: IBP from an untrained network, or a fast ramp, collapses to one class.
    ibp = training.IBPModel(model, eps=0.1, warmup_steps=40, ramp_steps=120, kappa_end=0.5)  # the course's trainer
    ibp.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = ibp.fit(ds.x_train, ds.y_train, epochs=10, batch_size=25, verbose=0,
                      validation_data=(ds.x_val, ds.y_val))
    return model, history, ds


@pytest.fixture(scope="session")
def batch(mnist):
    """256 test images (balanced enough) and their labels."""
    return mnist.x_test[:256].copy(), mnist.y_test[:256].copy()


@pytest.fixture
def linear_model():
    """logits = W·flatten(x) + b with fixed random W, b: its input gradient is known in closed form."""
    import keras

    rng = np.random.default_rng(1)
    w = rng.normal(size=(16, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)
    inputs = keras.Input((4, 4, 1))
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    dense.set_weights([w, b])
    return model, w, b


# Fixture notebooks of the course builder are inputs, not lessons: nbval must not collect them.
collect_ignore_glob = ["fixtures/*"]

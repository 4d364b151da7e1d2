"""Evaluations remembered with the model: read back exactly, recomputed whenever anything that decides them changes."""

import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import keras

from helpers import attacks, evalcache, evaluate, models


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(evalcache.ENV, raising=False)
    return tmp_path / "evaluations"


def tiny(seed=0):
    return models.build_model((8, 8, 1), 3, arch="mlp", seed=seed)


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)


def Counting():
    """An attack that counts its calls (``attack.calls``): ±ε noise, random unless seeded (the cache does not care
    what it computes).  A function, not a callable object: ``remembered`` never remembers an object's results."""

    def attack(model, x, y, eps, *, steps=3, seed=None):
        attack.calls += 1
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=x.shape) * steps / 3
        return np.clip(x + eps * signs, 0, 1).astype(np.float32)

    attack.calls = 0
    return attack


@pytest.mark.slow
def test_remembered_reads_back_identical_images_and_recomputes_on_any_change(cache):
    model, (x, y) = tiny(), data()
    attack = Counting()
    run = evaluate.remembered(attack)
    first = run(model, x, y, 0.1, seed=1)
    again = run(model, x, y, 0.1, seed=1)
    assert attack.calls == 1 and np.array_equal(first, again) and again.dtype == np.float32
    assert len(list(cache.glob("adversarial-*.npz"))) == 1
    run(model, x, y, 0.2, seed=1)              # another ε
    run(model, x, y, 0.1, seed=2)              # another seed
    run(model, x, y, 0.1, seed=1, steps=4)     # another argument
    run(model, x[:-1], y[:-1], 0.1, seed=1)    # other images
    assert attack.calls == 5
    w = model.get_weights()
    w[0][0, 0] += 1e-3                         # other weights
    model.set_weights(w)
    run(model, x, y, 0.1, seed=1)
    assert attack.calls == 6


def test_fresh_randomness_is_never_remembered(cache):
    model, (x, y) = tiny(), data()
    attack = Counting()
    run = evaluate.remembered(attack)
    run(model, x, y, 0.1)
    run(model, x, y, 0.1)
    assert attack.calls == 2 and not cache.exists()


def test_switched_off_by_the_environment(cache, monkeypatch):
    monkeypatch.setenv(evalcache.ENV, "0")
    model, (x, y) = tiny(), data()
    attack = Counting()
    run = evaluate.remembered(attack)
    run(model, x, y, 0.1, seed=1)
    run(model, x, y, 0.1, seed=1)
    assert attack.calls == 2 and not cache.exists()


def test_fingerprint_ignores_layer_names_but_not_architecture_or_weights():
    def auto_named(seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])

    a, b = auto_named(0), auto_named(0)                # built twice: Keras names the layers differently
    assert a.layers[-1].name != b.layers[-1].name
    assert evalcache.fingerprint(a) == evalcache.fingerprint(b)
    assert evalcache.fingerprint(a) != evalcache.fingerprint(auto_named(1))
    inputs = keras.Input((8, 8, 1))
    scaled = keras.Model(inputs, keras.layers.Rescaling(1000.0)(a(inputs)))   # same weights, other function
    assert evalcache.fingerprint(scaled) != evalcache.fingerprint(a)


def test_the_code_is_part_of_the_key(cache, monkeypatch):
    model, (x, y) = tiny(), data()
    before = evalcache.key("k", model, (x, y), {})
    monkeypatch.setattr(evalcache, "source_hash", lambda names, folder=None: "edited")
    assert evalcache.key("k", model, (x, y), {}) != before


def test_the_key_covers_the_source_of_evaluate_and_of_the_weight_modules(tmp_path):
    folder = tmp_path / "helpers"
    shutil.copytree(Path(evalcache.__file__).parent, folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = evalcache.code_version(folder)
    assert before == evalcache.code_version()
    for name in ("evaluate", "evalcache", "attacks"):
        source = folder / f"{name}.py"
        text = source.read_text()
        source.write_text(text + "\n_EDITED = 1\n")
        assert evalcache.code_version(folder) != before, name
        source.write_text(text)
    assert evalcache.code_version(folder) == before


@pytest.mark.slow
def test_still_right_and_curves_use_the_cache_and_agree_with_a_fresh_computation(cache):
    model, (x, y) = tiny(), data(40)
    fresh = evaluate.predict(model, attacks.pgd(model, x, y, 0.1, steps=5, seed=3, early_stop=True))[0] == y
    ok = evaluate.still_right(model, x, y, "pgd", 0.1, steps=5, seed=3)
    assert ok.dtype == bool and np.array_equal(ok, fresh)
    assert np.array_equal(evaluate.still_right(model, x, y, "pgd", 0.1, steps=5, seed=3), fresh)
    curve = evaluate.accuracy_under_attack(model, x, y, "pgd", [0.1], steps=5, seed=3)
    assert curve == {0.1: float(fresh.mean())}
    assert len(list(cache.glob("still-right-*.npz"))) == 1        # the curve read the same entry


@pytest.mark.slow
def test_strong_robust_is_remembered_per_model(cache):
    model, (x, y) = tiny(), data(20)
    first = evaluate.strong_robust(model, x, y, 0.1, steps=5, queries=20)
    files = list(cache.glob("strong-*.npz"))
    again = evaluate.strong_robust(model, x, y, 0.1, steps=5, queries=20)
    assert len(files) == 1 and first.keys() == again.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    l2 = evaluate.strong_robust(model, x, y, 0.5, steps=5, norm="l2")
    assert l2["square"] is None and evaluate.strong_robust(model, x, y, 0.5, steps=5, norm="l2")["square"] is None


def test_unreadable_entry_is_recomputed(cache):
    model, (x, y) = tiny(), data()
    attack = Counting()
    run = evaluate.remembered(attack)
    run(model, x, y, 0.1, seed=1)
    (path,) = cache.glob("*.npz")
    path.write_bytes(b"not an npz")
    assert run(model, x, y, 0.1, seed=1).shape == x.shape and attack.calls == 2


def test_remembered_refuses_a_non_function():
    with pytest.raises(TypeError, match="needs an attack function"):
        evaluate.remembered("pgd")


# ------------------------------------------------------------------ the key holds the attack's code (a notebook cell)

CELL = """
import numpy as np

SHIFT = {shift}

def shifted(model, x, y, eps, *, seed=0):
    return np.clip(x + eps * SHIFT, 0, 1).astype(np.float32)
"""


def cell(shift):
    """Run a notebook cell defining ``shifted`` in a fresh namespace (a notebook's ``__main__``); return it."""
    namespace = {"__name__": "__main__"}
    exec(compile(CELL.format(shift=shift), "<cell>", "exec"), namespace)
    return namespace["shifted"]


def linear():
    """A tiny linear classifier (no training: the cache only needs a model to key on)."""
    inputs = keras.Input((2, 2, 1))
    return keras.Model(inputs, keras.layers.Dense(2, kernel_initializer="ones")(keras.layers.Flatten()(inputs)))


def test_an_edited_cell_is_run_again_not_served_its_old_result(cache):
    model, x, y = linear(), np.full((3, 2, 2, 1), 0.5, np.float32), np.zeros(3, np.int64)
    first = evaluate.remembered(cell(1.0))(model, x, y, 0.1, seed=0)
    assert np.allclose(first, 0.6)
    edited = evaluate.remembered(cell(-1.0))(model, x, y, 0.1, seed=0)   # same name, another body
    assert np.allclose(edited, 0.4)
    again = evaluate.remembered(cell(-1.0))(model, x, y, 0.1, seed=0)
    assert np.array_equal(again, edited) and len(list(cache.glob("adversarial-*.npz"))) == 2


def test_a_random_attack_without_a_seed_parameter_is_never_remembered(cache):
    model, x, y = linear(), np.full((3, 2, 2, 1), 0.5, np.float32), np.zeros(3, np.int64)

    def jitter(model, x, y, eps):
        return np.clip(x + np.random.uniform(-eps, eps, x.shape), 0, 1).astype(np.float32)

    run = evaluate.remembered(jitter)
    assert not np.array_equal(run(model, x, y, 0.1), run(model, x, y, 0.1))
    assert not cache.exists()


def test_what_a_function_closes_over_is_in_its_key_and_objects_are_not_remembered(cache):
    model, x, y = linear(), np.full((3, 2, 2, 1), 0.5, np.float32), np.zeros(3, np.int64)

    def scaled(factor):
        def attack(model, x, y, eps, *, seed=0):
            attack.calls += 1
            return np.clip(x + eps * factor, 0, 1).astype(np.float32)
        attack.calls = 0
        return attack

    up, down = scaled(1.0), scaled(-1.0)
    assert np.allclose(evaluate.remembered(up)(model, x, y, 0.1, seed=0), 0.6)
    assert np.allclose(evaluate.remembered(down)(model, x, y, 0.1, seed=0), 0.4)   # other closure: recomputed
    evaluate.remembered(up)(model, x, y, 0.1, seed=0)
    assert (up.calls, down.calls) == (1, 1)
    holder = [1.0]                     # a mutable value: cannot be hashed reliably, so never remembered

    def mutable(model, x, y, eps, *, seed=0):
        return np.clip(x + eps * holder[0], 0, 1).astype(np.float32)

    evaluate.remembered(mutable)(model, x, y, 0.1, seed=0)
    holder[0] = -1.0
    assert np.allclose(evaluate.remembered(mutable)(model, x, y, 0.1, seed=0), 0.4)


def test_the_key_of_a_helpers_attack_holds_its_module_source(tmp_path, monkeypatch):
    from helpers import _store
    before = _store.function_hash(attacks.pgd)
    assert before is not None and before == _store.function_hash(attacks.pgd)
    monkeypatch.setattr(_store, "_module_source", lambda name: "edited" if name == "helpers.attacks" else "x")
    assert _store.function_hash(attacks.pgd) != before


RESTART = """
import sys
import numpy as np
import keras
from helpers import evaluate
namespace = {{"__name__": "__main__"}}
exec({cell!r}, namespace)
inputs = keras.Input((2, 2, 1))
model = keras.Model(inputs, keras.layers.Dense(2, kernel_initializer="ones")(keras.layers.Flatten()(inputs)))
x = np.full((3, 2, 2, 1), 0.5, np.float32)
out = evaluate.remembered(namespace["shifted"])(model, x, np.zeros(3, np.int64), 0.1, seed=0)
print(float(out.mean()))
"""


@pytest.mark.slow
def test_an_edited_cell_is_run_again_after_a_kernel_restart(cache):
    """Each version in its own Python process (a restarted kernel), sharing the cache folder."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(evaluate.__file__).resolve().parent.parent))

    def kernel(shift):
        code = RESTART.format(cell=CELL.format(shift=shift))
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return float(done.stdout.split()[-1])

    assert kernel(1.0) == pytest.approx(0.6)
    assert kernel(-1.0) == pytest.approx(0.4)
    assert len(list(cache.glob("adversarial-*.npz"))) == 2


def test_a_cell_calling_a_rebound_global_or_a_wrapped_attack_gets_a_new_key():
    from helpers import _store

    namespace = {"__name__": "__main__"}
    exec("def outer(model, x, y, eps, *, seed=0):\n    return inner(model, x, y, eps, seed=seed)\n", namespace)
    namespace["inner"] = evaluate.remembered(cell(1.0))
    before = _store.function_hash(namespace["outer"])
    namespace["inner"] = evaluate.remembered(cell(-1.0))            # the global it calls, redefined
    assert before is not None and _store.function_hash(namespace["outer"]) != before
    assert _store.function_hash(evaluate.remembered(attacks.pgd)) != _store.function_hash(
        evaluate.remembered(attacks.fgsm))
    assert _store.function_hash(partial(attacks.pgd, steps=3)) != _store.function_hash(partial(attacks.pgd, steps=4))


def test_a_function_declared_deterministic_is_remembered_without_a_seed(cache):
    model, x, y = linear(), np.full((3, 2, 2, 1), 0.5, np.float32), np.zeros(3, np.int64)
    attack = Counting()
    run = evaluate.remembered(attack, deterministic=True)
    run(model, x, y, 0.1, seed=None)                    # declared: no random numbers drawn (here: made up)
    run(model, x, y, 0.1, seed=None)
    assert attack.calls == 1
    with pytest.raises(TypeError, match="deterministic must be True or False"):
        evaluate.remembered(attack, deterministic="yes")

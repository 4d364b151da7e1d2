import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import _store, modelcache, models, recipes, training

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def small(mnist):
    return mnist.subset(800, 200, n_val=200, seed=0)


def _tiny_trainer(calls):
    def train():
        calls.append(1)
        return models.build_model((8, 8, 1), 3, arch="mlp"), {"loss": [1.0, 0.5]}
    return train


def test_cache_trains_once_then_loads(tmp_path):
    calls = []
    key = dict(dataset="toy", arch="mlp", epochs=1, seed=0)
    m1, h1, cached1 = modelcache.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    m2, h2, cached2 = modelcache.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    assert (cached1, cached2) == (False, True) and len(calls) == 1
    assert h1 == h2 == {"loss": [1.0, 0.5]}
    for w1, w2 in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    # A different recipe is a different file.
    modelcache.load_or_train(dict(key, seed=1), _tiny_trainer(calls), directory=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.glob("*.keras"))) == 2


@pytest.mark.parametrize("deterministic", (True, False))
def test_the_cache_records_whether_op_determinism_was_on(deterministic, tmp_path):
    """It decides the weights' last bits but is not in the key: ``helpers.course.reproduce`` retrains under it."""
    import json

    from helpers.course.reproduce import op_determinism

    with op_determinism(deterministic):
        modelcache.load_or_train(dict(dataset="toy", arch="mlp", seed=0), _tiny_trainer([]), directory=tmp_path)
    (meta,) = tmp_path.glob("*.json")
    assert json.loads(meta.read_text())["op_determinism"] is deterministic


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    import keras

    def broken_save(self, path, *a, **k):
        with open(path, "wb") as fh:
            fh.write(b"half a model")
        raise KeyboardInterrupt("interrupted while saving")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        modelcache.load_or_train(dict(dataset="toy"), _tiny_trainer([]), directory=tmp_path)
    # No model file, final or temporary, is left (the history JSON may be: without its model it is never read).
    assert not list(tmp_path.glob("*.keras")) and not list(tmp_path.glob(".*"))


def test_unreadable_cache_entry_is_retrained(tmp_path):
    key = dict(dataset="toy", arch="mlp")
    path = modelcache.cache_file(key, tmp_path)
    path.write_bytes(b"not a keras file")
    calls = []
    with pytest.warns(UserWarning, match="unreadable cached model"):
        _, _, cached = modelcache.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    assert not cached and len(calls) == 1
    modelcache.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    assert len(calls) == 1


@pytest.mark.slow
def test_standard_model_uses_cache(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv(_store.CACHE_ENV, str(tmp_path))
    small = mnist.subset(500, 100)
    a, ha = recipes.standard_model(small, epochs=2)
    assert len(list(tmp_path.glob("*.keras"))) == 1
    b, hb = recipes.standard_model(small, epochs=2)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])
    assert ha == hb and len(ha["val_accuracy"]) == 2 and len(ha["time"]) == 2


def test_a_code_change_is_a_new_cache_entry(tmp_path, monkeypatch):
    calls = []
    key = dict(dataset="toy", arch="mlp")
    modelcache.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    monkeypatch.setattr(modelcache, "code_version", lambda: "changed")
    modelcache.load_or_train(key, _tiny_trainer(calls), directory=tmp_path)
    assert len(calls) == 2  # the old weights are not loaded for the new code


def _reached_from(name, package) -> set:
    """The modules of ``package`` that module ``name`` imports, directly or through others (relative imports)."""
    seen, todo = set(), [name]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for node in ast.walk(ast.parse((package / f"{module}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                todo += [node.module] if node.module else [a.name for a in node.names]
    return {m for m in seen if (package / f"{m}.py").exists()}


def test_editing_a_weight_module_changes_the_code_version(tmp_path):
    """Edit each module that decides the weights in a copy of the package: the version (so every cache key)
    changes; editing a module that cannot change the weights (plots) leaves it."""
    package = tmp_path / "helpers"
    shutil.copytree(Path(recipes.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    original = modelcache.code_version(package)
    assert original == modelcache.code_version() and re.fullmatch(r"[0-9a-f]{10}", original)
    # every module the recipes reach (directly or through others) decides the weights, except: data (its
    # fingerprint is in every key), _checks and _quiet (no arithmetic), _store (the cache folder and hashes),
    # autoattack (evaluation only: reached through the registry's apgd/square entries, never called by training)
    # modelcache (reads, trains through the recipe's own function, saves)
    not_weights = {"data", "_checks", "_quiet", "_store", "__init__", "autoattack", "modelcache"}
    assert _reached_from("recipes", package) - not_weights <= set(modelcache._WEIGHT_MODULES)
    for name in modelcache._WEIGHT_MODULES:
        source = package / f"{name}.py"
        text = source.read_text()
        source.write_text(text + "\n_AN_EDIT = 1\n")
        assert modelcache.code_version(package) != original, name
        # prose is not code: a comment or a docstring edited leaves the version (and what was shipped) alone
        source.write_text(text.replace('"""', '""" Edited prose.', 1) + "\n# a comment\n")
        assert modelcache.code_version(package) == original, name
        source.write_text(text)
    assert modelcache.code_version(package) == original
    (package / "plots.py").write_text((package / "plots.py").read_text() + "\n_AN_EDIT = 1\n")
    assert modelcache.code_version(package) == original


@pytest.mark.slow
def test_adversarial_model_is_cached_with_its_history(small, tmp_path):
    args = dict(attack="fgsm", eps=0.1, epochs=2, mode="double", directory=tmp_path)
    tiny = small.subset(200, 50, n_val=60)
    m1, h1 = recipes.adversarial_model(tiny, **args)
    m2, h2 = recipes.adversarial_model(tiny, **args)
    assert h1 == h2 and len(h1["val_adv_accuracy"]) == 2 and len(h1["time"]) == 2
    np.testing.assert_array_equal(m1.get_weights()[0], m2.get_weights()[0])
    recipes.adversarial_model(tiny, **dict(args, eps=0.2))
    assert len(list(tmp_path.glob("*.keras"))) == 2
    with pytest.raises(ValueError, match="attack='cw'"):
        recipes.adversarial_model(tiny, **dict(args, attack="cw"))
    with pytest.raises(TypeError, match="unexpected arguments"):
        recipes.adversarial_model(tiny, **dict(args, patience=3))


@pytest.mark.slow
def test_course_model_recipes(small, tmp_path):
    with pytest.raises(ValueError, match="kind='sturdy'"):
        recipes.course_model(small, "sturdy", directory=tmp_path)
    tiny = small.subset(100, 20, n_val=20)
    a, ha = recipes.course_model(tiny, "standard", directory=tmp_path)
    b, _ = recipes.course_model(tiny, "transfer", directory=tmp_path)
    assert len(ha["loss"]) == 10 and len(ha["val_accuracy"]) == 10
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])  # another seed, another model


def test_no_module_but_data_reads_the_test_split():
    # Selection and monitoring use the validation split; test images only give the figures a notebook reports.
    for path in sorted((REPO / "helpers").glob("*.py")):
        if path.name != "data.py":
            assert "x_test" not in path.read_text() and "y_test" not in path.read_text(), path.name

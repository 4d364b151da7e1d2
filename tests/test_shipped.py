"""The models the course ships (``data/shipped``): found, verified, preferred, refused when altered, kept in step with
the code that makes them (``python -m helpers.course ship``).  Fast: tiny models and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import _store, data, modelcache, models, recipes

SHIP_COMMAND = "python -m helpers.course ship"


def _tiny_trainer(calls, value=0.0):
    def train():
        calls.append(1)
        model = models.build_model((8, 8, 1), 3, arch="mlp", seed=0)
        model.set_weights([np.full_like(w, value) for w in model.get_weights()])
        return model, {"loss": [1.0], "time": [3.0]}
    return train


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch):
    """An empty shipped folder and an empty local cache, both in ``tmp_path``; retraining off."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(_store, "SHIPPED", folder)
    monkeypatch.setenv(_store.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(_store.RETRAIN_ENV, raising=False)
    modelcache.set_retrain(False)
    yield folder
    modelcache.set_retrain(False)


def _ship(folder: Path, key: dict, value: float, fit_unit=1.5):
    """Ship the tiny model of ``key`` (weights all ``value``) into ``folder``, as ``helpers.course.ship`` does."""
    stem = modelcache.cache_key(**modelcache._full_key(key))
    (folder / "models").mkdir(exist_ok=True)
    model, history = _tiny_trainer([], value)()
    model.save(folder / "models" / f"{stem}.keras")
    (folder / "models" / f"{stem}.json").write_text(json.dumps({"key": key, "history": history}))
    files = {f"models/{p.name}": {"sha256": _store.file_sha256(p)} for p in (folder / "models").iterdir()}
    (folder / _store.MANIFEST).write_text(json.dumps({"files": files, "fit_unit_seconds": fit_unit}))
    return folder / "models" / f"{stem}.keras"


KEY = dict(dataset="toy", arch="mlp", recipe="standard", epochs=1, seed=0)


def test_a_shipped_model_is_loaded_before_training_and_says_so(shipped_dir, capsys):
    _ship(shipped_dir, KEY, 0.5)
    calls = []
    model, history, from_disk = modelcache.load_or_train(KEY, _tiny_trainer(calls))
    assert from_disk and not calls and history == {"loss": [1.0], "time": [3.0]}
    assert all(np.all(w == 0.5) for w in model.get_weights())
    said = capsys.readouterr().out
    assert said.startswith("[model] standard (toy, 1 epochs): shipped (data/shipped)") and "about 2 FU" in said


def test_shipped_comes_before_the_local_cache_and_retrain_skips_it(shipped_dir, monkeypatch):
    calls = []
    modelcache.load_or_train(KEY, _tiny_trainer(calls, 0.25), retrain=True)   # trained here: in the local cache
    assert len(calls) == 1
    _ship(shipped_dir, KEY, 0.5)
    model, _, _ = modelcache.load_or_train(KEY, _tiny_trainer(calls))
    assert np.all(model.get_weights()[0] == 0.5), "the shipped model must win: every machine prints the same"
    modelcache.set_retrain(True)   # a notebook's RETRAIN = True: the local cache (trained here) is read
    model, _, _ = modelcache.load_or_train(KEY, _tiny_trainer(calls))
    assert np.all(model.get_weights()[0] == 0.25) and len(calls) == 1
    modelcache.set_retrain(False)
    monkeypatch.setenv(_store.RETRAIN_ENV, "1")
    model, _, _ = modelcache.load_or_train(KEY, _tiny_trainer(calls))
    assert np.all(model.get_weights()[0] == 0.25)


@pytest.mark.parametrize("damage, why", [("alter", "does not match its checksum"), ("remove", "is missing")])
def test_a_damaged_shipped_model_is_trained_with_one_line_that_says_why(shipped_dir, capsys, damage, why):
    path = _ship(shipped_dir, KEY, 0.5)
    if damage == "alter":
        path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    else:
        path.unlink()
    calls = []
    _, _, from_disk = modelcache.load_or_train(KEY, _tiny_trainer(calls))
    assert not from_disk and len(calls) == 1
    lines = capsys.readouterr().out.splitlines()
    assert why in lines[0] and "not used" in lines[0] and "trained here" in lines[1]


def test_each_shipped_model_read_is_logged_for_the_ship_command(shipped_dir, tmp_path, monkeypatch):
    """``ship --evaluations`` keeps only the shipped models the series read (``$COURSE_SHIPPED_LOG``)."""
    from helpers.course import ship

    key = dict(KEY, dataset=ship.DATASET)
    path = _ship(shipped_dir, key, 0.5)
    other = _ship(shipped_dir, dict(key, seed=1), 0.25)
    log = tmp_path / ship.READ_LOG
    monkeypatch.setenv(_store.SHIPPED_LOG_ENV, str(log))
    modelcache.load_or_train(key, _tiny_trainer([]))
    local = dict(key, seed=2)                       # not shipped: trained, then read from the local cache
    modelcache.load_or_train(local, _tiny_trainer([]))
    modelcache.load_or_train(local, _tiny_trainer([]))
    assert log.read_text().split() == [path.name], "only shipped models are logged"
    assert ship._read_models(shipped_dir, tmp_path) == [path], "a shipped model nobody read is dropped"
    log.write_text("")
    with pytest.raises(ship.ShipError, match="read none"):
        ship._read_models(shipped_dir, tmp_path)
    assert other.exists()


def test_shipped_lookup(shipped_dir):
    assert _store.shipped("models/nothing.keras") == (None, None)
    assert _store.manifest() == {}
    path = _ship(shipped_dir, KEY, 0.5)
    assert _store.shipped(f"models/{path.name}") == (path, None)


def test_set_retrain_takes_a_bool():
    with pytest.raises(TypeError, match="retrain"):
        modelcache.set_retrain("no")


# ------------------------------------------------------------------------------ what this repository ships

MANIFEST = _store.manifest()
needs_shipped = pytest.mark.skipif(not MANIFEST, reason="nothing shipped yet (python -m helpers.course ship)")


@needs_shipped
def test_the_shipped_files_are_intact_and_small():
    files = MANIFEST["files"]
    for rel in files:
        path, why = _store.shipped(rel)
        assert path is not None, why
    assert sum(f["bytes"] for f in files.values()) <= 25 * 2**20
    assert all(f"models/{Path(rel).stem}.json" in files for rel in files if rel.endswith(".keras"))


@needs_shipped
def test_the_shipped_models_were_made_by_this_code():
    """Fails when a module that decides the weights changed (code, not prose) since the models were shipped."""
    assert MANIFEST["code_version"] == modelcache.code_version(), (
        f"the code that decides the trained weights changed since the models were shipped (shipped: "
        f"{MANIFEST['code_version']}, now: {modelcache.code_version()}): regenerate them with `{SHIP_COMMAND}`")


#: The course models the lessons load (``"robust"`` and ``"ibp"`` serve the benchmarks only).
LESSON_MODELS = ("standard", "transfer", "fgsm", "pgd")


def test_the_lessons_load_exactly_these_course_models():
    """The kinds named in the code (comments left out) of the notebooks' cells that call ``course_model``."""
    import re

    import nbformat

    used = set()
    for path in sorted(Path(__file__).parents[1].glob("notebooks/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code" and "course_model" in cell.source:
                code = re.sub(r"#.*", "", cell.source)
                used |= {kind for kind in recipes.COURSE_MODELS if f'"{kind}"' in code}
    assert used == set(LESSON_MODELS), used


@needs_shipped
@pytest.mark.parametrize("kind", LESSON_MODELS)
def test_every_course_model_of_the_bundled_data_is_shipped(kind, asked_key):
    """The recipe's key as the notebooks ask for it (no training: the key is caught on its way to the cache)."""
    stem = modelcache.cache_key(**asked_key(lambda: recipes.course_model(_bundled(), kind)))
    assert f"models/{stem}.keras" in MANIFEST["files"], (
        f"the course model {kind!r} of mnist_5k is not shipped for its current recipe: regenerate with "
        f"`{SHIP_COMMAND}`")


_DATASET = []


def _bundled():
    if not _DATASET:
        _DATASET.append(data.load_dataset("mnist_5k"))
    return _DATASET[0]

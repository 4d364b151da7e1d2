"""The evaluations the course ships (``data/shipped/evaluations``): read instead of computed, before the local
cache, said in one line, refused when damaged, never adversarial images, never a live-trained model's, kept in step
with the code (``python -m helpers.course ship --evaluations``).  Fast: a tiny model and made-up outcomes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import _store, evalcache, models
from helpers.course import ship

SHIP_EVALUATIONS = "python -m helpers.course ship --evaluations"


@pytest.fixture
def world(tmp_path, monkeypatch):
    """An empty shipped folder, an empty local cache, nothing said yet."""
    monkeypatch.setattr(_store, "SHIPPED", tmp_path / "shipped")
    monkeypatch.setenv(_store.CACHE_ENV, str(tmp_path / "made"))
    monkeypatch.delenv(evalcache.ENV, raising=False)
    monkeypatch.delenv(_store.SHIPPED_EVALUATIONS_ENV, raising=False)
    monkeypatch.setattr(evalcache, "_said", set())
    return tmp_path


def _model(folder, seed=0, name="m"):
    """A tiny model saved as the ship command finds a trained one: ``.keras`` and its ``.json`` key."""
    folder.mkdir(exist_ok=True)
    model = models.build_model((8, 8, 1), 3, arch="mlp", seed=seed)
    model.save(folder / f"{name}.keras")
    key = {"dataset": "mnist_5k", "recipe": "toy", "epochs": 1}
    (folder / f"{name}.json").write_text(json.dumps({"key": key, "history": {"time": [1.0]}}))
    return model, folder / f"{name}.keras"


X = np.random.default_rng(0).random((6, 8, 8, 1), dtype=np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])


def _evaluate(model, calls, value=True, kind="strong"):
    def compute():
        calls.append(kind)
        return {"right": np.full(len(Y), value)}
    return evalcache.remember(kind, model, (X, Y), {"eps": 0.1}, compute, compress=kind == "adversarial")["right"]


def _ship_one(world, monkeypatch):
    """Evaluate a shipped model (and, in the same cache, adversarial images of it, the outcomes of a model trained
    during the run and of one built from the shipped one), ship what may ship, then point the local cache at an
    empty folder."""
    model, path = _model(world / "trained")
    live, _ = _model(world / "made", seed=1, name="trained-live")   # in the run's cache: trained there
    derived = models.build_model((8, 8, 1), 3, arch="mlp", seed=2)   # built in a cell from the shipped weights
    calls = []
    _evaluate(model, calls)
    _evaluate(model, calls, kind="adversarial")
    _evaluate(live, calls)
    _evaluate(derived, calls)
    made = ship.collect_evaluations(world / "made", [path])
    manifest = ship.write_shipped([path], _store.SHIPPED, fit_unit_seconds=2.0, evaluations=made,
                                  evaluations_fit_unit=0.001)
    monkeypatch.setenv(_store.CACHE_ENV, str(world / "fresh"))
    monkeypatch.setattr(evalcache, "_said", set())
    return model, manifest


def test_a_shipped_evaluation_is_read_not_computed_and_says_so_once(world, monkeypatch, capsys):
    model, manifest = _ship_one(world, monkeypatch)
    assert manifest["evaluations"]["count"] == 2, "neither adversarial images nor a live model's outcomes ship"
    assert [rel.split("/")[0] for rel in manifest["files"]].count("evaluations") == 2
    capsys.readouterr()
    calls = []
    assert _evaluate(model, calls, value=False).all() and not calls, "the shipped outcomes, not a new computation"
    assert _evaluate(model, calls, value=False).all() and not calls
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1, said
    assert said[0].startswith("[evaluation] strong suite, toy, 1 epochs, 6 images: read from data/shipped")
    assert "FU" in said[0] and len(said[0]) <= 140
    assert not list((world / "fresh").glob("evaluations/*")), "a shipped read writes nothing locally"


def test_shipped_comes_before_the_local_cache_and_can_be_switched_off(world, monkeypatch, capsys):
    model, _ = _ship_one(world, monkeypatch)
    monkeypatch.setenv(_store.SHIPPED_EVALUATIONS_ENV, "0")     # what the ship command sets while it re-makes them
    calls = []
    assert not _evaluate(model, calls, value=False).any() and calls == ["strong"]
    assert "computed here" in capsys.readouterr().out
    monkeypatch.delenv(_store.SHIPPED_EVALUATIONS_ENV)
    monkeypatch.setattr(evalcache, "_said", set())
    assert _evaluate(model, calls, value=False).all() and calls == ["strong"], "shipped first: the same everywhere"
    monkeypatch.setattr(_store, "SHIPPED", world / "nothing-shipped")
    monkeypatch.setattr(evalcache, "_said", set())
    assert not _evaluate(model, calls).any() and calls == ["strong"]
    assert capsys.readouterr().out.splitlines()[-1].endswith("read from the local cache")


def test_a_damaged_shipped_evaluation_is_computed_with_a_line_that_says_why(world, monkeypatch, capsys):
    model, manifest = _ship_one(world, monkeypatch)
    for rel in manifest["files"]:
        if rel.startswith("evaluations/"):
            path = _store.SHIPPED / rel
            path.write_bytes(path.read_bytes()[:-1] + b"!")
    capsys.readouterr()
    calls = []
    assert not _evaluate(model, calls, value=False).any() and calls == ["strong"]
    said = capsys.readouterr().out
    assert "does not match its checksum" in said and "computed here instead" in said


def test_every_path_says_one_line_per_kind_and_model(world, monkeypatch, capsys):
    """nbval compares the committed outputs (shipped reads) with CI's and RETRAIN runs (computed or cached): the
    lines differ in words (``notebooks/sanitize.cfg`` normalises them) but never in number."""
    model, _ = _model(world / "trained")
    counts = []
    for _ in range(2):   # computed, then read from the local cache
        monkeypatch.setattr(evalcache, "_said", set())
        _evaluate(model, [])
        _evaluate(model, [])
        _evaluate(model, [], kind="targeted")
        _evaluate(model, [], kind="adversarial")
        counts.append(len(capsys.readouterr().out.splitlines()))
    assert counts == [2, 2]


# ------------------------------------------------------------------------------ what this repository ships

SHIPPED = _store.manifest().get("evaluations")


@pytest.mark.skipif(not SHIPPED or not SHIPPED.get("count"), reason="no evaluation shipped yet")
def test_the_shipped_evaluations_were_made_by_this_code():
    """Fails when a module that decides an evaluation changed (code, not prose) since the evaluations shipped: they
    would silently never be read again, and every notebook would compute them cold."""
    assert SHIPPED["code_version"] == evalcache.code_version(), (
        "the code that decides the evaluations changed since they were shipped: regenerate them with "
        f"`{SHIP_EVALUATIONS}`")

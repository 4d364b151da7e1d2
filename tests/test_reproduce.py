"""CI's proof that the recipes still produce the models the course ships: every shipped model is trained again from
scratch, from the recipe stored beside it (``helpers.course.reproduce``), and compared with the shipped one on the
validation split (never the test images), clean and under PGD, with the paired test: no real difference allowed.
Slow: this is the training the notebooks skip; the retrained models stay in the local cache, where the series that
``pytest --nbval`` then runs with ``RETRAIN`` reads them (``notebooks/conftest.py``).  The fast tests check that
each stored key turns back into the call that asks for exactly that model, so the retraining below trains what
ships and nothing else."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from helpers import _store, modelcache
from helpers.course import cli, reproduce

SHIPPED = reproduce.shipped_models() if _store.manifest() else []
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="nothing shipped yet (python -m helpers.course ship)")
each_shipped = pytest.mark.parametrize("stem, key", SHIPPED, ids=[stem for stem, _ in SHIPPED])


@needs_shipped
@each_shipped
def test_each_stored_key_turns_back_into_the_call_that_asks_for_it(stem, key, asked_key):
    function, kwargs = reproduce.recipe_call(key)
    rate = kwargs.get("learning_rate", 1e-3)   # a schedule must be rebuilt, not passed on as its stored dict
    assert isinstance(rate, (int, float, keras.optimizers.schedules.LearningRateSchedule)), rate
    assert asked_key(lambda: function(reproduce.dataset_of(key), **kwargs)) == key
    assert modelcache.cache_key(**key) == stem


def test_every_recipe_family_is_shipped():
    """Each family ``recipe_call`` knows has a shipped model, so the round trip above covers all three."""
    families = {("adv" if key["recipe"].startswith("adv-") else key["recipe"]) for _, key in SHIPPED}
    assert not SHIPPED or families == set(reproduce._ARGUMENTS)


@needs_shipped
@pytest.mark.parametrize("change, why", [
    ({"recipe": "adv-pgd"}, "none of the course's"),
    ({"recipe": "mixup"}, "none of the course's"),
    ({"dropout": 0.5}, "fields no recipe takes: ['dropout']"),
    ({"data": "0" * 12}, "is not the data this model was trained on"),
])
def test_a_key_that_names_no_recipe_or_other_data_is_refused_by_name(change, why):
    key = dict(SHIPPED[0][1], **change)
    with pytest.raises(reproduce.ReproduceError, match=why.replace("[", r"\[").replace("]", r"\]")):
        function, kwargs = reproduce.recipe_call(key)
        reproduce.dataset_of(key)


def test_a_dropped_common_field_is_named():
    with pytest.raises(reproduce.ReproduceError, match=r"lacks \['seed'\]"):
        reproduce.recipe_call({"recipe": "standard", "dataset": "mnist_5k", "data": "x", "arch": "cnn", "code": "c",
                               "epochs": 1, "batch_size": 8})


def test_same_history_ignores_only_the_epoch_times():
    a = {"loss": [1.0, 0.5], "time": [3.0, 2.0]}
    assert reproduce.same_history(a, {"loss": [1.0, 0.5], "time": [9.0, 9.0]})
    assert not reproduce.same_history(a, {"loss": [1.0, 0.4], "time": [3.0, 2.0]})
    assert not reproduce.same_history(a, {"loss": [1.0, 0.5], "accuracy": [0.1, 0.2], "time": [3.0, 2.0]})


def test_compare_sees_identical_weights_and_a_real_difference(shipped_model, mnist):
    ds = mnist.subset(100, 100, n_val=300)
    same = reproduce.compare(shipped_model, shipped_model, ds, steps=2)
    assert same.identical and not same.differs and same.clean.n == len(ds.x_val)
    broken = keras.models.clone_model(shipped_model)
    broken.set_weights([w * 0 if i == len(shipped_model.weights) - 2 else w
                        for i, w in enumerate(shipped_model.get_weights())])   # the last kernel zeroed: one class
    worse = reproduce.compare(broken, shipped_model, ds, steps=2)
    assert not worse.identical and worse.differs and worse.clean.difference < -0.5


@needs_shipped
def test_every_shipped_model_records_its_op_determinism():
    assert all(isinstance(reproduce.trained_deterministic(stem), bool) for stem, _ in SHIPPED)


@pytest.mark.parametrize("before", (True, False))
@pytest.mark.parametrize("wanted", (True, False))
def test_retrain_trains_under_the_recorded_determinism_and_restores_the_setting(wanted, before, monkeypatch):
    from helpers._private import op_determinism_enabled

    seen = []
    monkeypatch.setattr(reproduce, "recipe_call", lambda key: (lambda ds, **kw: seen.append(op_determinism_enabled()),
                                                              {}))
    monkeypatch.setattr(reproduce, "dataset_of", lambda key: None)
    with reproduce.op_determinism(not before):
        with reproduce.op_determinism(before):
            reproduce.retrain({}, None, deterministic=wanted)
            assert seen == [wanted] and op_determinism_enabled() == before


def test_a_model_without_the_record_is_refused_by_name(tmp_path):
    (tmp_path / "models").mkdir()
    meta = tmp_path / "models" / "m.json"
    meta.write_text('{"key": {}}')
    (tmp_path / _store.MANIFEST).write_text(json.dumps({"files": {"models/m.json": {
        "sha256": _store.file_sha256(meta), "bytes": meta.stat().st_size}}}))
    with pytest.raises(reproduce.ReproduceError, match="does not record whether op determinism was on"):
        reproduce.trained_deterministic("m", tmp_path)


def test_reproduce_names_the_shipped_models_when_none_matches(capsys):
    assert cli.main(["reproduce", "--only", "no-such-model"]) == 1
    assert "no shipped model's name contains 'no-such-model'" in capsys.readouterr().err


@pytest.mark.slow
@needs_shipped
@each_shipped
def test_the_recipe_still_produces_the_shipped_model(stem, key):
    """Trained into the local model cache (``$COURSE_CACHE_DIR`` or ``.cache``), where a series run with ``RETRAIN``
    reads it: the notebooks that ``pytest --nbval`` runs later in the same run (``notebooks/conftest.py``)."""
    fresh, history = reproduce.retrain(key, None, deterministic=reproduce.trained_deterministic(stem))
    shipped, shipped_history = reproduce.load_shipped(stem)
    result = reproduce.compare(fresh, shipped, reproduce.dataset_of(key))
    print(f"{stem}, retrained − shipped on {result.clean.n} validation images: clean {result.clean}; PGD-10 "
          f"{result.pgd}; weights {'identical' if result.identical else 'differ'}")
    assert not result.differs, f"{stem}: the retrained model differs from the shipped one: {result}"
    if result.identical:   # the same weights from the same steps: every figure of the run agrees too
        assert reproduce.same_history(history, shipped_history), f"{stem}: same weights, other training history"
    assert np.isfinite(history["loss"]).all()

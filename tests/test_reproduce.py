"""CI's proof that the recipes still produce the models the course ships: each course model of the bundled data is
trained again from scratch and compared with the shipped one on the validation split (never the test images),
clean and under PGD, with the paired test (McNemar): no real difference allowed.  Slow: this is the training the
notebooks skip (``python -m helpers.course ship`` retrains the whole series, the lessons' own runs included)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import _store, attacks, data, evaluate, modelcache, recipes, report

needs_shipped = pytest.mark.skipif(not _store.manifest(), reason="nothing shipped yet (python -m helpers.course ship)")


def _outcomes(model, ds):
    """Per validation image: right on the clean image, right under PGD-10 at the dataset's standard ε."""
    x, y = ds.x_val, ds.y_val
    clean = evaluate.predict(model, x)[0] == y
    adv = attacks.pgd(model, x, y, data.standard_eps(ds.name), steps=10, seed=0)
    return clean, evaluate.predict(model, adv)[0] == y


@pytest.mark.slow
@needs_shipped
@pytest.mark.parametrize("kind", ("standard", "transfer", "fgsm", "pgd"))   # the ones the lessons load
def test_the_recipe_still_produces_the_shipped_model(kind, tmp_path, monkeypatch):
    ds = data.load_dataset("mnist_5k")
    monkeypatch.setenv(_store.CACHE_ENV, str(tmp_path))
    shipped, _ = recipes.course_model(ds, kind)           # read: shipped first
    fresh, _ = recipes.course_model(ds, kind, retrain=True)  # trained here, now
    same = all(np.array_equal(a, b) for a, b in zip(shipped.get_weights(), fresh.get_weights()))
    for what, a, b in zip(("clean", "PGD-10"), _outcomes(fresh, ds), _outcomes(shipped, ds)):
        diff = report.paired_difference(a, b)
        print(f"{kind} {what} on {len(a)} validation images, retrained − shipped: {diff} "
              f"(weights {'identical' if same else 'differ'})")
        assert diff.p_value >= 0.05, f"{kind}: the retrained model differs from the shipped one ({what}): {diff}"

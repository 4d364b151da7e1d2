"""benchmarks/cold_floor.py adds up the right cells of the committed bench, and fails loudly on a renamed cell."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cold_floor", ROOT / "benchmarks" / "cold_floor.py")
cold_floor = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cold_floor)
TIMES = json.loads((ROOT / "benchmarks" / "results" / "notebook_times.json").read_text())


def test_the_floor_adds_the_training_cells_and_the_warm_import():
    rows, fu = cold_floor.floor(TIMES)
    assert fu == min(TIMES["fu_seconds"])
    assert set(rows) == set(TIMES["results"]["cold"])
    for name, row in rows.items():
        cells = TIMES["results"]["cold"][name]["cells"]
        starts = cold_floor.TRAINING.get(name, [])
        assert (row["train"] > 0) == bool(starts), name
        assert row["train"] + row["import"] <= row["cold"], name        # a part of the notebook, never more
        assert row["strong"] <= row["cold"], name
        assert row["train"] == pytest.approx(sum(s for s, _, src in cells
                                                 if any(src.startswith(st) or st.startswith(src) for st in starts)))
    # 07 trains its three runs in one cell and evaluates strongly in one: both kinds are counted there
    assert rows["07_fast_adversarial_training"]["strong"] > 0 and rows["02_untargeted_attack"]["strong"] == 0


def test_the_report_states_the_series_floor_against_the_limit():
    rows, fu = cold_floor.floor(TIMES)
    text = cold_floor.report(rows, fu)
    series = sum(r["train"] + r["import"] for r in rows.values()) / fu
    assert f"| {series:.1f} | {cold_floor.SERIES_LIMIT} |" in text
    over = [n for n, r in rows.items() if (r["train"] + r["import"]) / fu > cold_floor.LIMITS["cold"]]
    assert text.count("✗ |") == len(over)


def test_a_training_cell_that_is_not_found_fails_loudly():
    times = copy.deepcopy(TIMES)
    cells = times["results"]["cold"]["09_certified_robustness"]["cells"]
    start = cold_floor.TRAINING["09_certified_robustness"][0]
    import nbformat
    nb = nbformat.read(ROOT / "notebooks" / "09_certified_robustness.ipynb", as_version=4)
    times["results"]["cold"]["09_certified_robustness"]["cells"] = [
        c for c in cells if not nb.cells[c[1]].source.startswith(start)]
    with pytest.raises(SystemExit, match="expected one timed cell starting"):
        cold_floor.floor(times)

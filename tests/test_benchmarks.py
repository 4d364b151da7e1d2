"""The robustness report's sanity checks flag what they should (on hand-made results, no training)."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "robustness_report", Path(__file__).resolve().parents[1] / "benchmarks" / "robustness_report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def results(**override):
    res = {"noise": {0.0: 0.97, 0.3: 0.95}, "FGSM": {0.0: 0.97, 0.3: 0.9}, "PGD-20": {0.0: 0.97, 0.3: 0.85},
           "PGD-40×3": {0.0: 0.97, 0.3: 0.84}, "PGD-100×3": {0.3: 0.83}, "transfer PGD-40": {0.0: 0.97, 0.3: 0.9},
           "L2 PGD-40": {2.0: 0.8}, "large ε": {1.0: 0.0},
           "large ε, worst case with the strong suite": {1.0: 0.0}, "strong: worst": {0.3: 0.82},
           "certified": {0.3: 0.0}}
    for k, v in override.items():
        res[k.replace("_", " ")] = v
    return res


def checks(res):
    return {c: ok for _, c, ok, _ in report.sanity_checks("m", res, restarts=3, n=1000)}


def test_a_healthy_evaluation_passes():
    assert all(checks(results()).values())


@pytest.mark.parametrize("override,failing", [
    ({"PGD-100×3": {0.3: 0.86}}, "more steps/restarts never help"),
    ({"PGD-40×3": {0.0: 0.97, 0.3: 0.87}}, "more steps/restarts never help"),
    ({"large ε, worst case with the strong suite": {1.0: 0.05}}, "accuracy 0 at ε = 1"),
    ({"transfer PGD-40": {0.0: 0.97, 0.3: 0.5}}, "white-box ≥ transfer"),
    ({"noise": {0.0: 0.97, 0.3: 0.6}}, "noise weaker than PGD"),
    ({"strong: worst": {0.3: 0.86}}, "strong evaluation ≥ PGD"),
    ({"certified": {0.3: 0.83}}, "certified ≤ strong"),
])
def test_each_violation_is_flagged(override, failing):
    res = results()
    res.update(override)
    got = checks(res)
    assert not got[failing]
    assert all(ok for c, ok in got.items() if c != failing)


def test_a_stalled_pgd_is_reported_but_the_suite_decides():
    res = results()
    res["large ε"] = {1.0: 0.054}  # PGD-100 stalls on a few images that the strong suite does break
    [(_, _, ok, detail)] = [c for c in report.sanity_checks("m", res, restarts=3, n=1000) if c[1].startswith("acc")]
    assert ok and "PGD-100 alone: 0.054" in detail


def test_one_example_of_noise_is_tolerated():
    res = results()
    res["PGD-100×3"] = {0.3: 0.831}  # one example out of 1,000
    assert checks(res)["more steps/restarts never help"]


def _load(name):
    spec_ = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    return module


def test_notebook_times_report_flags_what_is_over_its_limit():
    bench = _load("bench_notebooks")
    cells = [(10.0, 3, "train()"), (1.0, 5, "plot()")]
    res = {"cold": {"01_a": {"seconds": 20.0, "cells": cells, "text": ["x", None]},
                    "02_b": {"seconds": 60.0, "cells": cells, "text": ["y", None]}},
           "warm": {"01_a": {"seconds": 5.0, "cells": cells, "text": ["x", None]},
                    "02_b": {"seconds": 30.0, "cells": cells, "text": ["z", None]}}}
    text = bench.report(res, 2.0, [2.0, 2.1], ["cold", "warm"], "header")
    assert "| 01_a | 20 | 10.0 | 5 | 2.5 |" in text            # 10 FU cold, 2.5 FU warm: within
    assert "| 02_b | 60 | 30.0 ✗ | 30 | 15.0 ✗ |" in text      # 30 FU cold, 15 FU warm: over both limits
    assert "cold: over the limit: 02_b" in text and "cold series: 40 FU (within 120 FU)" in text
    assert "cell 3 `train()` 10.0 s (5.0 FU)" in text
    assert bench.differing_cells(res) == {"01_a": [], "02_b": [0]}


@pytest.mark.parametrize("name", ["robustness_report", "bench_report", "bench_notebooks", "cold_floor"])
def test_loading_a_benchmark_leaves_the_environment_alone(name, monkeypatch):
    """Tests load benchmark modules; a variable they set would reach every notebook kernel that ``pytest --nbval``
    starts later in the same run (``COURSE_EVAL_CACHE=0`` once switched the shipped evaluations off in CI)."""
    monkeypatch.delenv("COURSE_EVAL_CACHE", raising=False)
    before = dict(__import__("os").environ)
    _load(name)
    assert dict(__import__("os").environ) == before

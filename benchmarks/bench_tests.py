"""How long the test suite takes, in seconds and fit units (FU): the quick loop and the whole unit suite.

    python benchmarks/bench_tests.py [--quick] [--out benchmarks/results/test_times.md]

* quick loop: ``pytest -m "not slow" tests`` (CONTRIBUTING.md; goal ≤ 10 FU);
* unit tests: ``pytest tests`` without the execution of the unsolved student notebooks (an integration test of
  the series that ``pytest --nbval`` runs after the notebooks; goal ≤ 40 FU), in one process and on two
  pytest-xdist workers (``-n 2``, CONTRIBUTING.md).

The quick loop runs twice in a temporary model cache (``$COURSE_CACHE_DIR``): first as on a fresh clone, then as a
developer reruns it.  Each runs in a fresh process (wall clock, start-up included); 1 FU (``helpers.course.fitunit``) is measured before and
after, and the smaller is used.  Run it on a quiet machine.  ``--quick``: the two quick-loop runs only (a minute or
two instead of about fifteen).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from helpers.course import build  # noqa: E402  (never imports TensorFlow)

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_notebooks import commit, machine  # noqa: E402

UNIT = ["tests", "--deselect", "tests/test_student_notebooks.py::test_student_version_runs_unsolved"]
RUNS = {
    "quick loop: pytest -m \"not slow\" tests, first run (empty model cache)": (["-m", "not slow", "tests"], 10),
    "quick loop, run again (model and evaluation caches filled)": (["-m", "not slow", "tests"], 10),
    "unit tests: pytest tests (student notebooks deselected)":
        (UNIT, 40),
    "unit tests on two workers: pytest -n 2 tests (pytest-xdist; student notebooks deselected)":
        (["-n", "2", *UNIT], 40),
}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args) -> tuple[float, float, str]:
    """``(wall seconds, CPU seconds, pytest's summary line)``: CPU time is the steadier figure on a busy machine."""
    start, cpu = time.perf_counter(), _child_cpu()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                         capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, _child_cpu() - cpu
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip()[-300:]
    if out.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{out.stdout[-3000:]}")
    return seconds, cpu, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the markdown report here")
    parser.add_argument("--quick", action="store_true", help="only the quick loop (its two runs), not the unit suite")
    parser.add_argument("--serial", action="store_true", help="only the unit suite in one process")
    args = parser.parse_args(argv)
    runs = {name: run_args for name, run_args in RUNS.items()
            if (not args.quick or name.startswith("quick loop")) and (not args.serial or name.startswith("unit tests:"))}
    header = f"Measured on {machine()}; {commit()}."
    print(header, flush=True)
    fus = [build.measure_fit_unit()]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-tests-cache-") as cache:
        os.environ["COURSE_CACHE_DIR"] = cache
        for name, (pytest_args, _) in runs.items():
            results[name] = run(pytest_args)
            print(f"{name}: {results[name][0]:.1f} s, CPU {results[name][1]:.1f} s ({results[name][2]})", flush=True)
    fus.append(build.measure_fit_unit())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    fu = min(fus)
    lines = ["# Test suite run times", "", header, "",
             f"1 FU = **{fu:.2f} s** (before and after: " + ", ".join(f"{v:.2f} s" for v in fus) +
             f"); load average {load:.2f} at the end.", "",
             "| run | seconds | FU | goal | CPU seconds | pytest says |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for name, (seconds, cpu, summary) in results.items():
        goal = RUNS[name][1]
        mark = "" if seconds / fu <= goal else " ✗"
        lines.append(f"| {name} | {seconds:.0f} | {seconds / fu:.1f}{mark} | ≤ {goal} | {cpu:.0f} | {summary} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

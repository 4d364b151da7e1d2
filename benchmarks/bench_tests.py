"""How long the test suite takes, in seconds and fit units (FU): the quick loop and the whole unit suite.

    python benchmarks/bench_tests.py [--out benchmarks/results/test_times.md]

* quick loop: ``pytest -m "not slow" tests`` (CONTRIBUTING.md; goal ≤ 10 FU);
* unit tests: ``pytest tests`` without the execution of the unsolved student notebooks (an integration test of
  the series that ``pytest --nbval`` runs after the notebooks; goal ≤ 40 FU), in one process and on two
  pytest-xdist workers (``-n 2``, CONTRIBUTING.md).

The quick loop runs twice in a temporary model cache (``$COURSE_CACHE_DIR``): first as on a fresh clone, then as a
developer reruns it.  Each runs in a fresh process (wall clock, start-up included); 1 FU (``helpers.course.fitunit``) is measured before and
after, and the smaller is used.  Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
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
    "quick loop: pytest -m \"not slow\" tests, first run (trains the test model)": (["-m", "not slow", "tests"], 10),
    "quick loop, run again (the test model from the cache)": (["-m", "not slow", "tests"], 10),
    "unit tests: pytest tests (student notebooks deselected)":
        (UNIT, 40),
    "unit tests on two workers: pytest -n 2 tests (pytest-xdist; student notebooks deselected)":
        (["-n", "2", *UNIT], 40),
}


def run(args) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip()[-300:]
    if out.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{out.stdout[-3000:]}")
    return seconds, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the markdown report here")
    args = parser.parse_args(argv)
    header = f"Measured on {machine()}; {commit()}."
    print(header, flush=True)
    fus = [build.measure_fit_unit()]
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-tests-cache-") as cache:
        os.environ["COURSE_CACHE_DIR"] = cache
        for name, (pytest_args, _) in RUNS.items():
            results[name] = run(pytest_args)
            print(f"{name}: {results[name][0]:.1f} s ({results[name][1]})", flush=True)
    fus.append(build.measure_fit_unit())
    fu = min(fus)
    lines = ["# Test suite run times", "", header, "",
             f"1 FU = **{fu:.2f} s** (before and after: " + ", ".join(f"{v:.2f} s" for v in fus) + ").", "",
             "| run | seconds | FU | goal | pytest says |", "| --- | ---: | ---: | ---: | --- |"]
    for name, (seconds, summary) in results.items():
        goal = RUNS[name][1]
        mark = "" if seconds / fu <= goal else " ✗"
        lines.append(f"| {name} | {seconds:.0f} | {seconds / fu:.1f}{mark} | ≤ {goal} | {summary} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

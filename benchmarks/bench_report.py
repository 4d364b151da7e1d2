"""Cost of ``evaluate.robustness_report`` against ``evaluate.strong_accuracy`` alone (issue 30, done-means 6).

Run: ``COURSE_CACHE_DIR=... python benchmarks/bench_report.py [--n 1000] [--eps 0.3] [--rounds 1]``.
The course's PGD-trained model (``recipes.course_model(ds, "pgd")``, trained on first use) on the first ``n``
``mnist_5k`` test images.  Each measurement runs in a fresh Python process, as a user's would: it loads the model,
then times one call of ``strong_accuracy`` alone, or one call of the whole report (compiling its graphs included),
with the evaluation cache off (``COURSE_EVAL_CACHE=0``: every attack is computed).  ``--rounds`` alternates the
two (strong, report, strong, report, ...) so that a change in the machine's load hits both; the fit unit
(``helpers.course.fitunit.fit_unit``) is measured after them, in this process.  Prints each time, the ratio of the
medians (goal: at most 1.5) and the times in FU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

if __name__ == "__main__":  # run as a script (its children too), not when a test loads it
    os.environ["COURSE_EVAL_CACHE"] = "0"  # measure: compute every evaluation


def measure(what: str, n: int, eps: float) -> dict:
    """In this process: load the model, time ``what`` ("strong" or "report") once, return its figures."""
    from helpers import data, evaluate, models, recipes

    ds = data.load_dataset("mnist_5k")
    models.seed_everything(0)
    model, _ = recipes.course_model(ds, "pgd")
    x, y = ds.x_test[:n], ds.y_test[:n]
    start = time.perf_counter()
    if what == "strong":
        worst, stages = evaluate.strong_accuracy(model, x, y, eps)["worst"], {}
    else:
        rep = evaluate.robustness_report(model, x, y, eps)
        worst, stages = rep.accuracy("worst case"), rep.timings
        print(rep, file=sys.stderr)
    return {"seconds": time.perf_counter() - start, "worst": worst, "stages": stages}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", choices=("strong", "report"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.n, args.eps)))
        return 0
    runs = {"strong": [], "report": []}
    for r in range(args.rounds):
        for what in ("strong", "report"):
            out = subprocess.run([sys.executable, __file__, "--child", what, "--n", str(args.n), "--eps",
                                  str(args.eps)], check=True, capture_output=True, text=True)
            runs[what].append(json.loads(out.stdout.strip().splitlines()[-1]))
            if what == "report" and r == 0:
                print(out.stderr.strip().split("Robustness report", 1)[-1].join(("Robustness report", "")))
            print(f"round {r + 1}: {what:6s} {runs[what][-1]['seconds']:.1f} s", flush=True)
    from helpers.course.fitunit import fit_unit

    fu = fit_unit()
    t_strong = statistics.median(r["seconds"] for r in runs["strong"])
    t_report = statistics.median(r["seconds"] for r in runs["report"])
    equal = all(s["worst"] == r["worst"] for s, r in zip(runs["strong"], runs["report"]))
    print(f"\nmodel: course 'pgd' on {args.n} mnist_5k test images, L∞ ε = {args.eps}; {args.rounds} round(s), "
          "each call in a fresh process (compiling included), evaluation cache off")
    print(f"strong_accuracy alone: {t_strong:.1f} s = {t_strong / fu:.1f} FU (worst case {runs['strong'][0]['worst']:.1%})")
    print(f"robustness_report:     {t_report:.1f} s = {t_report / fu:.1f} FU (worst case "
          f"{runs['report'][0]['worst']:.1%}; equal to strong_accuracy's in every round: {equal})")
    print(f"ratio report / strong: {t_report / t_strong:.2f} (goal ≤ 1.5)")
    print(f"fit unit: {fu:.2f} s")
    for r in runs["report"]:
        print("report stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items()))
        strong_stage = next(v for k, v in r["stages"].items() if k.startswith("strong suite"))
        print(f"  report / its own strong-suite stage (same process, same load): {r['seconds'] / strong_stage:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

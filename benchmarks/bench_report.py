"""Cost of ``evaluate.robustness_report`` against ``evaluate.strong_accuracy`` alone (issue 30, done-means 6).

Run: ``COURSE_CACHE_DIR=... python benchmarks/bench_report.py [--n 1000] [--eps 0.3] [--order strong-first]``.
The course's PGD-trained model (``recipes.course_model(ds, "pgd")``, trained on first use) on its first ``n``
``mnist_5k`` test images: one run of ``strong_accuracy`` alone, then one of the whole report (or the other way
round), both with the evaluation cache off (``COURSE_EVAL_CACHE=0``: every attack is computed), then the fit unit
(``helpers.course.fitunit.fit_unit``) measured in the same process.  Prints both times, their ratio (goal: at most
1.5) and the times in FU.  The first call of each compiles its graphs: both pay that once, as a user would.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ["COURSE_EVAL_CACHE"] = "0"  # measure: compute every evaluation

from helpers import _quiet  # noqa: F401,E402
from helpers import data, evaluate, models, recipes  # noqa: E402
from helpers.course.fitunit import fit_unit  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--order", choices=("strong-first", "report-first"), default="strong-first")
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    models.seed_everything(0)
    model, _ = recipes.course_model(ds, "pgd")
    x, y = ds.x_test[:args.n], ds.y_test[:args.n]

    def strong():
        start = time.perf_counter()
        result = evaluate.strong_accuracy(model, x, y, args.eps)
        return time.perf_counter() - start, result["worst"]

    def whole():
        start = time.perf_counter()
        result = evaluate.robustness_report(model, x, y, args.eps)
        return time.perf_counter() - start, result

    if args.order == "strong-first":
        (t_strong, worst), (t_report, rep) = strong(), whole()
    else:
        (t_report, rep), (t_strong, worst) = whole(), strong()
    fu = fit_unit()
    print(rep)
    print(f"\nmodel: course 'pgd' on {len(x)} mnist_5k test images, L∞ ε = {args.eps}, order {args.order}")
    print(f"strong_accuracy alone: {t_strong:.1f} s = {t_strong / fu:.1f} FU (worst case {worst:.1%})")
    print(f"robustness_report:     {t_report:.1f} s = {t_report / fu:.1f} FU (worst case "
          f"{rep.accuracy('worst case'):.1%}, equal: {rep.accuracy('worst case') == worst})")
    print(f"ratio report / strong: {t_report / t_strong:.2f} (goal ≤ 1.5)")
    print(f"fit unit: {fu:.2f} s")
    print("report stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in rep.timings.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Robustness report: every course model against noise, FGSM, PGD-20/40/100 with restarts and L2 PGD, over ε grids.

Run: ``python benchmarks/robustness_report.py [--dataset mnist_5k] [--n 500] [--restarts 5] [--out DIR]``.
Models come from the model cache (``.cache/models``) or are trained on first use: the course's ``standard``,
``fgsm``, ``pgd``, ``robust`` and ``ibp`` recipes (``helpers.recipes.course_model``); the ``transfer`` model (standard
recipe, another seed) is the source of the transfer attack.  Writes ``DIR/robustness.md`` (a summary table at the
dataset's standard ε and the full ε grids) and ``DIR/robustness.png`` (accuracy-vs-ε curves, L∞ and L2), then
asserts the sanity checks of a trustworthy evaluation and exits non-zero if one fails:

1. more steps and restarts never help the model: PGD-100×R ≤ PGD-40×R ≤ PGD-20 (at every ε, within one example);
2. accuracy reaches 0 at a large budget (ε = 1 in L∞ lets the attacker paint any image): the worst case per image
   over PGD-100 and the strong suite is 0 (the detail also prints PGD-100 alone: a cross-entropy attack that stalls
   there while the suite succeeds is a sign of vanishing gradients — seen on the IBP-trained model);
3. white-box is at least as strong as transfer: PGD-40×R on the model itself ≤ PGD-40 transferred from another
   model;
4. noise is far weaker than the attacks: accuracy under uniform noise ≥ accuracy under PGD-20;
5. the AutoAttack-grade evaluation (``evaluate.strong_accuracy``: APGD-CE, APGD-DLR, Square, worst case per image)
   at the standard ε is at least as strong as PGD-40×R;
6. what is proved is not more than what survives: certified accuracy (``helpers.certify``) ≤ strong accuracy.
Run time on 2 CPU cores: 10.6 minutes measured for the defaults (500 test images, 5 restarts) with the course models
in the cache, 19.3 minutes training them first (with another job running); ``--n 200 --restarts 2``
for a quick look.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # run as a script (not when a test loads it: notebook kernels would inherit it)
    os.environ.setdefault("COURSE_EVAL_CACHE", "0")  # benchmarks measure: compute every evaluation (helpers.evalcache)
from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
from helpers import attacks, certify, data, evaluate, models, recipes

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from helpers import plots  # noqa: E402

MODELS = ("standard", "fgsm", "pgd", "robust", "ibp")
#: L∞ grid as fractions of the dataset's standard ε (0.3 on MNIST: 0, 0.05, …, 0.3, 0.4, 0.5).
LINF_GRID = (0.0, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1.0, 4 / 3, 5 / 3)
#: L2 grid for 28×28 images (scaled by sqrt(pixels / 784) for other sizes); 2.0 is the usual MNIST L2 budget.
L2_GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
TOL = 1  # examples: "never helps" allows a tie broken by one example of floating-point noise


def evaluate_model(name, model, transfer_model, x, y, eps_std, restarts, seed):
    """All figures for one model: {attack: {eps: accuracy}}."""
    acc = lambda xa: evaluate.accuracy(model, xa, y)  # noqa: E731
    res = {k: {} for k in ("noise", "FGSM", "PGD-20", f"PGD-40×{restarts}", f"PGD-100×{restarts}",
                           "transfer PGD-40", "L2 PGD-40")}
    for frac in LINF_GRID:
        e = round(frac * eps_std, 6)
        res["noise"][e] = acc(attacks.random_noise(x, e, seed=seed))
        res["FGSM"][e] = acc(attacks.fgsm(model, x, y, e))
        res["PGD-20"][e] = acc(attacks.pgd(model, x, y, e, steps=20, seed=seed))
        res[f"PGD-40×{restarts}"][e] = acc(attacks.pgd(model, x, y, e, steps=40, restarts=restarts, seed=seed))
        res["transfer PGD-40"][e] = acc(attacks.pgd(transfer_model, x, y, e, steps=40, seed=seed))
        if frac in (1 / 2, 1.0, 5 / 3):  # the expensive one on fewer points
            res[f"PGD-100×{restarts}"][e] = acc(attacks.pgd(model, x, y, e, steps=100, restarts=restarts,
                                                            seed=seed))
    scale = np.sqrt(np.prod(x.shape[1:]) / 784.0)
    for e2 in L2_GRID:
        e = round(e2 * scale, 6)
        res["L2 PGD-40"][e] = acc(attacks.pgd(model, x, y, e, steps=40, norm="l2", seed=seed))
    # The large-budget check: at ε = 1 (L∞) every image can be replaced by any other.
    pgd_held = evaluate.predict(model, attacks.pgd(model, x, y, 1.0, steps=100, step_size=0.05, seed=seed))[0] == y
    res["large ε"] = {1.0: float(np.mean(pgd_held))}
    worst = pgd_held & evaluate.strong_robust(model, x, y, 1.0, seed=seed)["worst"]
    res["large ε, worst case with the strong suite"] = {1.0: float(np.mean(worst))}
    e = round(eps_std, 6)
    strong = evaluate.strong_accuracy(model, x, y, e, seed=seed)
    for k in ("apgd-ce", "apgd-dlr", "square", "worst"):
        res[f"strong: {k}"] = {e: strong[k]}
    res["certified"] = {e: certify.certified_accuracy(model, x, y, e)}
    return res


def sanity_checks(name, res, restarts, n):
    """Return a list of (check, passed, detail)."""
    tol = TOL / n
    p20, p40, p100 = res["PGD-20"], res[f"PGD-40×{restarts}"], res[f"PGD-100×{restarts}"]
    out = []
    worse = [e for e in p40 if p40[e] > p20[e] + tol] + [e for e in p100 if p100[e] > p40[e] + tol]
    out.append(("more steps/restarts never help", not worse, f"violations at ε = {worse}" if worse else
                "PGD-100 ≤ PGD-40 ≤ PGD-20 everywhere"))
    big, pgd_big = res["large ε, worst case with the strong suite"][1.0], res["large ε"][1.0]
    out.append(("accuracy 0 at ε = 1", big == 0.0, f"worst case {big:.3f} at ε = 1 (PGD-100 alone: {pgd_big:.3f})"))
    tr = res["transfer PGD-40"]
    bad = [e for e in tr if e > 0 and p40[e] > tr[e] + tol]
    out.append(("white-box ≥ transfer", not bad, f"violations at ε = {bad}" if bad else
                "white-box accuracy ≤ transfer accuracy everywhere"))
    noisy = [e for e in p20 if e > 0 and res["noise"][e] + tol < p20[e]]
    out.append(("noise weaker than PGD", not noisy, f"violations at ε = {noisy}" if noisy else
                "noise accuracy ≥ PGD-20 accuracy everywhere"))
    (e, worst), = res["strong: worst"].items()
    out.append(("strong evaluation ≥ PGD", worst <= p40[e] + tol,
                f"worst case {worst:.3f} vs PGD-40×{restarts} {p40[e]:.3f} at ε = {e:g}"))
    cert = res["certified"][e]
    out.append(("certified ≤ strong", cert <= worst, f"certified {cert:.3f} vs worst case {worst:.3f}"))
    return [(name, *c) for c in out]


def markdown(results, eps_std, restarts, n, ds_name, checks, seconds):
    lines = [f"# Robustness report: `{ds_name}`, {n} test images", "",
             f"Generated by `benchmarks/robustness_report.py` in {seconds / 60:.1f} min. Accuracy (higher = more "
             f"robust). PGD: L∞ with random start, step 2.5·ε/steps; ×{restarts} = best of {restarts} restarts per "
             "example. APGD-CE, APGD-DLR (100 steps), Square (1,000 queries) and the "
             "worst case per image over the three: `evaluate.strong_accuracy`. Certified: proved correct by interval "
             "bounds (`helpers.certify`). Transfer: PGD-40 computed on an independently "
             "trained standard model, applied to the row's model. Noise: uniform in the ε-ball.", "",
             f"## At the standard budget ε = {eps_std:.4g} (L∞) and ε = {L2_GRID[3]:g}·√(pixels/784) (L2)", ""]
    cols = ["clean", "noise", "FGSM", "PGD-20", f"PGD-40×{restarts}", f"PGD-100×{restarts}", "APGD-CE",
            "APGD-DLR", "Square", "worst case", "certified", "transfer PGD-40", "L2 PGD-40"]
    lines.append("| model | " + " | ".join(cols) + " |")
    lines.append("| --- |" + " ---: |" * len(cols))
    for name, res in results.items():
        e = round(eps_std, 6)
        l2 = sorted(res["L2 PGD-40"])[3]
        vals = [res["PGD-20"][0.0], res["noise"][e], res["FGSM"][e], res["PGD-20"][e], res[f"PGD-40×{restarts}"][e],
                res[f"PGD-100×{restarts}"][e], *(res[f"strong: {k}"][e] for k in ("apgd-ce", "apgd-dlr", "square",
                "worst")), res["certified"][e], res["transfer PGD-40"][e], res["L2 PGD-40"][l2]]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    lines += ["", "## Sanity checks", "", "| model | check | passed | detail |", "| --- | --- | --- | --- |"]
    lines += [f"| {m} | {c} | {'yes' if ok else '**NO**'} | {d} |" for m, c, ok, d in checks]
    for name, res in results.items():
        lines += ["", f"## `{name}` over the ε grids", ""]
        for attack, curve in res.items():
            pts = ", ".join(f"{e:.3g}: {v:.3f}" for e, v in sorted(curve.items()))
            lines.append(f"- {attack}: {pts}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist_5k")
    parser.add_argument("--n", type=int, default=500, help="test images (the first n)")
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results")))
    args = parser.parse_args(argv)

    start = time.perf_counter()
    ds = data.load_dataset(args.dataset)
    eps_std = data.standard_eps(args.dataset)
    x, y = ds.x_test[:args.n], ds.y_test[:args.n]
    models.seed_everything(args.seed)
    transfer_model, _ = recipes.course_model(ds, "transfer", seed=args.seed)
    results, checks = {}, []
    for name in args.models:
        model, _ = recipes.course_model(ds, name, seed=args.seed)
        t = time.perf_counter()
        results[name] = evaluate_model(name, model, transfer_model, x, y, eps_std, args.restarts, args.seed)
        checks += sanity_checks(name, results[name], args.restarts, len(x))
        e = round(eps_std, 6)
        print(f"{name:9s} clean {results[name]['PGD-20'][0.0]:.3f}  PGD-40×{args.restarts} "
              f"{results[name][f'PGD-40×{args.restarts}'][e]:.3f}  PGD-100×{args.restarts} "
              f"{results[name][f'PGD-100×{args.restarts}'][e]:.3f}  ({time.perf_counter() - t:.0f} s)", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seconds = time.perf_counter() - start
    (out / "robustness.md").write_text(markdown(results, eps_std, args.restarts, len(x), args.dataset, checks,
                                                seconds), encoding="utf-8")
    plots.use_course_style()
    fig, axes = plt.subplots(len(results), 2, figsize=(11, 3.6 * len(results)), squeeze=False)
    for row, (name, res) in zip(axes, results.items()):
        linf = {k: v for k, v in res.items() if not k.startswith(("L2", "strong", "large ε")) and k != "certified"}
        plots.plot_accuracy_vs_eps(linf, ax=row[0], title=f"{name}: L∞ attacks", chance=0.1)
        l2 = {k: v for k, v in res.items() if k.startswith("L2")}
        plots.plot_accuracy_vs_eps(l2, ax=row[1], title=f"{name}: L2 attack", chance=0.1,
                                   xlabel="ε (L2 norm of the perturbation)")
    fig.tight_layout()
    fig.savefig(out / "robustness.png", dpi=80)
    print(f"wrote {out / 'robustness.md'} and {out / 'robustness.png'} ({seconds / 60:.1f} min)")
    failed = [c for c in checks if not c[2]]
    for m, c, _, d in failed:
        print(f"SANITY CHECK FAILED: {m}: {c}: {d}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The floor under a cold run: what the series' training cells and imports alone cost, against issue 17's limits.

    python benchmarks/cold_floor.py [--times benchmarks/results/notebook_times.json] [--out FILE]

It reads the per-cell times ``bench_notebooks.py`` measured (no TensorFlow here, nothing is run) and adds up, per
notebook and for the series, only two kinds of cell that a lesson cannot do without:

* **training cells**: the cells in ``TRAINING`` below, which do nothing but train (or load) the models a lesson
  is about, with the recipes chosen on the validation split (``benchmarks/results/recipe_choice.md``,
  ``overfitting_search.md``).  Cells that train *and* evaluate (05's exercise runs, 06's transfer source, 07's
  early-stopping run) are left out, so the floor is an underestimate;
* **the import cell** (``from helpers import ...``), at its *warm* time: every kernel imports TensorFlow.

Everything else (every attack, every evaluation, every plot and exercise) must fit in what the limits leave.
Each training cell is found by the start of its source, and checked against the committed notebook at the
recorded index, so a renumbered notebook fails loudly instead of being misread.

``--measure`` also checks that the training cells are not slow for want of engineering: it times steady-state
epochs (the first, which traces, dropped; best of the rest) of the course's adversarial training steps against an
epoch of Keras' own ``fit`` of the same CNN (one forward+backward pass per image, as in the fit unit), in one
process.  An attack step back to the input costs about one such pass, so an epoch of FGSM training is worth about
2 fit epochs and one of PGD-k training about k + 1 when the steps run as fast as ``fit`` itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_notebooks import LIMITS, SERIES_LIMIT, commit, machine  # noqa: E402

#: notebook -> the starts of its training-only cells (what each trains, in the comment).
TRAINING = {
    "01_train_classifier": ['model, history = recipes.course_model(ds, "standard"'],            # standard CNN
    "05_adversarial_training": ['std_model, std_hist = recipes.course_model(ds, "standard"'],    # FGSM and PGD models
    "07_fast_adversarial_training": ["def recipe(attack, epochs"],                             # FGSM, FGSM-RS, PGD-7
    "09_certified_robustness": ["ibp_model, ibp_hist = recipes.ibp_model("],                    # IBP, 40 epochs
}
IMPORT = "from helpers import"
STRONG = "strong_robust("   # the course's strongest evaluation (APGD-CE, APGD-DLR, Square), for the report only


def find(cells, nb, start: str, name: str):
    """The ``(seconds, index)`` of the one timed cell whose source starts with ``start``; checked in ``nb``."""
    hits = [(s, i) for s, i, _ in cells if nb.cells[i].source.lstrip().startswith(start)]
    if len(hits) != 1:
        raise SystemExit(f"{name}: expected one timed cell starting {start!r}, found {len(hits)}; update TRAINING")
    return hits[0]


def floor(times: dict) -> tuple[dict, float]:
    """Per notebook: measured cold seconds, training seconds, import seconds (warm), strong-evaluation seconds."""
    rows = {}
    for name, cold in times["results"]["cold"].items():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        train = sum(find(cold["cells"], nb, start, name)[0] for start in TRAINING.get(name, []))
        imports = find(times["results"]["warm"][name]["cells"], nb, IMPORT, name)[0]
        strong = sum(s for s, i, _ in cold["cells"] if STRONG in nb.cells[i].source)
        rows[name] = {"cold": cold["seconds"], "train": train, "import": imports, "strong": strong}
    return rows, min(times["fu_seconds"])


def report(rows: dict, fu: float) -> str:
    lines = [f"reads `notebook_times.json`, where 1 FU = {fu:.2f} s.", "",
             "| notebook | measured cold FU | training cells FU | import (warm) FU | floor FU | limit | left for "
             "everything else | strongest evaluation took |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    total = {k: 0.0 for k in ("cold", "train", "import", "strong")}
    for name, r in rows.items():
        base = (r["train"] + r["import"]) / fu
        over = " ✗" if base > LIMITS["cold"] else ""
        lines.append(f"| {name} | {r['cold'] / fu:.1f} | {r['train'] / fu:.1f} | {r['import'] / fu:.1f} | "
                     f"{base:.1f}{over} | {LIMITS['cold']} | {LIMITS['cold'] - base:.1f} | {r['strong'] / fu:.1f} |")
        for k in total:
            total[k] += r[k]
    base = (total["train"] + total["import"]) / fu
    lines.append(f"| **series** | {total['cold'] / fu:.0f} | {total['train'] / fu:.1f} | {total['import'] / fu:.1f} | "
                 f"{base:.1f} | {SERIES_LIMIT} | {SERIES_LIMIT - base:.1f} | {total['strong'] / fu:.1f} |")
    lines += ["", f"Training cells and imports alone: {base:.0f} of the series' {SERIES_LIMIT} FU, leaving "
              f"{SERIES_LIMIT - base:.0f} FU for every other cell of ten notebooks, which took "
              f"{(total['cold'] - total['train'] - total['import']) / fu:.0f} FU (the strongest evaluation alone "
              f"{total['strong'] / fu:.0f} FU). ✗: the floor alone is over the notebook's cold limit."]
    return "\n".join(lines) + "\n"


def measure(epochs: int = 3) -> str:
    """Steady-state seconds per epoch: Keras' ``fit`` of the course CNN and the course's adversarial steps."""
    from helpers import data, models, training  # importable: bench_notebooks put the repository on sys.path

    ds = data.load_dataset("mnist_5k")
    models.seed_everything(0)
    timer = models.EpochTimer

    def plain():
        model = models.compile_model(models.build_model(ds.input_shape, ds.num_classes, seed=0))
        t = timer()
        model.fit(ds.x_train, ds.y_train, epochs=epochs, batch_size=128, verbose=0, callbacks=[t])
        return t

    def adversarial(**kw):
        model, t = models.build_model(ds.input_shape, ds.num_classes, seed=0), timer()
        training.adversarial_train(model, ds.x_train, ds.y_train, eps=0.3, epochs=epochs, mode="adversarial",
                                   eps_warmup=0, callbacks=[t], **kw)
        return t

    runs = {"Keras fit, batch 128 (the fit unit's epoch)": (plain, {}, 1),
            "FGSM training, adversarial only, batch 100 (07)": (adversarial, dict(attack="fgsm", batch_size=100), 2),
            "PGD-4 training, adversarial only, batch 64 (the \"pgd\" recipe)":
                (adversarial, dict(attack="pgd", attack_kwargs={"steps": 4}, batch_size=64), 5)}
    lines = ["| training | steady epoch s | in fit epochs | passes per image (nominal) |", "| --- | ---: | ---: | ---: |"]
    base = None
    for name, (fn, kw, passes) in runs.items():
        seconds = min(fn(**kw).times[1:])
        base = base or seconds
        lines.append(f"| {name} | {seconds:.2f} | {seconds / base:.2f} | {passes} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", default=ROOT / "benchmarks" / "results" / "notebook_times.json", type=Path)
    parser.add_argument("--out", type=Path, help="also write the report (markdown) here")
    parser.add_argument("--measure", action="store_true", help="also time the training steps against Keras' fit")
    args = parser.parse_args(argv)
    text = report(*floor(json.loads(args.times.read_text())))
    text = "# The floor under a cold run (issue 17)\n\n`python benchmarks/cold_floor.py` " + text
    if args.measure:
        text += (f"\nSteady-state epochs (`--measure`), measured on {machine()}; {commit()}:\n\n" + measure())
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

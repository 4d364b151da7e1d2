"""Find, on the validation split, a single-step training run that overfits catastrophically (notebook 08).

Run: ``python benchmarks/overfitting_search.py [--candidates NAME ...] [--cache DIR]``.  Every candidate is one
run of notebook 07's recipe (``recipes.adversarial_model``: adversarial examples only, batch 100, one-cycle learning
rate, seed 0, PGD-10 on the first 200 validation images after every epoch) on ``mnist_5k``; only the validation
curves are read, never a test image.  A run *collapses* (``training.find_collapse``) when its validation PGD-10 accuracy first
holds a real level (≥ 0.3 for at least two epochs) and then falls by ≥ 0.2 within at most two epochs, while its
accuracy under its own training attack stays high (≥ 0.7 on the training batches).  The script prints each
candidate's curves and verdict, then a Markdown table and the runs notebook 08 starts from (``choose``): the
collapsing candidate with the fewest epochs, and the best non-collapsing candidate at the same ε, epochs and cost.
Training times are the per-epoch times recorded when a run was trained (cached runs are not retrained).  Output: ``benchmarks/results/
overfitting_search.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

if __name__ == "__main__":  # run as a script (not when a test loads it: notebook kernels would inherit it)
    os.environ.setdefault("COURSE_EVAL_CACHE", "0")  # benchmarks measure: compute every evaluation (helpers.evalcache)
from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)

from helpers import data, models, recipes, schedules, training

N_VAL = 200
BATCH = 100

#: name -> (description, eps, attack, epochs, peak learning rate, extra keyword arguments)
CANDIDATES = {
    "fgsm_e03_lr1e-2": ("FGSM, ε 0.3, 16 epochs, peak 1e-2", 0.3, "fgsm", 16, 1e-2, {}),
    "rs2_e03_lr3e-2": ("FGSM-RS α 2ε, ε 0.3, 16 epochs, peak 3e-2", 0.3, "fgsm_rs", 16, 3e-2, {"step_size": 0.6}),
    "rs125_e03_lr3e-2": ("FGSM-RS α 1.25ε, ε 0.3, 16 epochs, peak 3e-2", 0.3, "fgsm_rs", 16, 3e-2, {}),
    "rs2_e035_lr1e-2": ("FGSM-RS α 2ε, ε 0.35, 16 epochs, peak 1e-2", 0.35, "fgsm_rs", 16, 1e-2, {"step_size": 0.7}),
    "rs2_e04_lr1e-2": ("FGSM-RS α 2ε, ε 0.4, 16 epochs, peak 1e-2", 0.4, "fgsm_rs", 16, 1e-2, {"step_size": 0.8}),
    "rs2_e03_lr5e-2": ("FGSM-RS α 2ε, ε 0.3, 16 epochs, peak 5e-2", 0.3, "fgsm_rs", 16, 5e-2, {"step_size": 0.6}),
    "rs2_e03_lr3e-2_e24": ("FGSM-RS α 2ε, ε 0.3, 24 epochs, peak 3e-2", 0.3, "fgsm_rs", 24, 3e-2,
                           {"step_size": 0.6}),
    "fgsm_e03_lr3e-2": ("FGSM, ε 0.3, 16 epochs, peak 3e-2", 0.3, "fgsm", 16, 3e-2, {}),
    "rs2_e03_wide_lr1e-2": ("FGSM-RS α 2ε, ε 0.3, 16 epochs, peak 1e-2, wide CNN", 0.3, "fgsm_rs", 16, 1e-2,
                            {"step_size": 0.6, "arch": "cnn_wide"}),
    "rs125_e03_lr3e-2_e24": ("FGSM-RS α 1.25ε, ε 0.3, 24 epochs, peak 3e-2", 0.3, "fgsm_rs", 24, 3e-2, {}),
    "rs2_e03_lr3e-2_e32": ("FGSM-RS α 2ε, ε 0.3, 32 epochs, peak 3e-2", 0.3, "fgsm_rs", 32, 3e-2,
                           {"step_size": 0.6}),
    "rs2_e035_lr3e-2": ("FGSM-RS α 2ε, ε 0.35, 16 epochs, peak 3e-2", 0.35, "fgsm_rs", 16, 3e-2,
                        {"step_size": 0.7}),
    "rs125_e04_lr3e-2": ("FGSM-RS α 1.25ε, ε 0.4, 16 epochs, peak 3e-2", 0.4, "fgsm_rs", 16, 3e-2, {}),
    "fgsm_e02_lr3e-2": ("FGSM, ε 0.2, 16 epochs, peak 3e-2", 0.2, "fgsm", 16, 3e-2, {}),
    "rs125_e03_lr1e-2": ("FGSM-RS α 1.25ε, ε 0.3, 16 epochs, peak 1e-2 (07's main run)", 0.3, "fgsm_rs", 16, 1e-2,
                         {}),
    "rs125_e04_lr1e-2": ("FGSM-RS α 1.25ε, ε 0.4, 16 epochs, peak 1e-2", 0.4, "fgsm_rs", 16, 1e-2, {}),
    "rs1_e04_lr3e-2": ("FGSM-RS α ε, ε 0.4, 16 epochs, peak 3e-2", 0.4, "fgsm_rs", 16, 3e-2, {"step_size": 0.4}),
    "rs2_e03_lr3e-2_b50": ("FGSM-RS α 2ε, ε 0.3, 16 epochs, peak 3e-2, batch 50", 0.3, "fgsm_rs", 16, 3e-2,
                           {"step_size": 0.6, "batch_size": 50}),
}


def run(ds, name, cache):
    """``(history, seconds)`` of candidate ``name`` (notebook 07's recipe); the history holds per-epoch ``time``."""
    _, eps, attack, epochs, peak, extra = CANDIDATES[name]
    extra = dict(extra)
    arch = extra.pop("arch", "cnn")
    batch = extra.pop("batch_size", BATCH)
    models.seed_everything(0)
    start = time.perf_counter()
    _, h = recipes.adversarial_model(
        ds, attack=attack, eps=eps, epochs=epochs, batch_size=batch, mode="adversarial", seed=0, arch=arch,
        learning_rate=schedules.cyclic(peak, epochs * schedules.steps_per_epoch(len(ds.x_train), batch)),
        validation_size=N_VAL, validation_attack="pgd", validation_attack_kwargs={"steps": 10},
        attack_kwargs=extra or None, directory=cache)
    return h, time.perf_counter() - start


def choose(rows):
    """``(collapsing, fix)``: the collapsing candidate with the fewest epochs (notebook 07 has a budget of 16), and,
    among the candidates with its ε, epochs and cost (one attack step) that do not collapse, the one with the best
    final validation PGD-10 accuracy; ``None`` where there is none."""
    collapsed = [name for name, _, verdict in rows if verdict != "no collapse"]
    if not collapsed:
        return None, None
    best = min(collapsed, key=lambda n: CANDIDATES[n][3])
    _, eps, _, epochs, _, _ = CANDIDATES[best]
    twins = [(h["val_adv_accuracy"][-1], name) for name, h, verdict in rows if verdict == "no collapse"
             and CANDIDATES[name][1] == eps and CANDIDATES[name][3] == epochs]
    return best, max(twins)[1] if twins else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--cache", default=None, help="model cache folder (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    cache = args.cache or tempfile.mkdtemp(prefix="overfitting-search-")
    rows = []
    for name in args.candidates:
        h, _ = run(ds, name, cache)
        found = training.find_collapse(h["val_adv_accuracy"], h["adv_accuracy"])
        verdict = "no collapse" if found is None else f"collapse: epoch {found[0] + 1} → {found[1] + 1}"
        rows.append((name, h, verdict))
        print(f"{name}: {verdict}", file=sys.stderr, flush=True)
    chosen = choose(rows)
    print("| candidate | training time | validation PGD-10 by epoch (200 images) | own attack by epoch (training) "
          "| verdict |")
    print("| --- | ---: | --- | --- | --- |")
    for name, h, verdict in rows:
        mark = " **(collapse shown in 07)**" if name == chosen[0] else " **(fix shown in 07)**" if name == chosen[1] else ""
        print(f"| `{name}`: {CANDIDATES[name][0]}{mark} | {sum(h['time']):.0f} s | "
              + " ".join(f"{v:.2f}" for v in h["val_adv_accuracy"]) + " | "
              + " ".join(f"{v:.2f}" for v in h["adv_accuracy"]) + f" | {verdict} |")
    print(f"\nchosen: collapse `{chosen[0]}`, fix at equal cost `{chosen[1]}` (rule: see `choose`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

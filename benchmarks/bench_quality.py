"""Robustness of the course's PGD-trained models on the bundled data, against the issues' quality bars.

Run: ``python benchmarks/bench_quality.py [--recipe pgd robust]``.  Trains each recipe of
``helpers.recipes.course_model`` from scratch (no cache) and reports the wall-clock training time, clean test
accuracy and accuracy under PGD-40 (step 0.01, random start) with 3 and with 5 restarts at ε = 0.3 on the 1,000
test images.  Recipes (PGD-7 adversarial training at ε = 0.3, batch 64, adversarial examples only, learning rate
warmed up to 2e-3 then cosine-decayed): ``pgd`` 20 epochs (notebooks 05-06), ``robust`` 40 epochs (notebook 07).
Bars: ``pgd`` clean ≥ 0.93 and PGD-40×3 ≥ 0.80 (foundation issue); ``robust`` clean ≥ 0.96 and PGD-40×5 ≥ 0.85
from at most 5 minutes of training (going-further issue).  Exits non-zero when a bar is missed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
from helpers import attacks, data, evaluate, models, recipes, training

BARS = {"pgd": dict(clean=0.93, restarts=3, robust=0.80, seconds=None),
        "robust": dict(clean=0.96, restarts=5, robust=0.85, seconds=300)}
EPOCHS = {"pgd": 20, "robust": 40}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", nargs="+", default=["pgd", "robust"], choices=sorted(BARS))
    args = parser.parse_args(argv)

    ds = data.load_dataset("mnist_5k")
    eps = data.standard_eps(ds.name)
    ok = True
    for recipe in args.recipe:
        models.seed_everything(args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            model, _ = recipes.course_model(ds, recipe, seed=args.seed, directory=tmp)
            train_time = time.perf_counter() - start
        clean = evaluate.accuracy(model, ds.x_test, ds.y_test)
        robust = {}
        for restarts in (3, 5):
            x_adv = attacks.pgd(model, ds.x_test, ds.y_test, eps, steps=40, step_size=0.01, restarts=restarts,
                                seed=args.seed)
            robust[restarts] = evaluate.accuracy(model, x_adv, ds.y_test)
        bar = BARS[recipe]
        passed = (clean >= bar["clean"] and robust[bar["restarts"]] >= bar["robust"]
                  and (bar["seconds"] is None or train_time <= bar["seconds"]))
        ok &= passed
        print(f"course '{recipe}' recipe (PGD-7 training, eps={eps}, {EPOCHS[recipe]} epochs, batch 64): "
              f"trained in {train_time:.0f} s" + (f" (bar {bar['seconds']} s)" if bar["seconds"] else ""))
        print(f"  clean test accuracy:                      {clean:.3f}   (bar {bar['clean']})")
        for r in (3, 5):
            note = f"   (bar {bar['robust']})" if r == bar["restarts"] else ""
            print(f"  PGD-40 (step 0.01) x {r} restarts, eps={eps}: {robust[r]:.3f}{note}")
        print(f"  {'PASS' if passed else 'FAIL'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

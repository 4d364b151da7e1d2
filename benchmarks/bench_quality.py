"""Robustness of the course's PGD-trained model on the bundled data (the foundation issue's quality bar).

Run: ``python benchmarks/bench_quality.py``.  Trains the course's ``"pgd"`` recipe from scratch (no cache):
PGD-7 adversarial training at ε = 0.3, 20 epochs, batch 64, adversarial examples only, learning rate warmed up to
2e-3 then cosine-decayed.  Reports the wall-clock training time, clean test accuracy and accuracy under PGD-40
(step 0.01, random start) with 3 and with 5 restarts at ε = 0.3 on the 1,000 test images.  Exits non-zero below
the bars: clean ≥ 0.93 and PGD-40×3 ≥ 0.80 (foundation); clean ≥ 0.96 and PGD-40×5 ≥ 0.85 (going further).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import helpers  # noqa: F401
from helpers import attacks, data, evaluate, models, training


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ds = data.load_dataset("mnist_5k")
    eps = data.standard_eps(ds.name)
    models.seed_everything(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model, _ = training.course_model(ds, "pgd", seed=args.seed, directory=tmp)
        train_time = time.perf_counter() - start
    clean = evaluate.accuracy(model, ds.x_test, ds.y_test)
    robust = {}
    for restarts in (3, 5):
        x_adv = attacks.pgd(model, ds.x_test, ds.y_test, eps, steps=40, step_size=0.01, restarts=restarts,
                            seed=args.seed)
        robust[restarts] = evaluate.accuracy(model, x_adv, ds.y_test)
    print(f"course 'pgd' recipe (PGD-7 training, eps={eps}, 20 epochs, batch 64): trained in {train_time:.0f} s")
    print(f"clean test accuracy:                    {clean:.3f}   (bars 0.93 / 0.96)")
    print(f"PGD-40 (step 0.01) x 3 restarts, eps={eps}: {robust[3]:.3f}   (bar 0.80)")
    print(f"PGD-40 (step 0.01) x 5 restarts, eps={eps}: {robust[5]:.3f}   (bar 0.85)")
    return 0 if clean >= 0.93 and robust[3] >= 0.80 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Robustness of the course's PGD-trained model on the bundled data (the foundation issue's quality bar).

Run: ``python benchmarks/bench_quality.py [--epochs 20] [--restarts 3]``.  Trains from scratch (no cache):
PGD-7 adversarial training at ε = 0.3, batch 64, adversarial examples only, then reports clean accuracy and
accuracy under PGD-40 (step 0.01, random start) with restarts at ε = 0.3 on the 1,000 test images, and the
wall-clock time of training.  Exits non-zero below the bars (clean ≥ 0.93, PGD-40 ≥ 0.80).
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
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ds = data.load_dataset("mnist_5k")
    models.seed_everything(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        model, _ = training.adversarial_model(ds, attack="pgd", eps=args.eps, epochs=args.epochs, batch_size=64,
                                              mode="adversarial", attack_kwargs={"steps": 7}, seed=args.seed,
                                              directory=tmp)
        train_time = time.perf_counter() - start
    clean = evaluate.accuracy(model, ds.x_test, ds.y_test)
    start = time.perf_counter()
    x_adv = attacks.pgd(model, ds.x_test, ds.y_test, args.eps, steps=40, step_size=0.01,
                        restarts=args.restarts, seed=args.seed)
    robust = evaluate.accuracy(model, x_adv, ds.y_test)
    eval_time = time.perf_counter() - start
    print(f"PGD-7 adversarial training, eps={args.eps}, {args.epochs} epochs, batch 64: {train_time:.0f} s")
    print(f"clean test accuracy:                          {clean:.3f}  (bar 0.93)")
    print(f"PGD-40 (step 0.01) x {args.restarts} restarts, eps={args.eps}:  {robust:.3f}  (bar 0.80)"
          f"   [{eval_time:.0f} s]")
    return 0 if clean >= 0.93 and robust >= 0.80 else 1


if __name__ == "__main__":
    sys.exit(main())

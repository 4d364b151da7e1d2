"""Choose the course's best robust recipe on the validation split, then report the choice once on the test set.

Run: ``python benchmarks/recipe_search.py [--candidates pgd40 trades30 ...] [--cache DIR]``.  Every candidate is
trained from scratch on the 3,500 training images of ``mnist_5k`` (seed 0), timed, and scored on the 500 validation
images with ``evaluate.strong_accuracy`` at ε = 0.3 (APGD-CE, APGD-DLR, Square; worst case per image).  The
candidate with the best validation worst case is reported on the 1,000 test images — the only time the test images
are touched.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)

from helpers import data, evaluate, models, recipes, training

EPS = 0.3


def candidates(ds):
    """name -> (description, keyword arguments of ``recipes.adversarial_model``)."""
    def schedule(epochs):
        return training.warmup_cosine(2e-3, epochs * training.steps_per_epoch(len(ds.x_train), 64))

    return {
        "pgd40": ("PGD-7 adversarial training, 40 epochs", dict(
            attack="pgd", mode="adversarial", epochs=40, attack_kwargs={"steps": 7}, learning_rate=schedule(40))),
        "pgd10x30": ("PGD-10 adversarial training, 30 epochs", dict(
            attack="pgd", mode="adversarial", epochs=30, attack_kwargs={"steps": 10}, learning_rate=schedule(30))),
        "trades30": ("TRADES β = 6, KL-PGD 10 steps of 0.05, 30 epochs", dict(
            attack="pgd", mode="trades", beta=6.0, epochs=30, attack_kwargs={"steps": 10, "step_size": 0.05},
            learning_rate=schedule(30))),
        "trades40": ("TRADES β = 6, KL-PGD 10 steps of 0.05, 40 epochs", dict(
            attack="pgd", mode="trades", beta=6.0, epochs=40, attack_kwargs={"steps": 10, "step_size": 0.05},
            learning_rate=schedule(40))),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="*", default=["pgd40", "trades30"])
    parser.add_argument("--cache", default=None, help="model cache folder (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    pool = candidates(ds)
    unknown = set(args.candidates) - set(pool)
    if unknown:
        parser.error(f"unknown candidates {sorted(unknown)}; choose from {sorted(pool)}")
    cache = args.cache or tempfile.mkdtemp(prefix="recipe-search-")
    rows, trained = {}, {}
    for name in args.candidates:
        description, kwargs = pool[name]
        models.seed_everything(0)
        start = time.perf_counter()
        model, _ = recipes.adversarial_model(ds, eps=EPS, batch_size=64, seed=0, directory=cache, **kwargs)
        seconds = time.perf_counter() - start
        val = evaluate.strong_accuracy(model, ds.x_val, ds.y_val, EPS)
        rows[name] = dict(description=description, train_s=seconds, clean=evaluate.accuracy(model, ds.x_val,
                          ds.y_val), **{k: val[k] for k in ("apgd-ce", "apgd-dlr", "square", "worst")})
        trained[name] = model
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    best = max(rows, key=lambda n: rows[n]["worst"])
    print("| candidate | trained in | val clean | val APGD-CE | val APGD-DLR | val Square | val worst case |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {r['description']}{' (chosen)' if name == best else ''} | {r['train_s']:.0f} s | {r['clean']:.3f} "
              f"| {r['apgd-ce']:.3f} | {r['apgd-dlr']:.3f} | {r['square']:.3f} | {r['worst']:.3f} |")
    test = evaluate.strong_accuracy(trained[best], ds.x_test, ds.y_test, EPS)
    clean = evaluate.accuracy(trained[best], ds.x_test, ds.y_test)
    print(f"\nchosen on validation: {pool[best][0]}; on the 1,000 test images: clean {clean:.3f}, APGD-CE "
          f"{test['apgd-ce']:.3f}, APGD-DLR {test['apgd-dlr']:.3f}, Square {test['square']:.3f}, worst case "
          f"{test['worst']:.3f} ({test['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

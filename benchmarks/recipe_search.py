"""Choose the course's best robust recipe on the validation split, then report the choice once on the test set.

Run: ``python benchmarks/recipe_search.py [--candidates pgd40 trades30 ...] [--cache DIR]``.  Every candidate is
trained from scratch on the 3,500 training images of ``mnist_5k`` (seed 0), timed, and scored on the 500 validation
images with ``evaluate.strong_accuracy`` at ε = 0.3 (APGD-CE, APGD-DLR, Square; worst case per image).  The
candidate with the best validation worst case is reported on the 1,000 test images — the only time the test images
are touched.  Prints a Markdown table.

``--ibp`` does the same for the certified recipe (``recipes.ibp_model``): candidates ``ibp100``,
``ibp150``, ``ibp140_eps040``, ``ibp200_b128``, ``ibp140_kappa0``, ``ibp140_ramp04``, scored by certified accuracy
at ε = 0.3 on the validation images (``helpers.certify``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)

from helpers import certify, data, evaluate, models, recipes, training

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


def ibp_candidates():
    """name -> (description, keyword arguments of ``recipes.ibp_model``); all at ε = 0.3."""
    return {
        "ibp100": ("IBP, trained at ε 0.35, 100 epochs", dict(epochs=100, eps_train=0.35)),
        "ibp150": ("IBP, trained at ε 0.35, 150 epochs", dict(epochs=150, eps_train=0.35)),
        "ibp140_eps040": ("IBP, trained at ε 0.40, 140 epochs", dict(epochs=140, eps_train=0.40)),
        "ibp200_b128": ("IBP, trained at ε 0.35, 200 epochs of batch 128", dict(epochs=200, eps_train=0.35,
                                                                               batch_size=128)),
        "ibp140_kappa0": ("IBP, trained at ε 0.35, 140 epochs, κ → 0", dict(epochs=140, eps_train=0.35,
                                                                           kappa_end=0.0)),
        "ibp140_ramp04": ("IBP, trained at ε 0.35, 140 epochs, ramp over 40 %", dict(epochs=140, eps_train=0.35,
                                                                                    ramp=0.4)),
    }


def search_ibp(ds, names, cache):
    """Train every IBP candidate, score it on validation, report the best once on the test images."""
    pool, rows, trained = ibp_candidates(), {}, {}
    for name in names:
        models.seed_everything(0)
        model, history = recipes.ibp_model(ds, eps=EPS, seed=0, directory=cache, **pool[name][1])
        rows[name] = dict(train_s=sum(history["time"]), clean=evaluate.accuracy(model, ds.x_val, ds.y_val),
                          certified=certify.certified_accuracy(model, ds.x_val, ds.y_val, EPS))
        trained[name] = model
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    best = max(rows, key=lambda n: rows[n]["certified"])
    print("| candidate | trained in (sum of epoch times) | val clean | val certified |")
    print("| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {pool[name][0]}{' (chosen)' if name == best else ''} | {r['train_s']:.0f} s | {r['clean']:.3f} "
              f"| {r['certified']:.3f} |")
    m = trained[best]
    print(f"\nchosen on validation: {pool[best][0]}; on the 1,000 test images: clean "
          f"{evaluate.accuracy(m, ds.x_test, ds.y_test):.3f}, certified "
          f"{certify.certified_accuracy(m, ds.x_test, ds.y_test, EPS):.3f}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="*", default=None,
                        help="default: pgd40 trades30, or with --ibp every IBP candidate")
    parser.add_argument("--cache", default=None, help="model cache folder (default: a fresh temporary one)")
    parser.add_argument("--ibp", action="store_true", help="search the certified (IBP) recipe instead")
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    cache = args.cache or tempfile.mkdtemp(prefix="recipe-search-")
    if args.ibp:
        names = args.candidates or list(ibp_candidates())
        unknown = set(names) - set(ibp_candidates())
        if unknown:
            parser.error(f"unknown IBP candidates {sorted(unknown)}; choose from {sorted(ibp_candidates())}")
        return search_ibp(ds, names, cache)
    pool = candidates(ds)
    args.candidates = args.candidates or ["pgd40", "trades30"]
    unknown = set(args.candidates) - set(pool)
    if unknown:
        parser.error(f"unknown candidates {sorted(unknown)}; choose from {sorted(pool)}")
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

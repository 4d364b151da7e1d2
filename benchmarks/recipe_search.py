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


def train_adversarial(ds, kwargs, cache):
    """``(model, wall-clock seconds)`` of one ``recipes.adversarial_model`` candidate."""
    start = time.perf_counter()
    model, _ = recipes.adversarial_model(ds, eps=EPS, batch_size=64, seed=0, directory=cache, **kwargs)
    return model, time.perf_counter() - start


def train_ibp(ds, kwargs, cache):
    """``(model, seconds)`` of one ``recipes.ibp_model`` candidate: the sum of its epoch times, also from the cache."""
    model, history = recipes.ibp_model(ds, eps=EPS, seed=0, directory=cache, **kwargs)
    return model, sum(history["time"])


def score_strong(model, x, y):
    """Clean accuracy and ``evaluate.strong_accuracy`` at ε."""
    strong = evaluate.strong_accuracy(model, x, y, EPS)
    return {"clean": evaluate.accuracy(model, x, y), "APGD-CE": strong["apgd-ce"], "APGD-DLR": strong["apgd-dlr"],
            "Square": strong["square"], "worst case": strong["worst"]}


def score_certified(model, x, y):
    """Clean accuracy and certified accuracy at ε."""
    return {"clean": evaluate.accuracy(model, x, y), "certified": certify.certified_accuracy(model, x, y, EPS)}


#: ``--ibp`` or not -> (candidates, train, score, the score that decides, what the training time column measures)
FAMILIES = {False: (candidates, train_adversarial, score_strong, "worst case", "trained in"),
            True: (lambda ds: ibp_candidates(), train_ibp, score_certified, "certified",
                   "trained in (sum of epoch times)")}


def search(ds, family, names, cache):
    """Train every candidate, score it on validation, report the best on the test set (the only look at it)."""
    make_pool, train, score, decides, time_label = family
    pool, rows, trained = make_pool(ds), {}, {}
    for name in names:
        models.seed_everything(0)
        trained[name], seconds = train(ds, pool[name][1], cache)
        rows[name] = {"seconds": seconds, **score(trained[name], ds.x_val, ds.y_val)}
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)
    best = max(rows, key=lambda n: rows[n][decides])
    columns = [c for c in rows[best] if c != "seconds"]
    print(f"| candidate | {time_label} | " + " | ".join(f"val {c}" for c in columns) + " |")
    print("| --- | ---: |" + " ---: |" * len(columns))
    for name, r in rows.items():
        print(f"| {pool[name][0]}{' (chosen)' if name == best else ''} | {r['seconds']:.0f} s | "
              + " | ".join(f"{r[c]:.3f}" for c in columns) + " |")
    start = time.perf_counter()
    test = score(trained[best], ds.x_test, ds.y_test)
    print(f"\nchosen on validation: {pool[best][0]}; on the 1,000 test images: "
          + ", ".join(f"{c} {v:.3f}" for c, v in test.items()) + f" ({time.perf_counter() - start:.0f} s)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", nargs="*", default=None,
                        help="default: pgd40 trades30, or with --ibp every IBP candidate")
    parser.add_argument("--cache", default=None, help="model cache folder (default: a fresh temporary one)")
    parser.add_argument("--ibp", action="store_true", help="search the certified (IBP) recipe instead")
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    family = FAMILIES[args.ibp]
    pool = family[0](ds)
    names = args.candidates or (list(pool) if args.ibp else ["pgd40", "trades30"])
    unknown = set(names) - set(pool)
    if unknown:
        parser.error(f"unknown candidates {sorted(unknown)}; choose from {sorted(pool)}")
    return search(ds, family, names, args.cache or tempfile.mkdtemp(prefix="recipe-search-"))


if __name__ == "__main__":
    sys.exit(main())

"""What switching ``DATASET`` costs: seconds per training epoch of the course's recipes on the other datasets.

Run: ``python benchmarks/dataset_costs.py [--sample 2000]``.  No download is needed: training time does not depend on
what the pixels show, so each epoch is timed on ``--sample`` random images of the dataset's shape and scaled to the
size of its training split (after the validation split is taken out).  Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
import keras

from helpers import data, models, training

#: name -> (image shape, training images after the validation split), read from the dataset records
SHAPES = {name: (spec.input_shape, spec.train_size - spec.validation_size) for name, spec in data.DATASETS.items()}
#: recipe -> (epochs in the course recipe, keyword arguments of one epoch): ``standard``, ``fgsm`` and ``pgd``
RECIPES = {
    "standard": (10, None),
    "FGSM double batch": (10, dict(attack="fgsm", mode="double", batch_size=64)),
    "PGD-4 adversarial only": (20, dict(attack="pgd", mode="adversarial", batch_size=64,
                                        attack_kwargs={"steps": 4})),
}


def epoch_seconds(shape, n, recipe_kwargs, repeats=2):
    """Median seconds of one epoch on ``n`` random images of ``shape`` (after a warm-up epoch that traces)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    model = models.build_model(shape, 10)
    timer = models.EpochTimer()
    if recipe_kwargs is None:
        models.train_model(model, x, y, epochs=repeats + 1, batch_size=128, callbacks=[timer])
    else:
        training.adversarial_train(model, x, y, eps=0.1, epochs=repeats + 1, callbacks=[timer], **recipe_kwargs)
    return statistics.median(timer.times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=2000, help="random images timed per epoch")
    args = parser.parse_args(argv)
    models.seed_everything(0, deterministic=True)
    per_image = {}
    for shape in {s for s, _ in SHAPES.values()}:
        for recipe, (_, kwargs) in RECIPES.items():
            start = time.perf_counter()
            per_image[shape, recipe] = epoch_seconds(shape, args.sample, kwargs) / args.sample
            print(f"timed {recipe} on {shape} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    recipes = list(RECIPES)
    print("| `DATASET` | training images | " + " | ".join(f"{r}: s/epoch ({RECIPES[r][0]} epochs)" for r in recipes)
          + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in recipes) + " |")
    for name, (shape, n) in SHAPES.items():
        cells = [f"{per_image[shape, r] * n:,.1f} s ({per_image[shape, r] * n * RECIPES[r][0] / 60:,.1f} min)"
                 for r in recipes]
        print(f"| `{name}` | {n:,} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    sys.exit(main())

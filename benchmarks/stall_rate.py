"""How often does adversarial training at full ε stall at chance?  One recipe, several seeds, the validation split.

Run: ``python benchmarks/stall_rate.py --recipe readme [--seeds 0 1 2 3 4] [--epochs 20]``.  Every seed builds a
fresh course CNN (``models.build_model(..., seed=s)``, ``keras.utils.set_random_seed(s)``) on ``mnist_5k`` and trains
it with the recipe at ε = 0.3; then it prints, per seed, clean and PGD-20 accuracy on the 500 validation images, the
training accuracy under its own attack by epoch, whether it *stalled* (validation accuracy within 0.05 of chance) and
whether ``training.StallMonitor`` warned.  Recipes (the documented paths):

- ``readme``: the README's example — ``training.AdversarialModel(model, attack="pgd", eps=0.3,
  mode="adversarial")``, ``compile(Adam(1e-3))``, ``fit(batch_size=64, epochs=20)`` with validation data and
  ``EarlyStopping("val_adv_accuracy", patience=3, restore_best_weights=True)``;
- ``issue``: ``training.adversarial_train(model, x, y, attack="pgd", eps=0.3, epochs=20, batch_size=64,
  mode="adversarial", attack_kwargs={"steps": 7}, seed=s)`` (the call of the issue that found the stall);
- ``minimal``: ``training.adversarial_train`` with only its required arguments plus ``attack="pgd"``, ``eps=0.3``,
  ``mode="adversarial"`` and ``epochs=20``;
- ``no-warmup``: the ``issue`` call with ``eps_warmup=0`` (ε at full size from the first step), the old default;
- ``course-pgd``: the course's ``"pgd"`` recipe (``recipes.course_model(ds, "pgd", seed=s)``: PGD-4, 20 epochs,
  learning-rate warm-up and cosine decay, no ε ramp), trained in a temporary cache folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings

if __name__ == "__main__":  # run as a script (not when a test loads it: notebook kernels would inherit it)
    os.environ.setdefault("COURSE_EVAL_CACHE", "0")  # benchmarks measure: compute every evaluation (helpers.evalcache)
from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)

import keras

from helpers import attacks, data, evaluate, models, recipes, training

EPS = 0.3
RECIPES = ("readme", "issue", "minimal", "no-warmup", "course-pgd")


def train(recipe, model, ds, seed, epochs):
    """Train ``model`` in place with ``recipe``; return the Keras History."""
    x, y = ds.x_train, ds.y_train
    if recipe == "course-pgd":
        trained, history = recipes.course_model(ds, "pgd", seed=seed, directory=tempfile.mkdtemp())
        model.set_weights(trained.get_weights())
        return keras.callbacks.History() if history is None else _Replayed(history)
    if recipe == "readme":
        adv = training.AdversarialModel(model, attack="pgd", eps=EPS, mode="adversarial")
        adv.compile(optimizer=keras.optimizers.Adam(1e-3))
        stop = keras.callbacks.EarlyStopping("val_adv_accuracy", mode="max", patience=3, restore_best_weights=True)
        return adv.fit(x, y, batch_size=64, epochs=epochs, validation_data=(ds.x_val, ds.y_val), callbacks=[stop],
                       verbose=0)
    if recipe == "minimal":
        return training.adversarial_train(model, x, y, attack="pgd", eps=EPS, epochs=epochs, mode="adversarial")
    extra = {"eps_warmup": 0} if recipe == "no-warmup" else {}
    return training.adversarial_train(model, x, y, attack="pgd", eps=EPS, epochs=epochs, batch_size=64,
                                      mode="adversarial", attack_kwargs={"steps": 7}, seed=seed, **extra)


class _Replayed:
    """A History-like view of a cached recipe's history dict."""

    def __init__(self, history):
        self.history = history


def run(recipe, ds, seed, epochs):
    """One seed: ``dict`` of validation figures, the own-attack curve, stall verdict and warnings."""
    models.seed_everything(seed)
    model = models.build_model(ds.input_shape, ds.num_classes, seed=seed)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = train(recipe, model, ds, seed, epochs)
    seconds = time.perf_counter() - start
    clean = evaluate.accuracy(model, ds.x_val, ds.y_val)
    pgd20 = evaluate.accuracy(model, attacks.pgd(model, ds.x_val, ds.y_val, EPS, steps=20, seed=0, early_stop=True),
                              ds.y_val)
    warned = any(issubclass(w.category, training.StallWarning) for w in caught)
    return {"clean": clean, "pgd20": pgd20, "stalled": abs(clean - 1 / ds.num_classes) <= 0.05, "warned": warned,
            "own": history.history["adv_accuracy"], "seconds": seconds, "epochs": len(history.history["loss"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=RECIPES, default="readme")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    print(f"recipe `{args.recipe}`, ε = {EPS}, {args.epochs} epochs, mnist_5k; validation split (500 images)\n")
    print("| seed | clean | PGD-20 | stalled | StallMonitor warned | own attack by epoch (training) | time |")
    print("| ---: | ---: | ---: | --- | --- | --- | ---: |")
    results = []
    for seed in args.seeds:
        r = run(args.recipe, ds, seed, args.epochs)
        results.append(r)
        print(f"| {seed} | {r['clean']:.3f} | {r['pgd20']:.3f} | {'yes' if r['stalled'] else 'no'} | "
              f"{'yes' if r['warned'] else 'no'} | " + " ".join(f"{v:.2f}" for v in r["own"])
              + f" | {r['seconds']:.0f} s |", flush=True)
    ok = sum(r["clean"] >= 0.90 and r["pgd20"] >= 0.70 for r in results)
    print(f"\n{sum(r['stalled'] for r in results)} of {len(results)} seeds stalled; {ok} of {len(results)} reached "
          "≥ 0.90 clean and ≥ 0.70 PGD-20 on validation")
    return 0


if __name__ == "__main__":
    sys.exit(main())

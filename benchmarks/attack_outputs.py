"""Are the attacks' adversarial images unchanged by a refactoring?  Every attack variant the notebooks use, saved.

Run: ``python benchmarks/attack_outputs.py save OUT.npz [--model PATH]`` on one version of the code, then on
another, then ``python benchmarks/attack_outputs.py compare A.npz B.npz`` (exits non-zero unless every array is
identical, bit for bit).  On 200 bundled test images (``mnist_5k``), with a trained ``.keras`` model (default: a
freshly built, untrained course CNN, deterministic from its seed), it runs FGSM (untargeted, targeted), the one-step
rules, PGD (L∞, L2, targeted, restarts, early stop, BIM, one step, and inside a ``tf.function`` as training uses it),
APGD (CE, DLR, targeted, restarts, L2) and Square, each twice (the second run must equal the first), and saves the
arrays and the seconds of each second run.  ``--small-batches`` also splits the images into chunks and sub-batches
smaller than 200, so the chunk seeds and the re-packing of sub-batches are exercised.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
import keras
import tensorflow as tf

from helpers import attacks, autoattack, data, models

EPS = 0.3


def variants(model, x, y, t):
    """``{name: fn()}``: every attack call to compare (``t``: target classes, never the true class)."""
    traced_pgd = tf.function(lambda a, b: attacks.pgd(model, a, b, EPS, steps=4, seed=3))
    traced_rs = tf.function(lambda a, b: attacks.pgd(model, a, b, EPS, steps=1, step_size=1.25 * EPS, seed=3,
                                                     restarts=2))
    return {
        "input_gradient": lambda: attacks.input_gradient(model, x, y),
        "fgsm": lambda: attacks.fgsm(model, x, y, EPS),
        "fgsm_targeted": lambda: attacks.fgsm(model, x, t, EPS, targeted=True),
        **{f"step_{s}": (lambda s=s: attacks.gradient_attack(model, x, y, 0.2 if s != "l2" else 1.5, scale=s))
           for s in ("raw", "max", "l2")},
        "pgd": lambda: attacks.pgd(model, x, y, EPS, steps=12, seed=0),
        "pgd_early": lambda: attacks.pgd(model, x, y, 0.1, steps=20, seed=0, early_stop=True),
        "pgd_restarts_early": lambda: attacks.pgd(model, x, y, 0.1, steps=12, restarts=3, seed=0, early_stop=True),
        "pgd_restarts": lambda: attacks.pgd(model, x, y, 0.1, steps=5, restarts=3, seed=1),
        "pgd_l2": lambda: attacks.pgd(model, x, y, 1.5, norm="l2", steps=12, seed=0),
        "pgd_targeted": lambda: attacks.pgd(model, x, t, EPS, steps=12, targeted=True, seed=0, early_stop=True),
        "pgd_one_step": lambda: attacks.pgd(model, x, y, EPS, steps=1, step_size=1.25 * EPS, seed=0),
        "bim": lambda: attacks.pgd(model, x, y, 0.1, steps=5, random_start=False),
        "pgd_traced": lambda: traced_pgd(tf.constant(x), tf.constant(y)).numpy(),
        "pgd_traced_restarts": lambda: traced_rs(tf.constant(x), tf.constant(y)).numpy(),
        "apgd_ce": lambda: autoattack.apgd(model, x, y, 0.1, steps=25, seed=0),
        "apgd_dlr": lambda: autoattack.apgd(model, x, y, 0.1, loss="dlr", steps=25, seed=0),
        "apgd_ce_restarts": lambda: autoattack.apgd(model, x, y, 0.08, steps=12, restarts=3, seed=2),
        "apgd_ce_targeted": lambda: autoattack.apgd(model, x, t, 0.1, steps=25, targeted=True, seed=0),
        "apgd_dlr_targeted": lambda: autoattack.apgd(model, x, t, 0.1, loss="dlr", steps=25, targeted=True, seed=0),
        "apgd_l2": lambda: autoattack.apgd(model, x, y, 1.0, norm="l2", steps=12, seed=0),
        "square": lambda: autoattack.square(model, x, y, 0.1, queries=160, seed=0, return_queries=True),
    }


def small_batches():
    """Chunks of 96 images and sub-batches of at most 40, wherever the code reads them."""
    import importlib

    for name in ("attacks", "autoattack", "_compiled", "_engine"):
        try:
            module = importlib.import_module(f"helpers.{name}")
        except ImportError:
            continue
        for attr, value in (("EVAL_BATCH", 96), ("ATTACK_BATCH", 40)):
            if hasattr(module, attr):
                setattr(module, attr, value)


def save(path, model_path, only, small):
    ds = data.load_dataset("mnist_5k")
    x, y = ds.x_test[:200], ds.y_test[:200]
    t = (y + 3) % ds.num_classes
    if model_path:
        model = keras.models.load_model(model_path, compile=False)
    else:
        models.seed_everything(0)
        model = models.build_model(ds.input_shape, ds.num_classes, seed=0)
    if small:
        small_batches()
    out, seconds = {}, {}
    for name, fn in variants(model, x, y, t).items():
        if only and name not in only:
            continue
        first = fn()
        start = time.perf_counter()
        second = fn()
        seconds[name] = time.perf_counter() - start
        for i, (a, b) in enumerate(zip(*(r if isinstance(r, tuple) else (r,) for r in (first, second)))):
            key = name if i == 0 else f"{name}#{i}"
            if not np.array_equal(a, b):
                print(f"{key}: NOT reproducible within one process", file=sys.stderr)
            out[key] = np.asarray(a)
        print(f"{name:22s} {seconds[name]:7.3f} s", flush=True)
    np.savez_compressed(path, **out, **{f"seconds:{k}": v for k, v in seconds.items()})


def compare(a_path, b_path):
    a, b = np.load(a_path), np.load(b_path)
    names = sorted(k for k in set(a.files) | set(b.files) if not k.startswith("seconds:"))
    bad = 0
    for name in names:
        if name not in a.files or name not in b.files:
            print(f"{name:24s} missing in {'A' if name not in a.files else 'B'}")
            bad += 1
            continue
        same = np.array_equal(a[name], b[name])
        bad += not same
        diff = "" if same else f"  max |diff| {np.abs(a[name].astype(float) - b[name].astype(float)).max():.3g}"
        times = ""
        if f"seconds:{name}" in a.files and f"seconds:{name}" in b.files:
            ta, tb = float(a[f"seconds:{name}"]), float(b[f"seconds:{name}"])
            times = f"  {ta:6.3f} s -> {tb:6.3f} s (x{tb / ta:.2f})"
        print(f"{name:24s} {'identical' if same else 'DIFFERENT'} {a[name].shape}{diff}{times}")
    print(f"{len(names) - bad} of {len(names)} arrays identical")
    return 1 if bad else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save")
    s.add_argument("out")
    s.add_argument("--model", default=None, help="a .keras file (read only); default: an untrained course CNN")
    s.add_argument("--only", nargs="*", default=None, help="names of the variants to run")
    s.add_argument("--small-batches", action="store_true")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = parser.parse_args(argv)
    if args.command == "save":
        save(args.out, args.model, args.only, args.small_batches)
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())

"""How fast are our iterative attacks?  Side by side with CleverHans 4 and with plain forward+backward passes.

Run: ``python benchmarks/bench_attack_speed.py [--repeats 5]`` (CleverHans: ``pip install --no-deps
cleverhans==4.0.0``, see ``benchmarks/requirements-reference.txt``).  On 512 bundled test images, for the standard
and the PGD-trained course models, one process times: one forward+backward pass (weight gradients, ``training=True``, as
``benchmarks/bench_speed.py``), CleverHans 4's ``projected_gradient_descent`` with 40 and 100 steps, our ``pgd`` with
40 and 100 steps (with and without ``early_stop``) and our ``apgd`` with 100 steps (ε = 0.3, step 2.5·ε/steps,
random start).  Every measure runs once per round, the rounds interleave the measures (the machine may be shared:
a slow spell then hits all of them alike), each ratio is taken within a round, and the medians over the rounds are
printed.  Goals: each of PGD-40, PGD-100 (as used to measure accuracy: ``early_stop=True``) and APGD-100 at most
0.8 × CleverHans' PGD time at equal steps and batch, and at most 1.1 × steps × one forward+backward pass; the
script exits non-zero when a goal is missed.

Where the difference comes from: "CleverHans PGD-100, sub-batches" runs CleverHans on the same sub-batches of
``attacks.ATTACK_BATCH`` images that our attacks use; "ours PGD-100, TensorFlow's conv gradient" turns off
``attacks.FAST_CONV_GRADIENT`` (our input gradient of the single-channel first convolution); "ours PGD-100, one
batch of 512" turns off the sub-batching.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
import keras
import tensorflow as tf
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent

from helpers import attacks, autoattack, data, evaluate, models

import _common

EPS = 0.3
GOAL_VS_CLEVERHANS, GOAL_VS_PASSES = 0.8, 1.1


def course_models(ds, paths):
    """The standard and PGD-trained course models (or stand-ins trained here if the recipes fail)."""
    return {kind: keras.models.load_model(path, compile=False) if path else _common.course_model(ds, kind)
            for kind, path in zip(("standard", "pgd"), paths)}


def measures(model, x, y):
    """``{name: (steps or None, fn)}``: everything timed for one model."""
    xt, yt = tf.constant(x), tf.constant(y)
    forward_backward = _common.forward_backward(model)

    def cleverhans(steps, sub_batches=False):
        n_parts = -(-len(x) // attacks.ATTACK_BATCH) if sub_batches else 1
        parts = [(tf.constant(a), tf.constant(b))
                 for a, b in zip(np.array_split(x, n_parts), np.array_split(y, n_parts))]
        return lambda: [projected_gradient_descent(
            model, xb, EPS, attacks.default_step_size(EPS, steps), steps, np.inf, clip_min=0.0, clip_max=1.0, y=yb,
            rand_init=True, sanity_checks=False).numpy() for xb, yb in parts]

    def ours(steps, **kw):
        return lambda: attacks.pgd(model, x, y, EPS, steps=steps, seed=0, **kw)

    def variant(**settings):
        """Our PGD-100 with other module settings, compiled for a copy of the model (a cache of its own)."""
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())

        def fn():
            saved = {name: getattr(attacks, name) for name in settings}
            for name, value in settings.items():
                setattr(attacks, name, value)
            try:
                return attacks.pgd(copy, x, y, EPS, steps=100, seed=0)
            finally:
                for name, value in saved.items():
                    setattr(attacks, name, value)
        return fn

    return {
        "forward+backward": (None, lambda: [g.numpy() for g in forward_backward(xt, yt)]),
        "CleverHans PGD-40": (40, cleverhans(40)),
        "CleverHans PGD-100": (100, cleverhans(100)),
        "CleverHans PGD-100, sub-batches": (100, cleverhans(100, sub_batches=True)),
        "ours PGD-40": (40, ours(40)),
        "ours PGD-40, early_stop": (40, ours(40, early_stop=True)),
        "ours PGD-100": (100, ours(100)),
        "ours PGD-100, early_stop": (100, ours(100, early_stop=True)),
        "ours PGD-100, TensorFlow's conv gradient": (100, variant(FAST_CONV_GRADIENT=False)),
        "ours PGD-100, one batch of 512": (100, variant(ATTACK_BATCH=512)),
        "ours APGD-CE-100": (100, lambda: autoattack.apgd(model, x, y, EPS, steps=100, seed=0)),
        "ours APGD-DLR-100": (100, lambda: autoattack.apgd(model, x, y, EPS, loss="dlr", steps=100, seed=0)),
    }


def run(model, x, y, repeats):
    """Median time of each measure and, per round, the ratios to CleverHans (equal steps) and to the passes."""
    timed = measures(model, x, y)
    for _, fn in timed.values():
        fn()  # warm-up: traces and compiles
    rounds = []
    for _ in range(repeats):
        t = {}
        for name, (_, fn) in timed.items():
            start = time.perf_counter()
            fn()
            t[name] = time.perf_counter() - start
        rounds.append(t)
    rows = {}
    for name, (steps, _) in timed.items():
        seconds = statistics.median(r[name] for r in rounds)
        if steps is None:
            rows[name] = (seconds, None, None)
            continue
        vs_ch = statistics.median(r[name] / r[f"CleverHans PGD-{steps}"] for r in rounds)
        vs_passes = statistics.median(r[name] / (steps * r["forward+backward"]) for r in rounds)
        rows[name] = (seconds, vs_ch, vs_passes)
    return rows


GOALS = ("ours PGD-40, early_stop", "ours PGD-100, early_stop", "ours APGD-CE-100")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--standard", help="load this saved model instead of the standard course model")
    parser.add_argument("--robust", help="load this saved model instead of the PGD-trained course model")
    args = parser.parse_args(argv)
    models.seed_everything(0, deterministic=False)
    ds = data.load_dataset("mnist_5k")
    x, y = ds.x_test[:512], ds.y_test[:512]
    ok = True
    print(f"512 images, ε = {EPS}; sub-batches of {attacks.ATTACK_BATCH}, blocks of {attacks.BLOCK_STEPS} steps; "
          f"medians of {args.repeats} interleaved rounds")
    for kind, model in course_models(ds, (args.standard, args.robust)).items():
        clean = evaluate.accuracy(model, x, y)
        rows = run(model, x, y, args.repeats)
        print(f"\n### {kind} model (clean accuracy {clean:.1%})\n")
        print("| measure | seconds | ours / CleverHans PGD (equal steps) | ours / (steps × fwd+bwd) | goal |")
        print("| --- | --- | --- | --- | --- |")
        for name, (seconds, vs_ch, vs_passes) in rows.items():
            goal = ""
            if name in GOALS:
                met = vs_ch <= GOAL_VS_CLEVERHANS and vs_passes <= GOAL_VS_PASSES
                ok &= met
                goal = "met" if met else "**missed**"
            cells = ["", ""] if vs_ch is None else [f"{vs_ch:.2f}", f"{vs_passes:.2f}"]
            print(f"| {name} | {seconds:.3f} | {cells[0]} | {cells[1]} | {goal} |")
    print(f"\ngoals (≤ {GOAL_VS_CLEVERHANS} × CleverHans, ≤ {GOAL_VS_PASSES} × steps × fwd+bwd): "
          + ("all met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

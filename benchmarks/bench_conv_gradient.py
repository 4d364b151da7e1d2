"""What does the fast first-layer Conv2D gradient buy?  PGD-40 with it and with TensorFlow's own, side by side.

Run: ``python benchmarks/bench_conv_gradient.py [--model PATH] [--rounds 7]``.  Two copies of one model (the course
CNN, trained if ``--model`` names a ``.keras`` file, else untrained) are attacked on 512 bundled test images: the
first compiled with ``attacks.FAST_CONV_GRADIENT`` on, the second with it off (TensorFlow's gradient, what the
attacks fall back on where TensorFlow lacks ``nn_grad._Conv2DGrad``).  The rounds alternate the two, and the median
of the per-round ratios (fallback / fast) is printed, with the largest pixel difference of the results.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
import keras

from helpers import attacks, data, models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    x, y = ds.x_test[:512], ds.y_test[:512]
    copies = []
    for _ in range(2):
        if args.model:
            copies.append(keras.models.load_model(args.model, compile=False))
        else:
            copies.append(models.build_model(ds.input_shape, ds.num_classes, seed=0))
    runs = {}
    for name, model, fast in (("fast", copies[0], True), ("fallback", copies[1], False)):
        attacks.FAST_CONV_GRADIENT = fast  # read when the attack is compiled for this model
        runs[name] = (lambda m=model: attacks.pgd(m, x, y, 0.3, steps=args.steps, seed=0))
        out = runs[name]()  # warm-up: traces and compiles
        runs[name + ":out"] = out
    attacks.FAST_CONV_GRADIENT = True
    seconds = {"fast": [], "fallback": []}
    for _ in range(args.rounds):
        for name in ("fast", "fallback"):
            start = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - start)
    ratios = [b / a for a, b in zip(seconds["fast"], seconds["fallback"])]
    diff = np.abs(runs["fast:out"] - runs["fallback:out"]).max()
    fast, fallback = (statistics.median(seconds[name]) for name in ("fast", "fallback"))
    print(f"PGD-{args.steps} on {len(x)} images, {args.rounds} alternating rounds: fast {fast:.3f} s, "
          f"fallback {fallback:.3f} s (medians); fallback / fast per round: median "
          f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); results differ by at most "
          f"{diff:.3g}")


if __name__ == "__main__":
    main()

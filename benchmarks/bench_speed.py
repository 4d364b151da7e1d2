"""Speed of the compiled attacks and training steps, as ratios to a plain forward+backward pass.

Run: ``python benchmarks/bench_speed.py [--repeats 5]``.  Everything is measured side by side in one process on a
batch of 512 bundled MNIST images (median of several repeats, after one warm-up call that traces); the training
ratios compare one epoch of ``AdversarialModel.fit`` with one epoch of plain ``model.fit``, both at batch 128.  The
bounds are those of the project's issues; the script exits non-zero when a ratio is out of bounds.  The long attacks
(PGD-40/100, APGD) against CleverHans are in ``bench_attack_speed.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from helpers import _quiet  # noqa: F401  (TensorFlow without its start-up chatter)
import tensorflow as tf

from helpers import attacks, data, models, training

import _common

BOUNDS = {"fgsm": 1.3, "pgd10": 11.0, "fgsm_double_epoch": 3.5, "pgd7_adversarial_epoch": 9.0}


def timed(fn, repeats):
    fn()  # warm-up: traces and compiles
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per training variant (median)")
    args = parser.parse_args(argv)

    models.seed_everything(0, deterministic=False)
    ds = data.load_dataset("mnist_5k")
    x, y = ds.x_test[:512], ds.y_test[:512]
    xt, yt = tf.constant(x), tf.constant(y)
    model = models.build_model(ds.input_shape, ds.num_classes)
    models.train_model(model, ds.x_train, ds.y_train, epochs=1)
    forward_backward = _common.forward_backward(model)

    base = timed(lambda: [g.numpy() for g in forward_backward(xt, yt)], args.repeats)
    results = {
        "fgsm": timed(lambda: attacks.fgsm(model, x, y, 0.3), args.repeats) / base,
        "pgd10": timed(lambda: attacks.pgd(model, x, y, 0.3, steps=10), args.repeats) / base,
        "pgd10, early_stop": timed(lambda: attacks.pgd(model, x, y, 0.3, steps=10, early_stop=True),
                                   args.repeats) / base,
    }

    def epoch_fit():
        m = models.compile_model(models.build_model(ds.input_shape, ds.num_classes))
        m.fit(ds.x_train, ds.y_train, batch_size=128, epochs=args.epochs + 1, verbose=0,
              callbacks=[timer := models.EpochTimer()])
        return statistics.median(timer.times[1:])

    def epoch_adv(**kw):
        m = models.build_model(ds.input_shape, ds.num_classes)
        timer = models.EpochTimer()
        training.adversarial_train(m, ds.x_train, ds.y_train, epochs=args.epochs + 1, batch_size=128,
                                   callbacks=[timer], **kw)
        return statistics.median(timer.times[1:])

    fit_epoch = epoch_fit()
    results["fgsm_double_epoch"] = epoch_adv(attack="fgsm", eps=0.3, mode="double") / fit_epoch
    results["pgd7_adversarial_epoch"] = epoch_adv(attack="pgd", eps=0.3, mode="adversarial",
                                                  attack_kwargs={"steps": 7}) / fit_epoch

    print(f"forward+backward pass, batch 512: {base * 1000:.1f} ms;  model.fit epoch ({len(ds.x_train)} images, "
          f"batch 128): {fit_epoch:.2f} s")
    print(f"eager PGD runs compiled blocks of up to {attacks.BLOCK_STEPS} unrolled steps")
    print("ratios: attacks to one forward+backward pass of the batch; *_epoch to one model.fit epoch")
    print(f"{'measure':44s} {'ratio':>7s} {'bound':>7s}")
    ok = True
    for name, ratio in results.items():
        bound = BOUNDS.get(name)
        flag = "" if bound is None else ("ok" if ratio <= bound else "OVER")
        ok &= bound is None or ratio <= bound
        print(f"{name:44s} {ratio:7.2f} {bound if bound else '':>7} {flag}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Are our attacks at least as strong as a well-established implementation with the same settings?

Reference: IBM's Adversarial Robustness Toolbox (ART), ``TensorFlowV2Classifier`` with ``FastGradientMethod``,
``ProjectedGradientDescent`` and ``AutoProjectedGradientDescent``, attacking the *same* Keras model (logits,
cross-entropy from logits, clip values [0, 1]) on the 1,000 bundled test images.  Run:
``pip install -r benchmarks/requirements-reference.txt`` then ``python benchmarks/compare_reference.py [--robust]``;
prints a Markdown table (accuracy and seconds of each side) and exits non-zero if any of our untargeted attacks
leaves more than 1 point more accuracy than ART's (APGD: 0.5 point), or our targeted attack succeeds 1 point less.

Settings are matched: PGD step size (ART ``eps_step``) = ours; random start uniform in the ball (ART
``num_random_init``; ours ``random_start``/``restarts``); ART picks, per image, the restart that fools the model.
APGD (``autoattack.apgd`` against ART's ``AutoProjectedGradientDescent`` with ``loss_type="cross_entropy"`` or
``"difference_logits_ratio"``): same ε, ``steps`` = ``max_iter``, ``restarts`` = ``nb_random_init``, initial step
2ε (ART ``eps_step``, AutoAttack's value), ART ``batch_size`` = our sub-batch ``attacks.ATTACK_BATCH``.  Where the
course models cannot be built (``recipes.course_model`` failing), stand-ins of the same kind are trained here
(``_common.course_model``; ``--fallback`` forces them).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import helpers  # noqa: F401
import keras
import tensorflow as tf
from art.attacks.evasion import AutoProjectedGradientDescent, FastGradientMethod, ProjectedGradientDescent
from art.estimators.classification import TensorFlowV2Classifier

if __name__ == "__main__":  # run as a script (not when a test loads it: notebook kernels would inherit it)
    os.environ.setdefault("COURSE_EVAL_CACHE", "0")  # benchmarks measure: compute every evaluation (helpers.evalcache)
from helpers import attacks, autoattack, data, evaluate

from _common import course_model

#: How much more accuracy than ART's each of our attacks may leave (fraction of the images).
TOLERANCE, APGD_TOLERANCE = 0.01, 0.005


def wrap(model, ds):
    return TensorFlowV2Classifier(model=model, nb_classes=ds.num_classes, input_shape=ds.input_shape,
                                  loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                  clip_values=(0.0, 1.0))


def apgd_specs(model, clf, x, y, onehot, steps):
    """Rows: our ``apgd`` against ART's ``AutoProjectedGradientDescent`` at equal settings."""
    specs = []
    for eps in (0.1, 0.3):
        for loss, art_loss in (("ce", "cross_entropy"), ("dlr", "difference_logits_ratio")):
            specs.append((f"APGD-{loss.upper()} ε={eps}, {steps} steps, 1 start", False,
                          lambda e=eps, lo=loss: autoattack.apgd(model, x, y, e, loss=lo, steps=steps, seed=0),
                          lambda e=eps, lo=art_loss: AutoProjectedGradientDescent(
                              clf, norm=np.inf, eps=e, eps_step=2 * e, max_iter=steps, nb_random_init=1,
                              batch_size=attacks.ATTACK_BATCH, loss_type=lo, verbose=False).generate(x, onehot[y]),
                          APGD_TOLERANCE))
    return specs


def rows_for(model, ds, label, apgd_steps=100):
    x, y = ds.x_test, ds.y_test
    clf = wrap(model, ds)
    onehot = np.eye(ds.num_classes, dtype=np.float32)
    specs = []
    for eps in (0.1, 0.2, 0.3):
        specs.append((f"FGSM ε={eps}", False, lambda e=eps: attacks.fgsm(model, x, y, e),
                      lambda e=eps: FastGradientMethod(clf, norm=np.inf, eps=e).generate(x, onehot[y])))
    for eps, steps, step, restarts in ((0.1, 10, 0.025, 1), (0.3, 10, 0.075, 1), (0.3, 40, 0.01, 1),
                                       (0.3, 40, 0.01, 3)):
        specs.append((f"L∞ PGD ε={eps}, {steps} steps × {step}, {restarts} start(s)", False,
                      lambda e=eps, s=steps, a=step, r=restarts: attacks.pgd(model, x, y, e, steps=s, step_size=a,
                                                                            restarts=r, seed=0),
                      lambda e=eps, s=steps, a=step, r=restarts: ProjectedGradientDescent(
                          clf, norm=np.inf, eps=e, eps_step=a, max_iter=s, num_random_init=r, batch_size=500,
                          verbose=False).generate(x, onehot[y])))
    specs.append(("L2 PGD ε=2.0, 20 steps × 0.25, 1 start", False,
                  lambda: attacks.pgd(model, x, y, 2.0, norm="l2", steps=20, step_size=0.25, seed=0),
                  lambda: ProjectedGradientDescent(clf, norm=2, eps=2.0, eps_step=0.25, max_iter=20,
                                                   num_random_init=1, batch_size=500,
                                                   verbose=False).generate(x, onehot[y])))
    t3 = np.full(len(y), 3)
    keep = y != 3
    specs.append(("targeted PGD → 3, ε=0.3, 20 steps × 0.0375", True,
                  lambda: attacks.pgd(model, x[keep], t3[keep], 0.3, steps=20, step_size=0.0375, targeted=True,
                                      seed=0),
                  lambda: ProjectedGradientDescent(clf, norm=np.inf, eps=0.3, eps_step=0.0375, max_iter=20,
                                                   targeted=True, num_random_init=1, batch_size=500,
                                                   verbose=False).generate(x[keep], onehot[t3[keep]])))
    specs = [(*spec, TOLERANCE) for spec in specs] + apgd_specs(model, clf, x, y, onehot, apgd_steps)
    out = []
    for name, targeted, ours, ref, tolerance in specs:
        tf.keras.utils.set_random_seed(0)
        t = time.perf_counter()
        a = ours()
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        b = ref().astype(np.float32)
        t_ref = time.perf_counter() - t
        if targeted:
            score_a = np.mean(evaluate.predict(model, a)[0] == 3)
            score_b = np.mean(evaluate.predict(model, b)[0] == 3)
        else:
            score_a, score_b = evaluate.accuracy(model, a, y), evaluate.accuracy(model, b, y)
        out.append((label, name, targeted, score_a, score_b, t_ours, t_ref, tolerance))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robust", action="store_true", help="also compare on the PGD-trained course model")
    parser.add_argument("--apgd-steps", type=int, default=100, help="APGD steps (ART max_iter)")
    parser.add_argument("--fallback", action="store_true", help="train stand-ins instead of the course models")
    args = parser.parse_args(argv)
    ds = data.load_dataset("mnist_5k")
    models_ = [("standard", course_model(ds, "standard", args.fallback))]
    if args.robust:
        models_.append(("PGD-trained", course_model(ds, "pgd", args.fallback)))
    rows = [r for label, m in models_ for r in rows_for(m, ds, label, args.apgd_steps)]
    print("| model | attack | ours | ART | ours (s) | ART (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    ok = True
    for label, name, targeted, a, b, ta, tb, tolerance in rows:
        metric = "success" if targeted else "accuracy"
        worse = (a < b - tolerance) if targeted else (a > b + tolerance)
        ok &= not worse
        print(f"| {label} | {name} ({metric}) | {a:.1%} | {b:.1%} | {ta:.1f} | {tb:.1f} |" + (" **weaker**" if worse else ""))
    print("ours at least as strong as ART everywhere" if ok else "OURS WEAKER somewhere")
    return 0 if ok else 1



if __name__ == "__main__":
    sys.exit(main())

"""The exercises' self-checks: one function per check, and every message a student reads from them.

A notebook's self-check cell is one call, e.g. ``selfcheck.softmax(softmax, logits)``: the function runs the
student's answer on cases chosen so that a do-nothing answer, a constant and the typical mistakes fail, then

- prints its success line(s) and returns ``True`` (or what later cells need) when the answer is right;
- raises ``AssertionError`` with a message saying what is wrong (what the student reads) when it is not;
- prints "Exercise N is not written yet: fill in X above, then run this cell again." and returns ``None`` when it
  meets the stub of the student version: ``NotWrittenYet``, which the stubs written by ``helpers.course.student`` raise
  (also from inside Keras, e.g. a stub ``train_step`` while ``fit`` traces it), or a ``None`` placeholder.

Cells after an exercise that use its result wrap that part in ``with selfcheck.skip_if_not_written(N):``, which
prints "(skipped: exercise N is not written yet)" instead of a traceback.  The messages live here, in one place,
so they are also nbgrader's feedback: a wrong answer fails the autograded check cell with the
message the student reads, and ``graded(CHECK)``, the hidden test at the end of each check cell, fails an unanswered
exercise with the "not written yet" line it printed (``helpers.exercise`` records each check's last outcome).  Each
check costs about what the notebooks' hand-written checks cost before.
Like ``helpers.course``, this module stands apart from the course vocabulary: nothing in ``helpers`` imports it.
It is built on ``helpers.exercise``, the runtime every check shares (stubs, outcomes, the answer's arrays).
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np

from . import attacks, autoattack, evaluate, exercise, report, training
from .models import build_model

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402

__all__ = ["skip_if_not_written", "graded", "softmax", "least_confident", "fgsm",
           "best_linear_gain", "targeted_fgsm", "diagnose_step", "train_step", "training_run", "worst_case_accuracy",
           "fgsm_rs", "collapse_detector", "dense_interval", "dlr", "random_search_step"]

# ------------------------------------------------------------------------------------------------ 01
@exercise.self_check(1, "softmax()")
def softmax(fn, logits):
    """Notebook 01, exercise 1: ``fn(z)`` is the softmax of each row, also where ``exp`` overflows or underflows."""
    import tensorflow as tf

    logits = np.asarray(logits)
    cases = {"test logits": logits, "test logits × 100": 100 * logits,
             "made-up logits (1000, 0, −1000), (−1000, −1001, −1002), (0, 0, 0)":
                 np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1001.0, -1002.0], [0.0, 0.0, 0.0]])}
    for name, z in cases.items():
        with np.errstate(all="ignore"):  # a naive softmax overflows here: the message below says so
            mine = exercise.as_array(fn(z.copy()), z.shape, f"softmax(z) for z of shape {z.shape}")
        ref = tf.nn.softmax(np.asarray(z, np.float64)).numpy()       # TensorFlow's, in float64
        if not np.all(np.isfinite(mine)):
            raise AssertionError(f"{name}: your softmax gave inf or nan — subtract each row's largest logit first")
        if not np.allclose(mine.sum(axis=1), 1.0, atol=1e-6):
            raise AssertionError(f"{name}: every row of a softmax sums to 1, yours sum to "
                                 f"{mine.sum(axis=1).min():.3g} … {mine.sum(axis=1).max():.3g} "
                                 "(normalise each row: sum over axis=1 with keepdims=True)")
        if not np.allclose(mine, ref, atol=1e-6):
            raise AssertionError(f"{name}: largest difference from the exact softmax {np.abs(mine - ref).max():.2g}")
    print("softmax: correct, also where the naive formula overflows")
    return True


@exercise.self_check(3, "least")
def least_confident(least, pred, conf, y, k: int = 6):
    """Notebook 01, exercise 3: ``least`` holds the indices of the ``k`` least confident correct predictions."""
    idx = np.asarray(least)
    if idx.dtype == bool:
        raise AssertionError("`least` is a mask; store the test-set indices of the images (e.g. np.flatnonzero)")
    if idx.ndim != 1 or len(idx) != k or not np.issubdtype(idx.dtype, np.integer):
        raise AssertionError(f"store {k} test-set indices (integers) in `least`, got {least!r:.80}")
    if idx.min() < 0 or idx.max() >= len(y):
        raise AssertionError(f"the indices must lie in [0, {len(y) - 1}] (test-set indices), got {idx.tolist()}")
    if len(np.unique(idx)) != k:
        raise AssertionError(f"`least` must name {k} different images; it repeats some: {idx.tolist()}")
    if not np.all(pred[idx] == y[idx]):
        raise AssertionError(f"all {k} must be correct predictions; images {idx[pred[idx] != y[idx]].tolist()} are "
                             "mistakes (indices into the test set, not into the list of correct ones)")
    right = pred == y
    expected = np.sort(conf[right])[:k]
    if not np.allclose(np.sort(conf[idx]), expected, atol=1e-9):
        raise AssertionError(f"these are not the {k} least confident correct predictions: their confidences are "
                             f"{', '.join(f'{c:.0%}' for c in np.sort(conf[idx]))}; the least confident are "
                             f"{', '.join(f'{c:.0%}' for c in expected)}")
    print(f"the {'six' if k == 6 else k} least confident correct predictions, confidences:",
          ", ".join(f"{c:.0%}" for c in conf[idx]))
    return True


# ------------------------------------------------------------------------------------------------ 02, 04
def _signed_step_hint(mine, x, g, eps, targeted: bool) -> str:
    """Which typical mistake ``mine`` is, given the attacker's gradient ``g`` (correct: clip(x + eps·sign(g)))."""
    s = np.sign(g)
    wrong_way = ("the sign is flipped: step *down* the target's loss, x − eps · sign(∇L(f(x), t))" if targeted
                 else "the sign is flipped: step *up* the loss, x + eps · sign(∇L(f(x), y))")
    candidates = [("your images are the clean images: nothing was added", x),
                  (wrong_way, np.clip(x - eps * s, 0, 1)),
                  ("the step is right but not clipped: clip the result to [0, 1]", x + eps * s)]
    for text, candidate in candidates:
        if np.isclose(mine, candidate, atol=1e-6).mean() > 0.99:
            return text
    size = float(np.abs(mine - x).max())
    return (f"your largest pixel change is {size:.3g} (ε = {eps:.3g}); check the gradient (tape.watch(x)), "
            "its sign, the step of eps and the clip")


@exercise.self_check(1, "my_fgsm()")
def fgsm(fn, model, x, y, eps):
    """Notebook 02, exercise 1: ``fn(model, x, y, eps)`` gives the images ``attacks.fgsm`` gives."""
    x = np.asarray(x, np.float32)
    mine = exercise.as_array(fn(model, x.copy(), np.asarray(y).copy(), eps), x.shape, "my_fgsm(model, x, y, eps)",
                             np.float32)
    ref = attacks.fgsm(model, x, y, eps)
    g = attacks.input_gradient(model, x, y)
    differ = ~np.isclose(ref, mine, atol=1e-6)
    tiny = float(np.abs(g)[differ].max() / max(np.abs(g).max(), 1e-30)) if differ.any() else 0.0
    print(f"pixels identical to helpers.attacks.fgsm: {1 - differ.mean():.2%}; where they differ,\n  |gradient| is at "
          f"most {tiny:.0e} of its largest value (a sign decided by rounding)")
    if not (differ.mean() < 1e-3 and tiny < 1e-4):
        raise AssertionError("your FGSM differs from helpers.attacks.fgsm: "
                             + _signed_step_hint(mine, x, g, eps, targeted=False))
    print(f"accuracy after your FGSM at ε = {eps:.3g}: {evaluate.accuracy(model, mine, y):.1%}")
    return True


@exercise.self_check(1, "my_targeted_fgsm()")
def targeted_fgsm(fn, model, x, t, eps, target_name: str | None = None):
    """Notebook 04, exercise 1: ``fn(model, x, t, eps)`` gives the images ``attacks.fgsm(..., targeted=True)`` gives."""
    x, t = np.asarray(x, np.float32), np.asarray(t)
    mine = exercise.as_array(fn(model, x.copy(), t.copy(), eps), x.shape, "my_targeted_fgsm(model, x, t, eps)",
                             np.float32)
    ref = attacks.fgsm(model, x, t, eps, targeted=True)
    same = float(np.isclose(mine, ref, atol=1e-6).mean())
    if same <= 0.999:
        g = attacks.input_gradient(model, x, t, targeted=True)   # the attacker's direction: down the target's loss
        raise AssertionError(f"only {same:.1%} of the pixels agree with attacks.fgsm(targeted=True): "
                             + _signed_step_hint(mine, x, g, eps, targeted=True))
    hit = float(np.mean(evaluate.predict(model, mine)[0] == t))
    into = f"'{target_name}'" if target_name is not None else "their target classes"
    print(f"your targeted FGSM agrees with helpers on {same:.2%} of the pixels; it turns {hit:.1%} of the "
          f"images into {into}")
    return True


# ------------------------------------------------------------------------------------------------ 03
def _linear_gain_steps(flat, eps, norm, rng, n_random: int = 20):
    """First-order gains ``g·δ`` of the best step of the ball, and of other steps of the same ball."""
    if norm == "inf":
        best = eps * np.abs(flat).sum(axis=1)
        others = {"the max step": eps * np.abs(flat).max(axis=1)}
        for k in range(n_random):
            others[f"random sign step {k}"] = (flat * eps * rng.choice([-1.0, 1.0], flat.shape)).sum(axis=1)
    else:
        best = eps * np.sqrt((flat ** 2).sum(axis=1))
        others = {}
        for k in range(n_random):
            d = rng.standard_normal(flat.shape)
            others[f"random l2 step {k}"] = (flat * eps * d / np.linalg.norm(d, axis=1, keepdims=True)).sum(axis=1)
    return best, others


@exercise.self_check(1, "best_linear_gain()")
def best_linear_gain(fn, g, eps_inf, eps_l2, seed: int = 0):
    """Notebook 03, exercise 1: ``fn(g, eps, norm)`` is the largest first-order gain over the ball, per image."""
    rng = np.random.default_rng(seed)
    batches = {"your gradients": np.asarray(g, np.float64), "a made-up batch": rng.standard_normal((5, 3, 4, 2))}
    for where, grads in batches.items():
        flat = grads.reshape(len(grads), -1)
        for norm, eps, best_name in (("inf", eps_inf, "sign"), ("l2", eps_l2, "l2")):
            call = f"best_linear_gain(g, {eps:.3g}, {norm!r})"
            bound = exercise.as_array(fn(grads.copy(), eps, norm), (len(grads),), call)
            best, others = _linear_gain_steps(flat, eps, norm, rng)
            for name, gain in others.items():
                if np.any(gain > bound * (1 + 1e-6) + 1e-12):
                    raise AssertionError(f"{where}, norm {norm!r}: {name} beats your bound: the bound is wrong")
            if not np.allclose(best, bound, rtol=1e-6, atol=1e-12):
                dual = "ε · ‖g‖₁ (L1 norm: the dual of L∞)" if norm == "inf" else "ε · ‖g‖₂"
                raise AssertionError(f"{where}, norm {norm!r}: the {best_name} step reaches {dual} = "
                                     f"{best[0]:.4g} on the first image, your bound says {bound[0]:.4g}")
    print("best_linear_gain: correct — no step beats it, and the sign / l2 steps reach it\n")
    return True


# ------------------------------------------------------------------------------------------------ 05
def diagnose_step(make_model, x, y, *, eps, attack="fgsm", seed: int = 0) -> tuple[str, str]:
    """Which training step does a hand-written ``train_step`` take?  For the adversarial-training exercise.

    ``make_model(classifier)`` wraps a classifier in the student's ``keras.Model`` subclass.  From the same
    weights, on the batch ``(x, y)``, one plain-SGD step of it is compared with the steps of
    ``AdversarialModel(attack=attack, eps=eps)`` in ``mode="double"`` and ``"adversarial"`` and with ordinary
    training on the clean batch.  Returns ``(match, message)``: ``match`` is ``"double"``, ``"adversarial"``,
    ``"clean"``, ``"scaled"`` (the double step's direction at another size) or ``"none"``; the message says what
    differs.
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)

    def update(wrap):
        keras.utils.set_random_seed(seed)
        clf = build_model(x.shape[1:], 10 if y.max() < 10 else int(y.max()) + 1, seed=seed)
        model = wrap(clf)
        model.compile(optimizer=keras.optimizers.SGD(1.0), loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        before = [w.numpy().copy() for w in clf.trainable_weights]
        model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)  # (x, y) batches, as fit gives
        return np.concatenate([(w.numpy() - b).ravel() for w, b in zip(clf.trainable_weights, before)])

    mine = update(make_model)
    refs = {mode: update(lambda c, m=mode: training.AdversarialModel(c, attack=attack, eps=eps, mode=m))
            for mode in ("double", "adversarial")}
    refs["clean"] = update(lambda c: c)
    rel = {k: float(np.linalg.norm(mine - r) / max(np.linalg.norm(r), 1e-12)) for k, r in refs.items()}
    best = min(rel, key=rel.get)
    if rel[best] < 1e-3:
        return best, _STEP_MESSAGES[best]
    cos = float(mine @ refs["double"] / max(np.linalg.norm(mine) * np.linalg.norm(refs["double"]), 1e-12))
    if cos > 0.999:
        ratio = np.linalg.norm(mine) / np.linalg.norm(refs["double"])
        return "scaled", (f"your update points the right way but is {ratio:.3g} × the expected size: use the mean "
                          "loss of the double batch (a Keras loss object averages), not a sum or a half-batch mean")
    return "none", (f"your update matches none of the steps (closest: {best}, {100 * rel[best]:.0f} % off): attack "
                    "self.classifier at eps, concatenate [x, x_adv] and [y, y], and apply the gradient of the loss")


_STEP_MESSAGES = {
    "double": "your step is the double-batch step (clean + adversarial): correct",
    "adversarial": "your step trains on the adversarial examples only; the exercise asks for the double batch: "
                   "concatenate the clean and the adversarial images (and their labels twice)",
    "clean": "your step is ordinary training on the clean batch: the adversarial examples never reach the loss",
}


@exercise.self_check(1, "train_step")
def train_step(make_model, x, y, eps):
    """Notebook 05, exercise 1: one step of ``make_model(classifier)`` is the FGSM double-batch step
    (``diagnose_step`` compares it, from the same weights, with every candidate step)."""
    match, message = diagnose_step(make_model, x, y, eps=eps)
    if match != "double":
        raise AssertionError(message)
    print("Exercise 1:", message)
    return True


def training_run(results: dict, mine, twin):
    """Notebook 05, after exercise 1: the classifier trained with your step (``results["your step"]``, as
    (clean, FGSM) accuracy) ends where ``training.AdversarialModel``'s twin does."""
    exercise.OUTCOMES.pop("training_run", None)
    if "your step" not in results:
        print(SKIPPED.format(number=1))
        exercise.OUTCOMES["training_run"] = SKIPPED.format(number=1)
        return None
    diff = max(float(np.abs(a - b).max()) for a, b in zip(mine.get_weights(), twin.get_weights()))
    print(f"largest weight difference between the two: {diff:.1e}")
    (c1, f1), (c2, f2) = results["your step"], results["helpers twin"]
    if abs(c1 - c2) > 0.01 or abs(f1 - f2) > 0.01:
        exercise.OUTCOMES["training_run"] = (f"your step and AdversarialModel should agree within 1 point: clean "
                                             f"{c1:.1%} against {c2:.1%}, FGSM {f1:.1%} against {f2:.1%}")
        raise AssertionError(exercise.OUTCOMES["training_run"])
    exercise.OUTCOMES["training_run"] = exercise.PASSED
    print("your step and training.AdversarialModel(attack='fgsm', mode='double') agree within a point, clean and "
          "under FGSM")
    return True


# ------------------------------------------------------------------------------------------------ 06
def _argmax_model(num_classes: int = 10):
    """A Keras model whose logits are its input pixels: its prediction is the brightest pixel's index."""
    import keras

    inputs = keras.Input((1, num_classes, 1))
    return keras.Model(inputs, keras.layers.Flatten()(inputs), name="argmax_of_pixels")


def _images_predicted_as(classes, num_classes: int = 10) -> np.ndarray:
    x = np.zeros((len(classes), 1, num_classes, 1), np.float32)
    x[np.arange(len(classes)), 0, np.asarray(classes), 0] = 1.0
    return x


def _worst_case_made_up(fn) -> None:
    """A made-up case where the per-image worst case differs from every per-attack summary."""
    model, y = _argmax_model(), np.arange(5)
    by_attack = [[9, 1, 9, 3, 4], [0, 9, 9, 3, 9], [0, 1, 2, 3, 4]]     # predictions under three attacks
    advs = [_images_predicted_as(p) for p in by_attack]
    for used, answer in ((advs, 0.2), (advs[:1], 0.6)):
        got = float(exercise.as_array(fn(model, used, y.copy()), (), "worst_case_accuracy(model, x_advs, y)"))
        if abs(got - answer) > 1e-9:
            hint = {0.4: " — that is the strongest single attack's accuracy; take the worst case per image",
                    1.0: " — that counts an image if *any* attack fails on it; it must survive *every* attack",
                    0.0: ""}.get(round(got, 6), "")
            raise AssertionError(f"made-up case ({len(used)} attack(s) on 5 images, {answer:.0%} of the images "
                                 f"survive all of them): your function says {got:.0%}{hint}")


@exercise.self_check(1, "worst_case_accuracy()")
def worst_case_accuracy(fn, zoo: dict, adv: dict, y, attack_names):
    """Notebook 06, exercise 1: ``fn(model, x_advs, y)`` is the fraction of images right under every attack;
    ``adv[name, attack]`` holds each model's adversarial images.  Returns ``{model name: worst case}``."""
    _worst_case_made_up(fn)
    y, worst = np.asarray(y), {}
    for name, model in zoo.items():
        x_advs = [adv[name, a] for a in attack_names]
        worst[name] = float(exercise.as_array(fn(model, x_advs, y.copy()), (),
                                              "worst_case_accuracy(model, x_advs, y)"))
        right = np.stack([evaluate.predict(model, xa)[0] == y for xa in x_advs])
        best_single, truth = float(right.mean(axis=1).min()), float(right.all(axis=0).mean())
        if worst[name] > best_single + 1e-9:
            raise AssertionError(f"{name}: the worst case cannot beat the strongest single attack "
                                 f"({worst[name]:.1%} > {best_single:.1%})")
        if abs(worst[name] - truth) > 1e-9:
            raise AssertionError(f"{name}: {worst[name]:.1%} is not the per-image worst case ({truth:.1%})")
        print(f"{name:14s} worst case over the {len(x_advs)} L∞ attacks: {report.with_interval(worst[name], len(y))}  "
              f"(strongest single attack: {best_single:.1%})")
    return worst


# ------------------------------------------------------------------------------------------------ 07
def _fgsm_rs_reference(model, x, y, eps, alpha, delta):
    start = np.clip(x + delta, 0.0, 1.0)
    g = np.asarray(attacks.input_gradient(model, start, y))
    return np.clip(np.clip(start + alpha * np.sign(g), x - eps, x + eps), 0.0, 1.0), start, g


def _fgsm_rs_hint(mine, model, x, y, start, eps) -> str:
    if np.abs(mine - x).max() > eps + 1e-5:
        return (f"some pixels moved {np.abs(mine - x).max():.3g} from the clean image (ε = {eps:.3g}): project back "
                "into the ε-ball around x (clip to [x − ε, x + ε]), then into [0, 1]")
    if np.isclose(mine, attacks.fgsm(model, x, y, eps), atol=1e-6).mean() > 0.99:
        return "your images are plain FGSM from the clean image: start from x + delta (clipped to [0, 1])"
    if np.isclose(mine, start, atol=1e-6).mean() > 0.99:
        return "your images are the random start itself: the signed gradient step of size alpha is missing"
    return ("start from clip(x + delta, 0, 1), take the gradient there, step alpha · sign(gradient), then clip to "
            "[x − ε, x + ε] and to [0, 1]")


@exercise.self_check(1, "my_fgsm_rs()")
def fgsm_rs(fn, model, x, y, eps, alpha=None, seed: int = 0):
    """Notebook 07, exercise 1: ``fn(model, x, y, eps, alpha, delta)`` is FGSM from the random start ``x + delta``
    (``delta`` uniform in the ε-ball, given), a step ``alpha`` (default 1.25·ε), projected into the ε-ball and
    [0, 1]: compared with the same steps computed here, for two different starts."""
    x = np.asarray(x, np.float32)
    alpha = 1.25 * eps if alpha is None else alpha
    rng = np.random.default_rng(seed)
    for k in range(2):
        delta = rng.uniform(-eps, eps, x.shape).astype(np.float32)
        mine = exercise.as_array(fn(model, x.copy(), np.asarray(y).copy(), eps, alpha, delta.copy()), x.shape,
                                 "my_fgsm_rs(model, x, y, eps, alpha, delta)", np.float32)
        ref, start, g = _fgsm_rs_reference(model, x, y, eps, alpha, delta)
        if np.isclose(ref, mine, atol=1e-5).mean() < 0.999:
            raise AssertionError(f"start {k + 1}: your images differ from FGSM with a random start: "
                                 + _fgsm_rs_hint(mine, model, x, y, start, eps))
    plain = evaluate.accuracy(model, attacks.fgsm(model, x, y, eps), y)
    print(f"your random-start FGSM matches the reference on two random starts; accuracy after it at ε = {eps:.3g}: "
          f"{evaluate.accuracy(model, mine, y):.1%} (plain FGSM: {plain:.1%})")
    return True


class _ReplayModel:
    """Stands in for the model while a callback replays a curve: fit reads only ``stop_training``."""

    stop_training = False


_HIGH = [0.9] * 12
#: Made-up curves: (name, val_adv_accuracy per epoch, adv_accuracy per epoch, epoch index of the collapse or None).
#: The rule is ``training.find_collapse``'s: PGD accuracy held >= 0.3 for two epochs in a row, then >= 0.2 lower
#: within two epochs while the accuracy under the training attack is still >= 0.7.
COLLAPSE_CASES = [
    ("collapse", [0.1, 0.3, 0.45, 0.5, 0.48, 0.04, 0.01], _HIGH[:7], 5),
    ("noisy climb", [0.1, 0.4, 0.3, 0.5, 0.42, 0.6], _HIGH[:6], None),
    ("one lucky epoch", [0.05, 0.1, 0.41, 0.05, 0.4, 0.56], _HIGH[:6], None),
    ("fall over two epochs", [0.2, 0.6, 0.62, 0.5, 0.38, 0.3], _HIGH[:6], 4),
    ("everything fell", [0.1, 0.4, 0.5, 0.1, 0.1], [0.2, 0.6, 0.7, 0.3, 0.3], None),
]
COLLAPSE_RULE = ("use training.find_collapse on the curves so far (val_adv_accuracy and adv_accuracy, one value per "
                 "epoch): it is the course's one rule")


def _replay(cls, pgd, own):
    """Feed the curves to a fresh ``cls()`` as ``fit`` would (stopping when asked); returns ``(detector, the epoch
    after which stop_training was first True, or None)``."""
    detector, model = cls(), _ReplayModel()
    detector.set_model(model)
    for epoch, (value, mine) in enumerate(zip(pgd, own)):
        detector.on_epoch_end(epoch, {"loss": 1.0, "accuracy": 0.9, "adv_accuracy": float(mine), "val_loss": 1.0,
                                      "val_clean_accuracy": 0.95, "val_adv_accuracy": float(value)})
        if model.stop_training:
            return detector, epoch
    return detector, None


def _check_replay(cls, where, pgd, own, expected) -> int | None:
    detector, stopped = _replay(cls, pgd, own)
    if expected is None:
        if stopped is not None or detector.collapsed_at is not None:
            raise AssertionError(f"{where}: no collapse, but your detector stopped training after epoch index "
                                 f"{stopped} (collapsed_at = {detector.collapsed_at}): {COLLAPSE_RULE}")
        return None
    if stopped is None or stopped > expected:
        raise AssertionError(f"{where}: the collapse is at epoch index {expected}, but training was not stopped "
                             f"there (collapsed_at = {detector.collapsed_at}): set self.model.stop_training = "
                             f"True when you detect it, and {COLLAPSE_RULE}")
    if stopped < expected:
        raise AssertionError(f"{where}: your detector stopped training after epoch index {stopped}, before the "
                             f"collapse at index {expected}: {COLLAPSE_RULE}")
    if detector.collapsed_at != expected:
        raise AssertionError(f"{where}: self.collapsed_at should be the epoch index on_epoch_end received "
                             f"({expected}), got {detector.collapsed_at!r}")
    return expected


@exercise.self_check(1, "on_epoch_end()")
def collapse_detector(cls, runs: dict, width: int = 28):
    """Notebook 08, exercise 1: ``cls`` (a Keras callback class) stops training where ``training.find_collapse``
    finds a collapse, and not before.  Replays made-up curves, then each real run of ``runs`` (``{run name:
    (val_adv_accuracy per epoch, adv_accuracy per epoch)}``) and prints where it fires.  Returns
    ``{run name: collapsed_at}``."""
    for name, pgd, own, expected in COLLAPSE_CASES:
        _check_replay(cls, f"made-up curves '{name}' {pgd}", pgd, own, expected)
    found = {}
    for name, (pgd, own) in runs.items():
        rule = training.find_collapse(list(pgd), list(own))
        found[name] = epoch = _check_replay(cls, f"run {name!r}", list(pgd), list(own),
                                            None if rule is None else rule[1])
        print(f"{name:{width}s} " + ("no collapse" if epoch is None else f"collapse detected after epoch {epoch + 1}"))
    return found


# ------------------------------------------------------------------------------------------------ 09
def _interval_reference(lower, upper, W, b):
    mu, r = (upper + lower) / 2, (upper - lower) / 2
    return mu @ W + b - r @ np.abs(W), mu @ W + b + r @ np.abs(W)


def _box(fn, lower, upper, W, b, where: str):
    out = fn(lower.copy(), upper.copy(), W.copy(), b.copy())
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError(f"{where}: dense_interval should return the pair (lower, upper), got "
                             f"{type(out).__name__}")
    shape = (len(lower), W.shape[1])
    lo, hi = (exercise.as_array(o, shape, f"dense_interval (the {k} bound, {where})")
              for o, k in zip(out, ("lower", "upper")))
    if np.any(lo > hi + 1e-6):
        raise AssertionError(f"{where}: some lower bounds lie above their upper bounds — is the radius r·|W| "
                             "(absolute values of the weights), so that it is never negative?")
    ref_lo, ref_hi = _interval_reference(np.asarray(lower, np.float64), np.asarray(upper, np.float64), W, b)
    if not (np.allclose(lo, ref_lo, rtol=1e-4, atol=1e-3) and np.allclose(hi, ref_hi, rtol=1e-4, atol=1e-3)):
        raise AssertionError(f"{where}: your box differs from the interval rule: centre μW + b, radius r|W| "
                             f"(largest difference {max(np.abs(lo - ref_lo).max(), np.abs(hi - ref_hi).max()):.3g})")
    return lo, hi


@exercise.self_check(1, "dense_interval()")
def dense_interval(fn, box, W, b, certified=None, seed: int = 0, points: int = 200):
    """Notebook 09, exercise 1: ``fn(lower, upper, W, b)`` is the interval box of ``h @ W + b`` for ``h`` in the
    box ``box = (lower, upper)``.  Checked on a made-up layer, against the rule, against ``certified`` (certify's
    box after the layer's fused ReLU, if given) and against ``points`` random points of the box per image."""
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    _box(fn, np.array([[0.0, -1.0]]), np.array([[1.0, 1.0]]), np.array([[1.0, -2.0, 0.5], [3.0, 0.5, -1.0]]),
         np.array([0.5, -1.0, 0.0]), "a made-up layer with negative weights")
    lower, upper = (np.asarray(v, np.float64) for v in box)
    lo, hi = _box(fn, lower, upper, W, b, "the dense layer")
    if certified is not None and not (np.allclose(np.maximum(lo, 0), certified[0], atol=1e-4)
                                      and np.allclose(np.maximum(hi, 0), certified[1], atol=1e-4)):
        raise AssertionError("your box differs from certify's: centre W·μ + b, radius |W|·r")
    rng = np.random.default_rng(seed)
    h = lower + rng.uniform(size=(points, *lower.shape)) * (upper - lower)
    z = h @ W + b                                              # random points of the input box, per image
    if not (np.all(z >= lo - 1e-4) and np.all(z <= hi + 1e-4)):
        raise AssertionError("a random point of the box falls outside your bounds")
    print("dense_interval: matches certify, and contains every random point of the box")
    return True


# ------------------------------------------------------------------------------------------------ 10
@exercise.self_check(1, "my_dlr()")
def dlr(fn, z, y):
    """Notebook 10, exercise 1: ``fn(z, y)`` is ``autoattack.dlr_loss`` and unchanged by ``z -> 1000·z + 7``."""
    import tensorflow as tf

    made_up = (np.array([[3.0, 1.0, 2.0, 0.0], [0.0, 5.0, 4.0, 1.0], [2.0, 2.5, -1.0, 7.0]]), np.array([1, 1, 0]))
    for where, (logits, labels) in {"made-up logits (sorted ≠ class order)": made_up,
                                    "the model's logits": (np.asarray(z), np.asarray(y))}.items():
        call = f"my_dlr(z, y) for z of shape {logits.shape}"
        mine = exercise.as_array(fn(logits.copy(), labels.copy()), (len(logits),), call)
        ref = autoattack.dlr_loss(tf.constant(logits, tf.float32), tf.constant(labels)).numpy()
        if not np.allclose(mine, ref, atol=1e-4):
            raise AssertionError(f"{where}: differs from autoattack.dlr_loss by up to {np.abs(mine - ref).max():.2g} "
                                 "(the denominator is z_π1 − z_π3: the largest minus the third-largest logit, "
                                 "after sorting)")
        scaled = exercise.as_array(fn(1000 * logits + 7, labels.copy()), (len(logits),), call)
        if not np.allclose(scaled, mine, atol=1e-4):
            raise AssertionError(f"{where}: DLR must not change when logits are scaled and shifted (1000·z + 7)")
    print("my_dlr: matches attacks.dlr_loss, and is unchanged by z -> 1000·z + 7")
    return True


def _square_changes(new, old, side: int) -> int | None:
    """Index of an image whose change from ``old`` to ``new`` does not fit in one side × side square."""
    for i in np.flatnonzero(np.any(new != old, axis=(1, 2, 3))):
        rows, cols = np.nonzero(np.any(new[i] != old[i], axis=-1))
        if rows.max() - rows.min() >= side or cols.max() - cols.min() >= side:
            return int(i)
    return None


@exercise.self_check(2, "random_search_step()")
def random_search_step(fn, model, x, y, eps, *, steps: int = 30, seed: int = 0, side: int = 5):
    """Notebook 10, exercise 2: ``steps`` calls of ``fn(model, x, x_best, y, eps, rng)`` never raise an image's
    margin, change at most one side × side square of each image per step, stay in the ε-box, and make progress."""
    x, y = np.asarray(x, np.float32), np.asarray(y)
    rng = np.random.default_rng(seed)

    def margins(images):
        return autoattack.margin(evaluate.predict_logits(model, images), y).numpy()

    x_rs, history = x.copy(), [margins(x)]
    for step in range(steps):
        new = exercise.as_array(fn(model, x.copy(), x_rs.copy(), y.copy(), eps, rng), x.shape,
                     "random_search_step(model, x, x_best, y, eps, rng)", np.float32)
        if np.abs(new - x).max() > eps + 1e-6 or new.min() < 0 or new.max() > 1:
            raise AssertionError(f"step {step + 1}: stay in the ε-box around x and in [0, 1] (set the square to "
                                 "x ± eps, not x_best ± eps, then clip)")
        bad = _square_changes(new, x_rs, side)
        if bad is not None:
            raise AssertionError(f"step {step + 1}: image {bad} changed outside one {side}×{side} square")
        history.append(margins(new))
        if np.any(history[-1] > history[-2] + 1e-5):
            raise AssertionError(f"step {step + 1}: the margin of an image must never go up: keep the proposal "
                                 "only where its margin is lower than x_best's")
        x_rs = new
    improved = float(np.mean(history[-1] < history[0] - 1e-6))
    if improved < 0.5:
        raise AssertionError(f"after {steps} steps only {improved:.0%} of the images have a lower margin than at the "
                             "start: keep each proposal where it lowers the margin (and return the new images)")
    print(f"{steps} random-search steps: mean margin {history[0].mean():.2f} -> {history[-1].mean():.2f}; "
          f"accuracy {evaluate.accuracy(model, x, y):.0%} -> {evaluate.accuracy(model, x_rs, y):.0%}")
    return True


# ------------------------------------------------------------------------------------------------ grading
NOT_RUN = "the self-check {check}() did not run: run the cells above it, then this one"
SKIPPED = "(skipped: exercise {number} is not written yet)"
#: Checks that compare the answer with a function of ``helpers``, which an answer could simply call and pass:
#: ``{check: (those functions, how the check calls the answer on a few of its inputs)}``.
SHORTCUTS = {
    "fgsm": ((attacks.fgsm, attacks.gradient_attack, attacks.pgd),
             lambda fn, model, x, y, eps, **_: fn(model, x[:4], y[:4], eps)),
    "targeted_fgsm": ((attacks.fgsm, attacks.gradient_attack, attacks.pgd),
                      lambda fn, model, x, t, eps, *_, **__: fn(model, x[:4], t[:4], eps)),
    "fgsm_rs": ((attacks.fgsm, attacks.gradient_attack, attacks.pgd),
                lambda fn, model, x, y, eps, alpha=None, **_: fn(model, x[:4], y[:4], eps, alpha or 1.25 * eps,
                                                                 np.zeros_like(np.asarray(x[:4], np.float32)))),
    "dlr": ((autoattack.dlr_loss,), lambda fn, z, y, **_: fn(np.asarray(z)[:4], np.asarray(y)[:4])),
}
SHORTCUT = ("your answer calls {name}, the function the self-check compares it with: the exercise is to write it "
            "yourself")


def graded(check: str) -> None:
    """The hidden test of an autograded self-check cell (``helpers.course.grading``): raise ``AssertionError``
    unless the last run of ``selfcheck.<check>`` in this kernel passed, with the message the student read from it;
    for the checks of ``SHORTCUTS``, also if the answer calls the ``helpers`` function it is compared with."""
    outcome = exercise.OUTCOMES.get(check)
    if outcome != exercise.PASSED:
        raise AssertionError(outcome if outcome is not None else NOT_RUN.format(check=check))
    if check in SHORTCUTS and check in exercise.CALLS:
        _no_shortcut(check)


def _no_shortcut(check: str) -> None:
    """Call the answer again, watching for a call of the functions of ``SHORTCUTS[check]`` by their code, so that
    every name they are called by counts (``autoattack.dlr_loss``, ``from helpers.attacks import fgsm as f``)."""
    targets, call = SHORTCUTS[check]
    answer, args, kwargs = exercise.CALLS[check]
    used = []
    try:
        _watch_calls(targets, lambda: call(answer, *args, **kwargs), used)
    finally:   # an answer that fails on its second run fails the hidden test anyway, but a shortcut is named first
        if used:
            raise AssertionError(SHORTCUT.format(name=f"{used[0].__module__}.{used[0].__qualname__}")) from None


def _code_objects(fn) -> list:
    """The code objects that run when ``fn`` is called: its own, and those of the functions it wraps
    (``functools.wraps``' ``__wrapped__``, ``tf.function``'s ``python_function``)."""
    codes = []
    while fn is not None and len(codes) < 8:
        if getattr(fn, "__code__", None) is not None:
            codes.append(fn.__code__)
        fn = getattr(fn, "__wrapped__", None) or getattr(fn, "python_function", None)
    return codes


def _watch_calls(targets, run, used: list) -> None:
    """Run ``run()`` under a profiler that appends to ``used`` the first of ``targets`` it calls, whatever name it is
    called by (and then stops watching)."""
    watched = {code: fn for fn in targets for code in _code_objects(fn)}

    def watch(frame, event, arg):
        if event == "call" and frame.f_code in watched:
            used.append(watched[frame.f_code])
            sys.setprofile(None)

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        run()
    finally:
        sys.setprofile(previous)


@contextlib.contextmanager
def skip_if_not_written(number: int):
    """Run the block; if an exercise stub raises in it, print one "skipped" line instead of failing."""
    try:
        yield
    except NotImplementedError as err:
        if not exercise.is_stub(err):
            raise
        print(SKIPPED.format(number=number))

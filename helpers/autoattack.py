"""AutoAttack's attacks (Croce & Hein 2020): ``apgd`` (white box) and ``square`` (black box), with their losses.

``apgd`` is PGD that tunes its own step size per example, maximising the cross-entropy or the scale-free
``dlr_loss``; ``square`` is a random search that only reads the model's scores (``margin``), so gradient masking
cannot fool it.  Built from the public names of ``helpers.attacks`` (losses and their input gradient, step rule,
projection, argument checks) and run by the eager engine of ``helpers._compiled`` (seeded chunks of
``attacks.EVAL_BATCH``, sub-batches of ``attacks.ATTACK_BATCH``, compiled blocks that drop finished images).  Every
name here is also reachable as ``helpers.attacks.<name>``.  Eager only: inside a ``tf.function`` use ``attacks.pgd``.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np

from . import attacks
from ._checks import check_bool, check_choice, check_positive_int
from ._compiled import (SCALAR_SPEC, SEED_SPEC, compiled, fold_seed, input_specs, new_seed, run_blocks, run_chunks,
                        run_sub_batches, tracing)

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import tensorflow as tf  # noqa: E402

APGD_LOSSES = ("ce", "dlr")
_APGD_RHO = 0.75  # halve the step when fewer than this fraction of the steps since the last checkpoint helped
_APGD_MOMENTUM = 0.75
#: Square: initial fraction of pixels a square covers (AutoAttack's 0.8), and the query count its schedule of
#: square sizes is laid out for.  The schedule depends on the query *index* only, never on the budget, so a run
#: with more queries continues the run with fewer (same seed): more queries can never do worse.  At the default
#: budget of 1,000 queries it is AutoAttack's schedule (rescaled to the budget); measured on the PGD-trained MNIST
#: model at ε = 0.3, laying it out on 1,000 queries breaks 2.6 points more images in 1,000 queries than on 10,000
#: (the unscaled schedule), and as many as a schedule rescaled to 3,000 when given 3,000 queries.
SQUARE_P_INIT = 0.8
SQUARE_SCHEDULE_QUERIES = 1_000
SQUARE_BLOCK = 50  # queries per compiled block; finished images are dropped between blocks
__all__ = ["APGD_LOSSES", "SQUARE_P_INIT", "SQUARE_SCHEDULE_QUERIES", "SQUARE_BLOCK", "margin", "dlr_loss", "apgd",
           "apgd_checkpoints", "ApgdState", "square", "square_sides"]
_TINY = 1e-12


def margin(logits, y):
    """``z_y - max_{j≠y} z_j`` per example (float32): positive while ``y`` wins, ≤ 0 once another class does."""
    logits = tf.cast(logits, tf.float32)
    onehot = tf.one_hot(y, tf.shape(logits)[-1], on_value=True, off_value=False)
    z_y = tf.reduce_sum(tf.where(onehot, logits, 0.0), axis=-1)
    return z_y - tf.reduce_max(tf.where(onehot, -np.inf, logits), axis=-1)


def dlr_loss(logits, y, *, targeted: bool = False):
    """Difference-of-logits-ratio loss (Croce & Hein 2020), per example, as the attacker's objective (maximised).

    Untargeted (``y`` = true classes): ``-(z_y - max_{j≠y} z_j) / (z_π1 - z_π3 + 1e-12)``, π sorting the logits in
    decreasing order.  Targeted (``y`` = target classes ``t``): ``-(z_c - z_t) / (z_π1 - (z_π3 + z_π4)/2 + 1e-12)``
    where ``c`` is the strongest non-target class (the true class while the image is still classified correctly;
    APGD-T writes the true class there, which the course's targeted convention does not pass).
    Both are unchanged when every logit of an example is shifted or scaled by a positive factor, so a model cannot
    hide behind large or saturated logits as it can with the cross-entropy.  Needs ≥ 3 classes (4 targeted).
    """
    logits = tf.cast(logits, tf.float32)
    k = 4 if targeted else 3
    if logits.shape[-1] is not None and logits.shape[-1] < k:
        raise ValueError(f"dlr_loss{' (targeted)' if targeted else ''} needs at least {k} classes, got logits of "
                         f"shape {tuple(logits.shape)}")
    top = tf.math.top_k(logits, k=k).values
    if targeted:
        return margin(logits, y) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _TINY)
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + _TINY)


def _apgd_objective(loss, targeted):
    """The per-example objective APGD maximises, as ``fn(logits, y)``."""
    if loss == "dlr":
        return partial(dlr_loss, targeted=targeted)
    return _negated_ce if targeted else attacks.cross_entropy


def _negated_ce(logits, y):
    return -attacks.cross_entropy(logits, y)


def apgd_checkpoints(steps: int) -> dict:
    """``{iteration: window}``: after which (0-based) iterations APGD checks its progress, over how many steps.

    Checkpoints at ``ceil(p_j · steps)`` with p₀ = 0, p₁ = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)
    (Croce & Hein 2020), computed in whole steps as the reference implementation does.
    """
    window, shortest, shrink = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    checks, since = {}, 0
    for i in range(steps):
        since += 1
        if since == window:
            checks[i], window, since = window, max(window - shrink, shortest), 0
    return checks


class ApgdState(NamedTuple):
    """APGD's per-example state: tensors inside a compiled block, NumPy arrays between blocks."""
    x_adv: object          # the current iterate
    x_prev: object         # the previous iterate (for the momentum)
    grad: object           # the objective's gradient at ``x_adv``
    step: object           # the step size η, per example
    x_best: object         # the point of highest objective so far ...
    grad_best: object      # ... its gradient ...
    obj_best: object       # ... and its objective
    obj_prev: object       # the objective at the previous iterate
    n_up: object           # steps since the last checkpoint that raised the objective
    best_at_check: object  # ``obj_best`` at the last checkpoint
    halved: object         # was η halved at the last checkpoint?
    x_found: object        # a misclassified iterate, once one is found ...
    found: object          # ... and whether one was


_APGD_VECTORS = ("step", "obj_best", "obj_prev", "n_up", "best_at_check")  # float32 per example; images otherwise
_APGD_FLAGS = ("halved", "found")  # bool per example


def _apgd_empty(x) -> ApgdState:
    """An ``ApgdState`` of NumPy arrays for the images ``x``, to be filled."""
    return ApgdState(**{name: np.empty(len(x), bool) if name in _APGD_FLAGS else np.empty(len(x), np.float32)
                        if name in _APGD_VECTORS else np.empty_like(x) for name in ApgdState._fields})


def _apgd_start(x, eps, norm, seed):
    """APGD's random start (eager TF): a random point on the sphere of radius ε around ``x``, clipped to [0, 1]."""
    noise = (tf.random.stateless_uniform(x.shape, seed, -1.0, 1.0) if norm == "inf"
             else tf.random.stateless_normal(x.shape, seed))
    rule = "max" if norm == "inf" else "l2"
    return tf.clip_by_value(x + attacks.step_rule(noise, eps, rule), 0.0, 1.0).numpy()


def _apgd_init(model, x_adv, y, eps, *, loss, targeted):
    """APGD's state at its start ``x_adv`` (TF code): one gradient pass."""
    obj, grad, logits = attacks.loss_gradient(model, x_adv, y, False, _apgd_objective(loss, targeted), fast=True)
    n = tf.shape(x_adv)[:1]
    return ApgdState(x_adv=x_adv, x_prev=x_adv, grad=grad, step=tf.fill(n, 2.0 * eps), x_best=x_adv, grad_best=grad,
                     obj_best=obj, obj_prev=obj, n_up=tf.zeros(n), best_at_check=obj, halved=tf.ones(n, tf.bool),
                     x_found=x_adv, found=attacks.succeeded(logits, y, targeted))


def _apgd_move(x, s, eps, norm, momentum):
    """Gradient step of per-example size ``s.step``, projection, then momentum (Croce & Hein's eq. 2), projected."""
    def into_ball(z):
        return tf.clip_by_value(x + attacks.project(z - x, eps, norm), 0.0, 1.0)

    rule = "sign" if norm == "inf" else "l2"
    z = into_ball(s.x_adv + attacks.step_rule(s.grad, tf.reshape(s.step, [-1, 1, 1, 1]), rule))
    return into_ball(s.x_adv + momentum * (z - s.x_adv) + (1.0 - momentum) * (s.x_adv - s.x_prev))


def _apgd_step(model, x, y, eps, s, check, window, momentum, *, norm, loss, targeted):
    """One APGD iteration on a batch (TF code); at a checkpoint (``check``), halve the step where progress stalled."""
    where = attacks.per_example_where
    new = _apgd_move(x, s, eps, norm, momentum)
    obj, grad, logits = attacks.loss_gradient(model, new, y, False, _apgd_objective(loss, targeted), fast=True)
    fooled = attacks.succeeded(logits, y, targeted)
    n_up = s.n_up + tf.cast(obj > s.obj_prev, tf.float32)
    better = obj > s.obj_best
    x_best, grad_best = where(better, new, s.x_best), where(better, grad, s.grad_best)
    obj_best = tf.maximum(obj, s.obj_best)
    # Halve where fewer than ρ of the window's steps raised the objective, or where neither the step size nor the
    # best objective changed since the last checkpoint; the halved examples restart from their best point.
    halve = check & ((n_up <= window * _APGD_RHO) | (~s.halved & (s.best_at_check >= obj_best)))
    return ApgdState(
        x_adv=where(halve, x_best, new), x_prev=s.x_adv, grad=where(halve, grad_best, grad),
        step=tf.where(halve, s.step / 2.0, s.step), x_best=x_best, grad_best=grad_best, obj_best=obj_best,
        obj_prev=obj, n_up=tf.where(check, 0.0, n_up), best_at_check=tf.where(check, obj_best, s.best_at_check),
        halved=tf.where(check, halve, s.halved), x_found=where(fooled, new, s.x_found), found=s.found | fooled)


def _apgd_steps(model, x, y, *args, steps, norm, loss, targeted):
    """``steps`` APGD iterations, unrolled (TF code).  ``args``: the ``ApgdState`` tensors, then ``eps`` and the
    per-step schedules ``checks`` (bool), ``windows`` and ``momenta`` (float32), each of length ``steps``."""
    n = len(ApgdState._fields)
    state, (eps, checks, windows, momenta) = ApgdState(*args[:n]), args[n:]
    for j in range(steps):
        state = _apgd_step(model, x, y, eps, state, checks[j], windows[j], momenta[j], norm=norm, loss=loss,
                           targeted=targeted)
    return state


def _check_attack_model(model, loss="ce", targeted=False):
    classes = int(model.output_shape[-1])
    needed = (4 if targeted else 3) if loss == "dlr" else 2
    if classes < needed:
        raise ValueError(f"loss={loss!r}{' targeted' if targeted else ''} needs a model with at least {needed} "
                         f"classes, got {classes}")


def apgd(model, x, y, eps, *, loss: str = "ce", steps: int = 100, restarts: int = 1, norm: str = "inf",
         targeted: bool = False, seed: int | None = 0):
    """Auto-PGD (Croce & Hein 2020): PGD with momentum and a step size that tunes itself, per example.
    Threat model: white box (gradients), ``||x' - x|| <= eps`` in the ``norm`` (``"inf"`` or ``"l2"``), pixels in
    [0, 1]; untargeted (``y`` = true classes), or with ``targeted=True`` toward the classes ``y``.
    ``loss``: ``"ce"`` (cross-entropy) or ``"dlr"`` (``dlr_loss``: invariant to the scale of the logits, so it
    sees through models that only saturate their softmax).  From a random point on the ε-sphere, each of
    ``steps`` iterations takes a steepest-ascent step (sign of the gradient for L∞, its direction for L2) of
    per-example size η (first 2ε), projects, and adds momentum 0.75.  At checkpoints 22 %, 41 %, 57 %, … of the
    run (``apgd_checkpoints``) η halves wherever fewer than 75 % of the steps since the last checkpoint raised the
    objective, or neither η nor the best objective changed since it; those examples restart from their best point.
    As in AutoAttack, an image counts as broken as soon as one iterate is misclassified: images the model already
    gets wrong are returned unchanged, broken images drop out of the batch (their misclassified iterate is
    returned), and each of ``restarts`` random restarts only attacks images not broken yet; for the others the
    point of highest objective over all restarts is returned.  Costs ``steps + 1`` gradient passes per image and
    restart at most.  ``seed`` fixes the random starts (``None``: drawn from NumPy's global generator).
    Eager only (compiled blocks of ``attacks.BLOCK_STEPS`` steps on sub-batches of ``attacks.ATTACK_BATCH`` images,
    driven from Python); inside your own ``tf.function`` use ``attacks.pgd``.
    """
    check_choice("loss", loss, APGD_LOSSES)
    check_choice("norm", norm, attacks.NORMS)
    targeted = check_bool("targeted", targeted)
    steps, restarts = check_positive_int(steps, "steps"), check_positive_int(restarts, "restarts")
    if tracing(x, y, eps):
        raise TypeError("apgd runs eagerly (compiled blocks driven from Python); inside a tf.function use pgd")
    eps = attacks.check_attack_args(model, x, y, eps, targeted)
    _check_attack_model(model, loss, targeted)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    out, base_seed = x.copy(), new_seed(seed)
    if eps == 0.0 or not len(x):
        return out
    todo = np.flatnonzero(~attacks.already_successful(model, x, y, targeted))
    config = dict(steps=steps, restarts=restarts, norm=norm, loss=loss, targeted=targeted)
    return run_chunks(lambda xc, yc, seed_c: _apgd_chunk(model, xc, yc, eps, seed_c, **config), x, y, base_seed,
                      (out,), batch=attacks.EVAL_BATCH, indices=todo)[0]


def _apgd_chunk(model, x, y, eps, seed, *, steps, restarts, norm, loss, targeted):
    """APGD with restarts on one chunk: broken images keep their misclassified point, the others their best."""
    best, best_obj, todo = x.copy(), np.full(len(x), -np.inf, np.float32), np.arange(len(x))
    for r in range(restarts):
        state = _apgd_run(model, x[todo], y[todo], eps, fold_seed(seed, r), steps=steps, norm=norm, loss=loss,
                          targeted=targeted)
        found, obj = state.found, state.obj_best
        best[todo[found]] = state.x_found[found]
        better = ~found & (obj > best_obj[todo])
        best[todo[better]], best_obj[todo[better]] = state.x_best[better], obj[better]
        todo = todo[~found]
        if not todo.size:
            break
    return best


def _apgd_schedule(steps):
    """Per step: is it a checkpoint, the window it checks, and the momentum (none at the first step)."""
    checks, windows = np.zeros(steps, bool), np.zeros(steps, np.float32)
    for i, window in apgd_checkpoints(steps).items():
        checks[i], windows[i] = True, window
    momenta = np.full(steps, _APGD_MOMENTUM, np.float32)
    momenta[0] = 1.0  # the first step has no previous step to carry on
    return checks, windows, momenta


def _apgd_specs(model, k):
    image = input_specs(model)[0]
    vec, flags = tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None,), tf.bool)
    state = [flags if name in _APGD_FLAGS else vec if name in _APGD_VECTORS else image for name in ApgdState._fields]
    schedule = [tf.TensorSpec((k,), tf.bool), tf.TensorSpec((k,), tf.float32), tf.TensorSpec((k,), tf.float32)]
    return [*input_specs(model), *state, SCALAR_SPEC, *schedule]


def _apgd_run(model, x, y, eps, seed, *, steps, norm, loss, targeted):
    """One APGD run from a random start: compiled blocks of ``attacks.BLOCK_STEPS`` steps on sub-batches of
    unbroken images.  Returns the final ``ApgdState`` (NumPy arrays)."""
    schedule, eps_t = _apgd_schedule(steps), tf.constant(eps, tf.float32)
    state = _apgd_empty(x)
    init = compiled(model, "apgd-init", (loss, targeted), partial(_apgd_init, loss=loss, targeted=targeted),
                    [*input_specs(model), SCALAR_SPEC])
    run_sub_batches(init, np.arange(len(x)), (_apgd_start(x, eps, norm, seed), y), state, (eps_t,),
                    batch=attacks.ATTACK_BATCH)

    def block(i, k):
        fn = compiled(model, "apgd-steps", (k, norm, loss, targeted),
                      partial(_apgd_steps, steps=k, norm=norm, loss=loss, targeted=targeted), _apgd_specs(model, k))
        return fn, (eps_t, *[tf.constant(a[i:i + k]) for a in schedule])

    run_blocks(block, steps, attacks.BLOCK_STEPS, (x, y, *state), state, lambda rows: ~state.found[rows],
               batch=attacks.ATTACK_BATCH)
    return state


def square_sides(queries: int, height: int, width: int) -> np.ndarray:
    """Side (pixels) of the square that Square tries at each of its ``queries - 1`` iterations after the first query.

    The fraction of pixels ``p`` starts at ``SQUARE_P_INIT`` and halves after 0.1 %, 0.5 %, 2 %, 5 %, 10 %, 20 %,
    40 %, 60 % and 80 % of ``SQUARE_SCHEDULE_QUERIES`` iterations (Andriushchenko et al.'s schedule; on a fixed
    horizon, so it never depends on the budget ``queries``), then stays at its smallest; side =
    ``round(sqrt(p · height · width))``, between 1 and ``min(height, width) - 1``.
    """
    halvings = np.array([10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
    it = (np.arange(max(queries - 1, 0)) * (10_000 / SQUARE_SCHEDULE_QUERIES)).astype(np.int64)
    p = SQUARE_P_INIT / 2.0 ** np.searchsorted(halvings, it, side="left")
    sides = np.rint(np.sqrt(p * height * width)).astype(np.int32)
    return np.clip(sides, 1, max(min(height, width) - 1, 1))


def _square_init(model, x, y, index, eps, total, seed):
    """Square's start (TF code): vertical stripes of ±ε (one sign per image, column and channel); one query."""
    shape = tf.shape(x)
    signs = tf.gather(tf.random.stateless_uniform(tf.stack([total, shape[2], shape[3]]), seed), index) < 0.5
    x_adv = tf.clip_by_value(x + eps * tf.where(signs, -1.0, 1.0)[:, None], 0.0, 1.0)
    return x_adv, margin(model(x_adv, training=False), y)


def _square_candidate(x, x_best, eps, side, draw):
    """Each image's proposal (TF code): a ``side``×``side`` square at a random place set to ``x ± ε`` (one random
    sign per channel), clipped to [0, 1]; when that changes nothing, the signs of a random non-empty set of
    channels are flipped (the reference redraws until something changes)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    top = tf.cast(draw[:, 0] * tf.cast(height - side + 1, tf.float32), tf.int32)
    left = tf.cast(draw[:, 1] * tf.cast(width - side + 1, tf.float32), tf.int32)
    rows, cols = tf.range(height)[None], tf.range(width)[None]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    mask = in_rows[:, :, None, None] & in_cols[:, None, :, None]
    sign = tf.where(draw[:, 3:] < 0.5, -1.0, 1.0)[:, None, None, :]
    flips = 1 + tf.cast(draw[:, 2] * (2.0**channels - 1.0), tf.int32)  # a non-empty set of channels, as bits
    flip = tf.bitwise.bitwise_and(tf.bitwise.right_shift(flips[:, None], tf.range(channels)[None]), 1)
    candidate = tf.where(mask, tf.clip_by_value(x + eps * sign, 0.0, 1.0), x_best)
    unchanged = tf.reduce_all(tf.abs(candidate - x_best) < 1e-7, axis=[1, 2, 3])
    flipped = sign * tf.where(flip > 0, -1.0, 1.0)[:, None, None, :]
    flipped = tf.where(mask, tf.clip_by_value(x + eps * flipped, 0.0, 1.0), x_best)
    return attacks.per_example_where(unchanged, flipped, candidate)


class _SquareBlock(NamedTuple):
    """What a block of Square iterations shares across its images (tensors): ``eps``, the chunk's image count
    ``total``, the ``seed``, the global iteration ``first`` of the block's first step and the square ``sides`` of
    its iterations."""
    eps: tf.Tensor
    total: tf.Tensor
    seed: tf.Tensor
    first: tf.Tensor
    sides: tf.Tensor


def _square_steps(model, x, y, x_best, best, used, index, block):
    """``len(block.sides)`` Square iterations on a batch (TF code, a graph loop), from global iteration
    ``block.first`` (``block``: a ``_SquareBlock``).

    Each iteration queries one proposal per unbroken image (``best`` margin > 0) and keeps it when it lowers the
    margin.  The randomness of an image depends only on the seed, the iteration and its ``index`` among the
    ``block.total`` images, never on which other images are still in the batch.
    """
    channels = x.shape[3]
    eps, total, seed, first, sides = block

    def body(j, x_best, best, used):
        seed_j = fold_seed(seed, first + j)
        draw = tf.gather(tf.random.stateless_uniform(tf.stack([total, 3 + channels]), seed_j), index)
        candidate = _square_candidate(x, x_best, eps, sides[j], draw)
        value = margin(model(candidate, training=False), y)
        active = best > 0.0
        better = active & (value < best)
        return (j + 1, attacks.per_example_where(better, candidate, x_best), tf.where(better, value, best),
                used + tf.cast(active, tf.int32))

    def more(j, x_best, best, used):
        return (j < tf.shape(sides)[0]) & tf.reduce_any(best > 0.0)

    _, x_best, best, used = tf.while_loop(more, body, (0, x_best, best, used))
    return x_best, best, used


def square(model, x, y, eps, *, queries: int = 1000, norm: str = "inf", seed: int | None = 0,
           return_queries: bool = False):
    """Square attack (Andriushchenko et al. 2020): random search that only reads the model's output scores.

    Threat model: black box (scores, no gradients), untargeted, ``||x' - x||_∞ <= eps`` (``norm="inf"``; L2 is
    not implemented), pixels in [0, 1], at most ``queries`` model evaluations per image.
    It minimises the margin ``z_y - max_{j≠y} z_j`` (``margin``): the first query tries vertical stripes of ±ε;
    each further one sets a random square (side from ``square_sides``, shrinking as the search goes on) to
    ``x ± ε`` (random sign per channel) and keeps it when the margin drops.  Each image stops as soon as it is
    misclassified (margin ≤ 0); images the model already gets wrong are returned unchanged.  Gradient masking
    cannot fool it, which makes it the sanity check of a gradient-based evaluation.  ``queries=0`` returns ``x``.
    The schedule and every random draw depend only on ``seed`` and the query index, so with the same seed a
    larger budget continues the smaller one (never worse).  With ``return_queries=True`` it returns
    ``(x_adv, queries used per image)`` (0 for images misclassified to begin with).
    """
    check_choice("norm", norm, ("inf",))
    queries = check_positive_int(queries, "queries", minimum=0)
    return_queries = check_bool("return_queries", return_queries)
    if tracing(x, y, eps):
        raise TypeError("square runs eagerly (compiled blocks driven from Python), not inside a tf.function")
    eps = attacks.check_attack_args(model, x, y, eps)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    out, used = x.copy(), np.zeros(len(x), np.int64)
    if queries and eps > 0.0 and len(x):
        todo, base_seed = np.flatnonzero(~attacks.already_successful(model, x, y, False)), new_seed(seed)
        run_chunks(lambda xc, yc, seed_c: _square_chunk(model, xc, yc, eps, seed_c, queries), x, y, base_seed,
                   (out, used), batch=attacks.EVAL_BATCH, indices=todo)
    return (out, used) if return_queries else out


def _square_chunk(model, x, y, eps, seed, queries):
    """Square on one chunk: the stripes query, then blocks of ``SQUARE_BLOCK`` iterations on sub-batches of the
    images not broken yet.  Returns ``(x_adv, queries used)``."""
    image, labels = input_specs(model)
    index, count = tf.TensorSpec((None,), tf.int32), tf.TensorSpec((), tf.int32)
    init = compiled(model, "square-init", (), _square_init, [image, labels, index, SCALAR_SPEC, count, SEED_SPEC])
    steps = compiled(model, "square-steps", (), _square_steps,
                     [image, labels, image, tf.TensorSpec((None,), tf.float32), index, index,
                      _SquareBlock(SCALAR_SPEC, count, SEED_SPEC, count, index)])
    eps_t, total, seeds = tf.constant(eps, tf.float32), tf.constant(len(x), tf.int32), (fold_seed(seed, 0),
                                                                                         fold_seed(seed, 1))
    x_best, best, used = np.empty_like(x), np.empty(len(x), np.float32), np.ones(len(x), np.int32)
    rows = np.arange(len(x), dtype=np.int32)  # each image's index: its random draws depend on it alone
    run_sub_batches(init, rows, (x, y, rows), (x_best, best), (eps_t, total, seeds[0]), batch=attacks.ATTACK_BATCH)
    sides = square_sides(queries, x.shape[1], x.shape[2])

    def block(i, k):
        return steps, (_SquareBlock(eps_t, total, seeds[1], tf.constant(i, tf.int32), tf.constant(sides[i:i + k])),)

    run_blocks(block, len(sides), SQUARE_BLOCK, (x, y, x_best, best, used, rows), (x_best, best, used),
               lambda r: best[r] > 0.0, batch=attacks.ATTACK_BATCH)
    return x_best, used

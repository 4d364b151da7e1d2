"""Learning-rate schedules for the course's training recipes (Keras ``LearningRateSchedule``s, for
``learning_rate=``): the one-cycle ``cyclic`` of fast adversarial training, ``piecewise`` and ``warmup_cosine``;
``steps_per_epoch`` turns epochs into the optimiser steps they count in."""

from __future__ import annotations

from ._checks import check_eps, check_positive_int

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


@keras.saving.register_keras_serializable(package="course")
class Cyclic(keras.optimizers.schedules.LearningRateSchedule):
    """One triangular learning-rate cycle: linear from 0 up to ``peak`` at ``peak_at`` of ``steps``, then linear
    back down to 0 at ``steps`` (and 0 after).  The "one cycle" schedule of Wong, Rice & Kolter (2020), which lets
    FGSM training converge in few epochs."""

    def __init__(self, peak: float, steps: int, peak_at: float = 0.4):
        self.peak, self.steps, self.peak_at = float(peak), int(steps), float(peak_at)

    def __call__(self, step):
        t = tf.cast(step, tf.float32) / float(self.steps)
        up = t / self.peak_at
        down = (1.0 - t) / (1.0 - self.peak_at)
        return self.peak * tf.clip_by_value(tf.minimum(up, down), 0.0, 1.0)

    def get_config(self):
        return dict(peak=self.peak, steps=self.steps, peak_at=self.peak_at)


def cyclic(peak: float, steps: int, *, peak_at: float = 0.4) -> Cyclic:
    """Triangular one-cycle schedule over ``steps`` optimiser steps (see ``Cyclic``), for ``learning_rate=``."""
    check_eps(peak, "peak")
    steps = check_positive_int(steps, "steps")
    if not 0.0 < peak_at < 1.0:
        raise ValueError(f"peak_at={peak_at!r} must be a fraction in (0, 1)")
    return Cyclic(peak, steps, peak_at)


def piecewise(values, boundaries):
    """Piecewise-constant learning rate: ``values[i]`` until optimiser step ``boundaries[i]`` (Keras'
    ``PiecewiseConstantDecay``; ``len(values) == len(boundaries) + 1``), e.g. ``piecewise([1e-3, 1e-4], [1000])``.
    """
    values = [float(check_eps(v, "learning rate")) for v in values]
    boundaries = [int(b) for b in boundaries]
    if len(values) != len(boundaries) + 1:
        raise ValueError(f"piecewise needs one more value than boundaries, got {len(values)} values and "
                         f"{len(boundaries)} boundaries")
    if any(b <= a for a, b in zip(boundaries, boundaries[1:])) or (boundaries and boundaries[0] < 0):
        raise ValueError(f"boundaries must be increasing non-negative step numbers, got {boundaries}")
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def warmup_cosine(peak: float, steps: int, *, warmup: float = 0.2):
    """Learning-rate schedule: linear warm-up from 0 to ``peak`` over the first ``warmup`` fraction of ``steps``
    optimiser steps, then cosine decay to 0 (Keras' ``CosineDecay`` with ``warmup_target``).

    Robust training at a large ε starts slowly (the adversarial loss is flat and high at first); a gentle start
    avoids the collapse to chance that a high constant rate can cause, and the decay settles the weights.
    """
    check_eps(peak, "peak")
    steps = check_positive_int(steps, "steps")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup={warmup!r} must be a fraction in [0, 1)")
    n_warm = int(warmup * steps)
    return keras.optimizers.schedules.CosineDecay(0.0, steps - n_warm, warmup_target=peak, warmup_steps=n_warm)


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Optimiser steps in one epoch of ``n_examples`` at ``batch_size`` (the last batch may be smaller)."""
    return -(-check_positive_int(n_examples, "n_examples") // check_positive_int(batch_size, "batch_size"))


__all__ = ["Cyclic", "cyclic", "piecewise", "warmup_cosine", "steps_per_epoch"]

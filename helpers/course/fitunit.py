"""The fit unit (FU): a machine's speed in the course's own currency, so run times travel between machines.

1 FU = the seconds of one 5-epoch ``fit`` of the course CNN (``models.build_model``, compiled by
``models.compile_model``) on the bundled ``mnist_5k`` training images at batch 128, after a warm-up epoch, best
of 3.  Seconds differ from laptop to laptop (1.74× between two machines of the same kind); a notebook's cost in FU
stays nearly the same, so "about 20 FU" tells a student how long it will take on *their* machine once they know
their FU (``python -m helpers.course.fitunit`` prints it in about 4 FU).

Measure it in the same run as the figures it divides (``benchmarks/bench_notebooks.py`` and
``python -m helpers.course build`` do): a machine's speed drifts with load and temperature.
"""

from __future__ import annotations

import sys
import time

from .. import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)

EPOCHS, BATCH_SIZE, REPEATS = 5, 128, 3


def fit_unit(*, repeats: int = REPEATS) -> float:
    """Seconds of one fit unit on this machine, now (best of ``repeats`` timed fits after a warm-up epoch)."""
    import keras
    import numpy as np

    from .. import data, models

    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    ds = data.load_dataset("mnist_5k")
    x, y = np.asarray(ds.x_train, np.float32), np.asarray(ds.y_train, np.int64)
    keras.utils.set_random_seed(0)
    model = models.compile_model(models.build_model(ds.input_shape, ds.num_classes, seed=0))
    model.fit(x, y, epochs=1, batch_size=BATCH_SIZE, verbose=0)  # warm-up: tracing, allocation, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, epochs=EPOCHS, batch_size=BATCH_SIZE, verbose=0)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    seconds = fit_unit()
    print(f"1 FU = {seconds:.2f} s on this machine (5-epoch fit of the course CNN on mnist_5k, best of {REPEATS})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

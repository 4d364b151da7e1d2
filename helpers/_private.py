"""The few private TensorFlow/Keras names the course needs, in one place, each with the reason and a fallback.

Nothing else in ``helpers`` reaches below the public APIs (the fast first-layer Conv2D gradient of
``helpers.attacks`` resolves its own private function once, at import, with a fallback to TF's public gradient).
Each use here is off the hot path (called once per model or per ``compile``), and each degrades to a safe answer
if a later release renames what it reads.
"""

from __future__ import annotations

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)

try:  # TensorFlow has a public setter for op determinism but no public getter (tf.config.experimental has none).
    from tensorflow.python.framework import config as _tf_config  # noqa: E402
except ImportError:  # pragma: no cover - only if TensorFlow moves it
    _tf_config = None


def op_determinism_enabled() -> bool:
    """Whether TensorFlow's op determinism is on (``models.seed_everything`` turns it on; XLA cannot run under
    it).  Reads TF's private flag; if that is gone, assumes it is on (the cautious answer: no XLA)."""
    if _tf_config is None or not hasattr(_tf_config, "is_op_determinism_enabled"):  # pragma: no cover
        return True
    return bool(_tf_config.is_op_determinism_enabled())


def disable_op_determinism() -> None:
    """Turn TensorFlow's op determinism off (there is only a public way to turn it on)."""
    if _tf_config is not None and op_determinism_enabled():
        _tf_config.disable_op_determinism()


def adopt_strategy(wrapper, model) -> None:
    """Give ``wrapper`` (a ``keras.Model`` built around ``model``) the ``tf.distribute`` strategy ``model`` was
    built under, as Keras gives a model the strategy of the scope it is created in.  Keras 3 keeps it in the
    private ``_distribute_strategy``, read by its public ``distribute_strategy`` property; a wrapper created outside
    the scope must carry the classifier's, or ``fit`` would run it on the default strategy."""
    if getattr(wrapper, "_distribute_strategy", None) is None:
        wrapper._distribute_strategy = getattr(model, "_distribute_strategy", None)  # noqa: SLF001


__all__ = ["op_determinism_enabled", "disable_op_determinism", "adopt_strategy"]

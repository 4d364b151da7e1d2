"""Argument checks shared by every module: bad input fails loudly, naming the value and what is allowed."""

from __future__ import annotations

import numbers

import numpy as np


def check_choice(name: str, value, allowed) -> None:
    """Raise ValueError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed values are {', '.join(map(repr, allowed))}")


def check_bool(name: str, value) -> bool:
    """Return ``value`` as a bool, or raise TypeError unless it is ``True`` or ``False``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")
    return bool(value)


def check_eps(eps, name: str = "eps") -> float:
    """Return ``eps`` as a float, or raise if it is not a finite number >= 0."""
    if isinstance(eps, bool) or not isinstance(eps, (numbers.Real, np.floating, np.integer)):
        try:
            eps = float(np.asarray(eps).item())
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number >= 0, got {eps!r} of type {type(eps).__name__}") from None
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        units = " (in pixel-value units of [0, 1])" if name.startswith(("eps", "step")) else ""
        raise ValueError(f"{name}={eps!r} is not allowed; {name} must be a finite number >= 0{units}")
    return eps


def check_learning_rate(value, name: str = "learning_rate"):
    """Return a number ``value`` as a float > 0, or a schedule (any callable, e.g. a ``LearningRateSchedule``)
    unchanged; raise if it is neither (a negative rate climbs the loss, 0 never moves)."""
    if callable(value):
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number > 0 or a schedule, got {value!r} of type {type(value).__name__}")
    rate = float(value)
    if not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"{name}={value!r} is not allowed; {name} must be a finite number > 0 (or a schedule)")
    return rate


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}={value} is not allowed; {name} must be an integer >= {minimum}")
    return int(value)


def check_images(x, name: str = "x") -> np.ndarray | object:
    """Check that ``x`` is a 4-D NHWC batch with values in [0, 1]; return it unchanged.

    Works on NumPy arrays and eager tensors (the check reads the values once, outside any compiled code).
    """
    arr = np.asarray(x)
    if arr.ndim != 4:
        raise ValueError(f"{name} must be a 4-D batch of images (N, H, W, C) with values in [0, 1], "
                         f"got an array of shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must hold floating-point pixels in [0, 1], got dtype {arr.dtype} "
                        "(divide uint8 images by 255 first)")
    if arr.size:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name} must hold pixel values in [0, 1], found values in [{lo:.4g}, {hi:.4g}]")
    return x


def check_labels(y, n: int, name: str = "y", num_classes: int | None = None) -> None:
    """Check that ``y`` is a 1-D integer vector of length ``n`` (and inside ``[0, num_classes)``)."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of integer class labels, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise ValueError(f"x and {name} must have the same length, got {n} images and {arr.shape[0]} labels")
    if num_classes is not None and arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{name} must hold class indices in [0, {num_classes - 1}], "
                         f"found values in [{arr.min()}, {arr.max()}]")

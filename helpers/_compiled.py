"""Compiled per-model functions and whole-batch execution, shared by the modules that run models on data.

``compiled(model, kind, config, graph_fn, signature)`` returns one ``tf.function`` per (model, kind, static
configuration), traced once for any batch size.  The cache holds the model only *weakly* (the compiled function
reaches it through a weak reference), so a model the user drops is freed with everything compiled for it.
``batched`` runs such a function over fixed-size chunks of NumPy data.
"""

from __future__ import annotations

import weakref

import numpy as np

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

#: Examples per compiled call: large enough to amortise call overhead, small enough for CIFAR-10 in memory.
EVAL_BATCH = 1024

_cache: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()


def compiled(model, kind: str, config: tuple, graph_fn, signature):
    """``tf.function(lambda *args: graph_fn(model, *args), input_signature=signature)``, cached for ``model``.

    ``config`` holds the static arguments already bound into ``graph_fn`` (e.g. with ``functools.partial``); each
    distinct ``(kind, config)`` is traced once.  ``graph_fn`` must not hold the model itself.
    """
    per_model = _cache.setdefault(model, {})
    key = (kind, config)
    if key not in per_model:
        ref = weakref.ref(model)
        per_model[key] = tf.function(lambda *args: graph_fn(ref(), *args), input_signature=signature)
    return per_model[key]


def cached_kinds(model) -> list:
    """The ``(kind, config)`` keys compiled so far for ``model`` (for tests and curious students)."""
    return list(_cache.get(model, {}))


def input_specs(model):
    """``(images, labels)`` tensor specs for a batch of any size for ``model``."""
    shape = tuple(model.input_shape[1:])
    return tf.TensorSpec((None, *shape), tf.float32), tf.TensorSpec((None,), tf.int64)


def tracing(*tensors) -> bool:
    """True while TensorFlow traces a graph (inside a ``tf.function``) or when given symbolic tensors."""
    return not tf.executing_eagerly() or any(tf.is_symbolic_tensor(t) for t in tensors if tf.is_tensor(t))


def chunk_seed(seed, chunk: int) -> np.ndarray:
    """A ``[2]`` int64 stateless seed for chunk ``chunk`` of a batched call: every chunk draws its own randomness."""
    state = np.random.SeedSequence([int(s) % 2**32 for s in np.asarray(seed).ravel()] + [chunk]).generate_state(2)
    return state.astype(np.int64)


def batched(fn, arrays, extra=(), *, seed=None, batch: int = EVAL_BATCH):
    """Run ``fn(*chunk_arrays, *extra[, chunk_seed])`` over chunks of ``batch`` examples; concatenate the results.

    ``arrays`` are NumPy arrays sharing their first dimension (images first, float32; others keep their dtype).
    With ``seed`` (a ``[2]`` int array) each chunk gets its own seed as the last argument.  Returns a NumPy array
    (or a tuple of them when ``fn`` returns a tuple).
    """
    n = len(arrays[0])
    outs = []
    for c, i in enumerate(range(0, n, batch)):
        args = [tf.constant(a[i:i + batch]) for a in arrays] + list(extra)
        if seed is not None:
            args.append(tf.constant(chunk_seed(seed, c)))
        out = fn(*args)
        outs.append(tuple(o.numpy() for o in out) if isinstance(out, (tuple, list)) else out.numpy())
    if not outs:
        return None
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*outs))
    return np.concatenate(outs)

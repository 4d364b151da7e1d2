"""Compiled per-model functions and whole-batch execution, shared by the modules that run models on data.

``compiled(model, kind, config, graph_fn, signature)`` returns one ``tf.function`` per (model, kind, static
configuration), traced once for any batch size.  The cache holds the model only *weakly* (the compiled function
reaches it through a weak reference), so a model the user drops is freed with everything compiled for it.
``batched`` runs such a function over fixed-size chunks of NumPy data; ``run_chunks``, ``run_sub_batches`` and
``run_blocks`` are the eager attacks' engine (seeded chunks, sub-batches, compiled blocks, early-stop re-packing).
"""

from __future__ import annotations

import weakref

import numpy as np

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

#: Examples per compiled call: large enough to amortise call overhead, small enough for CIFAR-10 in memory.
EVAL_BATCH = 1024

#: Specs of a float32 scalar (ε, a step size) and of a ``[2]`` stateless seed, for ``compiled`` signatures.
SCALAR_SPEC = tf.TensorSpec((), tf.float32)
SEED_SPEC = tf.TensorSpec((2,), tf.int64)

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


def new_seed(seed) -> np.ndarray:
    """An attack's ``[2]`` int64 base seed: ``[seed, 0]``, or drawn from NumPy's global generator when ``seed`` is
    None (``seed_everything`` seeds it: reproducible in notebooks)."""
    if seed is None:
        return np.random.randint(0, 2**31 - 1, size=2, dtype=np.int64)
    return np.array([int(seed), 0], np.int64)


def fold_seed(seed, i):
    """A new ``[2]`` int64 stateless seed derived from ``seed`` and the integer ``i`` (TF code or eager)."""
    return tf.cast(tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), i), tf.int64)


def chunks(indices, batch: int, seed=None):
    """``(part, part_seed)`` for consecutive chunks of at most ``batch`` of ``indices``: the one chunk loop.

    ``part_seed`` is ``chunk_seed(seed, c)`` for chunk ``c`` (None without a ``seed``).
    """
    for c, i in enumerate(range(0, len(indices), batch)):
        yield indices[i:i + batch], (None if seed is None else chunk_seed(seed, c))


def batched(fn, arrays, extra=(), *, batch: int = EVAL_BATCH):
    """Run ``fn(*chunk_arrays, *extra)`` over chunks of ``batch`` examples; concatenate the results.

    ``arrays`` are NumPy arrays sharing their first dimension (images first, float32; others keep their dtype).
    Returns a NumPy array (or a tuple of them when ``fn`` returns a tuple), None for no examples.
    """
    outs = []
    for part, _ in chunks(np.arange(len(arrays[0])), batch):
        out = fn(*[tf.constant(a[part]) for a in arrays], *extra)
        outs.append(tuple(o.numpy() for o in out) if isinstance(out, (tuple, list)) else out.numpy())
    if not outs:
        return None
    if isinstance(outs[0], tuple):
        return tuple(np.concatenate(parts) for parts in zip(*outs))
    return np.concatenate(outs)


# ------------------------------------------------ the eager attack engine (PGD, APGD and Square all run on it)
def run_chunks(attack_chunk, x, y, seed, outputs, *, batch: int, indices=None):
    """Run ``attack_chunk(x_part, y_part, part_seed)`` on chunks of at most ``batch`` of ``indices`` (default: all
    examples), each chunk with its own seed (``chunks``); its result (an array or a tuple of them) is written into
    ``outputs`` (arrays over all examples) at the chunk's rows.  Returns ``outputs``."""
    indices = np.arange(len(x)) if indices is None else indices
    for part, part_seed in chunks(indices, batch, seed):
        results = attack_chunk(x[part], y[part], part_seed)
        for out, result in zip(outputs, results if isinstance(results, tuple) else (results,)):
            out[part] = result
    return outputs


def sub_batches(indices, batch: int) -> list:
    """``indices`` split into near-equal groups of at most ``batch`` (no tiny last group)."""
    return np.array_split(indices, max(1, -(-len(indices) // batch))) if len(indices) else []


def run_sub_batches(fn, indices, inputs, outputs, extra=(), *, batch: int) -> None:
    """``fn(*[a[sub] for a in inputs], *extra)`` (a compiled function) on each sub-batch ``sub`` of ``indices``;
    its ``j``-th result is written into ``outputs[j][sub]`` (``outputs`` may be among ``inputs``: updated in place).
    """
    for sub in sub_batches(indices, batch):
        results = fn(*[tf.constant(a[sub]) for a in inputs], *extra)
        for out, result in zip(outputs, results):
            out[sub] = result.numpy()


def run_blocks(block, length: int, block_length: int, inputs, outputs, running=None, *, batch: int) -> None:
    """Drive ``length`` iterations as compiled blocks of at most ``block_length`` on sub-batches of ``batch``.

    ``block(i, k)`` returns ``(fn, extra)`` for the ``k`` iterations from ``i``; ``fn`` runs as in
    ``run_sub_batches`` on the examples still running.  ``running(indices)`` (default: always) says which examples
    go on: the others (e.g. already fooled: early stop) drop out before the next block, and the survivors are
    re-packed into full sub-batches.
    """
    indices = np.arange(len(inputs[0]))
    active = indices if running is None else indices[running(indices)]
    i = 0
    while i < length and active.size:
        k = min(block_length, length - i)
        fn, extra = block(i, k)
        run_sub_batches(fn, active, inputs, outputs, extra, batch=batch)
        active, i = (active if running is None else active[running(active)]), i + k

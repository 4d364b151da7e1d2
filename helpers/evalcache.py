"""Evaluations cached with the model they evaluate, so that no notebook attacks the same model twice.

A strong evaluation of a robust model costs more than training it.  ``remember(kind, model, arrays, params,
compute)`` returns ``compute()``'s per-image results (a dict of NumPy arrays) and keeps them on disk under a key
made like the model cache's: the model itself (its architecture, layer by layer without names, and the bytes of its
weights), the images and labels, the parameters, and the source of every module that decides the result (``_SOURCES``
and the modules of the attacks in ``helpers.registry``).  Change any of them, e.g. edit an attack, and the
evaluation runs again; the same model loaded in another notebook finds it.

Only deterministic evaluations may be remembered (a fixed seed, or no randomness at all): the caller decides
(``evaluate.remembered`` puts a hash of an attack's own code in ``params`` too).  Files live in
``<model cache>/evaluations`` (``_store.cache_dir()``, ``$COURSE_CACHE_DIR``), one small ``.npz`` each, written
atomically.
``COURSE_EVAL_CACHE=0`` switches remembering off (everything is computed, nothing is read or written).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import registry
from ._store import cache_dir, source_hash, write_atomic

ENV = "COURSE_EVAL_CACHE"
#: The modules that decide an evaluation besides the attacks' own (``registry.modules()``).
_SOURCES = ("evaluate", "evalcache", "registry", "_store", "_compiled", "models", "_private")


def enabled() -> bool:
    """False when ``$COURSE_EVAL_CACHE`` is ``0``, ``false`` or ``no``."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no")


def _architecture(layer):
    """Layer types and configurations, nested models recursed into, without names (which differ between runs)."""
    inner = getattr(layer, "layers", None)
    if inner:
        return [type(layer).__name__, [_architecture(sub) for sub in inner]]
    config = dict(layer.get_config())
    config.pop("name", None)
    return [type(layer).__name__, config]


def fingerprint(model) -> str:
    """A hash of what decides a model's outputs: its architecture and the values of all its weights."""
    h = hashlib.sha256(json.dumps(_architecture(model), sort_keys=True, default=str).encode())
    for w in model.weights:
        value = np.ascontiguousarray(w.numpy())
        h.update(f"{value.dtype}{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _code(folder=None) -> str:
    """A hash of the code that decides an evaluation: ``_SOURCES`` and the attacks' modules (``registry``) in
    ``folder`` (default: this package)."""
    return source_hash(_SOURCES + registry.modules(), folder)


def key(kind: str, model, arrays, params: dict) -> str:
    """The file stem of an evaluation: ``kind`` and a hash of the model, the arrays, ``params`` and the code."""
    h = hashlib.sha256(f"{kind}|{fingerprint(model)}|{_code()}".encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(params, sort_keys=True, default=repr).encode())
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in kind)
    return f"{safe}-{h.hexdigest()[:16]}"


def folder() -> Path:
    return cache_dir() / "evaluations"


def remember(kind: str, model, arrays, params: dict, compute, *, compress: bool = False):
    """``compute()`` (a dict of NumPy arrays or ``None`` values), from the cache when this evaluation was done.

    ``compress``: store compressed (for adversarial images; per-image booleans are small already)."""
    if not enabled():
        return compute()
    path = folder() / f"{key(kind, model, arrays, params)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as stored:
                found = {k: stored[k] for k in stored.files}
            return {k: found.get(k) for k in json.loads(str(found.pop("__keys__")))}
        except (OSError, ValueError, KeyError):
            pass  # an unreadable entry is recomputed and replaced
    result = compute()
    arrays_out = {k: np.asarray(v) for k, v in result.items() if v is not None}
    save = np.savez_compressed if compress else np.savez
    write_atomic(path, lambda tmp: save(tmp, __keys__=np.asarray(json.dumps(list(result))), **arrays_out))
    return result

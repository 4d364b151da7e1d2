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
atomically, with the seconds the evaluation took and the fingerprint of the model it evaluated.
``COURSE_EVAL_CACHE=0`` switches remembering off (everything is computed, nothing is read or written).

**Shipped evaluations.**  The course ships the per-image outcomes of the evaluations its notebooks run on its
shipped models (``data/shipped/evaluations``, checksummed in the manifest like the models; never adversarial images,
which stay local).  They are read before the local cache, so that every machine prints the same figures; an
evaluation found in neither is computed.  Each kind of evaluation of
a model says once per session where its figures came from, in a line that starts ``[evaluation]`` (read from the
shipped files, read from the local cache, or computed here, with what computing it costs).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from . import registry
from ._store import SHIPPED_EVALUATIONS_ENV, cache_dir, manifest, shipped, source_hash, write_atomic

ENV = "COURSE_EVAL_CACHE"
#: The modules that decide an evaluation besides the attacks' own (``registry.modules()``).
_SOURCES = ("evaluate", "evalcache", "registry", "_store", "_compiled", "models", "_private")
#: The first word of every line this module prints (``notebooks/sanitize.cfg`` reads it).
TAG = "[evaluation]"
#: What each kind of evaluation is called in those lines; a kind not listed (adversarial images) is never shipped
#: and says nothing.
SHIPPABLE = {"strong": "strong suite", "still-right": "attack outcomes", "targeted": "targeted success",
             "success-matrix": "success matrix"}
_said: set = set()


def enabled() -> bool:
    """False when ``$COURSE_EVAL_CACHE`` is ``0``, ``false`` or ``no``."""
    return _switched_on(ENV)


def _switched_on(variable: str) -> bool:
    return os.environ.get(variable, "1").strip().lower() not in ("0", "false", "no")


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


def code_version(folder=None) -> str:
    """A hash of the code that decides an evaluation: ``_SOURCES`` and the attacks' modules (``registry``) in
    ``folder`` (default: this package)."""
    return source_hash(_SOURCES + registry.modules(), folder)


def key(kind: str, model, arrays, params: dict) -> str:
    """The file stem of an evaluation: ``kind`` and a hash of the model, the arrays, ``params`` and the code."""
    return _key(kind, fingerprint(model), arrays, params)


def _key(kind: str, model_fingerprint: str, arrays, params: dict) -> str:
    h = hashlib.sha256(f"{kind}|{model_fingerprint}|{code_version()}".encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(params, sort_keys=True, default=repr).encode())
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in kind)
    return f"{safe}-{h.hexdigest()[:16]}"


def folder() -> Path:
    return cache_dir() / "evaluations"


def _load(path: Path):
    """The stored results (a dict in the order they were computed) and the seconds they took; ``None`` when the
    file cannot be read (it is then recomputed and replaced)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            found = {k: stored[k] for k in stored.files}
        keys = json.loads(str(found.pop("__keys__")))
        seconds = float(found.pop("__seconds__")) if "__seconds__" in found else None
        return {k: found.get(k) for k in keys}, seconds
    except (OSError, ValueError, KeyError):
        return None


def _say(kind: str, model, model_fingerprint: str, n: int, where: str) -> None:
    """One line per kind of evaluation and model per session: where its figures came from (a shipped model is
    named by its recipe, any other by its Keras name)."""
    if kind not in SHIPPABLE or (kind, model_fingerprint) in _said:
        return
    _said.add((kind, model_fingerprint))
    name = manifest().get("evaluations", {}).get("models", {}).get(model_fingerprint, f"model {model.name!r}")
    print(f"{TAG} {SHIPPABLE[kind]}, {name}, {n} images: {where}")


def _cost(seconds) -> str:
    fit_unit = manifest().get("evaluations", {}).get("fit_unit_seconds")
    return f"about {seconds / fit_unit:.1f} FU" if seconds is not None and fit_unit else "time not recorded"


def _find(kind: str, stem: str):
    """``(results, where)`` from the shipped files (a shippable kind: every machine prints the same figures) or the
    local cache; ``(None, why)`` when neither has it (``why``: a shipped file that is damaged, else ``None``)."""
    why = None
    if kind in SHIPPABLE and _switched_on(SHIPPED_EVALUATIONS_ENV):
        path, why = shipped(f"evaluations/{stem}.npz")
        found = _load(path) if path is not None else None
        if found is not None:
            return found[0], f"read from data/shipped (computing it: {_cost(found[1])})"
    local = folder() / f"{stem}.npz"
    found = _load(local) if local.exists() else None
    if found is not None:
        return found[0], "read from the local cache"
    return None, why


def remember(kind: str, model, arrays, params: dict, compute, *, compress: bool = False):
    """``compute()`` (a dict of NumPy arrays or ``None`` values), from the local cache or the shipped evaluations
    when this evaluation was done (module docstring).

    ``compress``: store compressed (for adversarial images; per-image booleans are small already)."""
    if not enabled():
        return compute()
    model_fingerprint = fingerprint(model)
    stem = _key(kind, model_fingerprint, arrays, params)
    found, where = _find(kind, stem)
    if found is not None:
        _say(kind, model, model_fingerprint, len(arrays[0]), where)
        return found
    start = time.perf_counter()
    result = compute()
    seconds = time.perf_counter() - start
    arrays_out = {k: np.asarray(v) for k, v in result.items() if v is not None}
    save = np.savez_compressed if compress else np.savez
    write_atomic(folder() / f"{stem}.npz", lambda tmp: save(
        tmp, __keys__=np.asarray(json.dumps(list(result))), __seconds__=np.asarray(seconds),
        __model__=np.asarray(model_fingerprint), **arrays_out))
    if where:   # a damaged shipped file: said every time
        print(f"{TAG} {where}; computed here instead")
    _say(kind, model, model_fingerprint, len(arrays[0]), f"computed here in {seconds:.0f} s")
    return result

"""Trained models kept on disk: the local cache (``.cache/models``) and the models the course ships (``data/shipped``).

``load_or_train(key, train)`` returns the model of a training recipe ``key``: the one the course ships for it (its
checksum verified), else the one this machine trained before, else it trains and caches it.
Keys hold every training argument and a **code version**: a hash of the code of the modules that decide the
weights (``_WEIGHT_MODULES``; docstrings and comments do not count), so a change to an attack or a recipe never
loads stale weights.  Each load or training prints one line that starts ``[model]``: where the model came from
and, for a shipped one, what training it here would cost.

Beside the key, each model's ``.json`` records whether TensorFlow's op determinism was on while it trained
(``models.seed_everything`` turns it on; the notebooks call it): the same recipe trains to other last bits with it
off, so ``python -m helpers.course reproduce`` retrains each shipped model under the setting it records.

``set_retrain(True)`` (a notebook's ``RETRAIN = True``, ``--retrain`` in the build, ``COURSE_RETRAIN=1`` in the
environment) skips the shipped models: every model is trained here (and then cached locally, so a series trains
each model once and later notebooks read it).  Files are written atomically: an interrupted run never leaves a
half-written model behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

from . import registry
from ._checks import check_bool
from ._private import op_determinism_enabled
from ._store import (RETRAIN_ENV, SHIPPED_LOG_ENV, cache_dir, manifest, shipped, source_hash, write_atomic,
                     write_json_atomic)

from . import _quiet  # noqa: F401  (imports TensorFlow without its start-up chatter)
import keras  # noqa: E402

#: The modules whose code decides the trained weights; their code is hashed into every key (the training attacks'
#: modules come from the registry, so a new training attack's module is hashed too).
_WEIGHT_MODULES = ("models", *registry.modules(training=True), "registry", "_compiled", "certify", "training",
                   "wrapper", "schedules", "_private", "recipes")
#: The first word of every line this module prints (``notebooks/sanitize.cfg`` reads it).
TAG = "[model]"
_settings = {"retrain": False}


def set_retrain(retrain: bool) -> None:
    """``True``: train every model here rather than load the shipped one (locally cached models are still read)."""
    _settings["retrain"] = check_bool("retrain", retrain)


def retraining() -> bool:
    """Whether shipped models are skipped: ``set_retrain(True)`` or ``$COURSE_RETRAIN``."""
    env = os.environ.get(RETRAIN_ENV, "").strip().lower() in ("1", "true", "yes")
    return _settings["retrain"] or env


def code_version(folder=None) -> str:
    """A short hash of the code of the modules that decide the trained weights (see ``_WEIGHT_MODULES``)."""
    return source_hash(_WEIGHT_MODULES, folder)[:10]


def cache_key(**key) -> str:
    """A readable, collision-safe file stem for a training recipe (keys sorted, values JSON-encoded)."""
    blob = json.dumps(key, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
    readable = "-".join(str(key[k]) for k in ("dataset", "arch", "recipe", "epochs", "seed") if k in key)
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in readable)
    return f"{readable}-{digest}" if readable else digest


def save_model_atomic(model: keras.Model, path) -> Path:
    """Save ``model`` to ``path`` (``.keras``) via a temporary file and an atomic rename."""
    return write_atomic(path, model.save)


def _full_key(key: dict) -> dict:
    """A recipe's key completed with the code version (the Keras version is recorded beside it, not keyed: a
    ``.keras`` file loads across Keras 3 releases, and a file that does not is retrained)."""
    return dict(key, code=code_version())


def cache_file(key: dict, directory=None) -> Path:
    """Where the model of recipe ``key`` is cached locally."""
    return cache_dir(directory) / f"{cache_key(**_full_key(key))}.keras"


def describe(key: dict) -> str:
    """How a ``[model]`` line names the model of recipe ``key``."""
    return f"{key.get('recipe', 'model')} ({key.get('dataset', '?')}, {key.get('epochs', '?')} epochs)"


def _read(path: Path):
    """``(model, metadata)`` from a ``.keras`` file and the ``.json`` beside it (``{}`` when that is missing)."""
    model = keras.models.load_model(path, compile=False)
    meta = path.with_suffix(".json")
    return model, json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else {}


def _seconds(history) -> float:
    return float(sum((history or {}).get("time", [])))


def _said_shipped(name: str, meta: dict) -> str:
    fit_unit = manifest().get("fit_unit_seconds")
    cost = f"about {_seconds(meta.get('history')) / fit_unit:.0f} FU" if fit_unit else "its full training time"
    return f"{TAG} {name}: shipped (data/shipped); RETRAIN = True trains it here in {cost}"


def load_or_train(key: dict, train_fn: Callable, *, directory=None, retrain: bool = False):
    """Return ``(model, history, from_disk)`` for the training recipe ``key`` (the code version is added to it).

    ``train_fn()`` returns ``(model, history)`` where ``history`` is a JSON-able dict (per-epoch figures) or None.
    Read, in this order: the shipped model (unless ``retrain`` or ``retraining()``), then the local cache (unless
    ``retrain``); else ``train_fn()`` runs and its results are cached locally: the history first, the model last,
    each written atomically (``retrain=True`` trains in front of the student, as notebook 01 does).  An unreadable
    file is passed over with a warning; a shipped file that is missing or fails its checksum with a line that says
    so (the model then comes from the local cache, or is trained).
    """
    key = _full_key(key)
    stem = cache_key(**key)
    path = cache_dir(directory) / f"{stem}.keras"
    name = describe(key)
    candidates = []
    if not (retrain or retraining()):  # shipped first: every machine prints the numbers the lessons quote
        found, why = shipped(f"models/{stem}.keras")
        if why:
            print(f"{TAG} {name}: {why}; not used")
        if found is not None:
            candidates.append((found, None))
    if not retrain:
        candidates.append((path, f"{TAG} {name}: from the local cache ({path.parent})"))
    for candidate, said in candidates:
        if candidate.exists():
            try:
                model, meta = _read(candidate)
            except Exception as err:  # noqa: BLE001 - any unreadable entry is rebuilt
                warnings.warn(f"Ignoring unreadable cached model {candidate} ({err!r}); retraining.", stacklevel=2)
                continue
            print(said or _said_shipped(name, meta))
            if said is None and os.environ.get(SHIPPED_LOG_ENV):
                with open(os.environ[SHIPPED_LOG_ENV], "a", encoding="utf-8") as log:
                    log.write(f"{candidate.name}\n")
            return model, meta.get("history"), True
    deterministic = op_determinism_enabled()   # not in the key, but it decides the weights' last bits: recorded
    model, history = train_fn()
    write_json_atomic({"key": key, "history": history, "keras": keras.__version__, "op_determinism": deterministic},
                      path.with_suffix(".json"))
    save_model_atomic(model, path)
    print(f"{TAG} {name}: trained here in {_seconds(history):.0f} s")
    return model, history, False

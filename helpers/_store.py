"""Where cached and shipped results live and what decides their keys: the cache folder, what the course ships
(``data/shipped``, checksummed), source hashes, atomic writes.

The bottom of the package (no TensorFlow, no other ``helpers`` module): the model cache (``recipes``), the
evaluation cache (``evalcache``) and the instructor's release all ask here for the folder (``cache_dir``), hash
code with ``source_hash`` / ``function_hash`` and write files with ``write_atomic``, so that an interrupted run
never leaves a half-written file behind.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import types
from pathlib import Path
from typing import Callable

#: The environment variable that moves the cache folder.
CACHE_ENV = "COURSE_CACHE_DIR"
#: ``COURSE_RETRAIN=1`` (or true/yes): train every model here instead of loading the shipped ones.
RETRAIN_ENV = "COURSE_RETRAIN"
PACKAGE = Path(__file__).resolve().parent
#: What the course ships for its bundled dataset (trained models and their histories): read-only, each file
#: checksummed in ``MANIFEST.json``; ``python -m helpers.course ship`` regenerates it.
SHIPPED = PACKAGE.parent / "data" / "shipped"
MANIFEST = "MANIFEST.json"
#: ``COURSE_SHIPPED_EVALUATIONS=0``: compute every evaluation rather than read the shipped ones (the ship command
#: sets it while it re-makes them).
SHIPPED_EVALUATIONS_ENV = "COURSE_SHIPPED_EVALUATIONS"
#: ``COURSE_SHIPPED_LOG=FILE``: every shipped model read is added to ``FILE``, a line each (the ship command sets it,
#: so that it ships only the models the series reads).
SHIPPED_LOG_ENV = "COURSE_SHIPPED_LOG"
_SIMPLE = (type(None), type(...), bool, int, float, complex, str, bytes)
#: Folders of installed code (the standard library, site-packages): its functions and classes are named, not hashed.
_LIBRARIES = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})


def cache_dir(path=None) -> Path:
    """The model cache folder: ``path``, else ``$COURSE_CACHE_DIR``, else ``<repo>/.cache/models`` (git-ignored)."""
    if path is None:
        path = os.environ.get(CACHE_ENV) or PACKAGE.parent / ".cache" / "models"
    return Path(path)


@functools.lru_cache(maxsize=256)
def code_text(source: str) -> str:
    """What decides a module's behaviour, as text: its syntax tree without docstrings (comments never reach it),
    so that editing prose does not invalidate what was computed or shipped."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def source_hash(names, folder=None) -> str:
    """A hash of the code of modules ``names`` of the package in ``folder`` (default: this one), in that order
    (``code_text``: docstrings and comments do not count).  A dotted name is a module of a subpackage."""
    folder = Path(folder) if folder is not None else PACKAGE
    h = hashlib.sha256()
    for name in names:
        h.update(code_text((folder / f"{name.replace('.', '/')}.py").read_text(encoding="utf-8")).encode())
    return h.hexdigest()


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes (the checksums of the shipped files)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest(folder=None) -> dict:
    """The shipped files' manifest (``data/shipped/MANIFEST.json``: ``files`` -> checksums, and how they were
    made), or ``{}`` when nothing is shipped."""
    path = Path(folder if folder is not None else SHIPPED) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def shipped(relative: str, folder=None):
    """``(path, None)`` for the intact shipped file ``relative`` (a POSIX path below ``data/shipped``);
    ``(None, why)`` when the manifest lists it but the file is missing or does not match its checksum;
    ``(None, None)`` when it is not shipped."""
    folder = Path(folder if folder is not None else SHIPPED)
    entry = manifest(folder).get("files", {}).get(relative)
    if entry is None:
        return None, None
    path = folder / relative
    if not path.exists():
        return None, f"the shipped file data/shipped/{relative} is missing"
    if file_sha256(path) != entry["sha256"]:
        return None, (f"the shipped file data/shipped/{relative} does not match its checksum (altered, or a Git LFS "
                      "pointer instead of the file)")
    return path, None


def write_atomic(path, write: Callable) -> Path:
    """Write ``path`` by ``write(temporary path)`` beside it, then an atomic rename: a file is complete or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(obj, path) -> Path:
    """``obj`` as JSON in ``path``, written atomically (``write_atomic``)."""
    return write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj)))


# ------------------------------------------------------------------------------------- a function's identity

class Unhashable(Exception):
    """A function's result may depend on something that cannot be hashed reliably (an object, a mutable value)."""


def in_package(module_name) -> bool:
    """Is ``module_name`` this package (``helpers`` or one of its modules)?"""
    top = __name__.rpartition(".")[0]
    return isinstance(module_name, str) and (module_name == top or module_name.startswith(top + "."))


def _library(module_name) -> bool:
    """Is ``module_name`` installed code (standard library or site-packages), not this package or the user's?"""
    if not isinstance(module_name, str) or in_package(module_name) or module_name == "__main__":
        return False
    top = sys.modules.get(module_name.partition(".")[0])
    path = getattr(top, "__file__", None)
    return top is not None and (path is None or os.path.abspath(path).startswith(_LIBRARIES))


def _module_source(module_name: str) -> str:
    """A hash of a ``helpers`` module's source file (its code decides what its functions compute)."""
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if path is None:
        raise Unhashable(f"module {module_name} has no source file")
    return hashlib.sha256(code_text(Path(path).read_text(encoding="utf-8")).encode()).hexdigest()


def function_hash(fn) -> str | None:
    """A hash of what decides ``fn``'s results, or ``None`` when that cannot be hashed reliably.

    A ``helpers`` function: its module and name, the source of its module and what it closes over (a function
    that ``evaluate.remembered`` returns: the attack it wraps).  Any other function: its code
    (bytecode, constants and names, nested functions recursed into), its defaults and what it closes over —
    closure cells and the globals it names — as long as those are simple values (numbers, strings, tuples of
    them), modules (by name; ``helpers`` modules by source) or functions (hashed the same way, cycles guarded).
    ``functools.partial``: the function and its arguments.  Anything else (an object, a list, a model, a callable
    instance) makes the result ``None``: the caller must not remember what ``fn`` computes.
    """
    h = hashlib.sha256()
    try:
        _value(fn, h, set())
    except (Unhashable, RecursionError):
        return None
    return h.hexdigest()


def _value(value, h, seen) -> None:
    """Feed ``value`` into ``h``, or raise ``Unhashable``."""
    if isinstance(value, _SIMPLE):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, (tuple, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, frozenset) else value
        h.update(f"{type(value).__name__}{len(items)}(".encode())
        for item in items:
            _value(item, h, seen)
        h.update(b")")
    elif isinstance(value, types.ModuleType):
        h.update(f"module:{value.__name__};".encode())
        if in_package(value.__name__):
            h.update(_module_source(value.__name__).encode())
    elif isinstance(value, functools.partial):
        h.update(b"partial(")
        for part in (value.func, value.args, tuple(sorted(value.keywords.items()))):
            _value(part, h, seen)
        h.update(b")")
    elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        _function(value, h, seen)
    elif hasattr(value, "python_function") and _library(type(value).__module__):  # a tf.function
        h.update(b"tf.function:")
        _value(value.python_function, h, seen)
    elif type(value).__module__ == "numpy" and hasattr(value, "tobytes") and getattr(value, "size", 0) <= 10_000:
        h.update(f"numpy:{value.dtype}{value.shape}:".encode())  # a NumPy scalar or a small array
        h.update(value.tobytes())
    elif _named(value) is not None:
        h.update(f"named:{_named(value)};".encode())
    else:
        raise Unhashable(f"cannot hash {type(value).__name__}")


def _named(value) -> str | None:
    """``module.name`` of a library class or NumPy ufunc (identified by name), else ``None``."""
    if isinstance(value, type) and _library(value.__module__):
        return f"{value.__module__}.{value.__qualname__}"
    if type(value).__name__ == "ufunc" and _library(type(value).__module__):
        return f"ufunc.{value.__name__}"
    return None


def _function(fn, h, seen) -> None:
    module = getattr(fn, "__module__", None)
    name = f"{module}.{getattr(fn, '__qualname__', '?')}"
    h.update(f"function:{name};".encode())
    if isinstance(fn, types.BuiltinFunctionType) or _library(module) or id(fn) in seen:
        return  # a builtin or a library function is identified by its name; a function seen already (recursion)
    seen.add(id(fn))
    if in_package(module):  # its source decides it, and what it closes over (e.g. the attack remembered() wraps)
        h.update(_module_source(module).encode())
        _closure(fn, h, seen)
        return
    _code(fn.__code__, h, seen)
    _value(fn.__defaults__, h, seen)
    _value(tuple(sorted((fn.__kwdefaults__ or {}).items())), h, seen)
    _closure(fn, h, seen)
    for global_name in sorted(_names(fn.__code__)):
        if global_name in fn.__globals__:
            h.update(f"global:{global_name}=".encode())
            _value(fn.__globals__[global_name], h, seen)


def _closure(fn, h, seen) -> None:
    """The values of the variables ``fn`` closes over."""
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # an empty cell: a name not bound yet
            raise Unhashable("closes over an unbound name") from None
        _value(contents, h, seen)


def _code(code, h, seen) -> None:
    """A code object's bytecode, constants (nested code recursed into) and names."""
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars, code.co_argcount,
                   code.co_kwonlyargcount, code.co_flags)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code(const, h, seen)
        else:
            _value(const, h, seen)


def _names(code) -> set:
    """The names ``code`` and the code nested in it look up (globals and attributes alike)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names

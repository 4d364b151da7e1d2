"""How the parts of ``helpers`` fit, read from the code (no TensorFlow, well under a second): no import circle, no
module reaching into another's private names, the course's vocabulary never importing the instructor's tooling, no
public function with more than 12 named parameters, and CONTRIBUTING's import graph drawn from the code."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "helpers"
#: Modules nearly every module imports, left out of CONTRIBUTING's drawing (it says so).
UNDRAWN = {"helpers", "helpers._checks", "helpers._quiet"}
MAX_NAMED = 12


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@functools.lru_cache(maxsize=None)
def _parse(text: str) -> ast.Module:
    return ast.parse(text)


def _imports(path: Path):
    """``(imported module, imported name or None, lazy)`` for each import of a ``helpers`` module in ``path``."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = _parse(path.read_text(encoding="utf-8"))
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        lazy = id(node) not in top
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "helpers":
                    yield alias.name, None, lazy
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "helpers":
                source = node.module
            else:
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield (candidate, None, lazy) if _is_module(candidate) else (source, alias.name, lazy)


def _graph() -> dict:
    """``{(importer, imported): lazy}`` over every module of the package (lazy: only inside functions)."""
    edges = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        me = _module_name(path)
        for target, _, lazy in _imports(path):
            if target != me:
                edges[(me, target)] = edges.get((me, target), True) and lazy
    return edges


def _node(name: str) -> str:
    """A module as a mermaid node: ``attacks``; ``course_cli["course.cli"]`` (mermaid ids take no dots)."""
    short = name.removeprefix("helpers.")
    return short if "." not in short else f'{short.replace(".", "_")}["{short}"]'


def mermaid() -> str:
    """CONTRIBUTING's import graph, drawn from the code (``python -c 'from tests.test_structure import mermaid;
    print(mermaid())'`` prints it)."""
    lines = ["graph BT"]
    for (a, b), lazy in sorted(_graph().items()):
        if a not in UNDRAWN and b not in UNDRAWN:
            lines.append(f"  {_node(a)} {'-.->' if lazy else '-->'} {_node(b)}")
    return "\n".join(lines)


def test_no_import_circle():
    edges = {}
    for a, b in _graph():
        edges.setdefault(a, set()).add(b)
    done, path = set(), []

    def visit(node):
        if node in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(edges):
        visit(node)


def test_no_module_imports_another_modules_private_name():
    bad = [f"{_module_name(p)} imports {name} from {source}" for p in sorted(PACKAGE.rglob("*.py"))
           for source, name, _ in _imports(p) if name and name.startswith("_")]
    assert not bad, bad


def test_the_vocabulary_never_imports_the_instructor_tooling():
    bad = [(a, b) for a, b in _graph() if not a.startswith("helpers.course") and b.startswith("helpers.course")]
    assert not bad, bad


def test_measuring_a_model_does_not_import_the_training_stack():
    edges = {}
    for a, b in _graph():
        edges.setdefault(a, set()).add(b)
    reached, todo = set(), ["helpers.evaluate"]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    assert not reached & {"helpers.training", "helpers.recipes", "helpers.wrapper", "helpers.schedules"}, reached


def _public_functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = _parse(path.read_text(encoding="utf-8"))
        scopes = [(tree, "")] + [(c, c.name + ".") for c in tree.body
                                 if isinstance(c, ast.ClassDef) and not c.name.startswith("_")]
        for scope, prefix in scopes:
            for fn in scope.body:
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and not fn.name.startswith("_"):
                    yield f"{_module_name(path)}.{prefix}{fn.name}", fn.args


def test_no_public_function_has_more_than_12_named_parameters():
    def named(args):
        names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        return len([n for n in names if n not in ("self", "cls")])

    bad = {name: named(args) for name, args in _public_functions() if named(args) > MAX_NAMED}
    assert not bad, bad


def test_contributing_draws_the_import_graph_from_the_code():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    found = re.search(r"```mermaid\n\s*(graph BT\n.*?)\n\s*```", text, re.S)
    assert found, "CONTRIBUTING.md has no ```mermaid graph BT block"
    drawn = {line.strip() for line in found.group(1).splitlines()[1:] if line.strip()}
    code = {line.strip() for line in mermaid().splitlines()[1:]}
    assert drawn == code, (f"CONTRIBUTING's graph differs from the code: missing {sorted(code - drawn)}, "
                           f"not in the code {sorted(drawn - code)}; paste tests.test_structure.mermaid()")


@pytest.mark.parametrize("planted, rule", [
    ("from .training import AdversarialModel\n", test_measuring_a_model_does_not_import_the_training_stack),
    ("from .attacks import _fgsm_step\n", test_no_module_imports_another_modules_private_name),
    ("from .course import build\n", test_the_vocabulary_never_imports_the_instructor_tooling),
])
def test_the_rules_catch_a_planted_import(planted, rule, monkeypatch):
    """Each rule fails on one plausible bad import added to ``evaluate`` (the file itself is not touched)."""
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        text = real(self, *args, **kwargs)
        return text + "\n" + planted if self == PACKAGE / "evaluate.py" else text

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(AssertionError):
        rule()

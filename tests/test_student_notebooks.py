"""The student versions of the lessons (``helpers.course.student.make_student_version``) run top to bottom unsolved,
with one "not written yet" line per exercise instead of a traceback.

Statically, for every notebook: each cell after an exercise that uses what the exercise's stub defined (a function
or class that raises ``NotWrittenYet``, or a ``None`` placeholder) reads it only inside a ``helpers.selfcheck``
check call, inside a ``with selfcheck.skip_if_not_written(N):`` block, or under ``if selfcheck.<check>(...)``;
self-check cells are such calls (no hand-written asserts or try/except).  Slow: the student versions are executed
with nbclient (cwd ``notebooks/``) on the student's path: every model is read from ``data/shipped`` except those the
lesson trains live (``LIVE``), which the run checks from the ``[model]`` lines (``pytest --nbval`` runs the series with
``RETRAIN`` instead: ``notebooks/conftest.py``).
``COURSE_NOTEBOOKS_DIR`` points both tests at another folder of lessons (e.g. patched copies).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest

from helpers import _store, modelcache
from helpers.course import build, student

NOTEBOOKS = Path(os.environ.get("COURSE_NOTEBOOKS_DIR") or build.DEFAULT_NOTEBOOKS)
PATHS = sorted(NOTEBOOKS.glob("0*.ipynb"))
NAMES = [p.stem[:2] for p in PATHS]


def _checks() -> dict:
    """The exercise checks of helpers.selfcheck: ``{name: (exercise number, what the student fills in)}``."""
    from helpers import selfcheck

    return {name: (fn.exercise, fn.fills_in) for name in selfcheck.__all__
            if hasattr(fn := getattr(selfcheck, name), "exercise")}


def _selfcheck_call(node) -> str | None:
    """``"name"`` if ``node`` is a call ``selfcheck.name(...)``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            isinstance(node.func.value, ast.Name) and node.func.value.id == "selfcheck":
        return node.func.attr
    return None


def stub_names(source: str) -> dict:
    """Names an exercise stub defines for later cells: ``{name: "call" | "class" | "value"}``."""
    tree, out = ast.parse(source), {}
    for node in tree.body:
        raises = any(isinstance(n, ast.Raise) and "NotWrittenYet" in ast.unparse(n) for n in ast.walk(node))
        if isinstance(node, ast.FunctionDef) and raises:
            out[node.name] = "call"
        elif isinstance(node, ast.ClassDef) and raises:
            out[node.name] = "class"
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value is None:
            out.update({t.id: "value" for t in node.targets if isinstance(t, ast.Name)})
    return out


def _stores(node) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _bound_inside(node) -> set:
    """Names a loop, comprehension, lambda, function or ``with ... as`` binds for the code inside it."""
    if isinstance(node, (ast.For, ast.comprehension)):
        return _stores(node.target)
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        return set().union(*(_stores(g.target) for g in node.generators))
    if isinstance(node, (ast.Lambda, ast.FunctionDef)):
        a = node.args
        return {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x is not None}
    if isinstance(node, ast.With):
        return set().union(*(_stores(i.optional_vars) for i in node.items if i.optional_vars is not None))
    return set()


def unguarded_uses(source: str, tainted: dict) -> tuple[list, set]:
    """Reads of ``tainted`` names outside a check call, a skip_if_not_written block or an ``if check(...)`` body
    (names the cell binds first are its own), and the names that may be unset or None after this cell (assigned
    inside a guard or from a check)."""
    bad, maybe = [], set()

    def visit(node, guarded, bound):
        bound = bound | _bound_inside(node)
        if isinstance(node, ast.With) and any(_selfcheck_call(i.context_expr) == "skip_if_not_written"
                                              for i in node.items):
            maybe.update(set().union(*(_stores(s) for s in node.body)))
            guarded = True
        if isinstance(node, ast.If) and _selfcheck_call(node.test):
            visit(node.test, guarded, bound)
            for child in node.body + node.orelse:
                visit(child, True, bound)
            return
        if _selfcheck_call(node):
            guarded = True
        if isinstance(node, ast.Assign) and _selfcheck_call(node.value):
            maybe.update(t.id for t in node.targets if isinstance(t, ast.Name))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in tainted \
                and node.id not in bound and not guarded:
            # a class whose stubbed method is not __init__ may be instantiated; running it needs a guard in the cell
            if tainted[node.id] != "class" or "skip_if_not_written" not in source:
                bad.append(f"line {node.lineno}: {node.id}")
        for _, value in ast.iter_fields(node):
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                block(value, guarded, bound)
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST) and not isinstance(child, ast.stmt):
                    visit(child, guarded, bound)

    def block(statements, guarded, bound):
        """In order: a name assigned by an earlier statement of the block is the cell's own from then on."""
        bound = set(bound)
        for statement in statements:
            visit(statement, guarded, bound)
            bound |= _stores(statement)

    tree = ast.parse(source)
    block(tree.body, False, set())
    for name in set().union(*(_stores(s) for s in tree.body)) - maybe:
        tainted.pop(name, None)
    return bad, maybe


def student_problems(path: Path) -> list:
    """Everything in the student version of ``path`` that would raise instead of printing a friendly line."""
    checks, problems, tainted = _checks(), [], {}
    nb = student.make_student_version(nbformat.read(path, as_version=4))
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if "exercise" in cell.metadata.get("tags", []):
            tainted.update(stub_names(cell.source))
            continue
        if cell.source.lstrip().startswith("# Self-check"):
            tree = ast.parse(cell.source)
            called = {_selfcheck_call(n) for n in ast.walk(tree)} - {None}
            if not called or not called <= set(checks) | {"training_run"}:
                problems.append(f"cell {i}: a self-check cell must call helpers.selfcheck checks, calls {called}")
            if any(isinstance(n, (ast.Assert, ast.Try)) for n in ast.walk(tree)):
                problems.append(f"cell {i}: a self-check cell keeps its asserts and messages in helpers.selfcheck")
        bad, maybe = unguarded_uses(cell.source, tainted)
        problems += [f"cell {i}, {where} (not written in the student version) is used unguarded" for where in bad]
        tainted.update({name: "value" for name in maybe})
    return problems


def expected_messages(path: Path) -> list:
    """The "not written yet" line of every exercise check that the student version of ``path`` calls."""
    from helpers import exercise

    checks, out = _checks(), []
    nb = student.make_student_version(nbformat.read(path, as_version=4))
    for cell in nb.cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                name = _selfcheck_call(node)
                if name in checks:
                    number, what = checks[name]
                    out.append(exercise.NOT_WRITTEN.format(number=number, what=what))
    return out


@pytest.mark.parametrize("path", PATHS, ids=NAMES)
def test_student_version_is_guarded(path):
    assert student_problems(path) == []
    assert expected_messages(path), f"{path.name}: no exercise self-check found"


def test_the_static_check_finds_unguarded_uses():
    tainted = {"softmax": "call", "least": "value", "Model": "class"}
    assert unguarded_uses("selfcheck.softmax(softmax, z)\nif selfcheck.softmax(softmax, z):\n    softmax(z)",
                          tainted)[0] == []
    assert unguarded_uses("print(softmax(z))", tainted)[0] == ["line 1: softmax"]
    assert unguarded_uses("assert least is not None", tainted)[0] == ["line 1: least"]
    assert unguarded_uses("m = Model(1)\nm.fit(x)", tainted)[0] == ["line 1: Model"]
    guarded = "m = Model(1)\nwith selfcheck.skip_if_not_written(1):\n    m.fit(x)\n    r = m.score()"
    assert unguarded_uses(guarded, tainted) == ([], {"r"})
    assert unguarded_uses("w = selfcheck.worst_case_accuracy(f, z)", tainted) == ([], {"w"})


#: The models a lesson trains in front of the student (``retrain=True``); every other model is read from data/shipped.
LIVE = {"01": ("standard (mnist_5k, 10 epochs)",), "05": ("adv-fgsm-adversarial (mnist_5k, 2 epochs)",)}


def off_the_students_path(text: str, name: str) -> list:
    """The ``[model]`` lines of notebook ``name``'s output that neither read a shipped model nor train one of the
    models the lesson trains live: a notebook asking for a model the course does not ship (it would train for
    minutes on every student's machine, and print figures that differ from machine to machine)."""
    found = []
    for line in text.splitlines():
        what, _, where = line.removeprefix("[model] ").partition(": ")
        if line.startswith("[model] ") and not where.startswith("shipped (data/shipped)") and not (
                where.startswith("trained here") and what in LIVE.get(name, ())):
            found.append(line)
    return found


def test_off_the_students_path_finds_models_trained_or_cached_but_not_shipped():
    text = ("[model] standard (mnist_5k, 10 epochs): trained here in 8 s\nx\n"
            "[model] ibp (mnist_5k, 40 epochs): shipped (data/shipped); RETRAIN = True trains it here in about 26 FU\n"
            "[model] ibp (mnist_5k, 41 epochs): trained here in 60 s\n"
            "[model] adv-pgd-adversarial (mnist_5k, 20 epochs): from the local cache (.cache/models)\n")
    assert off_the_students_path(text, "01") == text.splitlines()[3:]
    assert off_the_students_path(text, "02") == [text.splitlines()[0], *text.splitlines()[3:]]


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=NAMES)
def test_student_version_runs_unsolved(path):
    """Executes the whole student notebook: minutes for the series, as long as the lessons take (see the README)."""
    nb = student.make_student_version(nbformat.read(path, as_version=4))
    build.execute(nb, name=path.name, cwd=NOTEBOOKS, timeout=900)   # BuildError names the failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    for message in expected_messages(path):
        assert message in text, f"{path.name}: missing {message!r}"
    assert "Traceback" not in text
    if _store.manifest() and not modelcache.retraining():   # the student's path: shipped models only
        assert not off_the_students_path(text, path.stem[:2]), f"{path.name} trains models the course should ship"

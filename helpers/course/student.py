"""Student versions of the notebooks: outputs cleared, solutions replaced by exercise stubs, hidden tests removed.

``make_student_version(nb)`` is what the build (``helpers.course.build``) writes to ``OUT/student/``.  A solution cell
whose answer lies between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines (as in nbgrader) keeps everything
else: only that region becomes ``CODE_STUB`` (a ``# TODO`` and a ``raise NotWrittenYet(...)``, the stub nbgrader's
release puts there too, ``helpers.course.release``).  A solution cell without regions becomes a stub that keeps
placeholders for the names later cells read.  An answer in words (a markdown cell tagged ``answer``, after the
exercise's code) becomes ``TEXT_STUB``, the text nbgrader's release puts there.  With nbgrader installed its own
``ClearSolutions`` / ``ClearHiddenTests`` clear the regions, the answers in words and the hidden tests; without it,
this module's code does, with the same result (tested), so the build does not need nbgrader.
"""

from __future__ import annotations

import ast
import copy
import re

import nbformat

STUB = "# TODO (exercise): write your solution here."
#: What a stub raises until the student writes the code (``helpers.NotWrittenYet``), and the line that imports it,
#: put at the top of every stubbed cell that raises it.
STUB_RAISE = 'raise NotWrittenYet("exercise")'
STUB_IMPORT = "from helpers import NotWrittenYet   # what the TODO below raises until you write it"
#: What a ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region becomes, line by line at the region's indentation:
#: the build's stub and nbgrader's (``ClearSolutions.code_stub`` of ``helpers.course.release``), one definition for
#: both.
CODE_STUB = f"# TODO (exercise): write this part.\nfrom helpers import NotWrittenYet\n{STUB_RAISE}"
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
#: nbgrader's hidden tests (``helpers.course.grading`` ends every autograded check cell with one): not in student
#: versions.
HIDDEN_TESTS = re.compile(r"\n*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", re.S)
MARKDOWN_STUB = "*Solution removed — try the exercise above first.*"
#: The tag of an answer in words (``helpers.course.grading``: a manually graded markdown cell), and what it becomes in
#: the students' copy: nbgrader's ``ClearSolutions.text_stub`` in the release (``helpers.course.release``) and in the
#: build.
ANSWER_TAG = "answer"
TEXT_STUB = "*Your answer here.*"


def tags(cell) -> list:
    """The tags of a notebook cell (a new list)."""
    return list(cell.get("metadata", {}).get("tags", []))


def _assigned_names(source: str) -> list:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append((node.name, "def" if not isinstance(node, ast.ClassDef) else "value"))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append((node.id, "value"))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.extend(((a.asname or a.name).split(".")[0], "value") for a in node.names)
    seen, out = set(), []
    for name, kind in names:
        if name not in seen:
            seen.add(name)
            out.append((name, kind))
    return out


def _read_names(source: str) -> set:
    try:
        return {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    except SyntaxError:  # IPython magics and the like: fall back to words
        return set(re.findall(r"[A-Za-z_]\w*", source))


def make_student_version(nb, *, use_nbgrader: bool | None = None):
    """Return a copy of ``nb`` for students: outputs cleared, ``solution`` cells replaced by exercise stubs.

    ``### BEGIN SOLUTION`` regions become ``CODE_STUB``, answers in words (markdown cells tagged ``answer``)
    ``TEXT_STUB``, and nbgrader's hidden tests disappear: done by nbgrader's own ``ClearSolutions`` and
    ``ClearHiddenTests`` when it is installed (``use_nbgrader=None``; ``True`` requires it), else by this module's
    ``_clear_regions``, which gives the same notebook (``tests/test_release.py``), so the build needs no nbgrader.
    A solution cell without regions (the whole cell is the answer) becomes a stub that keeps placeholders for the
    names it defined that a later cell reads, so later cells still run: ``NAME = None  # TODO: replace with your
    result``, or a function that raises ``NotWrittenYet`` (a ``NotImplementedError``; the cell imports it from
    ``helpers``).
    """
    clear = nbgrader_clearing(required=bool(use_nbgrader)) if use_nbgrader is not False else None
    clear = clear or _clear_regions
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in tags(c)]
    for i, cell in enumerate(nb.cells):
        solution, answer = "solution" in tags(cell), ANSWER_TAG in tags(cell)
        if answer and cell.cell_type != "markdown":
            raise ValueError(f"cell {i}: a cell tagged {ANSWER_TAG!r} must be a markdown cell (an answer in words), "
                             f"not a {cell.cell_type} cell:\n{cell.source[:200]}")
        if cell.cell_type != "code":
            if answer:
                clear(cell)
            elif solution and cell.cell_type == "markdown":
                cell.source = MARKDOWN_STUB
            continue
        cell.outputs = []
        cell.execution_count = None
        whole = BEGIN_SOLUTION not in cell.source      # the whole cell is the answer (if it is a solution)
        if not whole or HIDDEN_TESTS.search(cell.source):
            clear(cell)
        if not solution:
            continue
        if not whole:
            cell.metadata["tags"] = [t for t in tags(cell) if t != "solution"] + ["exercise"]
            continue
        cell.source = with_stub_import("\n".join([STUB] + placeholders(nb, i)))
        cell.metadata["tags"] = [t for t in tags(cell) if t != "solution"] + ["exercise"]
    nb.metadata.pop("widgets", None)
    nbformat.validate(nb)
    return nb


def placeholders(nb, index: int) -> list:
    """Placeholder lines for the names that cell ``index`` of ``nb`` defines and a later code cell reads: ``NAME =
    None  # TODO: replace with your result``, or a function that raises ``NotWrittenYet`` — what a whole-cell answer
    keeps in the build's student versions and in the release's source version, so later cells still run."""
    later = set().union(*(_read_names(c.source) for c in nb.cells[index + 1:] if c.cell_type == "code"), set())
    return [f"def {name}(*args, **kwargs):\n    {STUB_RAISE}" if kind == "def"
            else f"{name} = None  # TODO: replace with your result"
            for name, kind in _assigned_names(nb.cells[index].source) if name in later]


def _clear_regions(cell) -> None:
    """The build's own clearing, in place, as nbgrader's: solution regions become ``CODE_STUB``, hidden tests
    disappear; an answer in words becomes ``TEXT_STUB`` (only its solution regions, if it has any)."""
    if cell.cell_type == "markdown":
        cell.source = _stub_regions(cell.source, TEXT_STUB) if BEGIN_SOLUTION in cell.source else TEXT_STUB
        return
    cell.source = _stub_regions(HIDDEN_TESTS.sub("", cell.source))


def nbgrader_clearing(required: bool = False):
    """nbgrader's ``ClearSolutions`` (with ``CODE_STUB`` and ``TEXT_STUB``) and ``ClearHiddenTests`` as one in-place
    function of a code cell or an answer in words; ``None`` if nbgrader is not installed (``ImportError`` if
    ``required``)."""
    try:
        from nbgrader.preprocessors import ClearHiddenTests, ClearSolutions
        from traitlets.config import Config
    except ImportError:
        if required:
            raise ImportError("use_nbgrader=True needs nbgrader: pip install -e '.[instructor]'") from None
        return None
    config = Config()
    config.ClearSolutions.code_stub = {"python": CODE_STUB}
    config.ClearSolutions.text_stub = TEXT_STUB
    config.ClearSolutions.enforce_metadata = config.ClearHiddenTests.enforce_metadata = False  # tags suffice here
    solutions, hidden = ClearSolutions(config=config), ClearHiddenTests(config=config)

    def clear(cell) -> None:
        if cell.cell_type == "markdown":     # an answer in words: a solution cell by its tag, like the code cells here
            probe = copy.deepcopy(cell)
            probe.metadata["nbgrader"] = {**probe.metadata.get("nbgrader", {}), "solution": True}
            cell.source = solutions.preprocess_cell(probe, {"language": "python"}, 0)[0].source
            return
        solutions.preprocess_cell(cell, {"language": "python"}, 0)
        hidden.preprocess_cell(cell, {}, 0)
    return clear


def with_stub_import(source: str) -> str:
    """``source`` with ``STUB_IMPORT`` as its first line (after a cell magic) if it raises ``NotWrittenYet``."""
    if STUB_RAISE not in source:
        return source
    lines = source.splitlines()
    at = 1 if lines and lines[0].startswith("%%") else 0
    return "\n".join(lines[:at] + [STUB_IMPORT, ""] + lines[at:])


def _stub_regions(source: str, stub: str = CODE_STUB) -> str:
    """Replace every ``### BEGIN SOLUTION`` … ``### END SOLUTION`` region by ``stub`` (a TODO) at the region's
    indentation."""
    out, inside = [], False
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith(BEGIN_SOLUTION):
            if inside:
                raise ValueError(f"nested {BEGIN_SOLUTION!r} in a solution cell:\n{source}")
            inside, indent = True, line[:len(line) - len(line.lstrip())]
            out += [indent + line for line in stub.split("\n")]
        elif stripped.startswith(END_SOLUTION):
            if not inside:
                raise ValueError(f"{END_SOLUTION!r} without {BEGIN_SOLUTION!r} in a solution cell:\n{source}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN_SOLUTION!r} without {END_SOLUTION!r} in a solution cell:\n{source}")
    return "\n".join(out)

"""The instructor's release: the series as an nbgrader course directory, to assign and grade with nbgrader's commands.

``python -m helpers.course release --out DIR [--only PATTERN]`` writes

- ``DIR/source/NN_name/NN_name.ipynb``: one assignment per notebook, the source notebook as committed (solutions,
  hidden tests and the nbgrader metadata of ``helpers.course.grading``, checked to be up to date), where a whole-cell
  answer that later cells use gets placeholders (``prepare``);
- ``DIR/nbgrader_config.py``: the course's settings — the stub that replaces a solution (``student.CODE_STUB``: it
  raises ``helpers.NotWrittenYet`` inside a function, so the self-checks say "not written yet"; at the top level of
  a cell only its ``# TODO`` stays, as in the build's student versions), a cell timeout, and the model cache the
  notebooks read (``COURSE_CACHE_DIR``, unless already set), so autograding does not retrain the course's models.

The notebooks need no copies beside them: they import the installed ``helpers`` package (``pip install -e
.[instructor]``), which reads the bundled ``data/`` from the repository.  Then, in ``DIR``::

    nbgrader generate_assignment 02_untargeted_attack     # -> release/02_untargeted_attack/
    # hand out release/, collect submissions into submitted/<student>/02_untargeted_attack/
    nbgrader autograde 02_untargeted_attack
    nbgrader generate_feedback 02_untargeted_attack       # -> feedback/<student>/...

nbgrader (0.9) needs Python >= 3.11; without it this command says what to install and writes nothing.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path

import nbformat

from .. import _store
from . import grading, student

REQUIRES = "nbgrader>=0.9.6,<0.10"
CONFIG = '''"""nbgrader settings of the adversarial-examples course (written by python -m helpers.course release)."""
import os

c = get_config()  # noqa: F821 (nbgrader provides it)
c.CourseDirectory.course_id = {course_id!r}
c.ClearSolutions.code_stub = {{"python": {code_stub!r}}}
c.ClearSolutions.text_stub = {text_stub!r}
c.ClearSolutions.enforce_metadata = True
# ... and a whole-cell answer's stub does not raise at the top level of its cell (helpers.course.release)
from helpers.course.release import generate_assignment_preprocessors  # noqa: E402

c.GenerateAssignment.preprocessors = generate_assignment_preprocessors()
c.Execute.timeout = {timeout}           # seconds per cell (notebook 07 trains for about 100 s in one cell)
# The notebooks load the course's models from this cache instead of training them for every submission.
os.environ.setdefault({env!r}, {cache!r})
'''


class ReleaseError(RuntimeError):
    """nbgrader is missing, or a notebook is not ready to release."""


def require_nbgrader() -> None:
    """Raise ``ReleaseError`` with what to install unless nbgrader can be imported."""
    if sys.version_info < (3, 11):
        raise ReleaseError(f"nbgrader 0.9 needs Python >= 3.11; this is Python {sys.version.split()[0]}. "
                           "Use Python 3.11 or 3.12 for assigning and grading; the build "
                           "(python -m helpers.course build) and the notebooks work without nbgrader.")
    try:
        import nbgrader  # noqa: F401
    except ImportError:
        raise ReleaseError(f"nbgrader is not installed: pip install -e '.[instructor]' (or pip install "
                           f"'{REQUIRES}') in this environment, then run this command again.") from None


def ready_source(path: Path):
    """The notebook at ``path``, checked to carry the grading table's metadata (``ReleaseError`` if not)."""
    nb = nbformat.read(path, as_version=4)
    expected = grading.apply(copy.deepcopy(nb), path.name)
    if nbformat.writes(expected) != nbformat.writes(nb):
        raise ReleaseError(f"{path.name}: its nbgrader metadata differs from helpers.course.grading's table; run "
                           "python -m helpers.course.grading --write first")
    return nb


def prepare(nb):
    """A copy of ``nb`` as nbgrader's source version.  A solution cell without ``### BEGIN SOLUTION`` lines (the
    whole cell is the answer) whose names later cells read gets placeholders for them — as the build's student
    versions have (``student.make_student_version``) — and its code between ``### BEGIN SOLUTION`` / ``### END
    SOLUTION``, so that in the students' copy those names still exist and the later cells and self-checks say
    "not written yet" instead of failing with a ``NameError``."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "solution" not in cell.metadata.get("tags", []) or \
                student.BEGIN_SOLUTION in cell.source:
            continue
        lines = student.placeholders(nb, i)
        if not lines:
            continue
        source = "\n".join(lines + [student.BEGIN_SOLUTION, cell.source, student.END_SOLUTION])
        cell.source = student.with_stub_import(source)
    return nb


def generate_assignment_preprocessors() -> list:
    """nbgrader's ``GenerateAssignment.preprocessors`` with ``QuietTopLevelStubs`` right after ``ClearSolutions``
    (``nbgrader_config.py`` sets it)."""
    from nbgrader.converters import GenerateAssignment
    from nbgrader.preprocessors import ClearSolutions, NbGraderPreprocessor

    class QuietTopLevelStubs(NbGraderPreprocessor):
        """A whole-cell answer's stub must not raise at the top level of a cell (a traceback before the student
        has written anything, unlike the build's student versions): drop the stub's import and ``raise`` lines there;
        the ``# TODO`` and the placeholders stay.  Inside a function the stub still raises ``NotWrittenYet``."""

        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
                drop = student.CODE_STUB.split("\n")[1:]                    # the import and the raise, unindented
                cell.source = "\n".join(line for line in cell.source.split("\n") if line not in drop)
            return cell, resources

    default = list(GenerateAssignment.class_traits()["preprocessors"].default())
    at = default.index(ClearSolutions) + 1
    return default[:at] + [QuietTopLevelStubs] + default[at:]


def write_config(out_dir: Path, *, course_id: str = "adversarial-course", timeout: int = 600,
                 cache: str | None = None) -> Path:
    text = CONFIG.format(course_id=course_id, code_stub=student.CODE_STUB, text_stub=student.TEXT_STUB, timeout=timeout,
                         env=_store.CACHE_ENV, cache=str(cache or _store.cache_dir()))
    path = out_dir / "nbgrader_config.py"
    return _store.write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def release(out_dir, paths, *, log=None, timeout: int = 600) -> list:
    """Write the course directory (module docstring) for the notebooks ``paths``; returns the assignment names.
    An existing ``OUT/source/NN_name`` is replaced; the rest of ``OUT`` (release/, submitted/, the gradebook) is
    left alone, so an instructor can release again into the same course directory."""
    log = log or (lambda line: print(line, flush=True))
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError(f"paths must be a list of notebook paths (NN_name.ipynb), not one path: {paths!r}; "
                        "pass [path]")
    paths = list(paths)
    if not paths:
        raise ValueError("paths=[]: release needs at least one notebook path (NN_name.ipynb), e.g. "
                         "helpers.course.build.find_notebooks('notebooks')")
    require_nbgrader()
    notebooks = [(Path(p), ready_source(Path(p))) for p in paths]     # every check before anything is written
    out_dir = Path(out_dir).resolve()
    (out_dir / "source").mkdir(parents=True, exist_ok=True)
    names = []
    for path, nb in notebooks:
        folder = out_dir / "source" / path.stem
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        nbformat.write(prepare(nb), folder / path.name)
        p = grading.points(path.name)
        log(f"source/{path.stem}/{path.name}: {p['auto']} points autograded, {p['manual']} graded by hand")
        names.append(path.stem)
    config = write_config(out_dir, timeout=timeout)
    log(f"{config}: written.  Next, in {out_dir}: nbgrader generate_assignment {names[0]}")
    return names


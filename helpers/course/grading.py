"""The course's grading scheme for nbgrader, in one table: which cells are graded, how, and for how many points.

Every exercise of the series is one row of ``EXERCISES``.  From it, ``apply`` writes nbgrader's cell metadata into a
notebook (idempotent: running it again changes nothing), and ``markdown_table`` writes the grading table of the
README.  Cells are found by what they contain, not by their position:

- the exercise's statement: the markdown cell with ``**Exercise N`` — locked (read-only), grade id ``exN-task``;
- its answer: the first cell tagged ``solution`` after the statement — an nbgrader solution cell (``exN-name``),
  not graded itself;
- if the row gives points for the answer in words (``words``): the markdown cell tagged ``answer`` after the
  exercise's code (and its check, if any), before the next statement — a manually graded answer with those points
  (``exN-name-words``), which nbgrader's release replaces with ``ClearSolutions.text_stub`` and its autograde marks
  as needing a manual grade.  A cell tagged ``answer`` that no row grades is an error: nbgrader would hand it out;
- its self-checks: the code cell calling ``selfcheck.CHECK(`` for each ``(CHECK, points)`` of ``checks`` — an
  autograded test cell (``exN-check-CHECK``, locked) whose last lines are a hidden test,
  ``selfcheck.graded("CHECK")``, which fails unless the visible check passed (and, for some checks, unless the
  answer works without the ``helpers`` function it is compared with: ``selfcheck.SHORTCUTS``).  The student's copy lacks it, so the
  live notebook still says "not written yet"; nbgrader's autograde puts it back, so an unanswered exercise scores 0.

``python -m helpers.course.grading`` says whether the notebooks are up to date; ``--write`` updates them (only metadata
and the hidden tests of check cells change, so no output changes); ``--table`` prints the grading table.
Like the rest of ``helpers.course``, this module stands apart from the course vocabulary and never imports
TensorFlow.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .student import ANSWER_TAG, tags   # ANSWER_TAG: an answer in words, a markdown cell with this tag

SCHEMA_VERSION = 3
STATEMENT = re.compile(r"\*\*Exercise \d")
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
HIDDEN_TEST = 'selfcheck.graded("{check}")   # autograding: no points unless the self-check above passed'


@dataclass(frozen=True)
class Exercise:
    notebook: str             # "02": the NN of notebooks/NN_name.ipynb
    number: int               # N of "**Exercise N" in its statement
    name: str                 # short name, part of the grade ids
    checks: tuple = ()        # ((selfcheck function name, points), ...): autograded test cells
    words: int = 0            # points for the answer in words (a markdown cell tagged "answer", graded by hand)

    @property
    def answer_id(self) -> str:
        return f"ex{self.number}-{self.name}"

    @property
    def words_id(self) -> str:
        return f"ex{self.number}-{self.name}-words"

    def check_id(self, check: str) -> str:
        return f"ex{self.number}-check-{check.replace('_', '-')}"

    @property
    def points(self) -> int:
        return self.words + sum(p for _, p in self.checks)


EXERCISES = (
    Exercise("01", 1, "softmax", (("softmax", 3),)),
    Exercise("01", 2, "mlp-vs-cnn", words=2),
    Exercise("01", 3, "least-confident", (("least_confident", 2),), words=1),
    Exercise("02", 1, "fgsm", (("fgsm", 3),)),
    Exercise("02", 2, "wrong-label", words=2),
    Exercise("02", 3, "smallest-eps", words=2),
    Exercise("03", 1, "best-linear-gain", (("best_linear_gain", 3),)),
    Exercise("03", 2, "step-size", words=2),
    Exercise("03", 3, "how-many-steps", words=2),
    Exercise("04", 1, "targeted-fgsm", (("targeted_fgsm", 3),)),
    Exercise("04", 2, "least-likely", words=2),
    Exercise("04", 3, "untargeted-vs-targeted", words=2),
    Exercise("05", 1, "train-step", (("train_step", 3), ("training_run", 1))),
    Exercise("05", 2, "adversarial-only", words=2),
    Exercise("05", 3, "beyond-the-budget", words=2),
    Exercise("06", 1, "worst-case", (("worst_case_accuracy", 3),)),
    Exercise("06", 2, "unmask-fgsm-model", words=2),
    Exercise("06", 3, "pgd-100", words=2),
    Exercise("07", 1, "fgsm-rs", (("fgsm_rs", 3),)),
    Exercise("07", 2, "what-pgd-missed", words=2),
    Exercise("07", 3, "one-seed", words=2),
    Exercise("08", 1, "collapse-detector", (("collapse_detector", 3),)),
    Exercise("08", 2, "is-it-collapse", words=2),
    Exercise("09", 1, "dense-interval", (("dense_interval", 3),)),
    Exercise("09", 2, "certify-half", words=2),
    Exercise("10", 1, "dlr", (("dlr", 3),)),
    Exercise("10", 2, "random-search-step", (("random_search_step", 3),)),
)


class GradingError(ValueError):
    """A notebook does not have the cells the grading table expects."""


def exercises_of(notebook: str) -> list:
    """The rows of ``EXERCISES`` for notebook ``"NN"`` (or a file name starting with it)."""
    key = Path(notebook).name[:2]
    return [e for e in EXERCISES if e.notebook == key]


def points(notebook: str | None = None) -> dict:
    """``{"auto": …, "manual": …, "total": …}`` of one notebook (``"NN"``), or of the series."""
    rows = exercises_of(notebook) if notebook else EXERCISES
    auto = sum(p for e in rows for _, p in e.checks)
    manual = sum(e.words for e in rows)
    return {"auto": auto, "manual": manual, "total": auto + manual}


# ------------------------------------------------------------------------------------------------ finding cells
def _one(nb, where: str, match) -> int:
    found = [i for i, c in enumerate(nb.cells) if match(c)]
    if len(found) != 1:
        raise GradingError(f"expected exactly one {where}, found {len(found)} (cells {found})")
    return found[0]


def locate(nb, exercise: Exercise) -> dict:
    """``{grade_id: (cell index, kind, points)}`` of the exercise's cells; kind: "task", "solution", "manual" (the
    answer in words, a markdown cell), "test".  Raises ``GradingError`` naming what is missing."""
    ex = f"notebook {exercise.notebook}, exercise {exercise.number}"
    pattern = re.compile(rf"\*\*Exercise {exercise.number}\b")
    task = _one(nb, f"markdown cell with '**Exercise {exercise.number}' ({ex})",
                lambda c: c.cell_type == "markdown" and pattern.search(c.source))
    answer = next((i for i in range(task + 1, len(nb.cells)) if "solution" in tags(nb.cells[i])), None)
    if answer is None:
        raise GradingError(f"no cell tagged 'solution' after the statement of {ex} (cell {task})")
    cells = {f"ex{exercise.number}-task": (task, "task", 0), exercise.answer_id: (answer, "solution", 0)}
    for check, pts in exercise.checks:
        call = re.compile(rf"selfcheck\.{check}\(")
        index = _one(nb, f"code cell calling selfcheck.{check}( ({ex})",
                     lambda c: c.cell_type == "code" and call.search(_visible(c.source)))
        cells[exercise.check_id(check)] = (index, "test", pts)
    if exercise.words:
        cells[exercise.words_id] = (_words_cell(nb, exercise, answer), "manual", exercise.words)
    return cells


def _words_cell(nb, exercise: Exercise, answer: int) -> int:
    """The index of the exercise's answer in words: the first cell tagged ``answer`` after its solution cell
    ``answer`` and before the next exercise's statement (a markdown cell, else ``GradingError``)."""
    ex = f"notebook {exercise.notebook}, exercise {exercise.number}"
    end = next((i for i in range(answer + 1, len(nb.cells)) if nb.cells[i].cell_type == "markdown" and
                STATEMENT.search(nb.cells[i].source)), len(nb.cells))
    index = next((i for i in range(answer + 1, end) if ANSWER_TAG in tags(nb.cells[i])), None)
    if index is None:
        raise GradingError(f"no markdown cell tagged {ANSWER_TAG!r} after the solution cell (cell {answer}) of {ex}, "
                           f"before the next exercise: its answer in words (words={exercise.words}) goes there")
    if nb.cells[index].cell_type != "markdown":
        raise GradingError(f"cell {index} of {ex} is tagged {ANSWER_TAG!r} but is a {nb.cells[index].cell_type} "
                           "cell: an answer in words is a markdown cell")
    return index


# ------------------------------------------------------------------------------------------------ writing metadata
def nbgrader_metadata(kind: str, grade_id: str, points: int = 0) -> dict:
    """nbgrader's cell metadata (schema 3) for a cell of ``kind``: "solution" (the student writes it), "manual"
    (the student writes it and a person grades it: here an answer in words), "test" (autograded, locked) or "task"
    (read-only)."""
    if kind not in ("solution", "manual", "test", "task"):
        raise ValueError(f"kind={kind!r}; allowed: 'solution', 'manual', 'test', 'task'")
    meta = {"grade": kind in ("manual", "test"), "grade_id": grade_id, "locked": kind in ("test", "task"),
            "schema_version": SCHEMA_VERSION, "solution": kind in ("solution", "manual"), "task": False}
    if meta["grade"]:
        meta["points"] = points
    return meta


def _visible(source: str) -> str:
    """``source`` without its hidden-test region."""
    return re.sub(rf"\n*{re.escape(BEGIN_HIDDEN)}.*?{re.escape(END_HIDDEN)}\n?", "", source, flags=re.S).rstrip()


def with_hidden_test(source: str, check: str) -> str:
    """The check cell's source ending with exactly one hidden test for ``check`` (replacing any earlier one)."""
    return "\n".join([_visible(source), BEGIN_HIDDEN, HIDDEN_TEST.format(check=check), END_HIDDEN])


def apply(nb, notebook: str, exercises=None):
    """Write the grading table's metadata into ``nb`` (in place; returns it): the cells of every exercise of
    ``notebook`` ("NN" or its file name; or of ``exercises``, rows like those of ``EXERCISES``), hidden tests into
    the check cells, and no nbgrader metadata elsewhere.  A cell tagged ``answer`` that no row grades is a
    ``GradingError`` (without nbgrader metadata, nbgrader's release would hand the answer out)."""
    wanted = {}
    for exercise in exercises_of(notebook) if exercises is None else exercises:
        for grade_id, (index, kind, pts) in locate(nb, exercise).items():
            if index in wanted:
                raise GradingError(f"cell {index} of notebook {exercise.notebook} is both {wanted[index][0]} and "
                                   f"{grade_id}")
            check = {exercise.check_id(c): c for c, _ in exercise.checks}.get(grade_id)
            wanted[index] = (grade_id, kind, pts, check)
    stray = [i for i, c in enumerate(nb.cells) if ANSWER_TAG in tags(c) and i not in wanted]
    if stray:
        raise GradingError(f"cells {stray} of notebook {Path(notebook).name[:2]} are tagged {ANSWER_TAG!r} but no "
                           "exercise with words > 0 grades them: give the row words points, or drop the tag")
    for i, cell in enumerate(nb.cells):
        if i not in wanted:
            cell.metadata.pop("nbgrader", None)
            continue
        grade_id, kind, pts, check = wanted[i]
        cell.metadata["nbgrader"] = nbgrader_metadata(kind, grade_id, pts)
        if kind == "test":
            cell.source = with_hidden_test(cell.source, check)
    return nb


def apply_to_files(notebooks_dir=NOTEBOOKS, *, write: bool = False) -> list:
    """The notebooks whose metadata differs from the table (written if ``write``), as file names."""
    stale = []
    for path in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        if nbformat.writes(apply(nb, path.name)) != before:
            stale.append(path.name)
            if write:
                nbformat.write(nb, path)   # as Jupyter writes it: only the changed lines differ
    return stale


# ------------------------------------------------------------------------------------------------ the table
def markdown_table(titles: dict | None = None) -> str:
    """The grading table of the README: per notebook, its graded exercises, autograded and manual points."""
    lines = ["| notebook | exercises (autograded checks; answers in words graded by hand) | autograded | "
             "by hand | points |", "| --- | --- | ---: | ---: | ---: |"]
    for nn in sorted({e.notebook for e in EXERCISES}):
        parts = []
        for e in exercises_of(nn):
            how = [f"`{c}` {p}" for c, p in e.checks] + ([f"words {e.words}"] if e.words else [])
            parts.append(f"{e.number}. {e.name} ({', '.join(how)})")
        p = points(nn)
        name = (titles or {}).get(nn, nn)
        lines.append(f"| {name} | {'; '.join(parts)} | {p['auto']} | {p['manual']} | {p['total']} |")
    p = points()
    lines.append(f"| **series** | {len(EXERCISES)} exercises | **{p['auto']}** | **{p['manual']}** | "
                 f"**{p['total']}** |")
    return "\n".join(lines)


def notebook_titles(notebooks_dir=NOTEBOOKS) -> dict:
    """``{"NN": "`NN_name`"}`` of the notebooks in ``notebooks_dir``."""
    return {p.name[:2]: f"`{p.stem}`" for p in sorted(Path(notebooks_dir).glob("[0-9][0-9]_*.ipynb"))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.course.grading", description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", default=str(NOTEBOOKS), help="folder of NN_name.ipynb notebooks")
    parser.add_argument("--write", action="store_true", help="write the metadata into the notebooks")
    parser.add_argument("--table", action="store_true", help="print the grading table (markdown) and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(notebook_titles(args.notebooks)))
        return 0
    try:
        stale = apply_to_files(args.notebooks, write=args.write)
    except GradingError as err:
        print(f"grading: {err}", file=sys.stderr)
        return 2
    if not stale:
        print("grading metadata: up to date")
        return 0
    print(("updated: " if args.write else "out of date (run with --write): ") + ", ".join(stale))
    return 0 if args.write else 1


if __name__ == "__main__":
    sys.exit(main())

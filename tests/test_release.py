"""The nbgrader release (helpers.course.release, ``python -m helpers.course release``): a course directory that nbgrader's
own commands turn into student copies, grade and give feedback on.

Fast: the messages without nbgrader or with stale metadata, and what the release writes.  Slow (``-m slow``,
about a minute with the course's models cached): nbgrader's commands in a temporary course directory —
``generate_assignment`` for all ten notebooks (structural: metadata, solution regions, hidden tests, locked
cells), then one ``autograde`` run and one ``generate_feedback`` run over both assignments: notebook 02 executed
three times: the solution (full points), the released notebook unanswered (zero) and FGSM with the gradient's sign
flipped (loses that check's points; the feedback says why); its answers in words are manually graded markdown cells
(a written one waits for a person, the untouched stub scores 0), and notebook 01, which has two autograded checks,
once: a naive softmax loses exactly the softmax check's points and keeps the other's.  The other seven notebooks are
checked structurally only (generate_assignment)."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import _store, exercise
from helpers.course import build, grading, release, student
from helpers.course.cli import main

ROOT = Path(__file__).resolve().parent.parent
NB02 = "02_untargeted_attack"

try:
    import nbgrader  # noqa: F401

    HAVE_NBGRADER = sys.version_info >= (3, 11)
except ImportError:
    HAVE_NBGRADER = False
needs_nbgrader = pytest.mark.skipif(not HAVE_NBGRADER, reason="nbgrader is not installed: pip install -e "
                                    "'.[instructor]' (Python >= 3.11) to test the nbgrader release")


def test_without_nbgrader_release_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "nbgrader", None)               # import nbgrader -> ImportError
    with pytest.raises(release.ReleaseError, match=r"pip install -e '\.\[instructor\]'"):
        release.require_nbgrader()
    assert main(["release", "--out", str(tmp_path / "c"), "--only", "02"]) == 1
    assert "nbgrader is not installed" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_old_python_is_a_clear_message(monkeypatch):
    monkeypatch.setattr(sys, "version_info", (3, 10, 14))
    with pytest.raises(release.ReleaseError, match=r"needs Python >= 3\.11.*work without nbgrader"):
        release.require_nbgrader()


def test_release_of_no_notebooks_is_a_clear_error(tmp_path):
    """No IndexError from deep inside: the empty list (or one path where a list belongs) is named, before anything
    is written and whether or not nbgrader is installed."""
    with pytest.raises(ValueError, match=r"paths=\[\]: release needs at least one notebook path"):
        release.release(tmp_path / "course", [], log=lambda line: None)
    with pytest.raises(TypeError, match="a list of notebook paths"):
        release.release(tmp_path / "course", str(ROOT / "notebooks" / f"{NB02}.ipynb"), log=lambda line: None)
    assert not (tmp_path / "course").exists()


@needs_nbgrader
def test_stale_metadata_stops_the_release(tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / f"{NB02}.ipynb", as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nbformat.write(nb, tmp_path / f"{NB02}.ipynb")
    with pytest.raises(release.ReleaseError, match="python -m helpers.course.grading --write"):
        release.release(tmp_path / "course", [tmp_path / f"{NB02}.ipynb"], log=lambda line: None)
    assert not (tmp_path / "course").exists()


@needs_nbgrader
def test_release_writes_sources_and_config(tmp_path):
    names = release.release(tmp_path, build.find_notebooks(ROOT / "notebooks"), log=lambda line: None)
    assert names == [p.stem for p in build.find_notebooks(ROOT / "notebooks")]
    for name in names:
        written = nbformat.read(tmp_path / "source" / name / f"{name}.ipynb", as_version=4)
        committed = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        assert nbformat.writes(written) == nbformat.writes(release.prepare(committed)), name
    assert (tmp_path / "source" / NB02 / f"{NB02}.ipynb").read_bytes() == \
        (ROOT / "notebooks" / f"{NB02}.ipynb").read_bytes()              # nothing to prepare in 02
    config = (tmp_path / "nbgrader_config.py").read_text()
    assert "NotWrittenYet" in config and "COURSE_CACHE_DIR" in config
    compile(config, "nbgrader_config.py", "exec")


def test_prepare_gives_whole_cell_answers_the_build_s_placeholders():
    """A whole-cell answer that a later cell reads (notebook 01's `least`, read by its self-check) keeps a
    placeholder in the students' copy, the one the build's student version has; the solution itself becomes an
    nbgrader solution region, and running the prepared cell still gives the solution's value."""
    nb = nbformat.read(ROOT / "notebooks" / "01_train_classifier.ipynb", as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if c.source.startswith("right = np.flatnonzero"))
    prepared = release.prepare(nb).cells[index].source
    assert prepared.startswith("least = None  # TODO: replace with your result\n### BEGIN SOLUTION\n")
    assert prepared.endswith(nb.cells[index].source + "\n### END SOLUTION")
    version = student.make_student_version(nb).cells[index].source
    assert "least = None  # TODO: replace with your result" in version
    assert release.prepare(release.prepare(nb)).cells[index].source == prepared      # idempotent


@needs_nbgrader
def test_build_and_nbgrader_stub_the_same_way():
    """One definition of the student version: the build's student versions of the series are the same notebooks
    whether nbgrader's own ClearSolutions and ClearHiddenTests clear them (nbgrader installed) or the course's code
    does (without nbgrader), and the stubs — of code and of answers in words — are nbgrader's ClearSolutions with the
    release's configuration."""
    from nbgrader.preprocessors import ClearSolutions
    from traitlets.config import Config

    config = Config()
    config.ClearSolutions.code_stub = {"python": student.CODE_STUB}
    config.ClearSolutions.text_stub = student.TEXT_STUB
    regions = answers = 0
    for path in build.find_notebooks(ROOT / "notebooks"):
        nb = nbformat.read(path, as_version=4)
        with_nbgrader = student.make_student_version(nb, use_nbgrader=True)
        assert nbformat.writes(with_nbgrader) == nbformat.writes(student.make_student_version(nb, use_nbgrader=False))
        cleared = ClearSolutions(config=config).preprocess(copy.deepcopy(nb), {})[0]
        for source, ours, theirs in zip(nb.cells, with_nbgrader.cells, cleared.cells):
            if student.BEGIN_SOLUTION in source.source:
                assert ours.source == theirs.source and "NotWrittenYet" in ours.source, path.name
                regions += 1
            if student.ANSWER_TAG in source.metadata.get("tags", []):
                assert ours.source == theirs.source == student.TEXT_STUB != source.source, path.name
                answers += 1
    assert regions == sum(1 for e in grading.EXERCISES if not e.words)      # every exercise that asks for code
    assert answers == sum(1 for e in grading.EXERCISES if e.words)          # every answer in words


@needs_nbgrader
def test_whole_cell_stubs_do_not_raise_at_the_top_level():
    from nbgrader.preprocessors import ClearSolutions

    steps = release.generate_assignment_preprocessors()
    quiet = steps[steps.index(ClearSolutions) + 1]
    top = nbformat.v4.new_code_cell("least = None  # TODO: replace with your result\n" + student.CODE_STUB)
    body = "\n".join("    " + line for line in student.CODE_STUB.split("\n"))
    inside = nbformat.v4.new_code_cell("def f(x):\n" + body)
    for cell in (top, inside):
        cell.metadata["nbgrader"] = grading.nbgrader_metadata("solution", "x")
    assert quiet().preprocess_cell(top, {}, 0)[0].source == \
        "least = None  # TODO: replace with your result\n# TODO (exercise): write this part."
    before = inside.source
    assert quiet().preprocess_cell(inside, {}, 0)[0].source == before     # inside a function it still raises


def test_use_nbgrader_without_nbgrader_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nbgrader.preprocessors", None)
    nb = nbformat.read(ROOT / "notebooks" / f"{NB02}.ipynb", as_version=4)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[instructor\]'"):
        student.make_student_version(nb, use_nbgrader=True)
    assert "NotWrittenYet" in nbformat.writes(student.make_student_version(nb))    # falls back to the course's own


# ------------------------------------------------------------------------------------------------ end to end
def nbgrader_cmd(course_dir, *args):
    """Run ``nbgrader ARGS`` in ``course_dir`` with this environment's scripts first on PATH (nbgrader runs
    ``alembic`` from there); fail with nbgrader's own output."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MPLBACKEND", None)
    out = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=course_dir, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out.stdout + out.stderr


def submit(course_dir, student, nb):
    folder = course_dir / "submitted" / student / NB02
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{NB02}.ipynb")


def flipped_sign(nb):
    """The solution with one deliberate mistake: FGSM steps down the loss (the gradient's sign flipped)."""
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "ex1-fgsm")
    assert "x + eps * tf.sign(grad)" in cell.source
    cell.source = cell.source.replace("x + eps * tf.sign(grad)", "x - eps * tf.sign(grad)")
    return nb


@pytest.mark.slow
@needs_nbgrader
def test_nbgrader_assigns_grades_and_explains(tmp_path):
    from nbgrader.api import Gradebook

    release.release(tmp_path, build.find_notebooks(ROOT / "notebooks"), log=lambda line: None)
    log = nbgrader_cmd(tmp_path, "generate_assignment", "*")            # all ten notebooks
    assert "Exception while loading config" not in log                   # else nbgrader's own stubs, silently
    for path in build.find_notebooks(ROOT / "notebooks"):
        released = nbformat.read(tmp_path / "release" / path.stem / path.name, as_version=4)
        text = nbformat.writes(released)
        assert "HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text and "NotWrittenYet" in text, path.name
        for cell in released.cells:                                        # no traceback before any answer
            if cell.metadata.get("nbgrader", {}).get("solution"):
                assert not any(line.startswith("raise ") for line in cell.source.split("\n")), cell.source
        words = [c.source for c in released.cells if student.ANSWER_TAG in c.metadata.get("tags", [])]
        assert words == [student.TEXT_STUB] * len([e for e in grading.exercises_of(path.name) if e.words])
    source = nbformat.read(tmp_path / "source" / NB02 / f"{NB02}.ipynb", as_version=4)
    submit(tmp_path, "solved", source)
    submit(tmp_path, "unanswered", nbformat.read(tmp_path / "release" / NB02 / f"{NB02}.ipynb", as_version=4))
    submit(tmp_path, "flipped", flipped_sign(nbformat.read(tmp_path / "source" / NB02 / f"{NB02}.ipynb",
                                                           as_version=4)))
    _submit_naive_softmax(tmp_path)
    nbgrader_cmd(tmp_path, "autograde", "*", "--create")          # both assignments, one nbgrader start-up
    nbgrader_cmd(tmp_path, "generate_feedback", "*")
    tests = [gid for gid, (_, kind, _) in _cells(source).items() if kind == "test"]
    with Gradebook(f"sqlite:///{tmp_path / 'gradebook.db'}") as gb:
        score = {s: {g: gb.find_grade(g, NB02, NB02, s).auto_score for g in tests}
                 for s in ("solved", "unanswered", "flipped")}
        maximum = {g: gb.find_grade_cell(g, NB02, NB02).max_score for g in tests}
    assert sum(maximum.values()) == grading.points(NB02)["auto"] > 0
    assert score["solved"] == maximum
    assert all(v == 0 for v in score["unanswered"].values())
    assert score["flipped"] == {**score["solved"], "ex1-check-fgsm": 0}
    feedback = (tmp_path / "feedback" / "flipped" / NB02 / f"{NB02}.html").read_text()
    assert "the sign is flipped" in feedback
    unanswered = (tmp_path / "feedback" / "unanswered" / NB02 / f"{NB02}.html").read_text()
    assert exercise.NOT_WRITTEN.format(number=1, what="my_fgsm()") in unanswered
    if _store.manifest():   # autograding reads the shipped model: no training per submission
        solved = (tmp_path / "feedback" / "solved" / NB02 / f"{NB02}.html").read_text()
        assert "shipped (data/shipped)" in solved and "trained here" not in solved
    _answers_in_words_wait_for_a_person(tmp_path)
    _one_wrong_of_two(tmp_path)


def _answers_in_words_wait_for_a_person(course_dir):
    """After autograde, each answer in words of notebook 02 is a manually graded markdown cell worth its row's
    points: a written answer needs a manual grade (no automatic score); the untouched text stub scores 0 without
    one (nbgrader's checksum). The notebook's maximum is the table's total, its written part the words points."""
    from nbgrader.api import Gradebook

    words = {e.words_id: e.words for e in grading.exercises_of(NB02) if e.words}
    assert len(words) == 2
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for grade_id, pts in words.items():
            cell = gb.find_grade_cell(grade_id, NB02, NB02)
            assert (cell.cell_type, cell.max_score) == ("markdown", pts), grade_id
            solved = gb.find_grade(grade_id, NB02, NB02, "solved")
            assert solved.needs_manual_grade and solved.auto_score is None and solved.max_score == pts, grade_id
            blank = gb.find_grade(grade_id, NB02, NB02, "unanswered")
            assert not blank.needs_manual_grade and blank.auto_score == 0, grade_id
        assert gb.find_submission_notebook(NB02, NB02, "solved").needs_manual_grade
        notebook = gb.find_notebook(NB02, NB02)
        p = grading.points(NB02)
        assert (notebook.max_score, notebook.max_code_score, notebook.max_written_score) == \
            (p["total"], p["auto"], p["manual"]) == (7, 3, 4)


NB01 = "01_train_classifier"


def _submit_naive_softmax(course_dir):
    """Notebook 01 submitted with a naive softmax (no shift, so exp overflows); autograded with notebook 02."""
    nb = nbformat.read(course_dir / "source" / NB01 / f"{NB01}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "ex1-softmax")
    assert "np.exp(z - z.max(axis=1, keepdims=True))" in cell.source
    cell.source = cell.source.replace("np.exp(z - z.max(axis=1, keepdims=True))", "np.exp(z)")
    folder = course_dir / "submitted" / "naive" / NB01
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{NB01}.ipynb")


def _one_wrong_of_two(course_dir):
    """Notebook 01 has two autograded checks: a naive softmax (no shift, so exp overflows) loses exactly the
    softmax check's points, keeps the other's, and the feedback names the fix."""
    from nbgrader.api import Gradebook

    name = NB01
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        score = {g: gb.find_grade(g, name, name, "naive").auto_score
                 for g in ("ex1-check-softmax", "ex3-check-least-confident")}
    assert score == {"ex1-check-softmax": 0, "ex3-check-least-confident": 2}
    feedback = (course_dir / "feedback" / "naive" / name / f"{name}.html").read_text()
    assert "subtract each row" in feedback


def _cells(nb):
    out = {}
    for exercise in grading.exercises_of(NB02):
        out.update(grading.locate(nb, exercise))
    return out

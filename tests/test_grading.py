"""The grading scheme (helpers.grading): every exercise, self-check and answer in words of the series carries the
nbgrader metadata of the one table, points add up, the README's table is the table's, and the hidden tests fail an
unanswered or wrong exercise with the message the student reads (helpers.selfcheck.graded).  Fast: only the
softmax check imports TensorFlow."""

import copy
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from helpers import NotWrittenYet, course, grading, selfcheck

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def sources():
    return {p.name: nbformat.read(p, as_version=4) for p in NOTEBOOKS}


def test_sources_carry_the_table(sources):
    """apply() changes nothing: the committed notebooks hold exactly the table's metadata and hidden tests."""
    for name, nb in sources.items():
        assert nbformat.writes(grading.apply(copy.deepcopy(nb), name)) == nbformat.writes(nb), \
            f"{name}: run python -m helpers.grading --write"


def test_every_exercise_check_and_answer_is_graded(sources):
    for name, nb in sources.items():
        graded = {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata}
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader")
            if "solution" in cell.metadata.get("tags", []):            # every solution cell is a solution cell
                assert meta and meta["solution"] and not meta["locked"], f"{name}: {cell.source[:60]}"
            if cell.cell_type == "code" and re.search(r"selfcheck\.(?!skip_if|graded)\w+\(", cell.source):
                assert meta and meta["grade"] and not meta["solution"] and meta["locked"] and meta["points"] > 0
                assert grading.BEGIN_HIDDEN in cell.source and "selfcheck.graded(" in cell.source, name
            if cell.cell_type == "markdown" and re.search(r"\*\*Exercise \d", cell.source):
                assert meta and meta["locked"] and not meta["grade"], f"{name}: {cell.source[:60]}"
            if meta and meta["solution"] and "# Answer" in cell.source:   # answers in words are graded by hand
                assert meta["grade"] and meta["points"] > 0, f"{name}: {meta['grade_id']}"
        total = sum(c.metadata["nbgrader"].get("points", 0) for c in graded.values())
        assert total == grading.points(name)["total"] > 0, name
        assert len(graded) == len([c for c in nb.cells if "nbgrader" in c.metadata]), f"{name}: grade ids repeat"


def test_points_add_up():
    per_notebook = [grading.points(f"{n:02d}") for n in range(1, 10)]
    series = grading.points()
    for key in ("auto", "manual", "total"):
        assert sum(p[key] for p in per_notebook) == series[key]
    assert series["total"] == series["auto"] + series["manual"] == sum(e.points for e in grading.EXERCISES)
    assert all(p["auto"] > 0 for p in per_notebook)           # every notebook has at least one autograded check


def test_readme_has_the_grading_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert grading.markdown_table(grading.notebook_titles()) in readme, \
        "README's grading table differs from helpers.grading: paste `python -m helpers.grading --table`"


def test_apply_is_idempotent_and_reports_missing_cells(sources):
    nb = copy.deepcopy(sources["02_untargeted_attack.ipynb"])
    once = nbformat.writes(grading.apply(nb, "02"))
    assert nbformat.writes(grading.apply(nb, "02")) == once and once.count("selfcheck.graded(") == 1
    check = next(c for c in nb.cells if "selfcheck.fgsm(" in c.source)
    check.source = check.source.replace("selfcheck.fgsm(", "selfcheck.fgsm_renamed(")
    with pytest.raises(grading.GradingError, match=r"selfcheck\.fgsm\( \(notebook 02, exercise 1\)"):
        grading.apply(nb, "02")
    with pytest.raises(ValueError, match="kind='grade'"):
        grading.nbgrader_metadata("grade", "x")


def test_stale_metadata_is_removed_and_hidden_test_replaced():
    task = nbformat.v4.new_markdown_cell("**Exercise 1.** Write it.")
    answer = nbformat.v4.new_code_cell("def my_fgsm():\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION")
    answer.metadata["tags"] = ["solution"]
    check = nbformat.v4.new_code_cell("passed = selfcheck.fgsm(my_fgsm)\n### BEGIN HIDDEN TESTS\nold()\n"
                                      "### END HIDDEN TESTS")
    other = nbformat.v4.new_code_cell("x = 1")
    other.metadata["nbgrader"] = {"grade": True, "grade_id": "stale", "points": 5}
    nb = grading.apply(nbformat.v4.new_notebook(cells=[task, answer, check, other]), "02",
                       [grading.Exercise("02", 1, "fgsm", (("fgsm", 3),))])
    assert "nbgrader" not in nb.cells[3].metadata
    assert nb.cells[2].source == ('passed = selfcheck.fgsm(my_fgsm)\n### BEGIN HIDDEN TESTS\n' +
                                  grading.HIDDEN_TEST.format(check="fgsm") + "\n### END HIDDEN TESTS")
    assert [c.metadata["nbgrader"]["grade_id"] for c in nb.cells[:3]] == ["ex1-task", "ex1-fgsm", "ex1-check-fgsm"]


def test_cli_says_whether_notebooks_are_up_to_date(tmp_path, capsys):
    nb = nbformat.read(ROOT / "notebooks" / "02_untargeted_attack.ipynb", as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    nbformat.write(nb, tmp_path / "02_untargeted_attack.ipynb")
    assert grading.main(["--notebooks", str(tmp_path)]) == 1 and "out of date" in capsys.readouterr().out
    assert grading.main(["--notebooks", str(tmp_path), "--write"]) == 0
    assert grading.main(["--notebooks", str(tmp_path)]) == 0 and "up to date" in capsys.readouterr().out


def test_student_versions_lose_the_hidden_tests(sources):
    student = course.make_student_version(sources["02_untargeted_attack.ipynb"])
    text = nbformat.writes(student)
    assert "HIDDEN TESTS" not in text and "selfcheck.graded" not in text
    assert "passed = selfcheck.fgsm(my_fgsm, model, ds.x_test, ds.y_test, DEMO_EPS)" in text


# ------------------------------------------------------------------------------------------------ hidden tests
def test_graded_repeats_what_the_check_said(capsys):
    """One source per message: the hidden test fails with the very line the self-check printed or raised."""
    def stub(z):
        raise NotWrittenYet("exercise")

    selfcheck.OUTCOMES.clear()
    with pytest.raises(AssertionError, match=r"did not run"):
        selfcheck.graded("softmax")
    assert selfcheck.softmax(stub, [[1.0, 2.0]]) is None
    printed = capsys.readouterr().out.strip()
    with pytest.raises(AssertionError) as err:
        selfcheck.graded("softmax")
    assert str(err.value) == printed == selfcheck.NOT_WRITTEN.format(number=1, what="softmax()")
    with pytest.raises(AssertionError) as raised:
        selfcheck.softmax(lambda z: z, [[1.0, 2.0]])              # a wrong answer: the identity
    with pytest.raises(AssertionError) as err:
        selfcheck.graded("softmax")
    assert str(err.value) == str(raised.value) and "sum to" in str(err.value)

    def right(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    assert selfcheck.softmax(right, [[1.0, 2.0]]) is True
    selfcheck.graded("softmax")                                    # passes: nothing raised


def test_graded_after_training_run(capsys):
    selfcheck.OUTCOMES.clear()
    assert selfcheck.training_run({}, None, None) is None
    with pytest.raises(AssertionError, match=r"^\(skipped: exercise 1 is not written yet\)$"):
        selfcheck.graded("training_run")


@pytest.mark.slow
def test_graded_catches_an_answer_that_calls_the_helper(capsys):
    """A hard-coded answer: my_fgsm that returns helpers.attacks.fgsm passes the visible check (it compares with
    attacks.fgsm) but not the hidden test; an FGSM written out passes both."""
    import keras
    import tensorflow as tf

    from helpers import attacks, models

    model = models.build_model((28, 28, 1), 10, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(8, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 8)
    shortcut = lambda m, x, y, eps: attacks.fgsm(m, x, y, eps)            # noqa: E731
    assert selfcheck.fgsm(shortcut, model, x, y, 0.1) is True
    with pytest.raises(AssertionError, match=r"calls helpers\.attacks\.fgsm.*write it yourself"):
        selfcheck.graded("fgsm")
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def written_out(m, x, y, eps):
        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = loss_fn(y, m(x, training=False))
        return tf.clip_by_value(x + eps * tf.sign(tape.gradient(loss, x)), 0.0, 1.0).numpy()

    assert selfcheck.fgsm(written_out, model, x, y, 0.1) is True
    selfcheck.graded("fgsm")
    assert attacks.fgsm is not None and attacks.fgsm.__name__ == "fgsm"      # the real function is back

"""The grading scheme (helpers.course.grading): every exercise, self-check and answer in words of the series carries the
nbgrader metadata of the one table, points add up, the README's table is the table's, and the hidden tests fail an
unanswered or wrong exercise with the message the student reads (helpers.selfcheck.graded).  Fast: only the
softmax check imports TensorFlow."""

import copy
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from helpers import NotWrittenYet, exercise, selfcheck
from helpers.course import grading, student

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def sources():
    return {p.name: nbformat.read(p, as_version=4) for p in NOTEBOOKS}


def test_sources_carry_the_table(sources):
    """apply() changes nothing: the committed notebooks hold exactly the table's metadata and hidden tests."""
    for name, nb in sources.items():
        assert nbformat.writes(grading.apply(copy.deepcopy(nb), name)) == nbformat.writes(nb), \
            f"{name}: run python -m helpers.course.grading --write"


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
            if "answer" in cell.metadata.get("tags", []):                  # answers in words are graded by hand
                assert cell.cell_type == "markdown" and meta and meta["solution"] and meta["grade"], name
                assert meta["points"] > 0 and not meta["locked"], f"{name}: {meta['grade_id']}"
            if cell.cell_type == "code":                                    # ... and no longer code comments
                assert not re.search(r"^# Answer:", cell.source, re.M), f"{name}: {cell.source[:60]}"
        total = sum(c.metadata["nbgrader"].get("points", 0) for c in graded.values())
        assert total == grading.points(name)["total"] > 0, name
        assert len(graded) == len([c for c in nb.cells if "nbgrader" in c.metadata]), f"{name}: grade ids repeat"


def test_answers_in_words_are_manually_graded_markdown_cells(sources):
    """Every row with words points: its answer in words is the markdown cell tagged `answer` after its code (and
    check), manually graded with the row's points; its code cell is a plain solution cell; the statement says where
    the answer goes."""
    rows = [e for e in grading.EXERCISES if e.words]
    assert len(rows) == 16
    for e in rows:
        name = next(n for n in sources if n.startswith(e.notebook))
        nb, cells = sources[name], grading.locate(sources[name], e)
        index, kind, pts = cells[e.words_id]
        cell = nb.cells[index]
        assert (kind, pts, cell.cell_type) == ("manual", e.words, "markdown"), e
        assert cell.source.startswith("**Answer.** ") and index > max(i for g, (i, _, _) in cells.items()
                                                                     if g != e.words_id), e
        assert cell.metadata["nbgrader"] == {"grade": True, "grade_id": f"ex{e.number}-{e.name}-words",
                                             "locked": False, "points": e.words, "schema_version": 3,
                                             "solution": True, "task": False}
        code = nb.cells[cells[e.answer_id][0]]
        assert cells[e.answer_id][1:] == ("solution", 0) and code.cell_type == "code"
        assert code.metadata["nbgrader"]["solution"] and not code.metadata["nbgrader"]["grade"], e
        assert "points" not in code.metadata["nbgrader"], e
        assert "markdown cell below" in nb.cells[cells[f"ex{e.number}-task"][0]].source, e


def _words_exercise():
    task = nbformat.v4.new_markdown_cell("**Exercise 2.** Why? Write your answer in the markdown cell below.")
    code = nbformat.v4.new_code_cell("x = 1")
    code.metadata["tags"] = ["solution"]
    answer = nbformat.v4.new_markdown_cell("**Answer.** Because.")
    answer.metadata["tags"] = ["answer"]
    nxt = nbformat.v4.new_markdown_cell("**Exercise 3.** Next.")
    return nbformat.v4.new_notebook(cells=[task, code, answer, nxt]), grading.Exercise("02", 2, "why", words=2)


def test_words_row_needs_its_answer_cell():
    nb, row = _words_exercise()
    assert grading.locate(nb, row) == {"ex2-task": (0, "task", 0), "ex2-why": (1, "solution", 0),
                                       "ex2-why-words": (2, "manual", 2)}
    del nb.cells[2].metadata["tags"]                                       # untagged: not the answer cell
    with pytest.raises(grading.GradingError, match=r"no markdown cell tagged 'answer' after the solution cell "
                                                   r"\(cell 1\) of notebook 02, exercise 2.*words=2"):
        grading.apply(nb, "02", [row])
    nb.cells.insert(4, nb.cells.pop(2))                                  # tagged, but after the next statement
    nb.cells[3].metadata["tags"] = ["answer"]
    with pytest.raises(grading.GradingError, match=r"no markdown cell tagged 'answer'"):
        grading.locate(nb, row)
    nb, row = _words_exercise()
    nb.cells[2] = nbformat.v4.new_code_cell("# Answer: because", metadata={"tags": ["answer"]})
    with pytest.raises(grading.GradingError, match=r"cell 2 of notebook 02, exercise 2 is tagged 'answer' but is a "
                                                   r"code cell"):
        grading.locate(nb, row)


def test_an_answer_no_row_grades_is_an_error():
    """An `answer` cell without metadata would reach the students through nbgrader's release."""
    nb, _ = _words_exercise()
    with pytest.raises(grading.GradingError, match=r"cells \[2\] of notebook 02 are tagged 'answer' but no "
                                                   r"exercise with words > 0 grades them"):
        grading.apply(nb, "02", [grading.Exercise("02", 2, "why")])


def test_points_add_up():
    per_notebook = [grading.points(f"{n:02d}") for n in range(1, 11)]
    series = grading.points()
    for key in ("auto", "manual", "total"):
        assert sum(p[key] for p in per_notebook) == series[key]
    assert series["total"] == series["auto"] + series["manual"] == sum(e.points for e in grading.EXERCISES)
    assert all(p["auto"] > 0 for p in per_notebook)           # every notebook has at least one autograded check


def test_readme_has_the_grading_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert grading.markdown_table(grading.notebook_titles()) in readme, \
        "README's grading table differs from helpers.course.grading: paste `python -m helpers.course.grading --table`"


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
    version = student.make_student_version(sources["02_untargeted_attack.ipynb"])
    text = nbformat.writes(version)
    assert "HIDDEN TESTS" not in text and "selfcheck.graded" not in text
    assert "passed = selfcheck.fgsm(my_fgsm, model, ds.x_test, ds.y_test, DEMO_EPS)" in text


# ------------------------------------------------------------------------------------------------ hidden tests
def test_graded_repeats_what_the_check_said(capsys):
    """One source per message: the hidden test fails with the very line the self-check printed or raised."""
    def stub(z):
        raise NotWrittenYet("exercise")

    exercise.OUTCOMES.clear()
    with pytest.raises(AssertionError, match=r"did not run"):
        selfcheck.graded("softmax")
    assert selfcheck.softmax(stub, [[1.0, 2.0]]) is None
    printed = capsys.readouterr().out.strip()
    with pytest.raises(AssertionError) as err:
        selfcheck.graded("softmax")
    assert str(err.value) == printed == exercise.NOT_WRITTEN.format(number=1, what="softmax()")
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


def test_graded_names_the_error_an_answer_raised():
    """An answer that raises (here a TypeError) fails the check with its traceback, and nbgrader's feedback names the
    error instead of saying the check did not run (a stub still says "not written yet": the test above)."""
    def broken(z):
        return z + "1"                                              # TypeError: numpy array + str

    exercise.OUTCOMES.clear()
    with pytest.raises(TypeError):
        selfcheck.softmax(broken, [[1.0, 2.0]])
    with pytest.raises(AssertionError) as err:
        selfcheck.graded("softmax")
    message = str(err.value)
    assert "did not run" not in message
    assert message.startswith("your softmax() raised ") and "TypeError" in message and "softmax()" in message

    def not_ready(z):
        raise NotImplementedError("Layer has no call()")            # a real NotImplementedError, not the stub

    with pytest.raises(NotImplementedError):
        selfcheck.softmax(not_ready, [[1.0, 2.0]])
    with pytest.raises(AssertionError, match=r"raised NotImplementedError: Layer has no call\(\)"):
        selfcheck.graded("softmax")


def test_graded_after_training_run(capsys):
    exercise.OUTCOMES.clear()
    assert selfcheck.training_run({}, None, None) is None
    with pytest.raises(AssertionError, match=r"^\(skipped: exercise 1 is not written yet\)$"):
        selfcheck.graded("training_run")


def _dlr_case():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 10)), rng.integers(0, 10, 6)


def test_graded_catches_the_helper_at_its_home_and_under_another_name(capsys):
    """The hidden test finds a call of the function the check compares with by whatever name the answer calls it:
    at its documented home (helpers.autoattack.dlr_loss) or imported earlier under another name."""
    import tensorflow as tf

    from helpers import autoattack
    from helpers.autoattack import dlr_loss as my_loss

    z, y = _dlr_case()
    at_home = lambda z, y: autoattack.dlr_loss(tf.constant(z, tf.float32), tf.constant(y)).numpy()   # noqa: E731
    renamed = lambda z, y: my_loss(tf.constant(z, tf.float32), tf.constant(y)).numpy()               # noqa: E731
    for answer in (at_home, renamed):
        assert selfcheck.dlr(answer, z, y) is True
        with pytest.raises(AssertionError, match=r"calls helpers\.autoattack\.dlr_loss.*write it yourself"):
            selfcheck.graded("dlr")


def test_graded_lets_a_written_out_answer_pass(capsys):
    import tensorflow as tf

    def written_out(z, y):
        z = tf.constant(z, tf.float32)
        top = tf.sort(z, axis=1, direction="DESCENDING")
        true = tf.gather(z, tf.constant(y), batch_dims=1)
        best_other = tf.where(true == top[:, 0], top[:, 1], top[:, 0])
        return (-(true - best_other) / (top[:, 0] - top[:, 2] + 1e-12)).numpy()

    z, y = _dlr_case()
    assert selfcheck.dlr(written_out, z, y) is True
    selfcheck.graded("dlr")


@pytest.mark.slow
def test_graded_catches_an_aliased_fgsm(capsys):
    """``from helpers.attacks import fgsm as f`` before the answer: patching ``attacks.fgsm`` would not see it."""
    import keras

    from helpers.attacks import fgsm as f

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = np.random.default_rng(0).uniform(size=(8, 2, 2, 1)).astype(np.float32)
    y = np.arange(8) % 3
    assert selfcheck.fgsm(lambda m, x, y, eps: f(m, x, y, eps), model, x, y, 0.1) is True
    with pytest.raises(AssertionError, match=r"calls helpers\.attacks\.fgsm.*write it yourself"):
        selfcheck.graded("fgsm")


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

"""The instructor's build, end to end on tiny notebooks (no TensorFlow, a few seconds each)."""

import hashlib
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from helpers.course import build, student


def _nb(cells):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb


def _tagged(cell, *tags):
    cell.metadata["tags"] = list(tags)
    return cell


def write_fixture(folder: Path, broken: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    alpha = _nb([
        new_markdown_cell("# 01 · Alpha lesson\n\nIntro.\n\n## Learning goals\n- learn <one> thing\n- learn another"
                          "\n\n**Run time:** about 2 s on 2 CPU cores."),
        _tagged(new_code_cell('DATASET = "mnist_5k"\nSEED = 0'), "parameters"),
        new_code_cell('print("dataset is", DATASET)'),
        new_markdown_cell("**Exercise.** Square the seed plus four."),
        _tagged(new_code_cell("answer = (SEED + 4) ** 2\ndef helper(v):\n    return v + 1\nprint('SOLVED', answer)"),
                "solution"),
        new_code_cell("print('later cell sees', answer is not None, callable(helper))"),
        new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.title('a line')\nplt.show()"),
        new_code_cell("from IPython.display import HTML\nHTML('<input type=\"range\" oninput=\"this.title=1\">'"
                      "'<script>var courseProbe = 1;</script>')"),
        new_markdown_cell("Formula: $x' = x + \\varepsilon$"),
    ])
    beta = _nb([
        new_markdown_cell("# 02 · Beta lesson\n\n## Learning goals\n- two\n\n**Run time:** about 1 s."),
        _tagged(new_code_cell('DATASET = "mnist_5k"'), "parameters"),
        new_code_cell("print(sum(range(5)))"),
    ])
    nbformat.write(alpha, folder / "01_alpha.ipynb")
    nbformat.write(beta, folder / "02_beta.ipynb")
    (folder / "notes.ipynb").write_text("not a lesson: ignored (no NN_ prefix)")
    if broken:
        nbformat.write(_nb([new_markdown_cell("# 03 · Broken"), new_code_cell("x = 1"),
                            new_code_cell("raise ValueError('deliberate failure')")]), folder / "03_broken.ipynb")
    return folder


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    src = write_fixture(tmp_path_factory.mktemp("src"))
    before = digest(src)
    out = tmp_path_factory.mktemp("out")
    lines = []
    with pytest.MonkeyPatch.context() as mp:  # a fixed fit unit: measuring the real one costs ~4 FU (test below)
        mp.setattr(build, "measure_fit_unit", lambda: 0.5)
        results = build.build(src, out, log=lines.append)
    return src, before, out, results, lines


@pytest.mark.slow
def test_run_times_in_fit_units(built):
    _, _, out, results, lines = built
    assert "1 FU = 0.50 s on this machine" in lines
    for r in results:
        assert r.fu == 0.5 and r.cost() == f"{r.seconds:.0f} s = {r.seconds / 0.5:.1f} FU"
        assert any(line.startswith(f"[") and r.name in line and f"{r.seconds / 0.5:.1f} FU" in line for line in lines)
    index = (out / "html" / "index.html").read_text()
    assert "1 FU = 0.50 s" in index and f"this build: {results[0].cost()}" in index
    total = sum(r.seconds for r in results)
    assert f"built 2 notebooks in " in lines[-1] and " FU: " in lines[-1]
    assert f"{total / 0.5:.0f} FU" in index


@pytest.mark.slow
def test_fit_unit_is_one_five_epoch_fit():
    from helpers.course import fitunit

    seconds = fitunit.fit_unit(repeats=1)
    assert 0.05 < seconds < 600
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        fitunit.fit_unit(repeats=0)


@pytest.mark.slow
def test_html_pages_and_index(built):
    src, _, out, results, lines = built
    assert [r.name for r in results] == ["01_alpha", "02_beta"]
    assert any("[1/2] 01_alpha: ok" in line for line in lines) and any("[2/2] 02_beta: ok" in line for line in lines)
    page = (out / "html" / "01_alpha.html").read_text()
    assert "<title>01 · Alpha lesson</title>" in page
    assert "dataset is mnist_5k" in page and "SOLVED 16" in page  # executed, solutions kept
    assert "data:image/png;base64," in page  # the figure is inside the page
    assert "var courseProbe = 1;" in page and 'oninput="this.title=1"' in page  # sliders' HTML/JS kept
    assert "mathjax/MathJax.js" in page and (out / "html" / "mathjax" / "MathJax.js").exists()
    # The bundled MathJax has only STIX-Web fonts: every page must load the local config that selects them.
    local = out / "html" / "mathjax" / "config" / "local" / "course.js"
    assert 'webFont: "STIX-Web"' in local.read_text() and "loadComplete" in local.read_text()
    index = (out / "html" / "index.html").read_text()
    for text in (page, index):
        assert "config=TeX-AMS-MML_HTMLorMML-full,Safe,local/course" in text
    assert 'href="01_alpha.html"' in index and 'href="02_beta.html"' in index
    assert "learn &lt;one&gt; thing" in index and "about 2 s on 2 CPU cores" in index
    assert "notes" not in index


@pytest.mark.slow
def test_student_versions(built):
    _, _, out, _, _ = built
    nb = nbformat.read(out / "student" / "01_alpha.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    text = "\n".join(c.source for c in nb.cells)
    assert "SOLVED" not in text and "(SEED + 4) ** 2" not in text
    stub = next(c for c in code if "exercise" in c.metadata.get("tags", []))
    assert student.STUB in stub.source
    assert "answer = None  # TODO" in stub.source and "def helper(*args, **kwargs)" in stub.source
    # The student copy runs: later cells find their placeholders.
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    later = next(c for c in nb.cells if c.cell_type == "code" and "later cell sees" in c.source)
    assert "later cell sees False True" in later.outputs[0]["text"]


@pytest.mark.slow
def test_sources_untouched(built):
    src, before, _, _, _ = built
    assert digest(src) == before


@pytest.mark.slow
def test_dataset_injection(tmp_path):
    src = write_fixture(tmp_path / "src")
    out = tmp_path / "out"
    build.build(src, out, dataset="fashion_mnist", only="01", log=lambda line: None, fit_unit=False)
    page = (out / "html" / "01_alpha.html").read_text()
    assert "dataset is fashion_mnist" in page
    student = nbformat.read(out / "student" / "01_alpha.ipynb", as_version=4)
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in student.cells)
    with pytest.raises(ValueError, match=r"dataset='svhn'.*'mnist_5k'"):
        build.build(src, out, dataset="svhn", log=lambda line: None, fit_unit=False)


@pytest.mark.slow
def test_failure_is_reported_and_leaves_output_untouched(tmp_path):
    src = write_fixture(tmp_path / "src", broken=True)
    out = tmp_path / "out"
    (out / "html").mkdir(parents=True)
    (out / "html" / "index.html").write_text("previous build")
    with pytest.raises(build.BuildError) as info:
        build.build(src, out, log=lambda line: None, fit_unit=False)
    err = info.value
    assert err.notebook == "03_broken.ipynb" and err.cell_index == 2
    assert "ValueError: deliberate failure" in str(err) and "raise ValueError" in str(err)
    assert (out / "html" / "index.html").read_text() == "previous build"
    assert sorted(p.name for p in out.iterdir()) == ["html"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".course-build-")]  # no staging left


@pytest.mark.slow
def test_cli_reports_failure(tmp_path):
    src = write_fixture(tmp_path / "src", broken=True)
    proc = subprocess.run([sys.executable, "-m", "helpers.course", "build", "--notebooks", str(src), "--out",
                           str(tmp_path / "out"), "--only", "03", "--no-fit-unit"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "03_broken.ipynb failed in cell 2" in proc.stderr and "deliberate failure" in proc.stderr
    assert "[1/1] 03_broken: FAILED" in proc.stdout
    assert not (tmp_path / "out" / "html").exists()


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError("measuring the fit unit failed")])
def test_an_interrupted_or_failed_fit_unit_leaves_nothing(tmp_path, monkeypatch, capsys, error):
    """Ctrl-C or a failure while the fit unit is measured: no staging folder, no (empty) output folder, and the CLI
    says so truthfully.  No notebook runs (the measurement is replaced by one that raises)."""
    src = write_fixture(tmp_path / "src")
    work = tmp_path / "work"
    work.mkdir()

    def measure():
        raise error

    monkeypatch.setattr(build, "measure_fit_unit", measure)
    with pytest.raises(type(error) if isinstance(error, Exception) else error):
        build.build(src, work / "deep" / "out", log=lambda line: None)
    assert list(work.iterdir()) == []                      # neither .course-build-* nor deep/out
    if error is KeyboardInterrupt:
        from helpers.course.cli import main

        assert main(["build", "--notebooks", str(src), "--out", str(work / "out")]) == 130
        assert "Nothing was written" in capsys.readouterr().err and list(work.iterdir()) == []


def test_a_failing_notebook_leaves_no_output_folder(tmp_path, monkeypatch):
    """A notebook that fails (here: the runner raises at once) leaves neither staging nor a new empty folder."""
    src = write_fixture(tmp_path / "src")

    def fail(nb, *, name, cwd, timeout=600):
        raise build.BuildError(name, 1, "x = 1", "ValueError: deliberate")

    monkeypatch.setattr(build, "execute", fail)
    with pytest.raises(build.BuildError, match="deliberate"):
        build.build(src, tmp_path / "out", log=lambda line: None, fit_unit=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_no_notebooks_is_a_clear_error(tmp_path):
    with pytest.raises(build.BuildError, match="no notebooks named NN_name.ipynb"):
        build.build(tmp_path, tmp_path / "out", log=lambda line: None, fit_unit=False)


def test_notebook_info_of_the_real_series():
    for path in sorted(build.DEFAULT_NOTEBOOKS.glob("0*.ipynb")):
        info = build.notebook_info(nbformat.read(path, as_version=4))
        assert info["title"] and len(info["goals"]) >= 3 and "CPU" in info["runtime"], path.name


def test_solution_regions_keep_the_scaffold():
    src = ("class Step:\n    def train_step(self, data):\n        x, y = data\n        ### BEGIN SOLUTION\n"
           "        secret = x + y\n        return secret\n        ### END SOLUTION\n\nprint('after')")
    cell = nbformat.v4.new_code_cell(src)
    cell.metadata["tags"] = ["solution"]
    nb = nbformat.v4.new_notebook(cells=[cell])
    version = student.make_student_version(nb)
    out = version.cells[0].source
    assert "secret" not in out and "BEGIN SOLUTION" not in out
    assert "        x, y = data\n        # TODO (exercise): write this part.\n" in out
    assert '        raise NotWrittenYet("exercise")' in out and out.endswith("print('after')")
    assert "        from helpers import NotWrittenYet\n" in out and out.startswith("class Step:")  # imported
    assert version.cells[0].metadata["tags"] == ["exercise"]
    for broken in ("### BEGIN SOLUTION\nx = 1", "x = 1\n### END SOLUTION", "### BEGIN SOLUTION\n### BEGIN SOLUTION"):
        with pytest.raises(ValueError, match="SOLUTION"):
            student._stub_regions(broken)


@pytest.mark.parametrize("use_nbgrader", [False, None])
def test_answers_in_words_become_the_text_stub(use_nbgrader):
    """An answer in words (a markdown cell tagged `answer`) becomes nbgrader's text stub, with nbgrader's clearing
    (None: if installed) or the course's own; other markdown is kept, and an `answer` tag on code is an error."""
    answer = nbformat.v4.new_markdown_cell("**Answer.** The secret reasoning.")
    answer.metadata["tags"] = ["answer"]
    prose = nbformat.v4.new_markdown_cell("**Exercise 2.** Why? Write your answer in the markdown cell below.")
    version = student.make_student_version(nbformat.v4.new_notebook(cells=[prose, answer]), use_nbgrader=use_nbgrader)
    assert [c.source for c in version.cells] == [prose.source, student.TEXT_STUB]
    assert version.cells[1].metadata["tags"] == ["answer"] and "nbgrader" not in version.cells[1].metadata
    code = nbformat.v4.new_code_cell("# Answer: in a code cell")
    code.metadata["tags"] = ["answer"]
    with pytest.raises(ValueError, match=r"cell 1: a cell tagged 'answer' must be a markdown cell"):
        student.make_student_version(nbformat.v4.new_notebook(cells=[prose, code]), use_nbgrader=use_nbgrader)


@pytest.mark.slow
def test_live_widgets_become_a_note_in_html():
    cell = nbformat.v4.new_code_cell("slider")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        build.WIDGET_MIME: {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(...)"})]
    nb = nbformat.v4.new_notebook(cells=[cell])
    page = build.export_html(nb, "t")
    assert "live ipywidgets slider appears here when you run" in page
    assert build.WIDGET_MIME in nb.cells[0].outputs[0]["data"]  # the source notebook is not changed


def test_output_folders_are_replaced_together_or_not_at_all(tmp_path, monkeypatch):
    out, staging = tmp_path / "out", tmp_path / "staging"
    for folder, text in [(out, "old"), (staging, "new")]:
        for sub in ("html", "student"):
            (folder / sub).mkdir(parents=True)
            (folder / sub / "page").write_text(f"{text} {sub}")
    real_rename = Path.rename

    def failing(self, target):  # the second folder cannot be moved in
        if self == staging / "student":
            raise OSError("disk full")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="disk full"):
        build._swap_in(staging, out, ("html", "student"))
    assert (out / "html" / "page").read_text() == "old html" and (out / "student" / "page").read_text() == "old student"
    monkeypatch.setattr(Path, "rename", real_rename)
    build._swap_in(staging, out, ("html", "student"))
    assert (out / "html" / "page").read_text() == "new html" and (out / "student" / "page").read_text() == "new student"


def test_notebook_info_reads_the_markdown_structure_not_lines_that_look_like_it():
    """A code block's comment is not a heading, a goal may run over lines and carry code, the run time is the
    first sentence of its paragraph (mistune's syntax tree; a line-by-line reading gets the first two wrong)."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("Set-up:\n\n```python\nx = 1\n\n# not a title\n```"),
        nbformat.v4.new_markdown_cell("# 05 · The *real* title\n\nIntro.\n\n**Learning goals**\n"
                                      "- Write `train_step`\n  over two lines.\n- Read **curves**.\n\nAfter."),
        nbformat.v4.new_markdown_cell("**Run time:** about 36 s (13 FU: it trains `x`). Other datasets: longer."),
    ])
    assert build.notebook_info(nb) == {
        "title": "05 · The *real* title",
        "goals": ["Write `train_step` over two lines.", "Read **curves**."],
        "runtime": "about 36 s (13 FU: it trains `x`)",
    }

"""The instructor's build: execute the series, export HTML that works from disk, make student versions.

``python -m helpers.course build [--out build] [--dataset NAME] [--only PATTERN] [--timeout SECONDS] [--no-fit-unit]``
(``python -m helpers.course release --out DIR`` writes an nbgrader course directory instead:
``helpers.course.release``.)

1. Every ``notebooks/NN_*.ipynb`` runs top to bottom in a fresh kernel, on a *copy* (the sources are never
   written), with a progress line per notebook.  ``--dataset`` overrides the ``DATASET`` of the ``parameters`` cell
   by inserting a cell tagged ``injected-parameters`` after it (as papermill does).
2. ``OUT/html/NN_name.html``: one page per executed notebook (nbconvert's lab template, figures inline, solutions
   kept, MathJax served from ``OUT/html/mathjax`` so formulas render without internet) and ``OUT/html/index.html``,
   a course index with each notebook's title, learning goals and run time.
3. ``OUT/student/NN_name.ipynb`` (made by ``helpers.course.student``): the source notebooks with outputs cleared,
   nbgrader's hidden tests removed (the check cells' ``### BEGIN HIDDEN TESTS`` regions, see ``helpers.course.grading``)
   and every ``solution`` cell replaced by an exercise stub (a ``# TODO`` and placeholders for names that later
   cells use).  A solution cell whose answer lies between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` lines (as
   in nbgrader) keeps everything else: only that region becomes ``CODE_STUB`` (a ``# TODO`` and a
   ``raise NotWrittenYet(...)``, the stub nbgrader's release puts there too) — e.g. the body of a method to write.
   An answer in words (the markdown cell tagged ``answer`` after an exercise's code) becomes ``TEXT_STUB``
   ("*Your answer here.*", nbgrader's text stub in the release).
   ``helpers.NotWrittenYet`` is a ``NotImplementedError`` that ``helpers.selfcheck`` recognises, so the student
   version runs top to bottom with "Exercise N is not written yet" lines instead of tracebacks.  With nbgrader
   installed (``pip install -e .[instructor]``) the regions, answers in words and hidden tests are cleared by nbgrader's
   ``ClearSolutions`` / ``ClearHiddenTests``; without it, by the course's code, which gives the same notebooks
   (tested), so the build does not need nbgrader.

Run times are printed and shown in the index in seconds and in fit units (FU, ``helpers.course.fitunit``: one
5-epoch fit of the course CNN, measured on this machine at the start of the build in a separate process, about 4 FU), so an
instructor can compare them with the stated run times of any machine; ``--no-fit-unit`` skips that measurement.

Everything is written to a temporary folder beside ``OUT`` and moved into place only when every notebook succeeded:
a failing notebook stops the build with its name, the failing cell and the error, and leaves ``OUT`` as it was.
This module stands apart from the course vocabulary (``data → … → plots``) and never imports TensorFlow.
"""

from __future__ import annotations

import copy
import html
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..data import DATASETS  # the datasets a build can run the series on (helpers.data does not import TensorFlow)
from .student import make_student_version, nbgrader_clearing, tags

NOTEBOOK_PATTERN = re.compile(r"^\d\d_[\w-]+\.ipynb$")
DEFAULT_NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
#: MathJax 2 configuration: the standard combined one, Safe mode, and ``local/course`` (written by ``_copy_mathjax``),
#: which points the output at the STIX-Web fonts that the bundled MathJax carries.  Without it MathJax looks for
#: its TeX fonts, which the bundle lacks, and formulas with a prime (x') fail with "[Math Processing Error]".
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,local/course"
MATHJAX_LOCAL_CONFIG = """MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  SVG: {font: "STIX-Web"}
});
MathJax.Ajax.loadComplete("[MathJax]/config/local/course.js");
"""
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: What an exported page shows instead of a live ipywidgets view (which needs a running kernel to do anything).
WIDGET_NOTE = ("<p style=\"color:#555;font-style:italic\">[A live ipywidgets slider appears here when you run the "
               "notebook in Jupyter; in this page, use the precomputed slider above.]</p>")


class BuildError(RuntimeError):
    """A notebook failed to execute; carries where and why."""

    def __init__(self, notebook: str, cell_index: int | None, source: str, error: str):
        self.notebook, self.cell_index, self.source, self.error = notebook, cell_index, source, error
        where = f"cell {cell_index}" if cell_index is not None else "before any cell ran"
        excerpt = "\n".join("    " + line for line in source.splitlines()[:6])
        super().__init__(f"{notebook} failed in {where}:\n{excerpt}\n{error}")


@dataclass
class NotebookResult:
    name: str
    title: str
    goals: list = field(default_factory=list)
    runtime: str = ""
    seconds: float = 0.0
    fu: float | None = None  # seconds of one fit unit on the machine that built it (None: not measured)

    def cost(self) -> str:
        """``"83 s"``, or ``"83 s = 25.1 FU"`` when the fit unit was measured."""
        return f"{self.seconds:.0f} s" + (f" = {self.seconds / self.fu:.1f} FU" if self.fu else "")


# ------------------------------------------------------------------------------------------------ reading
def notebook_info(nb) -> dict:
    """Title (the first level-1 heading), learning goals (the items of the list right after a "Learning goals"
    heading or bold line) and stated run time (the first sentence after a paragraph's leading **Run time:**), read
    from the syntax trees of the notebook's markdown cells (mistune), as Markdown one-liners."""
    title, goals, runtime = "", [], ""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        blocks = [b for b in _markdown_blocks(cell.source) if b["type"] != "blank_line"]
        for block, after in zip(blocks, blocks[1:] + [None]):
            kind, inline = block["type"], _inline_tokens(block)
            if not title and kind == "heading" and block["attrs"]["level"] == 1:
                title = _as_markdown(inline)
            label = _as_markdown(inline).strip("*: ").lower()
            if not goals and kind in ("heading", "paragraph") and label == "learning goals" and after \
                    and after["type"] == "list":
                goals = [_as_markdown(_inline_tokens(item)) for item in after["children"]]
            if not runtime and kind == "paragraph" and inline and inline[0]["type"] == "strong" \
                    and _as_markdown(inline[0]["children"]) == "Run time:":
                # its first sentence; the rest (other datasets, GPUs) stays on the page
                runtime = re.split(r"(?<=[.)])\s+(?=[A-Z])", _as_markdown(inline[1:]))[0].rstrip(".")
        if title and goals and runtime:
            break
    return {"title": title, "goals": goals, "runtime": runtime}


def _markdown_blocks(text: str) -> list:
    """The block tokens of a Markdown text (mistune's syntax tree)."""
    import mistune

    return mistune.create_markdown(renderer=None)(text)


def _inline_tokens(block) -> list:
    """The inline tokens of a heading or paragraph, or of a list item's text."""
    if block["type"] == "list_item":
        return [t for child in block["children"] if child["type"] in ("block_text", "paragraph")
                for t in child["children"]]
    return block.get("children") or []


def _as_markdown(tokens) -> str:
    """Inline ``tokens`` back as Markdown on one line (soft breaks become spaces)."""
    from mistune.core import BlockState
    from mistune.renderers.markdown import MarkdownRenderer

    return " ".join(MarkdownRenderer().render_tokens(tokens, BlockState()).split())


def _inline_markdown(text: str) -> str:
    """Markdown of one line (bold, code, emphasis) as HTML, without the paragraph around it."""
    import mistune

    render = mistune.create_markdown(escape=True)  # raw HTML in a goal is shown, not interpreted
    return re.sub(r"^<p>|</p>\s*$", "", render(text).strip())


def find_notebooks(notebooks_dir, only: str | None = None) -> list[Path]:
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise BuildError(str(folder), None, "", f"FileNotFoundError: notebook folder {folder} does not exist")
    paths = sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))
    if only:
        paths = [p for p in paths if only in p.name]
    if not paths:
        what = f" matching {only!r}" if only else ""
        raise BuildError(str(folder), None, "", f"no notebooks named NN_name.ipynb{what} in {folder}")
    return paths


# ------------------------------------------------------------------------------------------------ transforming
def inject_parameters(nb, dataset: str):
    """Return a copy of ``nb`` with ``DATASET = dataset`` in a cell tagged ``injected-parameters``."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not supported; allowed values are "
                         f"{', '.join(map(repr, DATASETS))}")
    nb = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(f"DATASET = {dataset!r}  # injected by helpers.course build --dataset")
    cell.metadata["tags"] = ["injected-parameters"]
    index = next((i + 1 for i, c in enumerate(nb.cells) if "parameters" in tags(c)), 0)
    nb.cells.insert(index, cell)
    return nb


def _static_widget_outputs(nb):
    """Replace live widget views (empty boxes without a kernel) by a short note, in place."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if WIDGET_MIME in out.get("data", {}):
                out["data"] = {"text/html": WIDGET_NOTE, "text/plain": "[live ipywidgets slider]"}
    nb.metadata.pop("widgets", None)


# ------------------------------------------------------------------------------------------------ running
def execute(nb, *, name: str, cwd, timeout: int = 600):
    """Execute ``nb`` (in place) in a fresh ``python3`` kernel with working directory ``cwd``."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    saved = os.environ.pop("MPLBACKEND", None)  # the kernel must use its inline backend, or figures vanish
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        index = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        if index is None:  # timeout / dead kernel: the first code cell without a result is where it stopped
            index = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"
                          and c.get("execution_count") is None and c.source.strip()), None)
        ename = getattr(err, "ename", type(err).__name__)
        evalue = getattr(err, "evalue", str(err).strip().splitlines()[-1] if str(err).strip() else "")
        source = nb.cells[index].source if index is not None else ""
        raise BuildError(name, index, source, f"{ename}: {evalue}") from None
    finally:
        if saved is not None:
            os.environ["MPLBACKEND"] = saved
    return nb


def measure_fit_unit() -> float:
    """Seconds of one fit unit on this machine (``helpers.course.fitunit``), measured in a fresh Python process."""
    import subprocess

    code = "from helpers.course.fitunit import fit_unit; print(fit_unit())"
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"measuring the fit unit failed:\n{out.stderr.strip()[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def export_html(nb, title: str) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", embed_images=True,
                            mathjax_url=f"mathjax/MathJax.js?config={MATHJAX_CONFIG}")
    nb = copy.deepcopy(nb)
    nb.metadata["title"] = title
    _static_widget_outputs(nb)
    body, _ = exporter.from_notebook_node(nb)
    return body


def _copy_mathjax(dest: Path) -> None:
    """MathJax 2 from the ``jupyter-server-mathjax`` package, so formulas render offline."""
    try:
        import jupyter_server_mathjax
    except ImportError:  # pages stay readable; formulas show as TeX source
        return
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", dest)
    (dest / "config" / "local").mkdir(parents=True, exist_ok=True)
    (dest / "config" / "local" / "course.js").write_text(MATHJAX_LOCAL_CONFIG, encoding="utf-8")


def render_index(results: list, *, course_title: str, dataset: str | None) -> str:
    items = []
    for r in results:
        goals = "".join(f"<li>{_inline_markdown(g)}</li>" for g in r.goals)
        items.append(
            f'<li class="nb"><a href="{html.escape(r.name)}.html"><b>{html.escape(r.title or r.name)}</b></a>'
            f'<div class="meta">stated run time: {_inline_markdown(r.runtime) if r.runtime else "not stated"}; '
            f"this build: {r.cost()}</div>"
            + (f"<div>Learning goals:</div><ul>{goals}</ul>" if goals else "") + "</li>")
    total = sum(r.seconds for r in results)
    fu = results[0].fu if results else None
    total_text = f"{total:.0f} s" + (f" = {total / fu:.0f} FU (1 FU = {fu:.2f} s on the machine that built it: "
                                      "one 5-epoch fit of the course CNN, "
                                      "<code>python -m helpers.course.fitunit</code>)" if fu else "")
    data = html.escape(dataset or "each notebook's default (the bundled mnist_5k)")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(course_title)}</title>
<script type="text/x-mathjax-config">MathJax.Hub.Config({{tex2jax: {{inlineMath: [["$", "$"]]}}}});</script>
<script src="mathjax/MathJax.js?config={MATHJAX_CONFIG}"></script>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }}
li.nb {{ margin: 1rem 0; }} .meta {{ color: #555; font-size: 0.9rem; }} ol {{ padding-left: 1.4rem; }}
</style></head><body>
<h1>{html.escape(course_title)}</h1>
<p>Executed on {data}; {len(results)} notebooks in {total_text}. Each page works offline, sliders included.
Student versions (solutions replaced by exercise stubs): <a href="../student/">../student/</a>.</p>
<ol>{"".join(items)}</ol>
</body></html>
"""


# ------------------------------------------------------------------------------------------------ building
def build(notebooks_dir=DEFAULT_NOTEBOOKS, out_dir="build", *, dataset: str | None = None, timeout: int = 600,
          only: str | None = None, log=None, course_title="Adversarial examples and adversarial training",
          fit_unit: bool = True):
    """Build the course (see the module docstring); returns one ``NotebookResult`` per notebook.

    ``log`` receives one progress line at a time (default: print to standard output).  ``fit_unit``: measure the
    fit unit first and give every run time in FU beside seconds.
    """
    log = log or (lambda line: print(line, flush=True))
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not supported; allowed values are "
                         f"{', '.join(map(repr, DATASETS))}")
    notebooks_dir, out_dir = Path(notebooks_dir).resolve(), Path(out_dir).resolve()
    paths = find_notebooks(notebooks_dir, only)
    fu = None
    if fit_unit:      # before anything is written: an interrupted or failed measurement leaves nothing behind
        log("measuring the fit unit (one 5-epoch fit of the course CNN, best of 3) ...")
        fu = measure_fit_unit()
        log(f"1 FU = {fu:.2f} s on this machine")
    start_all = time.perf_counter()
    log("student versions: solution regions cleared by " + ("nbgrader's ClearSolutions" if nbgrader_clearing()
                                                             else "the course's own code (nbgrader not installed)"))
    new_folders = [p for p in (out_dir, *out_dir.parents) if not p.exists()]  # innermost first: removed unless built
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging, written = Path(tempfile.mkdtemp(prefix=".course-build-", dir=out_dir.parent)), False
    try:
        results = _build_into(staging, paths, notebooks_dir, dataset=dataset, timeout=timeout, log=log, fu=fu)
        (staging / "html" / "index.html").write_text(
            render_index(results, course_title=course_title, dataset=dataset), encoding="utf-8")
        _copy_mathjax(staging / "html" / "mathjax")
        out_dir.mkdir(exist_ok=True)
        _swap_in(staging, out_dir, ("html", "student"))
        written = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in [] if written else new_folders:
            _remove_if_empty(folder)
    total = time.perf_counter() - start_all
    log(f"built {len(results)} notebooks in {total:.0f} s" + (f" = {total / fu:.0f} FU" if fu else "")
        + f": {out_dir / 'html' / 'index.html'}")
    return results


def _build_into(staging: Path, paths, notebooks_dir: Path, *, dataset, timeout: int, log, fu) -> list:
    """Execute every notebook of ``paths`` and write its page to ``staging/html`` and its student version to
    ``staging/student``; one ``NotebookResult`` per notebook.  A failing notebook raises ``BuildError``."""
    (staging / "html").mkdir()
    (staging / "student").mkdir()
    results = []
    for k, path in enumerate(paths, 1):
        source = nbformat.read(path, as_version=4)
        info = notebook_info(source)
        log(f"[{k}/{len(paths)}] {path.stem}: running")
        nb = inject_parameters(source, dataset) if dataset else copy.deepcopy(source)
        t = time.perf_counter()
        try:
            execute(nb, name=path.name, cwd=notebooks_dir, timeout=timeout)
        except BuildError:
            log(f"[{k}/{len(paths)}] {path.stem}: FAILED")
            raise
        seconds = time.perf_counter() - t
        (staging / "html" / f"{path.stem}.html").write_text(export_html(nb, info["title"] or path.stem),
                                                            encoding="utf-8")
        nbformat.write(make_student_version(source), staging / "student" / path.name)
        results.append(NotebookResult(path.stem, info["title"], info["goals"], info["runtime"], seconds, fu))
        log(f"[{k}/{len(paths)}] {path.stem}: ok  {results[-1].cost()}")
    return results


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:   # not empty (someone else wrote there) or already gone
        pass


def _swap_in(staging: Path, out_dir: Path, subs) -> None:
    """Replace ``out_dir/sub`` by ``staging/sub`` for every ``sub``, all or none: the old folders are moved aside
    first (into ``staging``, removed with it), and if any move fails, everything moved is put back."""
    aside, placed = [], []
    try:
        for sub in subs:
            if (out_dir / sub).exists():
                (out_dir / sub).rename(staging / f"old-{sub}")
                aside.append(sub)
        for sub in subs:
            (staging / sub).rename(out_dir / sub)
            placed.append(sub)
    except OSError:
        for sub in placed:
            (out_dir / sub).rename(staging / sub)
        for sub in aside:
            (staging / f"old-{sub}").rename(out_dir / sub)
        raise

"""The limits every committed notebook keeps (issue 29): text output lines of at most 140 characters, at most
2,300 words of markdown and at most 40 cells.  Reads the committed JSON only: fast."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Being split in two under issue 29; its successors must meet the limits.
BEING_SPLIT: set = set()   # none now (07 was split in two: 07 and 08)
MAX_LINE, MAX_WORDS, MAX_CELLS = 140, 2300, 40


def _params():
    for path in NOTEBOOKS:
        marks = [pytest.mark.xfail(reason="issue 29: split in two", strict=False)] if path.name in BEING_SPLIT else []
        yield pytest.param(path, id=path.stem, marks=marks)


def text_lines(nb):
    """(cell index, line) of every printed or text/plain output line (not of HTML, images or widgets)."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = out.get("text", "")
            elif "text/plain" in out.get("data", {}) and len(out["data"]) == 1:
                text = out["data"]["text/plain"]
            else:
                continue
            for line in (text if isinstance(text, str) else "".join(text)).splitlines():
                yield i, line


@pytest.mark.parametrize("path", _params())
def test_notebook_keeps_the_limits(path):
    nb = nbformat.read(path, as_version=4)
    long = [(i, len(line)) for i, line in text_lines(nb) if len(line) > MAX_LINE]
    assert not long, f"{path.name}: text output lines over {MAX_LINE} characters (cell, length): {long}"
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    assert words <= MAX_WORDS, f"{path.name}: {words} markdown words (at most {MAX_WORDS})"
    assert len(nb.cells) <= MAX_CELLS, f"{path.name}: {len(nb.cells)} cells (at most {MAX_CELLS})"

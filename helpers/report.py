"""Reporting figures honestly: accuracies with 95 % intervals, differences that the data supports, and one table
printer for every notebook.

An accuracy measured on n images is an estimate: on 500 images, 90 % means "somewhere around 87–92 %".  Two
accuracies whose intervals overlap widely may not differ at all, so the course states the interval wherever it
compares figures.  We use the Wilson score interval (Wilson 1927), which behaves well near 0 % and 100 %, where
the textbook ``p ± 1.96·sqrt(p(1-p)/n)`` collapses to a single point.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._checks import check_positive_int

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(successes, n, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` for a proportion of ``successes`` out of ``n`` trials.

    ``successes`` may be a count (integer) or a fraction in [0, 1] (then it is turned into the nearest count).
    """
    n = check_positive_int(n, "n")
    if isinstance(successes, (bool, np.bool_)) or not isinstance(successes, (numbers.Real, np.number)):
        raise TypeError(f"successes must be a count or a fraction, got {successes!r}")
    k = float(successes)
    if isinstance(successes, (float, np.floating)) and 0.0 <= k <= 1.0:
        k = round(k * n)
    if not 0 <= k <= n:
        raise ValueError(f"successes={successes!r} must lie in [0, n={n}] (a count) or [0, 1] (a fraction)")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def with_interval(accuracy: float, n: int, *, digits: int = 1) -> str:
    """``"96.7 % [95.4, 97.7]"``: a measured fraction and its 95 % Wilson interval, in percent."""
    low, high = wilson_interval(accuracy, n)
    return f"{100 * accuracy:.{digits}f} % [{100 * low:.{digits}f}, {100 * high:.{digits}f}]"


def difference(a: float, b: float, n_a: int, n_b: int | None = None) -> str:
    """Say in words whether accuracies ``a`` and ``b`` (on ``n_a`` and ``n_b`` images) differ beyond chance.

    The test is Newcombe's (1998) interval for a difference of two independent proportions, built from the two
    Wilson intervals: if it excludes 0, the difference is called real (at 95 %); otherwise "within noise".  (For
    two models scored on the *same* images the samples are paired; this test is then conservative.)
    """
    n_b = n_a if n_b is None else n_b
    la, ha = wilson_interval(a, n_a)
    lb, hb = wilson_interval(b, n_b)
    d = a - b
    low = d - math.sqrt((a - la) ** 2 + (hb - b) ** 2)
    high = d + math.sqrt((ha - a) ** 2 + (b - lb) ** 2)
    verdict = "a real difference" if low > 0 or high < 0 else "within noise (no real difference shown)"
    return f"{100 * d:+.1f} points, 95 % interval [{100 * low:+.1f}, {100 * high:+.1f}]: {verdict}"


def is_real_difference(a: float, b: float, n_a: int, n_b: int | None = None) -> bool:
    """True when ``difference`` would call the gap between ``a`` and ``b`` real (its interval excludes 0)."""
    return difference(a, b, n_a, n_b).endswith("a real difference")


def table(rows: dict, columns=None, *, fmt="{:.1%}", n: int | None = None, first: str = "", width: int = 9) -> None:
    """Print ``rows`` (``{row name: {column: value}}``) as an aligned text table (see ``format_table``)."""
    print(format_table(rows, columns, fmt=fmt, n=n, first=first, width=width))


def format_table(rows: dict, columns=None, *, fmt="{:.1%}", n: int | None = None, first: str = "",
                 width: int = 9) -> str:
    """``rows`` (``{row name: {column: value}}``) as an aligned text table.

    Values that are floats are formatted with ``fmt`` (strings are printed as they are).  With ``n`` (the number of
    images each accuracy was measured on) a last line states the 95 % margin of the worst case.
    """
    if not rows:
        raise ValueError("table needs at least one row")
    columns = list(columns or next(iter(rows.values())).keys())
    name_w = max(len(first), *(len(str(r)) for r in rows))
    widths = [max(width, len(str(c))) for c in columns]
    lines = [f"{first:{name_w}s}" + "".join(f"  {str(c):>{w}s}" for c, w in zip(columns, widths))]
    for name, row in rows.items():
        cells = [_cell(row.get(c), fmt) for c in columns]
        lines.append(f"{str(name):{name_w}s}" + "".join(f"  {v:>{w}s}" for v, w in zip(cells, widths)))
    if n is not None:
        low, high = wilson_interval(0.5, n)
        lines.append(f"(each figure on {n:,} images: 95 % intervals are at most ±{100 * (high - low) / 2:.1f} "
                     "points wide)")
    return "\n".join(lines)


def _cell(value, fmt):
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return fmt.format(value)

"""Reporting figures honestly: accuracies with 95 % intervals, differences that the data supports, and one table
printer for every notebook.

An accuracy measured on n images is an estimate: on 500 images, 90 % means "somewhere around 87–92 %".  Two
accuracies whose intervals overlap widely may not differ at all, so the course states the interval wherever it
compares figures.  We use the Wilson score interval (Wilson 1927), which behaves well near 0 % and 100 %, where
the textbook ``p ± 1.96·sqrt(p(1-p)/n)`` collapses to a single point.

Paired or independent?  Two attacks on one model, or two models, scored on the *same* images give paired outcomes:
most images come out the same under both, and only the images where they disagree carry information about the
difference.  ``paired_difference`` counts them (b: right under A only, c: right under B only) and gives the paired
interval and McNemar's exact test; it is far narrower than ``difference``, which is for independent samples
(different images, e.g. another dataset or another split).  Either way the interval covers the sampling of test
images only: when two *trained models* are compared, a second training seed may move the difference more.
"""

from __future__ import annotations

import math
import numbers
import re
import textwrap
from typing import NamedTuple

import numpy as np

from ._checks import check_positive_int

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(successes, n, *, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` for a proportion of ``successes`` out of ``n`` trials.

    ``successes`` may be a count (integer) or a fraction in [0, 1] (then it is turned into the nearest count).
    """
    n = check_positive_int(n, "n")
    if not (isinstance(z, (numbers.Real, np.number)) and not isinstance(z, bool) and 0 < float(z) < math.inf):
        raise ValueError(f"z={z!r} is not allowed; z must be a finite number > 0 (1.96 for a 95 % interval)")
    if isinstance(successes, (bool, np.bool_)) or not isinstance(successes, (numbers.Real, np.number)):
        raise TypeError(f"successes must be a count or a fraction, got {successes!r}")
    k = float(successes)
    if isinstance(successes, (float, np.floating)) and 0.0 <= k <= 1.0:
        k = round(k * n)
    if not 0 <= k <= n:
        raise ValueError(f"successes={successes!r} must lie in [0, n={n}] (a count) or [0, 1] (a fraction)")
    if k != int(k):
        raise ValueError(f"successes={successes!r} is neither a fraction in [0, 1] nor a count: a count of images "
                         "must be a whole number")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _proportion(value, name: str, n) -> float:
    """``value`` as a float fraction in [0, 1] (even the int 0 or 1, which ``wilson_interval`` reads as counts);
    TypeError/ValueError naming ``name`` otherwise, e.g. for a count (450 of n=500) or a percentage (90.0)."""
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else np.asarray(None)
    if arr.size != 1 or arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                                   or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a proportion in [0, 1] (a number), got {value!r} of type "
                        f"{type(value).__name__}")
    p = float(arr.item())
    if not 0.0 <= p <= 1.0:  # NaN too
        hints = []
        if 1 < p < math.inf and p == int(p) and isinstance(n, (numbers.Integral, np.integer)) and p <= n:
            hints.append(f"for a count of images, pass {int(p)} / {n} = {p / n:.4g} (wilson_interval({int(p)}, {n}) "
                         "takes counts)")
        if 1 < p <= 100:
            hints.append(f"for a percentage, pass {p / 100:.4g}")
        hint = "".join("; " + h for h in hints)
        raise ValueError(f"{name}={value!r} is not a proportion in [0, 1] (the fraction of the n images){hint}")
    return p


def with_interval(accuracy: float, n: int, *, digits: int = 1) -> str:
    """``"96.7 % [95.4, 97.7]"``: a measured fraction (``accuracy``, a proportion in [0, 1], not a count) of ``n``
    images and its 95 % Wilson interval, in percent."""
    accuracy = _proportion(accuracy, "accuracy", n)
    digits = check_positive_int(digits, "digits", minimum=0)
    low, high = wilson_interval(accuracy, n)
    return f"{100 * accuracy:.{digits}f} % [{100 * low:.{digits}f}, {100 * high:.{digits}f}]"


def difference_interval(a: float, b: float, n_a: int, n_b: int | None = None) -> tuple[float, float, float]:
    """``(a - b, low, high)``: Newcombe's (1998) 95 % interval for a difference of two independent proportions,
    built from the two Wilson intervals (accuracies ``a`` and ``b`` on ``n_a`` and ``n_b`` images)."""
    n_b = n_a if n_b is None else n_b
    a, b = _proportion(a, "a", n_a), _proportion(b, "b", n_b)
    la, ha = wilson_interval(a, n_a)
    lb, hb = wilson_interval(b, n_b)
    d = a - b
    return d, d - math.sqrt((a - la) ** 2 + (hb - b) ** 2), d + math.sqrt((ha - a) ** 2 + (b - lb) ** 2)


def difference(a: float, b: float, n_a: int, n_b: int | None = None) -> str:
    """Say in words whether accuracies ``a`` and ``b`` (on ``n_a`` and ``n_b`` images) differ beyond chance.

    The test is Newcombe's (1998) interval for a difference of two independent proportions
    (``difference_interval``): if it excludes 0, the difference is called real (at 95 %); otherwise "within
    noise".  For two attacks or two models scored on the *same* images use ``paired_difference``: this test is
    then far too conservative.
    """
    d, low, high = difference_interval(a, b, n_a, n_b)
    verdict = "a real difference" if low > 0 or high < 0 else "within noise (no real difference shown)"
    return f"{100 * d:+.1f} points, 95 % interval [{100 * low:+.1f}, {100 * high:+.1f}]: {verdict}"


def is_real_difference(a: float, b: float, n_a: int, n_b: int | None = None) -> bool:
    """True when the 95 % interval of ``difference_interval`` excludes 0 (``difference`` then says "real")."""
    _, low, high = difference_interval(a, b, n_a, n_b)
    return low > 0 or high < 0


class PairedDifference(NamedTuple):
    """The result of ``paired_difference``; ``str()`` says it in words."""

    difference: float  #: accuracy under A minus accuracy under B (fractions)
    low: float         #: lower end of the paired 95 % interval of the difference
    high: float        #: upper end
    b: int             #: images right under A and wrong under B
    c: int             #: images wrong under A and right under B
    n: int             #: images
    p_value: float     #: exact two-sided McNemar p-value (binomial test of b against b + c with p = 1/2)

    def __bool__(self):
        raise TypeError("a PairedDifference has no truth value: test .is_real (the 95 % interval excludes 0)")

    @property
    def is_real(self) -> bool:
        """True when the 95 % interval excludes 0."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        verdict = "a real difference" if self.is_real else "within noise (no real difference shown)"
        if self.is_real != (self.p_value < 0.05):  # the interval and the test disagree: at the edge of 95 %
            verdict += f" (borderline: McNemar's test {'does not agree' if self.is_real else 'would call it real'})"
        return (f"{100 * self.difference:+.1f} points, paired 95 % interval [{100 * self.low:+.1f}, "
                f"{100 * self.high:+.1f}]; {self.b} vs {self.c} images where only one is right, McNemar "
                f"{_p_text(self.p_value)}: {verdict}")


def _p_text(p: float) -> str:
    """Two significant digits (0.052, not 0.05, next to the 5 % line)."""
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def _outcomes(values, name: str) -> np.ndarray:
    """``values`` as a 1-D boolean array; TypeError/ValueError naming ``name`` unless booleans or 0/1."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of per-image outcomes, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must hold booleans or 0/1 per image, got dtype {arr.dtype}")
        bad = np.flatnonzero((arr != 0) & (arr != 1))
        if bad.size:
            raise ValueError(f"{name} must hold booleans or 0/1 (True: the image is classified correctly), found "
                             f"{arr[bad[0]]!r} at index {bad[0]}")
        arr = arr.astype(bool)
    return arr


def paired_difference(correct_a, correct_b) -> PairedDifference:
    """Compare two accuracies measured on the *same* images: ``correct_a[i]`` / ``correct_b[i]`` say whether image
    ``i`` is classified correctly under A / under B (two attacks on one model, or two models).

    The interval is Newcombe's (1998) method 10 for paired proportions: the Wilson intervals of the two accuracies
    combined with the correlation φ of the paired outcomes (with his continuity adjustment of φ; it reproduces
    Fagerland, Lydersen & Laake's worked example, 59/6/16/80 → −0.0621 [−0.1186, −0.0046]).  The p-value is
    McNemar's exact test: under "no difference", each of the b + c discordant images is equally likely to favour
    A or B.  Interval and test are two procedures and may, rarely, disagree at the edge (the worked example above
    is such a case: p = 0.052); ``is_real`` follows the interval and ``str`` then says "borderline".  Both assume
    the images are a random sample, each image scored once under A and once under B.  Returns a
    ``PairedDifference`` (fractions, counts of images; readable with ``str``).
    """
    a_ok, b_ok = _outcomes(correct_a, "correct_a"), _outcomes(correct_b, "correct_b")
    if a_ok.shape != b_ok.shape:
        raise ValueError(f"correct_a and correct_b must describe the same images: lengths {a_ok.size} and "
                         f"{b_ok.size} differ")
    n = int(a_ok.size)
    both, b, c = int(np.sum(a_ok & b_ok)), int(np.sum(a_ok & ~b_ok)), int(np.sum(~a_ok & b_ok))
    neither = n - both - b - c
    p1, p2 = (both + b) / n, (both + c) / n
    l1, u1 = wilson_interval(both + b, n)
    l2, u2 = wilson_interval(both + c, n)
    spread = math.sqrt(float(both + b) * (c + neither) * (both + c) * (b + neither))
    cross = both * neither - b * c
    adjusted = cross - n / 2 if cross > n / 2 else (cross if cross < 0 else 0.0)
    phi = adjusted / spread if spread > 0 else 0.0
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    above = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    d = p1 - p2
    return PairedDifference(d, max(-1.0, d - below), min(1.0, d + above), b, c, n, mcnemar_exact(b, c))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs: ``min(1, 2·P(X <= min(b, c)))`` for
    ``X ~ Binomial(b + c, 1/2)``; 1 when there are none.  Exact integer arithmetic, one rounding at the end."""
    b, c = check_positive_int(b, "b", minimum=0), check_positive_int(c, "c", minimum=0)
    m, k = b + c, min(b, c)
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2 ** m)  # int / int: no overflow for b + c > 1,000 (2.0 ** m would overflow)


def table(rows: dict, columns=None, *, fmt="{:.1%}", n: int | None = None, first: str = "", width: int = 9) -> None:
    """Print ``rows`` (``{row name: {column: value}}``) as an aligned text table (see ``format_table``)."""
    print(format_table(rows, columns, fmt=fmt, n=n, first=first, width=width))


def format_table(rows: dict, columns=None, *, fmt="{:.1%}", n: int | None = None, first: str = "",
                 width: int = 9) -> str:
    """``rows`` (``{row name: {column: value}}``) as an aligned text table.

    The columns are ``columns``, else every key any row has (in order of appearance); a row without a value prints
    "—".  Values that are not strings are formatted with ``fmt``; with the default percent format they must be
    fractions (or differences of fractions) in [-1, 1], so a count or a percentage is refused instead of printed
    as "45000.0%".  With ``n`` (the number of images each accuracy was measured on) a last line states the 95 %
    margin of the worst case.
    """
    if not rows:
        raise ValueError("table needs at least one row")
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    columns = keys if columns is None else list(columns)
    unknown = [c for c in columns if c not in keys]
    if unknown:
        raise ValueError(f"columns {', '.join(map(repr, unknown))} are in no row; the rows have "
                         f"{', '.join(map(repr, keys))}")
    name_w = max(len(first), *(len(str(r)) for r in rows))
    widths = [max(width, len(str(c))) for c in columns]
    lines = [f"{first:{name_w}s}" + "".join(f"  {str(c):>{w}s}" for c, w in zip(columns, widths))]
    for name, row in rows.items():
        cells = [_cell(row.get(c), fmt, (name, c)) for c in columns]
        lines.append(f"{str(name):{name_w}s}" + "".join(f"  {v:>{w}s}" for v, w in zip(cells, widths)))
    if n is not None:
        low, high = wilson_interval(0.5, n)
        lines.append(f"(each figure on {n:,} images: 95 % intervals are at most ±{100 * (high - low) / 2:.1f} "
                     "points wide)")
    return "\n".join(lines)


def _cell(value, fmt, where):
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if re.search(r"%\}", fmt) and isinstance(value, (numbers.Real, np.number)) and abs(float(value)) > 1:
        raise ValueError(f"table cell {where[0]!r}, {where[1]!r} = {value!r} is not a proportion: the format {fmt!r} "
                         "prints fractions in [-1, 1] as percentages; pass the fraction (e.g. 450 / 500, or 0.967 "
                         "for 96.7 %), or format the value yourself (a string is printed as it is), or pass fmt=")
    return fmt.format(value)


def robustness_text(data: dict, *, timings: bool = True) -> str:
    """The text of a robustness report (``evaluate.RobustnessReport.to_dict()``): what was measured, every figure
    with its 95 % interval, the paired test of PGD against the worst case, the masking checklist, the notes and
    (with ``timings``) the time taken — leave it out where the output must not vary (a notebook under nbval)."""
    info = data["info"]
    norm = "L∞" if info["norm"] == "inf" else "L2"
    lines = [f"Robustness report: model {info['model']!r}, {info['n']:,} images of shape "
             f"{tuple(info['image_shape'])}, {info['classes']} classes, {norm} ε = {info['eps']:.4g}", ""]
    width = max(len(name) for name in data["figures"])
    for name, row in data["figures"].items():
        lines.append(f"  {name:{width}s}  {with_interval(row['accuracy'], row['n']):<22s}  {row['detail']}")
    paired = data["paired"]
    lines += ["", f"Paired test, {paired['attack_a']} vs {paired['attack_b']} (same images): {paired['text']}", "",
              "Masking checklist:"]
    for c in data["checks"]:
        lines.append(f"  [{c['verdict']:^7s}] {c['check']}: {c['detail']}")
    verdict = ("SOME CHECKS FAILED: the figures above may overstate the robustness (gradient masking?)"
               if data["flagged"] else "every check that ran passed")
    lines += [f"  => {verdict}"]
    curve = data["curve"]
    lines += ["", f"Accuracy vs ε ({curve['n']:,} images):"]
    rows = {name: {f"{e:.3g}": v for e, v in zip(curve["eps"], c["accuracy"])} for name, c in curve["curves"].items()}
    lines += ["  " + line for line in format_table(rows, first="ε =").splitlines()]
    if data["notes"]:
        lines += ["", "Notes:"] + [f"  - {note}" for note in data["notes"]]
    if timings:
        stages = ", ".join(f"{name} {s:.1f} s" for name, s in data["timings"].items())
        lines += ["", f"Time: {data['seconds']:.1f} s ({stages})"]
    return "\n".join(folded(line) for line in lines)


def folded(text: str, width: int = 118) -> str:
    """Each line of ``text`` folded at ``width`` characters, its continuations indented 4 spaces under its text:
    ``print(report.folded(f"A − B (same images): {report.paired_difference(a, b)}"))`` keeps a notebook's
    output lines short (the course's limit is 140 characters)."""
    out = []
    for line in str(text).splitlines() or [""]:
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 4)
        out.append(textwrap.fill(line, width=width, subsequent_indent=indent, break_long_words=False,
                                 break_on_hyphens=False))
    return "\n".join(out)

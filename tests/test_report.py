import numpy as np
import pytest

from helpers import report


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),      # Wilson's interval does not collapse at 0 % (the textbook one gives [0, 0])
    (50, 100, 0.4038, 0.5962),
    (967, 1000, 0.9540, 0.9764),
    (10, 10, 0.7225, 1.0),
])
def test_wilson_interval_known_values(k, n, low, high):
    lo, hi = report.wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)
    # a fraction is the same as its count
    assert report.wilson_interval(k / n, n) == pytest.approx((lo, hi))


def test_wilson_interval_covers_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    p, n = 0.9, 500
    hits = rng.binomial(n, p, size=4000)
    covered = np.mean([lo <= p <= hi for lo, hi in (report.wilson_interval(int(k), n) for k in hits)])
    assert 0.93 < covered < 0.97


def test_wilson_interval_bad_input():
    with pytest.raises(ValueError, match="n=0"):
        report.wilson_interval(0, 0)
    with pytest.raises(ValueError, match=r"successes=12 must lie in \[0, n=10\]"):
        report.wilson_interval(12, 10)
    with pytest.raises(TypeError, match="successes must be a count or a fraction"):
        report.wilson_interval("half", 10)


def test_difference_calls_only_supported_gaps_real():
    # 96.8 % vs 97.2 % on 500 images: the example of the issue, well within noise
    assert not report.is_real_difference(0.968, 0.972, 500)
    assert "within noise" in report.difference(0.968, 0.972, 500)
    # 82.8 % vs 1.4 %: real
    assert report.is_real_difference(0.828, 0.014, 500)
    assert report.difference(0.828, 0.014, 500).startswith("+81.4 points")
    # a 4-point gap is real on 10,000 images but not on 100
    assert report.is_real_difference(0.90, 0.86, 10_000) and not report.is_real_difference(0.90, 0.86, 100)


def test_with_interval_and_table(capsys):
    assert report.with_interval(0.967, 1000) == "96.7 % [95.4, 97.6]"
    rows = {"standard": {"clean": 0.968, "PGD": 0.0}, "PGD-trained": {"clean": 0.972, "PGD": "n/a"}}
    assert report.table(rows, n=500, first="model") is None
    text = report.format_table(rows, n=500, first="model")
    assert capsys.readouterr().out.strip() == text
    lines = text.splitlines()
    assert lines[0].split() == ["model", "clean", "PGD"]
    assert lines[1].split() == ["standard", "96.8%", "0.0%"] and lines[2].split() == ["PGD-trained", "97.2%", "n/a"]
    assert "±4.4 points" in lines[-1]
    with pytest.raises(ValueError, match="at least one row"):
        report.format_table({})

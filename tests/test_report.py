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


# ------------------------------------------------------------------------------------------ paired comparisons
def _paired(both, only_a, only_b, neither):
    a = np.r_[np.ones(both + only_a, bool), np.zeros(only_b + neither, bool)]
    b = np.r_[np.ones(both, bool), np.zeros(only_a, bool), np.ones(only_b, bool), np.zeros(neither, bool)]
    return a, b


def test_paired_difference_matches_a_published_example():
    # Fagerland, Lydersen & Laake (2017), "Statistical Analysis of Contingency Tables", ch. 8 (the R package
    # contingencytables tests the same): table 59 / 6 / 16 / 80, Newcombe's square-and-add interval -0.0621
    # [-0.1186, -0.0046]; the exact McNemar p-value of 6 against 16 (scipy.stats.binomtest(6, 22)) is 0.05248.
    r = report.paired_difference(*_paired(59, 6, 16, 80))
    assert (r.b, r.c, r.n) == (6, 16, 161)
    assert r.difference == pytest.approx(-0.0621, abs=5e-5)
    assert r.low == pytest.approx(-0.1186, abs=5e-5) and r.high == pytest.approx(-0.0046, abs=5e-5)
    assert r.p_value == pytest.approx(0.052478790283203125, rel=1e-12)
    assert r.is_real and "a real difference" in str(r)


def test_paired_difference_is_antisymmetric():
    a, b = _paired(400, 30, 12, 58)
    ab, ba = report.paired_difference(a, b), report.paired_difference(b, a)
    assert ab.difference == pytest.approx(-ba.difference)
    assert ab.low == pytest.approx(-ba.high) and ab.high == pytest.approx(-ba.low)
    assert ab.p_value == ba.p_value and (ab.b, ab.c) == (ba.c, ba.b)


def test_paired_difference_without_discordant_images():
    r = report.paired_difference(*_paired(450, 0, 0, 50))
    assert r.difference == 0 and r.p_value == 1.0 and r.low <= 0 <= r.high and not r.is_real


def test_paired_test_sees_what_the_unpaired_one_cannot():
    # 500 images; A is right on 15 more, and never wrong where B is right: a real, paired difference of 3 points
    a, b = _paired(380, 15, 0, 105)
    assert not report.is_real_difference(a.mean(), b.mean(), 500)          # Newcombe, independent samples
    r = report.paired_difference(a, b)
    assert r.is_real and r.low > 0 and r.p_value == pytest.approx(2 / 2 ** 15)


def test_paired_difference_p_value_is_exact_binomial():
    # b = 9, c = 3: 2 * P(X <= 3), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66 + 220) / 4096
    assert report.mcnemar_exact(9, 3) == pytest.approx(2 * 299 / 4096)
    assert report.mcnemar_exact(5, 5) == 1.0


@pytest.mark.parametrize("a, b, match", [
    (np.ones(5, bool), np.ones(4, bool), "same images"),
    (np.ones(0, bool), np.ones(0, bool), "non-empty"),
    (np.ones((2, 2), bool), np.ones((2, 2), bool), "1-D"),
    (np.array([0, 1, 2]), np.array([0, 1, 1]), "booleans or 0/1"),
])
def test_paired_difference_rejects_bad_outcomes(a, b, match):
    with pytest.raises(ValueError, match=match):
        report.paired_difference(a, b)


@pytest.mark.parametrize("table, p", [
    # Reference values from statsmodels 0.15 (statsmodels.stats.contingency_tables.mcnemar(table, exact=True)),
    # computed offline in a separate environment; table = [[both, only A], [only B, neither]].
    ([[100, 30], [45, 25]], 0.10534226887460482),
    ([[0, 3], [12, 0]], 0.03515625),
    ([[9000, 530], [470, 0]], 0.06202319509836343),  # 1,000 discordant images: 2.0 ** 1000 is near overflow
    ([[0, 700], [600, 0]], 0.0060157938610449395),   # 1,300: 2.0 ** 1300 overflows, the exact integers do not
])
def test_paired_p_value_matches_statsmodels(table, p):
    (both, only_a), (only_b, neither) = table
    r = report.paired_difference(*_paired(both, only_a, only_b, neither))
    assert r.p_value == pytest.approx(p, rel=1e-12) and report.mcnemar_exact(only_a, only_b) == r.p_value


def test_paired_difference_in_words():
    # 500 images, A right on 15 that B gets wrong and never the other way round: the example of the docstring
    text = str(report.paired_difference(*_paired(435, 15, 0, 50)))
    assert text.startswith("+3.0 points, paired 95 % interval [+1.5, +4.7]; 15 vs 0 images")
    assert text.endswith("McNemar p < 0.0001: a real difference")
    # The published example sits on the edge: the interval excludes 0, McNemar's p is 0.052 (not rounded to 0.05)
    text = str(report.paired_difference(*_paired(59, 6, 16, 80)))
    assert "McNemar p = 0.052: a real difference (borderline: McNemar's test does not agree)" in text
    assert str(report.paired_difference(*_paired(100, 30, 45, 25))).endswith(
        "p = 0.11: within noise (no real difference shown)")


def test_paired_difference_is_exactly_mirrored_and_accepts_0_1_lists():
    a, b = _paired(300, 41, 17, 142)
    ab, ba = report.paired_difference(a, b), report.paired_difference(list(b.astype(int)), list(a.astype(int)))
    assert (ab.difference, ab.low, ab.high) == (-ba.difference, -ba.high, -ba.low)
    assert ab.difference == pytest.approx(24 / 500) and ab.low < ab.difference < ab.high


@pytest.mark.parametrize("a, err, match", [
    (np.array(["yes", "no"]), TypeError, r"correct_a must hold booleans or 0/1 per image, got dtype <U3"),
    (np.array([1.0, np.nan]), ValueError, r"found np.float64\(nan\) at index 1|found nan at index 1"),
    (np.array([1, 0.5]), ValueError, r"booleans or 0/1 .*found .*0.5.* at index 1"),
])
def test_paired_difference_names_the_bad_outcome(a, err, match):
    with pytest.raises(err, match=match):
        report.paired_difference(a, np.ones(2, bool))


def test_mcnemar_exact_rejects_bad_counts():
    with pytest.raises(ValueError, match="b=-1 is not allowed"):
        report.mcnemar_exact(-1, 3)
    with pytest.raises(TypeError, match="c must be an integer"):
        report.mcnemar_exact(2, 1.5)


def test_a_paired_difference_is_not_a_truth_value():
    # `assert report.paired_difference(a, b)` must not pass silently: ask for .is_real
    with pytest.raises(TypeError, match="is_real"):
        bool(report.paired_difference([True, False], [True, True]))


def test_with_interval_reads_an_int_as_a_fraction():
    # 1 and 0 given as ints are accuracies (100 %, 0 %), not counts of 1 and 0 successes.
    assert report.with_interval(1, 50) == report.with_interval(1.0, 50)
    assert report.with_interval(1, 50).startswith("100.0 %")
    assert report.with_interval(0, 50) == report.with_interval(0.0, 50)


def test_is_real_difference_computes_what_difference_says():
    for a, b, n in [(0.5, 0.45, 400), (0.5, 0.4, 400), (0.97, 0.96, 1000), (1, 0, 5), (0.2, 0.31, 300)]:
        d, low, high = report.difference_interval(a, b, n)
        assert low <= d <= high and d == pytest.approx(a - b)
        assert report.is_real_difference(a, b, n) == report.difference(a, b, n).endswith("a real difference")
    assert report.is_real_difference(1, 0, 5)  # ints are fractions here (100 % vs 0 %), not counts


# ------------------------------------------------------------------------------------------ counts vs proportions
@pytest.mark.parametrize("call", [
    lambda: report.with_interval(450, 500),           # a count where the proportion belongs: printed 45000 %
    lambda: report.with_interval(90.0, 500),          # a percentage
    lambda: report.with_interval(-0.1, 500),
    lambda: report.with_interval(float("nan"), 500),
    lambda: report.with_interval(float("inf"), 500),
    lambda: report.difference(450, 480, 500),         # counts: "-3000.0 points"
    lambda: report.difference_interval(0.9, 96.0, 500),
    lambda: report.is_real_difference(450, 0.9, 500),
])
def test_proportion_arguments_refuse_counts_and_percentages(call):
    with pytest.raises(ValueError, match=r"proportion in \[0, 1\]"):
        call()


def test_count_given_as_proportion_names_the_fix():
    with pytest.raises(ValueError, match=r"accuracy=450 .*450 / 500.*wilson_interval\(450, 500\)"):
        report.with_interval(450, 500)


@pytest.mark.parametrize("value", [True, "0.9", None, [0.9, 0.8]])
def test_proportion_arguments_refuse_non_numbers(value):
    with pytest.raises(TypeError, match="accuracy must be a proportion"):
        report.with_interval(value, 500)


def test_proportions_of_every_numeric_kind_still_print_the_same():
    expected = report.with_interval(0.9, 500)
    assert expected == "90.0 % [87.1, 92.3]"
    for p in (np.float32(0.9), np.float64(0.9), np.array(0.9)):
        assert report.with_interval(p, 500) == expected
    assert report.with_interval(1, 10) == report.with_interval(1.0, 10)  # the int 1 is 100 %, not one image
    assert report.with_interval(0, 10) == "0.0 % [0.0, 27.8]"


def test_wilson_interval_refuses_a_fractional_count():
    # 2.5 "successes" out of 10 is neither a count nor a fraction in [0, 1]; it used to give the interval of 25 %
    with pytest.raises(ValueError, match=r"successes=2.5 .*whole number"):
        report.wilson_interval(2.5, 10)
    assert report.wilson_interval(3.0, 10) == report.wilson_interval(3, 10)  # a whole count as a float is fine


def test_with_interval_digits_must_be_a_whole_number():
    assert report.with_interval(0.9, 500, digits=0) == "90 % [87, 92]"
    with pytest.raises(TypeError, match="digits must be an integer"):
        report.with_interval(0.9, 500, digits=True)


def test_table_shows_every_column_any_row_has():
    # the columns used to be the first row's keys only: "PGD" of the second row vanished without a word
    text = report.format_table({"standard": {"clean": 0.968}, "PGD-trained": {"clean": 0.972, "PGD": 0.83}})
    lines = text.splitlines()
    assert lines[0].split() == ["clean", "PGD"]
    assert lines[1].split() == ["standard", "96.8%", "—"] and lines[2].split() == ["PGD-trained", "97.2%", "83.0%"]


def test_table_refuses_a_column_no_row_has():
    with pytest.raises(ValueError, match=r"columns 'PDG' .*'clean', 'PGD'"):  # a typo gave a column of dashes
        report.format_table({"m": {"clean": 0.9, "PGD": 0.1}}, ["clean", "PDG"])


@pytest.mark.parametrize("value", [450, 96.7, -3.0])
def test_percent_table_refuses_counts_and_percentages(value):
    # 450 correct images printed as "45000.0%"; 96.7 (already a percentage) as "9670.0%"
    with pytest.raises(ValueError, match=r"'m', 'acc'.*not a proportion"):
        report.format_table({"m": {"acc": value}})
    assert str(value) in report.format_table({"m": {"acc": value}}, fmt="{}")  # another format prints anything


def test_percent_table_still_prints_differences_and_gaps():
    text = report.format_table({"m": {"gap": -0.25, "nan": float("nan"), "one": 1}})
    assert text.splitlines()[1].split() == ["m", "-25.0%", "nan%", "100.0%"]


@pytest.mark.parametrize("z", [-1.96, 0.0, float("nan")])
def test_wilson_interval_refuses_a_z_that_is_not_positive(z):
    # z = -1.96 returned (high, low) swapped: an "interval" whose low end lies above its high end
    with pytest.raises(ValueError, match="z="):
        report.wilson_interval(50, 100, z=z)


@pytest.mark.parametrize("a, n_a, b, n_b, low, high", [
    (56, 70, 48, 80, 0.0524, 0.3339),   # Newcombe (1998), Stat. Med. 17:873, table II, method 10, examples (a)-(d)
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
])
def test_difference_interval_matches_newcombes_published_examples(a, n_a, b, n_b, low, high):
    d, lo, hi = report.difference_interval(a / n_a, b / n_b, n_a, n_b)
    assert d == pytest.approx(a / n_a - b / n_b)
    assert lo == pytest.approx(low, abs=1e-4) and hi == pytest.approx(high, abs=1e-4)
    assert report.is_real_difference(a / n_a, b / n_b, n_a, n_b) == (low > 0)


def test_folded_keeps_lines_short_and_indents_continuations():
    r = report.paired_difference(*_paired(400, 6, 4, 590))          # within noise: the longest verdict
    line = f"clean accuracy, FGSM-trained − standard (same images): {r}"
    assert len(line) > 140
    text = report.folded(line)
    lines = text.splitlines()
    assert len(lines) == 2 and all(len(x) <= 118 for x in lines)
    assert lines[1].startswith("    ") and not lines[1].startswith("     ")
    assert " ".join(x.strip() for x in lines) == line                 # nothing lost, only folded
    assert report.folded("short\n  also short") == "short\n  also short"

"""``evaluate.robustness_report`` and ``python -m helpers.evaluate`` (issue 30) on models built here: a 3-channel
model with BatchNorm and Dropout on generated 32×32×3 images, the same model ending in a softmax, a masked model
(logits ×1e4), and every bad input.  Fast tests use tiny models and need no attack; tests that run the attacks (each
compiles its graphs: a few seconds) are marked slow."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import data as data_module
from helpers import evaluate

keras = pytest.importorskip("keras")

TINY = evaluate.ReportSettings(pgd_steps=4, short_steps=2, strong_steps=4, queries=10, curve=(0.5, 1.0), curve_n=16)
EPS = 0.03


def _images(n=96, seed=0):
    """Generated 32×32×3 images in [0, 1] whose class (of 4) is the brightest colour channel's quadrant pattern."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype(np.int64)
    x = rng.uniform(0.3, 0.7, (n, 32, 32, 3)).astype(np.float32)
    for k in range(4):
        rows, cols = divmod(k, 2)
        x[y == k, rows * 16:(rows + 1) * 16, cols * 16:(cols + 1) * 16, :] += 0.25
    return np.clip(x, 0, 1), y


def _cnn(softmax=False, sequential=False):
    layers = [keras.layers.Conv2D(4, 3, strides=2, activation="relu"), keras.layers.BatchNormalization(),
              keras.layers.Flatten(), keras.layers.Dropout(0.3),
              keras.layers.Dense(4, activation="softmax" if softmax else None)]
    if sequential:
        return keras.Sequential([keras.Input((32, 32, 3)), *layers])
    inp = keras.Input((32, 32, 3))
    h = inp
    for layer in layers:
        h = layer(h)
    return keras.Model(inp, h)


@pytest.fixture(scope="module")
def data():
    return _images()


@pytest.fixture(scope="module")
def bn_model():
    """A functional CNN with BatchNorm and Dropout, untrained (logits): enough for the checks that run no attack."""
    keras.utils.set_random_seed(0)
    return _cnn()


@pytest.fixture(scope="module")
def trained(data):
    """A functional CNN with BatchNorm and Dropout, trained for a few epochs on the generated images (logits)."""
    keras.utils.set_random_seed(0)
    model = _cnn()
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*data, epochs=8, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="module")
def softmax_model(trained):
    """``trained`` ending in a softmax (a Sequential model with the same weights)."""
    model = _cnn(softmax=True, sequential=True)
    model.set_weights(trained.get_weights())
    return model


# ------------------------------------------------------------------------------------------------- fast tests

def test_a_softmax_output_is_detected_and_its_logits_attacked(bn_model, data):
    x = data[0][:8]
    softmax_model = _cnn(softmax=True, sequential=True)
    softmax_model.set_weights(bn_model.get_weights())
    net, notes = evaluate._report_model(softmax_model, x, (0.0, 1.0))
    assert np.allclose(net(x, training=False), bn_model(x, training=False), atol=1e-5)
    assert any("softmax" in note and "logits" in note for note in notes)
    same, notes = evaluate._report_model(bn_model, x, (0.0, 1.0))
    assert same is bn_model and notes == []


def test_probabilities_without_a_softmax_layer_are_attacked_through_their_log(bn_model, data):
    x = data[0][:8]
    probs = keras.Sequential([keras.Input((32, 32, 3)), bn_model, keras.layers.Softmax()])
    hidden = keras.Sequential([keras.Input((32, 32, 3)), probs])  # the softmax is not this model's last layer
    net, notes = evaluate._report_model(hidden, x, (0.0, 1.0))
    logits = np.asarray(bn_model(x, training=False))
    got = np.asarray(net(x, training=False))
    assert np.allclose(got - got.max(1, keepdims=True), logits - logits.max(1, keepdims=True), atol=1e-4)
    assert any("log-probabilities" in note and "masked" in note for note in notes)


def test_a_subclassed_model_returning_probabilities_is_wrapped(data):
    class Probabilities(keras.Model):
        def __init__(self):
            super().__init__()
            self.flat, self.dense = keras.layers.Flatten(), keras.layers.Dense(4)

        def call(self, x, training=False):
            return keras.ops.softmax(self.dense(self.flat(x)))

    x = data[0][:8]
    model = Probabilities()
    functional = evaluate._as_functional(model, x.shape[1:])
    assert functional.output_shape == (None, 4)
    net, notes = evaluate._report_model(functional, x, (0.0, 1.0))
    assert np.allclose(keras.ops.softmax(net(x)), model(x), atol=1e-5)
    assert any("log-probabilities" in note for note in notes)


def test_another_input_range_is_rescaled_for_the_model(bn_model, data):
    x = data[0][:8]
    inner = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255), bn_model])
    net, notes = evaluate._report_model(inner, x, (0.0, 255.0))
    assert np.allclose(net(x, training=False), bn_model(x, training=False), atol=1e-4)
    assert any("[0, 255]" in note for note in notes)
    assert np.allclose(evaluate._report_images(inner, x * 255, (0.0, 255.0)), x, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (lambda x, y: (x[0], y), "4-D batch"),
    (lambda x, y: (x.transpose(0, 3, 1, 2), y), "channels-first"),
    (lambda x, y: (x[:, :16], y), "expects"),
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x).astype(np.float32), y), "NaN"),
    (lambda x, y: (x * 255, y), r"input_range=\(0, 255\)"),
    (lambda x, y: (x - 0.5, y), "outside the declared input_range"),
    (lambda x, y: (x, y + 4), r"class indices in \[0, 3\]"),
    (lambda x, y: (x, -y - 1), r"class indices in \[0, 3\]"),
    (lambda x, y: (x, y[:-1]), "same length"),
    (lambda x, y: (x, np.eye(5, dtype=np.int64)[y]), "one-hot with 5 classes but the model has 4 outputs"),
    (lambda x, y: (x, np.eye(4)[y] * 0.5), "not one-hot"),
    (lambda x, y: (x, y + 0.5), "whole class indices"),
    (lambda x, y: (x, y[:, None, None]), "class indices"),
])
def test_bad_input_gets_a_clear_error(bn_model, data, change, message):
    x, y = change(data[0][:8].copy(), data[1][:8].copy())
    with pytest.raises(ValueError, match=message):
        evaluate.robustness_report(bn_model, x, y, EPS, settings=TINY)


def test_bad_arguments_and_models_get_a_clear_error(bn_model, data):
    x, y = data[0][:8], data[1][:8]
    with pytest.raises(ValueError, match="norm='l1'"):
        evaluate.robustness_report(bn_model, x, y, EPS, norm="l1")
    with pytest.raises(ValueError, match="eps=-0.1"):
        evaluate.robustness_report(bn_model, x, y, -0.1)
    with pytest.raises(ValueError, match="low < high"):
        evaluate.robustness_report(bn_model, x, y, EPS, input_range=(1, 0))
    with pytest.raises(TypeError, match="ReportSettings"):
        evaluate.robustness_report(bn_model, x, y, EPS, settings={"pgd_steps": 2})
    with pytest.raises(ValueError, match="n=0"):
        evaluate.robustness_report(bn_model, x, y, EPS, n=0)
    with pytest.raises(TypeError, match="keras.Model"):
        evaluate.robustness_report(lambda t: t, x, y, EPS)
    one_output = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="classes >= 2"):
        evaluate.robustness_report(one_output, x, y, EPS)
    with pytest.raises(TypeError, match="integers"):
        evaluate.robustness_report(bn_model, x, y.astype(str), EPS)


def test_one_hot_labels_and_the_npz_layouts_are_read(tmp_path, data):
    x, y = data[0][:8], data[1][:8]
    assert np.array_equal(evaluate._report_labels(np.eye(4)[y], 8, 4), y)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x_test=x, y_test=np.eye(4)[y], x_train=x[:1])
    np.savez(tmp_path / "c.npz", images=x, labels=y)
    assert all(np.array_equal(a, b) for a, b in zip(data_module.load_npz(tmp_path / "a.npz"), (x, y)))
    assert np.array_equal(data_module.load_npz(tmp_path / "b.npz")[1], np.eye(4)[y])
    with pytest.raises(ValueError, match="'images', 'labels'"):
        data_module.load_npz(tmp_path / "c.npz")


def _made_up_report(flagged=False):
    figure = lambda a: {"accuracy": a, "low": max(0.0, a - 0.1), "high": min(1.0, a + 0.1), "n": 50,  # noqa: E731
                        "detail": "made up"}
    rows = {"clean": figure(0.9), "PGD-40": figure(0.5), "worst case": figure(0.4)}
    checks = [{"check": "more steps never help", "verdict": "FAIL" if flagged else "pass", "detail": "<b>x</b>"}]
    paired = {"attack_a": "PGD-40", "attack_b": "worst case", "text": "+10.0 points"}
    curve = {"eps": [0.0, 0.1], "n": 50, "curves": {"PGD-10": {"accuracy": [0.9, 0.5], "low": [0.8, 0.4],
                                                               "high": [0.95, 0.6]}}}
    info = {"model": "m", "n": 50, "eps": 0.1, "norm": "inf", "input_range": [0, 1], "classes": 4,
            "image_shape": [32, 32, 3], "seed": 0, "settings": {}}
    return evaluate.RobustnessReport(info, rows, checks, paired, curve, ["a note"], {"clean accuracy": 0.5})


def test_the_report_reads_as_text_json_and_one_self_contained_page(tmp_path):
    rep = _made_up_report(flagged=True)
    text = str(rep)
    assert "worst case" in text and "40.0 % [" in text and "SOME CHECKS FAILED" in text and "a note" in text
    assert json.loads(rep.to_json(tmp_path / "r.json"))["flagged"] is True
    assert json.loads((tmp_path / "r.json").read_text())["figures"]["clean"]["accuracy"] == 0.9
    page = rep.to_html(tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2 and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "http" not in page and "<script" not in page and "class=FAIL" in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "r.json"]  # no temporary file left
    assert not _made_up_report().flagged and "every check" in str(_made_up_report())
    assert "Time:" in text and "Time:" not in rep.text(timings=False)


def _saved(tmp_path, model, data):
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x_test=data[0], y_test=data[1])
    return [str(tmp_path / "model.keras"), "--data", str(tmp_path / "data.npz"), "--eps", str(EPS), "--n", "16",
            "--out", str(tmp_path / "out" / "report.html")]


@pytest.mark.parametrize("stage", ["_attack_figures", "render"])
def test_ctrl_c_stops_the_command_cleanly_and_writes_nothing(tmp_path, monkeypatch, capsys, bn_model, data, stage):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if stage == "render":  # interrupted while the page is rendered: the report is ready, nothing is written yet
        monkeypatch.setattr(evaluate, "robustness_report", lambda *a, **k: _made_up_report())
        monkeypatch.setattr(evaluate.plots, "robustness_page", interrupt)
    else:
        monkeypatch.setattr(evaluate, stage, interrupt)
    assert evaluate.main(_saved(tmp_path, bn_model, data)) == 130
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert "interrupted" in capsys.readouterr().err


def test_the_command_refuses_bad_input_with_the_reason(tmp_path, capsys, bn_model, data):
    argv = _saved(tmp_path, bn_model, data)
    np.savez(tmp_path / "data.npz", x=data[0] * 255, y=data[1])
    assert evaluate.main(argv) == 2
    assert "input_range=(0, 255)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate.main(argv[:-1] + [str(tmp_path / "report.txt")])
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------ slow: the attacks run

@pytest.mark.slow
def test_report_on_a_batchnorm_model(trained, data, monkeypatch):
    monkeypatch.setenv("COURSE_EVAL_CACHE", "0")
    seen = []
    rep = evaluate.robustness_report(trained, *data, EPS, n=48, settings=TINY, progress=seen.append)
    assert list(rep.figures) == ["clean", "noise", "FGSM", "PGD-4", "APGD-CE", "APGD-DLR", "Square",
                                 "worst case"]
    assert rep.accuracy("clean") == evaluate.accuracy(trained, data[0][:48], data[1][:48]) > 0.5
    for row in rep.figures.values():
        assert row["low"] <= row["accuracy"] <= row["high"] and row["n"] == 48
    assert rep.accuracy("worst case") <= min(rep.accuracy(k) for k in ("APGD-CE", "APGD-DLR", "Square"))
    assert any("BatchNormalization" in note and "not supported" in note for note in rep.notes)
    assert {c["check"]: c["verdict"] for c in rep.checks}["certified ≤ strong"] == "not run"
    assert not rep.flagged, str(rep)
    assert rep.curve["eps"] == [0.0, 0.015, 0.03] and rep.curve["n"] == 16
    assert seen[:2] == ["preparing the model", "clean accuracy"] and set(seen) == set(rep.timings)
    assert rep.seconds > 0 and "Time:" in str(rep)
    assert rep.paired["n"] == 48 and rep.paired["attack_a"] == "PGD-4"


@pytest.mark.slow
def test_the_strong_figures_equal_strong_accuracy_on_the_same_images(trained, data, monkeypatch):
    monkeypatch.setenv("COURSE_EVAL_CACHE", "0")  # computed twice, not read back
    rep = evaluate.robustness_report(trained, *data, EPS, n=48, settings=TINY)
    strong = evaluate.strong_accuracy(trained, data[0][:48], data[1][:48], EPS, steps=TINY.strong_steps,
                                      restarts=TINY.strong_restarts, queries=TINY.queries, seed=0)
    for key, row in {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "square": "Square", "worst": "worst case"}.items():
        assert rep.accuracy(row) == strong[key]


@pytest.mark.slow
def test_a_softmax_model_gets_the_figures_of_its_logits(trained, softmax_model, data, monkeypatch):
    monkeypatch.setenv("COURSE_EVAL_CACHE", "0")
    logits = evaluate.robustness_report(trained, *data, EPS, n=32, settings=TINY)
    probs = evaluate.robustness_report(softmax_model, *data, EPS, n=32, settings=TINY)
    assert {k: r["accuracy"] for k, r in probs.figures.items()} == {k: r["accuracy"] for k, r in logits.figures.items()}
    assert any("softmax" in note for note in probs.notes)


@pytest.mark.slow
def test_a_masked_model_is_flagged(trained, data, monkeypatch):
    monkeypatch.setenv("COURSE_EVAL_CACHE", "0")
    masked = _cnn()
    masked.set_weights(trained.get_weights())
    last = masked.layers[-1]
    last.set_weights([w * 1e4 for w in last.get_weights()])  # logits ×1e4: the softmax saturates, CE gradients vanish
    rep = evaluate.robustness_report(masked, *data, EPS, n=64, settings=TINY)
    verdicts = {c["check"]: c["verdict"] for c in rep.checks}
    assert rep.flagged and "SOME CHECKS FAILED" in str(rep), str(rep)
    assert verdicts["accuracy reaches 0 at a large ε"] == "FAIL", str(rep)
    honest = evaluate.robustness_report(trained, *data, EPS, n=64, settings=TINY)
    assert not honest.flagged, str(honest)


@pytest.mark.slow
def test_the_command_end_to_end(tmp_path, capsys, trained, data, monkeypatch):
    monkeypatch.setenv("COURSE_EVAL_CACHE", "0")
    assert evaluate.main(_saved(tmp_path, trained, data)) == 0
    out = capsys.readouterr().out
    assert "] clean accuracy" in out and "] strong suite" in out and "Masking checklist" in out
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["info"]["n"] == 16 and saved["figures"]["worst case"]["n"] == 16


@pytest.mark.slow
def test_an_l2_report_on_a_sequential_model_in_0_255(trained, data, monkeypatch):
    monkeypatch.setenv("COURSE_EVAL_CACHE", "0")
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255), trained])
    rep = evaluate.robustness_report(model, data[0] * 255, data[1], 0.5, norm="l2", n=32, settings=TINY,
                                     input_range=(0, 255))
    assert "FGM (L2)" in rep.figures and "certified" not in rep.figures and "Square" not in rep.figures
    assert any("Square is an L∞ attack" in note for note in rep.notes)
    assert any("L∞ balls only" in note for note in rep.notes) and any("[0, 255]" in note for note in rep.notes)
    assert rep.accuracy("clean") == evaluate.accuracy(trained, data[0][:32], data[1][:32])
    large = next(c for c in rep.checks if c["check"] == "accuracy reaches 0 at a large ε")
    assert "ε = 55.4" in large["detail"]  # √(32·32·3): any image of [0, 1] is in reach


def _checklist(**change):
    """The masking checklist on made-up outcomes of 100 images (a healthy model unless ``change`` says otherwise)."""
    n = 100
    right = lambda k: np.arange(n) < k  # noqa: E731  (the first k images right)
    acc = {"clean": 97, "noise": 95, "FGSM": 90, "PGD-40": 80, "worst case": 78, "certified": 10,
           "curve FGSM": 20, "curve PGD-10": 20, "large": 0, **change}
    figures = {k: evaluate._figure(right(acc[k]), "") for k in ("clean", "noise", "FGSM", "PGD-40", "worst case",
                                                                "certified") if acc[k] is not None}
    for k in figures:
        figures[k]["right"] = right(acc[k])
    pair = evaluate.report.paired_difference(right(acc["PGD-40"]), right(acc["worst case"]))
    paired = {**pair._asdict(), "text": str(pair)}
    at_eps = {"FGSM": right(acc["curve FGSM"])[:20], "PGD-10": right(acc["curve PGD-10"])[:20]}
    large = {"eps": 1.0, "steps": 20, **evaluate._figure(right(acc["large"]), "")}
    found = evaluate._masking_checks(figures, large, paired, at_eps, right(acc["PGD-40"]), 1)
    return {c["check"]: c["verdict"] for c in found}


@pytest.mark.parametrize("change, failing", [
    ({"curve PGD-10": 18}, "more steps never help"),   # on the curve's 20 images PGD-40 leaves 20, PGD-10 18
    ({"curve FGSM": 18}, "more steps never help"),     # PGD-10 leaves more than a one-step attack
    ({"large": 2}, "accuracy reaches 0 at a large ε"),
    ({"noise": 70}, "noise weaker than PGD"),
    ({"worst case": 82}, "strong suite at least as strong as PGD"),
    ({"worst case": 60}, "PGD within 5% of the strong suite"),
    ({"certified": 79}, "certified ≤ strong"),
])
def test_each_masking_check_fails_when_it_should(change, failing):
    assert set(_checklist().values()) == {"pass"}
    verdicts = _checklist(**change)
    assert verdicts[failing] == "FAIL" and sum(v == "FAIL" for v in verdicts.values()) == 1, verdicts


def test_a_check_that_cannot_run_says_so():
    assert _checklist(certified=None)["certified ≤ strong"] == "not run"


def test_the_report_text_keeps_lines_short():
    """A notebook prints it: no line over 118 characters, however long a check's detail or the paired test."""
    rep = _made_up_report()
    rep.checks[0]["detail"] = "PGD-40 − worst case: " + "+3.6 points, paired 95 % interval [+1.9, +5.4]; " * 4
    rep.paired["text"] = rep.checks[0]["detail"]
    lines = str(rep).splitlines()
    assert max(map(len, lines)) <= 118 and "paired 95 % interval [+1.9, +5.4]" in str(rep)

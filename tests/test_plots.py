import re

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest

from helpers import plots


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("shape", [(6, 28, 28, 1), (6, 32, 32, 3)])
def test_show_images_and_attack_grids(shape):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=shape).astype(np.float32)
    fig = plots.show_images(x, labels=[0, 1, 2, 3, 4, 5], preds=[0, 1, 2, 3, 4, 0], confidences=np.full(6, 0.9),
                            class_names=[str(i) for i in range(10)], ncols=4)
    assert len(fig.axes) == 8
    assert fig.axes[5].title.get_color() == "crimson"  # wrong prediction shown in red
    adv = np.clip(x + 0.1, 0, 1)
    fig = plots.show_attack(x[:3], adv[:3], labels=[0, 1, 2], adv_preds=[1, 1, 0], gradients=x[:3] - 0.5)
    # 4 rows (original, gradient, perturbation, adversarial) x 3 examples, and colour bars for gradient and
    # perturbation; the gradient is shown per image, in units of its own largest value
    assert len(fig.axes) == 12 + 2
    assert [t.get_text() for t in fig.axes[-2].get_yticklabels()] == ["−max", "0", "+max"]
    assert "per image" in fig.axes[3].get_ylabel()


@pytest.mark.slow
def test_class_names_fit_their_columns():
    x = np.zeros((2, 32, 32, 3), np.float32)
    cifar = ["airplane", "automobile"]
    fig = plots.show_images(x, labels=[1, 1], preds=[1, 0], confidences=[0.99, 0.5], class_names=cifar)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:  # each title is no wider than its column (titles of neighbours do not overlap)
        title = ax.title.get_window_extent(renderer)
        column = fig.get_figwidth() * fig.dpi / 2
        assert title.width <= column


@pytest.mark.slow
def test_curves_and_matrices():
    ax = plots.plot_accuracy_vs_eps({"FGSM": {0.0: 0.99, 0.1: 0.5}, "noise": {0.0: 0.99, 0.1: 0.98}}, chance=0.1)
    assert len(ax.lines) == 3 and "ε" in ax.get_xlabel() and ax.get_ylabel() == "accuracy"
    ax = plots.plot_accuracy_vs_eps({"PGD": {0.1: 0.9}}, ylabel="targeted success rate")
    assert ax.get_ylabel() == "targeted success rate"
    m = np.full((3, 3), 0.5)
    np.fill_diagonal(m, np.nan)
    ax = plots.plot_matrix(m, class_names=["a", "b", "c"])
    assert len(ax.texts) == 6
    fig = plots.plot_history({"run": {"loss": [2, 1], "clean_accuracy": [0.5, 0.8], "adv_accuracy": [0.1, 0.3]}})
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 1
    assert [a.get_xlabel() for a in fig.axes] == ["epoch"] * 3 and all(a.get_ylabel() for a in fig.axes)


def _frame(v):
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_title(str(v))
    return fig


def test_frame_slider_is_self_contained_html():
    frames = plots.render_frames(_frame, [0.0, 0.1, 0.2])
    assert all(f.startswith(b"\x89PNG") for f in frames)
    html = plots.frame_slider(frames, [0.0, 0.1, 0.2], title="demo").data
    assert html.count('class="fs-frame"') == 3 and html.count("data:image/png;base64,") == 3
    assert re.search(r'type="range" min="0" max="2"', html)
    assert "oninput=" in html and "<script" not in html and "http" not in html
    assert html == plots.frame_slider(frames, [0.0, 0.1, 0.2], title="demo").data  # deterministic output
    with pytest.raises(ValueError, match="one frame per value"):
        plots.frame_slider(frames, [0.0])
    with pytest.raises(ValueError, match="start=5"):
        plots.frame_slider(frames, [0.0, 0.1, 0.2], start=5)


def test_eps_slider_renders_each_value_once():
    calls = []

    def render(eps):
        calls.append(eps)
        return _frame(eps)

    box = plots.eps_slider(render, [0.0, 0.1, 0.2])
    slider, image = box.children
    assert isinstance(slider, widgets.SelectionSlider) and not slider.continuous_update
    first = image.value
    slider.value = 0.2
    assert image.value != first
    slider.value = 0.0
    slider.value = 0.2
    assert calls == [0.0, 0.2]
    with pytest.raises(ValueError, match="at least one"):
        plots.eps_slider(render, [])


def test_check_grid_colours_each_verdict():
    grids = {"ε = 0.3": {"A, PGD": {"1 big ε": "pass", "2 more effort": "—"},
                         "A, FGSM": {"1 big ε": "FAIL", "2 more effort": "—"}},
             "ε = 0.4": {"A, PGD": {"1 big ε": "—", "2 more effort": "pass"},
                         "A, FGSM": {"1 big ε": "—", "2 more effort": "FAIL"}}}
    fig = plots.plot_check_grid(grids, title="checks")
    assert [ax.get_title() for ax in fig.axes] == ["ε = 0.3", "ε = 0.4"]
    ax = fig.axes[0]
    colours = [p.get_facecolor()[:3] for p in ax.patches]
    expected = [plots.CHECK_COLOURS[v] for v in ("pass", "—", "FAIL", "—")]
    import matplotlib.colors as mcolors
    assert colours == [mcolors.to_rgb(c) for c in expected]          # row by row, check by check
    assert [t.get_text() for t in ax.texts] == ["pass", "—", "FAIL", "—"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A, PGD", "A, FGSM"]


@pytest.mark.parametrize("grids, match", [
    ({}, "at least one panel"),
    ({"p": {"r": {"c": "ok"}}}, r"verdicts must be one of"),
    ({"p": {"r": {"c": "pass"}}, "q": {"s": {"c": "pass"}}}, r"panel 'q': every panel needs the rows"),
])
def test_check_grid_refuses_bad_input(grids, match):
    with pytest.raises(ValueError, match=match):
        plots.plot_check_grid(grids)

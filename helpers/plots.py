"""Figures and sliders: image grids with predictions, attack panels, accuracy-vs-ε curves, ε sliders.

Sliders come in two kinds:
- ``eps_slider``: an ipywidgets slider for a running kernel (recomputes or looks up a frame for any ε);
- ``frame_slider``: a self-contained HTML/JavaScript slider over precomputed frames.  It needs no kernel and no
  internet, so it keeps working in the exported HTML pages of the course.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Callable, Sequence

import numpy as np

import matplotlib.pyplot as plt  # noqa: E402


def use_course_style() -> None:
    """Matplotlib defaults for the notebooks: small PNG figures (committed outputs stay light), no chart junk."""
    plt.rcParams.update({"figure.dpi": 72, "savefig.dpi": 72, "figure.figsize": (6, 4), "axes.spines.top": False,
                         "axes.spines.right": False, "image.interpolation": "nearest", "font.size": 10})


def _img(ax, image, *, cmap="gray", vmin=0.0, vmax=1.0):
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    im = ax.imshow(image, cmap=cmap if image.ndim == 2 else None, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _name(class_names, k):
    return str(class_names[k]) if class_names is not None else str(k)


def _column_width(size, class_names):
    """Inches per image column: wide enough that "pred automobile 99%" (CIFAR-10) fits at font size 8."""
    longest = max((len(str(c)) for c in class_names), default=1) if class_names is not None else 2
    return max(size, 0.075 * (longest + 9))


def show_images(images, *, labels=None, preds=None, confidences=None, class_names=None, ncols=8, title=None,
                size=1.3):
    """Grid of images; titles show the label and, if given, the prediction (red when wrong) and confidence."""
    images = np.asarray(images)
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    width = _column_width(size, class_names)
    title_room = 0.35 * (labels is not None) + 0.35 * (preds is not None)  # inches of two-line image titles
    height = (size + title_room) * nrows + (0.4 if title else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        _img(ax, images[i])
        wrong = labels is not None and preds is not None and labels[i] != preds[i]
        ax.set_title(_caption(i, class_names, labels, preds, confidences), fontsize=8,
                     color="crimson" if wrong else "black")
    if title:
        fig.suptitle(title)
    return fig


def show_attack(x, x_adv, *, labels=None, clean_preds=None, clean_conf=None, adv_preds=None, adv_conf=None,
                gradients=None, class_names=None, amplify=None, title=None, size=1.6):
    """Columns of (original, [gradient], perturbation, adversarial) for each example.

    The perturbation ``x_adv - x`` is tiny in pixel units, so it is shown *amplified*: mapped from
    ``[-m, m]`` (``m`` = its largest absolute value, or ``1/amplify``) onto the full colour range; white is 0.
    Gradients differ in size by orders of magnitude between images, so each gradient image is scaled to its *own*
    largest absolute value (the colour bar reads in units of that maximum): compare signs and places, not sizes.
    """
    x, x_adv = np.asarray(x), np.asarray(x_adv)
    n = len(x)
    rows = ["original"] + (["gradient"] if gradients is not None else []) + ["perturbation", "adversarial"]
    width = _column_width(size, class_names)
    fig, axes = plt.subplots(len(rows), n, figsize=(width * n + 1.4, (size + 0.3) * len(rows) + 0.5), squeeze=False,
                             layout="constrained")
    delta = x_adv - x
    m = (1.0 / amplify) if amplify else max(float(np.abs(delta).max()), 1e-8)
    bars = {}
    for j in range(n):
        col = {"original": x[j], "adversarial": x_adv[j]}
        for i, row in enumerate(rows):
            ax = axes[i, j]
            if row == "perturbation":
                d = delta[j].mean(axis=-1) if delta.shape[-1] == 3 else delta[j]
                bars[i] = _img(ax, d, cmap="seismic", vmin=-m, vmax=m)
            elif row == "gradient":
                g = np.asarray(gradients[j])
                g = g.mean(axis=-1) if g.shape[-1] == 3 else g
                gm = max(float(np.abs(g).max()), 1e-30)
                bars[i] = _img(ax, g / gm, cmap="seismic", vmin=-1, vmax=1)
            else:
                _img(ax, col[row])
            if j == 0:
                ax.set_ylabel({"perturbation": f"perturbation\n(±{m:.2g} shown)",
                               "gradient": "gradient\n(per image,\n÷ its max |g|)"}.get(row, row), fontsize=9)
        _attack_titles(axes, j, labels, clean_preds, clean_conf, adv_preds, adv_conf, class_names)
    for i, im in bars.items():
        cb = fig.colorbar(im, ax=list(axes[i]), fraction=0.02, pad=0.01)
        cb.ax.tick_params(labelsize=7)
        if rows[i] == "gradient":
            cb.set_ticks([-1, 0, 1], labels=["−max", "0", "+max"])
    if title:
        fig.suptitle(title)
    return fig


def _attack_titles(axes, j, labels, clean_preds, clean_conf, adv_preds, adv_conf, class_names):
    if labels is not None or clean_preds is not None:
        axes[0, j].set_title(_caption(j, class_names, labels, clean_preds, clean_conf), fontsize=8)
    if adv_preds is not None:
        wrong = labels is not None and adv_preds[j] != labels[j]
        axes[-1, j].set_title(_caption(j, class_names, None, adv_preds, adv_conf), fontsize=8,
                              color="crimson" if wrong else "black")


def _caption(i, class_names, labels=None, preds=None, confidences=None) -> str:
    """The title of image ``i``: a "true <class>" line and a "pred <class> <confidence>" line (those given)."""
    parts = []
    if labels is not None:
        parts.append(f"true {_name(class_names, labels[i])}")
    if preds is not None:
        parts.append(f"pred {_name(class_names, preds[i])}"
                     + (f" {confidences[i]:.0%}" if confidences is not None else ""))
    return "\n".join(parts)


def plot_accuracy_vs_eps(curves: dict, *, title="Accuracy under attack", ax=None, chance=None, xlabel=None,
                         ylabel="accuracy"):
    """One line per entry of ``curves`` (``{label: {eps: value}}``); ε in pixel units of [0, 1].

    ``ylabel`` names what the values are (accuracy by default; e.g. "targeted success rate").
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    markers, styles = "osD^v<>ph*", ("-", "--", "-.", ":")
    for i, (label, curve) in enumerate(curves.items()):  # markers and line styles differ: equal curves stay visible
        eps = sorted(curve)
        ax.plot(eps, [curve[e] for e in eps], marker=markers[i % len(markers)], ls=styles[i % len(styles)],
                label=label)
    if chance is not None:
        ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
    ax.set_xlabel(xlabel or "ε (perturbation budget, pixel units of [0, 1])")
    ax.set_ylabel(ylabel)
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_matrix(matrix, *, class_names=None, title="", xlabel="", ylabel="", fmt="{:.0%}", ax=None, cmap="Blues"):
    """Heat map with numbers in the cells (confusion matrices, source × target success rates)."""
    matrix = np.asarray(matrix, float)
    k = matrix.shape[0]
    if ax is None:  # about 0.6 inch per cell: the percentages stay readable at the exported 72 dpi
        _, ax = plt.subplots(figsize=(0.6 * k + 2.2, 0.6 * k + 1.6))
    ax.imshow(np.nan_to_num(matrix, nan=0.0), cmap=cmap, vmin=0, vmax=np.nanmax(matrix) if np.isfinite(
        matrix).any() else 1)
    names = [_name(class_names, i) for i in range(k)]
    ax.set_xticks(range(k), names, rotation=90 if max(map(len, names)) > 2 else 0, fontsize=9)
    ax.set_yticks(range(k), names, fontsize=9)
    top = np.nanmax(matrix) if np.isfinite(matrix).any() else 1
    for i in range(k):
        for j in range(matrix.shape[1]):
            v = matrix[i, j]
            if np.isfinite(v):
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                        color="white" if v > 0.6 * top else "black")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


#: Colours of the verdicts in ``plot_check_grid``: a pass, a failure, and a check that did not apply.
CHECK_COLOURS = {"pass": "#4daf4a", "FAIL": "#e41a1c", "—": "#d9d9d9"}


def plot_check_grid(grids: dict, *, title=None):
    """Pass/FAIL grids side by side: ``{panel title: {row: {check: verdict}}}``, a verdict ``"pass"``, ``"FAIL"``
    or ``"—"`` (the check does not apply).  Each cell is coloured by ``CHECK_COLOURS`` and says its verdict, so
    a pattern of failures shows at a glance.  Every panel must have the same rows and checks.  Returns the figure.
    """
    if not grids:
        raise ValueError("plot_check_grid needs at least one panel, got none")
    panels = list(grids.items())
    rows = list(panels[0][1])
    checks = list(next(iter(panels[0][1].values()), {}))
    if not rows or not checks:
        raise ValueError(f"panel {panels[0][0]!r} has no rows or no checks")
    for name, grid in panels:
        if list(grid) != rows or any(list(row) != checks for row in grid.values()):
            raise ValueError(f"panel {name!r}: every panel needs the rows {rows} and the checks {checks}")
        bad = {v for row in grid.values() for v in row.values()} - set(CHECK_COLOURS)
        if bad:
            raise ValueError(f"panel {name!r}: verdicts must be one of {list(CHECK_COLOURS)}, got {sorted(bad)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(1.3 * len(checks) * len(panels) + 2.6, 0.42 * len(rows) + 1.6),
                             sharey=True, squeeze=False)
    for ax, (name, grid) in zip(axes[0], panels):
        for i, row in enumerate(grid.values()):
            for j, verdict in enumerate(row.values()):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor=CHECK_COLOURS[verdict],
                                           edgecolor="white", linewidth=2))
                ax.text(j, i, verdict, ha="center", va="center", fontsize=9,
                        color="white" if verdict == "FAIL" else "black", fontweight="bold" if verdict == "FAIL"
                        else "normal")
        ax.set(xlim=(-0.5, len(checks) - 0.5), ylim=(len(rows) - 0.5, -0.5), title=name)
        ax.set_xticks(range(len(checks)), checks, rotation=30, ha="right", fontsize=9)
        ax.set_yticks(range(len(rows)), rows, fontsize=9)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


#: Axis labels of the history panels (what each Keras History key measures).
_HISTORY_LABELS = {"loss": "cross-entropy loss", "val_loss": "validation loss", "accuracy": "training accuracy",
                   "val_accuracy": "validation accuracy", "clean_accuracy": "clean accuracy (training batches)",
                   "adv_accuracy": "adversarial accuracy (training batches)",
                   "val_clean_accuracy": "clean accuracy (validation)",
                   "val_adv_accuracy": "adversarial accuracy (validation)", "eps": "training ε", "time": "seconds"}


def plot_history(histories: dict, *, keys=("loss", "clean_accuracy", "adv_accuracy"), title=None):
    """Training curves: one panel per key, one line per run (``{label: history}``; a Keras History or its dict).

    Every panel has its x axis in epochs and its y axis labelled with what the key measures.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for label, h in histories.items():
            hist = getattr(h, "history", h)
            if key in hist:
                ax.plot(np.arange(1, len(hist[key]) + 1), hist[key], marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(_HISTORY_LABELS.get(key, key.replace("_", " ")))
        ax.set_title(key.replace("_", " "))
        if "accuracy" in key:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------- sliders
def figure_to_png(fig, *, dpi=72) -> bytes:
    """Render a Matplotlib figure to PNG bytes and close it (frames for sliders)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def render_frames(render: Callable, values: Sequence, *, dpi=72) -> list:
    """PNG bytes of ``render(value)`` (a Matplotlib figure) for each value."""
    return [figure_to_png(render(v), dpi=dpi) for v in values]


def frame_slider(frames: Sequence[bytes], values: Sequence, *, label="ε", fmt="{:.3g}", title="", start=0):
    """A JavaScript slider over precomputed PNG frames, as an ``IPython.display.HTML`` object.

    Works in a live notebook *and* in exported HTML without a kernel or internet (images are inlined as data
    URIs; the script is a few lines of plain JavaScript).  ``values`` label the frames (e.g. the ε of each).
    """
    from IPython.display import HTML

    if len(frames) == 0 or len(frames) != len(values):
        raise ValueError(f"frame_slider needs one frame per value, got {len(frames)} frames and {len(values)} values")
    if not 0 <= start < len(frames):
        raise ValueError(f"start={start} must index a frame (0..{len(frames) - 1})")
    hidden = ' style="display:none"'
    texts = [html.escape(fmt.format(v) if not isinstance(v, str) else v) for v in values]
    spans = "".join(f'<span class="fs-val"{"" if i == start else hidden}>{t}</span>' for i, t in enumerate(texts))
    imgs = "".join(
        f'<img class="fs-frame" alt="{html.escape(label)} = {t}" style="max-width:100%'
        f'{"" if i == start else ";display:none"}" src="data:image/png;base64,{base64.b64encode(f).decode()}">'
        for i, (f, t) in enumerate(zip(frames, texts)))
    # Plain JavaScript in an event attribute: no <script> tag, no ids, no libraries, so it runs in JupyterLab
    # (trusted output) and in nbconvert's HTML opened from disk.
    on_input = ("var r=this.closest('.course-frame-slider'),i=+this.value;"
                "['.fs-frame','.fs-val'].forEach(function(c){r.querySelectorAll(c).forEach(function(e,k){"
                "e.style.display=(k===i)?'':'none';});});")
    markup = (f'<div class="course-frame-slider" style="font-family:sans-serif;max-width:100%">'
              f'<div style="margin:4px 0"><b>{html.escape(title)}</b></div>'
              f'<label>{html.escape(label)} = {spans} <input type="range" min="0" max="{len(frames) - 1}" step="1" '
              f'value="{start}" style="width:320px;vertical-align:middle" oninput="{on_input}"></label>'
              f'<div>{imgs}</div></div>')
    return HTML(markup)


def eps_slider(render: Callable, eps_values: Sequence, *, description="ε", start=None, dpi=72):
    """An ipywidgets ε slider for a running kernel: a ``SelectionSlider`` over ``eps_values`` and an image.

    Each frame (``render(eps)``, a Matplotlib figure) is rendered on first use and cached, so moving back and
    forth is instant; ``continuous_update=False`` renders only where the slider is released.  Returns the widget.
    """
    import ipywidgets as widgets

    eps_values = list(eps_values)
    if not eps_values:
        raise ValueError("eps_slider needs at least one ε value")
    cache: dict = {}
    slider = widgets.SelectionSlider(options=[(f"{e:.3g}", e) for e in eps_values],
                                     value=eps_values[0] if start is None else start, description=description,
                                     continuous_update=False, layout=widgets.Layout(width="420px"))
    image = widgets.Image(format="png")

    def show(change=None):
        eps = slider.value
        if eps not in cache:
            cache[eps] = figure_to_png(render(eps), dpi=dpi)
        image.value = cache[eps]

    slider.observe(show, names="value")
    show()
    return widgets.VBox([slider, image])


# ------------------------------------------------------------------------------- the robustness report's page

def plot_report_figures(figures: dict, *, title="Accuracy with 95 % intervals", ax=None):
    """Horizontal bars of ``{row: {"accuracy", "low", "high"}}`` with their 95 % intervals as error bars."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.38 * len(figures) + 1.2))
    names = list(figures)[::-1]
    acc = np.array([figures[k]["accuracy"] for k in names])
    err = np.array([[figures[k]["accuracy"] - figures[k]["low"] for k in names],
                    [figures[k]["high"] - figures[k]["accuracy"] for k in names]])
    ax.barh(names, acc, xerr=err, color="#6b9bd1", ecolor="black", capsize=3)
    for i, (a, high) in enumerate(zip(acc, acc + err[1])):
        ax.text(high + 0.015, i, f"{a:.1%}", va="center", fontsize=8)  # right of the interval's end
    ax.set_xlim(0, 1.16)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("accuracy (fraction of the images)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return ax


def plot_report_curve(curve: dict, *, eps=None, norm="inf", ax=None):
    """The report's accuracy-vs-ε curves (``{"eps", "n", "curves": {name: {"accuracy", "low", "high"}}}``), each
    with its 95 % interval as a band; a dotted line at the report's ε."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for (name, c), marker in zip(curve["curves"].items(), "osD^v"):
        ax.plot(curve["eps"], c["accuracy"], marker=marker, label=name)
        ax.fill_between(curve["eps"], c["low"], c["high"], alpha=0.2)
    if eps is not None:
        ax.axvline(eps, color="grey", ls=":", lw=1, label=f"ε = {eps:.3g}")
    ax.set_xlabel(f"ε ({'L∞' if norm == 'inf' else 'L2'}, pixel units of [0, 1])")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Accuracy vs ε on {curve['n']:,} images (bands: 95 % intervals)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


_PAGE_STYLE = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
               "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
               "text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}"
               ".pass{background:#dff0d8}.FAIL{background:#f2dede;font-weight:bold}.notrun{background:#eee}"
               ".flag{padding:0.6em;border:2px solid #a94442;background:#f2dede}"
               ".ok{padding:0.6em;border:1px solid #3c763d;background:#dff0d8}img{max-width:100%}")


def _png_tag(fig, alt: str) -> str:
    data = base64.b64encode(figure_to_png(fig, dpi=90)).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def robustness_page(data: dict) -> str:
    """One self-contained HTML page (no script, no external file: figures inlined as base64 PNG) for a robustness
    report (``evaluate.RobustnessReport.to_dict()``)."""
    e, info = html.escape, data["info"]
    norm = "L∞" if info["norm"] == "inf" else "L2"
    rows = "".join(f"<tr><td>{e(name)}</td><td class=num>{100 * r['accuracy']:.1f} %</td><td class=num>"
                   f"[{100 * r['low']:.1f}, {100 * r['high']:.1f}]</td><td>{e(r['detail'])}</td></tr>"
                   for name, r in data["figures"].items())
    checks = "".join(f"<tr class={c['verdict'].replace(' ', '')}><td>{e(c['verdict'])}</td><td>{e(c['check'])}"
                     f"</td><td>{e(c['detail'])}</td></tr>" for c in data["checks"])
    banner = ('<p class=flag>Some checks FAILED: the figures may overstate the robustness (gradient masking?). '
              'Read the checklist below.</p>' if data["flagged"] else
              '<p class=ok>Every check of the masking checklist that ran passed.</p>')
    notes = "".join(f"<li>{e(n)}</li>" for n in data["notes"]) or "<li>none</li>"
    times = "".join(f"<tr><td>{e(k)}</td><td class=num>{v:.1f} s</td></tr>" for k, v in data["timings"].items())
    bars = _png_tag(plot_report_figures(data["figures"]).figure, "accuracy of every row with its 95 % interval")
    curve = _png_tag(plot_report_curve(data["curve"], eps=info["eps"], norm=info["norm"]).figure,
                     "accuracy vs ε with 95 % bands")
    title = f"Robustness report: {info['model']}"
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>"
            f"<style>{_PAGE_STYLE}</style></head><body><h1>{e(title)}</h1>"
            f"<p>{info['n']:,} images of shape {e(str(tuple(info['image_shape'])))}, {info['classes']} classes; "
            f"threat model: {norm} ε = {info['eps']:.4g} (pixel units of [0, 1]); seed {info['seed']}.</p>{banner}"
            f"<h2>Accuracy</h2><table><tr><th>attack</th><th>accuracy</th><th>95 % interval</th><th>what</th></tr>"
            f"{rows}</table>{bars}<h2>Paired test</h2><p>{e(data['paired']['attack_a'])} vs {e(data['paired']['attack_b'])} on "
            f"the same images: {e(data['paired']['text'])}</p><h2>Masking checklist</h2><table><tr><th>verdict</th>"
            f"<th>check</th><th>detail</th></tr>{checks}</table><h2>Accuracy vs ε</h2>{curve}<h2>Notes</h2>"
            f"<ul>{notes}</ul><h2>Time</h2><table>{times}<tr><th>total</th><th class=num>{data['seconds']:.1f} s"
            "</th></tr></table></body></html>\n")

"""Charts of a parameter sweep as PNG bytes: in-sample against out-of-sample, and the walk-forward equity curve.

The first shows overfitting at a glance: each point is one parameter set, its ranking statistic
in-sample across and out-of-sample up; points that did as well after the split as before lie on
the diagonal, points that only fitted the past fall far below it. The second is the combined
out-of-sample equity of walk-forward selection, with each fold's test window marked, beside the
equity of the single point ranked best in-sample over the same span.

Same rules as :mod:`tradeexecutor.visual.charts`: a fresh Agg figure per chart, never pyplot.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tradeexecutor.visual.charts import THEMES, _date_axis, _style, _to_datetime64

__all__ = ["render_in_out_of_sample", "render_walk_forward"]

_DPI = 100
_SIZE = (8.0, 5.0)
#: zlib level of the PNG: 1 instead of Pillow's 6 halves the encoding, which was a third of a chart's
#: time (and a sweep's two charts a third of its default full runs' fixed cost); the file grows ~1.3x.
_PNG_COMPRESS_LEVEL = 1


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, facecolor=figure.get_facecolor(),
                   pil_kwargs={"compress_level": _PNG_COMPRESS_LEVEL})
    return buffer.getvalue()


def render_in_out_of_sample(in_sample: Sequence[float], out_of_sample: Sequence[float], *, statistic: str,
                            chosen: tuple[float, float] | None = None, theme: str = "light") -> bytes:
    """Scatter of each point's ``statistic`` in-sample (x) against out-of-sample (y), the diagonal and the chosen point."""
    colours = THEMES[theme]
    figure = Figure(figsize=_SIZE, dpi=_DPI, facecolor=colours.background)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    _style(axes, colours)
    x = np.asarray(in_sample, dtype=np.float64)
    y = np.asarray(out_of_sample, dtype=np.float64)
    if len(x):
        axes.scatter(x, y, s=18, color=colours.equity, alpha=0.7, label="parameter sets")
        low = float(min(x.min(), y.min()))
        high = float(max(x.max(), y.max()))
        pad = (high - low) * 0.05 or 1.0
        axes.plot([low - pad, high + pad], [low - pad, high + pad], color=colours.price, linewidth=0.8,
                  linestyle="--", label="as good out-of-sample as in-sample")
    if chosen is not None:
        axes.scatter([chosen[0]], [chosen[1]], s=70, marker="*", color=colours.sell, zorder=3,
                     label="best in-sample")
    axes.set_xlabel(f"{statistic}, in-sample", color=colours.text, fontsize=9)
    axes.set_ylabel(f"{statistic}, out-of-sample", color=colours.text, fontsize=9)
    axes.set_title(f"{statistic}: in-sample against out-of-sample ({len(x)} points)", color=colours.text,
                   fontsize=11, loc="left")
    legend = axes.legend(fontsize=8, loc="best", frameon=False)
    for text in legend.get_texts():
        text.set_color(colours.text)
    figure.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.11)
    return _png(figure)


def render_walk_forward(times_ms: np.ndarray, equity: np.ndarray, *, boundaries_ms: Sequence[int],
                        reference: tuple[np.ndarray, np.ndarray] | None = None, title: str = "",
                        theme: str = "light") -> bytes:
    """The combined out-of-sample equity, fold boundaries as vertical lines, and an optional reference curve."""
    colours = THEMES[theme]
    figure = Figure(figsize=_SIZE, dpi=_DPI, facecolor=colours.background)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    _style(axes, colours)
    if reference is not None and len(reference[0]):
        axes.plot(_to_datetime64(reference[0]), reference[1], color=colours.price, linewidth=1.0,
                  label="best in-sample point, never re-chosen")
    if len(times_ms):
        axes.plot(_to_datetime64(times_ms), equity, color=colours.equity, linewidth=1.4,
                  label="walk-forward, out-of-sample")
    for boundary in boundaries_ms:
        axes.axvline(_to_datetime64(np.asarray([boundary]))[0], color=colours.grid, linewidth=1.0, linestyle=":")
    axes.set_title(title or "Combined out-of-sample equity", color=colours.text, fontsize=11, loc="left")
    _date_axis(axes, colours)
    legend = axes.legend(fontsize=8, loc="best", frameon=False)
    for text in legend.get_texts():
        text.set_color(colours.text)
    figure.subplots_adjust(left=0.12, right=0.97, top=0.92, bottom=0.1)
    return _png(figure)

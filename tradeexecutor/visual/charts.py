"""Draw a run's equity curve and its fills on price charts as PNG or SVG bytes, for the webhook and reports.

Only this package imports matplotlib, and only its object-oriented API: every chart is a
fresh :class:`matplotlib.figure.Figure` on a :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`,
never ``pyplot``, so rendering is thread-safe, needs no display and leaves no global figure
behind. Colours are set on each artist instead of through ``rcParams`` for the same reason.

Lines are downsampled to at most :data:`MAX_POINTS` points (keeping each bucket's minimum
and maximum, so peaks and crashes survive), which keeps a million-row state fast to draw.
Fill markers are thinned to one per cell of a grid as fine as the figure's pixels
(:func:`_thin_markers`): a marker dropped lies within a pixel of a kept one of the same kind,
so the image looks the same, and a strategy trading every few seconds does not make every
render draw (and every SVG carry) each of its fills since the start.

What is drawn is a :class:`~tradeexecutor.visual.series.ChartSeries` (plain arrays): built
from a State here, or kept up to date from deltas by the renderer process
(``visual/renderer.py``), which draws with :func:`render_series`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tradeexecutor.visual.series import ChartSeries, Fills

if TYPE_CHECKING:  # the renderer process draws ChartSeries and never needs pandas or the state model
    import pandas as pd

    from tradeexecutor.state import State

__all__ = ["FORMATS", "MAX_POINTS", "SIZES", "THEMES", "render_all", "render_charts", "render_formats",
           "render_series"]

#: Figure size in inches at :data:`_DPI` dots per inch: small ≈ 600x300 px, large ≈ 1200x800 px.
SIZES: dict[str, tuple[float, float]] = {"small": (6.0, 3.0), "large": (12.0, 8.0)}
#: Output formats.
FORMATS: tuple[str, ...] = ("png", "svg")
#: At most this many points are drawn per line.
MAX_POINTS = 2000
#: At most this many price panels in a large chart.
MAX_SYMBOLS = 4

_DPI = 100
#: The grid fill markers are thinned on: the largest figure's size in pixels.
_MARKER_GRID = (round(max(w for w, _ in SIZES.values()) * _DPI), round(max(h for _, h in SIZES.values()) * _DPI))


@dataclass(frozen=True, slots=True)
class _Theme:
    """Colours of one theme."""

    background: str
    panel: str
    text: str
    grid: str
    equity: str
    price: str
    buy: str
    sell: str


#: Colour themes by name.
THEMES: dict[str, _Theme] = {
    "light": _Theme(
        background="#ffffff",
        panel="#ffffff",
        text="#222222",
        grid="#dddddd",
        equity="#1f77b4",
        price="#555555",
        buy="#2ca02c",
        sell="#d62728",
    ),
    "dark": _Theme(
        background="#111418",
        panel="#171b21",
        text="#d8dce2",
        grid="#2c323b",
        equity="#4fa3ff",
        price="#a0a7b1",
        buy="#3ddc84",
        sell="#ff5c5c",
    ),
}


@dataclass(frozen=True, slots=True)
class _Panel:
    """One symbol's downsampled close prices and its executed fills."""

    symbol: str
    times: np.ndarray
    closes: np.ndarray
    buy_times: np.ndarray
    buy_prices: np.ndarray
    sell_times: np.ndarray
    sell_prices: np.ndarray


@dataclass(frozen=True, slots=True)
class _ChartData:
    """Everything the charts draw, prepared once and shared by every size, theme and format."""

    title: str
    times: np.ndarray
    equity: np.ndarray
    panels: tuple[_Panel, ...]


def render_charts(
    state: State,
    prices: dict[str, pd.Series],
    *,
    size: str = "large",
    theme: str = "light",
    fmt: str = "png",
) -> bytes:
    """Render one chart of a state as image bytes, so callers can serve or save it as is.

    ``small`` is the equity curve alone; ``large`` adds, below it, the close price of up to
    four traded symbols with executed buys (``^``) and sells (``v``) at their fill price and
    time. ``prices`` maps symbol to a close-price Series with a DatetimeIndex (UTC, or naive
    taken as UTC); a traded symbol without prices still shows its fills. A state without
    valuations gives a chart saying "no data yet". Bad ``size``, ``theme`` or ``fmt`` raise
    ValueError naming the allowed values.
    """
    _check_options(size, theme, fmt)
    return _draw(_prepare(ChartSeries.from_state(state, prices)), size, theme, (fmt,))[fmt]


def render_formats(
    state: State,
    prices: dict[str, pd.Series],
    *,
    size: str = "large",
    theme: str = "light",
    formats: tuple[str, ...] = tuple(FORMATS),
) -> dict[str, bytes]:
    """One chart encoded in several formats from a single drawing (drawing is most of the cost)."""
    for fmt in formats:
        _check_options(size, theme, fmt)
    return _draw(_prepare(ChartSeries.from_state(state, prices)), size, theme, formats)


def render_all(state: State, prices: dict[str, pd.Series]) -> dict[tuple[str, str, str], bytes]:
    """Render every (size, theme, fmt) combination, preparing the data once and drawing each figure once."""
    return render_series(ChartSeries.from_state(state, prices))


def render_series(series: ChartSeries) -> dict[tuple[str, str, str], bytes]:
    """:func:`render_all` of data already extracted from a state (what the renderer process draws)."""
    data = _prepare(series)
    images: dict[tuple[str, str, str], bytes] = {}
    for size in SIZES:
        for theme in THEMES:
            for fmt, image in _draw(data, size, theme, tuple(FORMATS)).items():
                images[(size, theme, fmt)] = image
    return images


def _check_options(size: str, theme: str, fmt: str) -> None:
    """Raise ValueError naming the allowed values of the first bad option."""
    for name, value, allowed in (
        ("size", size, tuple(SIZES)),
        ("theme", theme, tuple(THEMES)),
        ("fmt", fmt, FORMATS),
    ):
        if value not in allowed:
            raise ValueError(f"invalid {name} {value!r}: use one of {', '.join(allowed)}")


# ---------------------------------------------------------------------------------------------
# Data preparation


def _prepare(series: ChartSeries) -> _ChartData:
    """Downsample the equity curve and collect up to MAX_SYMBOLS price panels with their fills."""
    stamps, equity = _downsample(series.stamps, series.equity, MAX_POINTS)
    span = (int(stamps[0]), int(stamps[-1])) if len(stamps) else None
    panels = []
    for instrument_id in sorted(series.fills)[:MAX_SYMBOLS]:
        fills = series.fills[instrument_id]
        panels.append(_panel(fills.symbol, series.prices.get(fills.symbol), fills, span))
    return _ChartData(
        title=f"{series.title} equity" if series.title else "Equity",
        times=_to_datetime64(stamps),
        equity=equity,
        panels=tuple(panels),
    )


def _panel(
    symbol: str,
    prices: tuple[np.ndarray, np.ndarray] | None,
    fills: Fills,
    span: tuple[int, int] | None,
) -> _Panel:
    """One symbol's closes inside the valuation span, downsampled, and its buy and sell fills, thinned."""
    if prices is not None and len(prices[0]):
        stamps, closes = prices
        keep = np.isfinite(closes)
        if span is not None:
            keep &= (stamps >= span[0]) & (stamps <= span[1])
        stamps, closes = _downsample(stamps[keep], closes[keep], MAX_POINTS)
    else:
        stamps, closes = np.empty(0, np.int64), np.empty(0, np.float64)
    # The grid spans what the panel shows: its closes, its fills and (shared x axis) the equity's span.
    xs = [fills.times, stamps] + ([np.array(span, dtype=np.int64)] if span is not None else [])
    x_all = np.concatenate(xs)
    y_all = np.concatenate([fills.prices, closes])
    y_all = y_all[np.isfinite(y_all)]
    x_range = (float(x_all.min()), float(x_all.max())) if len(x_all) else (0.0, 0.0)
    y_range = (float(y_all.min()), float(y_all.max())) if len(y_all) else (0.0, 0.0)
    buy_times, buy_prices = _thin_markers(fills.times[fills.buys], fills.prices[fills.buys], x_range, y_range)
    sell_times, sell_prices = _thin_markers(fills.times[~fills.buys], fills.prices[~fills.buys], x_range, y_range)
    return _Panel(
        symbol=symbol,
        times=_to_datetime64(stamps),
        closes=closes,
        buy_times=_to_datetime64(buy_times),
        buy_prices=buy_prices,
        sell_times=_to_datetime64(sell_times),
        sell_prices=sell_prices,
    )


def _thin_markers(x: np.ndarray, y: np.ndarray, x_range: tuple[float, float],
                  y_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The first marker in each cell of a grid of the largest figure's pixels laid over ``x_range`` by ``y_range``.

    A panel is smaller than the figure, so a cell is at most a pixel wide and tall: every marker
    dropped lies within a pixel of a kept one of the same kind, drawn over it. The kept markers
    are at most the grid's cells (in practice, the cells the price path crosses), however many
    fills the history holds.
    """
    if len(x) <= 1:
        return x, y
    columns, rows = _MARKER_GRID
    width = (x_range[1] - x_range[0]) or 1.0
    height = (y_range[1] - y_range[0]) or 1.0
    column = np.clip(((x - x_range[0]) * (columns / width)).astype(np.int64), 0, columns - 1)
    row = np.clip(np.nan_to_num((y - y_range[0]) * (rows / height)).astype(np.int64), 0, rows - 1)
    _, first = np.unique(column * rows + row, return_index=True)
    if len(first) == len(x):
        return x, y
    first.sort()
    return x[first], y[first]


def _downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points: each bucket's minimum and maximum, plus the first and last.

    Min/max per bucket rather than every n-th point, so drawdowns and spikes stay visible.
    """
    n = len(y)
    if n <= max_points:
        return x, y
    buckets = max(1, (max_points - 2) // 2)
    width = math.ceil(n / buckets)
    full = n // width * width
    blocks = y[:full].reshape(-1, width)
    offsets = np.arange(blocks.shape[0]) * width
    parts = [
        np.array([0, n - 1]),
        offsets + np.nanargmin(blocks, axis=1),
        offsets + np.nanargmax(blocks, axis=1),
    ]
    if full < n:
        tail = y[full:]
        parts.append(np.array([full + int(np.nanargmin(tail)), full + int(np.nanargmax(tail))]))
    index = np.unique(np.concatenate(parts))
    return x[index], y[index]


# ---------------------------------------------------------------------------------------------
# Drawing


def _draw(data: _ChartData, size: str, theme_name: str, formats: tuple[str, ...]) -> dict[str, bytes]:
    """Draw prepared data into a new Agg figure once and encode it in each of ``formats``."""
    for fmt in formats:
        _check_options(size, theme_name, fmt)
    theme = THEMES[theme_name]
    figure = Figure(figsize=SIZES[size], dpi=_DPI, facecolor=theme.background)
    FigureCanvasAgg(figure)

    panels = data.panels if size == "large" and len(data.times) else ()
    heights = [2.0] + [1.0] * len(panels)
    grid = figure.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.35)
    equity_axes = figure.add_subplot(grid[0])
    _style(equity_axes, theme)

    if len(data.times) == 0:
        equity_axes.set_xticks([])
        equity_axes.set_yticks([])
        equity_axes.text(
            0.5, 0.5, "no data yet", transform=equity_axes.transAxes,
            ha="center", va="center", fontsize=14, color=theme.text,
        )
        equity_axes.set_title(data.title, color=theme.text, fontsize=11, loc="left")
    else:
        equity_axes.plot(data.times, data.equity, color=theme.equity, linewidth=1.2)
        equity_axes.set_title(data.title, color=theme.text, fontsize=11, loc="left")
        _date_axis(equity_axes, theme)
        for i, panel in enumerate(panels):
            axes = figure.add_subplot(grid[i + 1], sharex=equity_axes)
            _style(axes, theme)
            _draw_panel(axes, panel, theme)
            _date_axis(axes, theme)

    if size == "large":
        figure.subplots_adjust(left=0.09, right=0.98, top=0.95, bottom=0.05)
    else:
        figure.subplots_adjust(left=0.14, right=0.97, top=0.88, bottom=0.12)
    images: dict[str, bytes] = {}
    for fmt in formats:
        buffer = io.BytesIO()
        metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
        figure.savefig(buffer, format=fmt, dpi=_DPI, facecolor=theme.background, metadata=metadata)
        images[fmt] = buffer.getvalue()
    return images


def _draw_panel(axes: Axes, panel: _Panel, theme: _Theme) -> None:
    """Close prices with buy (^) and sell (v) markers at their fills."""
    if len(panel.times):
        axes.plot(panel.times, panel.closes, color=theme.price, linewidth=0.9)
    if len(panel.buy_times):
        axes.scatter(panel.buy_times, panel.buy_prices, marker="^", s=36, color=theme.buy,
                     zorder=3, label="buy")
    if len(panel.sell_times):
        axes.scatter(panel.sell_times, panel.sell_prices, marker="v", s=36, color=theme.sell,
                     zorder=3, label="sell")
    axes.set_title(panel.symbol, color=theme.text, fontsize=9, loc="left")


def _style(axes: Axes, theme: _Theme) -> None:
    """Apply a theme's colours to one axes, without touching global rcParams."""
    axes.set_facecolor(theme.panel)
    for spine in axes.spines.values():
        spine.set_color(theme.grid)
    axes.tick_params(colors=theme.text, labelsize=8)
    axes.grid(True, color=theme.grid, linewidth=0.6)
    axes.set_axisbelow(True)
    # Plain numbers with thousands separators: no "1e6" offset text colliding with the title.
    axes.yaxis.set_major_formatter(FuncFormatter(_number))


def _date_axis(axes: Axes, theme: _Theme) -> None:
    """Readable, compact date ticks."""
    # minticks 3 (not 5): with 5, spans of about 49-60 months fit no monthly interval under 8 ticks and
    # AutoDateLocator warns and falls back; with 3 every span has an interval between 3 and 8 ticks.
    locator = AutoDateLocator(minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.xaxis.get_offset_text().set_color(theme.text)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _number(value: float, _position: int | None = None) -> str:
    """A y tick label: thousands separators, and decimals only where the scale needs them."""
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude == 0:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:,.1f}".rstrip("0").rstrip(".")
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _to_datetime64(ms: np.ndarray) -> np.ndarray:
    """Epoch milliseconds as numpy datetime64[ms], which matplotlib plots as dates."""
    return np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")

"""Draw a run's equity curve and its fills on price charts as PNG or SVG bytes, for the webhook and reports.

Only this package imports matplotlib, and only its object-oriented API: every chart is a
fresh :class:`matplotlib.figure.Figure` on a :class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`,
never ``pyplot``, so rendering is thread-safe, needs no display and leaves no global figure
behind. Colours are set on each artist instead of through ``rcParams`` for the same reason.

Lines are downsampled to at most :data:`MAX_POINTS` points (keeping each bucket's minimum
and maximum, so peaks and crashes survive), which keeps a million-row state fast to draw.
Fill markers are thinned to the marker's own size (:func:`_thin_markers`): a panel's fills are
binned, buys and sells apart, into cells half a marker wide and tall in the panel's pixels
(:func:`_panel_pixels`), and each occupied cell gets one marker, at its first fill, which overlaps
by at least half where every other fill of the cell would have been drawn. So a strategy trading every few seconds
for weeks draws (and its SVG carries) at most a marker per cell, not each fill since the start. A
marker that stands for several fills says so in the SVG: a ``<title>`` (the browser's tooltip)
with their count, time span and price range. Few fills, none sharing a cell, draw as they always
did.

What is drawn is a :class:`~tradeexecutor.visual.series.ChartSeries` (plain arrays): built
from a State here, or kept up to date from deltas by the renderer process
(``visual/renderer.py``), which draws with :func:`render_series`.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
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
#: A fill marker's area in points² (scatter's ``s``): its triangle is ``sqrt(s)`` points wide and tall.
_MARKER_AREA = 36.0
#: Fills are binned into square cells this many pixels wide: half a marker (6 pt at 100 dpi is 8.3 px).
MARKER_CELL_PIXELS = math.sqrt(_MARKER_AREA) / 72 * _DPI / 2
#: The large figure's layout (its price panels are where fills are drawn): margins as figure fractions,
#: the space between panels as a fraction of their mean height, the equity panel twice a price panel's height.
_LARGE_MARGINS = {"left": 0.09, "right": 0.98, "top": 0.95, "bottom": 0.05}
_SMALL_MARGINS = {"left": 0.14, "right": 0.97, "top": 0.88, "bottom": 0.12}
_HSPACE = 0.35


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
class _Markers:
    """One side's (buys' or sells') markers on a panel, each standing for the fills of one cell.

    A marker is drawn at its cell's first fill; ``counts`` says how many fills it stands for, and
    ``earliest``/``latest`` (epoch ms) and ``low``/``high`` the span of their times and prices.
    """

    times: np.ndarray  # datetime64[ms], what matplotlib plots as dates
    prices: np.ndarray
    counts: np.ndarray
    earliest: np.ndarray
    latest: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def each(cls, times_ms: np.ndarray, prices: np.ndarray) -> _Markers:
        """A marker for each fill (nothing shares a cell, or thinning is off)."""
        return cls(_to_datetime64(times_ms), prices, np.ones(len(times_ms), dtype=np.int64), times_ms, times_ms,
                   prices, prices)

    @property
    def merged(self) -> bool:
        """Whether some marker stands for more than one fill."""
        return bool(len(self.counts)) and int(self.counts.max()) > 1


@dataclass(frozen=True, slots=True)
class _Panel:
    """One symbol's downsampled close prices and its executed fills."""

    symbol: str
    times: np.ndarray
    closes: np.ndarray
    buys: _Markers
    sells: _Markers


@dataclass(frozen=True, slots=True)
class _PanelPixels:
    """Where a price panel's data lands in the large figure's pixels, which fill markers are thinned on."""

    width: float
    height: float
    #: The data at the panel's left and bottom edges (epoch ms; price), and pixels per ms and per unit of price.
    x_low: float
    x_scale: float
    y_low: float
    y_scale: float


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


def render_series(series: ChartSeries, *, thin_markers: bool = True) -> dict[tuple[str, str, str], bytes]:
    """:func:`render_all` of data already extracted from a state (what the renderer process draws).

    ``thin_markers=False`` draws a marker for every fill: only for measuring what thinning saves
    (``bench/bench_markers.py``) and for tests that compare against it.
    """
    data = _prepare(series, thin_markers=thin_markers)
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


def _prepare(series: ChartSeries, *, thin_markers: bool = True) -> _ChartData:
    """Downsample the equity curve and collect up to MAX_SYMBOLS price panels with their fills, thinned."""
    stamps, equity = _downsample(series.stamps, series.equity, MAX_POINTS)
    span = (int(stamps[0]), int(stamps[-1])) if len(stamps) else None
    shown: list[tuple[Fills, np.ndarray, np.ndarray]] = []
    for instrument_id in sorted(series.fills)[:MAX_SYMBOLS]:
        fills = series.fills[instrument_id]
        finite = np.isfinite(fills.prices)  # a fill without a price cannot be drawn
        if not finite.all():
            fills = Fills(fills.symbol, fills.times[finite], fills.prices[finite], fills.buys[finite])
        shown.append((fills, *_closes(series.prices.get(fills.symbol), span)))
    # The panels share the equity's x axis, so its limits span what every panel and the equity show.
    x_all = np.concatenate([stamps] + [part for fills, times, _ in shown for part in (fills.times, times)])
    x_data = (float(x_all.min()), float(x_all.max())) if len(x_all) else (0.0, 0.0)
    panels = []
    for (fills, times, closes), (width, height) in zip(shown, _panel_boxes(len(shown)), strict=True):
        y_all = np.concatenate([fills.prices, closes])
        y_data = (float(y_all.min()), float(y_all.max())) if len(y_all) else (0.0, 0.0)
        pixels = _panel_pixels(width, height, x_data, y_data) if thin_markers else None
        buys = fills.buys
        panels.append(_Panel(
            symbol=fills.symbol,
            times=_to_datetime64(times),
            closes=closes,
            buys=_thin_markers(fills.times[buys], fills.prices[buys], pixels),
            sells=_thin_markers(fills.times[~buys], fills.prices[~buys], pixels),
        ))
    return _ChartData(
        title=f"{series.title} equity" if series.title else "Equity",
        times=_to_datetime64(stamps),
        equity=equity,
        panels=tuple(panels),
    )


def _closes(prices: tuple[np.ndarray, np.ndarray] | None,
            span: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """One symbol's finite closes inside the valuation span, downsampled: times (epoch ms) and closes."""
    if prices is None or not len(prices[0]):
        return np.empty(0, np.int64), np.empty(0, np.float64)
    stamps, closes = prices
    keep = np.isfinite(closes)
    if span is not None:
        keep &= (stamps >= span[0]) & (stamps <= span[1])
    return _downsample(stamps[keep], closes[keep], MAX_POINTS)


def _panel_boxes(count: int) -> list[tuple[float, float]]:
    """The width and height in pixels of each of ``count`` price panels of the large figure (as :func:`_draw` lays
    them out: the same grid, asked of matplotlib without drawing)."""
    if not count:
        return []
    width, height = (inches * _DPI for inches in SIZES["large"])
    margins = _LARGE_MARGINS
    grid = GridSpec(count + 1, 1, height_ratios=_height_ratios(count), hspace=_HSPACE, left=margins["left"],
                    right=margins["right"], top=margins["top"], bottom=margins["bottom"])
    bottoms, tops, lefts, rights = grid.get_grid_positions(None)  # type: ignore[arg-type]  # None: no figure
    return [(float(rights[0] - lefts[0]) * width, float(tops[i] - bottoms[i]) * height) for i in range(1, count + 1)]


def _panel_pixels(width: float, height: float, x_data: tuple[float, float],
                  y_data: tuple[float, float]) -> _PanelPixels:
    """The data-to-pixel scale of a panel ``width`` x ``height`` pixels showing ``x_data`` by ``y_data``.

    Autoscaling (matplotlib's default, which the charts keep) sets an axis's limits to the data's
    range widened by ``axes.xmargin``/``axes.ymargin`` of it on each side. A range of zero gets a scale
    of a pixel per unit: every fill then has the same coordinate, so the scale does not matter.
    """
    def axis(low: float, high: float, pixels: float, margin: float) -> tuple[float, float]:
        spread = high - low
        if spread <= 0:
            return low, 1.0
        return low - margin * spread, pixels / (spread * (1 + 2 * margin))

    x_low, x_scale = axis(*x_data, width, float(rcParams["axes.xmargin"]))
    y_low, y_scale = axis(*y_data, height, float(rcParams["axes.ymargin"]))
    return _PanelPixels(width, height, x_low, x_scale, y_low, y_scale)


def _thin_markers(times: np.ndarray, prices: np.ndarray, pixels: _PanelPixels | None,
                  cell: float = MARKER_CELL_PIXELS) -> _Markers:
    """One marker per occupied cell of ``cell`` pixels (half a marker) laid over the panel, at the cell's first fill.

    Every fill of a cell lies within half a marker of the cell's first fill on each axis, so the
    marker drawn there covers (at least half of) each marker it replaces: nothing a reader can see
    at that size is lost. The markers are at most the panel's cells (in practice the cells the price
    path crosses: a few hundred on a 1068 x 200 pixel panel), however many fills there are. They keep
    the fills' order, as drawing did. ``pixels=None`` (thinning off) gives a marker per fill.
    """
    if pixels is None or len(times) <= 1:
        return _Markers.each(times, prices)
    columns = max(1, math.ceil(pixels.width / cell))
    rows = max(1, math.ceil(pixels.height / cell))
    column = np.clip(np.floor((times - pixels.x_low) * (pixels.x_scale / cell)), 0, columns - 1).astype(np.int64)
    row = np.clip(np.floor((prices - pixels.y_low) * (pixels.y_scale / cell)), 0, rows - 1).astype(np.int64)
    key = column * rows + row
    order = np.argsort(key, kind="stable")  # stable: each cell's fills in their own order, its first one first
    ordered = key[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    if len(starts) == len(times):
        return _Markers.each(times, prices)
    first = order[starts]
    counts = np.diff(np.append(starts, len(times)))
    by_cell_times, by_cell_prices = times[order], prices[order]
    drawn = np.argsort(first)  # the fills' order
    first = first[drawn]
    return _Markers(
        times=_to_datetime64(times[first]),
        prices=prices[first],
        counts=counts[drawn],
        earliest=np.minimum.reduceat(by_cell_times, starts)[drawn],
        latest=np.maximum.reduceat(by_cell_times, starts)[drawn],
        low=np.minimum.reduceat(by_cell_prices, starts)[drawn],
        high=np.maximum.reduceat(by_cell_prices, starts)[drawn],
    )


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
    figure, titles = _figure(data, size, theme)
    images: dict[str, bytes] = {}
    for fmt in formats:
        buffer = io.BytesIO()
        metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {}
        figure.savefig(buffer, format=fmt, dpi=_DPI, facecolor=theme.background, metadata=metadata)
        images[fmt] = _with_titles(buffer.getvalue(), titles) if fmt == "svg" and titles else buffer.getvalue()
    return images


def _figure(data: _ChartData, size: str, theme: _Theme) -> tuple[Figure, dict[str, list[str | None]]]:
    """The chart as a figure, and the tooltips of its fill markers that stand for several fills.

    The tooltips map a marker collection's SVG group id to a title per marker (None: a single fill).
    """
    figure = Figure(figsize=SIZES[size], dpi=_DPI, facecolor=theme.background)
    FigureCanvasAgg(figure)

    panels = data.panels if size == "large" and len(data.times) else ()
    grid = figure.add_gridspec(len(panels) + 1, 1, height_ratios=_height_ratios(len(panels)), hspace=_HSPACE)
    equity_axes = figure.add_subplot(grid[0])
    _style(equity_axes, theme)

    titles: dict[str, list[str | None]] = {}
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
            titles.update(_draw_panel(axes, panel, theme, f"fills-{i + 1}"))
            _date_axis(axes, theme)

    figure.subplots_adjust(**(_LARGE_MARGINS if size == "large" else _SMALL_MARGINS))
    return figure, titles


def _height_ratios(panels: int) -> list[float]:
    """The equity panel twice as tall as each of ``panels`` price panels below it."""
    return [2.0] + [1.0] * panels


def _draw_panel(axes: Axes, panel: _Panel, theme: _Theme, gid: str) -> dict[str, list[str | None]]:
    """Close prices with buy (^) and sell (v) markers at their fills; the tooltips of markers standing for several.

    Only a side with such a marker gets an SVG group id (``gid``-buy, ``gid``-sell), so a chart
    whose markers are each one fill is drawn exactly as before thinning.
    """
    if len(panel.times):
        axes.plot(panel.times, panel.closes, color=theme.price, linewidth=0.9)
    titles: dict[str, list[str | None]] = {}
    for markers, shape, colour, side in ((panel.buys, "^", theme.buy, "buy"), (panel.sells, "v", theme.sell, "sell")):
        if not len(markers.times):
            continue
        collection = axes.scatter(markers.times, markers.prices, marker=shape, s=_MARKER_AREA, color=colour,
                                  zorder=3, label=side)
        if markers.merged:
            collection.set_gid(f"{gid}-{side}")
            titles[f"{gid}-{side}"] = _marker_titles(markers, side)
    axes.set_title(panel.symbol, color=theme.text, fontsize=9, loc="left")
    return titles


def _marker_titles(markers: _Markers, side: str) -> list[str | None]:
    """What each marker stands for, where that is several fills: count, time span and price range (all of them)."""
    titles: list[str | None] = []
    for count, earliest, latest, low, high in zip(markers.counts.tolist(), markers.earliest.tolist(),
                                                  markers.latest.tolist(), markers.low.tolist(),
                                                  markers.high.tolist(), strict=True):
        if count == 1:
            titles.append(None)
            continue
        price = _price(low) if low == high else f"{_price(low)} to {_price(high)}"
        titles.append(f"{count:,} {side}s, {_span(earliest, latest)} UTC, at {price}")
    return titles


#: A marker collection's group in matplotlib's SVG: ``<g id="GID">``, its marker shape in ``<defs>`` (once a
#: document), then one ``<use .../>`` per marker (or a ``<path .../>``, if drawn path by path).
_SVG_GROUP = re.compile(r'<g id="(?P<gid>[^"]+)">')
_SVG_DEFS = re.compile(r"<defs>.*?</defs>", re.DOTALL)
_SVG_MARKER = re.compile(r"<(?P<tag>use|path)\b[^>]*?/>", re.DOTALL)


def _with_titles(svg: bytes, titles: dict[str, list[str | None]]) -> bytes:
    """``svg`` with each titled marker given a ``<title>`` child, which browsers show as its tooltip.

    A collection whose markers cannot be matched one for one (a matplotlib that writes them some other
    way) keeps its markers untitled: a tooltip on the wrong marker would be worse than none.
    """
    text = svg.decode()
    groups = list(_SVG_GROUP.finditer(text))
    pieces: list[str] = []
    done = 0
    for at, group in enumerate(groups):
        labels = titles.get(group["gid"])
        if labels is None:
            continue
        end = groups[at + 1].start() if at + 1 < len(groups) else len(text)
        body = _SVG_DEFS.sub(lambda match: " " * len(match.group()), text[group.end():end])  # same offsets
        markers = list(_SVG_MARKER.finditer(body))
        if len(markers) != len(labels):
            continue
        for marker, label in zip(markers, labels, strict=True):
            if label is None:
                continue
            close = group.end() + marker.end() - 2  # the "/>" that ends the element
            pieces.append(text[done:close])
            pieces.append(f"><title>{escape(label)}</title></{marker['tag']}>")
            done = close + 2
    pieces.append(text[done:])
    return "".join(pieces).encode()


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


def _price(value: float) -> str:
    """A fill price in a tooltip: eight significant digits (every digit before the point, if more), no exponent."""
    whole = len(str(int(abs(value)))) if math.isfinite(value) else 0
    return str(np.format_float_positional(value, precision=max(8, whole), fractional=False, trim="-"))


def _span(earliest: int, latest: int) -> str:
    """Two epoch-millisecond times as a UTC span to the second, the second's date only if it is another day."""
    start, end = (datetime.fromtimestamp(ms / 1000, UTC) for ms in (earliest, latest))
    first = start.strftime("%Y-%m-%d %H:%M:%S")
    if end.replace(microsecond=0) == start.replace(microsecond=0):
        return first
    return f"{first} to {end.strftime('%H:%M:%S' if end.date() == start.date() else '%Y-%m-%d %H:%M:%S')}"


def _to_datetime64(ms: np.ndarray) -> np.ndarray:
    """Epoch milliseconds as numpy datetime64[ms], which matplotlib plots as dates."""
    return np.asarray(ms, dtype=np.int64).astype("datetime64[ms]")

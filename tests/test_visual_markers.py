"""Fill markers on the price panel are thinned to the marker's own size, and say what they stand for.

A panel's fills are binned, buys and sells apart, into cells half a marker wide and tall in the
panel's pixels; each occupied cell is one marker (at its first fill), and in the SVG a marker that
stands for several fills carries a ``<title>`` with their count, time span and price range. These
tests go through the real rendering path (``render_series``, what the renderer process calls, and
the SVG it writes) and check the geometry thinning assumes against matplotlib's own drawn axes.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.dates import date2num

from state_builders import make_order
from tradeexecutor.state import Position, State
from tradeexecutor.visual import render_charts
from tradeexecutor.visual.charts import (
    MARKER_CELL_PIXELS,
    _figure,
    _Markers,
    _panel_boxes,
    _panel_pixels,
    _PanelPixels,
    _prepare,
    _price,
    _with_titles,
    render_series,
)
from tradeexecutor.visual.charts import THEMES as CHART_THEMES
from tradeexecutor.visual.series import ChartSeries, Fills

T0 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC, epoch ms
DAY = 86_400_000
SVG = "{http://www.w3.org/2000/svg}"


def month_series(fills: Fills, days: int = 30) -> ChartSeries:
    """A month of hourly valuations and closes (a gentle ramp from 1.0 to 2.0), with ``fills``."""
    stamps = T0 + np.arange(days * 24, dtype=np.int64) * 3_600_000
    closes = np.linspace(1.0, 2.0, len(stamps))
    return ChartSeries("markers", stamps, closes * 10_000, {1: fills}, {fills.symbol: (stamps, closes)})


def fills_of(times: list[int] | np.ndarray, prices: list[float] | np.ndarray,
             buys: list[bool] | np.ndarray) -> Fills:
    return Fills("EURUSD", np.asarray(times, dtype=np.int64), np.asarray(prices, dtype=np.float64),
                 np.asarray(buys, dtype=bool))


def svg_titles(svg: bytes) -> list[str]:
    """The text of every ``<title>`` in an SVG (matplotlib writes none of its own)."""
    return [title.text or "" for title in ET.fromstring(svg).iter(f"{SVG}title")]


def markers_drawn(svg: bytes) -> int:
    """The fill markers in an SVG: the ``<use>`` elements of its scatter groups (ticks and glyphs use ``<use>`` too)."""
    groups = [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("id", "").startswith(("PathCollection", "fills-"))]
    return sum(1 for g in groups for _ in g.iter(f"{SVG}use"))


def pixels_of(series: ChartSeries) -> _PanelPixels:
    """The geometry thinning uses for the one panel of ``series``, computed as ``_prepare`` does."""
    fills = next(iter(series.fills.values()))
    stamps, closes = series.prices[fills.symbol]
    x = np.concatenate([series.stamps, stamps, fills.times])
    y = np.concatenate([closes, fills.prices])
    ((width, height),) = _panel_boxes(1)
    return _panel_pixels(width, height, (float(x.min()), float(x.max())), (float(y.min()), float(y.max())))


def test_many_fills_in_one_cell_are_one_marker_with_their_count() -> None:
    # 50 buys in 49 seconds within a hundredth of a cent: on a month-wide panel, far inside one cell.
    times = T0 + 10 * DAY + np.arange(50, dtype=np.int64) * 1000
    prices = 1.3 + np.arange(50) * 2e-6
    series = month_series(fills_of(times, prices, [True] * 50))
    buys = _prepare(series).panels[0].buys
    assert buys.counts.tolist() == [50]
    assert buys.times.astype(np.int64).tolist() == [times[0]]  # drawn at the cell's first fill
    assert (buys.earliest.tolist(), buys.latest.tolist()) == ([times[0]], [times[-1]])
    assert (buys.low.tolist(), buys.high.tolist()) == ([prices[0]], [prices[-1]])
    svg = render_series(series)[("large", "light", "svg")]
    assert svg_titles(svg) == ["50 buys, 2026-01-11 00:00:00 to 00:00:49 UTC, at 1.3 to 1.300098"]
    # The title is the marker's own child, so hovering over that marker shows it.
    assert re.search(rb'<use xlink:href="#m[0-9a-f]+" x="[0-9.]+" y="[0-9.]+" style="[^"]+"><title>50 buys', svg)


def test_fills_in_different_cells_stay_apart() -> None:
    series = month_series(fills_of([T0], [1.5], [True]))
    pixels = pixels_of(series)
    # A marker's width (two cells) apart in time, or in price, or not at all: three markers.
    step_x = math.ceil(2 * MARKER_CELL_PIXELS / pixels.x_scale)  # ms
    step_y = 2 * MARKER_CELL_PIXELS / pixels.y_scale
    at, price = T0 + 10 * DAY, 1.5
    times = [at, at, at + step_x, at + step_x, at, at]
    prices = [price, price, price, price, price + step_y, price + step_y]
    series = month_series(fills_of(times, prices, [True] * 6))
    assert pixels_of(series) == pixels
    buys = _prepare(series).panels[0].buys
    assert buys.counts.tolist() == [2, 2, 2]
    assert buys.prices.tolist() == [price, price, price + step_y]
    svg = render_series(series)[("large", "dark", "svg")]
    assert len(svg_titles(svg)) == 3 and all(title.startswith("2 buys, ") for title in svg_titles(svg))


def test_buys_and_sells_never_merge() -> None:
    at = T0 + 5 * DAY
    series = month_series(fills_of([at, at + 1000, at, at + 2000, at + 3000], [1.2] * 5,
                                   [True, True, False, False, False]))
    panel = _prepare(series).panels[0]
    assert panel.buys.counts.tolist() == [2] and panel.sells.counts.tolist() == [3]
    assert sorted(svg_titles(render_series(series)[("large", "light", "svg")])) == [
        "2 buys, 2026-01-06 00:00:00 to 00:00:01 UTC, at 1.2",
        "3 sells, 2026-01-06 00:00:00 to 00:00:03 UTC, at 1.2",
    ]


def test_a_small_run_draws_exactly_as_it_did() -> None:
    # Twenty fills a day and more apart: none shares a cell, so thinning changes nothing, byte for byte.
    times = T0 + np.arange(20, dtype=np.int64) * (DAY + 3_600_000)
    prices = np.linspace(1.05, 1.95, 20)
    series = month_series(fills_of(times, prices, np.arange(20) % 2 == 0))
    panel = _prepare(series).panels[0]
    assert panel.buys.counts.tolist() == [1] * 10 and panel.sells.counts.tolist() == [1] * 10
    with matplotlib.rc_context({"svg.hashsalt": "markers"}):  # SVG ids are random otherwise
        thinned = render_series(series)
        every = render_series(series, thin_markers=False)
    assert thinned.keys() == every.keys() and len(thinned) == 8
    for key, image in thinned.items():
        assert image == every[key], key
    svg = thinned[("large", "light", "svg")]
    assert svg_titles(svg) == [] and b'id="fills-' not in svg
    assert markers_drawn(svg) == 20


def test_markers_are_bounded_by_the_panels_cells_however_many_fills() -> None:
    # 100k fills over four weeks on a random walk that crosses the whole panel.
    rng = np.random.default_rng(3)
    seconds = 28 * 86_400
    stamps = T0 + np.arange(0, seconds, 60, dtype=np.int64) * 1000
    closes = 1.1 + np.cumsum(rng.normal(0, 4e-4, len(stamps)))
    picked = np.sort(rng.integers(0, len(stamps), 100_000))
    fills = fills_of(stamps[picked] + rng.integers(0, 60_000, len(picked)), closes[picked],
                     rng.random(len(picked)) < 0.5)
    series = ChartSeries("many", stamps, 10_000 + np.cumsum(rng.normal(size=len(stamps))), {1: fills},
                         {"EURUSD": (stamps, closes)})
    pixels = pixels_of(series)
    columns = math.ceil(pixels.width / MARKER_CELL_PIXELS)
    rows = math.ceil(pixels.height / MARKER_CELL_PIXELS)
    panel = _prepare(series).panels[0]
    for markers, side in ((panel.buys, fills.buys), (panel.sells, ~fills.buys)):
        assert len(markers.counts) <= columns * rows
        assert len(markers.counts) < 3_000  # the cells the price path crosses, not 50k
        assert int(markers.counts.sum()) == int(side.sum())  # every fill is counted by one marker
        # Each marker is in the cell of every fill it stands for: its time and price span lie in its cell.
        assert np.all((markers.latest - markers.earliest) * pixels.x_scale < MARKER_CELL_PIXELS)
        assert np.all((markers.high - markers.low) * pixels.y_scale < MARKER_CELL_PIXELS)
    svg = render_series(series)[("large", "light", "svg")]
    drawn = len(panel.buys.counts) + len(panel.sells.counts)
    assert markers_drawn(svg) == drawn
    assert len(svg_titles(svg)) == int(np.sum(panel.buys.counts > 1) + np.sum(panel.sells.counts > 1))
    assert len(svg) < 1_000_000, len(svg)


@pytest.mark.parametrize("symbols", [1, 4])
def test_the_geometry_thinning_uses_is_the_drawn_panels(symbols: int) -> None:
    stamps = T0 + np.arange(24 * 30, dtype=np.int64) * 3_600_000
    fills_by_id = {}
    prices = {}
    for k in range(symbols):
        closes = (k + 1) * np.linspace(1.0, 2.0, len(stamps))
        prices[f"S{k}"] = (stamps, closes)
        at = np.array([10, 400], dtype=np.int64)
        # One fill before the first valuation and one above every close: they widen the axes.
        fills_by_id[k + 1] = Fills(f"S{k}", np.append(stamps[at], T0 - 2 * DAY),
                                   np.append(closes[at], 2.5 * (k + 1)), np.array([True, False, True]))
    series = ChartSeries("geometry", stamps, np.linspace(1, 2, len(stamps)), fills_by_id, prices)
    data = _prepare(series)
    figure, _ = _figure(data, "large", CHART_THEMES["light"])
    figure.canvas.draw()
    axes = figure.axes[1:]
    assert len(axes) == symbols
    x = np.concatenate([stamps, *(f.times for f in fills_by_id.values())])
    for k, (panel_axes, (width, height)) in enumerate(zip(axes, _panel_boxes(symbols), strict=True)):
        box = panel_axes.get_window_extent()
        assert (box.width, box.height) == pytest.approx((width, height), abs=0.01)
        closes = prices[f"S{k}"][1]
        y = np.concatenate([closes, fills_by_id[k + 1].prices])
        pixels = _panel_pixels(width, height, (float(x.min()), float(x.max())), (float(y.min()), float(y.max())))
        # Where matplotlib puts two data points, against where the geometry says they go.
        corners = np.array([[date2num(np.datetime64(int(pixels.x_low), "ms")), pixels.y_low],
                            [date2num(np.datetime64(int(x.max()), "ms")), float(y.max())]])
        drawn = panel_axes.transData.transform(corners) - [box.x0, box.y0]
        expected = [[0, 0], [(x.max() - pixels.x_low) * pixels.x_scale, (y.max() - pixels.y_low) * pixels.y_scale]]
        assert drawn == pytest.approx(np.array(expected), abs=0.05)


def test_titles_go_only_where_markers_match_one_for_one() -> None:
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
           b'<g id="fills-1-buy"><defs><path id="ma" d="M 0 0"/></defs><g>'
           b'<use xlink:href="#ma" x="1" y="1"/><use xlink:href="#ma" x="2" y="2"/></g></g>'
           b'<g id="text_1"><path d="M 1 1"/></g></svg>')
    titled = _with_titles(svg, {"fills-1-buy": ["2 buys & more", None]})
    assert titled == svg.replace(b'y="1"/>', b'y="1"><title>2 buys &amp; more</title></use>')
    assert svg_titles(titled) == ["2 buys & more"]
    # One label too many: no title at all rather than one on the wrong marker.
    assert _with_titles(svg, {"fills-1-buy": ["a", None, "b"]}) == svg


def test_a_fill_without_a_price_is_not_drawn_or_counted() -> None:
    at = T0 + 3 * DAY
    series = month_series(fills_of([at, at + 1000, at + 2000], [1.1, float("nan"), 1.1], [True] * 3))
    buys = _prepare(series).panels[0].buys
    assert isinstance(buys, _Markers) and buys.counts.tolist() == [2]


def test_a_state_with_bursts_of_fills_draws_titled_markers() -> None:
    # Through a State, as the webhook's /visualisation and a run's charts/ and report.html (the SVG inline) get
    # it: a position opened, then increased 20 times within 20 seconds at prices a tenth of a cent apart.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    state = State(name="bursts", initial_cash=10_000.0)
    index = pd.date_range(start, periods=30, freq="D", tz="UTC")
    state.valuations.extend(list(index.as_unit("ms").asi8), [10_000.0] * 30, [10_000.0] * 30, [0.5] * 30)
    instrument = state.add_instrument("GOOG", "equity", 1.0)
    closes = pd.Series(np.linspace(100.0, 110.0, 30), index=index)
    position = Position(id=1, instrument_id=instrument.id, opened_at=start)
    at = start + timedelta(days=10, hours=12)
    for k in range(21):
        position.orders.append(make_order(k + 1, 1, instrument.id, "open" if k == 0 else "increase",
                                          at + timedelta(seconds=k), quantity=1.0, fill_price=105.0 + k * 0.001))
    position.orders.append(make_order(22, 1, instrument.id, "close", at + timedelta(days=5), quantity=21.0,
                                      fill_price=107.0))
    state.portfolio.closed_positions.append(position)
    svg = render_charts(state, {"GOOG": closes}, size="large", fmt="svg")
    assert svg_titles(svg) == ["21 buys, 2026-01-11 12:00:00 to 12:00:20 UTC, at 105 to 105.02"]
    assert markers_drawn(svg) == 2  # the burst's one buy and the close's one sell


@pytest.mark.parametrize(("price", "text"), [(1.0990569123, "1.0990569"), (97_000.12, "97000.12"),
                                             (123_456_789.4, "123456789"), (0.000012345678, "0.000012345678"),
                                             (105.02000000000001, "105.02")])
def test_tooltip_prices_are_plain_numbers(price: float, text: str) -> None:
    # Eight significant digits, but never an exponent nor a rounded whole part (a price of 1.2e+08 or 123456790
    # would not be the fills' prices).
    assert _price(price) == text

"""The chart renderer's memory stays bounded over renders of a growing history: proven by counting, not timing.

The renderer child (``visual/worker.py``) draws with :func:`render_once` and then calls
:func:`release_memory`; these tests run the same two steps in this process, on a series that grows
like the 1-second soak's, and count what is left alive: no matplotlib figure survives a render, the
interpreter's tracked objects do not grow with the renders, and fill markers are bounded by the
figure's pixels however many fills the history holds.
"""

from __future__ import annotations

import gc

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tradeexecutor.visual.charts import _MARKER_GRID, _prepare
from tradeexecutor.visual.series import ChartDelta, ChartSeries, Fills, SeriesBuilder
from tradeexecutor.visual.worker import release_memory, render_once

T0 = 1_767_225_600_000  # 2026-01-01, epoch ms


def soak_delta(render: int, rows: int = 300, fills: int = 40) -> ChartDelta:
    """Render number ``render`` of a run that adds ``rows`` valuation rows and bars and ``fills`` fills each time."""
    rng = np.random.default_rng(render)
    start = render * rows
    stamps = T0 + np.arange(start, start + rows, dtype=np.int64) * 1000
    equity = 10_000 + np.cumsum(rng.normal(0, 1.0, rows))
    closes = 1.1 + np.cumsum(rng.normal(0, 1e-4, rows))
    made = tuple((render * fills + i, 1, "EURUSD", int(stamps[i * rows // fills]), float(closes[i * rows // fills]),
                  i % 2 == 0) for i in range(fills))
    return ChartDelta("soak", start, stamps, equity, made, {"EURUSD": (start, stamps, closes)})


def live(kind: type) -> int:
    return sum(1 for thing in gc.get_objects() if isinstance(thing, kind))


def test_renders_leave_no_figure_and_no_growing_objects_behind() -> None:
    builder = SeriesBuilder()
    gc.collect()
    figures, canvases = live(Figure), live(FigureCanvasAgg)  # what other tests in this process keep, if anything
    tracked: list[int] = []
    for render in range(5):
        reply = render_once(builder, soak_delta(render))
        assert reply[0] == "images", reply
        images = reply[1]
        assert isinstance(images, dict) and len(images) == 8
        del reply, images
        release_memory()
        # Every figure (and its canvas, which holds the Agg pixel buffer) is gone before the next render.
        assert (live(Figure), live(FigureCanvasAgg)) == (figures, canvases), render
        tracked.append(len(gc.get_objects()))
    # The history grew two and a half times from the second render on (to 1500 rows, 200 fills); the
    # objects the interpreter tracks did not: the series lives in numpy columns, and what matplotlib
    # caches is filled by the first renders.
    assert tracked[-1] - tracked[1] <= 200, tracked
    assert builder.series().stamps.size == 1500


def test_fill_markers_are_bounded_by_the_figures_pixels() -> None:
    # A day of fills (one every 2.5 s) on a price that visits few pixel cells: repeated trades at the
    # same few places, 43200 fills in all.
    rng = np.random.default_rng(1)
    rows = 86_400
    stamps = T0 + np.arange(rows, dtype=np.int64) * 1000
    closes = 1.1 + np.round(rng.normal(0, 1e-3, rows), 4)
    picked = np.arange(0, rows, 2)[: 43_200]
    few = (picked // 3600) * 3600  # fills bunched at 24 instants
    fills = Fills("EURUSD", stamps[few], closes[picked], (np.arange(len(picked)) % 2 == 0))
    series = ChartSeries("day", stamps, 10_000 + np.cumsum(rng.normal(size=rows)), {1: fills},
                         {"EURUSD": (stamps, closes)})
    panel = _prepare(series).panels[0]
    kept = len(panel.buy_times) + len(panel.sell_times)
    assert 0 < kept < len(picked) // 10, kept
    # Every dropped fill has a kept marker of its kind in its pixel cell (so the image shows it).
    x0, x1 = float(stamps[0]), float(stamps[-1])
    y_all = np.concatenate([closes, fills.prices])
    y0, y1 = float(y_all.min()), float(y_all.max())
    columns, cell_rows = _MARKER_GRID

    def cells(times: np.ndarray, prices: np.ndarray) -> set[tuple[int, int]]:
        ms = times.astype("datetime64[ms]").astype(np.int64)
        column = np.clip(((ms - x0) * (columns / (x1 - x0))).astype(np.int64), 0, columns - 1)
        row = np.clip(((prices - y0) * (cell_rows / (y1 - y0))).astype(np.int64), 0, cell_rows - 1)
        return set(zip(column.tolist(), row.tolist(), strict=True))

    buys = fills.buys
    assert cells(fills.times[buys], fills.prices[buys]) == cells(panel.buy_times, panel.buy_prices)
    assert cells(fills.times[~buys], fills.prices[~buys]) == cells(panel.sell_times, panel.sell_prices)
    assert len(panel.buy_times) == len(cells(panel.buy_times, panel.buy_prices))


def test_few_fills_are_all_drawn() -> None:
    stamps = T0 + np.arange(100, dtype=np.int64) * 60_000
    closes = np.linspace(1.0, 2.0, 100)
    fills = Fills("EURUSD", stamps[::10], closes[::10], np.arange(10) % 2 == 0)
    series = ChartSeries("few", stamps, closes * 1000, {1: fills}, {"EURUSD": (stamps, closes)})
    panel = _prepare(series).panels[0]
    assert len(panel.buy_times) == 5 and len(panel.sell_times) == 5

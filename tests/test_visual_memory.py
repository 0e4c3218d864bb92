"""The chart renderer's memory stays bounded over renders of a growing history: proven by counting, not timing.

The renderer child (``visual/worker.py``) draws with :func:`render_once` and then calls
:func:`release_memory`; these tests run the same two steps in this process, on a series that grows
like the 1-second soak's, and count what is left alive: no matplotlib figure survives a render, the
interpreter's tracked objects do not grow with the renders. (Fill markers, bounded by the panel's
cells however many fills the history holds: tests/test_visual_markers.py.)
"""

from __future__ import annotations

import gc

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tradeexecutor.visual.charts import _prepare
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


def test_few_fills_are_all_drawn() -> None:
    stamps = T0 + np.arange(100, dtype=np.int64) * 60_000
    closes = np.linspace(1.0, 2.0, 100)
    fills = Fills("EURUSD", stamps[::10], closes[::10], np.arange(10) % 2 == 0)
    series = ChartSeries("few", stamps, closes * 1000, {1: fills}, {"EURUSD": (stamps, closes)})
    panel = _prepare(series).panels[0]
    assert len(panel.buys.times) == 5 and len(panel.sells.times) == 5

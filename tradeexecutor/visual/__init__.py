"""Charts of a run (equity curve, prices with fills) as PNG or SVG bytes, and the process that draws the daemon's.

Layer 6, and the only package that imports matplotlib; it uses the object-oriented Agg API,
never pyplot, so charts can be drawn from any thread. A running executor draws them in a child
process instead (``renderer.ChartRenderer``, fed ``series.ChartDelta``s), so drawing never
holds the loop's interpreter lock.

>>> png = render_charts(state, {"GOOG": closes}, size="small", theme="dark")  # doctest: +SKIP
>>> charts = render_all(state, {"GOOG": closes})  # {(size, theme, fmt): bytes}  # doctest: +SKIP

The chart functions load on first use (PEP 562): a running executor imports only ``renderer``
and ``series`` here, and so starts without matplotlib (about a third of its start-up), which only
its renderer's child process needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradeexecutor.visual.charts import FORMATS, SIZES, THEMES, render_all, render_charts, render_formats

__all__ = ["FORMATS", "SIZES", "THEMES", "render_all", "render_charts", "render_formats"]


def __getattr__(name: str) -> Any:
    """The chart functions, imported at their first use: matplotlib takes about half a second to import, and a
    running executor never draws in its own process (``renderer``), so ``visual.series`` must not pull it in."""
    if name in __all__:
        from tradeexecutor.visual import charts

        return getattr(charts, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

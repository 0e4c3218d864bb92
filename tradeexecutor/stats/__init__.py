"""Performance statistics and the trade table of a run, computed from its State alone.

Layer 5: imports only ``tradeexecutor.state``, ``tradeexecutor.errors``, ``tradeexecutor.timeframe``,
the standard library, numpy and pandas. Definitions of every statistic: ``docs/statistics.md``.

>>> summary = compute_summary(state)  # doctest: +SKIP
>>> print(summary_table(summary))  # doctest: +SKIP
>>> write_trades_csv(state, "trades.csv")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradeexecutor import lazy_exports

if TYPE_CHECKING:
    from tradeexecutor.stats.formatting import SUMMARY_ROWS, format_figure, format_statistic
    from tradeexecutor.stats.summary import (
        TRADE_COLUMNS,
        Summary,
        compute_summary,
        summarise_windows,
        summary_table,
        trades_frame,
        write_trades_csv,
    )

#: Where each re-exported name lives. Imported on first use: formatting a figure (``runs show``)
#: must not import pandas and numpy.
_EXPORTS = {
    "SUMMARY_ROWS": "formatting", "format_figure": "formatting", "format_statistic": "formatting",
    "TRADE_COLUMNS": "summary", "Summary": "summary", "compute_summary": "summary", "summarise_windows": "summary",
    "summary_table": "summary", "trades_frame": "summary", "write_trades_csv": "summary",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "SUMMARY_ROWS",
    "TRADE_COLUMNS",
    "Summary",
    "compute_summary",
    "format_figure",
    "format_statistic",
    "summarise_windows",
    "summary_table",
    "trades_frame",
    "write_trades_csv",
]

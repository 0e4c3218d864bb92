"""Performance statistics and the trade table of a run, computed from its State alone.

Layer 5: imports only ``tradeexecutor.state``, ``tradeexecutor.errors``, ``tradeexecutor.timeframe``,
the standard library, numpy and pandas. Definitions of every statistic: ``docs/statistics.md``.

>>> summary = compute_summary(state)  # doctest: +SKIP
>>> print(summary_table(summary))  # doctest: +SKIP
>>> write_trades_csv(state, "trades.csv")  # doctest: +SKIP
"""

from __future__ import annotations

from tradeexecutor.stats.formatting import SUMMARY_ROWS, format_figure, format_statistic
from tradeexecutor.stats.summary import (
    Summary,
    TRADE_COLUMNS,
    compute_summary,
    summarise_windows,
    summary_table,
    trades_frame,
    write_trades_csv,
)

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

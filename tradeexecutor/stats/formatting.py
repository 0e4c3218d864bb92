"""How numbers look to people — one convention for every command and report, in one helper.

- **fractions** (returns, CAGR, volatility, drawdown, win rate, exposure) as percentages with two
  decimals and a space: ``12.34 %`` (never ``0.1234`` or ``12.34%``);
- **money** with thousands separators and two decimals: ``10,000.00``;
- **ratios** (Sharpe, Sortino, profit factor) with two decimals: ``1.03``;
- **counts** as whole numbers with separators: ``2,012``;
- **durations** in days with one decimal: ``584.0 days``;
- a value that is missing or not finite: ``n/a``.

``backtest``, ``optimize``'s table, ``runs start``/``runs show`` and the run report (report.md,
report.html and its checks) all print through :func:`format_statistic` or
:func:`format_figure`. Files for programs — summary.json, metrics.json, results.csv, the
Prometheus text, the webhook's JSON — keep raw values: fractions as fractions, full precision.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["KEY_FIGURES", "STATISTIC_KINDS", "SUMMARY_ROWS", "format_figure", "format_statistic", "key_figures"]

#: The summary figures repeated wherever runs are listed side by side (metadata.json of executors and
#: backtests, ``runs show``): the one list, so every listing shows the same ones.
KEY_FIGURES = ("final_equity", "total_return", "max_drawdown", "sharpe", "trade_count", "fees_paid")


def key_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The :data:`KEY_FIGURES` of a summary dictionary (None where it has none)."""
    return {key: summary.get(key) for key in KEY_FIGURES}


#: (field, label, kind) rows of summary_table and of the run report's key figures, in order.
SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("start", "Start", "text"),
    ("end", "End", "text"),
    ("initial_cash", "Initial cash", "money"),
    ("final_equity", "Final equity", "money"),
    ("total_return", "Total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("annualised_volatility", "Annualised volatility", "pct"),
    ("sharpe", "Sharpe", "ratio"),
    ("sortino", "Sortino", "ratio"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration", "Max drawdown duration", "days"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "ratio"),
    ("average_win", "Average win", "money"),
    ("average_loss", "Average loss", "money"),
    ("trade_count", "Trades executed", "int"),
    ("rejected_trade_count", "Trades rejected", "int"),
    ("position_count", "Positions closed", "int"),
    ("open_positions", "Positions open", "int"),
    ("exposure_time", "Exposure time", "pct"),
    ("fees_paid", "Fees paid", "money"),
    ("fee_currency", "Fee currency", "text"),
    ("buy_and_hold_return", "Buy and hold return", "pct"),
    ("periods_per_year", "Periods per year", "ratio"),
)

#: The kind of every summary statistic, by field name.
STATISTIC_KINDS: dict[str, str] = {name: kind for name, _, kind in SUMMARY_ROWS}


def format_figure(value: Any, kind: str) -> str:
    """One figure as people read it (module docstring): ``pct``, ``money``, ``ratio``, ``int``, ``days`` or ``text``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "text" or isinstance(value, (str, bool)):
        return str(value)
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{value * 100:,.2f} %"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "days":
        return f"{value:,.1f} days"
    return f"{value:,.2f}"


def format_statistic(name: str, value: Any) -> str:
    """A summary statistic by its field name (``total_return`` → ``12.34 %``); unknown names as ratios."""
    return format_figure(value, STATISTIC_KINDS.get(name, "ratio"))

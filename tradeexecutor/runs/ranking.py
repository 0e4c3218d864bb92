"""Rank sweep points by a summary statistic — over the whole period or one window — best first, one rule everywhere.

Higher is better except for drawdown, volatility, fees and rejections (:data:`RANKABLE`). Points
without a value for the statistic come after those with one, failed points last, and ties keep
the points' own order, so a ranking never depends on the order results arrived in.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence

from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.sweep_eval import PointResult

__all__ = ["RANKABLE", "check_rank_by", "rank_results", "statistic"]

#: Statistics a sweep may rank by, and whether higher is better.
RANKABLE: dict[str, bool] = {
    "sharpe": True,
    "sortino": True,
    "total_return": True,
    "cagr": True,
    "final_equity": True,
    "profit_factor": True,
    "win_rate": True,
    "average_win": True,
    "average_loss": True,
    "exposure_time": True,
    "trade_count": True,
    "position_count": True,
    "max_drawdown": False,
    "max_drawdown_duration": False,
    "annualised_volatility": False,
    "fees_paid": False,
    "rejected_trade_count": False,
}


def check_rank_by(name: str) -> str:
    """A rankable statistic name; ConfigError naming the allowed ones otherwise."""
    if name not in RANKABLE:
        close = difflib.get_close_matches(name, list(RANKABLE), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError(f"--rank-by {name!r} is not a statistic{hint} (use one of {', '.join(RANKABLE)})")
    return name


def statistic(result: PointResult, name: str, window: str | None = None) -> float | None:
    """The point's value of ``name`` over ``window`` (None: the whole period); None when missing or not finite."""
    figures = result.figures(window)
    if figures is None:
        return None
    value = figures.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def rank_results(results: Sequence[PointResult], rank_by: str, window: str | None = None) -> list[PointResult]:
    """Best first by ``rank_by`` over ``window``; points without a value, then failures, last; ties by index."""
    higher = RANKABLE[check_rank_by(rank_by)]

    def key(result: PointResult) -> tuple[int, float, int]:
        if result.status != "complete":
            return (2, 0.0, result.index)
        value = statistic(result, rank_by, window)
        if value is None:
            return (1, 0.0, result.index)
        return (0, -value if higher else value, result.index)

    return sorted(results, key=key)

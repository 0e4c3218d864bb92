"""Out-of-sample by default: the windows a sweep judges points on, and walk-forward selection over them.

Every sweep keeps the last ``holdout`` fraction of the backtest's bars (default 30 %) out of the
search: searches and the ranking see only the **in-sample** part before it, and every row also
shows the **out-of-sample** figures of the same parameters, so a point that only fits the past
stands out at a glance (``--holdout 0`` ranks on the whole period, as sweeps used to).

``--walk-forward K`` cuts the out-of-sample part into K consecutive test windows of equal bar
counts. Folds are **anchored**: fold k is trained on every bar from the first up to its test
window (so fold 1's train window is the in-sample part, and each later one grows by the test
window before it); the point ranked best on the train window is the fold's choice, and its
figures on the test window are the fold's out-of-sample result. The folds' test stretches,
chained, are the **combined out-of-sample equity curve**: what re-optimising at every fold
boundary would have earned on data it had not seen. ``K = 1`` is the plain hold-out.

Each point is backtested once over the whole period, and a window's figures are read off that
one run (``compute_summary(..., window=...)``). A strategy decides at T only from bars closed by
T — enforced by the engine — so the in-sample figures are those of a backtest that stopped at
the split, and the out-of-sample ones are what the same parameters did next, carrying in the
positions they held, as they would have live.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.ranking import rank_results, statistic
from tradeexecutor.runs.sweep_eval import PointResult, Window
from tradeexecutor.runs.sweep_options import DEFAULT_HOLDOUT
from tradeexecutor.state import State
from tradeexecutor.stats import compute_summary

__all__ = ["DEFAULT_HOLDOUT", "Fold", "FoldResult", "WindowPlan", "combine_curves", "plan_windows", "select_folds"]

#: Fewest bars an in-sample or test window may have.
MIN_WINDOW_BARS = 10

IN_SAMPLE = "in_sample"
OUT_OF_SAMPLE = "out_of_sample"


@dataclass(frozen=True)
class Fold:
    """One walk-forward step: choose on ``train``, judge on ``test``."""

    number: int
    train: Window
    test: Window


@dataclass(frozen=True)
class WindowPlan:
    """The windows of one sweep: the in-sample and out-of-sample split and the walk-forward folds."""

    holdout: float
    folds: tuple[Fold, ...]
    #: The out-of-sample part (the union of the test windows); None without a hold-out.
    out_of_sample: Window | None

    @property
    def in_sample(self) -> Window | None:
        return self.folds[0].train if self.folds else None

    @property
    def ranking_window(self) -> str | None:
        """The window searches and the ranking look at: in-sample, or the whole period without a hold-out."""
        return IN_SAMPLE if self.folds else None

    @property
    def windows(self) -> tuple[Window, ...]:
        """Every distinct window a point is summarised over."""
        found: dict[str, Window] = {}
        for fold in self.folds:
            found.setdefault(fold.train.name, fold.train)
            found.setdefault(fold.test.name, fold.test)
        if self.out_of_sample is not None:
            found.setdefault(self.out_of_sample.name, self.out_of_sample)
        return tuple(found.values())

    def describe(self) -> dict[str, Any]:
        """The plan as plain data (for sweep.json and the report)."""
        return {"holdout": self.holdout, "walk_forward": len(self.folds),
                "windows": {w.name: [_iso(w.first_ms), _iso(w.last_ms)] for w in self.windows}}


def plan_windows(timeline_ms: np.ndarray, holdout: float, folds: int) -> WindowPlan:
    """Split the bar close times into in-sample, out-of-sample and ``folds`` anchored folds; ConfigError if too short."""
    if not 0 <= holdout < 1:
        raise ConfigError(f"--holdout {holdout}: give a fraction from 0 (no hold-out) to below 1, such as 0.3")
    if folds < 1:
        raise ConfigError(f"--walk-forward {folds}: give at least 1 fold")
    if holdout == 0:
        if folds > 1:
            raise ConfigError(f"--walk-forward {folds} needs an out-of-sample part: leave --holdout above 0")
        return WindowPlan(0.0, (), None)
    times = np.asarray(timeline_ms, dtype=np.int64)
    bars = len(times)
    test_bars = round(bars * holdout)
    train_bars = bars - test_bars
    if train_bars < MIN_WINDOW_BARS or test_bars < folds * MIN_WINDOW_BARS:
        per_fold = test_bars // folds
        raise ConfigError(f"--holdout {holdout:g} with --walk-forward {folds} on {bars} bars leaves {train_bars} "
                          f"in-sample bars and {per_fold} per test window; each needs at least {MIN_WINDOW_BARS}: "
                          "use fewer folds, another --holdout or more data (--holdout 0 turns the check off)")
    bounds = [train_bars + round(k * test_bars / folds) for k in range(folds + 1)]
    plan = []
    for k in range(folds):
        start, stop = bounds[k], bounds[k + 1]
        train_name = IN_SAMPLE if k == 0 else f"train_{k + 1}"
        test_name = OUT_OF_SAMPLE if folds == 1 else f"test_{k + 1}"
        plan.append(Fold(k + 1, Window(train_name, int(times[0]), int(times[start - 1])),
                         Window(test_name, int(times[start]), int(times[stop - 1]))))
    return WindowPlan(holdout, tuple(plan), Window(OUT_OF_SAMPLE, int(times[train_bars]), int(times[-1])))


@dataclass(frozen=True)
class FoldResult:
    """A fold's choice, chosen on its train window, and that choice's figures on both windows."""

    fold: Fold
    chosen: PointResult | None
    train: dict[str, Any] | None
    test: dict[str, Any] | None


def select_folds(results: Sequence[PointResult], plan: WindowPlan, rank_by: str) -> list[FoldResult]:
    """For each fold, the point ranked best on its train window alone (None when no point has a value there)."""
    chosen = []
    for fold in plan.folds:
        ranked = rank_results(results, rank_by, fold.train.name)
        best = ranked[0] if ranked and statistic(ranked[0], rank_by, fold.train.name) is not None else None
        chosen.append(FoldResult(fold, best, best.figures(fold.train.name) if best else None,
                                 best.figures(fold.test.name) if best else None))
    return chosen


def combine_curves(folds: Sequence[FoldResult], curves: Mapping[int, tuple[np.ndarray, np.ndarray]],
                   initial_cash: float, periods_per_year: float | None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """Chain each fold's test stretch of its chosen point's equity into one curve starting at ``initial_cash``.

    ``curves`` maps a fold number to the chosen point's (times ms, equity). The curve starts with
    the row just before the first test window (``initial_cash``), as a window's summary does, and
    is annualised with the points' own ``periods_per_year``. Returns the times, the equity and its
    summary (trades, fees and positions summed over the folds' test windows), or None when a fold
    has no choice.
    """
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    level = float(initial_cash)
    for result in folds:
        if result.chosen is None or result.fold.number not in curves:
            return None
        stamps, equity = curves[result.fold.number]
        first = int(np.searchsorted(stamps, result.fold.test.first_ms, side="left"))
        last = int(np.searchsorted(stamps, result.fold.test.last_ms, side="right"))
        if first == 0 or equity[first - 1] <= 0:
            return None
        if not times:  # the row before the out-of-sample part: where the chained curve starts
            times.append(stamps[first - 1:first])
            values.append(np.asarray([level]))
        segment = equity[first:last] / float(equity[first - 1]) * level
        times.append(stamps[first:last])
        values.append(segment)
        level = float(segment[-1]) if len(segment) else level
    all_times, all_equity = np.concatenate(times), np.concatenate(values)
    state = State(name="walk-forward", strategy_version="", created_at=datetime.now(UTC), initial_cash=initial_cash)
    state.valuations.extend(all_times.tolist(), all_equity.tolist(), all_equity.tolist(), [0.0] * len(all_times))
    summary = compute_summary(state, periods_per_year=periods_per_year).to_dict()
    for name in ("trade_count", "position_count", "rejected_trade_count", "fees_paid"):
        summary[name] = sum((r.test or {}).get(name) or 0 for r in folds)
    # the chained curve has no instruments: its fees are in the folds' currency
    summary["fee_currency"] = next((c for r in folds if (c := (r.test or {}).get("fee_currency"))), None)
    for name in ("win_rate", "profit_factor", "average_win", "average_loss", "exposure_time", "open_positions",
                 "buy_and_hold_return"):
        summary[name] = None  # not defined for a chained curve
    return all_times, all_equity, summary


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()

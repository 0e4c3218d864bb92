"""RunningSummary: the run's summary statistics kept up to date row by row, at a cost per job that does not grow with history.

The daemon publishes the summary after every cycle. :func:`compute_summary` reads the whole
valuation series and every order each time, so the cost of a job grew with the run (35 → 46 ms
per cycle over a 25-minute soak). A RunningSummary keeps running totals instead — count, mean
and sum of squared deviations of the period returns (Welford), the downside sum of squares,
the equity peak, the deepest drawdown and the longest one so far, the rows with exposure, wins
and losses of closed positions, filled and rejected orders of positions that can no longer change —
and folds in only the rows and positions added since the last call. Its figures are
compute_summary's (no window, risk-free rate 0, periods per year inferred), equal up to float
rounding; ``tests/test_stats_running.py`` checks them row by row against it.

The newest valuation row may still be replaced (a decision at the bar's close revalues it), so
it is never folded in: each call folds the rows before it and adds it on the fly. Closed and
failed positions never change once moved to their lists; open positions are counted afresh on
each call. A state whose valuations shrank or were replaced (another state loaded) starts the
totals over.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tradeexecutor.state import Position, State
from tradeexecutor.state.growth import ListTail
from tradeexecutor.stats.summary import (
    _MS_PER_DAY,
    _MS_PER_YEAR,
    Summary,
    _iso_ms,
    _safe,
    compound_annual_growth,
    order_counts,
)

__all__ = ["RunningSummary"]


class _Returns:
    """Count, mean and sum of squared deviations (Welford) of the period returns, and their downside squares."""

    __slots__ = ("count", "downside", "m2", "mean")

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.downside = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        if value < 0:
            self.downside += value * value

    def add_many(self, values: np.ndarray) -> None:
        """Merge a block of returns (Chan et al.'s pairwise update), for the rows a restart finds."""
        if not len(values):
            return
        count, mean = len(values), float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + count
        delta = mean - self.mean
        self.m2 += m2 + delta * delta * self.count * count / total
        self.mean += delta * count / total
        self.count = total
        negative = np.minimum(values, 0.0)
        self.downside += float(np.dot(negative, negative))

    def copy(self) -> _Returns:
        other = _Returns()
        other.count, other.mean, other.m2, other.downside = self.count, self.mean, self.m2, self.downside
        return other


class _Drawdowns:
    """The running equity peak, the deepest fall below it and the longest time under water so far."""

    __slots__ = ("deepest", "high_ms", "longest_ms", "peak", "under")

    def __init__(self) -> None:
        self.peak = -math.inf
        self.deepest = 0.0
        self.high_ms: int | None = None  # time of the latest row at or above every earlier one
        self.under = False  # a lower row came after that high
        self.longest_ms = 0  # the longest episode that ended at a new high

    def add(self, ms: int, equity: float) -> None:
        if equity >= self.peak:
            if self.under and self.high_ms is not None:
                self.longest_ms = max(self.longest_ms, ms - self.high_ms)
            self.peak, self.high_ms, self.under = equity, ms, False
            return
        self.under = True
        if self.peak > 0:
            self.deepest = max(self.deepest, (self.peak - equity) / self.peak)

    def copy(self) -> _Drawdowns:
        other = _Drawdowns()
        other.peak, other.deepest, other.high_ms = self.peak, self.deepest, self.high_ms
        other.under, other.longest_ms = self.under, self.longest_ms
        return other


class _ClosedPositions:
    """Wins, losses, fills and rejections of positions that never change again (closed and failed)."""

    __slots__ = ("closed", "failed", "filled", "loss_total", "losses", "rejected", "win_total", "wins")

    def __init__(self) -> None:
        self.closed: ListTail[Position] = ListTail()
        self.failed: ListTail[Position] = ListTail()
        self.wins = self.losses = self.filled = self.rejected = 0
        self.win_total = self.loss_total = 0.0

    def update(self, closed: Sequence[Position], failed: Sequence[Position]) -> None:
        new_closed, new_failed = self.closed.new_items(closed), self.failed.new_items(failed)
        if self.closed.restarted or self.failed.restarted:
            self.__init__()  # type: ignore[misc]  # another list: count everything again
            new_closed, new_failed = self.closed.new_items(closed), self.failed.new_items(failed)
        for position in new_closed:
            pnl = position.realised_pnl
            if pnl > 0:
                self.wins += 1
                self.win_total += pnl
            elif pnl < 0:
                self.losses += 1
                self.loss_total += pnl
        for positions in (new_closed, new_failed):  # one at a time: never every position as objects at once
            for position in positions:
                filled, rejected = order_counts(position.orders)
                self.filled += filled
                self.rejected += rejected


class RunningSummary:
    """compute_summary's figures for a state that grows, updated in O(what changed) per call (module docstring)."""

    def __init__(self, *, block_rows: int = 64) -> None:
        #: More rows than this to fold at once (the first call after a restart) are folded with numpy.
        self.block_rows = block_rows
        self._reset()

    def _reset(self, valuations: object = None) -> None:
        self._valuations = valuations
        self._folded = 0  # rows folded into the totals (all but the newest)
        self._many_to = 0  # fold() folds the rows before this with numpy, a block at a time (a start-up's pass)
        self._first_ms: int | None = None
        self._first_equity = 0.0
        self._previous: tuple[int, float] | None = None  # the last folded row
        self._returns = _Returns()
        self._drawdowns = _Drawdowns()
        self._exposed = 0
        self._positions = _ClosedPositions()
        #: Each symbol's close at the first valuation, kept once found: a live feed's window may drop that bar later.
        self._start_closes: dict[str, float] = {}

    def summary(self, state: State, benchmark: Mapping[str, tuple[np.ndarray, np.ndarray, int]] | None = None
                ) -> Summary:
        """The summary of ``state`` now.

        ``benchmark`` maps a symbol to its bar close times (ns), closes, and the index of the newest
        close that may be shown (a cycle never sees a later one); buy-and-hold is computed from
        them with two binary searches.
        """
        valuations = state.valuations
        rows = len(valuations)
        if valuations is not self._valuations or rows < self._folded + (1 if self._folded else 0):
            self._reset(valuations)
        self._fold(state, rows - 1)
        self._positions.update(state.portfolio.closed_positions, state.portfolio.failed_positions)
        return self._figures(state, benchmark)

    def fold(self, state: State, upto: int) -> None:
        """Fold the rows before ``upto`` now (never the newest), as :meth:`summary` would fold them.

        The start-up's pass over a long history (``daemon/publish.py``) hands the summary a block at a
        time, beside the other readers of the same block, so the ledger is read once; the figures are
        those of folding at the first :meth:`summary` (the same blocks, ``ValuationSeries.blocks``).
        """
        valuations = state.valuations
        rows = len(valuations)
        if valuations is not self._valuations or rows < self._folded + (1 if self._folded else 0):
            self._reset(valuations)
        end = rows - 1  # what summary() would fold now, with numpy when many: so in every call of this pass
        if end > self._many_to and end - self._folded > self.block_rows:
            self._many_to = end
        if self._folded < self._many_to:
            self._fold(state, min(upto, self._many_to), many=True)

    # -- folding rows in ---------------------------------------------------------------------

    def _fold(self, state: State, upto: int, *, many: bool = False) -> None:
        """Fold rows [folded, upto) into the totals: one at a time, or with numpy when many (a restart)."""
        valuations = state.valuations
        start = self._folded
        if upto <= start:
            return
        if many or upto - start > self.block_rows:  # a block of the valuation columns at a time: never the history at once
            for _first, (stamps, equity, exposure) in valuations.blocks(start, upto, ("timestamp", "equity", "exposure")):
                self._fold_block(np.frombuffer(stamps, dtype=np.int64), np.frombuffer(equity, dtype=np.float64),
                                 np.frombuffer(exposure, dtype=np.float64))
        else:
            for index in range(start, upto):
                self._fold_row(valuations.timestamp[index], valuations.equity[index], valuations.exposure[index])
        self._folded = upto

    def _fold_row(self, ms: int, equity: float, exposure: float) -> None:
        if self._first_ms is None:
            self._first_ms, self._first_equity = ms, equity
        elif self._previous is not None:
            ret = _period_return(self._previous[1], equity)
            if ret is not None:
                self._returns.add(ret)
        self._previous = (ms, equity)
        self._drawdowns.add(ms, equity)
        if exposure > 0:
            self._exposed += 1

    def _fold_block(self, stamps: np.ndarray, equity: np.ndarray, exposure: np.ndarray) -> None:
        if self._first_ms is None:
            self._first_ms, self._first_equity = int(stamps[0]), float(equity[0])
            joined = equity
        else:
            assert self._previous is not None
            joined = np.concatenate(([self._previous[1]], equity))
        previous = joined[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = joined[1:] / previous - 1.0
        self._returns.add_many(returns[np.isfinite(returns) & (previous != 0)])
        drawdowns = self._drawdowns
        peaks = np.maximum.accumulate(np.concatenate(([drawdowns.peak], equity)))[1:]
        highs = np.flatnonzero(equity >= peaks)
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.where(peaks > 0, (peaks - equity) / peaks, 0.0)
        drawdowns.deepest = max(drawdowns.deepest, float(np.nanmax(depth)))
        for index in highs:  # episodes end at highs: as many as the run made new highs, in one pass
            ms = int(stamps[index])
            if index > 0 and not (equity[index - 1] >= peaks[index - 1]):
                drawdowns.under = True
            if drawdowns.under and drawdowns.high_ms is not None:
                drawdowns.longest_ms = max(drawdowns.longest_ms, ms - drawdowns.high_ms)
            drawdowns.high_ms, drawdowns.under = ms, False
        if len(highs) == 0 or highs[-1] < len(equity) - 1:
            drawdowns.under = True
        drawdowns.peak = float(peaks[-1])
        self._exposed += int(np.count_nonzero(exposure > 0))
        self._previous = (int(stamps[-1]), float(equity[-1]))

    # -- the figures ---------------------------------------------------------------------------

    def _figures(self, state: State, benchmark: Mapping[str, tuple[np.ndarray, np.ndarray, int]] | None) -> Summary:
        portfolio = state.portfolio
        valuations = state.valuations
        rows = len(valuations)
        initial_cash = float(state.initial_cash)
        returns, drawdowns, exposed = self._returns.copy(), self._drawdowns.copy(), self._exposed
        first_ms, first_equity = self._first_ms, self._first_equity
        last_ms: int | None = None
        if rows:
            last_ms, last_equity = int(valuations.timestamp[-1]), float(valuations.equity[-1])
            if first_ms is None:
                first_ms, first_equity = last_ms, last_equity
            elif self._previous is not None:
                ret = _period_return(self._previous[1], last_equity)
                if ret is not None:
                    returns.add(ret)
            drawdowns.add(last_ms, last_equity)
            if valuations.exposure[-1] > 0:
                exposed += 1
            final_equity = last_equity
        else:
            final_equity = float(portfolio.equity())
        base = initial_cash if initial_cash > 0 else (first_equity if rows else 0.0)
        years = (last_ms - first_ms) / _MS_PER_YEAR if rows >= 2 and last_ms is not None and first_ms is not None \
            else 0.0
        total_return = _safe(final_equity / base - 1.0) if base > 0 else None
        cagr = compound_annual_growth(final_equity, base, years)
        ppy = (rows - 1) / years if rows >= 2 and years > 0 else None
        volatility = sharpe = sortino = None
        if ppy is not None and returns.count:
            root = math.sqrt(ppy)
            if returns.count >= 2:
                std = math.sqrt(max(returns.m2, 0.0) / (returns.count - 1))
                volatility = _safe(std * root)
                if std > 0:
                    sharpe = _safe(returns.mean / std * root)
            downside_dev = math.sqrt(returns.downside / returns.count)
            sortino = _safe(returns.mean / downside_dev * root) if downside_dev > 0 else None
        longest = drawdowns.longest_ms
        if drawdowns.under and drawdowns.high_ms is not None and last_ms is not None:
            longest = max(longest, last_ms - drawdowns.high_ms)

        positions = self._positions
        filled, rejected = positions.filled, positions.rejected
        for position in portfolio.open_positions:
            more_filled, more_rejected = order_counts(position.orders)
            filled += more_filled
            rejected += more_rejected
        closed = len(portfolio.closed_positions)
        return Summary(
            start=_iso_ms(first_ms) if rows and first_ms is not None else None,
            end=_iso_ms(last_ms) if last_ms is not None else None,
            initial_cash=initial_cash,
            final_equity=_safe(final_equity),
            total_return=total_return,
            cagr=cagr,
            annualised_volatility=volatility,
            sharpe=sharpe,
            sortino=sortino,
            max_drawdown=_safe(drawdowns.deepest) if rows else None,
            max_drawdown_duration=longest / _MS_PER_DAY if rows else None,
            win_rate=positions.wins / closed if closed else None,
            profit_factor=_safe(positions.win_total / -positions.loss_total) if positions.loss_total < 0 else None,
            average_win=_safe(positions.win_total / positions.wins) if positions.wins else None,
            average_loss=_safe(positions.loss_total / positions.losses) if positions.losses else None,
            trade_count=filled,
            position_count=closed,
            rejected_trade_count=rejected,
            exposure_time=exposed / rows if rows else None,
            fees_paid=float(portfolio.fees_paid),
            buy_and_hold_return=_buy_and_hold(benchmark, first_ms, last_ms, self._start_closes) if benchmark else None,
            open_positions=len(portfolio.open_positions),
            periods_per_year=ppy,
            fee_currency=state.quote_currency(),
        )


def _period_return(previous: float, equity: float) -> float | None:
    """e/e_prev - 1, or None for a period that starts at zero or is not finite (as compute_summary drops them)."""
    if previous == 0:
        return None
    value = equity / previous - 1.0
    return value if math.isfinite(value) else None


def _buy_and_hold(benchmark: Mapping[str, tuple[np.ndarray, np.ndarray, int]], first_ms: int | None,
                  last_ms: int | None, start_closes: dict[str, float]) -> float | None:
    """compute_summary's buy-and-hold from sorted close-time (ns) and close columns: two binary searches a symbol.

    The start close found for a symbol is kept in ``start_closes``: a live feed's window drops its oldest bars,
    and a search for the first valuation's time among the bars left would land on the window's first bar.
    """
    if first_ms is None or last_ms is None:
        return None
    results: list[float] = []
    for symbol, (stamps, closes, newest) in benchmark.items():
        end = min(int(np.searchsorted(stamps, last_ms * 1_000_000, side="right")), newest + 1)
        start = start_closes.get(symbol)
        if start is None:
            begin = int(np.searchsorted(stamps, first_ms * 1_000_000, side="left"))
            if end <= begin or not closes[begin] > 0:
                continue
            start = start_closes[symbol] = float(closes[begin])
        elif end <= 0:
            continue
        results.append(float(closes[end - 1] / start - 1.0))
    return _safe(math.fsum(results) / len(results)) if results else None

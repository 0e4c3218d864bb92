"""The chart data an executor casts: its equity and close prices, downsampled as they grow.

A :class:`ChartFeed` keeps one :class:`Downsampled` series per line and takes only the rows added
since its last call, so a cycle's share stays constant however long the run has been going
(``Serialise once``: never the whole history per cycle). Each series keeps at most
``max_points`` evenly strided points plus the newest one: when it would exceed that, the stride
doubles and every other kept point goes.

Equity comes from ``state.valuations`` (its newest row may still change: a revaluation of the
same bar replaces it, so that row is taken fresh each time and kept only once a newer one
exists); closes come from the market's bars up to the bar being processed, from the first
valuation on, so both lines cover the same time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tradeexecutor.cast import FORMAT, MAX_SERIES
from tradeexecutor.state import State

__all__ = ["DEFAULT_MAX_POINTS", "ChartFeed", "Downsampled"]

#: Points per series sent (plus the newest): plenty for a wallboard tile, a few kB of JSON.
DEFAULT_MAX_POINTS = 500


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


class Downsampled:
    """An append-only series kept at most ``max_points`` long (plus its newest point) by doubling its stride."""

    def __init__(self, max_points: int = DEFAULT_MAX_POINTS) -> None:
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        self.max_points = max_points
        #: Keep every stride-th point appended.
        self.stride = 1
        #: Points appended so far.
        self.count = 0
        self._t: list[int] = []
        self._v: list[float | None] = []
        self._newest: tuple[int, float | None] | None = None

    def add(self, time_ms: int, value: float) -> None:
        """Append one point (times must increase)."""
        index = self.count
        self.count += 1
        point = (int(time_ms), _finite(value))
        self._newest = point
        if index % self.stride:
            return
        self._t.append(point[0])
        self._v.append(point[1])
        if len(self._t) > self.max_points:
            self.stride *= 2
            self._t, self._v = self._t[::2], self._v[::2]

    def points(self, provisional: tuple[int, float] | None = None) -> tuple[list[int], list[float | None]]:
        """The kept points plus the newest (or ``provisional``, a point not appended because it may change)."""
        times, values = list(self._t), list(self._v)
        newest = (int(provisional[0]), _finite(provisional[1])) if provisional is not None else self._newest
        if newest is not None:
            if times and newest[0] == times[-1]:
                values[-1] = newest[1]
            elif not times or newest[0] > times[-1]:
                times.append(newest[0])
                values.append(newest[1])
        return times, values


class ChartFeed:
    """Equity and close prices of one run, kept downsampled (see the module docstring)."""

    def __init__(self, prices: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 max_points: int = DEFAULT_MAX_POINTS) -> None:
        """``prices``: symbol → (bar close times in epoch ms, closes), oldest first; read again at every update, so
        a mapping that grows with the market (``data.market.CloseColumns``) brings the new bars."""
        symbols = list(prices)[: MAX_SERIES - 1]
        self._prices = prices
        self._symbols = symbols
        self.equity = Downsampled(max_points)
        self.closes = {symbol: Downsampled(max_points) for symbol in symbols}
        self._equity_taken = 0  # valuation rows appended (all but the newest)
        # The close time (ms) of the newest bar taken, not its index: a live feed's window drops the oldest bars,
        # which moves every index but no time.
        self._close_taken: dict[str, int | None] = dict.fromkeys(symbols)
        self._provisional: tuple[int, float] | None = None
        #: Changes whenever what the chart shows changed (compare to skip sending the same data twice).
        self.key: tuple[Any, ...] = ()

    def update(self, state: State, last_bars: Mapping[str, int]) -> tuple[Any, ...]:
        """Take the valuation rows and bars (up to ``last_bars[symbol]``, inclusive) not taken yet; the new key."""
        valuations = state.valuations
        rows = len(valuations)
        if rows - 1 > self._equity_taken:  # a running executor's older rows are read once, a block at a time
            first = self._equity_taken
            for _first, (stamps, values) in valuations.blocks(first, rows - 1, ("timestamp", "equity")):
                for ms, equity in zip(stamps, values, strict=True):  # a block at a time: never the history at once
                    self.equity.add(ms, equity)
        self._equity_taken = max(self._equity_taken, rows - 1)
        self._provisional = (valuations.timestamp[-1], valuations.equity[-1]) if rows else None
        first_ms: int | None = None
        for symbol in self._symbols:
            times, closes = self._prices[symbol]
            taken = self._close_taken[symbol]
            if taken is None:
                if not rows:
                    continue
                if first_ms is None:  # only until every symbol started: the first row may be the ledger's, not memory's
                    first_ms = valuations.timestamp[0]
                start = int(np.searchsorted(times, first_ms, side="left"))
            else:
                start = int(np.searchsorted(times, taken, side="right"))
            last = min(int(last_bars.get(symbol, -1)), len(times) - 1)
            for i in range(start, last + 1):
                self.closes[symbol].add(int(times[i]), float(closes[i]))
            if last >= start:
                self._close_taken[symbol] = int(times[last])
            elif taken is None and start > 0:
                self._close_taken[symbol] = int(times[start - 1])  # before the first valuation: never taken
        self.key = (rows, self._provisional, tuple(self._close_taken.values()))
        return self.key

    @property
    def empty(self) -> bool:
        """True until there is a valuation to show."""
        return self._provisional is None

    def data(self, title: str, source: Mapping[str, Any]) -> dict[str, Any]:
        """The chart data document (``tradeexecutor.cast`` format) of what was taken so far."""
        times, values = self.equity.points(self._provisional)
        series: list[dict[str, Any]] = [{"name": "equity", "axis": "left", "t": times, "v": values}]
        for symbol, sampled in self.closes.items():
            times, values = sampled.points()
            if times:
                series.append({"name": f"{symbol} close", "axis": "right", "t": times, "v": values})
        return {"format": FORMAT, "title": title[:200], "source": dict(source), "series": series}

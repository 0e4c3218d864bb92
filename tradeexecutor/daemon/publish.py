"""Keeps RunState current after each job: counters, summary statistics, charts, feed lag and next cycle.

Called only on the loop's worker thread. Work is done once per job, never per request: the
summary is computed after every cycle, charts are rendered after a cycle at most every
``chart_seconds`` (a full render of 8 images costs about a second, more than a replay cycle)
and always at the end of a run; the webhook then serves the stored bytes.

Prices given to the summary and the charts stop at the bar being processed, so nothing after
the cycle time ever shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd

from tradeexecutor.daemon.clock import Clock
from tradeexecutor.data.feed import PriceFeed
from tradeexecutor.runstate import RunState, image_key
from tradeexecutor.state import State
from tradeexecutor.stats import compute_summary
from tradeexecutor.visual import render_all

__all__ = ["Publisher"]

logger = logging.getLogger("tradeexecutor.daemon")


class Publisher:
    """Writes what the loop did into RunState; the loop's only RunState writer besides crash records."""

    def __init__(self, runstate: RunState, feed: PriceFeed, clock: Clock, *,
                 chart_seconds: float = 10.0,
                 next_cycle_at: Callable[[], datetime | None] = lambda: None,
                 render: Callable[[State, dict[str, pd.Series]], dict[tuple[str, str, str], bytes]] = render_all,
                 extra: dict[str, Any] | None = None) -> None:
        self.runstate = runstate
        self.feed = feed
        self.clock = clock
        self.chart_seconds = chart_seconds
        self.next_cycle_at = next_cycle_at
        self.render = render
        self._closes = {symbol: feed.market.close_series(symbol) for symbol in feed.market.symbols}
        self._last_chart: float | None = None
        self._extra = dict(extra or {})

    # -- after each job ---------------------------------------------------------------------

    def cycle_done(self, state: State, step: int, cycle_time: datetime | None) -> None:
        """After the cycle job: cycle counter, summary, maybe charts, progress."""
        now = self.clock.now()
        if cycle_time is not None:
            self.runstate.update_complete_cycle(cycle_time, now)
        else:
            self.runstate.bump_refreshed(now)
        prices = self._prices(step)
        self.runstate.update(summary_statistics=_json_safe(compute_summary(state, benchmark_prices=prices).to_dict()))
        if self._charts_due():
            self.charts(state, step, prices)
        self.progress(state)

    def trigger_check_done(self, state: State) -> None:
        """After a trigger check."""
        with self.runstate.lock:
            self.runstate.position_trigger_checks += 1
        self.runstate.bump_refreshed(self.clock.now())
        self.progress(state)

    def revaluation_done(self, state: State) -> None:
        """After a revaluation."""
        with self.runstate.lock:
            self.runstate.position_revaluations += 1
        self.runstate.bump_refreshed(self.clock.now())
        self.progress(state)

    def progress(self, state: State) -> None:
        """Next cycle time, feed lag and replay position."""
        extra = {
            **self._extra,
            "replay_cursor": state.replay_cursor,
            "replay_bars": len(self.feed.market),
            "cycles_completed_total": state.cycles_completed,
            "open_positions": len(state.portfolio.open_positions),
            "next_trade_id": state.portfolio.next_trade_id,
        }
        self.runstate.update(
            next_cycle_at=self.next_cycle_at(),
            market_data_feed_lag=self.feed.lag_seconds(self.clock.monotonic()),
            extra=extra,
        )

    # -- charts -----------------------------------------------------------------------------

    def charts(self, state: State, step: int, prices: dict[str, pd.Series] | None = None) -> None:
        """Render every chart variant now and publish them together."""
        if self.chart_seconds <= 0 or step < 0:
            return
        self._last_chart = self.clock.monotonic()
        images = self.render(state, prices if prices is not None else self._prices(step))
        self.runstate.set_images({image_key(*key): data for key, data in images.items()}, self.clock.now())

    def _charts_due(self) -> bool:
        if self.chart_seconds <= 0:
            return False
        return self._last_chart is None or self.clock.monotonic() - self._last_chart >= self.chart_seconds

    def _prices(self, step: int) -> dict[str, pd.Series]:
        """Close prices up to the bar closed at ``step``."""
        market = self.feed.market
        result: dict[str, pd.Series] = {}
        for symbol, closes in self._closes.items():
            last = int(market.last_closed[symbol][step]) if step >= 0 else -1
            result[symbol] = closes.iloc[: last + 1]
        return result


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Summary values as plain Python numbers (numpy scalars become float/int)."""
    safe: dict[str, Any] = {}
    for key, value in values.items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()
        safe[key] = value
    return safe

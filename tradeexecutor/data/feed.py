"""Price feeds for the daemon: the PriceFeed interface and ReplayFeed, which plays candles one bar per cycle.

A feed owns *which timeline steps of its MarketData are known now*. The daemon's cycle job
asks ``advance()`` for the next step to process; the engine then reads only bars closed by that
step, so a feed can never leak the future into a cycle.

- :class:`ReplayFeed` plays historical (bundled or user-supplied) candles onto wall-clock
  cycles: every ``advance()`` delivers the next bar of the timeline, so a day of history can
  pass in a fraction of a second. Its ``cursor`` is persisted as ``state.replay_cursor`` and
  restored with ``restore(cursor)`` after a restart, so no bar is played twice.
- :class:`~tradeexecutor.data.follow.FollowFeed` appends candles to its MarketData as they close
  (lines appended to a candle file). A feed of an exchange's candles would implement the same
  protocol; ``venue/ccxt_candles.py`` polls them but is not a feed of the daemon yet.

Progress is the close time of the last bar processed (``state.last_bar_at``), not a step
index: the same time is the same bar whatever history was loaded at start-up, so
``restore_time`` finds it again in data that has grown since.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import pandas as pd

from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import StateError

__all__ = ["PriceFeed", "ReplayFeed", "step_closing_at"]


@runtime_checkable
class PriceFeed(Protocol):
    """Where the daemon's candles come from; called only from the loop's worker thread."""

    #: Every candle the feed can deliver, on one timeline (the engine reads it by step).
    market: MarketData

    @property
    def cursor(self) -> int:
        """The last timeline step delivered (-1 before the first)."""
        ...

    @property
    def finished(self) -> bool:
        """True when no further bar will ever come (a replay at the end of its data)."""
        ...

    def advance(self) -> int | None:
        """The next timeline step to process, or None when no new bar is available yet (or ever)."""
        ...

    def restore(self, cursor: int) -> None:
        """Continue after ``cursor`` (a step delivered before a restart); raises StateError when it cannot."""
        ...

    def restore_time(self, close_ns: int) -> None:
        """Continue after the bar closing at ``close_ns``; raises StateError when the data has no step then."""
        ...

    @property
    def known_until_ns(self) -> int | None:
        """Every bar closing at or before this time (ns) has been delivered or is in the market; None before any."""
        ...

    def lag_seconds(self, now: float) -> float | None:
        """How stale the newest delivered bar is, in seconds, at monotonic time ``now``; None before any bar."""
        ...


class ReplayFeed:
    """Replays a MarketData timeline one step per ``advance()``, from ``start`` to the end of the data.

    ``lag_seconds`` is the wall-clock time since the last bar was delivered: near zero while the
    loop keeps up with the replay cycle, growing when cycles are late or the loop is stuck.
    """

    def __init__(self, market: MarketData, *, start: int = 0, monotonic: Callable[[], float] = time.monotonic):
        if not 0 <= start < len(market):
            raise ValueError(f"replay start {start} is outside the data's {len(market)} bars")
        self.market = market
        #: First step a fresh replay delivers.
        self.start = start
        self._cursor = start - 1
        self._monotonic = monotonic
        self._delivered_at: float | None = None

    def __repr__(self) -> str:
        return f"ReplayFeed(cursor={self._cursor}, bars={len(self.market)})"

    @property
    def cursor(self) -> int:
        """The last step delivered (``start - 1`` before the first)."""
        return self._cursor

    @property
    def finished(self) -> bool:
        """True once the last bar of the data has been delivered."""
        return self._cursor >= len(self.market) - 1

    @property
    def remaining(self) -> int:
        """Bars still to replay."""
        return len(self.market) - 1 - self._cursor

    def advance(self) -> int | None:
        """Deliver the next bar's step, or None at the end of the data."""
        if self.finished:
            return None
        self._cursor += 1
        self._delivered_at = self._monotonic()
        return self._cursor

    def restore(self, cursor: int) -> None:
        """Continue after ``cursor``, the last step a previous run processed and saved."""
        if cursor < -1 or cursor >= len(self.market):
            raise StateError(
                f"the state's replay cursor {cursor} is outside the data's {len(self.market)} bars: "
                "the data changed since the state was written (restore the data or use a new --state-dir)"
            )
        self._cursor = max(cursor, self.start - 1) if cursor < 0 else cursor

    def restore_time(self, close_ns: int) -> None:
        """Continue after the bar closing at ``close_ns``, the last one a previous run processed."""
        self.restore(step_closing_at(self.market, close_ns))

    @property
    def known_until_ns(self) -> int | None:
        """The close time of the last bar delivered."""
        return int(self.market.timeline_ns[self._cursor]) if self._cursor >= 0 else None

    def lag_seconds(self, now: float) -> float | None:
        """Seconds since the last bar was delivered, at monotonic time ``now``."""
        if self._delivered_at is None:
            return None
        return max(0.0, now - self._delivered_at)


def step_closing_at(market: MarketData, close_ns: int) -> int:
    """The timeline step closing exactly at ``close_ns``; StateError when the data has none (it changed)."""
    step = market.step_at_or_before(close_ns)
    if step < 0 or int(market.timeline_ns[step]) != close_ns:
        moment = pd.Timestamp(close_ns, tz="UTC")
        raise StateError(f"the state's last processed bar closes {moment}, but the data has no bar closing then: "
                         "the data changed since the state was written (restore the data or use a new --state-dir)")
    return step

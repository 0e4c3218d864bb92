"""Start-up checks of a state directory: check a loaded state fits the strategy and data, pick the replay start.

Nothing here writes to a state file: a state that does not fit stops start-up with a
StateError naming the file, and the file is left as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tradeexecutor.data.feed import PriceFeed, step_closing_at
from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import ConfigError, StateError
from tradeexecutor.state import State
from tradeexecutor.state.valuation import TailColumn
from tradeexecutor.strategy.indicators import IndicatorStore
from tradeexecutor.strategy.loader import LoadedStrategy
from tradeexecutor.timeframe import format_duration, utc_timestamp

__all__ = ["check_cycle_duration", "check_loaded_state", "replay_start_step", "resume"]

logger = logging.getLogger("tradeexecutor.daemon")

def check_loaded_state(state: State, strategy: LoadedStrategy, market: MarketData, source: Path) -> None:
    """Refuse a state that belongs to another strategy, or whose progress does not match the data."""
    where = str(source)
    if state.name and state.name != strategy.name:
        raise StateError(f"{where} belongs to strategy {state.name!r}, not {strategy.name!r} "
                         f"({strategy.path}); use another --state-dir")
    if state.strategy_version and state.strategy_version != strategy.version:
        logger.warning("the strategy source changed since %s was written (%s → %s); continuing with the new code",
                       where, state.strategy_version[:12], strategy.version[:12])
        state.strategy_version = strategy.version
    for position in state.portfolio.open_positions:
        symbol = state.instrument(position.instrument_id).symbol
        if symbol not in strategy.instruments:
            raise StateError(f"{where} holds an open position in {symbol}, which {strategy.path} no longer trades")
    cursor = state.replay_cursor
    if state.last_bar_at is not None:
        try:
            cursor = step_closing_at(market, utc_timestamp(state.last_bar_at).value)
        except StateError as error:
            raise StateError(f"{where}: {error}") from None
    if cursor >= len(market):
        raise StateError(f"{where} replayed {cursor + 1} bars but the data has only {len(market)}: "
                         "the data changed since the state was written; restore it or use another --state-dir")
    valuations = state.valuations
    if not _increasing(state):
        raise StateError(f"{where} is inconsistent: its valuation times do not strictly increase")
    if cursor >= 0 and len(valuations):
        expected = int(market.timeline_ns[cursor]) // 1_000_000
        last = int(valuations.timestamp[-1])
        if last != expected:
            raise StateError(f"{where} stops at a bar closing {utc_timestamp(last * 1_000_000)} but bar "
                             f"{cursor} of the data closes {market.step_time(cursor)}: the data changed since the "
                             "state was written; restore it or use another --state-dir")
    done = state.last_completed_cycle
    # The cycle decided after a bar is the boundary at or after its close: less than one cycle later (an offset
    # puts it after the bar's close, e.g. HH:08 after an hourly bar closing at HH:00).
    if done is not None and cursor >= 0 and utc_timestamp(done) >= market.step_time(cursor) + strategy.cycle_duration:
        raise StateError(f"{where} is inconsistent: its last completed cycle {done} is after its replay cursor")


def check_cycle_duration(started: Sequence[Mapping[str, Any]], strategy: LoadedStrategy, where: str) -> None:
    """Refuse to continue a state on other cycles than the last process ran it on (the journal's ``started`` lines).

    Its bars, valuations and cycles are on that grid: continued on another, start-up would find its last bar
    missing from the data and blame the data. A ``started`` line names ``cycle_duration`` when an operator's
    ``--cycle-duration`` shortened the strategy's own; without it the process ran on the strategy's own cycle.
    Nothing to compare when the journal kept no ``started`` line (a new state, or lines past the retention).
    """
    if not started:
        return
    last = started[-1]
    own = format_duration(strategy.declared_cycle_duration or strategy.cycle_duration)
    before = str(last.get("cycle_duration") or own)
    now = format_duration(strategy.cycle_duration)
    if before != now:
        how = "--cycle-duration" if last.get("cycle_duration") else "the strategy's own"
        raise StateError(f"{where} ran on {before} cycles ({how}), not {now}: use the same --cycle-duration or a "
                         "new --state-dir")


def _increasing(state: State) -> bool:
    """Whether the valuation times strictly increase, read a block at a time (a running executor's older rows
    come back from its ledger: never the whole history at once), from the last row its load checked on."""
    column = state.valuations.timestamp
    rows = len(column)
    known = min(column.increasing_to, rows) if isinstance(column, TailColumn) else 0
    previous: int | None = None
    for _first, (block,) in state.valuations.blocks(max(0, known - 1), rows, ("timestamp",)):
        stamps = np.frombuffer(block, dtype=np.int64)
        if (previous is not None and stamps[0] <= previous) or not bool(np.all(np.diff(stamps) > 0)):
            return False
        previous = int(stamps[-1])
    return True


def resume(feed: PriceFeed, state: State) -> None:
    """Continue the feed after the last bar the state processed: by its close time, or by the step index a state
    written before ``last_bar_at`` existed saved."""
    if state.last_bar_at is not None:
        feed.restore_time(utc_timestamp(state.last_bar_at).value)
    else:
        feed.restore(state.replay_cursor)


def replay_start_step(start: str, market: MarketData, indicators: IndicatorStore) -> int:
    """The first timeline step a new replay plays: ``first``, ``warm`` or the first bar closing at/after an ISO time.

    ``warm`` skips the bars before every indicator of every symbol has a value: no strategy
    can act on them, and skipping them makes the demo trade within seconds.
    """
    if start == "first":
        return 0
    if start == "warm":
        step = 0
        for symbol, values in indicators.values.items():
            bars = market.bars[symbol]
            for array in values.values():
                finite = np.flatnonzero(np.isfinite(array))
                index = int(finite[0]) if len(finite) else len(bars) - 1
                step = max(step, int(np.searchsorted(market.timeline_ns, bars.close_time_ns[index])))
        return min(step, len(market) - 1)
    try:
        moment = utc_timestamp(start)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"--replay-start {start!r} is not warm, first or an ISO date or time") from error
    step = int(np.searchsorted(market.timeline_ns, moment.value, side="left"))
    if step >= len(market):
        raise ConfigError(f"--replay-start {start} is after the last bar ({market.step_time(len(market) - 1)})")
    return step

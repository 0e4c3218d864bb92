"""Run a strategy over historical candles with the same engine the daemon uses."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat

import numpy as np
import pandas as pd

from tradeexecutor.backtest.curve import Holdings, append_curve
from tradeexecutor.backtest.lean import BacktestEngine
from tradeexecutor.backtest.signal_events import visit_signal_trades
from tradeexecutor.config import EngineConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.engine import Engine, EventSink, _to_datetime
from tradeexecutor.engine.schedule import cycle_times
from tradeexecutor.state import State, run_key
from tradeexecutor.strategy.failure import note_strategy_failure
from tradeexecutor.strategy.loader import LoadedStrategy, check_universe
from tradeexecutor.strategy.signals import signal_steps

#: Fills between two freezes of the collector's heap in the bar loop (see run_backtest).
FREEZE_EVERY = 1024


@dataclass
class BacktestResult:
    """The final state and how long the run took."""

    state: State
    market: MarketData
    bars: int
    cycles: int
    seconds: float
    #: Timeline steps the loop visited: all of them, except for a signals() strategy (only where something happens).
    visited: int = 0

    @property
    def bars_per_second(self) -> float:
        """Timeline steps processed per wall-clock second."""
        return self.bars / self.seconds if self.seconds > 0 else float("inf")


def new_state(strategy: LoadedStrategy, config: EngineConfig, now: datetime | None = None) -> State:
    """A fresh state for a strategy, holding only the starting cash."""
    state = State(
        name=strategy.name,
        strategy_version=strategy.version,
        created_at=now or datetime.now(UTC),
        initial_cash=config.initial_cash,
    )
    state.portfolio.cash = config.initial_cash
    return state


def run_backtest(
    strategy: LoadedStrategy,
    market: MarketData,
    config: EngineConfig | None = None,
    *,
    trigger_market: MarketData | None = None,
    progress: Callable[[int], None] | None = None,
    events: EventSink | None = None,
    now: datetime | None = None,
) -> BacktestResult:
    """Process every bar of ``market``; cycles fire on the strategy's cycle boundaries.

    Valuations are built at the end from the holdings recorded at fills and written into the
    state's typed columns in chunks, so that a million-bar run records every valuation without a
    Python object per row. ``progress`` is
    called with the number of steps done every 10,000 steps.
    """
    config = config or EngineConfig()
    available = {symbol: bars.asset_type for symbol, bars in market.bars.items()}
    asset_types = check_universe(strategy, available)
    if set(strategy.instruments) != set(market.symbols):
        market = _only(market, strategy.instruments)
    state = new_state(strategy, config, now)
    # A backtest's orders never reach a venue, so its client order ids are keyed by the strategy alone
    # (not the state's creation time): the same backtest run twice writes the same orders.
    engine = BacktestEngine(strategy, market, state, config=config, asset_types=asset_types,
                            trigger_market=trigger_market, events=events, run_key=run_key(strategy.name, None))
    due = cycle_times(market.timeline_ns, strategy.cycle_duration, timedelta(seconds=config.cycle_offset_seconds))
    steps = len(market)
    holdings = Holdings(state.portfolio.cash, engine.symbols)
    # The engine's steps, called directly (BacktestEngine.run_steps): fill_pending, check_triggers
    # (once any position has had a protective order), the strategy when a cycle is due. Marks are
    # taken only where something reads them — the strategy's position() and equity, sizing, the end
    # state — and the per-bar valuation is built at the end from the holdings recorded at fills
    # (backtest.curve), so a bar where nothing fills costs no Python valuation.
    open_positions = state.portfolio.open_positions
    started = time.perf_counter()
    # Everything that exists before the loop (modules, the market's columns, indicators) is frozen out
    # of the collector's sight while it runs: a full collection would otherwise walk that whole heap
    # again and again as orders and fills accumulate (5 % of a 1M-bar run). The orders, fills and
    # positions the loop makes stay in the state to the end, so they are frozen too, every
    # FREEZE_EVERY fills (another 10 %). Garbage the loop makes is collected as usual; the frozen
    # objects return to the collector afterwards.
    gc.freeze()
    try:
        if strategy.signals:
            signalled = signal_steps(engine.indicators, market, due)
            # The trades alone where the rule allows it (backtest.signal_events), then the per-step loop from
            # where that stopped (the end, unless a fill needs the engine's general path).
            # Its trades run with the collector off: no strategy code runs there and the loop makes no cyclic
            # garbage, only the state's objects and records that live on, which the per-FREEZE_EVERY freezes of
            # the other loops hand to the frozen generation anyway (1M-bar benchmark: 80 young collections,
            # 5.5 ms, down to 2); frozen at once when it ends, returned to the collector below.
            enabled = gc.isenabled()
            gc.disable()
            try:
                done = visit_signal_trades(engine, holdings, due, signalled, progress)
            finally:
                gc.freeze()
                if enabled:
                    gc.enable()
            start, visited = done if done is not None else (0, 0)
            if start < steps:
                visited += _visit_signal_steps(engine, holdings, due, signalled, progress, start)
        else:
            visited = steps
            _visit_every_step(engine, holdings, due, progress)
    finally:
        engine.materialise()  # the orders and fills the loop kept as records, made into the state's objects
        gc.unfreeze()
    if steps and open_positions:
        engine.mark_to_market(steps - 1)
    seconds = time.perf_counter() - started
    cycles = int(np.count_nonzero(due))
    last_cycle = int(due[len(due) - 1 - int(np.argmax(due[::-1] != 0))]) if cycles else 0
    del due  # 8 bytes a step: gone before the curve's columns are made, at the run's memory peak
    append_curve(holdings, market, state.valuations)
    state.cycles_completed = cycles
    if last_cycle:
        state.last_completed_cycle = pd.Timestamp(last_cycle, tz="UTC").to_pydatetime()
    for position in state.portfolio.open_positions:
        position.last_valued_at = market.step_time(steps - 1).to_pydatetime()
    return BacktestResult(state=state, market=market, bars=steps, cycles=cycles, seconds=seconds, visited=visited)


def _visit_every_step(engine: Engine, holdings: Holdings, due: np.ndarray, progress: Callable[[int], None] | None) -> None:
    """The bar loop of a decide() strategy over every step (``due``: each step's cycle time in ns, 0 for none).

    The engine's steps in the daemon's order — fill_pending, check_triggers (once any position
    has had a protective order), the strategy when a cycle is due — with the cycle inlined: the
    context moved and the strategy asked here, and the engine entered only when it returned
    intents (one bar in 25 in the SMA benchmark), so a quiet bar costs no engine call. The
    holdings are recorded after every step at which something filled, for the curve.
    """
    fill_pending = engine.fill_pending
    check_triggers = engine.check_triggers
    take = engine.take
    ask = engine._decide
    context = engine.context
    # CycleContext._move_to inlined (a call per bar): a backtest's market never grows, so the context's
    # column of last closed bars stays the one taken here, and is walked beside the cycle times (an iterator
    # step is cheaper than a memoryview subscript). Several instruments: no default column, -1 as _move_to leaves.
    closed = context._default_closed
    lasts = closed if closed is not None else repeat(-1, len(due))
    open_positions = engine.state.portfolio.open_positions
    portfolio = engine.state.portfolio
    record_step, record_cash = holdings.steps.append, holdings.cash.append
    record_quantities, record_quantity = holdings.quantities.extend, holdings.quantities.append
    one = engine.symbols[0] if len(engine.symbols) == 1 else None
    fills = 0
    freeze_at = FREEZE_EVERY
    step = -1
    for cycle_ns, last in zip(memoryview(due), lasts):  # type: ignore[arg-type]  # not tolist(): 200 MB at 5M
        step += 1
        busy = False  # whether the engine ran at this step: only then can something have filled
        if engine.pending:
            fill_pending(step)
            busy = True
        if open_positions and engine.triggers_armed:
            check_triggers(step)
            busy = True
        if cycle_ns:
            context._step = step
            context._timestamp_ns = cycle_ns
            context._default_last = last
            try:
                intents = ask(context)
            except Exception as exc:
                note_strategy_failure(exc, engine.strategy.path, _to_datetime(cycle_ns))
                raise
            if intents:
                take(intents, step, cycle_ns)
                busy = True
        if busy and engine.fills != fills:
            fills = engine.fills
            # Holdings.record inlined: one record per step at most here, the steps increasing, so it appends.
            record_step(step)
            record_cash(portfolio.cash)
            if one is None:
                record_quantities(engine.quantities())
            else:  # Engine.quantities of one instrument, without its list: the same sum in the same order
                held = 0.0
                for position in open_positions:
                    held += position.quantity
                record_quantity(held)
            if fills >= freeze_at:
                gc.freeze()
                freeze_at = fills + FREEZE_EVERY
        if progress is not None and step % 10_000 == 9_999:
            progress(step + 1)


def _visit_signal_steps(engine: Engine, holdings: Holdings, due: np.ndarray, signalled: np.ndarray,
                        progress: Callable[[int], None] | None, start: int = 0) -> int:
    """The loop of a signals() strategy: only steps with a signal, a pending fill or a protective order to check.

    At any other step the full loop would do nothing: decide() returns no intent when no
    instrument signals, nothing is pending, and no open position has a trigger. Starts at the
    first signal at or after ``start``, or at ``start`` itself when an order waits there. Returns
    the number of steps visited.
    """
    fill_pending = engine.fill_pending
    check_triggers = engine.check_triggers
    take = engine.take
    ask = engine._decide
    context = engine.context
    closed = context._default_closed  # CycleContext._move_to inlined, as in _visit_every_step
    portfolio = engine.state.portfolio
    open_positions = portfolio.open_positions
    cycle_at = memoryview(due)  # type: ignore[arg-type]
    targets = signalled.tolist()
    count = len(due)
    k = int(np.searchsorted(signalled, start))
    fills = engine.fills
    visited = 0
    freeze_at = fills + FREEZE_EVERY
    report_at = (start // 10_000 + 1) * 10_000
    step = start if engine.pending else (targets[k] if k < len(targets) else count)
    while step < count:
        visited += 1
        if engine.pending:
            fill_pending(step)
        if open_positions and engine.triggers_armed:
            check_triggers(step)
        if k < len(targets) and targets[k] == step:
            cycle_ns = cycle_at[step]
            context._step = step
            context._timestamp_ns = cycle_ns
            if closed is not None:
                context._default_last = closed[step]
            try:
                intents = ask(context)
            except Exception as exc:
                note_strategy_failure(exc, engine.strategy.path, _to_datetime(cycle_ns))
                raise
            if intents:
                take(intents, step, cycle_ns)
            k += 1
        if engine.fills != fills:
            fills = engine.fills
            holdings.record(step, portfolio.cash, engine.quantities())
            if fills >= freeze_at:
                gc.freeze()
                freeze_at = fills + FREEZE_EVERY
        if engine.pending or (open_positions and engine.triggers_armed):
            step += 1
        else:
            step = targets[k] if k < len(targets) else count
        if progress is not None and step >= report_at:
            progress(min(step, count))
            report_at = (step // 10_000 + 1) * 10_000
    return visited


def _only(market: MarketData, symbols: tuple[str, ...]) -> MarketData:
    frames = {s: market.bars[s].frame for s in symbols}
    return MarketData(frames, market.frequency, {s: market.bars[s].asset_type for s in symbols})

"""The loop of a one-instrument signals() strategy, visiting only its trades: the same state as the per-step loop.

A signals() strategy's rule (strategy.signals) is fixed: exit closes the held position, entry
opens one when none is held — and a position counts as held from the cycle its entry is decided
at until its exit fills. With one instrument, plain entries (no protective orders) and fills at
the next bar's open or the deciding bar's close, which signals become trades is therefore known
before the run, from the signal columns alone: the first entry, then the first exit after it,
then the first entry after that, and so on (:func:`trade_steps`, numpy). The decisions' prices,
fill bars and times are then looked up for all of them at once, and the loop below walks only
the trades, doing per trade exactly what the per-step loop does through ``decide_one``,
``BacktestEngine._plan_lean`` and ``_fill_record``: the same record, the same ``Position``, the
same venue pricing (``SimulatedVenue.buy``/``sell``, which size against the cash of the moment, so
affordability stays exact), the same money movement (``accounting.book_quote_fill``), the same
marks and holdings. Nothing is decided here that the engine would decide differently: a fill
the lean path would not take (a rejection, a bar that cannot fill it) stops this loop before
anything of it happens, and the per-step loop (backtest.runner) goes on from that step with the
engine's state as it would have had it. tests/test_strategy_signals.py compares both loops field
by field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain
from math import isfinite
from typing import Any

import numpy as np

from tradeexecutor.backtest.curve import Holdings
from tradeexecutor.backtest.lean import RECORDS_KEPT, BacktestEngine
from tradeexecutor.engine import accounting
from tradeexecutor.engine.engine import _CLOSE, _OPEN
from tradeexecutor.state import Position
from tradeexecutor.strategy.signals import ENTRY, EXIT, signal_intents
from tradeexecutor.venue.simulated import _SURELY_BELOW, SimulatedVenue

__all__ = ["trade_steps", "visit_signal_trades"]

_new = object.__new__
_init_position = Position.__init__


def trade_steps(steps: np.ndarray, entry: np.ndarray, exit_: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The steps among ``steps`` (increasing) at which the rule trades, and whether each is an entry.

    ``entry`` and ``exit_`` say what each step signals. Starting flat, a step trades when it signals
    what the position's state calls for — entry when flat, exit when held — and each trade flips the
    state. Without a step that signals both, that is the first step of every run of equal signals
    (exits before the first entry dropped): numpy, no Python per step. Steps that signal both take
    whichever the state calls for, found by a scan.
    """
    if not (entry & exit_).any():
        kind = entry  # True: entry, False: exit (every step signals exactly one)
        before = np.empty_like(kind)
        before[0:1] = False  # flat at the start, as after an exit
        before[1:] = kind[:-1]
        trades = np.flatnonzero(kind != before)
        return steps[trades], kind[trades]
    chosen: list[int] = []
    kinds: list[bool] = []
    held = False
    for index, (is_entry, is_exit) in enumerate(zip(entry.tolist(), exit_.tolist(), strict=True)):
        if (is_exit if held else is_entry):
            chosen.append(index)
            kinds.append(not held)
            held = not held
    return steps[np.asarray(chosen, dtype=np.int64)], np.asarray(kinds, dtype=bool)


#: Trades whose columns are made into Python numbers at a time (_rows).
ROWS = 4096


def _rows(count: int, *columns: np.ndarray) -> Iterator[tuple[Any, ...]]:
    """``(index, column values...)`` for the first ``count`` rows, as Python numbers made ROWS rows at a time (all
    at once, a 5M-bar run's 190,000 trades would hold some 35 MB of them at the run's memory peak). The chunks'
    zips are chained in C: a generator yielding each row would resume its frame once a trade."""

    def chunk(start: int) -> Iterator[tuple[Any, ...]]:
        stop = min(start + ROWS, count)
        return zip(range(start, stop), *(column[start:stop].tolist() for column in columns), strict=True)

    return chain.from_iterable(map(chunk, range(0, count, ROWS)))


def visit_signal_trades(engine: BacktestEngine, holdings: Holdings, due: np.ndarray, signalled: np.ndarray,
                        progress: Callable[[int], None] | None) -> tuple[int, int] | None:
    """Run the trades of ``signalled`` (the steps where a cycle is due and a signal is set) on ``engine``.

    Returns None, with nothing done, when the strategy or the engine is not the simple case of the
    module; else ``(step, visited)``: the step the per-step loop goes on from (``len(due)`` when the
    run is done) and the steps the per-step loop would have visited before it.
    """
    intents = signal_intents(engine._decide)
    if (intents is None or not isinstance(engine, BacktestEngine) or len(engine.symbols) != 1 or engine.pending
            or engine.state.portfolio.open_positions or holdings.steps):
        return None
    entry_intent, exit_intent = intents
    if (not engine._lean or engine.paused or engine.max_position_value or engine.router is not None
            or engine._by_cid is not None or engine.triggers_armed or type(engine.venue) is not SimulatedVenue or entry_intent.stop_loss is not None
            or entry_intent.take_profit is not None or entry_intent.stop_loss_pct is not None
            or entry_intent.take_profit_pct is not None or entry_intent.trailing_stop_pct is not None):
        return None
    symbol = engine.symbols[0]
    values = engine.indicators.values.get(symbol)
    if values is None:
        return None
    count = len(due)
    at_close = engine.fill_at_close
    last = engine._last_closed[0]
    bars = engine._bars[0]
    closes = bars.close
    lasts = last[signalled]
    steps, entries = trade_steps(signalled, values[ENTRY][lasts] > 0, values[EXIT][lasts] > 0)
    decided_ns = due[steps]
    decided_last = last[steps]
    reference = closes[decided_last]
    if at_close:
        fill_steps = steps
        fill_bar = decided_last
        fill_price = reference
        fill_ns = bars.close_time_ns[fill_bar]
        fillable = np.ones(len(steps), dtype=bool)
    else:
        fill_steps = steps + 1
        inside = fill_steps < count
        fill_bar = np.full(len(steps), -1, dtype=np.int64)
        fill_bar[inside] = engine._closing_at[0][fill_steps[inside]]
        fillable = fill_bar >= 0
        fill_price = np.where(fillable, bars.open[np.maximum(fill_bar, 0)], np.nan)
        fill_ns = np.where(fillable, bars.open_time_ns[np.maximum(fill_bar, 0)], 0)
        fillable &= fill_ns >= decided_ns  # a bar that opened before the decision cannot fill it
    # The trades the loop below takes: up to the first whose fill the next bar cannot make (the per-step loop
    # then waits for a bar that can, from the step after the decision).
    stuck = np.flatnonzero(~fillable)
    taken = int(stuck[0]) + 1 if len(stuck) else len(steps)

    # SimulatedVenue's prices for every trade at once: a buy's at the fill price raised by the slippage, a sell's
    # lowered by it (the same float operations as SimulatedVenue.buy/sell; a NaN where nothing fills).
    venue = engine.venue
    slip, fee_rate = venue._slip, venue._fee
    venue_price = np.where(entries, fill_price * (1.0 + slip), fill_price * (1.0 - slip))

    portfolio = engine.state.portfolio
    open_positions = portfolio.open_positions
    closed_positions = portfolio.closed_positions
    records = engine._records
    instrument_id = engine.instrument_ids[symbol]
    instrument = engine._instruments[instrument_id]
    round_quantity, min_notional = instrument.round_quantity, instrument.min_notional
    book = accounting.book_quote_fill
    # Holdings.record, whose steps only grow here (each trade fills after the one before): three appends.
    held_at, held_cash, held_quantity = holdings.steps.append, holdings.cash.append, holdings.quantities.append
    entry_value, entry_fraction = entry_intent.value, entry_intent.equity_fraction or 0.0
    entry_note, exit_note = entry_intent.note, exit_intent.note
    position: Any = None
    fills = engine.fills
    # The portfolio's id counters and the engine's fill count, kept in locals while the loop runs (an attribute's
    # read and write per trade each) and written back when it stops: nothing the loop calls reads them.
    order_id, fill_id, position_id = portfolio.next_order_id, portfolio.next_fill_id, portfolio.next_position_id
    report_at = 10_000
    go_on_from = count
    for index, is_entry, decided, price, fill_step, at_price, at_ns, priced in _rows(
            taken, entries, decided_ns, reference, fill_steps, fill_price, fill_ns, venue_price):
        # The decision: BacktestEngine._plan_lean for one plain open or close.
        if is_entry:
            # Sizing's equity: the cash, as valuation() gives it with no position open.
            value = entry_value if entry_value is not None else portfolio.cash * entry_fraction
            position = _new(Position)
            _init_position(position, id=position_id, instrument_id=instrument_id,
                           opened_at=None)  # type: ignore[arg-type]  # until materialise, as in _plan_lean
            position_id += 1
            open_positions.append(position)
            record: list[Any] = [order_id, position, _OPEN, decided, 0, None, value, price, entry_note, None, None]
        else:
            position.last_price = price  # mark_to_market at the decision
            record = [order_id, position, _CLOSE, decided, 0, position.quantity, None, price, exit_note, None, None]
        order_id += 1
        records.append(record)
        if index == taken - 1 and not at_close and (fill_step >= count or not fillable[index]):
            waiting: list[Any] = [(position, record)]  # a record in pending, as _plan_lean leaves it
            engine.pending = waiting  # waits past this loop: for a later bar, or for ever
            go_on_from = min(fill_step, count)
            break
        # The fill: BacktestEngine._fill_record for a plain fill, or the per-step loop from here when not plain. The
        # venue's pricing inline where its answer is plain — a buy of the wanted lots that the cash surely pays for
        # (SimulatedVenue._affordable's first two tests), a close of a quantity held — and SimulatedVenue.buy/sell
        # itself for the rest (exact affordability, a fit to the cash, a rejection): the same floats either way.
        plain = True
        if is_entry:
            wanted = value / priced
            size = round_quantity(wanted) if isfinite(wanted) else 0.0
            notional = size * priced
            debit = notional + notional * fee_rate
            cash = portfolio.cash
            if size > 0 and debit <= cash and debit <= cash * _SURELY_BELOW and not notional < min_notional:
                quantity, fee, slippage = size, notional * fee_rate, size * (priced - at_price)
            else:
                fill = venue.buy(instrument, at_price, value=value, quantity=None, cash_available=cash)
                plain = fill.reject_reason is None
                quantity, priced, fee, slippage = fill.quantity, fill.price, fill.fee, fill.slippage
        else:
            quantity = position.quantity
            if quantity > 0:
                notional = quantity * priced
                fee, slippage = notional * fee_rate, quantity * (at_price - priced)
            else:
                fill = venue.sell(instrument, at_price, quantity=record[5] or 0.0, held=quantity, closing=True)
                plain = fill.reject_reason is None
                quantity, priced, fee, slippage = fill.quantity, fill.price, fill.fee, fill.slippage
        if not plain:
            waiting = [(position, record)]
            engine.pending = waiting
            if at_close:  # the per-step loop decides at this step again: undo the decision (nothing else moved)
                records.pop()
                order_id -= 1
                if is_entry:
                    open_positions.pop()
                    position_id -= 1
                engine.pending = []
            go_on_from = fill_step
            break
        realised = book(portfolio, position, is_entry, quantity, priced, fee)
        closes_position = not is_entry and position.quantity == 0.0
        record[9] = (fill_id, quantity, priced, fee, slippage, realised, at_ns, closes_position)
        fill_id += 1
        if closes_position:
            open_positions.remove(position)
            closed_positions.append(position)
        elif at_close:
            position.last_price = price  # mark_to_market after a fill at the close
        fills += 1
        if len(records) >= RECORDS_KEPT:
            engine._make_filled()
            records = engine._records
        held_at(fill_step)
        held_cash(portfolio.cash)
        held_quantity(0.0 + position.quantity if open_positions else 0.0)  # Engine.quantities()
        if progress is not None and fill_step >= report_at:
            progress(fill_step)
            report_at = (fill_step // 10_000 + 1) * 10_000
    portfolio.next_order_id, portfolio.next_fill_id, portfolio.next_position_id = order_id, fill_id, position_id
    engine.fills = fills
    if progress is not None and go_on_from >= report_at:
        progress(min(go_on_from, count))  # as the per-step loop reports the step it got to
    visited = signalled[signalled < go_on_from]
    if not at_close:
        done = fill_steps[:taken]
        return go_on_from, _union_size(visited, done[done < go_on_from])
    return go_on_from, len(visited)


def _union_size(first: np.ndarray, second: np.ndarray) -> int:
    """How many steps are in either of two increasing arrays of distinct steps: a binary search of one for the
    other's steps (np.union1d sorts both again, 2 % of a 1M-bar run)."""
    if not len(first) or not len(second):
        return len(first) + len(second)
    at = np.minimum(np.searchsorted(first, second), len(first) - 1)
    return len(first) + len(second) - int(np.count_nonzero(first[at] == second))

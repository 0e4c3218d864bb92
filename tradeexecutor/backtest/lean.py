"""The backtest's lean synchronous order path: the engine, with its common orders planned and filled inline.

A backtest's orders never leave the process and nobody watches them as they happen, so most of
what the engine does per order for the daemon's sake is wasted there: a ``CycleReport`` per
cycle with intents, journal event fields, each order's decision time turned back from a datetime
into nanoseconds whenever it waits for a fill, a legality check of a transition that cannot be
illegal, a search of the position's orders for a fill before it is retired. :class:`BacktestEngine`
skips those and nothing else:

- the same ``Order``, ``Fill`` and ``Position`` objects, ids and client order ids (as ``_new_order``);
- the same pricing and sizing (``SimulatedVenue.buy``/``sell``) and the same money movement
  (``accounting.apply_fill``), so fills, fees and cash are identical to the cent — bit for bit;
- the same order of events: sells before buys, a buy waiting for the sells decided with or
  before it, fills at the next bar's open or at the deciding bar's close.

The orders the lean path plans are kept as records in the bar loop — a list per order, a tuple
per fill, with cash, quantity and the position's figures moved in place by the same arithmetic
(``accounting.book_quote_fill``) — and made into their ``Order`` and ``Fill`` objects later, in
batches outside the per-fill path: the filled ones every ``RECORDS_KEPT`` records (so that
records never pile up beside the objects at the run's memory peak), the rest at the end of the
run (:meth:`BacktestEngine.materialise`) or as soon as anything else would read orders
(``Engine.plan``, triggers, a rejection, the strategy's ``position()``, whose entry price comes
from the orders). The ``Position`` objects are made in the loop as before (the strategy's
``has_position()`` and the marks read them), their ``opened_at`` and ``closed_at`` written when
their orders are made.

The lean path handles what a rule-based strategy does on almost every cycle — open a position
without protective orders, close one — and only while nobody listens for events (a backtest
without a journal), the engine is not paused and no position limit applies. Anything else
(increase, reduce, set_triggers, an entry with a stop, an intent the engine would ignore, two
intents on one symbol) goes through ``Engine.plan`` unchanged, so both paths always agree:
tests/test_backtest_lean.py runs strategies through both and compares the states field by field.
"""

from __future__ import annotations

import gc
from dataclasses import fields
from datetime import UTC, datetime
from itertools import repeat
from math import isfinite
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from tradeexecutor.engine import accounting
from tradeexecutor.engine.engine import (
    _BUY,
    _CLOSE,
    _OPEN,
    _SELL,
    _SUBMITTING,
    CycleReport,
    Engine,
    _intent_order,
    _ns,
    _to_datetime,
)
from tradeexecutor.state import Fill, Order, OrderStatus, OrderType, Position, RejectReason, TimeInForce
from tradeexecutor.state.client_id import client_order_ids_ms
from tradeexecutor.strategy.failure import note_strategy_failure
from tradeexecutor.strategy.intents import Intent
from tradeexecutor.strategy.loader import LoadedStrategy
from tradeexecutor.venue.simulated import _SURELY_BELOW, SimulatedVenue

__all__ = ["RECORDS_KEPT", "BacktestEngine"]

#: Records kept before the filled ones are made into their objects (BacktestEngine._make_filled).
RECORDS_KEPT = 1024

_CREATED = OrderStatus.created
_FILLED = OrderStatus.filled
#: Fields of a recorded order (BacktestEngine._records).
_DECIDED, _QUANTITY, _VALUE, _FILL, _ORDER = 3, 5, 6, 9, 10
_PURPOSE = 2
_SEQ_OF, _PURPOSE_OF, _DECIDED_OF = itemgetter(4), itemgetter(_PURPOSE), itemgetter(_DECIDED)
#: See engine.engine._new: a record made without the class call's keyword dict.
_new = object.__new__
_init_position = Position.__init__
_init_order = Order.__init__
_init_fill = Fill.__init__
_MARKET, _GTC = OrderType.market, TimeInForce.gtc
#: The fields BacktestEngine._make passes by position, in their order: a field added, removed or moved must be
#: added there too (this fails the import until it is).
_ORDER_FIELDS = ("id", "client_order_id", "position_id", "instrument_id", "purpose", "side", "created_at", "status",
                 "type", "time_in_force", "quantity", "value", "limit_price", "stop_price", "reference_price",
                 "venue_order_id", "status_reason", "reject_reason", "trigger", "trigger_price", "note",
                 "submitted_at", "updated_at", "closed_at", "fills")
_FILL_FIELDS = ("id", "order_id", "quantity", "price", "at", "fee", "fee_currency", "venue_trade_id", "slippage",
                "realised_pnl", "fee_price", "fee_price_source", "fee_in_base")
if tuple(f.name for f in fields(Order)) != _ORDER_FIELDS or tuple(f.name for f in fields(Fill)) != _FILL_FIELDS:
    raise ImportError("backtest/lean.py: Order or Fill fields changed; update _ORDER_FIELDS, _FILL_FIELDS and _make")
_TERMINAL = frozenset(OrderStatus(s) for s in ("filled", "cancelled", "rejected", "expired"))


def _datetimes(ns: np.ndarray) -> list[datetime]:
    """Epoch nanoseconds as aware UTC datetimes, each the one engine._to_datetime gives (microseconds, rounded
    down): pandas makes them in one pass, half the time of a Python call each. Whole seconds (every decision of
    a strategy cycling on minutes or longer) by ``datetime.fromtimestamp`` mapped in C over the integer seconds,
    exact and a third faster again than pandas' fixed cost on a batch."""
    if len(ns) and not (ns % 1_000_000_000).any():
        return list(map(datetime.fromtimestamp, (ns // 1_000_000_000).tolist(), repeat(UTC, len(ns))))
    return pd.to_datetime(ns // 1000, unit="us", utc=True).to_pydatetime().tolist()  # type: ignore[no-any-return]


class BacktestEngine(Engine):
    """The engine a backtest runs: ``Engine`` with a lean path for plain entries and exits (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        #: The lean path is taken only when no event sink listens (events are the general path's job).
        self._lean = not self._journal
        #: Decision time (epoch ns) of each order the lean path created and that has not filled yet.
        self._created_ns: dict[int, int] = {}
        self._instruments = {iid: self.state.instrument(iid) for iid in self.symbol_of}
        #: The instrument an intent without a symbol means (None: the strategy trades several).
        self._default_symbol = self.symbols[0] if len(self.symbols) == 1 else None
        #: The orders the lean path planned and not yet made into Order objects, in the order they were created:
        #: ``[id, position, purpose, decision ns, seq, quantity, value, reference price, note, fill, Order]``
        #: with ``fill`` the tuple ``(id, quantity, price, fee, slippage, realised P&L, fill ns, closes the
        #: position)`` once filled and the Order once made (materialise). Per order, a list instead of an Order,
        #: a Fill, a client order id, datetimes and status changes in the bar loop; the objects are made at the
        #: end of the run, and before anything that reads orders runs (see materialise).
        self._records: list[list[Any]] = []
        #: True when materialise ran during fill_pending's loop (its waiting records become their Orders).
        self._made = False
        self.context._set_marker(self._marks_for_reader)
        self._take_columns()

    def _take_columns(self) -> None:
        """Memoryviews of the columns the order path reads: indexing one gives a Python number, no numpy scalar."""
        self._closing_mv = [memoryview(column) for column in self._closing_at]  # type: ignore[arg-type]
        self._last_mv = [memoryview(column) for column in self._last_closed]  # type: ignore[arg-type]
        self._open_mv = [memoryview(bars.open) for bars in self._bars]  # type: ignore[arg-type]
        self._close_mv = [memoryview(bars.close) for bars in self._bars]  # type: ignore[arg-type]
        self._open_ns_mv = [memoryview(bars.open_time_ns) for bars in self._bars]  # type: ignore[arg-type]

    def follow_market(self) -> None:
        """As Engine.follow_market, and the columns taken again (a backtest's market never grows)."""
        generation = self._generation
        super().follow_market()
        if self._generation != generation:
            self._bars = [self.market.bars[s] for s in self.symbols]
            self._take_columns()

    # -- 4. the strategy cycle ---------------------------------------------------------------

    def decide(self, step: int, cycle_time_ns: int) -> None:
        """Ask the strategy; plan its intents on the lean path when it can take them, else through Engine.plan."""
        context = self.context
        context._move_to(step, cycle_time_ns)
        try:
            intents = self._decide(context)
        except Exception as exc:
            note_strategy_failure(exc, self.strategy.path, _to_datetime(cycle_time_ns))
            raise
        if intents:
            self.take(intents, step, cycle_time_ns)

    def take(self, intents: Any, step: int, cycle_time_ns: int) -> None:
        """Engine.take: what a cycle's decide() returned (not empty) planned on the lean path when it can, else
        through Engine.plan."""
        if type(intents) is not list:  # a tuple, a generator, anything else: Engine._checked takes it as it is
            intents = self._checked(intents)
            if not intents:
                return  # a generator that yielded nothing: no plan, no marks, as in Engine.plan
        if not self._plan_lean(intents, step, cycle_time_ns):
            self.plan(self._checked(intents), step, cycle_time_ns)

    def _plan_lean(self, intents: list[Intent], step: int, cycle_time_ns: int) -> bool:
        """Plan the list decide() returned as Engine.plan would, when every intent is a plain open or close of an
        instrument of the strategy; False, with nothing done, when not (Engine._checked then explains any error)."""
        if not self._lean or self.paused or self.max_position_value or self.router is not None or self._by_cid is not None:
            return False
        if len(intents) > 1:
            if any(type(intent) is not Intent for intent in intents):
                return False
            intents = sorted(intents, key=_intent_order)  # sells, then buys
        portfolio = self.state.portfolio
        open_positions = portfolio.open_positions
        default = self._default_symbol
        ids = self.instrument_ids
        plans: list[tuple[Intent, int, Position | None, float]] = []
        buys = False
        for intent in intents:
            if type(intent) is not Intent:
                return False
            symbol = intent.symbol
            instrument_id = ids.get(default if symbol is None else symbol)  # type: ignore[arg-type]
            if instrument_id is None:
                return False
            position = None
            for candidate in open_positions:
                if candidate.instrument_id == instrument_id:
                    position = candidate
                    break
            action = intent.action
            if action == "open":
                if (position is not None or intent.stop_loss is not None or intent.take_profit is not None
                        or intent.stop_loss_pct is not None or intent.take_profit_pct is not None
                        or intent.trailing_stop_pct is not None):
                    return False
                buys = True
            elif action != "close" or position is None or not position.quantity > 0:
                return False
            slot = self._slot[instrument_id]
            last = self._last_mv[slot][step]
            if last < 0:
                return False
            plans.append((intent, instrument_id, position, self._close_mv[slot][last]))
        if len(plans) > 1 and len({instrument_id for _, instrument_id, _, _ in plans}) < len(plans):
            return False  # intents that meet on one symbol: the general path sees each after the one before
        if open_positions:
            self.mark_to_market(step)  # sizing reads the marks, and a closed position keeps its last one
        equity = self.valuation()[0] if buys else 0.0
        pending: list[Any] = self.pending
        records = self._records
        for seq, (intent, instrument_id, position, price) in enumerate(plans):
            if position is None:
                value = intent.value if intent.value is not None else equity * (intent.equity_fraction or 0.0)
                position = _new(Position)  # Position(...) without the class call's keyword dict
                # opened_at is its entry's decision time, written when the entry's record is made into its Order
                # (materialise; nothing reads it before): one datetime less per position in the loop.
                _init_position(position, id=portfolio.next_position_id, instrument_id=instrument_id,
                               opened_at=None)  # type: ignore[arg-type]  # until materialise
                portfolio.next_position_id += 1
                open_positions.append(position)
                record: Any = [portfolio.next_order_id, position, _OPEN, cycle_time_ns, seq, None, value, price,
                               intent.note, None, None]
            else:
                record = [portfolio.next_order_id, position, _CLOSE, cycle_time_ns, seq, position.quantity, None,
                          price, intent.note, None, None]
            portfolio.next_order_id += 1
            records.append(record)
            pending.append((position, record))
        if self.fill_at_close:
            self._fill_at_close(step, CycleReport(cycle_time_ns))
            self.mark_to_market(step)
        return True

    # -- 1. fills of waiting orders -----------------------------------------------------------

    def fill_pending(self, step: int) -> None:
        """Engine.fill_pending, with each order's decision time kept in nanoseconds and the columns as memoryviews;
        an order the lean path recorded (a list, see ``_records``) is filled by ``_fill_record``."""
        if not self._lean:
            super().fill_pending(step)
            return
        still: list[Any] = []
        self._made = False
        waiting_sell_at: int | None = None  # earliest decision whose sells have not filled yet
        created = self._created_ns
        slots = self._slot
        for position, order in self.pending:
            if type(order) is list:
                if order[_ORDER] is not None:  # made into its Order by an earlier fill of this loop
                    order = order[_ORDER]
                else:
                    decided = order[_DECIDED]
                    is_buy = order[_PURPOSE] is _OPEN
                    if is_buy and waiting_sell_at is not None and waiting_sell_at <= decided:
                        still.append((position, order))  # sells decided with or before it come first
                        continue
                    slot = slots[position.instrument_id]
                    index = self._closing_mv[slot][step]
                    if index < 0 or self._open_ns_mv[slot][index] < decided:
                        still.append((position, order))
                        if not is_buy:
                            waiting_sell_at = decided if waiting_sell_at is None else min(waiting_sell_at, decided)
                        continue
                    self._fill_record(position, order, self._open_mv[slot][index], self._open_ns_mv[slot][index])
                    continue
            status = order.status
            if status is not _CREATED and status in _TERMINAL:
                continue
            decided = created.get(order.id)
            if decided is None:
                decided = _ns(order.created_at)
            is_buy = order.side is _BUY
            if is_buy and waiting_sell_at is not None and waiting_sell_at <= decided:
                still.append((position, order))  # sells decided with or before it come first
                continue
            slot = slots[order.instrument_id]
            index = self._closing_mv[slot][step]
            if index < 0 or self._open_ns_mv[slot][index] < decided:
                still.append((position, order))
                if not is_buy:
                    waiting_sell_at = decided if waiting_sell_at is None else min(waiting_sell_at, decided)
                continue
            open_ns = self._open_ns_mv[slot][index]
            # A next-open fill usually happens at its decision's time (a cycle at a bar's close is the next bar's
            # open): the order's own datetime then, one conversion less per fill (datetimes are immutable).
            at = order.created_at if open_ns == decided else _to_datetime(open_ns)
            self._fill(position, order, self._open_mv[slot][index], at)
        if self._made:  # records made into Orders during the loop: the waiting ones as their Orders
            still = [(p, o[_ORDER]) if type(o) is list and o[_ORDER] is not None else (p, o) for p, o in still]
        self.pending = still

    def _fill_at_close(self, step: int, report: CycleReport) -> None:
        """Engine._fill_at_close (the deciding bar's close), for recorded orders too."""
        if not any(type(order) is list for _, order in self.pending):
            super()._fill_at_close(step, report)
            return
        pending, self.pending = self.pending, []
        for position, order in pending:
            slot = self._slot[position.instrument_id]
            index = self._last_mv[slot][step]
            close_ns = int(self._bars[slot].close_time_ns[index])
            if type(order) is list:
                self._fill_record(position, order, self._close_mv[slot][index], close_ns)
            elif not order.is_terminal:
                self._fill(position, order, self._close_mv[slot][index], _to_datetime(close_ns))
        self._made = False

    # -- recorded orders ----------------------------------------------------------------------

    def _fill_record(self, position: Position, record: list[Any], price: float, at_ns: int) -> None:
        """Fill a recorded order at ``price`` (at ``at_ns``) as _fill fills an Order — the same venue pricing
        and the same money movement (accounting.book_quote_fill) — keeping the fill as a tuple in the record.
        Anything but a plain fill (a rejection, a sell of nothing, an entry with protective orders) makes every
        record into its objects first and goes through _fill."""
        made = record[_ORDER]
        if made is not None:
            self._fill(position, made, price, made.created_at if at_ns == record[_DECIDED] else _to_datetime(at_ns))
            return
        portfolio = self.state.portfolio
        instrument = self._instruments[position.instrument_id]
        is_buy = record[_PURPOSE] is _OPEN
        venue = self.venue
        # SimulatedVenue's plain answers priced inline with its float operations in its order, as the signals()
        # trade loop does (backtest.signal_events): a buy of the wanted lots that the cash surely pays for (the
        # first two tests of SimulatedVenue._affordable), a close of a held quantity. Everything else — exact
        # affordability, a fit to the cash, a rejection, another venue — asks the venue itself. A call with
        # keywords and a frozen SimulatedFill per fill were a quarter of the decide() path's fill.
        inline = type(venue) is SimulatedVenue
        if is_buy:
            plain = position.quantity == 0 and position.stop_loss_pct is None \
                and position.take_profit_pct is None and position.trailing_stop_pct is None
            value = record[_VALUE]
            if inline and plain and record[_QUANTITY] is None and value is not None:
                fee_rate = venue._fee
                priced = price * (1.0 + venue._slip)
                wanted = value / priced
                quantity = instrument.round_quantity(wanted) if isfinite(wanted) else 0.0
                notional = quantity * priced
                debit = notional + notional * fee_rate
                cash = portfolio.cash
                inline = quantity > 0 and debit <= cash and debit <= cash * _SURELY_BELOW \
                    and not notional < instrument.min_notional
                if inline:
                    fee, slippage = notional * fee_rate, quantity * (priced - price)
            else:
                inline = False
            if not inline:
                fill = venue.buy(instrument, price, value=value, quantity=record[_QUANTITY], cash_available=portfolio.cash)
                plain = plain and fill.reject_reason is None
                quantity, priced, fee, slippage = fill.quantity, fill.price, fill.fee, fill.slippage
        else:
            quantity = position.quantity
            plain = quantity > 0
            if plain:
                if inline:
                    priced = price * (1.0 - venue._slip)
                    notional = quantity * priced
                    fee, slippage = notional * venue._fee, quantity * (price - priced)
                else:
                    fill = venue.sell(instrument, price, quantity=record[_QUANTITY] or 0.0, held=quantity, closing=True)
                    plain = fill.reject_reason is None
                    quantity, priced, fee, slippage = fill.quantity, fill.price, fill.fee, fill.slippage
        if not plain:
            self.materialise()
            self._fill_record(position, record, price, at_ns)
            return
        realised = accounting.book_quote_fill(portfolio, position, is_buy, quantity, priced, fee)
        closes = not is_buy and position.quantity == 0.0
        record[_FILL] = (portfolio.next_fill_id, quantity, priced, fee, slippage, realised, at_ns, closes)
        portfolio.next_fill_id += 1
        if closes:
            # closed_at (the fill's time) is written when the record is made into its Order, as opened_at is.
            # accounting.retire_position, knowing the position has a fill (this one): to the closed list.
            open_positions = portfolio.open_positions
            for index, candidate in enumerate(open_positions):
                if candidate is position:
                    del open_positions[index]
                    break
            portfolio.closed_positions.append(position)
        self.fills += 1
        if len(self._records) >= RECORDS_KEPT:
            self._make_filled()

    def _make_filled(self) -> None:
        """Make the filled records into their objects and keep the waiting ones (each is its position's last
        order: a later one — a close — needs the position filled). Records then stay a few hundred KB at any
        time; kept to the end they would hold ~55 MB at 5M bars beside the objects made from them, at the
        run's memory peak."""
        records = self._records
        waiting = [record for record in records if record[_FILL] is None]
        self._records = waiting
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._make([record for record in records if record[_FILL] is not None] if waiting else records)
        finally:
            if enabled:
                gc.enable()

    def materialise(self) -> None:
        """Make every recorded order into its ``Order`` (and a filled one's ``Fill``), field by field the records
        ``_new_order``, ``_submit`` and ``accounting.apply_fill`` would have made at the time, appended to its
        position's orders; a waiting one takes its record's place in ``pending``. Called at the end of the run
        and before anything but the lean path looks at orders (Engine.plan, triggers, a rejection, the
        strategy's ``position()``)."""
        records, self._records = self._records, []
        if not records:
            return
        enabled = gc.isenabled()
        gc.disable()  # tens of thousands of records that live as long as the state: no collection to find garbage
        try:
            self._make(records)
        finally:
            if enabled:
                gc.enable()
        self._made = True
        self.pending = [(p, o[_ORDER]) if type(o) is list else (p, o) for p, o in self.pending]

    def _make(self, records: list[list[Any]]) -> None:
        """The objects of ``records``, each made by one positional call of its class's __init__ (_ORDER_FIELDS and
        _FILL_FIELDS: a keyword call costs half as much again, 77,500 objects in the 1M-bar benchmark)."""
        created = self._created_ns
        instruments = self._instruments
        decisions = np.fromiter(map(_DECIDED_OF, records), dtype=np.int64, count=len(records))
        # The client order ids and decision times of the whole batch in one numpy pass each (client_order_ids_ms,
        # _datetimes).
        cids = client_order_ids_ms(self.run_key, (decisions // 1_000_000).tolist(), list(map(_SEQ_OF, records)),
                                   list(map(_PURPOSE_OF, records)))
        for record, cid, at in zip(records, cids, _datetimes(decisions), strict=True):
            order_id, position, purpose, decided, _seq, quantity, value, reference, note, fill, _ = record
            if purpose is _OPEN:
                position.opened_at = at
            side = _BUY if purpose is _OPEN else _SELL
            order = _new(Order)
            if fill is None:  # still waiting: created, and fill_pending reads its decision time from _created_ns
                _init_order(order, order_id, cid, position.id, position.instrument_id, purpose, side, at, _CREATED,
                            _MARKET, _GTC, quantity, value, None, None, reference, None, None, None, None, None,
                            note, None, at, None, [])
                created[order_id] = decided
            else:
                fill_id, filled, price, fee, slippage, realised, at_ns, closes = fill
                done = at if at_ns == decided else _to_datetime(at_ns)
                made = _new(Fill)
                _init_fill(made, fill_id, order_id, filled, price, done, fee,
                           instruments[position.instrument_id].quote_currency, None, slippage, realised, None, None,
                           False)
                # created → submitting → filled at ``done``, as _submit and the fill's transition leave it.
                _init_order(order, order_id, cid, position.id, position.instrument_id, purpose, side, at, _FILLED,
                            _MARKET, _GTC, quantity, value, None, None, reference, None, None, None, None, None,
                            note, done, done, done, [made])
                if closes:
                    position.closed_at = done
            position.orders.append(order)
            record[_ORDER] = order

    # -- the general path sees Orders ---------------------------------------------------------

    def plan(self, intents: list[Intent], step: int, cycle_time_ns: int) -> CycleReport:
        """Engine.plan, with the recorded orders made into Orders first."""
        self.materialise()
        return super().plan(intents, step, cycle_time_ns)

    def check_triggers(self, step: int) -> int:
        """Engine.check_triggers, with the recorded orders made into Orders first."""
        self.materialise()
        return super().check_triggers(step)

    def close_now(self, position: Position, step: int, *, by: str) -> Order | None:
        """Engine.close_now, with the recorded orders made into Orders first."""
        self.materialise()
        return super().close_now(position, step, by=by)

    def cancel_entries(self, step: int, reason: str) -> int:
        """Engine.cancel_entries, with the recorded orders made into Orders first."""
        self.materialise()
        return super().cancel_entries(step, reason)

    def exit_all(self, step: int, kind: str) -> int:
        """Engine.exit_all, with the recorded orders made into Orders first."""
        self.materialise()
        return super().exit_all(step, kind)

    def use_strategy(self, strategy: LoadedStrategy) -> None:
        """Engine.use_strategy, the new context reading positions as this one does."""
        super().use_strategy(strategy)
        self.context._set_marker(self._marks_for_reader)

    def _marks_for_reader(self, step: int) -> None:
        """The context's marker: a strategy reading a position (its entry price comes from its orders) or the
        equity sees the records made into Orders, and the marks of ``step``."""
        self.materialise()
        self.mark_to_market(step)

    # -- fills --------------------------------------------------------------------------------

    def _fill(self, position: Position, order: Order, price: float, at: Any) -> bool:
        """Engine._fill without the journal: the venue prices, accounting.apply_fill moves the money."""
        if not self._lean:
            return super()._fill(position, order, price, at)
        if self._records:
            self.materialise()
        self._created_ns.pop(order.id, None)
        portfolio = self.state.portfolio
        instrument = self._instruments[order.instrument_id]
        if order.side is _BUY:
            fill = self.venue.buy(instrument, price, value=order.value, quantity=order.quantity,
                                  cash_available=portfolio.cash)
            self._submit(order, at)
            if fill.reject_reason is not None:
                self._reject(position, order, fill.reject_reason, fill.reason or "", at)
                return False
            opening = position.quantity == 0
            accounting.apply_fill(portfolio, position, order, fill.quantity, fill.price, fill.fee, at,
                                  slippage=fill.slippage, fee_currency=instrument.quote_currency)
            if opening and (position.stop_loss_pct is not None or position.take_profit_pct is not None
                            or position.trailing_stop_pct is not None):
                self._arm_triggers(position, fill.price)
        else:
            if position.quantity <= 0:
                self._reject(position, order, RejectReason.nothing_to_sell,
                             "nothing to sell: the position holds no quantity", at)
                return False
            fill = self.venue.sell(instrument, price, quantity=order.quantity or 0.0, held=position.quantity,
                                   closing=order.purpose is _CLOSE)
            self._submit(order, at)
            if fill.reject_reason is not None:
                self._reject(position, order, fill.reject_reason, fill.reason or "", at)
                return False
            accounting.apply_fill(portfolio, position, order, fill.quantity, fill.price, fill.fee, at,
                                  slippage=fill.slippage, fee_currency=instrument.quote_currency)
            if position.closed_at is not None:
                # accounting.retire_position, knowing the position has a fill (this one): to the closed list.
                open_positions = portfolio.open_positions
                for index, candidate in enumerate(open_positions):
                    if candidate is position:
                        del open_positions[index]
                        break
                portfolio.closed_positions.append(position)
        self.fills += 1
        return True

    @staticmethod
    def _submit(order: Order, at: Any) -> None:
        """created → submitting (always legal) without the transition table's lookups; any other status through it."""
        if order.status is _CREATED:
            order.status = _SUBMITTING
            order.updated_at = at
            order.submitted_at = at
        else:
            order.transition(_SUBMITTING, at)

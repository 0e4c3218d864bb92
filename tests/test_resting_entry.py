"""Live mode: an entry the exchange filled in part and still holds open when the position is closed (issue 13's
"partial fills mishandled").

The close cancels the entry at the exchange first — what the exchange filled before the cancel reached it
is booked and sold too — and a position is never retired while one of its orders may still change at the
exchange, so the exchange's later news of it (its cancel, or a late fill of base asset) is applied, never
ignored. Through the real Engine and OrderRouter against the in-memory exchange twin, with a real ledger
file for the restart; the ledger's cash and quantities are checked against the exchange's balances.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from scripted import SCRIPTED, ohlc
from test_engine_router import T0, decide_open, new_state
from test_engine_writeahead import CONFIG, cycle_ns, live_engine_over, make_engine, orders
from tradeexecutor.backtest.runner import new_state as new_run_state
from tradeexecutor.daemon.risk_guard import RiskGuard
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.accounting import recompute_cash, recompute_from_fills
from tradeexecutor.engine.engine import Engine
from tradeexecutor.engine.router import OrderRouter, said
from tradeexecutor.ledger import Ledger
from tradeexecutor.state import (
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    Position,
    State,
    TriggerKind,
    client_order_id,
    run_key,
)
from tradeexecutor.strategy.api import increase, open_long, reduce
from tradeexecutor.strategy.intents import close
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.venue import InMemoryVenue
from tradeexecutor.venue.model import (
    LOST_AFTER,
    LOST_AFTER_ANSWERS,
    FillReport,
    NotFoundAnswers,
    OrderCancelled,
    OrderFilled,
)
from venue_contract import AAA

Journal = list[tuple[str, dict[str, Any]]]


def live_engine(tmp_path: Path, journal: Journal, prices: list[Any] | None = None,
                stop_loss_pct: float | None = None) -> tuple[Engine, InMemoryVenue, Order]:
    """A live engine whose entry (10 AAA at 100) the exchange filled half of and still holds open."""
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", prices or [100.0, 101.0, 102.0, 103.0, 104.0]),
                                        asset_types={"AAA": "equity"})

    def sink(event: str, /, **fields: Any) -> None:
        journal.append((event, fields))

    engine = Engine(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG, events=sink)
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True  # accepted; it rests on the book
    engine.live_venue = venue
    engine.start_write_ahead(lambda: None, lambda: T0)
    engine.plan([open_long("AAA", value=1000, stop_loss_pct=stop_loss_pct)], 0, cycle_ns(0))
    engine.manage(1)
    (entry,) = orders(engine)
    venue.hold = False
    venue.partial = [0.5, 0.5]
    venue.advance({"AAA": 100.0}, T0)  # the exchange fills half of it
    engine.drain()
    assert entry.status is OrderStatus.partially_filled and entry.filled_quantity == 5.0
    assert [o for _, o in engine.pending] == [entry]
    return engine, venue, entry


def check_books(engine: Engine, venue: InMemoryVenue) -> None:
    """The ledger equals the exchange: every fill of it ours, cash and the quantity held the same."""
    state = engine.state
    sent = dict.fromkeys(cid for method, cid in venue.calls if method == "submit")
    venue_fills = sorted((f.client_order_id, f.venue_trade_id, f.quantity, f.price)
                         for cid in sent for f in venue.order_fills(cid))
    ours = sorted((o.client_order_id, f.venue_trade_id, f.quantity, f.price)
                  for o in state.portfolio.all_orders() for f in o.fills)
    assert ours == venue_fills
    for position in state.portfolio.all_positions():
        figures = recompute_from_fills(position)
        assert (figures.quantity, figures.cost_basis) == (position.quantity, position.cost_basis)
    assert state.portfolio.cash == venue.balances()["USD"].free
    assert recompute_cash(state.initial_cash, state.portfolio) == pytest.approx(state.portfolio.cash, abs=1e-9)
    held = venue.balances().get("AAA")
    assert sum(p.quantity for p in state.portfolio.open_positions) == (held.free if held else 0.0)


def sell_it(engine: Engine, venue: InMemoryVenue, step: int) -> Order:
    """Send the planned close at the next bar and let the exchange fill it; the close."""
    engine.manage(step)
    venue.partial = []
    venue.advance({"AAA": 101.0}, T0)
    engine.drain()
    sold = orders(engine)[-1]
    assert sold.purpose is OrderPurpose.close and sold.status is OrderStatus.filled
    return sold


def test_close_cancels_the_resting_entry_at_the_exchange_and_sells_what_it_bought(tmp_path: Path) -> None:
    journal: Journal = []
    engine, venue, entry = live_engine(tmp_path, journal)
    position = engine.state.portfolio.open_positions[0]
    report = engine.plan([close("AAA")], 1, cycle_ns(1))
    assert report.planned == 1 and not report.ignored
    assert ("cancel", entry.client_order_id) in venue.calls  # asked of the exchange, in the close's own job
    assert entry.status is OrderStatus.cancelled and entry.filled_quantity == 5.0
    assert venue.fetch_order(entry.client_order_id).status is OrderStatus.cancelled  # type: ignore[union-attr]
    cancelled = [f for e, f in journal if e == "order_cancelled"]
    assert [(f["client_order_id"], f["reason"]) for f in cancelled] == [
        (entry.client_order_id, "cancelled by close() before it filled")]
    planned = orders(engine)[-1]
    assert planned.purpose is OrderPurpose.close and planned.quantity == 5.0
    sold = sell_it(engine, venue, 2)
    assert sold.filled_quantity == 5.0
    assert engine.state.portfolio.open_positions == [] and list(engine.state.portfolio.closed_positions) == [position]
    assert engine.pending == []
    check_books(engine, venue)
    assert len([e for e, _ in journal if e == "order_cancelled"]) == 1


def test_a_fill_the_exchange_made_before_the_cancel_reached_it_is_booked_and_sold_too(tmp_path: Path) -> None:
    journal: Journal = []
    engine, venue, entry = live_engine(tmp_path, journal)
    venue.advance({"AAA": 100.5}, T0)  # the exchange fills the rest; the executor has not heard of it yet
    engine.plan([close("AAA")], 1, cycle_ns(1))
    assert ("cancel", entry.client_order_id) in venue.calls  # too late: the exchange had nothing left to cancel
    assert entry.status is OrderStatus.filled and entry.filled_quantity == 10.0
    filled = [f for e, f in journal if e == "order_filled" and f["client_order_id"] == entry.client_order_id]
    assert [f["quantity"] for f in filled] == [5.0, 5.0]  # the late fill journaled with the fill that books it
    assert not [e for e, _ in journal if e == "order_cancelled"]
    planned = orders(engine)[-1]
    assert planned.purpose is OrderPurpose.close and planned.quantity == 10.0  # all the exchange bought
    sold = sell_it(engine, venue, 2)
    assert sold.filled_quantity == 10.0 and engine.state.portfolio.open_positions == []
    check_books(engine, venue)


def test_a_stop_loss_fires_on_a_position_bought_in_part_cancelling_the_rest_first(tmp_path: Path) -> None:
    """A resting entry is not an exit in flight: the stop still protects what was bought, and the exit cancels
    the entry at the exchange before it sells (nothing is bought after the stop sold)."""
    journal: Journal = []
    engine, venue, entry = live_engine(tmp_path, journal, prices=[100.0, 100.0, (99.0, 99.0, 90.0, 91.0), 91.0, 91.0],
                                       stop_loss_pct=0.05)
    position = engine.state.portfolio.open_positions[0]
    assert position.stop_loss == pytest.approx(95.0) and engine.in_flight(position) is None
    venue.partial = []
    venue.hold = True  # the exit rests until the exchange is given a price
    assert engine.check_triggers(2) == 1
    assert entry.status is OrderStatus.cancelled and entry.filled_quantity == 5.0
    exit_order = orders(engine)[-1]
    assert exit_order.trigger is not None and exit_order.quantity == 5.0
    venue.hold = False
    venue.advance({"AAA": 91.0}, T0)
    engine.drain()
    assert exit_order.status is OrderStatus.filled and engine.state.portfolio.open_positions == []
    check_books(engine, venue)


def test_a_cancel_whose_answer_was_lost_is_journaled_when_the_exchange_confirms_and_close_then_goes_on(
        tmp_path: Path) -> None:
    """The exchange cancelled the entry but its answer never came: the job fails temporarily (retried by the loop)
    with nothing sold, the next drain applies the exchange's cancel (``order_cancelled``, once), and the close
    taken again sells what the entry bought."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, entry = live_engine(tmp_path, journal)
    venue.fail_next("cancel", after_effect=True)
    with pytest.raises(TemporaryError):
        engine.plan([close("AAA")], 1, cycle_ns(1))
    assert entry.status is OrderStatus.partially_filled and len(orders(engine)) == 1  # nothing else decided
    assert engine.drain() > 0
    assert entry.status is OrderStatus.cancelled
    assert [(f["client_order_id"], f["reason"]) for e, f in journal if e == "order_cancelled"] == [
        (entry.client_order_id, "cancelled by close() before it filled")]
    assert not [e for e, _ in journal if e == "order_expired"]
    report = engine.plan([close("AAA")], 1, cycle_ns(1))
    assert report.planned == 1 and orders(engine)[-1].quantity == 5.0
    sell_it(engine, venue, 2)
    assert engine.state.portfolio.open_positions == [] and len([e for e, _ in journal if e == "order_cancelled"]) == 1
    check_books(engine, venue)


# -- the router: a close filled while the entry still rested ----------------------------------------------------


def _close_order(state: State, quantity: float) -> Order:
    position = state.portfolio.open_positions[0]
    order = Order(id=state.portfolio.next_order_id, position_id=position.id, instrument_id=1,
                  client_order_id=client_order_id(run_key(state.name, state.created_at), T0, 1, OrderPurpose.close),
                  purpose=OrderPurpose.close, side=OrderSide.sell, created_at=T0, quantity=quantity)
    state.portfolio.next_order_id += 1
    position.orders.append(order)
    order.transition(OrderStatus.submitting, T0)
    return order


def _sold_while_resting(tmp_path: Path) -> tuple[Ledger, Order]:
    """A ledger holding a position whose close sold the 5 AAA bought while the rest of its entry still rested."""
    state = new_state()
    router = OrderRouter(state, InMemoryVenue(), lambda: None, lambda: T0 + timedelta(minutes=1))
    entry = decide_open(state)
    entry.transition(OrderStatus.submitting, T0)
    entry.transition(OrderStatus.open, T0)
    cid = entry.client_order_id
    router.apply(OrderFilled(cid, FillReport(cid, "t1", 5.0, 100.0, 0.5, "USD", T0), complete=False))
    sold = _close_order(state, 5.0)
    router.apply(OrderFilled(sold.client_order_id, FillReport(sold.client_order_id, "t2", 5.0, 101.0, 0.505, "USD", T0),
                             complete=True))
    (position,) = state.portfolio.open_positions  # holds nothing, and is not retired: its entry may still change
    assert position.quantity == 0.0 and not position.is_open and entry.status is OrderStatus.partially_filled
    assert len(state.portfolio.closed_positions) == 0
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.save(state)
    return ledger, entry


def _restarted(ledger: Ledger) -> tuple[State, OrderRouter]:
    state = ledger.load()
    assert state is not None
    return state, OrderRouter(state, InMemoryVenue(), lambda: ledger.save(state), lambda: T0 + timedelta(minutes=3))


def test_the_exchanges_later_cancel_of_the_entry_is_applied_and_retires_the_position(tmp_path: Path) -> None:
    ledger, entry = _sold_while_resting(tmp_path)
    state, router = _restarted(ledger)
    assert [o.client_order_id for _, o in router.pending()] == [entry.client_order_id]  # followed after a restart
    router.apply(OrderCancelled(entry.client_order_id, T0 + timedelta(minutes=2)))
    (restored,) = [o for o in state.portfolio.all_orders() if o.client_order_id == entry.client_order_id]
    assert restored.status is OrderStatus.cancelled
    assert state.portfolio.open_positions == [] and len(state.portfolio.closed_positions) == 1
    assert state.portfolio.cash == 10_000.0 - (5.0 * 100.0 + 0.5) + (5.0 * 101.0 - 0.505)
    assert recompute_cash(state.initial_cash, state.portfolio) == state.portfolio.cash


def test_a_late_fill_of_the_entry_reopens_the_position_with_what_the_exchange_bought(tmp_path: Path) -> None:
    ledger, entry = _sold_while_resting(tmp_path)
    state, router = _restarted(ledger)
    cid = entry.client_order_id
    router.apply(OrderFilled(cid, FillReport(cid, "t3", 5.0, 102.0, 0.51, "USD", T0 + timedelta(minutes=2)),
                             complete=True))
    router.commit()
    committed = ledger.load()
    assert committed is not None
    state = committed
    (position,) = state.portfolio.open_positions
    assert position.is_open and position.quantity == 5.0 and position.cost_basis == 5.0 * 102.0
    assert [o.status for o in position.orders] == [OrderStatus.filled, OrderStatus.filled]
    assert state.portfolio.cash == 10_000.0 - (5.0 * 100.0 + 0.5) + (5.0 * 101.0 - 0.505) - (5.0 * 102.0 + 0.51)
    assert recompute_cash(state.initial_cash, state.portfolio) == state.portfolio.cash
    figures = recompute_from_fills(position)
    assert (figures.quantity, figures.cost_basis) == (position.quantity, position.cost_basis)


# -- against the exchange simulator, through the unmodified ccxt client --------------------------------------


def simulator_engine(tmp_path: Path, running: Any, venue: Any = None) -> tuple[Engine, Journal]:
    """A live engine on AAA (the scripted strategy, daily bars at 100) trading through the real ccxt client against
    the running ``exchange-sim`` (reset, AAA pinned at 100), write-ahead on, and its journal; ``venue``: the ccxt
    venue to use (default ``aaa_venue(running)``)."""
    from test_venue_ccxt import aaa_venue, pin
    from tradeexecutor.strategy.loader import load_strategy

    running.control("POST", "reset")
    pin(running, 100.0)
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", [100.0] * 5), asset_types={"AAA": "equity"})
    journal: Journal = []
    engine = Engine(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG,
                    events=lambda event, /, **fields: journal.append((event, fields)))
    engine.live_venue = venue if venue is not None else aaa_venue(running)
    engine.start_write_ahead(lambda: None, lambda: T0)
    return engine, journal


def test_against_the_simulator_a_limit_entry_filled_in_part_is_cancelled_by_close_and_the_books_agree(
        tmp_path: Path) -> None:
    """A limit entry the simulator fills in part (its partial-fill fault: the first part at once, the next an hour
    later) and holds open; the strategy's close() cancels it at the exchange and sells what it bought. Afterwards
    the simulator's orders, trades and balances are the ledger's."""
    pytest.importorskip("ccxt")
    from exchange_sim_helpers import serve
    from test_venue_ccxt import aaa_simulator
    from tradeexecutor.state import OrderType

    with serve(aaa_simulator(), threads=4) as running:
        engine, journal = simulator_engine(tmp_path, running)
        engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
        (entry,) = orders(engine)
        entry.type, entry.limit_price, entry.quantity, entry.value = OrderType.limit, 101.0, 10.0, None  # a limit
        running.control("POST", "faults", {"kind": "partial_fill", "parts": 2, "interval": 3600, "count": 1})
        engine.manage(1)
        assert entry.status is OrderStatus.partially_filled and entry.filled_quantity == 5.0

        engine.plan([close("AAA")], 1, cycle_ns(1))
        assert entry.status is OrderStatus.cancelled and entry.filled_quantity == 5.0
        assert [f["client_order_id"] for e, f in journal if e == "order_cancelled"] == [entry.client_order_id]
        engine.manage(2)  # the close: a market sell the simulator fills on arrival
        sold = orders(engine)[-1]
        assert sold.purpose is OrderPurpose.close and sold.status is OrderStatus.filled and sold.filled_quantity == 5.0
        assert engine.state.portfolio.open_positions == [] and len(engine.state.portfolio.closed_positions) == 1

        _, exchange_orders = running.control("GET", "orders")
        assert sorted((o["clientOrderId"], o["status"], float(o["executedQty"])) for o in exchange_orders) == sorted(
            [(entry.client_order_id, "CANCELED", 5.0), (sold.client_order_id, "FILLED", 5.0)])
        _, trades = running.control("GET", "trades")
        ours = sorted((f.venue_trade_id, f.quantity, f.price, f.fee)
                      for o in engine.state.portfolio.all_orders() for f in o.fills)
        assert ours == sorted((str(t["id"]), float(t["qty"]), float(t["price"]), float(t["commission"]))
                              for t in trades)
        _, balances = running.control("GET", "balances")
        assert float(balances["AAA"]["free"]) == 0.0 and float(balances["AAA"].get("locked", 0)) == 0.0
        assert engine.state.portfolio.cash == pytest.approx(float(balances["USD"]["free"]), abs=1e-6)
        assert float(balances["USD"].get("locked", 0)) == 0.0  # nothing left resting on the book


# -- one rule for retiring a position, and the cancel's outcome committed at once ------------------------------


def _close_then_reduce(tmp_path: Path, write_ahead: bool) -> Engine:
    """Open AAA, then a cycle ``[close, reduce(fraction=0.5)]`` (the reduce is ignored: the close sells it whole),
    then a new entry."""
    tmp_path.mkdir()
    engine = make_engine(tmp_path)
    if write_ahead:  # paper, replay and live: the router applies the close's fill while the reduce is still created
        engine.start_write_ahead(lambda: None, lambda: T0)
    engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    engine.manage(1)
    engine.plan([close("AAA"), reduce("AAA", fraction=0.5)], 1, cycle_ns(1))
    engine.manage(2)
    return engine


def test_write_ahead_a_reduce_after_the_close_leaves_the_position_retired_as_a_backtest_does(tmp_path: Path) -> None:
    engine = _close_then_reduce(tmp_path / "paper", write_ahead=True)
    portfolio = engine.state.portfolio
    assert [(o.purpose, o.status) for o in orders(engine)] == [
        (OrderPurpose.open, OrderStatus.filled), (OrderPurpose.close, OrderStatus.filled)]  # the reduce ignored
    assert portfolio.open_positions == [] and len(portfolio.closed_positions) == 1  # no empty position left open
    report = engine.plan([open_long("AAA", value=500)], 2, cycle_ns(2))
    assert report.planned == 1 and not report.ignored  # the next entry is not refused
    engine.manage(3)
    backtest = _close_then_reduce(tmp_path / "backtest", write_ahead=False)
    backtest.plan([open_long("AAA", value=500)], 2, cycle_ns(2))
    backtest.manage(3)
    for state in (engine.state, backtest.state):
        assert [(p.id, p.quantity) for p in state.portfolio.open_positions] == [(2, pytest.approx(4.9, rel=0.1))]
    assert engine.state.portfolio.cash == pytest.approx(backtest.state.portfolio.cash, abs=1e-9)


def test_live_the_cancel_of_a_resting_entry_is_committed_with_its_journal_line_in_the_same_call(
        tmp_path: Path) -> None:
    """A later temporary failure in the same job must not lose the cancel's journal line while its fills stay
    booked: the cancel commits as soon as it is journaled, before the close is even queued."""
    journal: Journal = []
    engine, _, entry = live_engine(tmp_path, journal)
    seen: list[tuple[OrderStatus, int]] = []
    assert engine.router is not None
    engine.router.commit = lambda: seen.append(  # type: ignore[method-assign]
        (entry.status, len([e for e, _ in journal if e == "order_cancelled"])))
    engine.plan([close("AAA")], 1, cycle_ns(1))
    assert (OrderStatus.cancelled, 1) in seen


def test_live_no_exit_is_sent_while_the_exchange_still_answers_that_the_entry_is_open(tmp_path: Path) -> None:
    """The exchange takes the cancel but has not ended the entry yet: selling now could sell more than the position
    turns out to hold, so the close is a temporary failure (the job is retried), nothing sold; once the exchange
    says the entry ended, the close taken again sells what it bought."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, entry = live_engine(tmp_path, journal)
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]  # taken, not yet applied by the exchange
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.plan([close("AAA")], 1, cycle_ns(1))
    assert acknowledged == [entry.client_order_id]
    assert entry.status is OrderStatus.partially_filled and [o.purpose for o in orders(engine)] == [OrderPurpose.open]
    with pytest.raises(TemporaryError):  # an operator's close waits too
        engine.close_now(engine.state.portfolio.open_positions[0], 1, by="operator")
    assert [o.purpose for o in orders(engine)] == [OrderPurpose.open]
    del venue.cancel  # the exchange now ends the entry
    venue.cancel(entry.client_order_id)
    report = engine.plan([close("AAA")], 1, cycle_ns(1))
    assert report.planned == 1 and orders(engine)[-1].quantity == 5.0
    sell_it(engine, venue, 2)
    assert engine.state.portfolio.open_positions == []
    check_books(engine, venue)


def test_live_a_risk_pause_counts_only_the_entries_the_exchange_confirmed_cancelled(tmp_path: Path) -> None:
    journal: Journal = []
    engine, venue, entry = live_engine(tmp_path, journal)
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]  # taken, not yet applied by the exchange
    assert engine.cancel_entries(1, "cancelled: risk limit hit") == 0
    assert acknowledged == [entry.client_order_id] and not [e for e, _ in journal if e == "order_cancelled"]
    del venue.cancel
    assert engine.cancel_entries(1, "cancelled: risk limit hit") == 1
    assert entry.status is OrderStatus.cancelled
    assert [f["reason"] for e, f in journal if e == "order_cancelled"] == ["cancelled: risk limit hit"]


# -- the cancels of a cycle's exits come in one pass before any order of the cycle is made ------------------------


def _two_instruments(tmp_path: Path, journal: Journal, *, crash: bool = False,
                     trail: bool = False) -> tuple[Engine, InMemoryVenue, dict[str, Any], Order]:
    """A live engine on AAA and BBB: BBB's entry filled; AAA's filled half and still rests at the exchange. With
    ``crash`` both have a 5 % stop-loss, and bar 3 falls through both stops. With ``trail`` AAA's 5 % stop-loss is
    hit on bar 3 while BBB, with a 5 % trailing stop from 50, rises to a high of 60 and a low of 56 (no hit: its
    stop is 47.5 before the bar; 57 had the bar's own high counted)."""
    aaa: list[Any] = [100.0] * 5
    bbb: list[Any] = [50.0] * 5
    if crash:
        aaa[3], bbb[3] = (99.0, 99.0, 90.0, 91.0), (49.0, 49.0, 45.0, 46.0)
    if trail:
        aaa[3], bbb[3] = (99.0, 99.0, 90.0, 91.0), (50.0, 60.0, 56.0, 58.0)
    engine, venue = live_engine_over(tmp_path, {"AAA": aaa, "BBB": bbb}, journal, lambda: T0)
    stop = 0.05 if crash or trail else None
    engine.plan([open_long("BBB", value=1000, stop_loss_pct=None if trail else stop,
                           trailing_stop_pct=0.05 if trail else None)], 0, cycle_ns(0))
    engine.manage(1)
    venue.advance({"BBB": 50.0}, T0)
    engine.drain()
    venue.hold = True
    engine.plan([open_long("AAA", value=1000, stop_loss_pct=stop)], 1, cycle_ns(1))
    engine.manage(2)
    venue.hold = False
    venue.partial = [0.5, 0.5]
    venue.advance({"AAA": 100.0}, T0)
    engine.drain()
    entry = next(o for o in orders(engine) if o.status is OrderStatus.partially_filled)
    assert engine.symbol_of[entry.instrument_id] == "AAA" and entry.filled_quantity == 5.0
    return engine, venue, engine.strategy.decide.__globals__, entry


def test_live_an_unconfirmed_cancel_fails_the_cycle_before_any_order_so_the_retry_makes_every_close_once(
        tmp_path: Path) -> None:
    """``[close(BBB), close(AAA)]`` while AAA's entry rests: the exchange takes the cancel but has not ended it. The
    cycle fails temporarily with nothing of it made (BBB's close included), so the retried cycle — as the loop
    takes it: the strategy asked again, then planned — is not mistaken for one decided before a restart, and
    makes both closes; each is sent and filled exactly once."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, module, entry = _two_instruments(tmp_path, journal)
    module["SCRIPT"][pd.Timestamp(cycle_ns(2), tz="UTC")] = [close("BBB"), close("AAA")]
    before = [o.client_order_id for o in orders(engine)]
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]  # taken, not yet applied
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.plan(engine.ask_strategy(2, cycle_ns(2)), 2, cycle_ns(2))
    assert acknowledged == [entry.client_order_id]
    assert [o.client_order_id for o in orders(engine)] == before  # nothing of the cycle, BBB's close included
    assert [f["client_order_id"] for e, f in journal if e == "order_cancel_requested"] == [entry.client_order_id]
    del venue.cancel
    venue.cancel(entry.client_order_id)  # the exchange ends the entry; the next job's drain hears of it
    engine.drain()
    assert entry.status is OrderStatus.cancelled
    intents = engine.ask_strategy(2, cycle_ns(2))  # the retried job
    assert [i.action for i in intents] == ["close", "close"]
    report = engine.plan(intents, 2, cycle_ns(2))
    assert report.planned == 2 and not report.ignored
    engine.manage(3)
    venue.advance({"AAA": 100.0, "BBB": 50.0}, T0)
    engine.drain()
    closes = [o for o in orders(engine) if o.purpose is OrderPurpose.close]
    assert sorted((engine.symbol_of[o.instrument_id], o.status, o.filled_quantity) for o in closes) == [
        ("AAA", OrderStatus.filled, 5.0), ("BBB", OrderStatus.filled, 20.0)]
    assert sorted(cid for call, cid in venue.calls if call == "submit") == sorted(
        [o.client_order_id for o in orders(engine) if o.purpose is OrderPurpose.open]
        + [o.client_order_id for o in closes])  # each close sent once
    assert engine.state.portfolio.open_positions == [] and engine.pending == []
    assert [f["client_order_id"] for e, f in journal if e == "order_cancelled"] == [entry.client_order_id]


def _resting_unfilled(tmp_path: Path, journal: Journal) -> tuple[Engine, InMemoryVenue, Order]:
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", [100.0] * 5), asset_types={"AAA": "equity"})
    engine = Engine(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG,
                    events=lambda event, /, **fields: journal.append((event, fields)))
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True  # accepted; it rests on the book, nothing filled
    engine.live_venue = venue
    engine.start_write_ahead(lambda: None, lambda: T0)
    engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    engine.manage(1)
    (entry,) = orders(engine)
    assert entry.status is OrderStatus.open and engine.state.portfolio.open_positions[0].quantity == 0.0
    venue.hold = False
    return engine, venue, entry


def test_live_a_close_of_a_position_holding_nothing_waits_for_the_exchange_to_confirm_the_entrys_cancel(
        tmp_path: Path) -> None:
    """Nothing filled yet: the close cancels the entry; until the exchange confirms, the position is not retired
    (its entry may still fill) and the cycle fails temporarily; once confirmed, the position is retired with
    nothing sold."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, entry = _resting_unfilled(tmp_path, journal)
    (position,) = engine.state.portfolio.open_positions
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.plan([close("AAA")], 1, cycle_ns(1))
    assert engine.state.portfolio.open_positions == [position] and entry.status is OrderStatus.open
    del venue.cancel
    venue.cancel(entry.client_order_id)
    engine.drain()
    report = engine.plan([close("AAA")], 1, cycle_ns(1))
    assert report.planned == 0 and [o.purpose for o in orders(engine)] == [OrderPurpose.open]
    assert engine.state.portfolio.open_positions == [] and list(engine.state.portfolio.failed_positions) == [position]
    assert [f["client_order_id"] for e, f in journal if e == "order_cancelled"] == [entry.client_order_id]
    check_books(engine, venue)


def test_live_a_close_whose_entry_cancel_the_exchange_confirms_at_once_is_not_reported_ignored(tmp_path: Path) -> None:
    """Nothing filled and the exchange confirms the cancel at once: the pass before the cycle's orders retires the
    position, and the close is done, not an ``intent_ignored`` "no open position" warning (as on every other path)."""
    journal: Journal = []
    engine, venue, entry = _resting_unfilled(tmp_path, journal)
    report = engine.plan([close("AAA")], 1, cycle_ns(1))
    assert engine.state.portfolio.open_positions == [] and entry.status is OrderStatus.cancelled
    assert report.ignored == [] and [e for e, _ in journal if e == "intent_ignored"] == []
    assert [f["client_order_id"] for e, f in journal if e == "order_cancelled"] == [entry.client_order_id]
    check_books(engine, venue)


def test_live_a_fill_that_lands_before_the_cancel_of_an_unfilled_entry_is_booked_and_then_closed(
        tmp_path: Path) -> None:
    journal: Journal = []
    engine, venue, entry = _resting_unfilled(tmp_path, journal)
    venue.advance({"AAA": 100.0}, T0)  # the exchange fills the entry; the executor has not heard yet
    report = engine.plan([close("AAA")], 1, cycle_ns(1))
    assert entry.status is OrderStatus.filled and entry.filled_quantity == 10.0
    assert report.planned == 1 and orders(engine)[-1].purpose is OrderPurpose.close
    assert orders(engine)[-1].quantity == 10.0
    sold = sell_it(engine, venue, 2)
    assert sold.filled_quantity == 10.0 and engine.state.portfolio.open_positions == []
    check_books(engine, venue)


def test_live_a_trigger_check_whose_entry_cancel_is_unconfirmed_sends_no_exit_and_the_retry_fires_each_once(
        tmp_path: Path) -> None:
    """Both stops are hit on bar 3; AAA's entry still rests and the exchange has not confirmed its cancel. The check
    fails temporarily before any exit is made (BBB's stop included); checked again on the same bar once the
    exchange ended the entry, each stop fires once, and a third check of the bar fires nothing."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, _, entry = _two_instruments(tmp_path, journal, crash=True)
    before = [o.client_order_id for o in orders(engine)]
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.check_triggers(3)
    assert [o.client_order_id for o in orders(engine)] == before and not [e for e, _ in journal if e == "trigger_fired"]
    del venue.cancel
    venue.cancel(entry.client_order_id)
    engine.drain()
    assert engine.check_triggers(3) == 2  # the same bar, seen again by the retried job
    assert engine.check_triggers(3) == 0
    venue.advance({"AAA": 91.0, "BBB": 46.0}, T0)  # the exchange fills the exits
    engine.drain()
    assert engine.check_triggers(3) == 0
    exits = [o for o in orders(engine) if o.trigger is not None]
    assert sorted((engine.symbol_of[o.instrument_id], o.status, o.filled_quantity) for o in exits) == [
        ("AAA", OrderStatus.filled, 5.0), ("BBB", OrderStatus.filled, 20.0)]
    assert len([cid for call, cid in venue.calls if call == "submit" and cid in {o.client_order_id for o in exits}]) == 2
    assert sorted(f["symbol"] for e, f in journal if e == "trigger_fired") == ["AAA", "BBB"]
    assert engine.state.portfolio.open_positions == []


def _bbb(engine: Engine) -> Position:
    return next(p for p in engine.state.portfolio.open_positions if engine.symbol_of[p.instrument_id] == "BBB")


def test_live_a_retried_trigger_check_does_not_count_the_bars_high_in_a_trailing_stop_it_checks_again(
        tmp_path: Path) -> None:
    """AAA's stop is hit on bar 3 while its entry's cancel is unconfirmed: the check fails temporarily. BBB's
    trailing stop was checked against its high-water from before the bar (50: stop 47.5, low 56, no hit); the
    failed check leaves that high-water as it was, in memory and in every commit the cancel made, so the retry
    does not sell BBB against a stop of 57 that counts the bar's own high of 60."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, _, entry = _two_instruments(tmp_path, journal, trail=True)
    taken = _bbb(engine).high_water_at  # bar 2, checked by the job that bought AAA
    assert engine.router is not None
    committed: list[float | None] = []
    engine.router.commit = lambda: committed.append(_bbb(engine).high_water)  # type: ignore[method-assign]
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.check_triggers(3)
    assert committed and set(committed) == {50.0}  # what a kill -9 there would leave: the bar not taken in
    assert _bbb(engine).high_water == 50.0 and _bbb(engine).high_water_at == taken
    del venue.cancel
    venue.cancel(entry.client_order_id)
    engine.drain()
    assert engine.check_triggers(3) == 1  # the retried job, the same bar
    assert [f["symbol"] for e, f in journal if e == "trigger_fired"] == ["AAA"]
    assert _bbb(engine).high_water == 60.0


def test_a_trigger_check_of_a_bar_already_taken_in_leaves_the_trailing_stop_alone(tmp_path: Path) -> None:
    """A job that checked bar 3's triggers and then failed (the risk guard, a later step of a cycle), or whose
    commit a restart finds, checks bar 3 again: the bar is marked taken in (``high_water_at``), so the second check
    neither fires BBB's trailing stop against a high-water that includes the bar's high nor raises it again."""
    journal: Journal = []
    engine, venue, _, entry = _two_instruments(tmp_path, journal, trail=True)
    venue.cancel(entry.client_order_id)
    engine.drain()
    assert engine.check_triggers(3) == 1
    bbb = _bbb(engine)
    assert bbb.high_water == 60.0 and bbb.high_water_at is not None
    assert engine.check_triggers(3) == 0  # checked again: BBB's low of 56 is under 57, yet nothing fires
    assert [f["symbol"] for e, f in journal if e == "trigger_fired"] == ["AAA"] and bbb.is_open


def _entry_of_unknown_outcome(tmp_path: Path, journal: Journal, *, arrived: bool, clock: list[datetime] | None = None,
                              lag: int = 0) -> tuple[Engine, InMemoryVenue, Order]:
    """A live engine whose entry's submit reply never came (``unknown``): the exchange never got it, or (``arrived``)
    got it and holds it open. ``clock``: the engine's clock (a list of one time the caller moves; T0 by default).
    ``lag``: the exchange answers "does not exist" to that many lookups of the order first (Binance's -2013 lag)."""
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", [100.0] * 5), asset_types={"AAA": "equity"})
    engine = Engine(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG,
                    events=lambda event, /, **fields: journal.append((event, fields)))
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    engine.live_venue = venue
    now = clock if clock is not None else [T0]
    engine.start_write_ahead(lambda: None, lambda: now[0])
    engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
    if lag:
        fetch, lagging = venue.fetch_order, [lag]

        def fetch_order(client_order_id: str) -> Any:
            venue.calls.append(("fetch_order", client_order_id))
            if lagging[0] > 0:
                lagging[0] -= 1
                return None
            return fetch(client_order_id)

        venue.fetch_order = fetch_order  # type: ignore[method-assign]
    venue.hold = arrived
    venue.fail_next("submit", after_effect=arrived)
    if arrived:
        venue.poll = lambda: []  # type: ignore[method-assign]  # its acceptance lost on the way too
    engine.manage(1)
    if arrived:
        del venue.poll
        venue.poll()
    (entry,) = orders(engine)
    assert entry.status is OrderStatus.unknown
    return engine, venue, entry


PAUSED = "cancelled: risk limit max_drawdown hit"


def _until_the_rule(engine: Engine, clock: list[datetime]) -> list[list[str]]:
    """The next jobs' starts (``settle_unknown``), the clock moving so that the lag rule is met at the last: what each
    returned. None of them fails: an order whose cancel was asked for holds up no job."""
    said_each = []
    for _ in range(LOST_AFTER_ANSWERS - 1):
        clock[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
        said_each.append(engine.settle_unknown())
    return said_each


def test_live_a_risk_pause_ends_an_entry_the_exchange_never_got_only_once_its_answer_has_lasted_never_sending_it(
        tmp_path: Path) -> None:
    """The entry's submit reply never came and the exchange never got it. The risk pause's cancel asks the exchange
    first; one "does not exist" may be its lag, during which the entry may fill, so the entry is not ended on it (it
    used to be): its cancel is asked for (``order_cancel_requested``, once), it stays followed, and the next jobs'
    ``settle_unknown`` ask again without failing. Once the answer has lasted (``LOST_AFTER_ANSWERS`` over
    ``LOST_AFTER``) it ends here, journaled ``order_cancelled``: never sent, no cancel sent, no entry bought."""
    journal: Journal = []
    clock = [T0]
    engine, venue, entry = _entry_of_unknown_outcome(tmp_path, journal, arrived=False, clock=clock)
    assert engine.cancel_entries(1, PAUSED) == 0  # not confirmed ended yet
    assert entry.status is OrderStatus.unknown and [o for _, o in engine.pending] == [entry]
    assert [e for e, _ in journal if e.startswith("order_cancel")] == ["order_cancel_requested"]
    said_each = _until_the_rule(engine, clock)
    assert said_each[:-1] == [[]] * (LOST_AFTER_ANSWERS - 2)
    assert said_each[-1] == [f"{entry.client_order_id}: {said('ended')}"]
    assert entry.status is OrderStatus.cancelled
    assert engine.settle_unknown() == []
    assert [call for call, _ in venue.calls if call in ("submit", "cancel")] == ["submit"]
    assert [(e, f["reason"]) for e, f in journal if e.startswith("order_cancel")] == [
        ("order_cancel_requested", PAUSED), ("order_cancelled", PAUSED)]
    assert engine.state.portfolio.open_positions == [] and engine.pending == []


def test_live_a_risk_pause_cancels_at_the_exchange_an_entry_of_unknown_outcome_it_did_get(tmp_path: Path) -> None:
    """The entry's submit reply never came, but the exchange got it and holds it open: asked first, it is taken
    as open, then cancelled at the exchange as any resting entry."""
    journal: Journal = []
    engine, venue, entry = _entry_of_unknown_outcome(tmp_path, journal, arrived=True)
    assert engine.cancel_entries(1, PAUSED) == 1
    assert entry.status is OrderStatus.cancelled
    assert [call for call, _ in venue.calls if call in ("submit", "cancel")] == ["submit", "cancel"]
    assert engine.settle_unknown() == [] and engine.state.portfolio.open_positions == []


def test_live_a_risk_pause_keeps_following_an_entry_of_unknown_outcome_when_the_exchange_cannot_be_asked(
        tmp_path: Path) -> None:
    """The entry's submit reply never came, and the exchange is still unreachable when the risk pause cancels it (the
    same outage): the entry is not ended blind (it used to be: had it arrived, its fill was booked by nobody); its
    cancel is asked for and it stays followed. The exchange back, it is asked about under the lag rule and, never
    having arrived, ends journaled ``order_cancelled``, never sent."""
    journal: Journal = []
    clock = [T0]
    engine, venue, entry = _entry_of_unknown_outcome(tmp_path, journal, arrived=False, clock=clock)
    venue.fail_next("fetch_order")
    assert engine.cancel_entries(1, PAUSED) == 0
    assert entry.status is OrderStatus.unknown
    assert engine.settle_unknown() == []  # the first "does not exist": maybe the lag
    assert _until_the_rule(engine, clock)[-1] == [f"{entry.client_order_id}: {said('ended')}"]
    assert entry.status is OrderStatus.cancelled
    assert [call for call, _ in venue.calls if call in ("submit", "cancel")] == ["submit"]
    assert [f["reason"] for e, f in journal if e == "order_cancelled"] == [PAUSED]
    assert engine.state.portfolio.open_positions == [] and engine.pending == []


def test_live_an_entry_the_exchange_filled_during_its_lag_is_booked_not_ended_by_the_pauses_cancel(
        tmp_path: Path) -> None:
    """The entry's submit reply never came; the exchange took it but answers "does not exist" at first (its lag)
    and fills it meanwhile. The pause's cancel, meeting that answer, keeps the entry followed (it used to end it as
    never sent: the fill — base asset in the account, quote spent — was then seen only by reconciliation). The next
    job's settle finds it filled: the fill is booked and journaled once, the position holds it (the guard's next check
    sells it with --risk-close-positions), nothing is sent again and no cancel is journaled."""
    journal: Journal = []
    engine, venue, entry = _entry_of_unknown_outcome(tmp_path, journal, arrived=True, lag=1)
    assert engine.cancel_entries(1, PAUSED) == 0
    assert entry.status is OrderStatus.unknown
    venue.hold = False
    venue.advance({"AAA": 100.0}, T0)  # the exchange fills it
    assert engine.settle_unknown() == [f"{entry.client_order_id}: {said('filled')}"]
    assert entry.status is OrderStatus.filled
    (position,) = engine.state.portfolio.open_positions
    assert position.quantity == entry.filled_quantity > 0
    assert [f["client_order_id"] for e, f in journal if e == "order_filled"] == [entry.client_order_id]
    assert [e for e, _ in journal if e.startswith("order_cancel")] == ["order_cancel_requested"]
    assert [call for call, _ in venue.calls if call in ("submit", "cancel")] == ["submit"]
    check_books(engine, venue)


def test_live_an_entry_found_open_after_its_lag_is_cancelled_at_the_exchange_by_the_settle(tmp_path: Path) -> None:
    """As above, but the exchange holds the entry open when it first shows it: the cancel the pause asked for is sent
    then (``order_cancelled`` with the pause's reason), the position retired; nothing is ever sent again."""
    journal: Journal = []
    engine, venue, entry = _entry_of_unknown_outcome(tmp_path, journal, arrived=True, lag=1)
    assert engine.cancel_entries(1, PAUSED) == 0
    assert engine.settle_unknown() == [f"{entry.client_order_id}: {said('open')}"]
    engine.drain()
    assert entry.status is OrderStatus.cancelled
    assert [call for call, _ in venue.calls if call in ("submit", "cancel")] == ["submit", "cancel"]
    assert [(e, f["reason"]) for e, f in journal if e.startswith("order_cancel")] == [
        ("order_cancel_requested", PAUSED), ("order_cancelled", PAUSED)]
    assert engine.state.portfolio.open_positions == [] and engine.pending == []


def test_live_a_cancel_that_failed_before_its_request_was_on_record_journals_the_request_when_retried(
        tmp_path: Path) -> None:
    """The entry's submit reply never came; the exchange has it, but the outage returns while its fills are read (the
    order now has the exchange's id): the job fails before the cancel is asked for. The retry records the request
    (``order_cancel_requested``, once) before cancelling at the exchange; the entry is never sent again."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, entry = _entry_of_unknown_outcome(tmp_path, journal, arrived=True)
    order_fills = venue.order_fills

    def unreachable(client_order_id: Any) -> Any:
        del venue.order_fills
        raise TemporaryError("the exchange is unreachable")

    venue.order_fills = unreachable  # type: ignore[method-assign]
    with pytest.raises(TemporaryError, match="unreachable"):
        engine.cancel_entries(1, "cancelled: risk limit max_drawdown hit")
    assert venue.order_fills == order_fills and entry.venue_order_id and entry.status is OrderStatus.unknown
    assert not [e for e, _ in journal if e in ("order_cancel_requested", "order_cancelled")]
    engine.settle_unknown()  # the retried job's start
    assert entry.status in (OrderStatus.unknown, OrderStatus.open)
    assert engine.cancel_entries(1, "cancelled: risk limit max_drawdown hit") == 1
    assert entry.status is OrderStatus.cancelled
    assert [e for e, _ in journal if e in ("order_cancel_requested", "order_cancelled")] == [
        "order_cancel_requested", "order_cancelled"]
    assert [call for call, _ in venue.calls if call in ("submit", "cancel")] == ["submit", "cancel"]


def _risk_guard(engine: Engine, journal: Journal, *, max_drawdown: float) -> RiskGuard:
    """The daemon's risk guard over ``engine`` with --risk-close-positions, journaling into ``journal``."""
    from tradeexecutor.config import RiskConfig
    from tradeexecutor.engine.risk import RiskLimits
    from tradeexecutor.runstate import RunState

    return RiskGuard(RiskLimits(RiskConfig(max_drawdown=max_drawdown, risk_close_positions=True)), engine, RunState(),
                     lambda event, /, **fields: journal.append((event, fields)))


def _drawdown_at_step_3(engine: Engine, journal: Journal) -> RiskGuard:
    """A 1 % drawdown guard that passes at step 2 and whose limit step 3's marks hit (the crash of
    ``_two_instruments``): the caller's ``guard.check(3)`` is the one that acts."""
    guard = _risk_guard(engine, journal, max_drawdown=0.01)
    engine.record_valuation(2)
    assert not guard.check(2)
    engine.mark_to_market(3)
    engine.record_valuation(3)
    return guard


def test_live_an_entry_the_exchange_lost_does_not_keep_a_risk_close_from_selling_the_other_positions(
        tmp_path: Path) -> None:
    """An entry the exchange accepted and has lost since (``unknown`` with its id, left for a person) never confirms a
    cancel. The risk pause counts only the cancels confirmed, so it does not wait for it: the pause is recorded and
    --risk-close-positions sells BBB, held whole."""
    journal: Journal = []
    engine, venue, _, entry = _two_instruments(tmp_path, journal)
    del venue._orders[entry.client_order_id]  # the exchange lost it
    position = next(p for p in engine.state.portfolio.open_positions if p.id == entry.position_id)
    assert engine.router is not None
    engine.router.not_found = NotFoundAnswers.one_look()  # the answer taken as lasting at once
    assert engine.router.resolve_order(position, entry) == "missing"
    assert entry.status is OrderStatus.unknown and entry.venue_order_id
    guard = _risk_guard(engine, journal, max_drawdown=0.5)
    engine.record_valuation(2)
    engine.state.risk.peak_equity = 1e9  # as if equity had been far higher: the check hits
    assert guard.check(2) and engine.state.risk.paused
    venue.advance({"AAA": 100.0, "BBB": 50.0}, T0)
    engine.drain()
    assert [engine.symbol_of[p.instrument_id] for p in engine.state.portfolio.closed_positions] == ["BBB"]
    assert entry.status is OrderStatus.unknown  # still for a person


def test_live_a_pauses_entry_waiting_out_the_exchanges_lag_holds_up_neither_the_risk_close_nor_the_next_jobs(
        tmp_path: Path) -> None:
    """BBB is held; AAA's entry never reached the exchange (its submit failed, no reply: ``unknown``). A risk limit
    with --risk-close-positions: the pause asks for AAA's cancel — the exchange does not know it, maybe its lag — and
    keeps it followed; the risk exit sells BBB in the same check, AAA's position left alone (an order of unknown
    outcome). The next jobs' settle does not fail on AAA's wait; once the answer has lasted AAA ends, never sent."""
    journal: Journal = []
    clock = [T0]
    engine, venue = live_engine_over(tmp_path, {"AAA": [100.0] * 5, "BBB": [50.0] * 5}, journal, lambda: clock[0])
    engine.plan([open_long("BBB", value=1000)], 0, cycle_ns(0))
    engine.manage(1)
    venue.advance({"BBB": 50.0}, T0)
    engine.drain()
    engine.plan([open_long("AAA", value=1000)], 1, cycle_ns(1))
    venue.fail_next("submit")  # never reached the exchange; the reply never came
    engine.manage(2)
    entry = next(o for o in orders(engine) if engine.symbol_of[o.instrument_id] == "AAA")
    assert entry.status is OrderStatus.unknown and not entry.venue_order_id
    guard = _risk_guard(engine, journal, max_drawdown=0.5)
    engine.record_valuation(2)
    engine.state.risk.peak_equity = 1e9  # as if equity had been far higher: the check hits
    assert guard.check(2) and engine.state.risk.paused
    assert entry.status is OrderStatus.unknown  # not ended on one "does not exist"
    venue.advance({"AAA": 100.0, "BBB": 50.0}, T0)
    engine.drain()
    assert [engine.symbol_of[p.instrument_id] for p in engine.state.portfolio.closed_positions] == ["BBB"]
    assert engine.settle_unknown() == []  # the next job's start: AAA's wait fails nothing
    assert _until_the_rule(engine, clock)[-1] == [f"{entry.client_order_id}: {said('ended')}"]
    assert entry.status is OrderStatus.cancelled and engine.state.portfolio.open_positions == []
    assert [cid for call, cid in venue.calls if call == "submit"].count(entry.client_order_id) == 1
    check_books(engine, venue)


# -- [close(X), increase(X)] in one cycle: one rule on every path --------------------------------------------------


def held_on_every_path(tmp_path: Path, mode: str) -> tuple[Engine, InMemoryVenue, Journal, Callable[[int, float], None]]:
    """An engine of ``mode`` (backtest, lean, paper, live against the in-memory exchange) holding AAA bought at the
    first bar, and ``bar(step, price)``: manage a bar (live: the exchange fills what was sent at ``price``)."""
    from tradeexecutor.backtest.lean import BacktestEngine

    journal: Journal = []
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", [100.0, 101.0, 102.0, 103.0]), asset_types={"AAA": "equity"})
    cls = BacktestEngine if mode == "lean" else Engine
    engine = cls(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG,
                 events=None if mode in ("backtest", "lean") else lambda e, /, **f: journal.append((e, f)))
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    if mode == "live":
        engine.live_venue = venue
    if mode in ("paper", "live"):
        engine.start_write_ahead(lambda: None, lambda: T0)

    def bar(step: int, price: float) -> None:
        engine.manage(step)
        if mode == "live":  # the exchange fills what was sent
            venue.advance({"AAA": price}, T0)
            engine.drain()

    engine.take([open_long("AAA", value=1000)], 0, cycle_ns(0))
    bar(1, 101.0)
    return engine, venue, journal, bar


@pytest.mark.parametrize("mode", ["backtest", "lean", "paper", "live"])
def test_an_increase_of_a_position_the_same_cycle_closes_is_refused_alike_on_every_path(
        tmp_path: Path, mode: str) -> None:
    """A backtest used to buy into the position after its close had retired it (base asset bought that no open
    position held), paper mode stopped with an InvariantError: every path now ignores the increase with its reason,
    sells the position whole and holds nothing after."""
    engine, _venue, journal, bar = held_on_every_path(tmp_path, mode)
    report = engine.plan([close("AAA"), increase("AAA", value=500)], 1, cycle_ns(1))
    assert report.planned == 1 and len(report.ignored) == 1
    assert report.ignored[0].startswith("increase AAA: the position is being closed (order ")
    bar(2, 102.0)
    engine.materialise()
    assert [(o.purpose, o.status) for o in orders(engine)] == [
        (OrderPurpose.open, OrderStatus.filled), (OrderPurpose.close, OrderStatus.filled)]
    assert engine.state.portfolio.open_positions == [] and len(engine.state.portfolio.closed_positions) == 1
    assert recompute_cash(engine.state.initial_cash, engine.state.portfolio) == pytest.approx(
        engine.state.portfolio.cash, abs=1e-9)
    if mode == "paper":
        assert [f["action"] for e, f in journal if e == "intent_ignored"] == ["increase"]


def test_live_an_operators_close_all_sells_none_while_one_entrys_cancel_is_unconfirmed_then_each_once(
        tmp_path: Path) -> None:
    """close-all (the loop's operator job calls ``close_all_now``): AAA's entry rests and its cancel is unconfirmed,
    so BBB is not sold either — the operator is answered "failed temporarily, try again" with nothing sold, and
    the retry closes both, each with one order."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, _, entry = _two_instruments(tmp_path, journal)
    positions = list(engine.state.portfolio.open_positions)
    before = [o.client_order_id for o in orders(engine)]
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.close_all_now(positions, 2, by="operator")
    assert [o.client_order_id for o in orders(engine)] == before and acknowledged == [entry.client_order_id]
    del venue.cancel
    venue.cancel(entry.client_order_id)
    engine.drain()
    exits = engine.close_all_now(positions, 2, by="operator")
    assert all(order is not None and order.status is OrderStatus.open for order in exits)  # sent, resting
    venue.advance({"AAA": 100.0, "BBB": 50.0}, T0)
    engine.drain()
    closes = [o for o in orders(engine) if o.purpose is OrderPurpose.close]
    assert sorted((engine.symbol_of[o.instrument_id], o.status, o.filled_quantity) for o in closes) == [
        ("AAA", OrderStatus.filled, 5.0), ("BBB", OrderStatus.filled, 20.0)]
    assert engine.state.portfolio.open_positions == []


def test_live_a_risk_limits_exits_waiting_for_an_entrys_cancel_are_taken_when_the_retry_sees_the_hit_again(
        tmp_path: Path) -> None:
    """With --risk-close-positions a drawdown hit sells every position; AAA's entry cancel is unconfirmed, so nothing
    is sold and the job fails temporarily — and the hit is not kept, or the retried job (already paused) would
    never sell. The retry sees the hit again and sells both, once."""
    from tradeexecutor.errors import TemporaryError

    journal: Journal = []
    engine, venue, _, entry = _two_instruments(tmp_path, journal, crash=True)
    guard = _drawdown_at_step_3(engine, journal)
    before = [o.client_order_id for o in orders(engine)]
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]
    for _ in range(2):  # the outage's retries
        with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
            guard.check(3)
        assert not engine.state.risk.paused and [o.client_order_id for o in orders(engine)] == before
    del venue.cancel
    venue.cancel(entry.client_order_id)
    engine.drain()
    assert guard.check(3) and engine.state.risk.limit == "max_drawdown"
    # journaled once each, not once per retry: the hit when it is done, the cancel when first asked
    assert [e for e, _ in journal].count("risk_limit_hit") == 1
    assert [f["client_order_id"] for e, f in journal if e == "order_cancel_requested"] == [entry.client_order_id]
    venue.advance({"AAA": 91.0, "BBB": 46.0}, T0)
    engine.drain()
    exits = [o for o in orders(engine) if o.purpose is OrderPurpose.close]
    assert sorted((engine.symbol_of[o.instrument_id], o.trigger, o.status) for o in exits) == [
        ("AAA", TriggerKind.risk_limit, OrderStatus.filled), ("BBB", TriggerKind.risk_limit, OrderStatus.filled)]
    assert engine.state.portfolio.open_positions == []


def test_live_no_commit_of_a_risk_pause_comes_before_its_exits_exist(tmp_path: Path) -> None:
    """Every commit the risk guard's cancels and exits make is a state a kill -9 may leave; none says "paused" while
    no exit exists (a restart, already paused, would never sell). The pause comes after the exits."""
    journal: Journal = []
    engine, _, _, _ = _two_instruments(tmp_path, journal, crash=True)
    guard = _drawdown_at_step_3(engine, journal)
    committed: list[tuple[bool, int]] = []
    assert engine.router is not None
    engine.router.commit = lambda: committed.append((  # type: ignore[method-assign]
        engine.state.risk.paused, len([o for o in orders(engine) if o.purpose is OrderPurpose.close])))
    assert guard.check(3)  # the exchange confirms the entry's cancel at once
    assert committed and not [paused for paused, exits in committed if paused and exits == 0]
    assert engine.state.risk.paused and len([o for o in orders(engine) if o.purpose is OrderPurpose.close]) == 2
    assert [e for e, _ in journal].count("risk_limit_hit") == 1


def test_live_a_cancel_request_is_committed_with_its_journal_line_before_the_exchange_sees_it(tmp_path: Path) -> None:
    """kill -9 between the two: the ledger says the cancel was asked for, and the restart asks the exchange about the
    entry (adopting its cancel, if it happened)."""
    journal: Journal = []
    engine, venue, entry = live_engine(tmp_path, journal)
    seen: list[tuple[str, object]] = []
    assert engine.router is not None
    engine.router.commit = lambda: seen.append(  # type: ignore[method-assign]
        ("commit", [e for e, _ in journal].count("order_cancel_requested")))
    real = venue.cancel

    def cancel(client_order_id: str) -> None:
        seen.append(("cancel", client_order_id))
        real(client_order_id)

    venue.cancel = cancel  # type: ignore[method-assign]
    engine.plan([close("AAA")], 1, cycle_ns(1))
    asked = seen.index(("cancel", entry.client_order_id))
    assert ("commit", 1) in seen[:asked]
    assert [f["reason"] for e, f in journal if e == "order_cancel_requested"] == ["cancelled by close() before it filled"]


def test_against_the_simulator_a_cycle_whose_entry_cancel_fails_makes_both_closes_once_on_the_retry(
        tmp_path: Path) -> None:
    """Through the unmodified ccxt client: BBB bought, AAA's limit entry filled in part and resting. The cycle
    ``[close(BBB), close(AAA)]`` meets a 503 on the entry's cancel: nothing of it is sent (BBB's close included);
    the retried cycle asks the strategy again and the simulator ends with exactly one close per instrument, the
    entry cancelled with its half, and no base asset left."""
    pytest.importorskip("ccxt")
    from exchange_sim_helpers import API_KEY, API_SECRET, serve, wait_for
    from test_venue_ccxt import ENVIRON
    from tradeexecutor.config import CcxtVenueConfig
    from tradeexecutor.errors import TemporaryError
    from tradeexecutor.exchange_sim import ExchangeSimulator, MarketSpec, SimConfig
    from tradeexecutor.exchange_sim.prices import random_walk_series
    from tradeexecutor.state import OrderType
    from tradeexecutor.venue.ccxt_venue import CcxtVenue

    now = int(time.time() * 1000)
    markets = tuple(MarketSpec(base=base, quote="USD", tick_size=Decimal("0.01"), step_size=Decimal(1),
                               min_notional=Decimal(10)) for base in ("AAA", "BBB"))
    config = SimConfig(markets=markets, api_key=API_KEY, api_secret=API_SECRET, fee_rate=Decimal("0.001"),
                       fee_asset="quote", spread_bps=Decimal(0),
                       balances={"USD": Decimal(10_000), "AAA": Decimal(0), "BBB": Decimal(0)})
    series = {f"{base}USD": random_walk_series(seed=seed, now_ms=now, start_price=price)
              for base, seed, price in (("AAA", 5, 100.0), ("BBB", 6, 50.0))}
    with serve(ExchangeSimulator(config, series), threads=4) as running:
        for symbol, price in (("AAAUSD", "100"), ("BBBUSD", "50")):
            running.control("POST", "price", {"symbol": symbol, "price": price, "seconds": 3600})
        wait_for(lambda: [Decimal(m["price"]) for m in running.control("GET", "status")[1]["markets"].values()]
                 == [Decimal(100), Decimal(50)], timeout=60)
        path = tmp_path / "scripted.py"
        path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA", "BBB"]))
        strategy = load_strategy(path)
        market = MarketData.from_long_frame(pd.concat([ohlc("AAA", [100.0] * 5), ohlc("BBB", [50.0] * 5)]),
                                            asset_types={"AAA": "equity", "BBB": "equity"})
        journal: Journal = []
        engine = Engine(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG,
                        events=lambda event, /, **fields: journal.append((event, fields)))
        engine.live_venue = CcxtVenue(CcxtVenueConfig(exchange="binance", url=running.url, quote="USD",
                                                      symbols=("AAA", "BBB")), environ=ENVIRON)
        engine.start_write_ahead(lambda: None, lambda: T0)
        engine.plan([open_long("AAA", value=1000), open_long("BBB", value=1000)], 0, cycle_ns(0))
        entry = next(o for o in orders(engine) if engine.symbol_of[o.instrument_id] == "AAA")
        entry.type, entry.limit_price, entry.quantity, entry.value = OrderType.limit, 101.0, 10.0, None
        running.control("POST", "faults", {"kind": "partial_fill", "parts": 2, "interval": 3600, "count": 1,
                                           "symbol": "AAAUSD"})
        engine.manage(1)
        assert entry.status is OrderStatus.partially_filled and entry.filled_quantity == 5.0
        assert [o.status for o in orders(engine) if o is not entry] == [OrderStatus.filled]
        before = [o.client_order_id for o in orders(engine)]

        running.control("POST", "faults", {"kind": "error", "path": "/api/v3/order", "method": "DELETE",
                                           "count": 1})
        engine.strategy.decide.__globals__["SCRIPT"][pd.Timestamp(cycle_ns(1), tz="UTC")] = [
            close("BBB"), close("AAA")]
        with pytest.raises(TemporaryError):
            engine.plan(engine.ask_strategy(1, cycle_ns(1)), 1, cycle_ns(1))
        assert [o.client_order_id for o in orders(engine)] == before and entry.status is OrderStatus.partially_filled

        engine.drain()  # the retried job
        report = engine.plan(engine.ask_strategy(1, cycle_ns(1)), 1, cycle_ns(1))
        assert report.planned == 2 and entry.status is OrderStatus.cancelled and entry.filled_quantity == 5.0
        engine.manage(2)  # the closes: market sells the simulator fills on arrival
        assert engine.state.portfolio.open_positions == [] and engine.pending == []

        _, exchange_orders = running.control("GET", "orders")
        sells = sorted((o["symbol"], o["status"], float(o["executedQty"])) for o in exchange_orders
                       if o["side"] == "SELL")
        assert sells == [("AAAUSD", "FILLED", 5.0), ("BBBUSD", "FILLED", 20.0)]  # one close each, sent once
        assert (entry.client_order_id, "CANCELED", 5.0) in [
            (o["clientOrderId"], o["status"], float(o["executedQty"])) for o in exchange_orders]
        _, balances = running.control("GET", "balances")
        assert float(balances["AAA"]["free"]) == 0.0 and float(balances["BBB"]["free"]) == 0.0
        assert engine.state.portfolio.cash == pytest.approx(float(balances["USD"]["free"]), abs=1e-6)

"""Live mode: a sell of the position still resting at the exchange when the position is sold whole (issue 13).

A limit ``reduce`` rests at the exchange; a ``close()``, a stop-loss, an operator's close or a risk close
then sells the position whole. The exit's pass cancels the resting sell at the exchange first and waits for
the exchange to confirm it ended (as it does for a resting entry), so the two sells never both reach the
book: the close sells what the reduce left, and the ledger never books more sold than held. And a cycle's
``[close(X), reduce(X)]`` ignores the reduce on every path, as it ignores an increase.

Through the real Engine and OrderRouter against the in-memory exchange twin, and through the unmodified ccxt
client against the exchange simulator; the books are checked against the exchange's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scripted import SCRIPTED, ohlc
from test_engine_router import T0
from test_engine_writeahead import CONFIG, cycle_ns, orders
from test_resting_entry import Journal, check_books, held_on_every_path, simulator_engine
from tradeexecutor.backtest.runner import new_state as new_run_state
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine.accounting import recompute_cash
from tradeexecutor.engine.engine import Engine
from tradeexecutor.errors import TemporaryError
from tradeexecutor.state import Order, OrderPurpose, OrderStatus
from tradeexecutor.strategy.api import open_long, reduce
from tradeexecutor.strategy.intents import close
from tradeexecutor.venue import InMemoryVenue
from tradeexecutor.venue.model import LOST_AFTER, LOST_AFTER_ANSWERS, NotFoundAnswers
from venue_contract import AAA


def _resting_reduce(tmp_path: Path, journal: Journal, prices: list[Any] | None = None,
                    stop_loss_pct: float | None = None) -> tuple[Engine, InMemoryVenue, Order]:
    """A live engine holding 10 AAA whose reduce of 4 the exchange accepted and holds on its book (a limit sell
    above the market), nothing of it filled."""
    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    from tradeexecutor.strategy.loader import load_strategy

    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", prices or [100.0] * 6), asset_types={"AAA": "equity"})
    engine = Engine(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG,
                    events=lambda event, /, **fields: journal.append((event, fields)))
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    engine.live_venue = venue
    engine.start_write_ahead(lambda: None, lambda: T0)
    engine.plan([open_long("AAA", value=1000, stop_loss_pct=stop_loss_pct)], 0, cycle_ns(0))
    engine.manage(1)
    venue.advance({"AAA": 100.0}, T0)
    engine.drain()
    (position,) = engine.state.portfolio.open_positions
    assert position.quantity == 10.0
    engine.plan([reduce("AAA", quantity=4.0)], 1, cycle_ns(1))
    venue.hold = True  # accepted; it rests on the book
    engine.manage(2)
    sell = orders(engine)[-1]
    assert sell.purpose is OrderPurpose.reduce and sell.status is OrderStatus.open and not sell.fills
    venue.hold = False
    return engine, venue, sell


def _submitted(venue: InMemoryVenue) -> list[str]:
    return [cid for call, cid in venue.calls if call == "submit"]


def test_live_a_close_behind_a_resting_reduce_sends_nothing_until_the_exchange_confirms_the_reduces_cancel(
        tmp_path: Path) -> None:
    """The exchange takes the reduce's cancel but has not ended it: the cycle fails temporarily with no close made
    or sent (both sells could otherwise fill); once the exchange says the reduce ended, the close taken again
    sells all the position holds, once."""
    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    (position,) = engine.state.portfolio.open_positions
    sent = _submitted(venue)
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]  # taken, not yet applied
    with pytest.raises(TemporaryError, match=f"has not confirmed the cancel of {sell.client_order_id}"):
        engine.plan([close("AAA")], 2, cycle_ns(2))
    assert acknowledged == [sell.client_order_id]
    assert [o.purpose for o in orders(engine)] == [OrderPurpose.open, OrderPurpose.reduce]  # no close made
    engine.manage(3)
    assert _submitted(venue) == sent  # nor sent
    del venue.cancel
    venue.cancel(sell.client_order_id)
    engine.drain()
    assert sell.status is OrderStatus.cancelled
    report = engine.plan([close("AAA")], 2, cycle_ns(2))
    assert report.planned == 1 and not report.ignored
    closing = orders(engine)[-1]
    assert closing.purpose is OrderPurpose.close and closing.quantity == position.quantity
    engine.manage(3)
    venue.advance({"AAA": 101.0}, T0)
    engine.drain()
    assert closing.status is OrderStatus.filled and closing.filled_quantity == position.orders[0].filled_quantity
    assert engine.state.portfolio.open_positions == [] and engine.pending == []
    assert [(f["client_order_id"], f["reason"]) for e, f in journal if e == "order_cancelled"] == [
        (sell.client_order_id, "cancelled by close() before it filled")]
    assert [f["client_order_id"] for e, f in journal if e == "order_cancel_requested"] == [sell.client_order_id]
    check_books(engine, venue)


def test_live_what_a_resting_reduce_sold_before_its_cancel_is_booked_and_the_close_sells_only_the_rest(
        tmp_path: Path) -> None:
    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    (position,) = engine.state.portfolio.open_positions
    held = position.quantity
    venue.partial = [0.5, 0.5]
    venue.advance({"AAA": 102.0}, T0)  # the exchange sells half the reduce; the executor has not heard yet
    venue.partial = []
    engine.plan([close("AAA")], 2, cycle_ns(2))
    assert sell.status is OrderStatus.cancelled and sell.filled_quantity == 2.0
    closing = orders(engine)[-1]
    assert closing.purpose is OrderPurpose.close and closing.quantity == held - 2.0
    engine.manage(3)
    venue.advance({"AAA": 101.0}, T0)
    engine.drain()
    assert closing.filled_quantity == held - 2.0 and engine.state.portfolio.open_positions == []
    assert sum(o.filled_quantity for o in position.orders if not o.is_buy) == held  # never more sold than held
    check_books(engine, venue)


def test_live_a_stop_loss_fires_on_a_position_with_a_resting_reduce_cancelling_the_reduce_first(
        tmp_path: Path) -> None:
    """A resting reduce is not an exit in flight: the stop still protects the position (it used to wait for the
    limit sell to end, unprotected), and the exit cancels the reduce at the exchange before it sells."""
    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal, prices=[100.0, 100.0, 100.0, (99.0, 99.0, 90.0, 91.0),
                                                                      91.0, 91.0], stop_loss_pct=0.05)
    (position,) = engine.state.portfolio.open_positions
    assert engine.in_flight(position) is None
    venue.hold = True  # the exit rests until the exchange is given a price
    assert engine.check_triggers(3) == 1
    assert sell.status is OrderStatus.cancelled and not sell.fills
    exit_order = orders(engine)[-1]
    assert exit_order.trigger is not None and exit_order.quantity == position.quantity
    assert engine.in_flight(position) is exit_order  # a resting exit is in flight: no second one
    assert engine.check_triggers(3) == 0
    assert venue.calls.index(("submit", exit_order.client_order_id)) > venue.calls.index(("cancel", sell.client_order_id))
    venue.hold = False
    venue.advance({"AAA": 91.0}, T0)
    engine.drain()
    assert exit_order.status is OrderStatus.filled and engine.state.portfolio.open_positions == []
    check_books(engine, venue)


def test_live_an_operators_close_of_a_position_with_a_resting_reduce_cancels_it_and_waits_for_the_exchange(
        tmp_path: Path) -> None:
    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    (position,) = engine.state.portfolio.open_positions
    assert engine.in_flight(position) is None  # the loop's operator job does not refuse it
    acknowledged: list[str] = []
    venue.cancel = acknowledged.append  # type: ignore[method-assign,assignment]
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.close_all_now([position], 3, by="operator")
    assert [o.purpose for o in orders(engine)] == [OrderPurpose.open, OrderPurpose.reduce]
    del venue.cancel
    venue.cancel(sell.client_order_id)
    engine.drain()
    (exit_order,) = engine.close_all_now([position], 3, by="operator")
    assert exit_order is not None and exit_order.status is OrderStatus.open and exit_order.quantity == 10.0
    assert sell.status is OrderStatus.cancelled
    venue.advance({"AAA": 100.0}, T0)
    engine.drain()
    assert exit_order.status is OrderStatus.filled and engine.state.portfolio.open_positions == []
    check_books(engine, venue)


# -- [close(X), reduce(X)] in one cycle: the reduce ignored on every path --------------------------------------


@pytest.mark.parametrize("mode", ["backtest", "lean", "paper", "live"])
def test_a_reduce_of_a_position_the_same_cycle_closes_is_ignored_alike_on_every_path(tmp_path: Path, mode: str) -> None:
    """Live used to send both sells when the close rested; a backtest created the reduce and had it refused. Every
    path now ignores the reduce with its reason, and the close sells the position whole."""
    engine, venue, journal, bar = held_on_every_path(tmp_path, mode)
    report = engine.plan([close("AAA"), reduce("AAA", fraction=0.5)], 1, cycle_ns(1))
    assert report.planned == 1 and report.ignored == [
        f"reduce AAA: the position is being closed (order {orders(engine)[-1].client_order_id}); "
        "the close sells all of it"]
    if mode == "live":
        venue.hold = True  # the close rests at the exchange: the reduce must not be sent beside it
    bar(2, 102.0)
    if mode == "live":
        assert _submitted(venue) == [o.client_order_id for o in orders(engine)]
        venue.hold = False
        venue.advance({"AAA": 102.0}, T0)
        engine.drain()
    engine.materialise()
    assert [(o.purpose, o.status) for o in orders(engine)] == [
        (OrderPurpose.open, OrderStatus.filled), (OrderPurpose.close, OrderStatus.filled)]
    assert engine.state.portfolio.open_positions == [] and len(engine.state.portfolio.closed_positions) == 1
    assert recompute_cash(engine.state.initial_cash, engine.state.portfolio) == pytest.approx(
        engine.state.portfolio.cash, abs=1e-9)
    if mode in ("paper", "live"):
        assert [(f["action"], f["symbol"]) for e, f in journal if e == "intent_ignored"] == [("reduce", "AAA")]
    if mode == "live":
        check_books(engine, venue)


@pytest.mark.parametrize("mode", ["backtest", "paper", "live"])
def test_a_reduce_before_a_close_in_one_cycle_stays_valid_and_the_close_sells_what_is_left(
        tmp_path: Path, mode: str) -> None:
    from tradeexecutor.strategy.loader import load_strategy

    path = tmp_path / "scripted.py"
    path.write_text(SCRIPTED.format(cycle="1d", instruments=["AAA"]))
    strategy = load_strategy(path)
    market = MarketData.from_long_frame(ohlc("AAA", [100.0, 101.0, 102.0, 103.0]), asset_types={"AAA": "equity"})
    engine = Engine(strategy, market, new_run_state(strategy, CONFIG, T0), config=CONFIG)
    venue = InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)
    if mode == "live":
        engine.live_venue = venue
    if mode in ("paper", "live"):
        engine.start_write_ahead(lambda: None, lambda: T0)

    def bar(step: int, price: float) -> None:
        engine.manage(step)
        if mode == "live":
            venue.advance({"AAA": price}, T0)
            engine.drain()

    engine.take([open_long("AAA", value=1000)], 0, cycle_ns(0))
    bar(1, 101.0)
    held = engine.state.portfolio.open_positions[0].quantity
    report = engine.plan([reduce("AAA", quantity=2.0), close("AAA")], 1, cycle_ns(1))
    assert report.planned == 2 and not report.ignored
    bar(2, 102.0)
    sells = [(o.purpose, o.status, o.filled_quantity) for o in orders(engine) if not o.is_buy]
    assert sells == [(OrderPurpose.reduce, OrderStatus.filled, 2.0),
                     (OrderPurpose.close, OrderStatus.filled, pytest.approx(held - 2.0))]
    assert engine.state.portfolio.open_positions == []
    if mode == "live":
        check_books(engine, venue)


# -- against the exchange simulator, through the unmodified ccxt client --------------------------------------


def test_against_the_simulator_a_close_behind_a_resting_limit_reduce_cancels_it_first_and_sells_once(
        tmp_path: Path) -> None:
    """A limit reduce above the market rests on the simulator's book. The strategy's close() meets a 503 on the
    reduce's cancel: nothing is sent (the close included); the retried cycle cancels it, confirmed, and sells the
    rest. The simulator ends with the reduce cancelled, one close filled, no base asset, and the ledger's books."""
    pytest.importorskip("ccxt")
    from exchange_sim_helpers import serve
    from test_venue_ccxt import aaa_simulator
    from tradeexecutor.state import OrderType

    with serve(aaa_simulator(), threads=4) as running:
        engine, journal = simulator_engine(tmp_path, running)
        engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
        engine.manage(1)  # a market buy the simulator fills on arrival
        (position,) = engine.state.portfolio.open_positions
        held = position.quantity
        assert held > 4.0
        engine.plan([reduce("AAA", quantity=4.0)], 1, cycle_ns(1))
        sell = orders(engine)[-1]
        sell.type, sell.limit_price = OrderType.limit, 120.0  # a limit sell above the market: it rests
        engine.manage(2)
        assert sell.status is OrderStatus.open and not sell.fills

        running.control("POST", "faults", {"kind": "error", "path": "/api/v3/order", "method": "DELETE",
                                           "count": 1})
        with pytest.raises(TemporaryError):
            engine.plan([close("AAA")], 2, cycle_ns(2))
        assert [o.purpose for o in orders(engine)] == [OrderPurpose.open, OrderPurpose.reduce]  # no close made

        engine.drain()  # the retried job
        report = engine.plan([close("AAA")], 2, cycle_ns(2))
        assert report.planned == 1 and sell.status is OrderStatus.cancelled
        engine.manage(3)  # the close: a market sell the simulator fills on arrival
        closing = orders(engine)[-1]
        assert closing.purpose is OrderPurpose.close and closing.status is OrderStatus.filled
        assert closing.filled_quantity == held and engine.state.portfolio.open_positions == []

        _, exchange_orders = running.control("GET", "orders")
        sells = sorted((o["clientOrderId"], o["status"], float(o["executedQty"])) for o in exchange_orders
                       if o["side"] == "SELL")
        assert sells == sorted([(sell.client_order_id, "CANCELED", 0.0), (closing.client_order_id, "FILLED", held)])
        _, balances = running.control("GET", "balances")
        assert float(balances["AAA"]["free"]) == 0.0 and float(balances["AAA"].get("locked", 0)) == 0.0
        assert engine.state.portfolio.cash == pytest.approx(float(balances["USD"]["free"]), abs=1e-6)
        assert [f["client_order_id"] for e, f in journal if e == "order_cancel_requested"] == [sell.client_order_id]


def test_a_cancel_the_exchange_applied_while_the_executor_was_down_is_journaled_order_cancelled_at_the_restart(
        tmp_path: Path) -> None:
    """docs/orders.md: a restart that finds the order cancelled journals ``order_cancelled`` with the request's
    reason. The daemon's start-up order (runner.build_daemon): ``cancels_asked_before``, then ``reconcile_at_start``
    (which adopts the order as cancelled: it journals the line), then the loop's start job (``resolve_orders``).
    Once, with the reason of the request the earlier process journaled. (The review's reproducer: never journaled.)"""
    from tradeexecutor.daemon.clock import FakeClock
    from tradeexecutor.daemon.journal import JournalSink
    from tradeexecutor.daemon.runner import reconcile_at_start
    from tradeexecutor.layout import RunFiles
    from tradeexecutor.ledger import Ledger
    from tradeexecutor.strategy.loader import load_strategy

    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    ledger = Ledger(tmp_path / "ledger.sqlite", now=lambda: T0)
    engine.events, engine._journal = JournalSink(ledger, lambda: T0), True
    assert engine.router is not None
    engine.router.commit = lambda: ledger.save(engine.state)  # type: ignore[method-assign]
    ledger.save(engine.state)
    venue.cancel = lambda cid: None  # type: ignore[method-assign,assignment]  # taken, not yet applied
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.plan([close("AAA")], 2, cycle_ns(2))
    ledger.close()  # the process dies
    del venue.cancel
    venue.cancel(sell.client_order_id)  # the exchange applies the cancel while the executor is down

    restarted = Ledger(tmp_path / "ledger.sqlite", now=lambda: T0)
    state = restarted.load()
    assert state is not None
    sink = JournalSink(restarted, lambda: T0)
    again = Engine(load_strategy(tmp_path / "scripted.py"), engine.market, state, config=CONFIG, events=sink)
    again.live_venue = venue
    again.cancels_asked_before(restarted.journaled("order_cancel_requested"))
    result = reconcile_at_start(restarted, state, venue, sink, RunFiles(tmp_path), FakeClock(T0), ["AAA"])
    assert result.clean, result.mismatches
    again.start_write_ahead(lambda: restarted.save(state), lambda: T0)
    again.resolve_orders(T0)  # the loop's start job
    restarted.save(state)
    (reloaded,) = [o for p in state.portfolio.all_positions() for o in p.orders
                   if o.client_order_id == sell.client_order_id]
    assert reloaded.status is OrderStatus.cancelled
    assert [(f["client_order_id"], f["reason"]) for f in restarted.journaled("order_cancelled")] == [
        (sell.client_order_id, "cancelled by close() before it filled")]
    assert [f["client_order_id"] for f in restarted.journaled("order_cancel_requested")] == [sell.client_order_id]
    restarted.close()


# -- an order the exchange lost: said plainly, never retried for ever ---------------------------------------------


def _lost_words(cid: str) -> str:
    return f"needs an operator: order {cid} unknown to the exchange; run `tradeexecutor reconcile`"


def test_live_a_resting_order_the_exchange_lost_is_said_to_need_an_operator_and_its_cancel_is_not_retried_for_ever(
        tmp_path: Path) -> None:
    """The exchange no longer knows the resting reduce (lost, not a network failure): its cancel can never be
    confirmed. Asked about, it is left ``unknown`` for a person (nothing resent, no money changed), journaled
    ``order_lost`` once with what to do, and named in ``Engine.lost`` for the daemon's safe mode — once the answer
    has persisted (``LOST_AFTER_ANSWERS`` over ``LOST_AFTER``, the injected clock driven): before that it is an
    outage, the exchange's lag. The job fails once with those words; the retry leaves the position alone (its close
    ignored with the same words) instead of asking the exchange again and again."""
    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    (position,) = engine.state.portfolio.open_positions
    cid = sell.client_order_id
    now = [T0]
    assert engine.router is not None
    engine.router.now = lambda: now[0]  # type: ignore[method-assign]
    del venue._orders[cid]  # the exchange lost it
    cash, held = engine.state.portfolio.cash, position.quantity
    for _ in range(LOST_AFTER_ANSWERS - 1):  # it may still be the exchange's lag: an outage, not lost
        with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
            engine.plan([close("AAA")], 2, cycle_ns(2))
        assert sell.status is OrderStatus.open and engine.lost == {}
        now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    with pytest.raises(TemporaryError, match=_lost_words(cid).replace("(", r"\(").replace("`", ".")):
        engine.plan([close("AAA")], 2, cycle_ns(2))
    assert sell.status is OrderStatus.unknown and sell.venue_order_id and engine.lost == {cid: _lost_words(cid)}
    assert [(f["client_order_id"], f["reason"]) for e, f in journal if e == "order_lost"] == [(cid, _lost_words(cid))]
    assert (engine.state.portfolio.cash, position.quantity) == (cash, held)  # no money fixed by itself
    report = engine.plan([close("AAA")], 2, cycle_ns(2))  # the retried job
    assert report.planned == 0 and report.ignored == [f"close AAA: {_lost_words(cid)}"]
    assert engine.in_flight(position) is sell and engine.check_triggers(3) == 0  # no exit beside it
    assert venue.calls.count(("cancel", cid)) == LOST_AFTER_ANSWERS  # once a try until lost, not for ever
    assert [e for e, _ in journal].count("order_lost") == 1
    assert engine.settle_unknown() == []  # never resent blind


def test_live_an_unconfirmed_cancel_the_exchange_still_holds_open_is_an_outage_not_a_lost_order(tmp_path: Path) -> None:
    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    venue.cancel = lambda cid: None  # type: ignore[method-assign,assignment]  # taken, not yet applied
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.plan([close("AAA")], 2, cycle_ns(2))
    venue.fail_next("fetch_order")  # and once the exchange cannot even be asked
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.plan([close("AAA")], 2, cycle_ns(2))
    assert sell.status is OrderStatus.open and engine.lost == {} and not [e for e, _ in journal if e == "order_lost"]


def test_against_the_simulator_a_resting_reduce_the_exchange_lost_needs_an_operator(tmp_path: Path) -> None:
    """Through the unmodified ccxt client: the simulator forgets every order (its reset) while the limit reduce
    rests. The next jobs' polls meet Binance's -2013 for it, by its id and by our client order id: lost once that
    has lasted (``LOST_AFTER_ANSWERS`` polls over ``LOST_AFTER``, the venue's injected clock driven; it used to end
    every job as a crash), said once, no longer asked about, and the close that follows is ignored with the words
    for a person — nothing sent for that position."""
    pytest.importorskip("ccxt")
    from exchange_sim_helpers import serve
    from test_venue_ccxt import aaa_simulator, aaa_venue
    from tradeexecutor.state import OrderType

    with serve(aaa_simulator(), threads=4) as running:
        now = [T0]
        engine, journal = simulator_engine(tmp_path, running, aaa_venue(running, now=lambda: now[0]))
        engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
        engine.manage(1)
        engine.plan([reduce("AAA", quantity=4.0)], 1, cycle_ns(1))
        sell = orders(engine)[-1]
        sell.type, sell.limit_price = OrderType.limit, 120.0
        engine.manage(2)
        assert sell.status is OrderStatus.open
        running.control("POST", "reset")  # the exchange forgets it
        cid = sell.client_order_id
        for _ in range(LOST_AFTER_ANSWERS - 1):  # the next jobs' starts: maybe the exchange's lag, still followed
            engine.drain()
            assert sell.status is OrderStatus.open and engine.lost == {}
            now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
        engine.drain()  # the answer has lasted
        assert sell.status is OrderStatus.unknown and engine.lost == {cid: _lost_words(cid)}
        assert [(f["client_order_id"], f["reason"]) for e, f in journal if e == "order_lost"] == [
            (cid, _lost_words(cid))]
        _, asked = running.control("GET", "requests")
        lookups = [r for r in asked if (r["method"], r["path"]) == ("GET", "/api/v3/order")]
        assert any(r["status"] == 400 for r in lookups)  # the exchange answered "does not exist"
        assert engine.drain() == 0 and engine.drain() == 0  # no longer followed: the poll does not ask again
        _, again = running.control("GET", "requests")
        assert [r for r in again if r not in asked and (r["method"], r["path"]) == ("GET", "/api/v3/order")] == []
        report = engine.plan([close("AAA")], 2, cycle_ns(2))
        assert report.planned == 0 and report.ignored == [f"close AAA: {_lost_words(cid)}"]
        _, after = running.control("GET", "requests")
        assert [r for r in after if r not in again and r["method"] in ("POST", "DELETE")] == []  # nothing sent
        assert [e for e, _ in journal].count("order_lost") == 1


def test_against_the_simulator_a_momentary_order_does_not_exist_right_after_placement_is_not_a_lost_order(
        tmp_path: Path) -> None:
    """Binance can answer -2013 for an order it has just accepted (its query side lags: ccxt/ccxt#1786; freqtrade
    retries OrderNotFound). The engine drains right after the submit, so the venue's poll asks at once; two such
    answers (by id, then by client order id) must not make the resting reduce lost for good: it still rests at the
    exchange, is followed, and what it sells is booked. (The review's reproducer: lost, safe mode, never booked.)"""
    pytest.importorskip("ccxt")
    from exchange_sim_helpers import serve
    from test_venue_ccxt import aaa_simulator, pin
    from tradeexecutor.state import OrderType

    with serve(aaa_simulator(), threads=4) as running:
        engine, journal = simulator_engine(tmp_path, running)
        engine.plan([open_long("AAA", value=1000)], 0, cycle_ns(0))
        engine.manage(1)
        engine.plan([reduce("AAA", quantity=4.0)], 1, cycle_ns(1))
        sell = orders(engine)[-1]
        sell.type, sell.limit_price = OrderType.limit, 120.0
        # the query endpoint answers -2013 twice (the lag), then finds the order as usual
        assert running.control("POST", "faults", {"kind": "error", "path": "/api/v3/order", "method": "GET",
                                                  "status": 400, "code": -2013, "msg": "Order does not exist.",
                                                  "count": 2})[0] == 200
        engine.manage(2)  # placed, and polled at once
        _, asked = running.control("GET", "requests")
        assert [r["status"] for r in asked if (r["method"], r["path"]) == ("GET", "/api/v3/order")][-2:] == [400, 400]
        _, book = running.control("GET", "orders")
        assert [o["status"] for o in book if o["clientOrderId"] == sell.client_order_id] == ["NEW"]  # it rests
        assert engine.lost == {} and sell.status is OrderStatus.open
        assert not [e for e, _ in journal if e == "order_lost"]
        pin(running, 125.0)  # the resting reduce fills at the exchange
        for _ in range(50):
            engine.drain()
            if sell.is_terminal:
                break
        assert sell.status is OrderStatus.filled and sell.filled_quantity == 4.0
        (position,) = engine.state.portfolio.open_positions
        _, balances = running.control("GET", "balances")
        assert position.quantity == pytest.approx(float(balances["AAA"]["free"]) + float(
            balances["AAA"].get("locked", 0)), abs=1e-9)
        assert not [e for e, _ in journal if e == "order_lost"]


def test_live_a_cancel_asked_about_during_the_exchanges_lag_is_an_outage_then_confirmed(tmp_path: Path) -> None:
    """The cancel path's half: the exchange has not applied the reduce's cancel yet and, asked about the order,
    answers that it does not know it (its lag) — an outage, not a lost order: nothing of the close sent, the order
    still followed. Once the exchange finds it again and confirms the cancel, the retried close sells the rest
    once. Even many such answers within less than ``LOST_AFTER`` are not a loss."""
    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    (position,) = engine.state.portfolio.open_positions
    now = [T0]
    assert engine.router is not None
    engine.router.now = lambda: now[0]  # type: ignore[method-assign]
    cancel, fetch_order = venue.cancel, venue.fetch_order
    venue.cancel = lambda cid: None  # type: ignore[method-assign,assignment]  # taken, not yet applied
    venue.fetch_order = lambda cid: None  # type: ignore[method-assign,assignment]  # "does not exist": the lag
    sent = _submitted(venue)
    for _ in range(2 * LOST_AFTER_ANSWERS):  # many answers, over less than the span
        with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
            engine.plan([close("AAA")], 2, cycle_ns(2))
        now[0] += (LOST_AFTER / (2 * LOST_AFTER_ANSWERS)) * 0.9
    assert sell.status is OrderStatus.open and engine.lost == {} and _submitted(venue) == sent
    assert not [e for e, _ in journal if e == "order_lost"]
    venue.cancel, venue.fetch_order = cancel, fetch_order  # type: ignore[method-assign]  # found again, cancelled
    report = engine.plan([close("AAA")], 2, cycle_ns(2))
    assert report.planned == 1 and sell.status is OrderStatus.cancelled and engine.lost == {}
    engine.manage(3)
    (closing,) = [o for o in position.orders if o.purpose is OrderPurpose.close]
    assert _submitted(venue) == [*sent, closing.client_order_id]
    venue.advance({"AAA": 101.0}, T0)
    engine.drain()
    assert closing.status is OrderStatus.filled and engine.state.portfolio.open_positions == []
    assert [f["client_order_id"] for e, f in journal if e == "order_cancel_requested"] == [sell.client_order_id]
    check_books(engine, venue)


@pytest.mark.parametrize("found_by", ["fetch_order", "poll"])
def test_live_does_not_exist_counts_only_in_a_row_a_found_order_starts_the_count_over(tmp_path: Path,
                                                                                       found_by: str) -> None:
    """A resting reduce whose cancel the exchange has not confirmed answers "does not exist" (its lag), is then found
    — resting when asked after the cancel (``_ask_after_cancel``), or in the poll's news (a fill of part of it) —
    then "does not exist" again: the count starts over at that answer, so the order is not taken for lost until the
    rule (``LOST_AFTER_ANSWERS`` answers over ``LOST_AFTER``) is met after it. It used to count on across the find
    and call it lost one answer early."""
    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    cid = sell.client_order_id
    now = [T0]
    assert engine.router is not None
    engine.router.now = lambda: now[0]  # type: ignore[method-assign]
    step = LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    fetch_order = venue.fetch_order
    known = [False]
    venue.cancel = lambda cid: None  # type: ignore[method-assign,assignment]  # taken, not yet applied
    venue.fetch_order = lambda cid: fetch_order(cid) if known[0] else None  # type: ignore[method-assign,assignment]
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):  # "does not exist": 1
        engine.plan([close("AAA")], 2, cycle_ns(2))
    now[0] += step
    if found_by == "fetch_order":
        known[0] = True  # found resting: the cancel not applied yet
        with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
            engine.plan([close("AAA")], 2, cycle_ns(2))
        known[0] = False
    else:
        venue.partial = [0.5, 0.5]
        venue.advance({"AAA": 1000.0}, T0)  # the book crosses the reduce's limit: half filled, in the poll's news
        engine.drain()
        assert sell.status is OrderStatus.partially_filled
    now[0] += step
    for _ in range(LOST_AFTER_ANSWERS - 1):  # "does not exist" again, over the span since the first: one short
        with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
            engine.plan([close("AAA")], 2, cycle_ns(2))
        assert engine.lost == {} and sell.status is not OrderStatus.unknown
        now[0] += step
    with pytest.raises(TemporaryError, match=_lost_words(cid).replace("(", r"\(").replace("`", ".")):
        engine.plan([close("AAA")], 2, cycle_ns(2))  # the rule met after the find: lost
    assert engine.lost == {cid: _lost_words(cid)}


def test_the_daemon_says_an_operator_is_needed_in_status_healthz_and_the_journal_once_the_engine_finds_a_lost_order(
        tmp_path: Path) -> None:
    """The daemon's half: a job during which the engine found a lost order (``Engine.lost``, and the exits' pass
    failing temporarily with the words, as above) puts the executor in safe mode with those words — /status's
    ``safe_mode_reason``, /healthz's reason, a ``safe_mode`` journal line — instead of an outage alone; the job's
    retry then runs through (the outage ends) and nothing is retried for ever."""
    from test_daemon_loop import _journal, make
    from tradeexecutor.config import HealthLimits
    from tradeexecutor.runstate.health import assess_health

    daemon, ticker, clock = make(tmp_path)
    try:
        ticker.advance(1)
        daemon.loop.run_pending()
        engine = daemon.loop.engine
        real = engine.manage
        words = _lost_words("te0123abcd-lqx0hs00-00r")

        def manage(step: int) -> None:
            if not engine.lost:  # the exits' pass: the exchange answered it does not know the order
                engine.lost["te0123abcd-lqx0hs00-00r"] = words
                raise TemporaryError(f"{words}; nothing of this job was sent: it is taken again without that position")
            real(step)

        engine.manage = manage  # type: ignore[method-assign]
        ticker.advance(1)
        daemon.loop.run_pending()
        snapshot = daemon.runstate.snapshot()
        assert snapshot.safe_mode and snapshot.safe_mode_reason == words
        verdict = assess_health(snapshot, HealthLimits())
        assert not verdict.healthy and f"safe mode: {words}" in verdict.reasons
        current = daemon.loop.outage.current
        assert current is not None
        clock.advance((current.next_retry_at - clock.now()).total_seconds())
        daemon.loop.run_pending()  # the retry runs through
        for _ in range(2):
            ticker.advance(1)
            daemon.loop.run_pending()
        assert daemon.loop.outage.current is None and daemon.loop.outcome is None
        assert daemon.runstate.snapshot().safe_mode_reason == words
        other = _lost_words("te0123abcd-lqx0hs00-01r")
        engine.lost["te0123abcd-lqx0hs00-01r"] = other  # a second one, found by a later job's poll
        ticker.advance(1)
        daemon.loop.run_pending()
        assert daemon.runstate.snapshot().safe_mode_reason == f"{words}; {other}"  # each named
    finally:
        daemon.close()
    lines = [(e["event"], e["fields"].get("reason")) for e in _journal(tmp_path) if e["event"] == "safe_mode"]
    assert lines == [("safe_mode", words), ("safe_mode", f"{words}; {other}")]


# -- a cancel request journaled once per order, across restarts ------------------------------------------------


def test_live_a_cancel_request_is_journaled_once_across_a_restart_and_its_confirmation_keeps_its_reason(
        tmp_path: Path) -> None:
    """The close asked the exchange to cancel the resting reduce (``order_cancel_requested``, committed) and the
    exchange had not confirmed it when the process died. The restarted process — a new engine on the ledger, told
    of its journal's requests as the daemon's start-up does — asks again at the retried close without a second
    request line, and the exchange's cancel is journaled ``order_cancelled`` with the request's reason."""
    from tradeexecutor.daemon.journal import JournalSink
    from tradeexecutor.ledger import Ledger
    from tradeexecutor.strategy.loader import load_strategy

    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    ledger = Ledger(tmp_path / "ledger.sqlite", now=lambda: T0)
    sink = JournalSink(ledger, lambda: T0)
    engine.events, engine._journal = sink, True
    assert engine.router is not None
    engine.router.commit = lambda: ledger.save(engine.state)  # type: ignore[method-assign]
    ledger.save(engine.state)
    venue.cancel = lambda cid: None  # type: ignore[method-assign,assignment]  # taken, not yet applied
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):
        engine.plan([close("AAA")], 2, cycle_ns(2))
    ledger.close()  # the process dies; what it committed stands

    restarted = Ledger(tmp_path / "ledger.sqlite", now=lambda: T0)
    state = restarted.load()
    assert state is not None
    strategy = load_strategy(tmp_path / "scripted.py")
    again = Engine(strategy, engine.market, state, config=CONFIG, events=JournalSink(restarted, lambda: T0))
    again.live_venue = venue
    again.cancels_asked_before(restarted.journaled("order_cancel_requested"))
    again.start_write_ahead(lambda: restarted.save(state), lambda: T0)
    again.resolve_orders(T0)
    with pytest.raises(TemporaryError, match="has not confirmed the cancel"):  # the retried close
        again.plan([close("AAA")], 2, cycle_ns(2))
    del venue.cancel
    venue.cancel(sell.client_order_id)  # the exchange ends it at last
    again.drain()
    restarted.save(state)
    requested = restarted.journaled("order_cancel_requested")
    assert [f["client_order_id"] for f in requested] == [sell.client_order_id]  # once, not once per process
    assert [(f["client_order_id"], f["reason"]) for f in restarted.journaled("order_cancelled")] == [
        (sell.client_order_id, "cancelled by close() before it filled")]
    restarted.close()


def test_live_order_lost_is_journaled_once_per_order_across_a_restart_and_its_words_come_back(tmp_path: Path) -> None:
    """The exchange lost the resting reduce: ``order_lost`` is journaled and committed. The restarted process — a new
    engine on the ledger, told of its journal's ``order_lost`` lines as the daemon's start-up does — finds the order
    lost again when it resolves the ledger's orders, but journals no second ``order_lost`` (it used to, once per
    process), and names it in ``Engine.lost`` with the same words, which the loop turns into safe mode again."""
    from tradeexecutor.daemon.journal import JournalSink
    from tradeexecutor.ledger import Ledger
    from tradeexecutor.strategy.loader import load_strategy

    journal: Journal = []
    engine, venue, sell = _resting_reduce(tmp_path, journal)
    cid = sell.client_order_id
    ledger = Ledger(tmp_path / "ledger.sqlite", now=lambda: T0)
    engine.events, engine._journal = JournalSink(ledger, lambda: T0), True
    assert engine.router is not None
    engine.router.commit = lambda: ledger.save(engine.state)  # type: ignore[method-assign]
    engine.router.not_found = NotFoundAnswers.one_look()  # the answer taken as lasting at once
    ledger.save(engine.state)
    del venue._orders[cid]  # the exchange lost it
    with pytest.raises(TemporaryError, match="needs an operator"):
        engine.plan([close("AAA")], 2, cycle_ns(2))
    ledger.save(engine.state)
    assert [f["client_order_id"] for f in ledger.journaled("order_lost")] == [cid]
    ledger.close()  # the process dies

    restarted = Ledger(tmp_path / "ledger.sqlite", now=lambda: T0)
    state = restarted.load()
    assert state is not None
    again = Engine(load_strategy(tmp_path / "scripted.py"), engine.market, state, config=CONFIG,
                   events=JournalSink(restarted, lambda: T0))
    again.live_venue = venue
    again.lost_before(restarted.journaled("order_lost"))
    again.start_write_ahead(lambda: restarted.save(state), lambda: T0)
    again.resolve_orders(T0)  # asks the exchange about every order: this one is still unknown to it
    report = again.plan([close("AAA")], 2, cycle_ns(2))
    restarted.save(state)
    assert [f["client_order_id"] for f in restarted.journaled("order_lost")] == [cid]  # once, not once per process
    assert again.lost == {cid: _lost_words(cid)}
    assert report.ignored == [f"close AAA: {_lost_words(cid)}"]
    restarted.close()


# -- --risk-close-positions: an entry that fills after the pause is sold -----------------------------------------


def test_live_an_entry_the_exchange_fills_after_the_risk_pause_is_sold_at_the_next_check(tmp_path: Path) -> None:
    """The drawdown hit pauses entries and asks the exchange to cancel the resting entry; the pause does not wait
    for the cancel, and the exchange fills the entry instead. With --risk-close-positions the position it opened is
    sold at the guard's next check (a trigger exit, ``risk_limit``), and no entry is ever sent again."""
    from test_resting_entry import _resting_unfilled, _risk_guard

    journal: Journal = []
    engine, venue, entry = _resting_unfilled(tmp_path, journal)
    guard = _risk_guard(engine, journal, max_drawdown=0.5)
    engine.record_valuation(1)
    engine.state.risk.peak_equity = 1e9  # as if equity had been far higher: the check hits
    venue.cancel = lambda cid: None  # type: ignore[method-assign,assignment]  # taken, not yet applied
    assert guard.check(1) and engine.state.risk.paused
    assert entry.status is OrderStatus.open and not [o for o in orders(engine) if o.purpose is OrderPurpose.close]
    del venue.cancel
    venue.advance({"AAA": 100.0}, T0)  # the exchange fills the entry rather than cancelling it
    engine.drain()
    (position,) = engine.state.portfolio.open_positions
    assert position.quantity == 10.0 and entry.status is OrderStatus.filled
    engine.record_valuation(2)
    assert not guard.check(2)  # no new hit: already paused
    (exit_order,) = [o for o in orders(engine) if o.purpose is OrderPurpose.close]
    assert exit_order.trigger is not None and exit_order.trigger.value == "risk_limit"
    venue.advance({"AAA": 100.0}, T0)
    engine.drain()
    assert exit_order.status is OrderStatus.filled and engine.state.portfolio.open_positions == []
    engine.record_valuation(3)
    assert not guard.check(3)
    assert [o.purpose for o in orders(engine)] == [OrderPurpose.open, OrderPurpose.close]  # nothing bought again
    check_books(engine, venue)


def test_live_an_order_whose_fills_could_not_be_read_yet_is_not_taken_for_lost(tmp_path: Path) -> None:
    """``unknown`` with the exchange's id is not always lost: the submit reply never came, the exchange has the
    entry (its id now known) and the outage returned while its fills were read. The next job's drain must not say
    "needs an operator" of it; asked again, it is the open order it is."""
    from test_resting_entry import _entry_of_unknown_outcome

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
    engine.drain()  # the next job's start
    engine.settle_unknown()
    assert engine.lost == {} and not [e for e, _ in journal if e == "order_lost"]

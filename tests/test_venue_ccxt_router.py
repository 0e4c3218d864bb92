"""The write-ahead router over CcxtVenue against the exchange simulator: every intent is exactly one exchange order.

The process "dies" at each commit of an order's life (or the exchange's answer is lost after it
accepted the order); the restarted process, with a new venue that remembers nothing, resolves
the order by its client order id. Afterwards the simulator holds exactly one order for the
intent, and the state's fills, position and cash are the simulator's own record.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from exchange_sim_helpers import Running
from test_engine_router import T0, Process, decide_open, new_state, one_job, send_all_created
from test_venue_ccxt import aaa_at_100, aaa_simulator, pin, running  # noqa: F401  (fixtures)
from test_venue_ccxt import aaa_venue as venue
from tradeexecutor.errors import TemporaryError
from tradeexecutor.state import OrderStatus, OrderType, State
from tradeexecutor.store import StateStore
from tradeexecutor.venue.ccxt_venue import CcxtVenue

pytest.importorskip("ccxt")


#: Each test starts from a fresh simulator account with AAA held at 100 (tests/test_venue_ccxt.py's fixtures).
pytestmark = pytest.mark.usefixtures("aaa_at_100")



def check_against_the_exchange(state: State, running: Running, client_order_id: str) -> None:
    _, orders = running.control("GET", "orders")
    assert [o["clientOrderId"] for o in orders] == [client_order_id]  # exactly one order for the intent
    _, trades = running.control("GET", "trades")
    ours = sorted((f.venue_trade_id, f.quantity, f.price, f.fee) for o in state.portfolio.all_orders() for f in o.fills)
    assert ours == sorted((str(t["id"]), float(t["qty"]), float(t["price"]), float(t["commission"])) for t in trades)
    _, balances = running.control("GET", "balances")
    (position,) = state.portfolio.open_positions
    assert position.quantity == float(balances["AAA"]["free"])
    assert state.portfolio.cash == pytest.approx(float(balances["USD"]["free"]), abs=1e-6)


@pytest.mark.parametrize("die_at_commit", [1, 2, 3])
def test_dying_at_any_commit_leaves_exactly_one_order_on_the_exchange(tmp_path: Path, running: Running,
                                                                      die_at_commit: int) -> None:
    state = new_state()
    order = decide_open(state)
    StateStore(tmp_path).save(state)
    first = Process(tmp_path, venue(running), die_at_commit=die_at_commit)

    def life(process: Process) -> None:
        send_all_created(process)  # commit 1: submitting, then the exchange fills it on arrival
        process.router.drain()  # commit 2: the fill
        process.commit()  # commit 3: the job's end

    assert not one_job(first, life)
    second = Process(tmp_path, venue(running))
    second.router.resolve()
    send_all_created(second)
    second.router.drain()
    (again,) = second.state.portfolio.open_positions[0].orders
    assert again.client_order_id == order.client_order_id and again.status is OrderStatus.filled
    check_against_the_exchange(second.state, running, order.client_order_id)


def test_an_answer_lost_after_the_exchange_accepted_is_resolved_by_client_id(tmp_path: Path,
                                                                             running: Running) -> None:
    state = new_state()
    order = decide_open(state)
    running.control("POST", "faults", {"kind": "timeout", "hang_seconds": 8, "count": 1})
    first = Process(tmp_path, venue(running, timeout_seconds=2), state=state)
    first.router.send(order)
    assert order.status is OrderStatus.unknown and order.reject_reason is None
    first.router.resolve()  # the same process asks: the exchange has it, filled
    assert order.status is OrderStatus.filled and len(order.fills) == 1
    first.router.drain()  # the venue's own later events change nothing
    assert len(order.fills) == 1
    check_against_the_exchange(first.state, running, order.client_order_id)


def test_a_lagging_not_found_after_a_lost_reply_is_asked_again_not_resent(tmp_path: Path, running: Running) -> None:
    """The submit's reply is lost after the exchange accepted (and filled) the market order, and the exchange's
    query side then answers -2013 for it twice (Binance's lag right after an order is placed). A single "does not
    exist" used to be taken as "never arrived" and the order sent again: a second, filled order (Binance refuses a
    duplicate client order id only while the first is open). Now it is an outage until the answer lasts
    (``NotFoundAnswers``); the third question finds the order and its fill is booked once."""
    state = new_state()
    order = decide_open(state)
    running.control("POST", "faults", {"kind": "timeout", "hang_seconds": 8, "count": 1})
    now = [T0 + timedelta(minutes=1)]
    first = Process(tmp_path, venue(running, timeout_seconds=2), state=state, now=lambda: now[0])
    first.router.send(order)
    assert order.status is OrderStatus.unknown and not order.venue_order_id  # its reply never came
    assert running.control("POST", "faults", {"kind": "error", "path": "/api/v3/order", "method": "GET",
                                              "status": 400, "code": -2013, "msg": "Order does not exist.",
                                              "count": 2})[0] == 200
    for _ in range(2):  # the lag: an outage, asked again at the retry (the clock moves, less than the span)
        with pytest.raises(TemporaryError, match="does not know order"):
            first.router.resolve()
        assert order.status is OrderStatus.unknown
        now[0] += timedelta(seconds=5)
    _, asked = running.control("GET", "requests")
    assert [r["status"] for r in asked if (r["method"], r["path"]) == ("GET", "/api/v3/order")] == [400, 400]
    assert first.router.resolve() == [f"{order.client_order_id}: filled at the venue"]
    first.router.drain()
    assert order.status is OrderStatus.filled and len(order.fills) == 1
    _, posted = running.control("GET", "requests")
    assert len([r for r in posted if (r["method"], r["path"]) == ("POST", "/api/v3/order")]) == 1  # never resent
    check_against_the_exchange(first.state, running, order.client_order_id)


def lagging(process_venue: CcxtVenue) -> CcxtVenue:
    """The venue reading fills from the trade list (Binance's RESULT reply carries none)."""
    process_venue.exchange.options["newOrderRespType"] = {"market": "RESULT", "limit": "RESULT"}
    return process_venue


def test_an_order_filled_while_the_trade_list_lags_is_booked_once_its_trade_is_listed_across_a_restart(
        tmp_path: Path, running: Running) -> None:
    """The exchange's trade list lags its order status (``trades_lag``): the buy by value reads filled, its trade
    not listed. Neither the venue's polls nor a restart's resolution end it short of its fill: it stays working,
    followed by the new process's venue, and once the trade is listed the fill is booked once and the order ends
    filled — the state's fills, position and cash the simulator's own. It used to be left open with no fill, and
    no longer asked about."""
    state = new_state()
    order = decide_open(state)
    StateStore(tmp_path).save(state)
    _, lag = running.control("POST", "faults", {"kind": "trades_lag"})
    first = Process(tmp_path, lagging(venue(running)))
    send_all_created(first)
    for _ in range(3):
        first.router.drain()
    (sent,) = first.state.portfolio.open_positions[0].orders
    assert sent.status is OrderStatus.open and not sent.fills
    first.commit()
    second = Process(tmp_path, lagging(venue(running)))  # a restart while the trade is still not listed
    second.router.resolve()
    second.router.drain()
    (again,) = second.state.portfolio.open_positions[0].orders
    assert again.client_order_id == order.client_order_id and not again.fills
    # Working, with the exchange's word for it (``OrderRouter.resolve_report``): filled there, nothing booked yet.
    assert again.status is OrderStatus.partially_filled and "its trades not all listed yet" in (again.status_reason or "")
    assert running.control("DELETE", f"faults/{lag['id']}")[0] == 200
    second.router.drain()
    assert again.status is OrderStatus.filled and len(again.fills) == 1
    second.router.drain()
    assert len(again.fills) == 1
    check_against_the_exchange(second.state, running, order.client_order_id)


def test_a_limit_order_cancelled_after_a_part_filled_while_the_trade_list_lags_keeps_its_part_across_a_restart(
        tmp_path: Path, running: Running) -> None:
    """Half of a limit buy fills, it is cancelled, and the half's trade is not listed yet (``trades_lag``). A restart
    resolving it then is told it is partially filled, not cancelled (``fetch_order``'s rule): ending it cancelled
    with no fill would lose the half for good. Once the trade is listed the half is booked once and the order ends
    cancelled, the state's fills, position and cash the simulator's own."""
    state = new_state()
    order = decide_open(state)
    order.type, order.quantity, order.value, order.limit_price = OrderType.limit, 10.0, None, 101.0
    StateStore(tmp_path).save(state)
    running.control("POST", "faults", {"kind": "partial_fill", "parts": 2, "interval": 3600, "count": 1})
    _, lag = running.control("POST", "faults", {"kind": "trades_lag"})
    first = Process(tmp_path, lagging(venue(running)))
    send_all_created(first)
    first.router.venue.cancel(order.client_order_id)  # what a cancel intent does, after half filled
    first.router.drain()
    first.commit()
    assert running.control("GET", "orders")[1][0]["status"] == "CANCELED"
    second = Process(tmp_path, lagging(venue(running)))
    assert second.router.resolve() == [f"{order.client_order_id}: partially_filled at the venue"]
    (again,) = second.state.portfolio.open_positions[0].orders
    assert not again.is_terminal and not again.fills
    assert running.control("DELETE", f"faults/{lag['id']}")[0] == 200
    second.router.drain()
    assert again.status is OrderStatus.cancelled and [f.quantity for f in again.fills] == [5.0]
    check_against_the_exchange(second.state, running, order.client_order_id)

"""An order the exchange never finishes telling us about, and what reading one order costs (issue 13, i13-stuck).

Real ccxt against the exchange simulator on loopback (tests/test_venue_ccxt.py's fixtures), the venue's clock
injected, every figure counted at the simulator's request log:

- an order the exchange says filled while its trades stay unlisted (``trades_lag`` until deleted) is reported once
  (``OrderFillsMissing``) after ``FILLS_MISSING_AFTER_ANSWERS`` polls over ``--exchange-fills-missing-seconds``, not
  before and not again, stays followed — asked once a fifth of the span from then on, not at each poll — and its
  fill comes as usual once its trade is listed;
- a restart adopting one order reads that order and its own trades only, however many other orders the account
  traded (it read every trade of the market and looked up each other order);
- a restart asking about orders while the exchange answers 503 stops at the first failed request.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from exchange_sim_helpers import Running
from test_engine_router import T0, Process, decide_open, new_state, send_all_created
from test_venue_ccxt import aaa_at_100, make_venue, pin, running  # noqa: F401  (fixtures)
from test_venue_ccxt import aaa_venue as venue
from tradeexecutor.errors import TemporaryError
from tradeexecutor.state import OrderPurpose, OrderSide, OrderStatus, client_order_id, run_key
from tradeexecutor.store import StateStore
from tradeexecutor.venue import OrderAccepted, OrderFilled, OrderRequest
from tradeexecutor.venue.ccxt_venue import REPORTED_ASKED_PER_SPAN
from tradeexecutor.venue.model import (
    FILLS_MISSING_AFTER,
    FILLS_MISSING_AFTER_ANSWERS,
    OrderEndedShort,
    OrderFillsMissing,
)

pytest.importorskip("ccxt")


def requests_since(running: Running, before: int, method: str, path: str) -> int:
    """How many ``method path`` requests the simulator served after the first ``before`` of its log."""
    return sum(1 for r in running.requests()[before:] if (r["method"], r["path"]) == (method, path))


def test_an_order_whose_trades_never_come_is_reported_once_after_the_span_and_still_followed(
        running: Running) -> None:
    now = [T0]
    stuck = make_venue(running, 10_000.0, now=lambda: now[0])
    pin(running, 100.0)
    _, lag = running.control("POST", "faults", {"kind": "trades_lag"})  # hides every trade from now on
    stuck.submit(OrderRequest("stuck-1", "AAA", OrderSide.buy, quantity=10))
    # The submit's reply: filled, its trade not listed — said at once (its exits wait), and never again.
    accepted, short = stuck.poll()
    assert isinstance(accepted, OrderAccepted) and short == OrderEndedShort("stuck-1", 10.0, 0.0, T0)
    assert running.control("GET", "orders")[1][0]["status"] == "FILLED"
    # The submit's reply was the first answer; two polls make three, all within the span: nothing said yet.
    for _ in range(FILLS_MISSING_AFTER_ANSWERS - 1):
        now[0] += timedelta(seconds=1)
        assert stuck.poll() == []
    now[0] = T0 + FILLS_MISSING_AFTER - timedelta(seconds=1)
    assert stuck.poll() == []  # four answers, one second short of the span
    now[0] = T0 + FILLS_MISSING_AFTER
    (said,) = stuck.poll()
    assert said == OrderFillsMissing("stuck-1", 10.0, 0.0, T0, T0 + FILLS_MISSING_AFTER)
    before = len(running.requests())
    for _ in range(5):  # reported: asked once a fifth of the span (a minute), not at each poll
        now[0] += timedelta(seconds=10)
        assert stuck.poll() == []
    assert requests_since(running, before, "GET", "/api/v3/order") == 0
    for _ in range(3):  # still followed, and said once per order
        now[0] += FILLS_MISSING_AFTER / REPORTED_ASKED_PER_SPAN
        assert stuck.poll() == []
    assert requests_since(running, before, "GET", "/api/v3/order") == 3
    assert running.control("DELETE", f"faults/{lag['id']}")[0] == 200
    assert stuck.poll() == []  # listed now, but not yet due: booked at the next ask
    now[0] += FILLS_MISSING_AFTER / REPORTED_ASKED_PER_SPAN
    (filled,) = stuck.poll()
    assert isinstance(filled, OrderFilled) and filled.complete and filled.fill.quantity == 10
    assert stuck._missing == {}
    before = len(running.requests())
    assert stuck.poll() == []
    assert requests_since(running, before, "GET", "/api/v3/order") == 0  # ended: no longer asked about


def test_the_span_is_the_setting_and_a_short_wait_is_no_news(running: Running) -> None:
    """A trade list lagging for less than the span (Binance's moments) says nothing: the fill comes, no report."""
    now = [T0]
    quick = make_venue(running, 10_000.0, now=lambda: now[0], fills_missing_seconds=30)
    pin(running, 100.0)
    _, lag = running.control("POST", "faults", {"kind": "trades_lag"})
    quick.submit(OrderRequest("lagging-1", "AAA", OrderSide.buy, quantity=10))
    events = quick.poll()
    for _ in range(5):
        now[0] += timedelta(seconds=5)  # 25 s: inside the 30 s span
        events += quick.poll()
    assert running.control("DELETE", f"faults/{lag['id']}")[0] == 200
    events += quick.poll()
    assert [type(e) for e in events] == [OrderAccepted, OrderEndedShort, OrderFilled]
    running.control("POST", "faults", {"kind": "trades_lag"})
    quick.submit(OrderRequest("lagging-2", "AAA", OrderSide.buy, quantity=10))
    quick.poll()
    for _ in range(2):
        now[0] += timedelta(seconds=15)
        events = quick.poll()
    assert [type(e) for e in events] == [OrderFillsMissing]  # 30 s, three answers: the setting's span


@pytest.mark.usefixtures("aaa_at_100")
def test_a_restart_adopting_one_order_reads_its_own_trades_not_every_trade_of_the_account(
        tmp_path: Path, running: Running) -> None:
    """Five other orders traded on the account first. The restart resolving ours asks the exchange for it (one
    order lookup) and for its trades (by its id): the same requests whatever the account's history. It read every
    trade of the market (``fills_since(None)``) and looked up the order of each one it did not follow: six order
    lookups here, one more for each order ever traded."""
    other = venue(running)
    for n in range(5):
        other.submit(OrderRequest(f"other-{n}", "AAA", OrderSide.buy, quantity=1))
    state = new_state()
    order = decide_open(state)
    StateStore(tmp_path).save(state)
    first = Process(tmp_path, venue(running))
    send_all_created(first)  # sent and filled; the process dies before it drains the reply
    second = Process(tmp_path, venue(running))
    before = len(running.requests())
    assert second.router.resolve() == [f"{order.client_order_id}: filled at the venue"]
    (again,) = second.state.portfolio.open_positions[0].orders
    assert again.status is OrderStatus.filled and len(again.fills) == 1
    assert requests_since(running, before, "GET", "/api/v3/order") == 1
    assert requests_since(running, before, "GET", "/api/v3/myTrades") == 2  # its lag check, then its fills
    _, trades = running.control("GET", "trades")
    assert len(trades) == 6 and again.fills[0].venue_trade_id == str(trades[-1]["id"])


@pytest.mark.usefixtures("aaa_at_100")
def test_a_restart_asking_about_orders_while_the_exchange_is_down_stops_at_the_first_failure(
        tmp_path: Path, running: Running) -> None:
    """Three orders written ahead (``submitting``) and the exchange answering 503: the restart's resolution asks
    about the first, fails, and asks no more this round (it asked all three: three failed requests at every retry of
    an outage). Nothing is sent; once the exchange is back, each is resolved (never arrived: sent, once)."""
    state = new_state()
    key = run_key(state.name, state.created_at)
    orders = []
    for index in range(3):
        order = decide_open(state, value=500.0)
        order.client_order_id = client_order_id(key, T0, index, OrderPurpose.open)
        order.transition(OrderStatus.submitting, T0)
        orders.append(order)
    StateStore(tmp_path).save(state)
    now = [T0 + timedelta(minutes=1)]
    exchange = venue(running)
    exchange.connect()  # its markets loaded before the exchange goes down
    restarted = Process(tmp_path, exchange, now=lambda: now[0])
    _, down = running.control("POST", "faults", {"kind": "error", "status": 503})
    before = len(running.requests())
    with pytest.raises(TemporaryError):
        restarted.router.resolve()
    assert requests_since(running, before, "GET", "/api/v3/order") == 1
    assert requests_since(running, before, "POST", "/api/v3/order") == 0
    assert [o.status for o in restarted.state.portfolio.all_orders()] == [OrderStatus.submitting] * 3
    assert running.control("DELETE", f"faults/{down['id']}")[0] == 200
    for _ in range(3):  # "does not exist" believed after three answers over a minute (never arrived: sent)
        try:
            restarted.router.resolve()
        except TemporaryError:
            pass
        now[0] += timedelta(seconds=30)
    assert sorted(o["clientOrderId"] for o in running.control("GET", "orders")[1]) == sorted(
        o.client_order_id for o in orders)

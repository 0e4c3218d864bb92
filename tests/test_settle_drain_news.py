"""The drains of the settle path bring every followed order's news, not only the settled order's: the venue's poll
reports each order it follows (the ccxt venue asks again about every one). A resting entry the exchange filled just
as an order it never saw was sent again (``Engine._send_unsent``), or just as a cancel asked for while its order's
reply was lost went out (``Engine._settle_cancelled``), is booked by that drain — and must be journaled
``order_filled`` there, once, with its stop armed, as ``Engine.drain`` would have (``Engine._drain_journaled``).
Before, those drains journaled only their own order: the ledger held a fill the journal never mentioned, and the
entry's position had no stop-loss."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test_engine_router import T0
from test_engine_writeahead import cycle_ns, live_engine_over, orders
from tradeexecutor.engine.engine import Engine
from tradeexecutor.engine.router import said
from tradeexecutor.errors import TemporaryError
from tradeexecutor.state import Order, OrderStatus
from tradeexecutor.strategy.api import open_long
from tradeexecutor.venue import InMemoryVenue
from tradeexecutor.venue.model import LOST_AFTER, LOST_AFTER_ANSWERS, ExecutionEvent, OrderReport, OrderRequest

Journal = list[tuple[str, dict[str, Any]]]
FLAT = [100.0] * 6


class ReplyLostVenue(InMemoryVenue):
    """As the ccxt venue: an order whose submit's reply was lost has no exchange id, so the poll says nothing of it
    until ``fetch_order`` (by client order id) has found it. ``on_send`` / ``on_cancel`` run right after the venue took
    a submit / cancel: what the exchange did meanwhile (a resting order filled), before anyone drained."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unseen: set[str] = set()
        self.on_send: Any = None
        self.on_cancel: Any = None

    def submit(self, request: OrderRequest) -> None:
        try:
            super().submit(request)
        except TemporaryError:
            self.unseen.add(request.client_order_id)
            raise
        if self.on_send is not None:
            self.on_send()

    def cancel(self, client_order_id: str) -> None:
        super().cancel(client_order_id)
        if self.on_cancel is not None:
            self.on_cancel()

    def fetch_order(self, client_order_id: str) -> OrderReport | None:
        report = super().fetch_order(client_order_id)
        if report is not None:
            self.unseen.discard(client_order_id)
        return report

    def poll(self) -> list[ExecutionEvent]:
        return [event for event in super().poll() if event.client_order_id not in self.unseen]


def resting_entry(engine: Engine, venue: InMemoryVenue, symbol: str, cycle: int) -> Order:
    """An entry for ``symbol`` planned at ``cycle`` and sent at the next bar, which rests at the exchange."""
    engine.plan([open_long(symbol, value=1000, stop_loss_pct=0.1)], cycle, cycle_ns(cycle))
    venue.hold = True
    engine.manage(cycle + 1)
    venue.hold = False
    entry = orders(engine)[-1]
    assert entry.status is OrderStatus.open and not entry.fills
    return entry


def assert_journaled_once_with_its_stop(engine: Engine, journal: Journal, entry: Order) -> None:
    """``entry`` filled: one ``order_filled`` line, its position's stop armed, and no drain after says it again."""
    assert entry.status is OrderStatus.filled
    engine.drain()  # afterwards the fill is no news
    position = next(p for p in engine.state.portfolio.open_positions if p.orders[0] is entry)
    assert position.stop_loss == pytest.approx(entry.fills[0].price * 0.9), "bought, but its stop-loss never armed"
    filled = [f["client_order_id"] for e, f in journal if e == "order_filled"]
    assert filled.count(entry.client_order_id) == 1, filled
    assert sorted(filled) == sorted(o.client_order_id for o in orders(engine) for _ in o.fills)  # journal == ledger


def test_a_resting_entry_filled_in_the_drain_of_a_resend_is_journaled_once_and_arms_its_stop(tmp_path: Path) -> None:
    journal: Journal = []
    now = [T0]
    engine, venue = live_engine_over(tmp_path, {"AAA": FLAT, "BBB": FLAT}, journal, lambda: now[0], ReplyLostVenue)
    assert isinstance(venue, ReplyLostVenue)
    entry = resting_entry(engine, venue, "AAA", 0)
    engine.plan([open_long("BBB", value=1000, stop_loss_pct=0.1)], 1, cycle_ns(1))
    venue.fail_next("submit")  # BBB never reaches the exchange
    engine.manage(2)
    unsent = orders(engine)[-1]
    assert unsent.status is OrderStatus.unknown and not unsent.venue_order_id
    for _ in range(LOST_AFTER_ANSWERS - 1):  # its "does not exist" must last before it is sent again
        with pytest.raises(TemporaryError):
            engine.settle_unknown()
        now[0] += LOST_AFTER / (LOST_AFTER_ANSWERS - 1)
    assert not journal_of(journal, entry)
    venue.on_send = lambda: venue.advance({"AAA": 100.0}, T0)  # the exchange fills AAA as BBB is sent
    assert engine.settle_unknown() == [f"{unsent.client_order_id}: {said('sent')}"]
    assert journal_of(journal, entry), "AAA's fill, booked by the resend's drain, was never journaled"
    assert_journaled_once_with_its_stop(engine, journal, entry)


def test_a_resting_entry_filled_in_the_drain_of_a_settled_cancel_is_journaled_once_and_arms_its_stop(
        tmp_path: Path) -> None:
    journal: Journal = []
    now = [T0]
    engine, venue = live_engine_over(tmp_path, {"AAA": FLAT, "BBB": FLAT}, journal, lambda: now[0], ReplyLostVenue)
    assert isinstance(venue, ReplyLostVenue)
    engine.plan([open_long("BBB", value=1000, stop_loss_pct=0.1)], 0, cycle_ns(0))
    venue.fail_next("submit", after_effect=True)  # the exchange takes BBB; its reply is lost
    engine.manage(1)
    lost = orders(engine)[-1]
    assert lost.status is OrderStatus.unknown and not lost.venue_order_id
    venue.fail_next("fetch_order")  # the cancel's question cannot be asked: the cancel stays unconfirmed
    engine.cancel_entries(1, "cancelled: risk pause")
    assert lost.status is OrderStatus.unknown
    entry = resting_entry(engine, venue, "AAA", 1)
    venue.on_cancel = lambda: venue.advance({"AAA": 100.0}, T0)  # the exchange fills AAA as BBB's cancel goes out
    assert engine.settle_unknown() == [f"{lost.client_order_id}: {said('open')}"]  # found working: cancelled now
    assert lost.status is OrderStatus.cancelled
    assert journal_of(journal, entry), "AAA's fill, booked by the cancel's drain, was never journaled"
    assert_journaled_once_with_its_stop(engine, journal, entry)


def journal_of(journal: Journal, order: Order) -> list[str]:
    """The journal's ``order_filled`` lines of ``order``."""
    return [e for e, f in journal if f.get("client_order_id") == order.client_order_id and e == "order_filled"]


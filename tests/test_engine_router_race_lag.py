"""A 'complete' event of a fill already booked ends the order only when the booked fills are all of it: an
exchange's trade list may lag its order's status, and an order ended with a fill still missing never takes it
(engine/router.py ``_all_booked``; tests/test_engine_router_race.py has the race this guards the fix of)."""

from __future__ import annotations

from test_engine_router import T0, new_state
from test_engine_router_race import Stale
from tradeexecutor.engine.reconcile import reconcile
from tradeexecutor.engine.router import OrderRouter
from tradeexecutor.state import OrderPurpose, OrderSide, OrderStatus, OrderType
from tradeexecutor.state.client_id import client_order_id, run_key
from tradeexecutor.venue import OrderFilled
from tradeexecutor.venue.model import ExecutionEvent, FillReport, OrderRequest
from venue_contract import AAA


class Lagging(Stale):
    """Its trade list shows only the first ``shown`` fills; its poll says what the ccxt venue's poll says of an
    adopted order (tracked with no trade ids) whose status reads filled while fetch_order_trades lags: the trades
    it lists, the last one 'complete'."""

    shown: int | None = None
    scripted: list[ExecutionEvent] | None = None

    def order_fills(self, client_order_id: str) -> list[FillReport]:
        fills = super().order_fills(client_order_id)
        return fills if self.shown is None else fills[:self.shown]

    def poll(self) -> list[ExecutionEvent]:
        if self.scripted is not None:
            super().poll()
            events, self.scripted = self.scripted, None
            return events
        return super().poll()


def test_a_complete_event_of_a_booked_fill_does_not_end_an_order_whose_other_fill_is_missing() -> None:
    state = new_state()
    venue = Lagging([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True
    cid = client_order_id(run_key(state.name, state.created_at), T0, 0, OrderPurpose.open)
    venue.submit(OrderRequest(cid, "AAA", OrderSide.buy, OrderType.limit, quantity=1.0, limit_price=150.0))
    venue.stale = venue.fetch_order(cid)  # open, nothing filled
    venue.hold = False
    venue.partial = [0.6, 0.4]
    venue.advance({"AAA": 100.0}, T0)  # 0.6 fills
    venue.advance({"AAA": 100.0}, T0)  # 0.4 fills: the order is filled at the exchange
    venue.shown = 1  # its trade list lags: only the first trade is listed yet
    reconcile(state, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",))
    (position,) = state.portfolio.open_positions
    (order,) = position.orders
    assert order.status is OrderStatus.partially_filled and order.filled_quantity == 0.6
    first = order.fills[0]
    assert first.venue_trade_id is not None
    venue.stale = None
    booked = FillReport(cid, first.venue_trade_id, first.quantity, first.price, first.fee, "USD", first.at)
    venue.scripted = [OrderFilled(cid, booked, True)]  # status filled, trades [the first]: last one 'complete'
    router = OrderRouter(state, venue, lambda: None, lambda: T0)
    router.drain()
    # 0.4 of the order is not booked yet: it must not be ended (a terminal order never takes a fill again)
    assert order.status is OrderStatus.partially_filled, (order.status, order.filled_quantity)
    venue.shown = None  # the trade list catches up
    reconcile(state, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",))
    assert order.filled_quantity == 1.0 and position.quantity == 1.0, (order.filled_quantity, position.quantity)

"""An order that fills between the exchange's report of it and the read of its fills ends filled.

``OrderRouter._take_report`` reads the order's report first and its fills second (so a report that says the order
ended is never ahead of the fills read after it). A fill landing between the two reads used to be booked as partial
(the report said open), the later "complete" fill event was then dropped as already applied, and nothing took
``filled`` from a later report either: an order wholly filled stayed working for ever. Reproducer from the review of
the adoption branch: a venue whose lookup answers with the report it had a moment before the order filled.
"""

from __future__ import annotations

from test_engine_router import T0, new_state
from tradeexecutor.engine.reconcile import reconcile
from tradeexecutor.engine.router import OrderRouter
from tradeexecutor.state import OrderPurpose, OrderSide, OrderStatus, OrderType, State
from tradeexecutor.state.client_id import client_order_id, run_key
from tradeexecutor.venue import InMemoryVenue
from tradeexecutor.venue.model import OrderReport, OrderRequest
from venue_contract import AAA


class Stale(InMemoryVenue):
    """Answers a lookup, and lists its open orders, with the report it had a moment ago (the order filled right
    after the exchange answered), while ``stale`` is set."""

    stale: OrderReport | None = None

    def fetch_order(self, client_order_id: str) -> OrderReport | None:
        return self.stale if self.stale is not None else super().fetch_order(client_order_id)

    def open_orders(self) -> list[OrderReport]:
        return [self.stale] if self.stale is not None else super().open_orders()


def filled_behind_its_report(state: State, *, quantity_known: bool = True) -> Stale:
    """A venue holding a limit buy of ours that filled (1.0 at 100) after the report its lookup still gives (open)."""
    venue = Stale([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True
    cid = client_order_id(run_key(state.name, state.created_at), T0, 0, OrderPurpose.open)
    venue.submit(OrderRequest(cid, "AAA", OrderSide.buy, OrderType.limit, quantity=1.0, limit_price=150.0))
    report = venue.fetch_order(cid)
    assert report is not None and report.status is OrderStatus.open and report.filled_quantity == 0.0
    venue.stale = report if quantity_known else _without_quantity(report)
    venue.hold = False
    venue.advance({"AAA": 100.0}, T0)  # fills now; the lookup and the open orders still answer "open"
    return venue


def _without_quantity(report: OrderReport) -> OrderReport:
    return OrderReport(report.client_order_id, report.venue_order_id, report.symbol, report.side, report.status,
                       report.filled_quantity, report.average_price, type=report.type, limit_price=report.limit_price)


def test_an_order_that_fills_between_its_report_and_its_fills_ends_filled() -> None:
    state = new_state()
    venue = filled_behind_its_report(state)
    cash = state.portfolio.cash
    result = reconcile(state, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",))
    (position,) = state.portfolio.open_positions
    (order,) = position.orders
    assert [o.action for o in result.exchange_orders] == ["adopted"]
    assert order.filled_quantity == 1.0 and len(order.fills) == 1
    venue.stale = None
    OrderRouter(state, venue, lambda: None, lambda: T0).drain()  # the 'complete' fill event arrives
    assert order.status is OrderStatus.filled, order.status
    assert len(order.fills) == 1 and position.quantity == 1.0  # booked once
    assert state.portfolio.cash == cash - 100.0 - 0.1


def test_and_the_complete_fill_event_ends_it_when_the_report_did_not_say_its_quantity() -> None:
    state = new_state()
    venue = filled_behind_its_report(state, quantity_known=False)
    reconcile(state, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",))
    (position,) = state.portfolio.open_positions
    (order,) = position.orders
    assert order.status is OrderStatus.partially_filled  # the report said neither filled nor how much it was for
    venue.stale = None
    OrderRouter(state, venue, lambda: None, lambda: T0).drain()  # its one fill again, now 'complete': not rebooked
    assert order.status is OrderStatus.filled, order.status
    assert len(order.fills) == 1 and position.quantity == 1.0


def test_and_a_later_reconciliation_ends_one_left_working_by_it() -> None:
    state = new_state()
    venue = filled_behind_its_report(state, quantity_known=False)
    reconcile(state, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",))
    (order,) = state.portfolio.open_positions[0].orders
    assert order.status is OrderStatus.partially_filled
    venue.stale = None
    venue.poll()  # its events went elsewhere: only the report ends it now
    again = reconcile(state, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",))  # pass 1: report filled
    assert [c.after for c in again.orders] == ["filled"], again.orders
    assert order.status is OrderStatus.filled and len(order.fills) == 1

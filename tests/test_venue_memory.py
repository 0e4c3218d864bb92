"""The in-memory twin's own controls: scripted faults before and after a call takes effect, partial fills, holds.

These are what the write-ahead tests rely on, so they are checked here on their own: a fault
*before* a submit leaves the venue without the order; *after*, the venue has it and only the
answer was lost — exactly the case a blind resend would turn into a duplicate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tradeexecutor.errors import TemporaryError
from tradeexecutor.state import OrderStatus
from tradeexecutor.venue import InMemoryVenue, OrderAccepted, OrderFilled
from venue_contract import AAA, buy

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def venue() -> InMemoryVenue:
    return InMemoryVenue([AAA], {"USD": 10_000.0}, fee=0.001)


def test_a_submit_that_fails_before_it_reaches_the_venue_leaves_nothing() -> None:
    twin = venue()
    twin.fail_next("submit")
    with pytest.raises(TemporaryError, match="before it reached the venue"):
        twin.submit(buy("b1", value=1000.0))
    assert twin.fetch_order("b1") is None and twin.poll() == []
    twin.submit(buy("b1", value=1000.0))  # sending it now is safe: the venue never saw it
    assert twin.fetch_order("b1") is not None


def test_a_submit_that_fails_after_it_reached_the_venue_leaves_the_order_there() -> None:
    twin = venue()
    twin.fail_next("submit", after_effect=True)
    with pytest.raises(TemporaryError, match="after it reached the venue"):
        twin.submit(buy("b1", value=1000.0))
    report = twin.fetch_order("b1")
    assert report is not None and report.status is OrderStatus.open  # the outcome was only unknown to the caller
    twin.advance({"AAA": 100.0}, T0)
    assert [type(e) for e in twin.poll()] == [OrderAccepted, OrderFilled]
    assert twin.calls == [("submit", "b1"), ("fetch_order", "b1")]


def test_fetch_order_and_poll_can_fail_once() -> None:
    twin = venue()
    twin.submit(buy("b1", value=1000.0))
    twin.fail_next("fetch_order")
    twin.fail_next("poll")
    with pytest.raises(TemporaryError):
        twin.fetch_order("b1")
    with pytest.raises(TemporaryError):
        twin.poll()
    assert twin.fetch_order("b1") is not None
    assert len(twin.poll()) == 1  # nothing was lost by the failed poll


def test_partial_fills_arrive_in_parts_and_add_up() -> None:
    twin = venue()
    twin.partial = [0.3, 0.7]
    twin.submit(buy("b1", quantity=10))
    twin.advance({"AAA": 100.0}, T0)
    twin.advance({"AAA": 101.0}, T0 + timedelta(minutes=1))
    fills = [e for e in twin.poll() if isinstance(e, OrderFilled)]
    assert [(f.fill.quantity, f.fill.price, f.complete) for f in fills] == [(3, 100.0, False), (7, 101.0, True)]
    report = twin.fetch_order("b1")
    assert report is not None and report.status is OrderStatus.filled and report.filled_quantity == 10
    assert report.average_price == pytest.approx((3 * 100 + 7 * 101) / 10)


def test_held_orders_wait_on_the_book() -> None:
    twin = venue()
    twin.hold = True
    twin.submit(buy("b1", value=1000.0))
    twin.advance({"AAA": 100.0}, T0)
    assert [r.client_order_id for r in twin.open_orders()] == ["b1"]
    twin.hold = False
    twin.advance({"AAA": 100.0}, T0)
    assert twin.open_orders() == []


def test_an_unknown_method_cannot_be_scripted() -> None:
    with pytest.raises(ValueError, match="no fault can be scripted for 'balances'"):
        venue().fail_next("balances")

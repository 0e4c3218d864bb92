"""The contract every venue keeps, as one suite: import ``VenueContract`` and give it a ``harness`` fixture.

A harness makes a fresh venue holding some cash and brings it a price (the local venues'
``advance``; the ccxt venue against the exchange simulator moves the simulator's market).
The tests use only the Venue interface otherwise, so a venue that passes can stand in for
any other behind the engine and the loop.

Two kinds of venue keep the same contract at different moments. A local venue holds a market
order until ``advance`` brings the next price; an exchange fills it on arrival at the price it
shows then, and stamps the fill with its own clock. For an exchange (``fills_on_arrival``) the
suite brings the price *before* submitting, checks the accepted and filled events together, and
checks the fill's time against the exchange's clock instead of the time the local venues are given;
a cancel is tried on a limit order far from the market, the only order an exchange leaves resting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tradeexecutor.state import OrderSide, OrderStatus, OrderType, RejectReason
from tradeexecutor.venue import (
    DuplicateOrderError,
    InstrumentSpec,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderRequest,
    Venue,
)

T0 = datetime(2024, 5, 1, tzinfo=UTC)
#: The one instrument every harness lists: whole lots, a 10 USD minimum order.
AAA = InstrumentSpec(symbol="AAA", lot_step=1.0, tick_size=0.01, min_notional=10.0, base="AAA", quote="USD")
#: Fee fraction every harness charges.
FEE = 0.001


@dataclass
class Harness:
    """How the suite drives one venue implementation."""

    name: str
    #: A fresh venue listing AAA and holding ``cash`` USD.
    make: Callable[[float], Any]
    #: Bring the venue a price for AAA at a time; open market orders fill at it.
    price: Callable[[Any, float, datetime], None]
    #: An exchange: market orders fill when they arrive, at the price of that moment and its time.
    fills_on_arrival: bool = False

    def before(self, venue: Any, price: float, at: datetime) -> None:
        """The price the next market orders fill at, brought before they are sent (an exchange)."""
        if self.fills_on_arrival:
            self.price(venue, price, at)

    def after(self, venue: Any, price: float, at: datetime) -> None:
        """The price the open market orders fill at, brought after they were sent (a local venue)."""
        if not self.fills_on_arrival:
            self.price(venue, price, at)


def buy(cid: str, *, value: float | None = None, quantity: float | None = None) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol="AAA", side=OrderSide.buy, value=value, quantity=quantity)


def sell(cid: str, *, quantity: float | None = None, close_all: bool = False) -> OrderRequest:
    return OrderRequest(client_order_id=cid, symbol="AAA", side=OrderSide.sell, quantity=quantity, close_all=close_all)


class VenueContract:
    """Subclass in a test module that defines a ``harness`` fixture; every test here runs on it."""

    def venue(self, harness: Harness, cash: float = 10_000.0) -> Venue:
        venue = harness.make(cash)
        assert isinstance(venue, Venue)  # runtime check of the Protocol's methods
        return venue  # type: ignore[no-any-return]

    def test_instruments_lists_what_the_venue_trades(self, harness: Harness) -> None:
        venue = self.venue(harness)
        specs = venue.instruments(["AAA", "NOPE"])
        assert set(specs) == {"AAA"}
        assert specs["AAA"].lot_step == 1.0 and specs["AAA"].min_notional == 10.0 and specs["AAA"].quote == "USD"

    def test_a_client_order_id_never_seen_is_none(self, harness: Harness) -> None:
        assert self.venue(harness).fetch_order("never-sent") is None

    def test_a_market_buy_is_accepted_then_filled_and_reported_everywhere(self, harness: Harness) -> None:
        venue = self.venue(harness)
        harness.before(venue, 100.0, T0)
        sent = datetime.now(UTC)
        venue.submit(buy("b1", value=1000.0))
        if harness.fills_on_arrival:
            accepted, filled = venue.poll()
            assert isinstance(accepted, OrderAccepted) and accepted.client_order_id == "b1"
            assert isinstance(filled, OrderFilled)
            assert sent - timedelta(seconds=60) <= filled.fill.at <= datetime.now(UTC) + timedelta(seconds=60)
        else:
            (accepted,) = venue.poll()
            assert isinstance(accepted, OrderAccepted) and accepted.client_order_id == "b1"
            report = venue.fetch_order("b1")
            assert report is not None and report.status is OrderStatus.open and report.filled_quantity == 0
            assert [r.client_order_id for r in venue.open_orders()] == ["b1"]
            harness.price(venue, 100.0, T0)
            (filled,) = venue.poll()
            assert isinstance(filled, OrderFilled) and filled.fill.at == T0
        assert isinstance(filled, OrderFilled) and filled.complete and filled.client_order_id == "b1"
        fill = filled.fill
        assert fill.quantity == 10 and fill.price == 100.0  # a value is the notional asked; the fee comes on top
        assert fill.fee == pytest.approx(10 * 100.0 * FEE) and fill.fee_currency == "USD"
        report = venue.fetch_order("b1")
        assert report is not None and report.status is OrderStatus.filled
        assert report.filled_quantity == 10 and report.average_price == 100.0 and report.venue_order_id
        assert venue.open_orders() == []
        assert venue.order_fills("b1") == [fill]
        assert venue.order_fills("b1") == [fill]  # read again: the same, nothing consumed
        balances = venue.balances()
        assert balances["AAA"].free == 10
        assert balances["USD"].free == pytest.approx(10_000.0 - 1000.0 - 1.0)
        assert venue.poll() == []  # every event is delivered once

    def test_a_client_order_id_is_taken_once(self, harness: Harness) -> None:
        venue = self.venue(harness)
        harness.before(venue, 100.0, T0)
        venue.submit(buy("b1", value=1000.0))
        with pytest.raises(DuplicateOrderError, match="b1"):
            venue.submit(buy("b1", value=1000.0))
        harness.after(venue, 100.0, T0)
        assert len(venue.order_fills("b1")) == 1 and venue.balances()["AAA"].free == 10

    def test_selling_what_is_not_held_is_rejected_with_a_reason(self, harness: Harness) -> None:
        venue = self.venue(harness)
        harness.before(venue, 100.0, T0)
        venue.submit(sell("s1", quantity=5))
        harness.after(venue, 100.0, T0)
        events = venue.poll()
        assert isinstance(events[-1], OrderRejected) and events[-1].reason is RejectReason.nothing_to_sell
        assert events[-1].text
        report = venue.fetch_order("s1")
        assert report is not None and report.status is OrderStatus.rejected
        assert report.reject_reason is RejectReason.nothing_to_sell and venue.order_fills("s1") == []

    def test_a_buy_the_cash_cannot_pay_for_is_rejected_and_cash_never_goes_negative(self, harness: Harness) -> None:
        venue = self.venue(harness, cash=50.0)
        harness.before(venue, 100.0, T0)
        venue.submit(buy("b1", quantity=3))
        harness.after(venue, 100.0, T0)
        report = venue.fetch_order("b1")
        assert report is not None and report.status is OrderStatus.rejected
        assert report.reject_reason is RejectReason.insufficient_cash
        assert venue.balances()["USD"].free == 50.0
        venue = self.venue(harness)
        harness.before(venue, 100.0, T0)
        venue.submit(buy("b2", quantity=1000))  # more than 10,000 pays for: sized down or refused, never overspent
        harness.after(venue, 100.0, T0)
        assert venue.balances()["USD"].free >= 0

    def test_an_order_below_the_minimum_notional_is_rejected(self, harness: Harness) -> None:
        venue = self.venue(harness)
        harness.before(venue, 5.0, T0)
        venue.submit(buy("b1", quantity=1))
        harness.after(venue, 5.0, T0)  # 1 lot at 5 = 5 < 10
        report = venue.fetch_order("b1")
        assert report is not None and report.status is OrderStatus.rejected
        assert report.reject_reason is RejectReason.below_min_notional

    def test_close_all_sells_everything_held(self, harness: Harness) -> None:
        venue = self.venue(harness)
        harness.before(venue, 100.0, T0)
        venue.submit(buy("b1", value=1000.0))
        harness.after(venue, 100.0, T0)
        harness.before(venue, 110.0, T0 + timedelta(days=1))
        venue.submit(sell("s1", close_all=True))
        harness.after(venue, 110.0, T0 + timedelta(days=1))
        report = venue.fetch_order("s1")
        assert report is not None and report.status is OrderStatus.filled and report.filled_quantity == 10
        assert venue.balances()["AAA"].free == 0

    def test_a_cancelled_order_never_fills(self, harness: Harness) -> None:
        venue = self.venue(harness)
        if harness.fills_on_arrival:  # an exchange keeps only a limit order away from the market open
            harness.price(venue, 100.0, T0)
            venue.submit(OrderRequest(client_order_id="b1", symbol="AAA", side=OrderSide.buy, type=OrderType.limit,
                                      quantity=10, limit_price=50.0))
            venue.cancel("b1")
            harness.price(venue, 40.0, T0)  # through the limit: a live order would fill now
        else:
            venue.submit(buy("b1", value=1000.0))
            venue.cancel("b1")
            harness.price(venue, 100.0, T0)
        events = venue.poll()
        assert [type(e) for e in events] == [OrderAccepted, OrderCancelled]
        report = venue.fetch_order("b1")
        assert report is not None and report.status is OrderStatus.cancelled and report.filled_quantity == 0
        assert venue.order_fills("b1") == [] and venue.balances()["USD"].free == 10_000.0
        venue.cancel("b1")  # cancelling a terminal order (or one never sent) changes nothing
        venue.cancel("never-sent")
        assert venue.poll() == []

    def test_an_unlisted_symbol_is_rejected(self, harness: Harness) -> None:
        venue = self.venue(harness)
        venue.submit(OrderRequest(client_order_id="x1", symbol="NOPE", side=OrderSide.buy, value=100.0))
        report = venue.fetch_order("x1")
        assert report is not None and report.status is OrderStatus.rejected
        assert report.reject_reason is RejectReason.venue

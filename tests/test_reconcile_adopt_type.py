"""An order of ours whose type the exchange reports in a way the executor does not map is not adopted: a mismatch.

Recorded as a guess (market), a stop order would lose its stop price — the ledger would follow an order that is not
the one on the exchange. It stays a mismatch with the reason, as any order of ours that cannot be placed.
"""

from __future__ import annotations

import dataclasses

from test_engine_router import T0, new_state
from tradeexecutor.engine.reconcile import reconcile
from tradeexecutor.state import OrderPurpose, OrderSide, OrderType
from tradeexecutor.state.client_id import client_order_id, run_key
from tradeexecutor.venue import InMemoryVenue
from tradeexecutor.venue.model import OrderReport, OrderRequest
from venue_contract import AAA


class Untyped(InMemoryVenue):
    """Reports its orders without their type (the exchange's type is one the venue does not map, as ccxt's
    ``_TYPES`` gives None for a trailing stop)."""

    def open_orders(self) -> list[OrderReport]:
        return [dataclasses.replace(r, type=None) for r in super().open_orders()]

    def fetch_order(self, client_order_id: str) -> OrderReport | None:
        report = super().fetch_order(client_order_id)
        return dataclasses.replace(report, type=None) if report is not None else None


def test_an_order_of_ours_of_a_type_not_known_is_a_mismatch_not_a_guessed_market_order() -> None:
    state = new_state()
    venue = Untyped([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True
    cid = client_order_id(run_key(state.name, state.created_at), T0, 0, OrderPurpose.open)
    venue.submit(OrderRequest(cid, "AAA", OrderSide.buy, OrderType.limit, quantity=1.0, limit_price=50.0))
    result = reconcile(state, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",))
    reason = "it could not be adopted: its type is not known: the exchange's type of it is not one the executor maps"
    assert [(o.client_order_id, o.action, o.reason) for o in result.exchange_orders] == [(cid, "mismatch", reason)]
    assert [m.client_order_id for m in result.mismatches] == [cid] and not result.clean
    assert state.portfolio.open_positions == [] and not result.changed  # nothing recorded


class StopWithoutItsPrice(InMemoryVenue):
    """Reports its orders as stop orders without their stop price (an exchange whose answer leaves it out)."""

    def open_orders(self) -> list[OrderReport]:
        return [dataclasses.replace(r, type=OrderType.stop, stop_price=None) for r in super().open_orders()]


def test_a_stop_order_of_ours_whose_stop_price_is_not_said_is_a_mismatch_not_a_stop_without_a_trigger() -> None:
    state = new_state()
    venue = StopWithoutItsPrice([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True
    cid = client_order_id(run_key(state.name, state.created_at), T0, 0, OrderPurpose.open)
    venue.submit(OrderRequest(cid, "AAA", OrderSide.buy, OrderType.limit, quantity=1.0, limit_price=50.0))
    result = reconcile(state, venue, commit=lambda: None, now=lambda: T0, symbols=("AAA",))
    reason = "it could not be adopted: it is a stop order and the exchange does not say its stop price"
    assert [(o.client_order_id, o.action, o.reason) for o in result.exchange_orders] == [(cid, "mismatch", reason)]
    assert state.portfolio.open_positions == [] and not result.changed

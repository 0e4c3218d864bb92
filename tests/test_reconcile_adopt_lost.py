"""An adoption whose lookup then finds nothing still commits what it changed, with its ``order_adopted`` line.

An order of ours listed open, then not found by its lookup by client id (archived between the two looks): ``_adopt``
has changed the state (a new position, the order recorded and left unknown, the next ids moved) and journaled
``order_adopted``. It used to leave ``changed`` False, so ``reconcile()`` never committed: the line was dropped while
the next job's commit wrote the mutated state without it. Reproducer from the review of the adoption branch.
"""

from __future__ import annotations

from typing import Any

from test_engine_router import T0, new_state
from tradeexecutor.engine.reconcile import reconcile
from tradeexecutor.state import OrderPurpose, OrderSide, OrderStatus, OrderType
from tradeexecutor.state.client_id import client_order_id, run_key
from tradeexecutor.venue import InMemoryVenue
from tradeexecutor.venue.model import OrderReport, OrderRequest
from venue_contract import AAA


class Forgetful(InMemoryVenue):
    """Lists its resting orders, but its lookup by client id no longer finds them (archived between the two looks)."""

    def fetch_order(self, client_order_id: str) -> OrderReport | None:
        return None


def test_an_adoption_whose_lookup_finds_nothing_still_commits_what_it_changed() -> None:
    state = new_state()
    venue = Forgetful([AAA], {"USD": 10_000.0}, fee=0.001)
    venue.hold = True
    cid = client_order_id(run_key(state.name, state.created_at), T0, 0, OrderPurpose.open)
    venue.submit(OrderRequest(cid, "AAA", OrderSide.buy, OrderType.limit, quantity=1.0, limit_price=50.0))
    assert [r.client_order_id for r in venue.open_orders()] == [cid]
    happened: list[tuple[str, dict[str, Any]]] = []  # journal lines and commits, in order
    result = reconcile(state, venue, commit=lambda: happened.append(("commit", {})), now=lambda: T0, symbols=("AAA",),
                       journal=lambda event, /, **fields: happened.append((event, fields)))
    (position,) = state.portfolio.open_positions
    (order,) = position.orders
    assert order.client_order_id == cid and order.status is OrderStatus.unknown  # recorded, left for a person
    (entry,) = result.exchange_orders
    assert (entry.action, entry.position_id) == ("mismatch", position.id) and not result.clean
    assert result.changed
    events = [event for event, _ in happened]
    assert "order_adopted" in events and events[-1] == "commit", events  # the line commits with the state it changed
    assert events.index("order_adopted") < events.index("commit")

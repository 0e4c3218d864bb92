"""Orders the exchange says ended while the trades it lists do not add up: journaled once, shown, and cleared.

The ccxt venue follows such an order until its trades add up (ending it short would lose the missing fill for good)
and, once that has lasted, says so (``OrderFillsMissing``; the router keeps it in ``OrderRouter.fills_missing``).
Here that news becomes one ``order_fills_missing`` journal line per order (across restarts: ``before``) and an entry
of :attr:`MissingFills.orders`, which the daemon shows in /status, /healthz and /metrics. When the trades come the
router books them and ends the order as for any other; the entry is then dropped and ``order_fills_found``
journaled. Nothing here books, ends or resends anything, nor touches money: it only tells a person.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tradeexecutor.engine.router import OrderRouter
from tradeexecutor.state import Order, Position, State

__all__ = ["MissingFills"]

#: The engine's event sink: the event's name, then its fields.
Events = Callable[..., None]


class MissingFills:
    """The orders of one process whose fills the exchange has not listed for long enough, with the words for a
    person; rare (an exchange's bug, an order filled as its market was delisted), so a plain dict."""

    def __init__(self) -> None:
        #: Client order id → what /status and /healthz say of it.
        self.orders: dict[str, dict[str, Any]] = {}

    def before(self, state: State, lines: Iterable[Mapping[str, Any]]) -> None:
        """At start-up: the orders an earlier process journaled ``order_fills_missing`` (the fields of those lines)
        that have not ended since, taken as reported here too: the line is written once per order across restarts,
        and /status shows them again at once (the venue's new count would take its span to say so again). Read before
        the start-up's reconciliation: one whose trades came while no process ran is ended by it, and journaled
        ``order_fills_found`` at the first ``news``."""
        waiting = {o.client_order_id for p in state.portfolio.open_positions for o in p.orders if not o.is_terminal}
        for fields in lines:
            cid = str(fields.get("client_order_id") or "")
            if cid in waiting:
                self.orders[cid] = _shown(fields)

    def news(self, router: OrderRouter, state: State, events: Events, symbol_of: Mapping[int, str]) -> None:
        """After a drain: journal each order newly reported by the venue (``order_fills_missing``), and each reported
        order that has ended since (``order_fills_found``: its fills booked as for any order), dropping it."""
        for cid, said in list(router.fills_missing.items()):
            if cid in self.orders:
                continue
            found = _working(state, cid)
            if found is None:  # ended meanwhile: nothing to report
                del router.fills_missing[cid]
                continue
            position, order = found
            reason = (f"order {cid}: the exchange says it ended having filled {said.filled:g}, while its trades add "
                      f"up to {said.listed:g} (since {said.since.isoformat()}); it stays followed until they do, and "
                      "nothing is resent or booked without them")
            fields = {"order_id": order.id, "client_order_id": cid, "position_id": position.id,
                      "symbol": symbol_of[order.instrument_id], "purpose": order.purpose.value,
                      "venue_order_id": order.venue_order_id, "filled": said.filled, "listed": said.listed,
                      "since": said.since.isoformat(), "reason": reason}
            self.orders[cid] = _shown(fields)
            events("order_fills_missing", **fields)
        for cid in [cid for cid in self.orders if _working(state, cid) is None]:
            del self.orders[cid]
            router.fills_missing.pop(cid, None)
            ended = next((o for o in state.portfolio.all_orders() if o.client_order_id == cid), None)
            events("order_fills_found", client_order_id=cid, order_id=ended.id if ended else None,
                   status=ended.status.value if ended else None,
                   filled_quantity=ended.filled_quantity if ended else None,
                   fills=len(ended.fills) if ended else None)


def _working(state: State, client_order_id: str) -> tuple[Position, Order] | None:
    """The order and its position while it has not ended (an order not ended keeps its position open)."""
    for position in state.portfolio.open_positions:
        for order in position.orders:
            if order.client_order_id == client_order_id and not order.is_terminal:
                return position, order
    return None


def _shown(fields: Mapping[str, Any]) -> dict[str, Any]:
    """What /status shows of one such order (the journal line's fields, less the ids a person does not need)."""
    return {key: fields.get(key) for key in ("client_order_id", "symbol", "filled", "listed", "since", "reason")}

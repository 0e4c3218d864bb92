"""BookVenue: the account, order records, fills and event queue a local venue keeps; subclasses say how orders match.

Both local venues (the in-memory twin and the simulated venue) answer the Venue interface the
same way from the same records; they differ only in when and at what price an open order fills,
which a subclass decides in ``advance``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from tradeexecutor.state import OrderSide, OrderStatus, RejectReason
from tradeexecutor.venue.model import (
    Balance,
    DuplicateOrderError,
    ExecutionEvent,
    FillReport,
    InstrumentSpec,
    OrderAccepted,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderReport,
    OrderRequest,
)

__all__ = ["MAX_KEPT_FILLS", "BookVenue", "OrderRecord"]

#: A holding this small is none (engine/accounting.py treats a position's quantity the same way).
_DUST = 1e-12
#: Fills a venue keeps for ``order_fills`` (restart resolution); older ones are dropped (bounded memory over months).
MAX_KEPT_FILLS = 10_000

_TERMINAL = frozenset({OrderStatus.filled, OrderStatus.cancelled, OrderStatus.rejected, OrderStatus.expired})


@dataclass(slots=True)
class OrderRecord:
    """One order as the venue keeps it."""

    request: OrderRequest
    venue_order_id: str
    status: OrderStatus = OrderStatus.open
    filled_quantity: float = 0.0
    filled_value: float = 0.0
    reject_reason: RejectReason | None = None
    reason: str | None = None

    def report(self) -> OrderReport:
        filled = self.filled_quantity
        return OrderReport(
            client_order_id=self.request.client_order_id, venue_order_id=self.venue_order_id,
            symbol=self.request.symbol, side=self.request.side, status=self.status, filled_quantity=filled,
            average_price=self.filled_value / filled if filled else None, reject_reason=self.reject_reason,
            reason=self.reason, type=self.request.type, quantity=self.request.quantity,
            limit_price=self.request.limit_price, stop_price=self.request.stop_price,
        )


class BookVenue:
    """A venue's books in memory: balances per asset, every order by client order id, fills, and unpolled events."""

    def __init__(self, name: str, specs: Sequence[InstrumentSpec], balances: Mapping[str, float]):
        self.name = name
        self.specs = {spec.symbol: spec for spec in specs}
        self._balances: dict[str, float] = dict(balances)
        self._orders: dict[str, OrderRecord] = {}
        self._fills: list[FillReport] = []
        #: Fills dropped from the front of ``_fills`` (trade ids count from the first fill ever).
        self._fills_dropped = 0
        self._events: list[ExecutionEvent] = []
        self._next_order = 1

    # -- the Venue interface ----------------------------------------------------------------

    def instruments(self, symbols: Sequence[str]) -> dict[str, InstrumentSpec]:
        """The specs of the symbols this venue lists (others are left out)."""
        return {s: self.specs[s] for s in symbols if s in self.specs}

    def submit(self, request: OrderRequest) -> None:
        """Take the order onto the book; it fills when ``advance`` brings a price."""
        self._accept(request, self.now())

    def cancel(self, client_order_id: str) -> None:
        """Cancel an order still on the book; a terminal or unknown order is left as it is."""
        record = self._orders.get(client_order_id)
        if record is None or record.status in _TERMINAL:
            return
        record.status = OrderStatus.cancelled
        self._events.append(OrderCancelled(client_order_id, self.now()))

    def fetch_order(self, client_order_id: str) -> OrderReport | None:
        """The order's record, or None when this client order id was never submitted."""
        record = self._orders.get(client_order_id)
        return None if record is None else record.report()

    def open_orders(self) -> list[OrderReport]:
        """Orders on the book, oldest first."""
        return [r.report() for r in self._orders.values() if r.status not in _TERMINAL]

    def order_fills(self, client_order_id: str) -> list[FillReport]:
        """The fills of one order this venue still keeps (``MAX_KEPT_FILLS``), oldest first."""
        return [fill for fill in self._fills if fill.client_order_id == client_order_id]

    def balances(self) -> dict[str, Balance]:
        """Free balance of every asset (market orders lock nothing)."""
        return {asset: Balance(asset, free) for asset, free in self._balances.items()}

    def poll(self) -> list[ExecutionEvent]:
        """Events since the last poll."""
        events, self._events = self._events, []
        return events

    def forget(self, client_order_id: str) -> None:
        """Drop a terminal order's record once its outcome is applied, so a venue living as long as the executor
        keeps only what may still change (an open order is kept)."""
        record = self._orders.get(client_order_id)
        if record is not None and record.status in _TERMINAL:
            del self._orders[client_order_id]

    # -- for subclasses ---------------------------------------------------------------------

    def now(self) -> datetime:
        """The venue's clock: the time of the last ``advance``."""
        raise NotImplementedError

    def open_records(self) -> list[OrderRecord]:
        """Records on the book, oldest first."""
        return [r for r in self._orders.values() if r.status not in _TERMINAL]

    def held(self, symbol: str) -> float:
        """Base asset held for a symbol."""
        return self._balances.get(self.specs[symbol].base, 0.0)

    def cash(self, symbol: str) -> float:
        """Quote currency available for a symbol."""
        return self._balances.get(self.specs[symbol].quote, 0.0)

    def _accept(self, request: OrderRequest, at: datetime) -> OrderRecord:
        if request.client_order_id in self._orders:
            raise DuplicateOrderError(f"{self.name}: client order id {request.client_order_id} was already submitted")
        if request.symbol not in self.specs:
            record = OrderRecord(request, self._venue_id(), OrderStatus.rejected, reject_reason=RejectReason.venue,
                             reason=f"{self.name} does not list {request.symbol}")
            self._orders[request.client_order_id] = record
            self._events.append(OrderRejected(request.client_order_id, RejectReason.venue, record.reason or "", at))
            return record
        record = OrderRecord(request, self._venue_id())
        self._orders[request.client_order_id] = record
        self._events.append(OrderAccepted(request.client_order_id, record.venue_order_id, at))
        return record

    def _venue_id(self) -> str:
        number = self._next_order
        self._next_order += 1
        return f"{self.name}-{number}"

    def _fill(self, record: OrderRecord, quantity: float, price: float, fee: float, at: datetime, *,
              slippage: float = 0.0, complete: bool = True) -> FillReport:
        """Trade ``quantity`` of the order at ``price``: move the balances, record the fill and its event."""
        spec = self.specs[record.request.symbol]
        base, quote = self._balances.get(spec.base, 0.0), self._balances.get(spec.quote, 0.0)
        if record.request.side is OrderSide.buy:  # the float operations of engine/accounting.py, so the books agree
            self._balances[spec.base], self._balances[spec.quote] = base + quantity, quote - (quantity * price + fee)
        else:
            left = base - quantity
            self._balances[spec.base] = 0.0 if abs(left) <= _DUST else left  # accounting's dust rule, too
            self._balances[spec.quote] = quote + (quantity * price - fee)
        number = self._fills_dropped + len(self._fills) + 1
        fill = FillReport(record.request.client_order_id, f"{self.name}-t{number}", quantity, price,
                          fee, spec.quote, at, slippage)
        self._fills.append(fill)
        if len(self._fills) > 2 * MAX_KEPT_FILLS:  # a venue living as long as the executor keeps recent fills only
            del self._fills[:-MAX_KEPT_FILLS]
            self._fills_dropped = number - MAX_KEPT_FILLS
        record.filled_quantity += quantity
        record.filled_value += quantity * price
        record.status = OrderStatus.filled if complete else OrderStatus.partially_filled
        self._events.append(OrderFilled(record.request.client_order_id, fill, complete))
        return fill

    def _reject(self, record: OrderRecord, reason: RejectReason, text: str, at: datetime) -> None:
        record.status = OrderStatus.rejected
        record.reject_reason = reason
        record.reason = text
        self._events.append(OrderRejected(record.request.client_order_id, reason, text, at))

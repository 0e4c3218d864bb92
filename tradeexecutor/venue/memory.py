"""InMemoryVenue: the venue's twin for tests — fills at the prices you give, faults where you script them.

It keeps the same books as every local venue (BookVenue), charges a flat fee fraction, rounds
quantities down to the lot step and refuses what the cash or the holding does not cover. What
makes it a twin is the script: a method can be made to fail once with TemporaryError *before*
it takes effect (the venue never saw the order) or *after* (the venue has it; the caller only
lost the answer), fills can be held back, and an order can be made to fill in parts. These are
the failures write-ahead must survive.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from tradeexecutor.errors import TemporaryError
from tradeexecutor.state import OrderSide, OrderStatus, RejectReason
from tradeexecutor.venue.book import BookVenue, OrderRecord
from tradeexecutor.venue.model import ExecutionEvent, FillReport, InstrumentSpec, OrderReport, OrderRequest

__all__ = ["InMemoryVenue"]

#: Methods a fault can be scripted for.
FAULTY = ("submit", "cancel", "fetch_order", "poll")


class InMemoryVenue(BookVenue):
    """A venue in memory; ``advance`` fills open orders at the prices given, ``fail_next`` scripts a fault."""

    def __init__(self, specs: Sequence[InstrumentSpec] = (), balances: Mapping[str, float] | None = None, *,
                 fee: float = 0.0, name: str = "memory"):
        super().__init__(name, specs, balances or {})
        self.fee = fee
        self._now = datetime(1970, 1, 1, tzinfo=UTC)
        #: Scripted faults per method: True = fail after the effect, False = before.
        self._faults: dict[str, deque[bool]] = {name: deque() for name in FAULTY}
        #: Fractions of an order to fill per advance (e.g. [0.5, 0.5]); empty = all at once.
        self.partial: list[float] = []
        #: While True, advance fills nothing (orders wait on the book).
        self.hold = False
        #: The whole quantity of each order being filled in parts.
        self._totals: dict[str, float] = {}
        #: Every call made to the venue, for tests that check what was (not) sent.
        self.calls: list[tuple[str, str]] = []

    def fail_next(self, method: str, *, after_effect: bool = False) -> None:
        """Make the next call of ``method`` raise TemporaryError, before or after it takes effect."""
        if method not in self._faults:
            raise ValueError(f"no fault can be scripted for {method!r}; choose one of {', '.join(FAULTY)}")
        self._faults[method].append(after_effect)

    def _fault(self, method: str, after_effect: bool) -> None:
        faults = self._faults[method]
        if faults and faults[0] is after_effect:
            faults.popleft()
            where = "after it reached the venue" if after_effect else "before it reached the venue"
            raise TemporaryError(f"{self.name}: scripted {method} failure {where}")

    def now(self) -> datetime:
        """Time of the last ``advance``."""
        return self._now

    def submit(self, request: OrderRequest) -> None:
        self.calls.append(("submit", request.client_order_id))
        self._fault("submit", False)
        super().submit(request)
        self._fault("submit", True)

    def cancel(self, client_order_id: str) -> None:
        self.calls.append(("cancel", client_order_id))
        self._fault("cancel", False)
        super().cancel(client_order_id)
        self._fault("cancel", True)

    def fetch_order(self, client_order_id: str) -> OrderReport | None:
        self.calls.append(("fetch_order", client_order_id))
        self._fault("fetch_order", False)
        return super().fetch_order(client_order_id)

    def poll(self) -> list[ExecutionEvent]:
        self._fault("poll", False)
        return super().poll()

    def advance(self, prices: Mapping[str, float], at: datetime) -> None:
        """Fill open orders of the priced symbols at those prices (or a part of each, see ``partial``)."""
        self._now = at
        if self.hold:
            return
        for record in self.open_records():
            request = record.request
            price = prices.get(request.symbol)
            if price is None:
                continue
            if record.status is OrderStatus.partially_filled:
                self._fill_part(record, self._totals[request.client_order_id], price, at)
                continue
            spec = self.specs[request.symbol]
            if request.side is OrderSide.buy:
                wanted = request.quantity if request.quantity is not None else (request.value or 0.0) / price
                affordable = self.cash(request.symbol) / (price * (1.0 + self.fee))
                total = _lots(min(wanted, affordable), spec.lot_step)
                if total <= 0:
                    reason = RejectReason.insufficient_cash if affordable < wanted else RejectReason.rounds_to_zero
                    self._reject(record, reason, f"cannot buy one lot of {spec.lot_step:g} at {price:g}", at)
                    continue
            else:
                held = self.held(request.symbol)
                total = held if request.close_all or request.quantity is None else min(
                    _lots(request.quantity, spec.lot_step), held)
                if total <= 0:
                    self._reject(record, RejectReason.nothing_to_sell, "nothing to sell: no quantity held", at)
                    continue
            if total * price < spec.min_notional and not request.close_all:
                self._reject(record, RejectReason.below_min_notional,
                             f"below minimum notional: {total * price:.2f} < {spec.min_notional:.2f}", at)
                continue
            self._totals[request.client_order_id] = total
            self._fill_part(record, total, price, at)

    def _fill_part(self, record: OrderRecord, total: float, price: float, at: datetime) -> FillReport:
        """Fill the next scripted part of the order (all of it when no parts are scripted)."""
        left = total - record.filled_quantity
        if self.partial:
            part = min(total * self.partial.pop(0), left)
            complete = not self.partial or part >= left
            if complete:
                part = left
        else:
            part, complete = left, True
        return self._fill(record, part, price, part * price * self.fee, at, complete=complete)


def _lots(quantity: float, step: float) -> float:
    """``quantity`` rounded down to whole lots of ``step``."""
    if step <= 0:
        return quantity
    return math.floor(quantity / step + 1e-9) * step

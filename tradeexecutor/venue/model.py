"""The venue interface: what the engine and the loop may ask of anything that executes orders, and what comes back.

A venue is sent an order and tells its outcome later, as execution events the loop drains with
``poll()`` and applies on its one thread (NautilusTrader's channel model). ``submit`` never waits
for the outcome; a network failure while sending raises TemporaryError and leaves the outcome
*unknown* — the loop asks ``fetch_order`` by client order id before anything is sent again.

Implementations: ``InMemoryVenue`` (the twin for tests: prices you set, faults you script),
``SimulatedVenue`` (fee, slippage, lot rounding and minimum notional; backtests, replays and paper) and
``CcxtVenue`` (any ccxt exchange's spot market). tests/venue_contract.py holds the one suite every implementation passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from tradeexecutor.errors import InvariantError
from tradeexecutor.state import OrderSide, OrderStatus, OrderType, RejectReason, TimeInForce

__all__ = [
    "FILLS_MISSING_AFTER",
    "FILLS_MISSING_AFTER_ANSWERS",
    "LOST_AFTER",
    "LOST_AFTER_ANSWERS",
    "Balance",
    "DuplicateOrderError",
    "ExecutionEvent",
    "FillReport",
    "InstrumentSpec",
    "NotFoundAnswers",
    "OrderAccepted",
    "OrderCancelled",
    "OrderEndedShort",
    "OrderExpired",
    "OrderFilled",
    "OrderFillsMissing",
    "OrderRejected",
    "OrderReport",
    "OrderRequest",
    "Venue",
]


class DuplicateOrderError(InvariantError):
    """An order was submitted with a client order id the venue already knows: sending it twice is a bug."""


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    """What the venue allows for one symbol."""

    symbol: str
    #: Quantities are whole multiples of this.
    lot_step: float
    #: Prices are whole multiples of this (0 = any).
    tick_size: float
    #: Orders worth less than this are refused.
    min_notional: float
    #: Asset bought and sold, and the currency it is priced in.
    base: str
    quote: str


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order as sent: quantity or quote value (a market buy sized by value), never both."""

    client_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType = OrderType.market
    quantity: float | None = None
    #: Quote-currency value to spend (market buys by value), when quantity is None.
    value: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.gtc
    #: Sell everything held, dust included (closing a position).
    close_all: bool = False


@dataclass(frozen=True, slots=True)
class FillReport:
    """One fill as the venue reports it."""

    client_order_id: str
    venue_trade_id: str
    quantity: float
    price: float
    fee: float
    fee_currency: str
    at: datetime
    #: Cost of slippage against the price the venue saw when the order arrived (simulations only).
    slippage: float = 0.0
    #: A fee in a third asset (neither base nor quote, such as BNB): its price in the quote currency at the fill,
    #: as the venue gave it, and where it came from (``Fill.fee_price``); None otherwise.
    fee_price: float | None = None
    fee_price_source: str | None = None


@dataclass(frozen=True, slots=True)
class OrderReport:
    """What the venue knows of one order."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide
    status: OrderStatus
    filled_quantity: float
    #: Quantity-weighted fill price, or None before any fill.
    average_price: float | None
    reject_reason: RejectReason | None = None
    reason: str | None = None
    #: How the venue prices it, the quantity asked for, the limit price and a stop order's trigger price, when it says
    #: (reconciliation records an order of ours it finds on the exchange that the ledger does not hold with them);
    #: None when it does not.
    type: OrderType | None = None
    quantity: float | None = None
    limit_price: float | None = None
    stop_price: float | None = None
    #: How the exchange ended an order the venue reports still working because the trades it lists do not yet add
    #: up to what it says filled (its trade list lagging its order status): ``filled``, ``cancelled`` or ``expired``
    #: with ``status`` ``partially_filled``; None otherwise. Reconciliation bounds the balances by the part not
    #: booked (``engine/reconcile.py``, ``Unbooked``) and says the exchange ended it.
    ended: OrderStatus | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    """One asset's balance: free to use and held by open orders."""

    asset: str
    free: float
    locked: float = 0.0


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    """The venue took the order onto its book."""

    client_order_id: str
    venue_order_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderFilled:
    """(Part of) the order filled; ``complete`` when nothing is left of it."""

    client_order_id: str
    fill: FillReport
    complete: bool


@dataclass(frozen=True, slots=True)
class OrderRejected:
    """The venue refused the order."""

    client_order_id: str
    reason: RejectReason
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    """The order was cancelled; fills before the cancel stand."""

    client_order_id: str
    at: datetime
    text: str = "cancelled"


@dataclass(frozen=True, slots=True)
class OrderExpired:
    """The order's time in force ran out."""

    client_order_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderLost:
    """The venue accepted the order once and now answers that it does not know it (not a network failure): its
    outcome can no longer be learnt from the venue. Left for a person; never resent."""

    client_order_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderFillsMissing:
    """The exchange has said for long enough (``FILLS_MISSING_AFTER_ANSWERS`` answers over ``FILLS_MISSING_AFTER``)
    that the order ended having filled ``filled``, while the trades it lists add up to ``listed`` only. Not an end:
    the order stays followed, and its fills and end come as usual once the trades are listed. Queued once per
    order a venue follows; news for a person, never a reason to resend or to fix money."""

    client_order_id: str
    #: What the exchange says the order filled, and what the trades it lists add up to.
    filled: float
    listed: float
    #: The exchange's first such answer, and now.
    since: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class OrderEndedShort:
    """The exchange's first answer that the order ended (filled, or cancelled or expired with a part filled) having
    filled ``filled``, while the trades it lists add up to ``listed`` only — queued once per order a venue follows.
    Not an end: the order stays followed, its fills and end come as usual once the trades are listed. Until then the
    ledger holds only part of what it did at the exchange, so its position's exits wait (sized on the booked quantity
    they would sell the wrong amount) and no cancel is sent for it (it ended there). ``OrderFillsMissing`` follows if
    the trades stay missing for ``FILLS_MISSING_AFTER``."""

    client_order_id: str
    #: What the exchange says the order filled, and what the trades it lists add up to.
    filled: float
    listed: float
    at: datetime


#: An order the exchange says ended is reported with its trades missing (``OrderFillsMissing``) once they have been
#: missing at this many answers in a row (each poll asks) ...
FILLS_MISSING_AFTER_ANSWERS = 3
#: ... over at least this span (``--exchange-fills-missing-seconds``). Binance's trade list trails its order status
#: by moments (an order's trades listed within a second or two of it reading filled): five minutes is far past any
#: such lag, short next to the hours such an order would otherwise be followed unseen.
FILLS_MISSING_AFTER = timedelta(minutes=5)


#: An order the venue accepted is taken as lost only when it has answered "does not exist" for it at least this many
#: times in a row (each poll, each question after a cancel) ...
LOST_AFTER_ANSWERS = 3
#: ... over at least this span since its first such answer. Binance answers -2013 for an order it accepted a
#: moment ago (its query side lags its matching engine: ccxt/ccxt#1786; freqtrade asks 5 times with backoff), and the
#: engine asks right after the submit: one answer, or two within milliseconds, is a lag, not a loss. A minute is
#: far past any lag seen, and short next to the hours a lost order would otherwise go unnoticed.
LOST_AFTER = timedelta(seconds=60)


class NotFoundAnswers:
    """Per order the venue accepted once (or may have: a submit whose reply never came), its "does not exist" answers
    since it last found the order: the one rule (``LOST_AFTER_ANSWERS`` over ``LOST_AFTER``) by which a "not found"
    is believed (a loss, or an order that never arrived) rather than a passing outage.

    Rare and short-lived entries: one is dropped when the order is found again or taken as lost.
    """

    def __init__(self, answers: int = LOST_AFTER_ANSWERS, span: timedelta = LOST_AFTER) -> None:
        self.answers = answers
        self.span = span
        #: Client order id → (the first "does not exist" answer's time, how many since).
        self._since: dict[str, tuple[datetime, int]] = {}

    @classmethod
    def one_look(cls) -> NotFoundAnswers:
        """The first "does not exist" believed: for a venue that cannot lag (the simulated venue, in this process),
        and for reconciliation, which comes after the lag (a restart, a person's command)."""
        return cls(answers=1, span=timedelta(0))

    def lost(self, client_order_id: str, now: datetime) -> bool:
        """Count one more "does not exist" answer at ``now``; True (and forgotten) once the rule is met."""
        first, count = self._since.get(client_order_id, (now, 0))
        count += 1
        if count >= self.answers and now - first >= self.span:
            self._since.pop(client_order_id, None)
            return True
        self._since[client_order_id] = (first, count)
        return False

    def found(self, client_order_id: str) -> None:
        """The venue knows the order (again): its count starts over."""
        self._since.pop(client_order_id, None)

    def waiting(self, client_order_id: str, verdict: str = "lost") -> str:
        """Words for an outage: how long the venue has not found the order, and what happens next (``verdict``:
        what the order is taken as once the rule is met)."""
        first, count = self._since.get(client_order_id, (None, 0))
        return (f"the exchange answered {count} time(s) that it does not know order {client_order_id}"
                f"{f' since {first.isoformat()}' if first else ''}; taken as a passing lag and asked again (it is "
                f"{verdict} only after {self.answers} such answers over {self.span.total_seconds():g} s)")


#: Everything a venue reports about orders, keyed by client order id.
ExecutionEvent = (OrderAccepted | OrderFilled | OrderRejected | OrderCancelled | OrderExpired | OrderLost
                  | OrderFillsMissing | OrderEndedShort)


@runtime_checkable
class Venue(Protocol):
    """Where orders are executed. Every method answers at once; outcomes come back through poll()."""

    name: str

    def instruments(self, symbols: Sequence[str]) -> dict[str, InstrumentSpec]:
        """Lot step, tick size, minimum notional and precision of each symbol the venue lists."""
        ...

    def submit(self, request: OrderRequest) -> None:
        """Send an order; never waits for its outcome. May raise TemporaryError (outcome then unknown)
        or DuplicateOrderError (the client order id was sent before)."""
        ...

    def cancel(self, client_order_id: str) -> None:
        """Ask for an order to be cancelled; an order already terminal is left as it is."""
        ...

    def fetch_order(self, client_order_id: str) -> OrderReport | None:
        """What the venue knows of an order; None when it has never seen that client order id."""
        ...

    def open_orders(self) -> list[OrderReport]:
        """Orders accepted and not yet terminal."""
        ...

    def order_fills(self, client_order_id: str) -> list[FillReport]:
        """Every fill of one order the venue lists, oldest first (its own trades only: the cost of one order, not
        of the account's history)."""
        ...

    def balances(self) -> dict[str, Balance]:
        """Balance of every asset the account holds."""
        ...

    def poll(self) -> list[ExecutionEvent]:
        """Outcomes that arrived since the last poll, in the order they happened."""
        ...

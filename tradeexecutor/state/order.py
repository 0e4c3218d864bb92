"""Orders and their fills: what was asked of a venue, what became of it, and the one table of legal status changes.

An order is created by a decision (or a trigger), committed, sent, and its outcome arrives later,
possibly in parts. Its ``status`` changes only through :meth:`Order.transition`, which checks the
change against :data:`ORDER_TRANSITIONS`; anything else is a bug and raises IllegalTransition.
A position's quantity, cost and P&L come from its orders' fills (engine/accounting.py).

::

    created ──► submitting ──► open ──► partially_filled ──► filled
       │            │            │             │
       │            │            └─────────────┴──► cancelled | expired
       │            ├──► rejected                           (terminal)
       └──► rejected | cancelled (never sent)
    submitting | open | partially_filled ──► unknown ──► (any outcome, once the venue is asked;
                                                          submitting again when it never saw the order)

``unknown`` means the outcome is not known yet (a timeout): it is never taken as a rejection, and
it is resolved by asking the venue for the order's client order id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from dataclasses_json import dataclass_json

from tradeexecutor.errors import InvariantError
from tradeexecutor.state.timestamps import datetime_field, required_datetime_field

__all__ = [
    "ORDER_TRANSITIONS",
    "TERMINAL_STATUSES",
    "Fill",
    "IllegalTransition",
    "Order",
    "OrderPurpose",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "RejectReason",
    "TimeInForce",
    "TriggerKind",
    "fee_value",
]


class OrderStatus(str, Enum):
    """Where an order is in its life; see ORDER_TRANSITIONS for the legal changes."""

    #: Decided and committed, not yet handed to a venue.
    created = "created"
    #: Committed as being sent: from here on the venue may know it, so it is never sent again blind.
    submitting = "submitting"
    #: Accepted by the venue, nothing filled yet.
    open = "open"
    #: Some of it filled; more may follow.
    partially_filled = "partially_filled"
    #: Filled completely (terminal).
    filled = "filled"
    #: Cancelled before it filled completely (terminal); fills before the cancel stand.
    cancelled = "cancelled"
    #: Refused by the venue, or by the engine before sending (terminal).
    rejected = "rejected"
    #: Its time in force ran out (terminal).
    expired = "expired"
    #: Outcome not known (a timeout): resolved by asking the venue, never taken as a rejection.
    unknown = "unknown"


#: Statuses an order never leaves.
TERMINAL_STATUSES = frozenset({OrderStatus.filled, OrderStatus.cancelled, OrderStatus.rejected, OrderStatus.expired})

_S = OrderStatus
#: Every legal status change. A market order may go straight from submitting to filled when the
#: outcome arrives at once; a partial fill may be followed by more partial fills.
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    _S.created: frozenset({_S.submitting, _S.rejected, _S.cancelled}),
    _S.submitting: frozenset({_S.open, _S.partially_filled, _S.filled, _S.rejected, _S.cancelled, _S.expired,
                              _S.unknown}),
    _S.open: frozenset({_S.partially_filled, _S.filled, _S.cancelled, _S.expired, _S.unknown}),
    _S.partially_filled: frozenset({_S.partially_filled, _S.filled, _S.cancelled, _S.expired, _S.unknown}),
    # unknown → submitting: the venue, asked, has never seen the order, so it is sent again (same id).
    _S.unknown: frozenset({_S.submitting, _S.open, _S.partially_filled, _S.filled, _S.rejected, _S.cancelled,
                           _S.expired}),
    _S.filled: frozenset(),
    _S.cancelled: frozenset(),
    _S.rejected: frozenset(),
    _S.expired: frozenset(),
}


class OrderSide(str, Enum):
    """Buy or sell; a short later is a sell that opens."""

    buy = "buy"
    sell = "sell"


class OrderType(str, Enum):
    """How the venue prices the order. The engine sends market orders; the others are shaped in."""

    market = "market"
    limit = "limit"
    stop = "stop"
    stop_limit = "stop_limit"


class TimeInForce(str, Enum):
    """How long an order stays on the venue's book."""

    #: Good till cancelled.
    gtc = "gtc"
    #: Immediate or cancel: what does not fill at once is cancelled.
    ioc = "ioc"
    #: Fill or kill: all at once or nothing.
    fok = "fok"


class OrderPurpose(str, Enum):
    """What the order does to its position (the intent kind)."""

    open = "open"
    increase = "increase"
    reduce = "reduce"
    close = "close"


class TriggerKind(str, Enum):
    """Which protective order fired, for orders a trigger check created."""

    stop_loss = "stop_loss"
    take_profit = "take_profit"
    trailing_stop = "trailing_stop"
    #: Not a protective order: a risk limit closed every position (``--risk-close-positions``).
    risk_limit = "risk_limit"


class RejectReason(str, Enum):
    """Why an order was rejected, for machines; ``Order.status_reason`` keeps the words for people."""

    #: The quantity rounds down to less than one lot.
    rounds_to_zero = "rounds_to_zero"
    #: The cash does not pay for one lot plus fee.
    insufficient_cash = "insufficient_cash"
    #: The order's value is below the instrument's minimum notional.
    below_min_notional = "below_min_notional"
    #: The size worked out is not a finite number.
    not_finite = "not_finite"
    #: A sell for a position that holds nothing.
    nothing_to_sell = "nothing_to_sell"
    #: The venue refused it for a reason of its own (see status_reason).
    venue = "venue"


#: Members used on every order, bound once: an enum member looked up on its class costs a
#: Python-level __getattr__ each time (the backtest creates and fills tens of thousands of orders).
_SUBMITTING = OrderStatus.submitting
_BUY = OrderSide.buy


def fee_value(fee: float, price: float, fee_price: float | None, in_base: bool) -> float:
    """What a fill's fee is worth in the instrument's quote currency: the one valuation every figure uses.

    A fee in the quote currency is itself; one in the base asset (Binance takes a buy's fee in the asset
    bought) is worth ``fee * price`` at the fill's price; one in a third asset (Binance's BNB) is worth
    ``fee * fee_price``, the venue's price of that asset in the quote at the fill. Fees in different
    currencies are never added as they are: they are added as what this gives.
    """
    if in_base:
        return fee * price
    return fee * fee_price if fee_price is not None else fee


class IllegalTransition(InvariantError):
    """A status change ORDER_TRANSITIONS does not allow: a bug in whoever asked for it."""


@dataclass_json
@dataclass(slots=True)
class Fill:
    """One execution of (part of) an order, as the venue reported it."""

    #: Unique within the state.
    id: int
    #: Order.id of the order filled.
    order_id: int
    #: Unsigned quantity filled.
    quantity: float
    #: Price paid or received, slippage included.
    price: float
    #: When the venue filled it.
    at: datetime = required_datetime_field()
    #: Fee charged on this fill, in ``fee_currency``.
    fee: float = 0.0
    #: Currency of the fee (the instrument's quote currency in the simulation).
    fee_currency: str = "USD"
    #: The venue's id of this fill, when it has one.
    venue_trade_id: str | None = None
    #: Cost of slippage against the order's reference price, in the quote currency.
    slippage: float = 0.0
    #: Profit or loss this fill realised, after its fee (a buy realises minus its fee).
    realised_pnl: float = 0.0
    #: For a fee in a third asset (neither the instrument's base nor its quote, such as Binance's BNB): the fee
    #: currency's price in the quote currency at the fill, which values the fee (``fee * fee_price``). None for a
    #: fee in the quote or the base asset.
    fee_price: float | None = None
    #: Where ``fee_price`` came from, in words (``binance ticker BNB/USD last at the fill``).
    fee_price_source: str | None = None
    #: True when the fee was taken in the instrument's base asset (``fee_currency`` is the venue's base asset:
    #: Binance's default for a buy), as accounting found when it applied the fill; its value is ``fee * price``.
    #: False for a fee in the quote currency or a third asset. A fill recorded before this was kept is given it as
    #: it is read (state/migrate.py ``mark_old_fill``).
    fee_in_base: bool = False

    @property
    def quote_fee(self) -> float:
        """This fill's fee valued in the instrument's quote currency (:func:`fee_value`); ``fee`` is the amount
        in ``fee_currency``."""
        return fee_value(self.fee, self.price, self.fee_price, self.fee_in_base)


@dataclass_json
@dataclass(slots=True)
class Order:
    """One order for one instrument and everything that happened to it.

    Quantities are unsigned; ``side`` says which way. ``quantity`` is None when the order is sized
    by ``value`` at the fill price (an all-in buy).
    """

    #: Unique within the state, increasing in the order orders were created.
    id: int
    #: Deterministic id the venue knows the order by before it has its own (see client_order_id).
    client_order_id: str
    #: The position this order opens, changes or closes.
    position_id: int
    #: Instrument.id of what is traded.
    instrument_id: int
    #: What the order does to its position.
    purpose: OrderPurpose
    #: Buy or sell.
    side: OrderSide
    #: When the decision (or trigger) created it.
    created_at: datetime = required_datetime_field()
    #: Where the order is in its life; change it only with transition().
    status: OrderStatus = OrderStatus.created
    #: Market now; limit and stop orders are shaped in.
    type: OrderType = OrderType.market
    #: How long it may wait on the venue's book.
    time_in_force: TimeInForce = TimeInForce.gtc
    #: Unsigned quantity asked for, or None when sized by value at the fill.
    quantity: float | None = None
    #: Quote-currency value asked for (buys by value or equity fraction), or None. Live, it is what was sent: set as
    #: the order is sent, capped at the cash there is then (journaled ``order_capped`` with what was decided).
    value: float | None = None
    #: Limit price, for limit and stop-limit orders.
    limit_price: float | None = None
    #: Stop price, for stop and stop-limit orders.
    stop_price: float | None = None
    #: The last close known when the order was decided (or the trigger level), for slippage reports.
    reference_price: float | None = None
    #: The venue's own order id, once known.
    venue_order_id: str | None = None
    #: Words for people on the last status change (why rejected or cancelled).
    status_reason: str | None = None
    #: Why it was rejected, for machines.
    reject_reason: RejectReason | None = None
    #: The protective order that created it, if a trigger did.
    trigger: TriggerKind | None = None
    #: The trigger level that was crossed.
    trigger_price: float | None = None
    #: Free text from the strategy, such as the signal that caused the order.
    note: str | None = None
    #: When it was committed as being sent.
    submitted_at: datetime | None = datetime_field()
    #: When its status last changed.
    updated_at: datetime | None = datetime_field()
    #: When it reached a terminal status.
    closed_at: datetime | None = datetime_field()
    #: Its fills, in the order they happened.
    fills: list[Fill] = field(default_factory=list)

    def transition(self, new: OrderStatus, at: datetime, reason: str | None = None) -> None:
        """Move to ``new`` at ``at``; IllegalTransition when ORDER_TRANSITIONS does not allow it."""
        if new not in ORDER_TRANSITIONS[self.status]:
            raise IllegalTransition(
                f"order {self.client_order_id} cannot go from {self.status.value} to {new.value}"
            )
        self.status = new
        self.updated_at = at
        if new is _SUBMITTING:
            self.submitted_at = at
        if reason is not None:
            self.status_reason = reason
        if new in TERMINAL_STATUSES:
            self.closed_at = at

    @property
    def is_terminal(self) -> bool:
        """True once the order can never change again."""
        return self.status in TERMINAL_STATUSES

    @property
    def is_buy(self) -> bool:
        """True for orders that buy."""
        return self.side is _BUY

    @property
    def filled_quantity(self) -> float:
        """Unsigned quantity filled so far."""
        return sum(f.quantity for f in self.fills)

    @property
    def signed_filled_quantity(self) -> float:
        """Quantity filled, positive for buys and negative for sells."""
        quantity = self.filled_quantity
        return quantity if self.side is _BUY else -quantity

    @property
    def average_fill_price(self) -> float | None:
        """Quantity-weighted price of the fills, or None before the first fill."""
        fills = self.fills
        if not fills:
            return None
        if len(fills) == 1:
            return fills[0].price
        quantity = sum(f.quantity for f in fills)
        return sum(f.quantity * f.price for f in fills) / quantity if quantity else None

    @property
    def fees(self) -> float:
        """Fees of all fills in the instrument's quote currency, each valued by :func:`fee_value` (a fee in the
        base asset or in a third asset is never added as its raw amount); each Fill keeps its own amount and
        currency."""
        return sum(f.quote_fee for f in self.fills)

    @property
    def slippage(self) -> float:
        """Slippage cost of all fills."""
        return sum(f.slippage for f in self.fills)

    @property
    def realised_pnl(self) -> float:
        """Profit or loss the fills realised, after their fees."""
        return sum(f.realised_pnl for f in self.fills)

    @property
    def filled_value(self) -> float:
        """Traded value of the fills."""
        return sum(f.quantity * f.price for f in self.fills)

    @property
    def filled_at(self) -> datetime | None:
        """Time of the last fill, or None."""
        return self.fills[-1].at if self.fills else None

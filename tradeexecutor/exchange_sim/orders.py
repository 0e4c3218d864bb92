"""Orders and trades as the exchange records them, and the exact JSON shapes Binance sends for each.

Order states (Binance's), and the only moves between them::

    NEW ──► PARTIALLY_FILLED ──► FILLED
     │              │
     └──────────────┴──► CANCELED   (cancel request)
                    └──► EXPIRED    (IOC/FOK/market remainder that could not fill)

A stop order (STOP_LOSS, TAKE_PROFIT and their _LIMIT forms) is NEW and not working (``isWorking`` false,
``workingTime`` -1) until the price reaches its ``stopPrice``; then it trades like a market or limit order.

A refused order (-2010, -1013) never becomes an order: Binance keeps no record of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tradeexecutor.exchange_sim.numbers import ZERO, fmt

NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"

#: States in which an order can still trade (and holds its client order id).
OPEN_STATES = frozenset({NEW, PARTIALLY_FILLED})

#: Which state may follow which.
_MOVES = {
    NEW: {PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED},
    PARTIALLY_FILLED: {PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED},
    FILLED: set(),
    CANCELED: set(),
    EXPIRED: set(),
}


class IllegalTransition(Exception):
    """A bug: the engine tried to move an order between states that do not connect."""


@dataclass
class Trade:
    """One fill of one order."""

    trade_id: int
    order_id: int
    symbol: str
    is_buyer: bool
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    #: True when the order was resting in the book (a maker fill).
    is_maker: bool

    @property
    def quote_qty(self) -> Decimal:
        """Price times quantity."""
        return self.price * self.qty


@dataclass
class Order:
    """One order; the engine changes it only through :meth:`move` and :meth:`record_fill`."""

    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str | None
    #: Limit price (zero for market orders, as Binance reports).
    price: Decimal
    orig_qty: Decimal
    time_ms: int
    #: The quote amount of a market order sized by ``quoteOrderQty``; zero otherwise.
    orig_quote_order_qty: Decimal = ZERO
    status: str = NEW
    executed_qty: Decimal = ZERO
    cummulative_quote_qty: Decimal = ZERO
    update_time_ms: int = 0
    #: Asset and amount still locked for this order.
    locked_asset: str = ""
    locked: Decimal = ZERO
    #: The path has been checked for touches of the limit price up to here (ms).
    checked_ms: int = 0
    #: Largest quantity one fill may take (partial-fill faults); the whole order otherwise.
    part_qty: Decimal = ZERO
    #: Next fill not before this time (ms), and the wait between parts.
    next_fill_ms: int = 0
    part_interval_ms: int = 0
    trades: list[Trade] = field(default_factory=list)
    #: A stop order's trigger price (zero for the others, as Binance reports), whether it still waits for it (not
    #: working yet), and when it triggered.
    stop_price: Decimal = ZERO
    waiting: bool = False
    working_ms: int | None = None

    @property
    def is_open(self) -> bool:
        """NEW or PARTIALLY_FILLED."""
        return self.status in OPEN_STATES

    @property
    def remaining(self) -> Decimal:
        """Quantity still to fill."""
        return self.orig_qty - self.executed_qty

    def move(self, status: str, time_ms: int) -> None:
        """Change state, refusing any move the state machine does not allow."""
        if status not in _MOVES[self.status]:
            raise IllegalTransition(f"order {self.order_id}: {self.status} -> {status}")
        self.status = status
        self.update_time_ms = time_ms

    def record_fill(self, trade: Trade) -> None:
        """Count a fill and move to PARTIALLY_FILLED or FILLED."""
        if trade.qty > self.remaining or trade.qty <= 0:
            raise IllegalTransition(f"order {self.order_id}: fill of {trade.qty} with {self.remaining} left")
        self.trades.append(trade)
        self.executed_qty += trade.qty
        self.cummulative_quote_qty += trade.quote_qty
        self.move(FILLED if self.remaining == 0 else PARTIALLY_FILLED, trade.time_ms)


def _common(order: Order) -> dict[str, Any]:
    return {
        "symbol": order.symbol,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id,
    }


def _amounts(order: Order) -> dict[str, Any]:
    return {
        "price": fmt(order.price),
        "origQty": fmt(order.orig_qty),
        "executedQty": fmt(order.executed_qty),
        "origQuoteOrderQty": fmt(order.orig_quote_order_qty),
        "cummulativeQuoteQty": fmt(order.cummulative_quote_qty),
        "status": order.status,
        "timeInForce": order.time_in_force or "GTC",
        "type": order.type,
        "side": order.side,
    }


def order_json(order: Order) -> dict[str, Any]:
    """GET /api/v3/order, openOrders and allOrders."""
    return {
        **_common(order),
        **_amounts(order),
        "stopPrice": fmt(order.stop_price),
        "icebergQty": fmt(ZERO),
        "time": order.time_ms,
        "updateTime": order.update_time_ms or order.time_ms,
        "isWorking": not order.waiting,
        "workingTime": _working_time(order),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def _working_time(order: Order) -> int:
    """When the order began working: at once, or (a stop order) when it triggered; -1 while it waits, as Binance."""
    if order.waiting:
        return -1
    return order.working_ms if order.working_ms is not None else order.time_ms


def _stop(order: Order) -> dict[str, Any]:
    """A stop order's ``stopPrice`` (Binance sends it in a new order's and a cancel's reply only for those)."""
    return {"stopPrice": fmt(order.stop_price)} if order.stop_price else {}


def fill_json(trade: Trade) -> dict[str, Any]:
    """One entry of a FULL new-order reply's ``fills``."""
    return {
        "price": fmt(trade.price),
        "qty": fmt(trade.qty),
        "commission": fmt(trade.commission),
        "commissionAsset": trade.commission_asset,
        "tradeId": trade.trade_id,
    }


def new_order_json(order: Order, response_type: str, fills: list[Trade]) -> dict[str, Any]:
    """POST /api/v3/order in Binance's ACK, RESULT or FULL form (``fills``: the trades made at once)."""
    ack = {**_common(order), "transactTime": order.time_ms}
    if response_type == "ACK":
        return ack
    result = {**ack, **_amounts(order), **_stop(order), "workingTime": _working_time(order),
              "selfTradePreventionMode": "EXPIRE_MAKER"}
    if response_type == "FULL":
        result["fills"] = [fill_json(trade) for trade in fills]
    return result


def cancel_json(order: Order, cancel_client_id: str, time_ms: int) -> dict[str, Any]:
    """DELETE /api/v3/order: ``clientOrderId`` is the *cancel's* id; the order's own is ``origClientOrderId``."""
    return {
        "symbol": order.symbol,
        "origClientOrderId": order.client_order_id,
        "orderId": order.order_id,
        "orderListId": -1,
        "clientOrderId": cancel_client_id,
        "transactTime": time_ms,
        **_amounts(order),
        **_stop(order),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def trade_json(trade: Trade) -> dict[str, Any]:
    """One entry of GET /api/v3/myTrades."""
    return {
        "symbol": trade.symbol,
        "id": trade.trade_id,
        "orderId": trade.order_id,
        "orderListId": -1,
        "price": fmt(trade.price),
        "qty": fmt(trade.qty),
        "quoteQty": fmt(trade.quote_qty),
        "commission": fmt(trade.commission),
        "commissionAsset": trade.commission_asset,
        "time": trade.time_ms,
        "isBuyer": trade.is_buyer,
        "isMaker": trade.is_maker,
        "isBestMatch": True,
    }

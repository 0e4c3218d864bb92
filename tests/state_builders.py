"""Build states of a chosen size from a real backtest's history, and orders with their fills (tests, benchmarks)."""

from __future__ import annotations

import copy
from datetime import datetime

from tradeexecutor.state import (
    Fill,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    RejectReason,
    State,
    TriggerKind,
    client_order_id,
)
from tradeexecutor.state.migrate import reject_reason_of


def resized(base: State, positions: int) -> State:
    """A copy of ``base`` holding ``positions`` positions: its open ones plus closed ones cycled from its history."""
    state = copy.deepcopy(base)
    portfolio = state.portfolio
    template = base.portfolio.closed_positions
    closed = []
    ids = [1, 1]  # next order id, next fill id

    def renumber(position_orders: list[Order], position_id: int) -> None:
        for order in position_orders:
            order.id, order.position_id = ids[0], position_id
            order.client_order_id = f"{order.client_order_id[:20]}-{ids[0]:x}"[-36:]
            ids[0] += 1
            for fill in order.fills:
                fill.id, fill.order_id = ids[1], order.id
                ids[1] += 1

    for i in range(positions - len(portfolio.open_positions)):
        position = copy.deepcopy(template[i % len(template)])
        position.id = i + 1
        renumber(position.orders, position.id)
        closed.append(position)
    for j, position in enumerate(portfolio.open_positions):
        position.id = len(closed) + j + 1
        renumber(position.orders, position.id)
    portfolio.closed_positions = closed
    portfolio.failed_positions = []
    portfolio.next_position_id = positions + 1
    portfolio.next_order_id = ids[0]
    portfolio.next_fill_id = ids[1]
    return state


def make_order(id: int, position_id: int, instrument_id: int, purpose: str, at: datetime, *,
               status: str = "filled", quantity: float | None = None, value: float | None = None,
               reference_price: float | None = None, fill_price: float | None = None,
               fill_at: datetime | None = None, fill_id: int | None = None, fee: float = 0.0,
               slippage: float = 0.0, realised_pnl: float = 0.0, reason: str | None = None,
               trigger: str | None = None, trigger_price: float | None = None, note: str | None = None) -> Order:
    """An order as the engine leaves it: filled (one fill of ``quantity`` at ``fill_price``), rejected or
    cancelled (``reason`` in words), or still waiting (``created``). Quantities are unsigned."""
    kind = OrderPurpose(purpose)
    state = OrderStatus(status)
    done_at = fill_at or at
    order = Order(
        id=id, client_order_id=client_order_id("test0000", at, id, kind), position_id=position_id,
        instrument_id=instrument_id, purpose=kind,
        side=OrderSide.buy if kind in (OrderPurpose.open, OrderPurpose.increase) else OrderSide.sell,
        created_at=at, status=state, quantity=quantity, value=value, reference_price=reference_price,
        trigger=TriggerKind(trigger) if trigger else None, trigger_price=trigger_price, note=note, updated_at=done_at,
    )
    if fill_price is not None:
        assert quantity is not None
        order.fills.append(Fill(id=fill_id or id, order_id=id, quantity=quantity, price=fill_price, at=done_at, fee=fee,
                                slippage=slippage, realised_pnl=realised_pnl))
    if state is OrderStatus.rejected:
        order.reject_reason = reject_reason_of(reason or "") if reason else RejectReason.venue
    if state in (OrderStatus.rejected, OrderStatus.cancelled):
        order.status_reason = reason
    if order.is_terminal:
        order.closed_at = done_at
        order.submitted_at = done_at if state is not OrderStatus.cancelled else None
    return order

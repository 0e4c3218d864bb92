"""Apply fills to positions and cash: the only place money moves."""

from __future__ import annotations

from datetime import datetime

from tradeexecutor.execution.model import Fill
from tradeexecutor.state import Portfolio, Position, Trade, TradeStatus

#: Quantities below this are treated as zero when deciding a position is closed.
_DUST = 1e-12


def reject(trade: Trade, reason: str, at: datetime, price: float | None = None) -> None:
    """Mark a trade rejected with its reason; the position and cash are untouched."""
    trade.status = TradeStatus.rejected.value
    trade.reject_reason = reason
    trade.executed_at = at
    trade.executed_price = None
    trade.executed_quantity = 0.0


def apply_buy(portfolio: Portfolio, position: Position, trade: Trade, fill: Fill, at: datetime) -> None:
    """A buy fill: cash pays value and fee, the position grows at the fill price."""
    quantity = fill.quantity
    trade.status = TradeStatus.executed.value
    trade.executed_at = at
    trade.executed_price = fill.price
    trade.executed_quantity = quantity
    trade.fee = fill.fee
    trade.slippage = fill.slippage
    trade.realised_pnl = -fill.fee
    portfolio.cash -= quantity * fill.price + fill.fee
    portfolio.fees_paid += fill.fee
    position.quantity += quantity
    position.cost_basis += quantity * fill.price
    if position.last_price is None:
        position.last_price = fill.price  # valued from its first fill until the next mark
    position.fees_paid += fill.fee
    position.realised_pnl -= fill.fee


def apply_sell(portfolio: Portfolio, position: Position, trade: Trade, fill: Fill, at: datetime) -> bool:
    """A sell fill: cash receives value less fee, profit is realised at the average entry price.

    Returns True when the fill closed the position.
    """
    quantity = fill.quantity
    average = position.cost_basis / position.quantity if position.quantity else 0.0
    cost_removed = average * quantity
    proceeds = quantity * fill.price
    pnl = proceeds - cost_removed - fill.fee
    trade.status = TradeStatus.executed.value
    trade.executed_at = at
    trade.executed_price = fill.price
    trade.executed_quantity = -quantity
    trade.fee = fill.fee
    trade.slippage = fill.slippage
    trade.realised_pnl = pnl
    portfolio.cash += proceeds - fill.fee
    portfolio.fees_paid += fill.fee
    position.quantity -= quantity
    position.cost_basis -= cost_removed
    position.fees_paid += fill.fee
    position.realised_pnl += pnl
    if abs(position.quantity) <= _DUST:
        position.quantity = 0.0
        position.cost_basis = 0.0
        position.closed_at = at
        return True
    return False


def retire_position(portfolio: Portfolio, position: Position) -> None:
    """Move a closed position to closed_positions, or one that never filled to failed_positions."""
    if position in portfolio.open_positions:
        portfolio.open_positions.remove(position)
    if any(t.status == TradeStatus.executed.value for t in position.trades):
        portfolio.closed_positions.append(position)
    else:
        if position.closed_at is None:
            position.closed_at = position.trades[-1].executed_at if position.trades else position.opened_at
        portfolio.failed_positions.append(position)

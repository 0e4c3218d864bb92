"""Read-only views of the portfolio that a strategy's decide() is given instead of the live objects.

A strategy changes positions only through the intents it returns, which the engine checks and
journals. ``ctx.position()`` used to hand out the live ``Position``: a strategy that wrote
``position.stop_loss = None`` or ``position.quantity = 0`` changed the state behind the engine's
back (and the next save made it permanent). :class:`PositionView` is a frozen copy taken when
asked for: assigning to it raises ``dataclasses.FrozenInstanceError`` (an AttributeError), and
nothing done to it can reach the position.

Example::

    position = ctx.position()
    if position is not None and position.unrealised_pnl > 0:
        return [set_triggers(stop_loss=position.average_price)]   # move the stop to break-even
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tradeexecutor.state.position import HoldingFigures, Position

__all__ = ["PositionView"]


@dataclass(frozen=True, slots=True)
class PositionView(HoldingFigures):
    """An open position as decide() sees it: a frozen copy of its fields at the cycle.

    ``average_price``, ``market_value`` and ``unrealised_pnl`` are computed as on Position.
    """

    #: Unique within the state.
    id: int
    #: The instrument held.
    symbol: str
    #: When the position was created (its first trade was planned).
    opened_at: datetime
    #: ``long``.
    direction: str
    #: Quantity held; 0 while the entry order is still pending.
    quantity: float
    #: Cost of the quantity held, at average entry price, excluding fees.
    cost_basis: float
    #: Profit or loss realised so far, net of fees.
    realised_pnl: float
    #: Fees paid on all fills of this position.
    fees_paid: float
    #: Absolute stop-loss price, or None.
    stop_loss: float | None
    #: Absolute take-profit price, or None.
    take_profit: float | None
    #: Trailing stop distance as a fraction below the highest price seen, or None.
    trailing_stop_pct: float | None
    #: Highest price seen since the position opened (the trailing stop's reference).
    high_water: float | None
    #: Price the position was last valued at.
    last_price: float | None
    #: Fill price of the opening trade; None while it is pending.
    entry_price: float | None

    @classmethod
    def of(cls, position: Position, symbol: str) -> PositionView:
        """A frozen copy of ``position`` (held in ``symbol``)."""
        return cls(position.id, symbol, position.opened_at, position.direction, position.quantity,
                   position.cost_basis, position.realised_pnl, position.fees_paid, position.stop_loss,
                   position.take_profit, position.trailing_stop_pct, position.high_water, position.last_price,
                   position.entry_price())

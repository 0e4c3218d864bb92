"""Portfolio figures for RunState (and so /metrics), computed per cycle at a cost that does not grow with history.

Open positions are looked at on every call. Closed and failed positions never change once
moved to their lists, so a :class:`FigureCounter` counts their orders once and remembers how
far it got; each later call only counts the positions closed since. The loop keeps one counter
for the life of the process::

    counter = FigureCounter()
    ...                                           # after each cycle, on the loop thread
    runstate.update(portfolio=counter.figures(state, now=clock.now()))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dataclasses_json import DataClassJsonMixin

from tradeexecutor.state import OrderStatus, Portfolio, Position, State
from tradeexecutor.state.growth import ListTail
from tradeexecutor.state.timestamps import datetime_field

__all__ = ["FigureCounter", "OrderCounts", "PortfolioFigures", "figures_from_state"]


@dataclass(frozen=True)
class PortfolioFigures(DataClassJsonMixin):
    """Headline figures of the portfolio at one moment; replaced as a whole, never mutated."""

    #: Cash plus the market value of open positions at their last valuation price.
    portfolio_value: float = 0.0
    #: Cash in the quote currency.
    cash: float = 0.0
    #: Gain of the open positions against their cost at the last valuation.
    unrealised_pnl: float = 0.0
    #: Positions open now.
    open_positions: int = 0
    #: Orders planned and not yet filled or rejected.
    orders_planned: int = 0
    #: Orders filled over the life of the state.
    orders_filled: int = 0
    #: Orders rejected over the life of the state.
    orders_rejected: int = 0
    #: Fees paid over the life of the state, in ``fee_currency`` (a fee in the base asset or in BNB valued in it).
    fees_paid: float = 0.0
    #: The currency of ``fees_paid`` and the other money figures: the instruments' quote (State.quote_currency).
    fee_currency: str | None = None
    #: When these figures were computed; None until the loop fills them in the first time.
    updated_at: datetime | None = datetime_field()


@dataclass(slots=True)
class OrderCounts:
    """Orders by status: waiting (not terminal), filled, and rejected or cancelled without a fill."""

    planned: int = 0
    filled: int = 0
    rejected: int = 0

    def add_position(self, position: Position) -> None:
        """Count every order of one position."""
        for order in position.orders:
            if order.fills:
                self.filled += 1
            elif order.status is OrderStatus.rejected or order.status is OrderStatus.cancelled:
                self.rejected += 1
            elif not order.is_terminal:
                self.planned += 1


class _FrozenListCount:
    """Orders in a list of immutable positions that only grows, counted incrementally."""

    __slots__ = ("counts", "tail")

    def __init__(self) -> None:
        self.counts = OrderCounts()
        self.tail: ListTail[Position] = ListTail()

    def update(self, items: Sequence[Position]) -> OrderCounts:
        """Count the positions appended since the last call; start over if the list was replaced or shrank."""
        new = self.tail.new_items(items)
        if self.tail.restarted:
            self.counts = OrderCounts()
        for position in new:
            self.counts.add_position(position)
        return self.counts


class FigureCounter:
    """Remembers the orders of closed and failed positions already counted, so each call costs O(open + newly closed).

    Not thread-safe: one counter belongs to the loop thread.
    """

    def __init__(self) -> None:
        self._closed = _FrozenListCount()
        self._failed = _FrozenListCount()

    def figures(self, state: State, *, now: datetime | None = None) -> PortfolioFigures:
        """The figures of ``state`` now."""
        portfolio: Portfolio = state.portfolio
        closed = self._closed.update(portfolio.closed_positions)
        failed = self._failed.update(portfolio.failed_positions)
        open_counts = OrderCounts()
        market_value = 0.0
        unrealised = 0.0
        for position in portfolio.open_positions:
            open_counts.add_position(position)
            market_value += position.market_value
            unrealised += position.unrealised_pnl
        return PortfolioFigures(
            portfolio_value=float(portfolio.cash + market_value),
            cash=float(portfolio.cash),
            unrealised_pnl=float(unrealised),
            open_positions=len(portfolio.open_positions),
            orders_planned=open_counts.planned + closed.planned + failed.planned,
            orders_filled=open_counts.filled + closed.filled + failed.filled,
            orders_rejected=open_counts.rejected + closed.rejected + failed.rejected,
            fees_paid=float(portfolio.fees_paid),
            fee_currency=state.quote_currency(),
            updated_at=now,
        )


def figures_from_state(state: State, counter: FigureCounter | None = None, *, now: datetime | None = None) -> PortfolioFigures:
    """The portfolio figures of ``state``; pass the loop's ``counter`` to keep the cost O(open + newly closed).

    Without a counter every closed position is counted (O(history)): fine once, not per cycle.
    """
    return (counter or FigureCounter()).figures(state, now=now)

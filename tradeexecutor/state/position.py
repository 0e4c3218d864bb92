"""A holding in one instrument from its opening fill to its closing fill, with its protective orders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dataclasses_json import dataclass_json

from tradeexecutor.state.order import Order
from tradeexecutor.state.timestamps import datetime_field, required_datetime_field


class HoldingFigures:
    """Figures of a holding computed from its quantity, cost basis and last price.

    Shared by Position and the read-only view a strategy gets of it
    (``tradeexecutor.strategy.views.PositionView``), so both compute them one way.
    """

    __slots__ = ()
    quantity: float
    cost_basis: float
    last_price: float | None

    @property
    def average_price(self) -> float:
        """Average entry price of the quantity held."""
        return self.cost_basis / self.quantity if self.quantity else 0.0

    @property
    def market_value(self) -> float:
        """Signed value at the last valuation price."""
        return self.quantity * (self.last_price or 0.0)

    @property
    def unrealised_pnl(self) -> float:
        """Gain of the quantity held against its cost, at the last valuation."""
        if not self.quantity or self.last_price is None:
            return 0.0
        return self.quantity * self.last_price - self.cost_basis


@dataclass_json
@dataclass(slots=True)
class Position(HoldingFigures):
    """One position; ``quantity`` is signed so that shorts fit the same record later."""

    #: Unique within the state.
    id: int
    #: Instrument.id of what is held.
    instrument_id: int
    #: When the position was created (its first order was decided).
    opened_at: datetime = required_datetime_field()
    #: ``long`` now; ``short`` is reserved for later.
    direction: str = "long"
    #: Signed quantity currently held (sum of signed fill quantities); changed only by applying a fill.
    quantity: float = 0.0
    #: Cost of the quantity held, at average entry price, excluding fees.
    cost_basis: float = 0.0
    #: Profit or loss realised by reducing or closing fills, net of all fees paid.
    realised_pnl: float = 0.0
    #: Fees paid on all fills of this position.
    fees_paid: float = 0.0
    #: Absolute stop-loss price, or None.
    stop_loss: float | None = None
    #: Absolute take-profit price, or None.
    take_profit: float | None = None
    #: Trailing stop distance as a fraction below the highest price seen (0.05 = 5 %).
    trailing_stop_pct: float | None = None
    #: Highest price seen since the position opened, for the trailing stop.
    high_water: float | None = None
    #: Open time of the newest bar whose high raised ``high_water`` (None: none yet). A check of that bar again
    #: (a job retried, or taken again after a restart) skips it: it was checked against the high-water from
    #: before it, and a second check against one that includes its own high could fire a stop the first did not.
    high_water_at: datetime | None = datetime_field()
    #: Stop-loss as a fraction below the entry price, resolved to stop_loss when the entry fills.
    stop_loss_pct: float | None = None
    #: Take-profit as a fraction above the entry price, resolved to take_profit when the entry fills.
    take_profit_pct: float | None = None
    #: Latest price the position was valued at.
    last_price: float | None = None
    #: When it was last valued.
    last_valued_at: datetime | None = datetime_field()
    #: Quantity left below one lot (or the minimum notional) when a close sold every whole lot: the
    #: exchange cannot sell it, so the position closed without it and its cost was written off (0.0: none).
    #: Negative: the close also sold that much dust of earlier positions (the account's whole lots).
    dust_quantity: float = 0.0
    #: When the closing fill happened; None while open.
    closed_at: datetime | None = datetime_field()
    #: Every order of this position, whatever became of it, in the order they were created.
    orders: list[Order] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        """A position stays open until a fill brings its quantity to zero."""
        return self.closed_at is None

    def filled_orders(self) -> list[Order]:
        """Orders with at least one fill, in order."""
        return [o for o in self.orders if o.fills]

    def has_fills(self) -> bool:
        """True once any order of the position filled."""
        return any(o.fills for o in self.orders)

    def entry_price(self) -> float | None:
        """Average fill price of the first order that filled."""
        for order in self.orders:
            if order.fills:
                return order.average_fill_price
        return None

    def exit_price(self) -> float | None:
        """Average fill price of the last order that filled, for a closed position."""
        if self.is_open:
            return None
        for order in reversed(self.orders):
            if order.fills:
                return order.average_fill_price
        return None

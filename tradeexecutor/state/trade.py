"""One order and its outcome: planned by a cycle or a trigger, then executed or rejected."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from dataclasses_json import dataclass_json

from tradeexecutor.state.timestamps import datetime_field, required_datetime_field


class TradeStatus(str, Enum):
    """Life of a trade: planned → executed | rejected."""

    planned = "planned"
    executed = "executed"
    rejected = "rejected"


class TradeKind(str, Enum):
    """Why the trade exists, from the position's point of view."""

    open = "open"
    increase = "increase"
    reduce = "reduce"
    close = "close"


class TriggerKind(str, Enum):
    """Which protective order fired, for trades a trigger check planned."""

    stop_loss = "stop_loss"
    take_profit = "take_profit"
    trailing_stop = "trailing_stop"


@dataclass_json
@dataclass(slots=True)
class Trade:
    """A market order for one instrument and what became of it.

    Quantities are signed (positive buys, negative sells) so that short positions can use the
    same record later.
    """

    #: Unique within the state, increasing in the order trades were planned.
    id: int
    #: The position this trade opens, changes or closes.
    position_id: int
    #: Instrument.id of what is traded.
    instrument_id: int
    #: TradeKind value.
    kind: str
    #: TradeStatus value.
    status: str
    #: When the decision (or trigger) planned the trade.
    planned_at: datetime = required_datetime_field()
    #: Signed quantity asked for; 0 when the trade is sized by value at the fill price.
    planned_quantity: float = 0.0
    #: Cash value asked for (buys by value or by equity fraction), else None.
    planned_value: float | None = None
    #: Price known when planning (last close), for reference and slippage reports.
    planned_price: float | None = None
    #: When the fill happened.
    executed_at: datetime | None = datetime_field()
    #: Fill price including slippage.
    executed_price: float | None = None
    #: Signed filled quantity.
    executed_quantity: float = 0.0
    #: Fee charged on this fill, in the quote currency.
    fee: float = 0.0
    #: Slippage paid relative to the reference price, in the quote currency.
    slippage: float = 0.0
    #: Why the order was rejected (rounds to zero, not enough cash, below minimum notional, ...).
    reject_reason: str | None = None
    #: TriggerKind value when a stop-loss, take-profit or trailing stop created this trade.
    trigger: str | None = None
    #: The trigger level that was crossed.
    trigger_price: float | None = None
    #: Profit or loss this fill realised (sells of a long), after fees of this fill.
    realised_pnl: float = 0.0
    #: Free text from the strategy, such as the signal that caused the trade.
    note: str | None = None

    @property
    def is_buy(self) -> bool:
        """True for orders that add to a long position."""
        quantity = self.executed_quantity if self.status == TradeStatus.executed else self.planned_quantity
        return quantity > 0 or (quantity == 0 and self.kind in (TradeKind.open, TradeKind.increase))

    @property
    def executed_value(self) -> float:
        """Absolute traded value at the fill price."""
        if self.executed_price is None:
            return 0.0
        return abs(self.executed_quantity) * self.executed_price

"""Cash and positions, with the id counters that keep position, order and fill ids unique."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from dataclasses_json import DataClassJsonMixin, config, dataclass_json

from tradeexecutor.state.order import Order
from tradeexecutor.state.packed import PackedPositions
from tradeexecutor.state.position import Position


def _decode_closed(items: list[Any]) -> list[Position]:
    """dataclasses-json's decoder of ``closed_positions``: a plain list (it cannot pick a class from the union)."""
    decode = cast("type[DataClassJsonMixin]", Position).from_dict
    return [item if isinstance(item, Position) else cast(Position, decode(item)) for item in items]


@dataclass_json
@dataclass(slots=True)
class Portfolio:
    """What the strategy owns.

    Closed positions are moved to their own list, never changed again, so that a store can
    write them once and append.
    """

    #: Cash in the quote currency, after fees.
    cash: float = 0.0
    #: Open positions, at most one per instrument for long-only spot.
    open_positions: list[Position] = field(default_factory=list)
    #: Closed positions in the order they closed; immutable once here. A list, or in a running executor's
    #: state a PackedPositions (the newest as objects, older ones packed; state/packed.py).
    closed_positions: list[Position] | PackedPositions = field(default_factory=list,
                                                                metadata=config(decoder=_decode_closed))
    #: Positions none of whose orders filled; kept for the record, never traded.
    failed_positions: list[Position] = field(default_factory=list)
    #: Next Position.id to hand out.
    next_position_id: int = 1
    #: Next Order.id to hand out.
    next_order_id: int = 1
    #: Next Fill.id to hand out.
    next_fill_id: int = 1
    #: Total fees paid over the life of the portfolio.
    fees_paid: float = 0.0
    #: What the account should hold of each asset that pays fees but is neither traded nor the quote (Binance's
    #: BNB): the venue's balance when reconciliation first saw the asset, less every fee booked in it since.
    #: Reconciliation compares it with the venue's balance; nothing else moves it.
    fee_asset_balances: dict[str, float] = field(default_factory=dict)

    def open_position_for(self, instrument_id: int) -> Position | None:
        """The open position in an instrument, if any."""
        for position in self.open_positions:
            if position.instrument_id == instrument_id:
                return position
        return None

    def all_positions(self) -> Iterator[Position]:
        """Open, closed and failed positions."""
        yield from self.open_positions
        yield from self.closed_positions
        yield from self.failed_positions

    def all_orders(self) -> Iterator[Order]:
        """Every order of every position, in no particular order."""
        for position in self.all_positions():
            yield from position.orders

    def market_value(self) -> float:
        """Value of open positions at their last valuation price."""
        return sum(p.market_value for p in self.open_positions)

    def equity(self) -> float:
        """Cash plus the market value of open positions."""
        return self.cash + self.market_value()

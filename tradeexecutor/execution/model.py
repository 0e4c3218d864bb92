"""The interface every execution model implements, so backtest, paper and live share one engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tradeexecutor.state import Instrument


@dataclass(frozen=True, slots=True)
class Fill:
    """Outcome of one order: a fill (quantity > 0) or a rejection (reason set)."""

    #: Unsigned quantity filled; 0 when rejected.
    quantity: float
    #: Price paid or received, slippage included.
    price: float
    #: Fee charged on this fill.
    fee: float
    #: Cost of slippage relative to the reference price, in the quote currency.
    slippage: float
    #: Why the order was rejected, or None.
    reject_reason: str | None = None


class ExecutionModel(Protocol):
    """Turns a sized order request into a fill or a rejection; never raises for a bad order."""

    def buy(self, instrument: Instrument, reference_price: float, *, value: float | None, quantity: float | None,
            cash_available: float) -> Fill:
        """Buy by cash ``value`` or by ``quantity`` at ``reference_price``, within ``cash_available``."""
        ...

    def sell(self, instrument: Instrument, reference_price: float, *, quantity: float, held: float,
             closing: bool, apply_slippage: bool = True) -> Fill:
        """Sell ``quantity`` of the ``held`` quantity; ``closing`` sells everything held."""
        ...

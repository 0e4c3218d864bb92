"""What can be traded: stored once in the state and referenced by id from positions and trades."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dataclasses_json import dataclass_json

#: Asset types a strategy may declare for a symbol parameter.
ASSET_TYPES = ("equity", "fx", "crypto", "future")

#: Default quantity step (lot size) per asset type: whole shares, fractional fx and crypto.
DEFAULT_QUANTITY_STEP = {"equity": 1.0, "fx": 0.01, "crypto": 1e-8, "future": 1.0}


@dataclass_json
@dataclass(slots=True)
class Instrument:
    """A tradeable instrument; trades point at it by ``id`` instead of copying it."""

    #: Small integer key, unique within one state.
    id: int
    #: Ticker as it appears in the market data, such as ``GOOG`` or ``EURUSD``.
    symbol: str
    #: One of ASSET_TYPES.
    asset_type: str
    #: Quantities are rounded down to a multiple of this (1 for whole shares).
    quantity_step: float = 1.0
    #: Orders whose value is below this are rejected.
    min_notional: float = 0.0
    #: Currency prices are quoted in.
    quote_currency: str = "USD"

    def round_quantity(self, quantity: float) -> float:
        """Round a non-negative quantity down to the quantity step.

        A tiny epsilon keeps 2.9999999 from becoming 2 when the true answer is 3.
        """
        step = self.quantity_step
        if step <= 0:
            return quantity
        units = math.floor(quantity / step + 1e-9)
        rounded = units * step
        if step >= 1:
            return float(rounded)
        decimals = max(0, -int(math.floor(math.log10(step))))
        return round(rounded, decimals)

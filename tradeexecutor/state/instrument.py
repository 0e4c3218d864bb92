"""What can be traded: stored once in the state and referenced by id from positions and orders."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from dataclasses_json import dataclass_json

#: Asset types a strategy may declare for a symbol parameter.
ASSET_TYPES = ("equity", "fx", "crypto", "future")

#: Default quantity step (lot size) per asset type: whole shares, fractional fx and crypto.
DEFAULT_QUANTITY_STEP = {"equity": 1.0, "fx": 0.01, "crypto": 1e-8, "future": 1.0}


@dataclass_json
@dataclass(slots=True)
class Instrument:
    """A tradeable instrument; orders point at it by ``id`` instead of copying it."""

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
        """Round a non-negative quantity down to a whole number of lots.

        A tolerance of a billionth of a lot keeps 2.9999999999 from becoming 2 when the true answer
        is 3. Where a lot is finer than the float can resolve (more than 2**53 lots) every float is
        already the nearest float to a whole number of lots, and the quantity comes back as it is.
        """
        step = self.quantity_step
        if step <= 0:
            return quantity
        ratio = quantity / step
        if not ratio < _FINEST:
            return quantity
        if ratio >= 0.0:
            # lot_count's usual case, then lot_quantity, inline (the same operations in the same order): a buy's
            # size is rounded once per fill, and three method calls were most of its cost.
            shifted = ratio + _TOLERANCE
            lots = math.floor(shifted)
            fraction = shifted - lots
            doubt = shifted * 2.0**-48
            if doubt < fraction < 1.0 - doubt:
                grid = _GRIDS.get(step)
                digits, scale = grid if grid is not None else lot_grid(step)
                return lots * digits / scale
        return self.lot_quantity(self.lot_count(quantity))

    def lot_count(self, quantity: float) -> int:
        """The whole lots in ``quantity`` (rounded down, with a billionth of a lot of tolerance), exactly."""
        step = self.quantity_step
        ratio = quantity / step
        if not math.isfinite(ratio):
            raise ValueError(f"quantity {quantity} of {self.symbol} is not a finite number of lots of {step:g}")
        if ratio >= _FINEST:
            digits, scale = lot_grid(step)
            return math.floor(Fraction(quantity) * scale / digits + Fraction(1, 10**9))  # _TOLERANCE, exactly
        shifted = ratio + _TOLERANCE
        lots = math.floor(shifted)
        fraction = shifted - lots
        # The float quotient is within a few parts in 2**53 of the true one: only near a whole number can
        # the floor be off by one, and there the neighbours are compared as quantities.
        doubt = shifted * 2.0**-48
        if doubt < fraction < 1.0 - doubt:
            return lots
        slack = step * _TOLERANCE
        if self.lot_quantity(lots + 1) - quantity <= slack:
            return lots + 1
        if lots > 0 and self.lot_quantity(lots) - quantity > slack:
            return lots - 1
        return lots

    def lot_quantity(self, lots: int) -> float:
        """The nearest float to ``lots`` times the quantity step, the step read as the decimal it was written as
        (3 lots of 0.1 are 0.3, not 0.30000000000000004)."""
        digits, scale = lot_grid(self.quantity_step)
        return lots * digits / scale  # integer true division is correctly rounded


#: Lot counts from here up are finer than a float quantity resolves (its spacing exceeds one lot).
_FINEST = 2.0**53
#: Lots forgiven when rounding down, for the float noise of quantities computed by a strategy.
_TOLERANCE = 1e-9
_GRIDS: dict[float, tuple[int, int]] = {}


def lot_grid(step: float) -> tuple[int, int]:
    """The step as the decimal its shortest repr writes, exactly: ``digits / scale`` (0.01 is 1 / 100)."""
    grid = _GRIDS.get(step)
    if grid is None:
        exact = Fraction(repr(step))
        grid = _GRIDS[step] = (exact.numerator, exact.denominator)
    return grid

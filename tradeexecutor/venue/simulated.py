"""SimulatedVenue: market orders filled at a known price with fee, slippage, lot rounding and minimum notional.

Backtests, replays and paper trading execute here. The engine's hot path prices an order
synchronously with ``buy``/``sell`` (a backtest keeps its orders in memory and needs no queue);
through the Venue interface an order waits on the book until ``advance`` brings the next price
(the next bar's open, or the deciding bar's close) and its outcome arrives as an event. Both
ways price with the same code.

The paper/replay daemon uses the second way (write-ahead, engine/router.py): its venue
``mirrors`` the portfolio — one quote balance equal to the cash and each symbol's quantity held —
and moves its balances with the float operations of engine/accounting.py, so an order is sized
and filled exactly as the backtest's synchronous path sizes and fills it. The venue lives in the
process: after a restart it is built again from the committed state and has never seen an order,
so an order committed ``submitting`` is sent again under its client order id and priced as it
would have been (deterministic).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

from tradeexecutor.config import ExecutionConfig
from tradeexecutor.state import Instrument, OrderSide, RejectReason
from tradeexecutor.state.instrument import lot_grid
from tradeexecutor.venue.book import BookVenue
from tradeexecutor.venue.model import InstrumentSpec

__all__ = ["SimulatedFill", "SimulatedVenue"]


@dataclass(frozen=True, slots=True)
class SimulatedFill:
    """How one order fills (quantity > 0) or why it is rejected (``reject_reason`` set)."""

    #: Unsigned quantity filled; 0 when rejected.
    quantity: float
    #: Price paid or received, slippage included.
    price: float
    #: Fee charged on this fill.
    fee: float
    #: Cost of slippage relative to the reference price, in the quote currency.
    slippage: float
    #: Why the order was rejected, for machines, or None.
    reject_reason: RejectReason | None = None
    #: Why, in words.
    reason: str | None = None


class SimulatedVenue(BookVenue):
    """Fills every order at the reference price moved by slippage; used by backtests, replays and paper trading."""

    def __init__(self, config: ExecutionConfig, specs: Sequence[InstrumentSpec] = (),
                 balances: Mapping[str, float] | None = None, *, name: str = "simulated"):
        super().__init__(name, specs, balances or {})
        self.config = config
        self._fee = config.fee
        self._slip = config.slippage_bps / 10_000.0
        self._now = datetime(1970, 1, 1, tzinfo=UTC)
        self._instruments = {
            spec.symbol: Instrument(id=0, symbol=spec.symbol, asset_type="crypto", quantity_step=spec.lot_step,
                                    min_notional=spec.min_notional, quote_currency=spec.quote)
            for spec in specs
        }

    @classmethod
    def mirroring(cls, config: ExecutionConfig, instruments: Sequence[Instrument], cash: float,
                  held: Mapping[str, float]) -> SimulatedVenue:
        """A venue whose account is a portfolio's: ``cash`` in the quote currency, ``held`` quantity per symbol.

        Each symbol is its own base asset; the instruments' own lot step and minimum notional price the orders.
        """
        specs = [InstrumentSpec(symbol=i.symbol, lot_step=i.quantity_step, tick_size=0.0, min_notional=i.min_notional,
                                base=i.symbol, quote=i.quote_currency) for i in instruments]
        balances = {i.quote_currency: cash for i in instruments}
        balances.update(held)
        venue = cls(config, specs, balances)
        venue._instruments.update({i.symbol: i for i in instruments})
        return venue

    def now(self) -> datetime:
        """Time of the last price ``advance`` brought."""
        return self._now

    def advance(self, prices: Mapping[str, float], at: datetime, *, apply_slippage: bool = True) -> None:
        """A new price is known (the next bar's open): every open order for a priced symbol fills or is rejected.

        ``apply_slippage=False`` sells at the price itself (a take-profit's level, as the engine prices it).
        """
        self._now = at
        for record in self.open_records():
            request = record.request
            price = prices.get(request.symbol)
            if price is None:
                continue
            instrument = self._instruments[request.symbol]
            if request.side is OrderSide.buy:
                outcome = self.buy(instrument, price, value=request.value, quantity=request.quantity,
                                   cash_available=self.cash(request.symbol))
            else:
                held = self.held(request.symbol)
                if held <= 0:
                    self._reject(record, RejectReason.nothing_to_sell, "nothing to sell: no quantity held", at)
                    continue
                outcome = self.sell(instrument, price, quantity=request.quantity or held, held=held,
                                    closing=request.close_all, apply_slippage=apply_slippage)
            if outcome.reject_reason is not None:
                self._reject(record, outcome.reject_reason, outcome.reason or "", at)
            else:
                self._fill(record, outcome.quantity, outcome.price, outcome.fee, at, slippage=outcome.slippage)

    # -- pricing ------------------------------------------------------------------------------

    def buy(self, instrument: Instrument, reference_price: float, *, value: float | None, quantity: float | None,
            cash_available: float) -> SimulatedFill:
        """Size a buy so that its value plus fee fits in the cash available, rounded down to the lot size."""
        price = reference_price * (1.0 + self._slip)
        step = instrument.quantity_step
        if quantity is not None:
            wanted = quantity
        else:
            assert value is not None
            wanted = value / price
        if not math.isfinite(wanted):
            return _rejected(price, RejectReason.not_finite,
                             f"order size is not a finite number: {_asked(value, quantity)} at {price:.6g}")
        wanted = instrument.round_quantity(wanted)
        if wanted <= 0:
            return _rejected(price, RejectReason.rounds_to_zero,
                             f"order rounds to zero: {_asked(value, quantity)} buys less than one lot of "
                             f"{step:g} at {price:.6g}")
        size = wanted if self._affordable(wanted, price, cash_available) else self._fit(instrument, price,
                                                                                         cash_available)
        if size <= 0:
            return _rejected(
                price,
                RejectReason.insufficient_cash,
                f"not enough cash: {cash_available:.2f} does not buy one lot of {step:g} at {price:.6g} plus fee",
            )
        notional = size * price
        if notional < instrument.min_notional:
            return _rejected(price, RejectReason.below_min_notional,
                             f"below minimum notional: {notional:.2f} < {instrument.min_notional:.2f}")
        fill = _new(SimulatedFill)  # SimulatedFill(...) without the class call's keyword dict: one per fill
        _init_fill(fill, quantity=size, price=price, fee=notional * self._fee, slippage=size * (price - reference_price))
        return fill

    def _affordable(self, quantity: float, price: float, cash: float) -> bool:
        """True when the cash pays for ``quantity``: both as the ledger debits it (value plus fee, in floats) and
        exactly (quantity × price × (1 + fee)), so cash never goes below zero by any reckoning."""
        notional = quantity * price
        debit = notional + notional * self._fee
        if not debit <= cash:
            return False
        if debit <= cash * _SURELY_BELOW:
            return True  # the float debit is within a few parts in 2**53 of the exact cost
        return Fraction(quantity) * Fraction(price) * (1 + Fraction(self._fee)) <= Fraction(cash)

    def _fit(self, instrument: Instrument, price: float, cash: float) -> float:
        """The most whole lots the cash pays for, in closed form.

        The exact answer, floor(cash / (lot × price × (1 + fee))), comes from rational arithmetic; the
        nearest float quantity may cost a few parts in 2**53 more or less than that, which a bounded
        number of steps to the neighbouring representable lot quantity settles. A neighbour is the
        next whole lot or, where lots are finer than the float resolves, the next float.
        """
        if not cash > 0 or not price > 0:
            return 0.0
        unit_cost = Fraction(price) * (1 + Fraction(self._fee))
        step = instrument.quantity_step
        if step > 0:
            digits, scale = lot_grid(step)
            exact_step = Fraction(digits, scale)
            most = math.floor(Fraction(cash) / (unit_cost * exact_step))
            if most * exact_step >= _LARGEST:
                return 0.0  # no float holds the quantity (cash near the float's own limit)
            size = instrument.lot_quantity(most)
        else:
            size = float(Fraction(cash) / unit_cost)
        for _ in range(_FIT_STEPS):
            if size > 0 and not self._affordable(size, price, cash):
                size = max(_lot_below(instrument, size), 0.0)
                continue
            above = _lot_above(instrument, size)
            if not self._affordable(above, price, cash):
                return size
            size = above
        raise AssertionError(f"sizing did not settle within {_FIT_STEPS} steps: cash {cash!r}, price {price!r}, "
                             f"fee {self._fee!r}, lot {step!r}")

    def sell(self, instrument: Instrument, reference_price: float, *, quantity: float, held: float,
             closing: bool, apply_slippage: bool = True) -> SimulatedFill:
        """Sell part or all of a holding; closing sells exactly what is held, dust included."""
        price = reference_price * (1.0 - self._slip) if apply_slippage else reference_price
        if closing or quantity >= held:
            size = held
        else:
            size = instrument.round_quantity(quantity)
        if size <= 0:
            return _rejected(price, RejectReason.rounds_to_zero,
                             f"order rounds to zero: {quantity} is less than one lot of {instrument.quantity_step:g}")
        notional = size * price
        if not closing and size < held and notional < instrument.min_notional:
            return _rejected(price, RejectReason.below_min_notional,
                             f"below minimum notional: {notional:.2f} < {instrument.min_notional:.2f}")
        fill = _new(SimulatedFill)  # SimulatedFill(...) without the class call's keyword dict: one per fill
        _init_fill(fill, quantity=size, price=price, fee=notional * self._fee, slippage=size * (reference_price - price))
        return fill


_new = object.__new__
_init_fill = SimulatedFill.__init__
#: A float debit this far below the cash is below it exactly too (the float error is a few parts in 2**53).
_SURELY_BELOW = 1.0 - 2.0**-48
#: The largest quantity a float holds.
_LARGEST = Fraction(sys.float_info.max)
#: Steps to a neighbouring lot quantity that sizing may take; float rounding needs a handful at most.
_FIT_STEPS = 64


def _lot_below(instrument: Instrument, size: float) -> float:
    """The largest whole-lot quantity a float holds below ``size``."""
    below = math.nextafter(size, 0.0)
    if instrument.quantity_step <= 0:
        return below
    return min(instrument.lot_quantity(instrument.lot_count(size) - 1), below)


def _lot_above(instrument: Instrument, size: float) -> float:
    """The smallest whole-lot quantity a float holds above ``size``."""
    above = math.nextafter(size, math.inf)
    if instrument.quantity_step <= 0:
        return above
    return max(instrument.lot_quantity(instrument.lot_count(size) + 1), above)


def _asked(value: float | None, quantity: float | None) -> str:
    return f"value {value:.2f}" if quantity is None else f"quantity {quantity}"


def _rejected(price: float, reason: RejectReason, text: str) -> SimulatedFill:
    return SimulatedFill(quantity=0.0, price=price, fee=0.0, slippage=0.0, reject_reason=reason, reason=text)

"""Simulated market orders: fee on every fill, slippage in basis points, lot rounding, minimum notional."""

from __future__ import annotations

from tradeexecutor.config import ExecutionConfig
from tradeexecutor.execution.model import Fill
from tradeexecutor.state import Instrument


class SimulatedExecution:
    """Fills every order at the reference price moved by slippage; used by backtests and paper trading."""

    def __init__(self, config: ExecutionConfig):
        self.config = config
        self._fee = config.fee
        self._slip = config.slippage_bps / 10_000.0

    def buy(self, instrument: Instrument, reference_price: float, *, value: float | None, quantity: float | None,
            cash_available: float) -> Fill:
        """Size a buy so that its value plus fee fits in the cash available, rounded down to the lot size."""
        price = reference_price * (1.0 + self._slip)
        unit_cost = price * (1.0 + self._fee)
        step = instrument.quantity_step
        if quantity is not None:
            wanted = instrument.round_quantity(quantity)
        else:
            assert value is not None
            wanted = instrument.round_quantity(value / price)
        if wanted <= 0:
            asked = f"value {value:.2f}" if quantity is None else f"quantity {quantity}"
            return _rejected(price, f"order rounds to zero: {asked} buys less than one lot of {step:g} at {price:.6g}")
        size = wanted
        if size * unit_cost > cash_available:
            size = instrument.round_quantity(max(cash_available, 0.0) / unit_cost)
            # round_quantity forgives 1e-9 of float noise; never let that buy a lot the cash cannot pay.
            while size > 0 and size * unit_cost > cash_available:
                size = instrument.round_quantity(size - step) if size - step > 0 else 0.0
        if size <= 0:
            return _rejected(
                price,
                f"not enough cash: {cash_available:.2f} does not buy one lot of {step:g} at {price:.6g} plus fee",
            )
        notional = size * price
        if notional < instrument.min_notional:
            return _rejected(price, f"below minimum notional: {notional:.2f} < {instrument.min_notional:.2f}")
        return Fill(quantity=size, price=price, fee=notional * self._fee, slippage=size * (price - reference_price))

    def sell(self, instrument: Instrument, reference_price: float, *, quantity: float, held: float,
             closing: bool, apply_slippage: bool = True) -> Fill:
        """Sell part or all of a holding; closing sells exactly what is held, dust included."""
        price = reference_price * (1.0 - self._slip) if apply_slippage else reference_price
        if closing or quantity >= held:
            size = held
        else:
            size = instrument.round_quantity(quantity)
        if size <= 0:
            return _rejected(price, f"order rounds to zero: {quantity} is less than one lot of {instrument.quantity_step:g}")
        notional = size * price
        if not closing and size < held and notional < instrument.min_notional:
            return _rejected(price, f"below minimum notional: {notional:.2f} < {instrument.min_notional:.2f}")
        return Fill(quantity=size, price=price, fee=notional * self._fee, slippage=size * (reference_price - price))


def _rejected(price: float, reason: str) -> Fill:
    return Fill(quantity=0.0, price=price, fee=0.0, slippage=0.0, reject_reason=reason)

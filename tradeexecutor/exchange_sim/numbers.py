"""Decimal amounts as Binance writes and reads them: 8-decimal strings, steps, and parameters parsed strictly."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.config import AMOUNT_DECIMALS

ZERO = Decimal(0)
_EIGHT = Decimal(1).scaleb(-AMOUNT_DECIMALS)
_NUMBER = re.compile(r"^\d{1,20}(\.\d{1,20})?$")


def fmt(value: Decimal) -> str:
    """``Decimal("0.1")`` → ``"0.10000000"``: Binance's 8-decimal form."""
    return f"{value.quantize(_EIGHT, rounding=ROUND_DOWN):f}"


def round_down(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` at or below ``value``."""
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def round_up(value: Decimal, step: Decimal) -> Decimal:
    """The smallest multiple of ``step`` at or above ``value``."""
    return (value / step).to_integral_value(rounding=ROUND_CEILING) * step


def on_step(value: Decimal, step: Decimal) -> bool:
    """True when ``value`` is a whole number of ``step``."""
    return (value % step) == 0


def commission(amount: Decimal, rate: Decimal) -> Decimal:
    """The fee on ``amount``, cut (never rounded up) to 8 decimals, so it never exceeds what was reserved."""
    return (amount * rate).quantize(_EIGHT, rounding=ROUND_DOWN)


def to_decimal(price: float, step: Decimal) -> Decimal:
    """A float path price as a Decimal on the tick grid (nearest tick)."""
    return (Decimal(price) / step).to_integral_value() * step


def parse_amount(params: dict[str, str], name: str, *, required: bool = True) -> Decimal | None:
    """A positive decimal parameter; -1102 when missing or malformed, -1111 beyond 8 decimals."""
    text = params.get(name)
    if text is None or text == "":
        if required:
            raise errors.mandatory(name)
        return None
    if not _NUMBER.match(text):
        raise errors.mandatory(name)
    value = Decimal(text)
    if value.normalize().as_tuple().exponent < -AMOUNT_DECIMALS:  # type: ignore[operator]
        raise errors.too_precise(name)
    if value <= 0:
        raise errors.mandatory(name)
    return value


def parse_int(params: dict[str, str], name: str, *, required: bool = False, default: int | None = None) -> int | None:
    """A non-negative integer parameter (an id, a time in ms, a limit); -1100 when it is not one."""
    text = params.get(name)
    if text is None or text == "":
        if required:
            raise errors.mandatory(name)
        return default
    if not text.isdigit() or len(text) > 20:
        raise errors.bad_value(name)
    return int(text)

"""Frozen, validated settings objects; pure, no I/O. Built once by the CLI and passed down."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from tradeexecutor.errors import ConfigError

#: How market orders fill: at the next bar's open, or at the deciding bar's close.
FILL_TIMINGS = ("next_open", "close")


def finite_number(value: Any) -> float:
    """``value`` as a float when it is a finite number; ValueError saying so for NaN and infinities.

    The one check every number a person gives passes, wherever it comes from: options and their
    environment variables, run specs, strategy parameters, optimize grids and the config objects
    below. Range checks alone let NaN through (``nan < 0`` is False) and infinity through the
    lower bounds, and either then hangs a loop or poisons every later sum.
    """
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value} is not a finite number: give an ordinary number such as 0.5 or 10000")
    return number


def check_finite_fields(config: Any, labels: Mapping[str, str] | None = None) -> None:
    """ConfigError for the first float field of a config dataclass that is NaN or infinite.

    The error names the field as its command-line option (``--trigger-seconds``, or ``labels[name]``
    where the option is called otherwise), which is how run specs map it back to their own key.
    """
    for item in fields(config):
        value = getattr(config, item.name)
        if isinstance(value, float):
            try:
                finite_number(value)
            except ValueError as exc:
                label = (labels or {}).get(item.name) or "--" + item.name.replace("_", "-")
                raise ConfigError(f"{label} {exc}") from None


@dataclass(frozen=True)
class ExecutionConfig:
    """How simulated orders fill and what they cost."""

    #: Fee as a fraction of traded value, charged on every fill (0.002 = 0.2 %).
    fee: float = 0.0
    #: Adverse price move per fill in basis points: buys pay more, sells get less.
    slippage_bps: float = 0.0
    #: ``next_open`` (decisions after bar T closes fill at bar T+1's open) or ``close``.
    fill_timing: str = "next_open"
    #: Orders worth less than this are rejected (closing a position is always allowed).
    min_notional: float = 0.0

    def __post_init__(self) -> None:
        check_finite_fields(self)
        if not 0 <= self.fee < 0.1:
            raise ConfigError(f"fee {self.fee} must be a fraction of traded value between 0 and 0.1 (0.002 = 0.2 %)")
        if not 0 <= self.slippage_bps < 1000:
            raise ConfigError(f"slippage {self.slippage_bps} bps must be between 0 and 1000")
        if self.fill_timing not in FILL_TIMINGS:
            raise ConfigError(f"fill timing {self.fill_timing!r} must be one of {', '.join(FILL_TIMINGS)}")
        if self.min_notional < 0:
            raise ConfigError(f"minimum notional {self.min_notional} must not be negative")


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the cycle engine shared by backtest, paper and live."""

    execution: ExecutionConfig = ExecutionConfig()
    #: Starting cash of a new state.
    initial_cash: float = 10_000.0
    #: Cycles fire at multiples of the cycle duration plus this many seconds.
    cycle_offset_seconds: float = 0.0
    #: Refuse indicators whose past values change when later candles are added.
    check_indicator_lookahead: bool = True

    def __post_init__(self) -> None:
        check_finite_fields(self, {"initial_cash": "--cash", "cycle_offset_seconds": "--cycle-offset"})
        if not self.initial_cash > 0:
            raise ConfigError(f"starting cash {self.initial_cash} must be positive")
        if self.cycle_offset_seconds < 0:
            raise ConfigError(f"cycle offset {self.cycle_offset_seconds}s must not be negative")

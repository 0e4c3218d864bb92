"""The strategy author's API: the one module a strategy imports from tradeexecutor.

A strategy is a Python file that declares a few module-level names::

    from tradeexecutor.strategy.api import Integer, Symbol, open_long, close

    name = "SMA crossover"
    description = "Long when the fast average is above the slow one."
    cycle_duration = "1d"                 # 1m, 5m, 15m, 1h, 4h, 1d, 7d ...
    parameters = {
        "symbol": Symbol("GOOG", asset_type="equity"),
        "fast": Integer(10, min=2),
        "slow": Integer(30, min=3),
    }

    def indicators(candles, parameters):  # optional; once per data load, vectorised
        close = candles["close"]
        return {"fast": close.rolling(parameters.fast).mean(),
                "slow": close.rolling(parameters.slow).mean()}

    def decide(ctx):                       # every cycle; returns a list of intents
        fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
        if fast > slow and not ctx.has_position():
            return [open_long(fraction=1.0)]
        if fast < slow and ctx.has_position():
            return [close()]
        return []

Rules the engine enforces:

- ``decide(ctx)`` sees only candles closed by ``ctx.timestamp`` and indicator values at those
  bars; asking for a later bar raises LookaheadError. An indicator whose past values change
  when later candles are left out, and strategy code that reaches past the context (private
  attributes such as ``ctx._market``, frames, introspection modules), are refused at load time
  (exit code 2; docs/writing-a-strategy.md says exactly what is and is not guaranteed).
- Intents are executed sells first, then buys. With the default fill timing ``next_open`` an order
  fills at the next bar's open; with ``close`` at the decision bar's close.
- An order that cannot be filled (rounds to zero, lacks cash, is below the minimum notional)
  becomes a rejected trade with its reason; it never crashes the run.
- ``ctx`` is read-only: ``ctx.paused`` cannot be set, and ``ctx.position()`` is a frozen
  PositionView (a copy). Positions change only through the intents decide() returns.
- Stops, take-profits and trailing stops are the engine's: they are checked on every bar even
  when decide() raises, and a daemon whose strategy keeps failing stops calling it (safe mode).

Parameter types: Integer, Decimal, Boolean, Choice, Text, Symbol (with its asset type) and
BarFrequency (fixed, or a choice the operator may pick). Intents: open_long, increase, reduce,
close and set_triggers.
"""

from __future__ import annotations

from tradeexecutor.errors import LookaheadError
from tradeexecutor.strategy.context import CycleContext
from tradeexecutor.strategy.intents import Intent, close, increase, open_long, reduce, set_triggers
from tradeexecutor.strategy.parameters import (
    BarFrequency,
    Boolean,
    Choice,
    Decimal,
    Integer,
    Parameters,
    Symbol,
    Text,
)
from tradeexecutor.strategy.views import PositionView

__all__ = [
    "BarFrequency",
    "Boolean",
    "Choice",
    "CycleContext",
    "Decimal",
    "Integer",
    "Intent",
    "LookaheadError",
    "Parameters",
    "PositionView",
    "Symbol",
    "Text",
    "close",
    "increase",
    "open_long",
    "reduce",
    "set_triggers",
]

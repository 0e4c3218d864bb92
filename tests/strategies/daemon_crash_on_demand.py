"""A strategy that buys once and holds, and raises while the file its crash_file parameter names exists.

For tests that crash a running executor when they choose (tests/test_prometheus_e2e.py).
"""

from pathlib import Path

from tradeexecutor.strategy.api import Symbol, Text, open_long

name = "Daemon crash on demand"
description = "Buys with half the cash once and holds; raises StrategyBoom while crash_file exists."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "crash_file": Text("", help="Raise while this file exists (empty: never)"),
}


class StrategyBoom(RuntimeError):
    """The error the tests ask for."""


def decide(ctx):
    trigger = ctx.parameters.crash_file
    if trigger and Path(trigger).exists():
        raise StrategyBoom(f"crash requested: {trigger} exists")
    if not ctx.has_position():
        return [open_long(fraction=0.5, note="buy once and hold")]
    return []

"""SMA crossover that takes a set time per cycle, so sweep tests can interrupt one mid-point (Ctrl+C, a lost worker).

``pause`` seconds of sleep per cycle; 0 makes it the plain crossover. The trades do not depend on it.
"""

import time

from tradeexecutor.strategy.api import Decimal, Integer, Symbol, close, open_long

name = "SMA paced"
description = "SMA crossover with a fixed pause per cycle, for tests that must catch a sweep mid-point."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "fast": Integer(10, min=2, max=500, help="Fast moving average window in bars"),
    "slow": Integer(30, min=3, max=1000, help="Slow moving average window in bars"),
    "pause": Decimal(0.0, min=0.0, max=1.0, help="Seconds of sleep per cycle"),
}


def indicators(candles, parameters):
    close_price = candles["close"]
    return {"fast": close_price.rolling(parameters.fast).mean(), "slow": close_price.rolling(parameters.slow).mean()}


def decide(ctx):
    if ctx.parameters.pause:
        time.sleep(ctx.parameters.pause)
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    fast_before, slow_before = ctx.indicator("fast", ago=1), ctx.indicator("slow", ago=1)
    if fast_before < slow_before and fast > slow and not ctx.has_position():
        return [open_long(fraction=1.0)]
    if fast_before > slow_before and fast < slow and ctx.has_position():
        return [close()]
    return []

"""SMA crossover on one stock: long while the fast moving average is above the slow one."""

from tradeexecutor.strategy.api import Decimal, Integer, Symbol, close, open_long

name = "SMA crossover"
description = "Go long when the fast simple moving average crosses above the slow one; exit when it crosses below."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "fast": Integer(10, min=2, max=500, help="Fast moving average window in bars"),
    "slow": Integer(30, min=3, max=1000, help="Slow moving average window in bars"),
    "allocation": Decimal(1.0, min=0.01, max=1.0, help="Fraction of equity to invest on entry"),
}


def indicators(candles, parameters):
    """Both averages, computed once over the whole data set."""
    close_price = candles["close"]
    return {
        "fast": close_price.rolling(parameters.fast).mean(),
        "slow": close_price.rolling(parameters.slow).mean(),
    }


def decide(ctx):
    """Enter on a cross up, exit on a cross down."""
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    fast_before, slow_before = ctx.indicator("fast", ago=1), ctx.indicator("slow", ago=1)
    if fast_before < slow_before and fast > slow and not ctx.has_position():
        return [open_long(fraction=ctx.parameters.allocation, note="fast crossed above slow")]
    if fast_before > slow_before and fast < slow and ctx.has_position():
        return [close(note="fast crossed below slow")]
    return []

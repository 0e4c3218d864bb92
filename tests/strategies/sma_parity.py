"""SMA crossover pinned to the rules of the backtesting.py parity test (tests/test_parity_backtesting_py.py).

Kept separate from strategies/sma_crossover.py so that edits to the example cannot silently
change what the parity test compares. The rules mirror backtesting.py's ``crossover()``:

- enter (all-in by cash) when fast[-2] < slow[-2] and fast[-1] > slow[-1];
- exit (close everything) when fast[-2] > slow[-2] and fast[-1] < slow[-1];
- both averages are ``close.rolling(n).mean()``.
"""

from tradeexecutor.strategy.api import Integer, Symbol, close, open_long

name = "SMA parity"
description = "Long-only SMA crossover with the exact rules of the backtesting.py parity test."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "fast": Integer(10, min=2, max=500, help="Fast moving average window in bars"),
    "slow": Integer(30, min=3, max=1000, help="Slow moving average window in bars"),
}


def indicators(candles, parameters):
    close_price = candles["close"]
    return {
        "fast": close_price.rolling(parameters.fast).mean(),
        "slow": close_price.rolling(parameters.slow).mean(),
    }


def decide(ctx):
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    fast_before, slow_before = ctx.indicator("fast", ago=1), ctx.indicator("slow", ago=1)
    if not ctx.has_position():
        if fast_before < slow_before and fast > slow:
            return [open_long(fraction=1.0)]
    elif fast_before > slow_before and fast < slow:
        return [close()]
    return []

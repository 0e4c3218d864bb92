"""Benchmark strategy: SMA crossover on 1-minute bars of the synthetic symbol SYN (bench/bench_backtest.py).

Same rules as the backtesting.py side of the benchmark (and tests/strategies/sma_parity.py):
enter all-in when fast[-2] < slow[-2] and fast[-1] > slow[-1], close everything on the
opposite cross; both averages are ``close.rolling(n).mean()``.
"""

from tradeexecutor.strategy.api import Integer, Symbol, close, open_long

name = "SMA crossover 1m (benchmark)"
description = "Long-only SMA crossover on 1-minute synthetic bars, for throughput benchmarks."
cycle_duration = "1m"

parameters = {
    "symbol": Symbol("SYN", asset_type="equity", help="Synthetic instrument from generate_candles()"),
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

"""Benchmark strategy: bench/strategies/sma_1m.py's SMA crossover written as vectorised signals() (bench/bench_signals.py).

Entry where fast[-2] < slow[-2] and fast[-1] > slow[-1]; exit where fast[-2] > slow[-2] and
fast[-1] < slow[-1] — the same comparisons decide() makes, on the same rolling means, so the
engine makes the same trades.
"""

from tradeexecutor.strategy.api import Integer, Symbol

name = "SMA crossover 1m, signals (benchmark)"
description = "Long-only SMA crossover on 1-minute synthetic bars as entry and exit signals."
cycle_duration = "1m"
signal_order = {"fraction": 1.0}

parameters = {
    "symbol": Symbol("SYN", asset_type="equity", help="Synthetic instrument from generate_candles()"),
    "fast": Integer(10, min=2, max=500, help="Fast moving average window in bars"),
    "slow": Integer(30, min=3, max=1000, help="Slow moving average window in bars"),
}


def signals(candles, parameters):
    close_price = candles["close"]
    fast = close_price.rolling(parameters.fast).mean()
    slow = close_price.rolling(parameters.slow).mean()
    fast_before, slow_before = fast.shift(1), slow.shift(1)
    return {
        "entry": (fast_before < slow_before) & (fast > slow),
        "exit": (fast_before > slow_before) & (fast < slow),
    }

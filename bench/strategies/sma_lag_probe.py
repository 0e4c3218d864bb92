"""Benchmark strategy: strategies/sma_crossover.py plus a probe recording when each decide() starts.

Used by bench/bench_status_pollers.py and bench/bench_scheduler_lag.py to measure the delay
between a cycle boundary and the start of that cycle. Each call of ``decide`` records
``time.time()`` at entry, first thing: in ``ENTRIES`` (read in-process through
``decide.__globals__``) and, when the environment variable ``TRADEEXECUTOR_BENCH_PROBE`` names a
file, as one line appended to it (read by a benchmark that runs the daemon as a subprocess).
The trading rules are those of strategies/sma_crossover.py.
"""

import os
import time

from tradeexecutor.strategy.api import Decimal, Integer, Symbol, close, open_long

name = "SMA crossover (lag probe)"
description = "SMA crossover on GOOG that records the wall-clock time at which each decide() starts."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "fast": Integer(10, min=2, max=500, help="Fast moving average window in bars"),
    "slow": Integer(30, min=3, max=1000, help="Slow moving average window in bars"),
    "allocation": Decimal(1.0, min=0.01, max=1.0, help="Fraction of equity to invest on entry"),
}

#: time.time() at the entry of every decide() call, in call order.
ENTRIES = []

_PROBE_PATH = os.environ.get("TRADEEXECUTOR_BENCH_PROBE")
_PROBE_FD = os.open(_PROBE_PATH, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if _PROBE_PATH else None


def indicators(candles, parameters):
    """Both averages, computed once over the whole data set."""
    close_price = candles["close"]
    return {
        "fast": close_price.rolling(parameters.fast).mean(),
        "slow": close_price.rolling(parameters.slow).mean(),
    }


def decide(ctx):
    """Record the entry time, then enter on a cross up and exit on a cross down."""
    now = time.time()
    ENTRIES.append(now)
    if _PROBE_FD is not None:
        os.write(_PROBE_FD, b"%.6f\n" % now)
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    fast_before, slow_before = ctx.indicator("fast", ago=1), ctx.indicator("slow", ago=1)
    if fast_before < slow_before and fast > slow and not ctx.has_position():
        return [open_long(fraction=ctx.parameters.allocation, note="fast crossed above slow")]
    if fast_before > slow_before and fast < slow and ctx.has_position():
        return [close(note="fast crossed below slow")]
    return []

"""Benchmark strategy of bench/bench_heap.py: on 1-minute bars of the synthetic symbol SYN, enters on one cycle in
``every`` and exits ``every`` cycles later, so a run of N bars closes about N / (2 * every) positions."""

from tradeexecutor.strategy.api import Decimal, Integer, Symbol, close, open_long

name = "Flip 1m (benchmark)"
description = "Enters and exits every few 1-minute cycles, for the memory benchmark of closed positions."
cycle_duration = "1m"

parameters = {
    "symbol": Symbol("SYN", asset_type="equity", help="Synthetic instrument from generate_candles()"),
    "every": Integer(5, min=1, max=3600, help="Cycles between two orders"),
    "allocation": Decimal(0.2, min=0.01, max=1.0, help="Fraction of equity per entry"),
}


def indicators(candles, parameters):
    return {}


def decide(ctx):
    if int(ctx.timestamp.timestamp() // 60) % ctx.parameters.every:
        return []
    if ctx.has_position():
        return [close(note="flip out")]
    return [open_long(fraction=ctx.parameters.allocation, note="flip in")]

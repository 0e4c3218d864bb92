"""Benchmark strategy of bench/bench_soak.py: on 1-second candles, enters on one cycle in ``every`` and exits
``every`` cycles later, so a live executor sends an order every few cycles for as long as the soak runs."""

from tradeexecutor.strategy.api import Decimal, Integer, Symbol, close, open_long

name = "Soak flip"
description = "Enters and exits every few 1-second cycles, for the soak benchmark against the exchange simulator."
cycle_duration = "1s"

parameters = {
    "symbol": Symbol("EURUSD", asset_type="fx", help="Pair to trade (the simulator's EUR/USD market)"),
    "every": Integer(5, min=1, max=3600, help="Cycles between two orders"),
    "allocation": Decimal(0.2, min=0.01, max=1.0, help="Fraction of equity per entry"),
}


def indicators(candles, parameters):
    return {}


def decide(ctx):
    if int(ctx.timestamp.timestamp()) % ctx.parameters.every:
        return []
    if ctx.has_position():
        return [close(note="soak out")]
    return [open_long(fraction=ctx.parameters.allocation, note="soak in")]

"""Benchmark strategy: hold the instrument with the best trailing return, re-ranked every bar (bench/bench_rotation.py).

Every cycle reads each instrument's momentum once, so its work grows with the number of
instruments the way a rotation's does; with one instrument it is a plain momentum filter.
"""

from tradeexecutor.strategy.api import Integer, close, open_long

name = "Momentum rotation 1m (benchmark)"
description = "Holds the leader by trailing return among the instruments; for per-instrument-bar cost."
cycle_duration = "1m"
parameters = {
    "count": Integer(50, min=1, max=1_000, help="Instruments R0, R1, ..."),
    "lookback": Integer(120, min=2, max=10_000, help="Bars of trailing return"),
}


def instruments(parameters):
    return [f"R{i}" for i in range(parameters.count)]


def indicators(candles, parameters):
    return {"momentum": candles["close"].pct_change(parameters.lookback)}


def decide(ctx):
    leader, best = None, 0.0
    for symbol in ctx.symbols:
        value = ctx.indicator("momentum", symbol)
        if value > best:
            leader, best = symbol, value
    intents = [close(symbol) for symbol in ctx.symbols if symbol != leader and ctx.has_position(symbol)]
    if leader is not None and not ctx.has_position(leader):
        intents.append(open_long(leader, fraction=0.99))
    return intents

"""Momentum rotation: hold the stock with the best trailing return, re-checked every week."""

from tradeexecutor.strategy.api import Decimal, Integer, close, open_long

name = "Momentum rotation"
description = (
    "Each week, rank AAPL, GOOG, IBM and MSFT by their return over the lookback window and hold only "
    "the leader; stay in cash when even the leader's momentum is below the threshold."
)
cycle_duration = "7d"
instruments = ["AAPL", "GOOG", "IBM", "MSFT"]
asset_types = dict.fromkeys(instruments, "equity")

parameters = {
    "lookback": Integer(60, min=5, max=500, help="Bars of trailing return used for ranking"),
    "threshold": Decimal(0.0, min=-1.0, max=1.0, help="Minimum momentum to hold anything"),
    "allocation": Decimal(0.99, min=0.01, max=1.0, help="Fraction of equity in the leader"),
}


def indicators(candles, parameters):
    """Trailing return over the lookback window, per stock."""
    return {"momentum": candles["close"].pct_change(parameters.lookback)}


def decide(ctx):
    """Sell whatever is not the leader, then buy the leader; the engine sells before it buys."""
    scores = {}
    for symbol in ctx.symbols:
        value = ctx.indicator("momentum", symbol)
        if value == value:  # not NaN: enough history
            scores[symbol] = value
    leader = max(scores, key=scores.get) if scores else None
    if leader is not None and scores[leader] < ctx.parameters.threshold:
        leader = None
    intents = [close(symbol, note="no longer the leader") for symbol in ctx.symbols
               if symbol != leader and ctx.has_position(symbol)]
    if leader is not None and not ctx.has_position(leader):
        intents.append(open_long(leader, fraction=ctx.parameters.allocation,
                                 note=f"leader with momentum {scores[leader]:.1%}"))
    return intents

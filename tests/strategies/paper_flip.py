"""Buys on one cycle and sells on the next, on 1-second candles: paper trading on live prices trades at once."""

from tradeexecutor.strategy.api import Decimal, Symbol, close, open_long

name = "Paper flip"
description = "Enters and exits on alternate cycles, for the paper-on-live-prices tests against the exchange simulator."
cycle_duration = "1s"

parameters = {
    "symbol": Symbol("EURUSD", asset_type="fx", help="Pair to trade (the simulator's EUR/USD market)"),
    "allocation": Decimal(0.5, min=0.01, max=1.0, help="Fraction of equity per entry"),
}


def indicators(candles, parameters):
    return {"mid": (candles["high"] + candles["low"]) / 2}


def decide(ctx):
    if ctx.has_position():
        return [close(note="flip out")]
    return [open_long(fraction=ctx.parameters.allocation, note="flip in")]

"""Buys when flat and holds, on 1-second candles: the paper risk-limit test drops the simulator's price under it."""

from tradeexecutor.strategy.api import Decimal, Symbol, open_long

name = "Paper hold"
description = "Opens a long whenever flat and never sells, for the risk-limit test against the exchange simulator."
cycle_duration = "1s"

parameters = {
    "symbol": Symbol("EURUSD", asset_type="fx", help="Pair to trade (the simulator's EUR/USD market)"),
    "allocation": Decimal(0.95, min=0.01, max=1.0, help="Fraction of equity per entry"),
}


def decide(ctx):
    if not ctx.has_position():
        return [open_long(fraction=ctx.parameters.allocation, note="flat: buy and hold")]
    return []

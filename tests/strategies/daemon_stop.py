"""Buys and protects every position with a tight trailing stop, so the daemon tests see triggers fire."""

from tradeexecutor.strategy.api import Symbol, open_long

name = "Daemon stop"
description = "Opens a long whenever flat, with a 1 % trailing stop."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
}


def decide(ctx):
    if not ctx.has_position():
        return [open_long(fraction=0.5, trailing_stop_pct=0.01, note="flat: buy with a 1 % trailing stop")]
    return []

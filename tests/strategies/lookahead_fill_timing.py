"""Opens and closes a position at given cycle times, so the test can check when and at what price orders fill."""

from tradeexecutor.strategy.api import Symbol, Text, close, open_long

name = "Lookahead fill timing"
description = "Buys on one cycle date and sells on another."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("AAA", asset_type="equity"),
    "open_on": Text("2024-01-06", help="Start of the ISO cycle time (UTC) that opens"),
    "close_on": Text("2024-01-11", help="Start of the ISO cycle time (UTC) that closes"),
}


def decide(ctx):
    stamp = ctx.timestamp.isoformat()
    if stamp.startswith(ctx.parameters.open_on) and not ctx.has_position():
        return [open_long(fraction=0.5)]
    if stamp.startswith(ctx.parameters.close_on) and ctx.has_position():
        return [close()]
    return []

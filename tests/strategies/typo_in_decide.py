"""A strategy with a typo in a helper of decide(): a NameError on the first cycle with a position."""

from tradeexecutor.strategy.api import Integer, Symbol, open_long

name = "Typo in decide"
description = "Opens a position, then calls clsoe() instead of close()."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "window": Integer(5, min=2, max=50, help="SMA window"),
}


def indicators(candles, parameters):
    return {"sma": candles["close"].rolling(parameters.window).mean()}


def decide(ctx):
    if not ctx.has_position():
        return [open_long(fraction=0.5)]
    return exit_rules(ctx)


def exit_rules(ctx):
    return [clsoe(note="typo")]  # noqa: F821 - the typo under test

"""Returns a good intent followed by one for an instrument it does not trade: the engine must refuse both."""

from tradeexecutor.strategy.api import Symbol, close, open_long

name = "Daemon bad intents"
description = "Asks to open GOOG and to close a symbol that is not among its instruments."
cycle_duration = "1d"

parameters = {"symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade")}


def decide(ctx):
    return [open_long(fraction=0.5), close("NOPE")]

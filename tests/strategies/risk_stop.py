"""Always long when flat, with a wide stop-loss: the risk-limit tests see a drawdown pause entries before the stop
fires, and the strategy keep asking to re-enter."""

from tradeexecutor.strategy.api import Decimal, Symbol, open_long

name = "Risk stop"
description = "Opens a long whenever flat, with a wide stop-loss."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "stop": Decimal(0.08, min=0.001, max=0.5, help="Stop-loss below the entry, as a fraction"),
}


def decide(ctx):
    if not ctx.has_position():
        return [open_long(fraction=0.95, stop_loss_pct=ctx.parameters.stop, note="flat: buy with a stop-loss")]
    return []

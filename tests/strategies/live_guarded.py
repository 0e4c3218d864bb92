"""Buys when flat with a stop-loss and holds, on 1-second candles: the live fault tests time out its orders, trip its
stop by pinning the simulator's price, close it as an operator and fill or refuse its entries in part."""

from tradeexecutor.strategy.api import Decimal, Symbol, open_long

name = "Live guarded"
description = "Opens a long with a stop-loss whenever flat and never sells, for the live fault tests."
cycle_duration = "1s"

parameters = {
    "symbol": Symbol("EURUSD", asset_type="fx", help="Pair to trade (the simulator's EUR/USD market)"),
    "allocation": Decimal(0.5, min=0.01, max=1.0, help="Fraction of equity per entry"),
    "stop": Decimal(0.05, min=0.001, max=0.5, help="Stop-loss below the entry, as a fraction"),
}


def decide(ctx):
    if not ctx.has_position():
        return [open_long(fraction=ctx.parameters.allocation, stop_loss_pct=ctx.parameters.stop,
                          note="flat: buy with a stop-loss")]
    return []

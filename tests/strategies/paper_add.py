"""Buys when flat, then adds to the position every cycle, on 1-second candles: an order every second against the
exchange simulator (tests/test_live_fills_missing_restart.py: orders sent while the exchange's trade list lags)."""

from tradeexecutor.strategy.api import Decimal, Symbol, increase, open_long

name = "Paper add"
description = "Opens a long when flat and adds to it at every cycle, for the live tests against the exchange simulator."
cycle_duration = "1s"

parameters = {
    "symbol": Symbol("EURUSD", asset_type="fx", help="Pair to trade (the simulator's EUR/USD market)"),
    "allocation": Decimal(0.1, min=0.01, max=1.0, help="Fraction of equity of the first entry"),
    "step": Decimal(0.01, min=0.001, max=1.0, help="Fraction of equity added at every later cycle"),
}


def decide(ctx):
    if not ctx.has_position():
        return [open_long(fraction=ctx.parameters.allocation, note="flat: buy")]
    return [increase(fraction=ctx.parameters.step, note="add")]

"""Buys each of two pairs when flat, with a stop-loss, and holds, on 1-second candles: the live lag tests restart it
with one pair's entry pending (the exchange's "does not exist" lag) while the other pair is held."""

from tradeexecutor.strategy.api import open_long

name = "Live two hold"
description = "Opens EURUSD and GBPUSD when flat (a 50 % stop-loss each) and never sells, for the live lag tests."
cycle_duration = "1s"
instruments = ["EURUSD", "GBPUSD"]
asset_types = {"EURUSD": "fx", "GBPUSD": "fx"}


def decide(ctx):
    return [open_long(symbol, fraction=0.3, stop_loss_pct=0.5, note="flat: buy")
            for symbol in ctx.symbols if not ctx.has_position(symbol)]

"""tests/strategies/live_two_hold.py on 1-minute candles and cycles: a bar lasts far longer than the cycle job's 1 s
retry, so the live lag tests can clear the exchange's lag while the bar whose cycle it held is still the newest
(tests/test_daemon_lag_held.py)."""

from tradeexecutor.strategy.api import open_long

name = "Live two hold (1m)"
description = "Opens EURUSD and GBPUSD when flat (a 50 % stop-loss each) and never sells, on 1-minute cycles."
cycle_duration = "1m"
instruments = ["EURUSD", "GBPUSD"]
asset_types = {"EURUSD": "fx", "GBPUSD": "fx"}


def decide(ctx):
    return [open_long(symbol, fraction=0.3, stop_loss_pct=0.5, note="flat: buy")
            for symbol in ctx.symbols if not ctx.has_position(symbol)]

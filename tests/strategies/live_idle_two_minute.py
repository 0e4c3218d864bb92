"""Never trades, on 1-minute candles and 2-minute cycles: a candle closes between two cycle boundaries, so the ordinary
outage tests (tests/test_daemon_outage_boundary.py) can take the exchange down after a cycle was decided and before
the next boundary — the cycle job fails at that candle, mid-cycle."""

name = "Live idle (2m cycles, 1m bars)"
description = "Decides nothing; its cycles come every two 1-minute candles."
cycle_duration = "2m"
bar_frequency = "1m"
instruments = ["EURUSD"]
asset_types = {"EURUSD": "fx"}


def decide(ctx):
    return []

"""Indicators that use future rows in different ways; each must be refused when the backtest starts."""

import pandas as pd

from tradeexecutor.strategy.api import Choice, Symbol, Text

name = "Lookahead peeking indicators"
description = "Computes an indicator from future candles, which the engine must refuse."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("AAA", asset_type="equity"),
    "mode": Choice("shift", choices=("shift", "normalise", "centered", "bfill", "interpolate", "late_shift",
                                     "honest")),
    "leak_from": Text("2100-01-01", help="late_shift: the first bar (ISO date) whose value is the next close"),
}


def indicators(candles, parameters):
    close = candles["close"]
    if parameters.mode == "shift":
        peek = close.shift(-1)
    elif parameters.mode == "normalise":
        peek = close / close.max()
    elif parameters.mode == "centered":
        peek = close.rolling(3, center=True).mean()
    elif parameters.mode == "bfill":
        peek = close.rolling(5).mean().bfill()  # the warm-up takes the first full average, known 4 bars later
    elif parameters.mode == "interpolate":
        peek = close.rolling(5).mean().interpolate(limit_direction="both")
    elif parameters.mode == "late_shift":
        peek = close.rolling(3).mean()
        late = candles.index >= pd.Timestamp(parameters.leak_from, tz="UTC")
        peek[late] = close.shift(-1)[late]  # foresight only in the last stretch of the data
    else:
        peek = close.rolling(3).mean()
    return {"peek": peek}


def decide(ctx):
    return []

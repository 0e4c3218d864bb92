"""Indicators that use future rows in different ways; each must be refused when the backtest starts."""

from tradeexecutor.strategy.api import Choice, Symbol

name = "Lookahead peeking indicators"
description = "Computes an indicator from future candles, which the engine must refuse."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("AAA", asset_type="equity"),
    "mode": Choice("shift", choices=("shift", "normalise", "centered", "honest")),
}


def indicators(candles, parameters):
    close = candles["close"]
    if parameters.mode == "shift":
        peek = close.shift(-1)
    elif parameters.mode == "normalise":
        peek = close / close.max()
    elif parameters.mode == "centered":
        peek = close.rolling(3, center=True).mean()
    else:
        peek = close.rolling(3).mean()
    return {"peek": peek}


def decide(ctx):
    return []

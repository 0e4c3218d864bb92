"""Causal indicators of every common kind, on two instruments; the lookahead check must accept them all."""

import numpy as np

from tradeexecutor.strategy.api import open_long

name = "Lookahead honest indicators"
description = "Rolling, exponential, expanding, cumulative and windowed-rank indicators on two instruments."
cycle_duration = "1d"
instruments = ["AAA", "BBB"]


def indicators(candles, parameters):
    close = candles["close"]
    returns = close.pct_change()
    return {
        "sma": close.rolling(5).mean(),
        "std": returns.rolling(10).std(),
        "ewm": close.ewm(span=8, adjust=False).mean(),
        "ewm_adjusted": close.ewm(halflife=3).mean(),
        "expanding_max": close.expanding().max(),
        "expanding_mean": close.expanding(min_periods=3).mean(),
        "cumsum": returns.fillna(0.0).cumsum(),
        "rank": close.rolling(7).rank(pct=True),
        "ffilled": close.where(close.index.day_of_week != 2).ffill(),
        "zscore": (close - close.rolling(20).mean()) / close.rolling(20).std(),
        "log": np.log(close),
        "lagged": close.shift(1),
    }


def decide(ctx):
    if ctx.indicator("rank", "AAA") == 1.0 and not ctx.has_position("AAA"):
        return [open_long("AAA", fraction=0.5)]
    return []

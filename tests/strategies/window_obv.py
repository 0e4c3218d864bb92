"""An on-balance-volume style cumulative indicator (no finite tail window): for the review of the candle window."""

from tradeexecutor.strategy.api import Integer, Symbol

name = "Window obv"
description = "Cumulative volume indicator."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "slow": Integer(8, min=3, max=100, help="Slow window"),
}


def indicators(candles, parameters):
    close_price = candles["close"]
    sign = (close_price.diff() > 0).astype(float) * 2 - 1
    return {"obv": (sign * candles["volume"]).cumsum(), "slow": close_price.rolling(parameters.slow).mean()}


def decide(ctx):
    return []

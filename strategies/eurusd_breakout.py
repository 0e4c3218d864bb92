"""Channel breakout on hourly EURUSD with a stop-loss and a take-profit on every entry."""

from tradeexecutor.strategy.api import BarFrequency, Decimal, Integer, Symbol, open_long

name = "EURUSD breakout"
description = (
    "Buy when the close breaks above the highest high of the last N bars; every entry carries a "
    "percentage stop-loss and take-profit, and a trailing stop when enabled."
)
cycle_duration = "1h"

parameters = {
    "symbol": Symbol("EURUSD", asset_type="fx", help="Currency pair to trade"),
    "frequency": BarFrequency("1h", choices=("1h", "4h"), help="Candle size the channel is measured on"),
    "lookback": Integer(24, min=2, max=500, help="Bars in the breakout channel"),
    "stop_loss_pct": Decimal(0.004, min=0.0005, max=0.2, help="Stop-loss below the entry fill"),
    "take_profit_pct": Decimal(0.008, min=0.0005, max=0.5, help="Take-profit above the entry fill"),
    "trailing_stop_pct": Decimal(0.0, min=0.0, max=0.2, help="Trailing stop distance; 0 disables it"),
    "allocation": Decimal(0.5, min=0.01, max=1.0, help="Fraction of equity per entry"),
}


def indicators(candles, parameters):
    """The channel top is the highest high of the *previous* lookback bars, so the current bar can break it."""
    return {"channel_high": candles["high"].rolling(parameters.lookback).max().shift(1)}


def decide(ctx):
    """Enter on a close above the channel; exits are left to the stop-loss and take-profit."""
    if ctx.has_position():
        return []
    channel = ctx.indicator("channel_high")
    if ctx.close() > channel:
        p = ctx.parameters
        return [open_long(
            fraction=p.allocation,
            stop_loss_pct=p.stop_loss_pct,
            take_profit_pct=p.take_profit_pct,
            trailing_stop_pct=p.trailing_stop_pct or None,
            note=f"close {ctx.close():.5f} broke channel {channel:.5f}",
        )]
    return []

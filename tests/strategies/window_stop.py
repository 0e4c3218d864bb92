"""SMA crossover entries with a tight stop-loss and a trailing stop, for the candle window's tests: fills at the next
bar's open and triggers at a bar's low both read bar indices, which a window's drop moves."""

from tradeexecutor.strategy.api import Integer, Symbol, close, open_long

name = "Window stop"
description = "SMA crossover with a stop-loss and a trailing stop, for the candle window tests."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "fast": Integer(3, min=2, max=50, help="Fast window"),
    "slow": Integer(8, min=3, max=100, help="Slow window"),
}


def indicators(candles, parameters):
    close_price = candles["close"]
    return {
        "fast": close_price.rolling(parameters.fast).mean(),
        "slow": close_price.rolling(parameters.slow).mean(),
    }


def decide(ctx):
    fast, slow = ctx.indicator("fast"), ctx.indicator("slow")
    fast_before, slow_before = ctx.indicator("fast", ago=1), ctx.indicator("slow", ago=1)
    if fast_before < slow_before and fast > slow and not ctx.has_position():
        return [open_long(fraction=0.9, stop_loss_pct=0.03, trailing_stop_pct=0.05, note="fast crossed above slow")]
    if fast_before > slow_before and fast < slow and ctx.has_position():
        return [close(note="fast crossed below slow")]
    return []

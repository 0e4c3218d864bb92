"""Holds a position in two stocks whenever ``entries`` is on, and logs the parameters each cycle saw.

For the operator-action tests: positions to close one by one or all at once, entries an
operator's pause (or ``entries=false``) must stop, and a log proving which parameter values
the cycles after a reload used.
"""

from pathlib import Path

from tradeexecutor.strategy.api import Boolean, Decimal, Integer, Text, open_long

name = "Daemon operator"
description = "Opens GOOG and AAPL when flat (entries on); logs its parameters per cycle."
cycle_duration = "1d"
instruments = ["GOOG", "AAPL"]

parameters = {
    "entries": Boolean(True, help="Open a position in each stock that has none"),
    "fraction": Decimal(0.3, min=0.01, max=0.45, help="Equity fraction per entry"),
    "window": Integer(3, min=2, max=50, help="SMA window (an indicator, recomputed on reload)"),
    "log_file": Text("", help="File that gets one line per cycle: window=N entries=B"),
}


def indicators(candles, parameters):
    return {"sma": candles["close"].rolling(parameters.window).mean()}


def decide(ctx):
    p = ctx.parameters
    if p.log_file:
        with open(Path(p.log_file), "a") as out:
            out.write(f"window={p.window} entries={p.entries} paused={ctx.paused}\n")
    if not p.entries:
        return []
    return [open_long(symbol, fraction=p.fraction) for symbol in ctx.symbols if not ctx.has_position(symbol)]

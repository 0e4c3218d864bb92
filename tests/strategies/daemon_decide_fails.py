"""Opens a position with a stop-loss, then raises on every cycle from a given date: the daemon must keep managing it.

Stateless on purpose (what it does depends only on the cycle time), so a restarted executor sees
the same strategy. Each call appends the cycle date to ``calls_file`` when one is given, so a
test can count the decisions from outside the process.
"""

from pathlib import Path

from tradeexecutor.strategy.api import Decimal, Symbol, Text, open_long

name = "Daemon decide fails"
description = "Buys GOOG with a stop-loss on open_on, raises from fail_from on."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "open_on": Text("2005-01-12", help="ISO date of the cycle that opens the position"),
    "fail_from": Text("2005-01-19", help="ISO date of the first cycle that raises"),
    "stop_loss_pct": Decimal(0.05, min=0.001, max=0.5, help="Stop-loss below the entry fill"),
    "calls_file": Text("", help="File that gets one line per decide() call (empty: none)"),
}


class StrategyBoom(RuntimeError):
    """What decide() raises from fail_from on."""


def decide(ctx):
    p = ctx.parameters
    day = ctx.timestamp.date().isoformat()
    if p.calls_file:
        with open(Path(p.calls_file), "a") as calls:
            calls.write(day + "\n")
    if day >= p.fail_from:
        raise StrategyBoom(f"decide() fails on {day}")
    if day >= p.open_on and not ctx.has_position():
        return [open_long(fraction=0.9, stop_loss_pct=p.stop_loss_pct, note="opened by the test")]
    return []

"""A strategy that fails on its N-th cycle with a chained exception, for the daemon's crash tests."""

from tradeexecutor.strategy.api import Integer, Symbol

name = "Daemon crash"
description = "Raises StrategyBoom from a KeyError on the crash_on-th cycle of a process."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "crash_on": Integer(3, min=1, max=10_000, help="Cycle of this process that raises"),
}

_calls = 0


class StrategyBoom(RuntimeError):
    """The error the tests look for in /status."""


def _lookup(table, key):
    try:
        return table[key]
    except KeyError as error:
        raise StrategyBoom(f"cannot price {key}: the lookup table has no entry") from error


def decide(ctx):
    global _calls
    _calls += 1
    if _calls >= ctx.parameters.crash_on:
        _lookup({}, "GOOG-price")
    return []

"""A strategy whose decide() sleeps, for the watchdog test."""

import time

from tradeexecutor.strategy.api import Decimal, Symbol

name = "Daemon hang"
description = "Sleeps in decide() for hang_seconds."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "hang_seconds": Decimal(1.0, min=0.0, max=600.0, help="How long decide() sleeps"),
}


def decide(ctx):
    time.sleep(ctx.parameters.hang_seconds)
    return []

"""A strategy whose decide() sleeps, for the watchdog tests.

It sleeps ``hang_seconds``, or less when ``release_file`` is given and appears: an in-process test
keeps the job hung for as long as it needs (however slow the machine), then lets it end.
"""

import os
import time

from tradeexecutor.strategy.api import Decimal, Symbol, Text

name = "Daemon hang"
description = "Sleeps in decide() for hang_seconds (or until release_file exists)."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "hang_seconds": Decimal(1.0, min=0.0, max=600.0, help="How long decide() sleeps"),
    "release_file": Text("", help="A file whose appearance ends the sleep early (empty: none)"),
}


def decide(ctx):
    p = ctx.parameters
    end = time.monotonic() + p.hang_seconds
    while time.monotonic() < end and not (p.release_file and os.path.exists(p.release_file)):
        time.sleep(min(0.02, max(0.0, end - time.monotonic())))
    return []

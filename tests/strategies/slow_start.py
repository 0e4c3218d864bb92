"""A strategy whose loading or first indicator computation takes seconds, for the SIGTERM-during-start-up tests.

``SLOW_START_IN`` (``load`` or ``indicators``) picks the step that is slow; ``SLOW_START_MARKER``
names a file written when that step begins, so the test knows when to send its signal.
"""

import os
import time
from pathlib import Path

from tradeexecutor.strategy.api import Integer, Symbol

name = "Slow start"
description = "Sleeps while loading or while computing its indicators the first time."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "window": Integer(5, min=2, max=50, help="SMA window"),
}

_SLOW_SECONDS = 3.0
_slept = False


def _slow(step):
    global _slept
    if os.environ.get("SLOW_START_IN") == step and not _slept:
        _slept = True
        Path(os.environ["SLOW_START_MARKER"]).write_text(step)
        time.sleep(_SLOW_SECONDS)


_slow("load")


def indicators(candles, parameters):
    _slow("indicators")
    return {"sma": candles["close"].rolling(parameters.window).mean()}


def decide(ctx):
    return []

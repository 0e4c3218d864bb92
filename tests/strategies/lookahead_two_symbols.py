"""Records, for two instruments with different bar gaps, what decide() sees; for tests/test_no_lookahead.py."""

from tradeexecutor.strategy.api import LookaheadError

name = "Lookahead two symbols"
description = "Records the visible bars of two instruments at every cycle."
cycle_duration = "1d"
instruments = ["AAA", "BBB"]

RECORDS: list[dict] = []


def indicators(candles, parameters):
    return {"c": candles["close"]}


def decide(ctx):
    record = {"timestamp": ctx.timestamp, "probes": []}
    for symbol in ("AAA", "BBB"):
        record[symbol] = {
            "bars": ctx.bars_available(symbol),
            "close": ctx.close(symbol),
            "indicator": ctx.indicator("c", symbol),
            "candles": ctx.candles(symbol),
        }
        for call in (lambda: ctx.close(symbol, ago=-1), lambda: ctx.indicator("c", symbol, ago=-1)):  # noqa: B023 - called at once
            try:
                call()
                record["probes"].append("no error")
            except LookaheadError:
                record["probes"].append("LookaheadError")
    try:
        ctx.close()
        record["default_symbol"] = "no error"
    except ValueError:
        record["default_symbol"] = "ValueError"
    RECORDS.append(record)
    return []

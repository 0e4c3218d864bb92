"""Records what decide() sees at every cycle, and tries to peek ahead, for tests/test_no_lookahead.py.

The records are kept in the module-level RECORDS list; the test reads them through
``loaded.decide.__globals__``. Every probe of a later bar must raise LookaheadError, and every
history accessor must return a copy that the strategy may scribble on.
"""

from tradeexecutor.strategy.api import LookaheadError, Symbol

name = "Lookahead recorder"
description = "Records the visible candles and indicators at every cycle."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("AAA", asset_type="equity"),
}

RECORDS: list[dict] = []


def indicators(candles, parameters):
    close = candles["close"]
    return {"x": close.rolling(2).mean(), "c": close}


def _probe(call):
    try:
        call()
    except LookaheadError:
        return "LookaheadError"
    except Exception as exc:  # noqa: BLE001 - recorded for the test to report
        return type(exc).__name__
    return "no error"


def decide(ctx):
    record = {
        "timestamp": ctx.timestamp,
        "bars": ctx.bars_available(),
        "close": ctx.close(),
        "close_ago_1": ctx.close(ago=1),
        "bar": ctx.bar(),
        "candles": ctx.candles(),
        "last_two": ctx.candles(bars=2),
        "x": ctx.indicator("x"),
        "c": ctx.indicator("c"),
        "x_history": ctx.indicator_history("x"),
        "probes": {
            "close(ago=-1)": _probe(lambda: ctx.close(ago=-1)),
            "indicator(x, ago=-1)": _probe(lambda: ctx.indicator("x", ago=-1)),
            "bar(ago=-1)": _probe(lambda: ctx.bar(ago=-1)),
            "close(symbol, ago=-1)": _probe(lambda: ctx.close("AAA", ago=-1)),
            "indicator(x, symbol, ago=-1)": _probe(lambda: ctx.indicator("x", "AAA", ago=-1)),
        },
    }
    record["last_row"] = record["candles"].iloc[-1].copy()

    # Scribble on what came back; none of it may reach the engine's data.
    scratch = ctx.candles()
    scratch["close"] = -1.0
    scratch.iloc[-1, 0] = -5.0
    history = ctx.indicator_history("x")
    history[:] = -1.0
    record["scribbled"] = bool((scratch["close"] == -1.0).all() and (history == -1.0).all())
    record["after_scribble_close"] = ctx.close()
    record["after_scribble_candles"] = ctx.candles()
    RECORDS.append(record)
    return []

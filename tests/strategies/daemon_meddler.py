"""Tries to lift an operator pause and to change its live position from decide(), and logs what happened."""

from pathlib import Path

from tradeexecutor.strategy.api import Symbol, Text, open_long

name = "Daemon meddler"
description = "Writes ctx.paused, the position's stop-loss, quantity and trades; opens a position when it can."
cycle_duration = "1d"

parameters = {
    "symbol": Symbol("GOOG", asset_type="equity", help="Stock to trade"),
    "log_file": Text("", help="File that gets one word per attempt: what:refused or what:changed"),
}


def _attempt(what, change, log):
    try:
        change()
    except AttributeError:  # read-only property, frozen dataclass (FrozenInstanceError), no such attribute
        log.append(f"{what}:refused")
    else:
        log.append(f"{what}:changed")


def decide(ctx):
    log = []
    if ctx.paused:
        _attempt("paused", lambda: setattr(ctx, "paused", False), log)
    position = ctx.position()
    if position is not None and position.quantity > 0:
        _attempt("stop_loss", lambda: setattr(position, "stop_loss", None), log)
        _attempt("quantity", lambda: setattr(position, "quantity", 0.0), log)
        _attempt("trades", lambda: position.trades.clear(), log)
    with open(Path(ctx.parameters.log_file), "a") as out:
        out.write("".join(word + "\n" for word in log))
    if not ctx.has_position():
        return [open_long(fraction=0.5, stop_loss_pct=0.1)]
    return []

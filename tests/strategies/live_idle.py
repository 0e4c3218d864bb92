"""Never trades, on 1-second candles: the live adoption test's executor follows only the order reconciliation adopts."""

from tradeexecutor.strategy.api import Symbol

name = "Live idle"
description = "Decides nothing, for the live test of an order adopted at start-up against the exchange simulator."
cycle_duration = "1s"

parameters = {
    "symbol": Symbol("EURUSD", asset_type="fx", help="Pair to follow (the simulator's EUR/USD market)"),
}


def decide(ctx):
    return []

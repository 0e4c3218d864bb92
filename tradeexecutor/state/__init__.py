"""The persisted model: State → Portfolio → Position → Trade, plus instruments and valuations.

This layer imports nothing else from the package, so every other layer can depend on it.
"""

from __future__ import annotations

from tradeexecutor.state.instrument import ASSET_TYPES, DEFAULT_QUANTITY_STEP, Instrument
from tradeexecutor.state.portfolio import Portfolio
from tradeexecutor.state.position import Position
from tradeexecutor.state.state import SCHEMA_VERSION, State
from tradeexecutor.state.trade import Trade, TradeKind, TradeStatus, TriggerKind
from tradeexecutor.state.valuation import ValuationSeries

__all__ = [
    "ASSET_TYPES",
    "DEFAULT_QUANTITY_STEP",
    "SCHEMA_VERSION",
    "Instrument",
    "Portfolio",
    "Position",
    "State",
    "Trade",
    "TradeKind",
    "TradeStatus",
    "TriggerKind",
    "ValuationSeries",
]

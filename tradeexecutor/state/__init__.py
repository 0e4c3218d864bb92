"""The persisted model: State → Portfolio → Position → Order → Fill, plus instruments and valuations.

This layer imports nothing else from the package but errors, so every other layer can depend on it.
"""

from __future__ import annotations

from tradeexecutor.state.client_id import client_order_id, run_key
from tradeexecutor.state.instrument import ASSET_TYPES, DEFAULT_QUANTITY_STEP, Instrument
from tradeexecutor.state.order import (
    ORDER_TRANSITIONS,
    TERMINAL_STATUSES,
    Fill,
    IllegalTransition,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    RejectReason,
    TimeInForce,
    TriggerKind,
    fee_value,
)
from tradeexecutor.state.packed import PackedPositions
from tradeexecutor.state.portfolio import Portfolio
from tradeexecutor.state.position import Position
from tradeexecutor.state.risk import RiskState
from tradeexecutor.state.state import SCHEMA_VERSION, State
from tradeexecutor.state.valuation import ValuationSeries

__all__ = [
    "ASSET_TYPES",
    "DEFAULT_QUANTITY_STEP",
    "ORDER_TRANSITIONS",
    "SCHEMA_VERSION",
    "TERMINAL_STATUSES",
    "Fill",
    "IllegalTransition",
    "Instrument",
    "Order",
    "OrderPurpose",
    "OrderSide",
    "OrderStatus",
    "OrderType",
    "PackedPositions",
    "Portfolio",
    "Position",
    "RejectReason",
    "RiskState",
    "State",
    "TimeInForce",
    "TriggerKind",
    "ValuationSeries",
    "client_order_id",
    "fee_value",
    "run_key",
]

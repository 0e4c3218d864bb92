"""Where orders are executed: the Venue interface, its in-memory twin and the simulated venue (the ccxt venue later)."""

from __future__ import annotations

from tradeexecutor.venue.memory import InMemoryVenue
from tradeexecutor.venue.model import (
    Balance,
    DuplicateOrderError,
    ExecutionEvent,
    FillReport,
    InstrumentSpec,
    OrderAccepted,
    OrderCancelled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReport,
    OrderRequest,
    Venue,
)
from tradeexecutor.venue.simulated import SimulatedFill, SimulatedVenue

__all__ = [
    "Balance",
    "DuplicateOrderError",
    "ExecutionEvent",
    "FillReport",
    "InMemoryVenue",
    "InstrumentSpec",
    "OrderAccepted",
    "OrderCancelled",
    "OrderExpired",
    "OrderFilled",
    "OrderRejected",
    "OrderReport",
    "OrderRequest",
    "SimulatedFill",
    "SimulatedVenue",
    "Venue",
]

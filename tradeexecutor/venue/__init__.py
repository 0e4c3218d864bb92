"""Where orders are executed: the Venue interface, its in-memory twin, the simulated venue and the ccxt venue.

The ccxt venue is imported from its own modules (``venue.ccxt_venue``, ``venue.ccxt_connection``,
``venue.ccxt_candles``), not from here, so that importing the package loads neither ccxt nor pandas.
"""

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

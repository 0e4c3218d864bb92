"""The cycle engine: decide → execute → revalue, shared by backtest, paper and live."""

from tradeexecutor.engine.engine import CycleReport, Engine, EventSink

__all__ = ["CycleReport", "Engine", "EventSink"]

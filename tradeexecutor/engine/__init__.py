"""The engine shared by backtest, replay, paper and live: per timeline step, fill → triggers → mark → decide.

Steps 1-3 (``Engine.manage``) never call the strategy; the strategy decides (step 4) only when a
cycle is due, and the caller records the valuation. See :mod:`tradeexecutor.engine.engine`.
"""

from tradeexecutor.engine.engine import CycleReport, Engine, EventSink

__all__ = ["CycleReport", "Engine", "EventSink"]

"""The engine shared by backtest, replay, paper and live: per timeline step, fill → triggers → mark → decide.

Steps 1-3 (``Engine.manage``) never call the strategy; the strategy decides (step 4) only when a
cycle is due, and the caller records the valuation. See :mod:`tradeexecutor.engine.engine`.

``Engine`` and its types load on first use (PEP 562), so importing a light submodule such as
``engine.accounting`` does not import the engine's pandas: a process that only books fills (the
ledger's kill tests restart one hundreds of times) starts in a fraction of the time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tradeexecutor.engine.engine import CycleReport, Engine, EventSink

__all__ = ["CycleReport", "Engine", "EventSink"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tradeexecutor.engine import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""A scripted strategy for engine tests: decide() returns whatever the test scripted for each cycle time.

Daily bars from 2024-01-01. ``after(i)`` is the cycle that runs once bar i has closed; with the
default fill timing its orders fill at bar i+1's open.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pandas as pd

from tradeexecutor.backtest.runner import BacktestResult, run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.strategy.loader import load_strategy

START = pd.Timestamp("2024-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)
_counter = itertools.count()

SCRIPTED = '''\\
"""Scripted strategy for engine tests: decide() returns SCRIPT[cycle time]."""

name = "Scripted"
description = "Returns the intents scripted for each cycle time."
cycle_duration = "{cycle}"
instruments = {instruments!r}

SCRIPT = {{}}
SEEN = []


def decide(ctx):
    SEEN.append(ctx.timestamp)
    action = SCRIPT.get(ctx.timestamp)
    if action is None:
        return []
    return action(ctx) if callable(action) else list(action)
'''


def bar_open(i: int) -> pd.Timestamp:
    """Open time of daily bar i."""
    return START + i * DAY


def after(i: int) -> pd.Timestamp:
    """The cycle that runs once daily bar i has closed (its close time)."""
    return START + (i + 1) * DAY


bar_close = after


def ohlc(symbol: str, rows: list[Any], start: pd.Timestamp = START, freq: str = "D") -> pd.DataFrame:
    """Candles from (open, high, low, close) tuples; a bare number is a flat bar."""
    rows = [(r, r, r, r) if isinstance(r, (int, float)) else r for r in rows]
    index = pd.DatetimeIndex(pd.date_range(start, periods=len(rows), freq=freq), tz="UTC")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index)
    frame.insert(0, "symbol", symbol)
    frame["volume"] = 1000.0
    return frame


def run(tmp_path: Path, frame: pd.DataFrame, script: dict[pd.Timestamp, Any], *,
        asset_types: dict[str, str] | None = None, fee: float = 0.0, slippage_bps: float = 0.0,
        min_notional: float = 0.0, fill_timing: str = "next_open", cash: float = 10_000.0, cycle: str = "1d",
        offset: float = 0.0, market: MarketData | None = None,
        trigger_market: MarketData | None = None) -> BacktestResult:
    """Backtest the scripted strategy over ``frame``; fails if a scripted cycle never ran."""
    symbols = list(dict.fromkeys(frame["symbol"]))
    path = tmp_path / f"scripted_{next(_counter)}.py"
    path.write_text(SCRIPTED.format(cycle=cycle, instruments=symbols))
    loaded = load_strategy(path)
    loaded.decide.__globals__["SCRIPT"].update(script)
    market = market or MarketData.from_long_frame(frame, asset_types=asset_types or dict.fromkeys(symbols, "equity"))
    config = EngineConfig(
        execution=ExecutionConfig(fee=fee, slippage_bps=slippage_bps, min_notional=min_notional,
                                  fill_timing=fill_timing),
        initial_cash=cash,
        cycle_offset_seconds=offset,
    )
    result = run_backtest(loaded, market, config, trigger_market=trigger_market)
    assert set(script) <= set(loaded.decide.__globals__["SEEN"]), "a scripted cycle never ran"
    return result

"""One run, as a recipe: load the strategy → load the market → check the universe → run → summarise.

Every way of running a strategy over history goes through here: ``tradeexecutor backtest``,
``start --mode backtest`` (``daemon.backtest_mode``), backtest runs (``runs.executor``) and each
point of an optimize sweep (``runs.sweep_eval``, which opens its market once and reuses it); the
daemon's replay start-up opens its session the same way before it starts the loop. Writing the
result is the caller's step, since each keeps it somewhere else (an output folder, a state
directory with its webhook snapshot, a run folder).

Example::

    session = open_session(Path("strategies/sma_crossover.py"), {"fast": "5"}, ["stocks-daily"], None, None)
    result = run_session(session, EngineConfig())
    result.summary.to_dict()["sharpe"]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tradeexecutor.backtest.runner import BacktestResult, run_backtest
from tradeexecutor.config import EngineConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.data.source import DataSelection, load_market
from tradeexecutor.engine.engine import EventSink
from tradeexecutor.state import State
from tradeexecutor.stats import Summary, compute_summary
from tradeexecutor.strategy.loader import LoadedStrategy, check_universe, load_strategy

__all__ = ["Session", "SessionResult", "open_session", "run_session", "whole_period"]

#: Called between the loading steps with what just finished; the daemon raises StopRequested there after a signal.
Checkpoint = Callable[[str], None]
#: Turns a run's final state (and its session, for the benchmark prices) into its summary.
Summariser = Callable[[State, "Session"], Any]


def _no_checkpoint(_: str) -> None:
    """No stop signals to look at."""


def whole_period(state: State, session: Session) -> Summary:
    """The summary over the whole run, with buying and holding the symbols as the benchmark."""
    return compute_summary(state, benchmark_prices=dict(session.close_prices()))


@dataclass(frozen=True)
class Session:
    """A strategy and the market it runs on, loaded and checked: where every run starts."""

    strategy: LoadedStrategy
    market: MarketData
    #: What the market was made from (None when a sweep reuses a market it opened once).
    selection: DataSelection | None = None
    #: Each symbol's asset type, as check_universe found it.
    asset_types: dict[str, str] = field(default_factory=dict)
    #: Close prices per symbol: the buy-and-hold benchmark of the summary (empty: computed from the market).
    prices: Mapping[str, Any] = field(default_factory=dict)

    def close_prices(self) -> Mapping[str, Any]:
        """Close prices per symbol of the market."""
        return self.prices or {symbol: self.market.close_series(symbol) for symbol in self.market.symbols}


@dataclass(frozen=True)
class SessionResult:
    """What a run produced: the backtest (final state, bars, cycles, seconds) and its summary."""

    session: Session
    backtest: BacktestResult
    summary: Any

    @property
    def state(self) -> State:
        return self.backtest.state


def open_session(strategy_file: Path, params: Mapping[str, Any], data: Sequence[str], start: str | None,
                 end: str | None, *, checkpoint: Checkpoint = _no_checkpoint) -> Session:
    """Load the strategy with ``params``, load its market from ``data`` cut to [start, end], check its universe.

    Nothing is written: a bad strategy, missing data or a symbol the data lacks is a one-line
    error before any caller has touched a state directory.
    """
    strategy = load_strategy(strategy_file, params)
    checkpoint("the strategy was loaded")
    market, selection = load_market(list(data), strategy.instruments, bar_frequency=strategy.bar_frequency,
                                    start=start, end=end)
    asset_types = check_universe(strategy, selection.available)
    checkpoint("the data was loaded")
    return Session(strategy=strategy, market=market, selection=selection, asset_types=asset_types)


def run_session(session: Session, engine: EngineConfig, *, events: EventSink | None = None,
                now: datetime | None = None, trigger_market: MarketData | None = None,
                progress: Callable[[int], None] | None = None, summarise: Summariser = whole_period) -> SessionResult:
    """Run the session's strategy over its whole market with ``engine``, then summarise the final state."""
    result = run_backtest(session.strategy, session.market, engine, events=events, now=now,
                          trigger_market=trigger_market, progress=progress)
    return SessionResult(session=session, backtest=result, summary=summarise(result.state, session))

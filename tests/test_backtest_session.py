"""The one run pipeline: open_session (load strategy → load market → check universe) and run_session (run → summarise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeexecutor.backtest import run_backtest
from tradeexecutor.backtest.session import Session, open_session, run_session
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.errors import UserInputError
from tradeexecutor.stats import compute_summary
from tradeexecutor.stats.formatting import KEY_FIGURES, key_figures

ROOT = Path(__file__).resolve().parent.parent
SMA = ROOT / "strategies" / "sma_crossover.py"


def test_a_session_runs_and_summarises_as_the_steps_by_hand_do() -> None:
    steps: list[str] = []
    session = open_session(SMA, {"fast": "5"}, ["stocks-daily"], "2008-01-01", "2010-12-31", checkpoint=steps.append)
    assert steps == ["the strategy was loaded", "the data was loaded"]
    assert session.strategy.parameters["fast"] == 5 and session.selection is not None
    assert set(session.asset_types) == set(session.strategy.instruments)
    engine = EngineConfig(execution=ExecutionConfig(fee=0.001))
    outcome = run_session(session, engine)
    by_hand = run_backtest(session.strategy, session.market, engine)
    prices = {symbol: session.market.close_series(symbol) for symbol in session.market.symbols}
    assert outcome.summary.to_dict() == compute_summary(by_hand.state, benchmark_prices=prices).to_dict()
    assert outcome.backtest.cycles == by_hand.cycles and outcome.state.cycles_completed == by_hand.cycles
    figures = key_figures(outcome.summary.to_dict())
    assert tuple(figures) == KEY_FIGURES and figures["trade_count"] == outcome.summary.to_dict()["trade_count"]


def test_a_session_reuses_given_prices_and_takes_another_summariser() -> None:
    opened = open_session(SMA, {}, ["stocks-daily"], "2009-01-01", "2009-12-31")
    reused = Session(strategy=opened.strategy, market=opened.market, prices={"sentinel": None})
    seen: list[object] = []
    outcome = run_session(reused, EngineConfig(), summarise=lambda state, session: seen.append(session.close_prices()))
    assert seen == [{"sentinel": None}] and outcome.summary is None


def test_a_failed_step_stops_before_the_next() -> None:
    def stop(step: str) -> None:
        raise RuntimeError(step)

    with pytest.raises(RuntimeError, match="the strategy was loaded"):
        open_session(SMA, {}, ["no-such-dataset"], None, None, checkpoint=stop)  # the data is never looked at
    with pytest.raises(UserInputError):
        open_session(SMA, {"fast": "x"}, ["stocks-daily"], None, None)

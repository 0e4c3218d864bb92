"""Summaries over a window of a run (a sweep's in-sample and out-of-sample figures): hand-computed, and on a real backtest."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tradeexecutor.backtest import run_backtest
from tradeexecutor.data.source import load_market
from tradeexecutor.state import State
from tradeexecutor.stats import compute_summary, summarise_windows
from tradeexecutor.strategy.loader import load_strategy

ROOT = Path(__file__).resolve().parent.parent
DAY_MS = 86_400_000
T0_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)


def test_window_starts_from_the_row_before_it() -> None:
    state = State(name="w", initial_cash=100.0)
    equity = [100.0, 110.0, 99.0, 121.0, 110.0]
    stamps = [T0_MS + i * DAY_MS for i in range(len(equity))]
    state.valuations.extend(stamps, equity, equity, [1.0] * len(equity))
    window = compute_summary(state, window=(stamps[2], stamps[4]), periods_per_year=252).to_dict()
    assert window["initial_cash"] == 110.0  # the equity of the row before the window
    assert window["start"].startswith("2024-01-03") and window["end"].startswith("2024-01-05")
    assert window["final_equity"] == 110.0
    assert window["total_return"] == pytest.approx(0.0)
    assert window["max_drawdown"] == pytest.approx((110.0 - 99.0) / 110.0)
    returns = [99 / 110 - 1, 121 / 99 - 1, 110 / 121 - 1]
    mean = sum(returns) / 3
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / 2)
    assert window["sharpe"] == pytest.approx(mean / std * math.sqrt(252))
    first = compute_summary(state, window=(stamps[0], stamps[1])).to_dict()
    assert first["initial_cash"] == 100.0 and first["total_return"] == pytest.approx(0.10)


@pytest.fixture(scope="module")
def backtest() -> tuple[State, dict]:
    strategy = load_strategy(ROOT / "strategies" / "sma_crossover.py", {"fast": 5, "slow": 20})
    market, _ = load_market(["stocks-daily"], ["GOOG"], start="2008-01-01", end="2012-12-31")
    result = run_backtest(strategy, market)
    return result.state, {s: market.close_series(s) for s in market.symbols}


def test_whole_window_is_the_run_and_two_halves_partition_it(backtest: tuple[State, dict]) -> None:
    state, prices = backtest
    stamps = state.valuations.timestamp
    whole = compute_summary(state, benchmark_prices=prices).to_dict()
    assert compute_summary(state, benchmark_prices=prices, window=(stamps[0], stamps[-1])).to_dict() == whole
    split = len(stamps) * 7 // 10
    ppy = whole["periods_per_year"]
    head = compute_summary(state, window=(stamps[0], stamps[split - 1]), periods_per_year=ppy).to_dict()
    tail = compute_summary(state, window=(stamps[split], stamps[-1]), periods_per_year=ppy).to_dict()
    assert whole["trade_count"] > 20
    assert head["trade_count"] + tail["trade_count"] == whole["trade_count"]
    assert head["position_count"] + tail["position_count"] == whole["position_count"]
    assert head["fees_paid"] + tail["fees_paid"] == pytest.approx(whole["fees_paid"], rel=1e-12)
    assert (1 + head["total_return"]) * (1 + tail["total_return"]) - 1 == pytest.approx(whole["total_return"])
    assert tail["initial_cash"] == pytest.approx(head["final_equity"])
    assert tail["open_positions"] == whole["open_positions"]
    assert max(head["max_drawdown"], tail["max_drawdown"]) <= whole["max_drawdown"] + 1e-12


def test_summarise_windows_equals_one_summary_per_window(backtest: tuple[State, dict]) -> None:
    state, prices = backtest
    stamps = state.valuations.timestamp
    windows = [(stamps[0], stamps[300]), (stamps[301], stamps[-1]), (stamps[100], stamps[500])]
    whole, parts = summarise_windows(state, windows, benchmark_prices=prices)
    assert whole.to_dict() == compute_summary(state, benchmark_prices=prices).to_dict()
    for window, part in zip(windows, parts, strict=True):
        alone = compute_summary(state, benchmark_prices=prices, window=window, periods_per_year=whole.periods_per_year)
        assert part.to_dict() == alone.to_dict()

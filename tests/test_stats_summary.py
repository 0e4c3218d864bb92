"""Tests for tradeexecutor.stats: hand-computed statistics, undefined values, and the trades table."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from state_builders import make_order
from tradeexecutor.state import Position, State
from tradeexecutor.stats import (
    TRADE_COLUMNS,
    Summary,
    compute_summary,
    summary_table,
    trades_frame,
    write_trades_csv,
)
from tradeexecutor.stats.running import RunningSummary

DAY_MS = 86_400_000
YEAR_MS = int(365.25 * DAY_MS)  # 31,557,600,000 ms, exact
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def state_with_equity(equity: Sequence[float], step_ms: int = DAY_MS, exposure: list[float] | None = None,
                      initial_cash: float | None = None) -> State:
    """A state whose valuation rows are ``equity`` at ``step_ms`` intervals from T0."""
    state = State(name="test", initial_cash=equity[0] if initial_cash is None else initial_cash)
    n = len(equity)
    state.valuations.extend(
        [T0_MS + i * step_ms for i in range(n)],
        list(equity),
        list(equity),
        exposure if exposure is not None else [1.0] * n,
    )
    return state


def closed_position(position_id: int, pnl: float, instrument_id: int = 1) -> Position:
    """A closed position with the given realised P&L and no trades."""
    return Position(
        id=position_id,
        instrument_id=instrument_id,
        opened_at=T0,
        realised_pnl=pnl,
        closed_at=T0 + timedelta(days=1),
    )


# ---------------------------------------------------------------------------------------------
# Return statistics


def test_hand_computed_yearly_equity() -> None:
    # Equity 100, 110, 99, 121 at yearly (365.25-day) intervals, initial cash 100.
    state = state_with_equity([100, 110, 99, 121], step_ms=YEAR_MS, exposure=[0, 1, 1, 0])
    s = compute_summary(state)

    assert s.start == "2024-01-01T00:00:00+00:00"
    assert s.initial_cash == 100
    assert s.final_equity == 121
    # total return = 121 / 100 - 1 = 0.21
    assert s.total_return == pytest.approx(0.21)
    # span 3 years: CAGR = 1.21 ** (1/3) - 1 = 0.065602...
    assert s.cagr == pytest.approx(1.21 ** (1 / 3) - 1)
    assert s.cagr == pytest.approx(0.0656022, abs=1e-6)
    # 3 return periods over 3 years -> 1 period per year
    assert s.periods_per_year == pytest.approx(1.0)
    # returns r = 1/10, -1/10, 2/9; mean = (2/9)/3 = 2/27 = 0.0740741
    # deviations: 0.1 - 2/27 = 0.0259259, -0.1 - 2/27 = -0.1740741, 2/9 - 2/27 = 4/27 = 0.1481481
    # sum of squares = 0.00067215 + 0.03030178 + 0.02194787 = 0.0529218; / (3 - 1) = 0.0264609
    # std = sqrt(0.0264609) = 0.1626681; sharpe = 0.0740741 / 0.1626681 * sqrt(1) = 0.4553694
    assert s.annualised_volatility == pytest.approx(0.1626681, abs=1e-6)
    assert s.sharpe == pytest.approx(0.4553694, abs=1e-6)
    # downside deviation = sqrt((0 + 0.01 + 0) / 3) = 0.0577350; sortino = 0.0740741 / 0.0577350 = 1.2830006
    assert s.sortino == pytest.approx(1.2830006, abs=1e-6)
    # running peak 100, 110, 110, 121: deepest fall (110 - 99) / 110 = 0.1
    assert s.max_drawdown == pytest.approx(0.1)
    # peak at year 1 regained at year 3: 2 years = 730.5 days
    assert s.max_drawdown_duration == pytest.approx(730.5)
    # exposure > 0 in 2 of 4 rows
    assert s.exposure_time == pytest.approx(0.5)


def test_daily_rows_infer_365_periods_and_annualise() -> None:
    # Daily rows every calendar day: 10 returns over 10 days = 10 / (10 / 365.25) = 365.25 per year.
    equity = [100, 101, 100, 102, 101, 103, 104, 102, 105, 106, 107]
    s = compute_summary(state_with_equity(equity))
    assert s.periods_per_year == pytest.approx(365.25)
    r = np.diff(equity) / np.array(equity[:-1])
    assert s.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365.25))
    assert s.annualised_volatility == pytest.approx(r.std(ddof=1) * math.sqrt(365.25))


def test_weekday_rows_infer_about_261_periods() -> None:
    # Business days without holidays: 261 per year; with exchange holidays the same rule gives ~252.
    days = pd.bdate_range("2020-01-01", "2023-12-29", tz="UTC")
    state = State(initial_cash=100.0)
    ms = list(days.as_unit("ms").asi8)
    state.valuations.extend(ms, [100.0 + i % 3 for i in range(len(ms))], [0.0] * len(ms), [0.0] * len(ms))
    s = compute_summary(state)
    assert s.periods_per_year is not None and 258 < s.periods_per_year < 264


def test_periods_per_year_and_risk_free_rate_given() -> None:
    # Same equity as the hand case, but with ppy=4 and a 5 % annual risk-free rate.
    state = state_with_equity([100, 110, 99, 121], step_ms=YEAR_MS)
    s = compute_summary(state, periods_per_year=4, risk_free_rate=0.05)
    rf = 1.05 ** (1 / 4) - 1  # 0.0122722 per period
    # sharpe = (2/27 - rf) / 0.1626681 * sqrt(4)
    assert s.sharpe == pytest.approx((2 / 27 - rf) / 0.1626681 * 2, abs=1e-6)
    assert s.annualised_volatility == pytest.approx(0.1626681 * 2, abs=1e-6)
    assert s.periods_per_year == 4


def test_drawdown_duration_until_end_when_not_recovered() -> None:
    # 100 -> 90 -> 95 daily: peak at day 0 never regained; duration = day 2 - day 0 = 2 days.
    s = compute_summary(state_with_equity([100, 90, 95]))
    assert s.max_drawdown == pytest.approx(0.1)
    assert s.max_drawdown_duration == pytest.approx(2.0)


def test_drawdown_duration_longest_of_several_episodes() -> None:
    # Day:    0    1    2    3    4    5    6    7
    # Equity: 100  95   100  120  110  100  105  121
    # Episode 1: day 0 -> day 2 (100 regained) = 2 days; depth 5/100 = 0.05
    # Episode 2: day 3 -> day 7 (121 >= 120) = 4 days; depth (120 - 100)/120 = 0.1667
    s = compute_summary(state_with_equity([100, 95, 100, 120, 110, 100, 105, 121]))
    assert s.max_drawdown == pytest.approx(20 / 120)
    assert s.max_drawdown_duration == pytest.approx(4.0)


def test_rising_equity_has_no_drawdown() -> None:
    s = compute_summary(state_with_equity([100, 101, 102, 103]))
    assert s.max_drawdown == 0.0
    assert s.max_drawdown_duration == 0.0
    # no negative return: downside deviation 0 -> sortino undefined
    assert s.sortino is None


def test_total_return_uses_initial_cash_when_set() -> None:
    # First row already paid a fee: equity 99 at t0, initial cash 100; 110 / 100 - 1 = 0.10.
    s = compute_summary(state_with_equity([99, 110], initial_cash=100))
    assert s.total_return == pytest.approx(0.10)
    # without initial cash, the first row is the base: 110 / 99 - 1
    s = compute_summary(state_with_equity([99, 110], initial_cash=0))
    assert s.total_return == pytest.approx(110 / 99 - 1)


# ---------------------------------------------------------------------------------------------
# Undefined values


def test_empty_state_is_all_none_and_json_safe() -> None:
    state = State(initial_cash=1000.0)
    state.portfolio.cash = 1000.0
    s = compute_summary(state)
    assert s.start is None and s.end is None
    assert s.final_equity == 1000.0  # the portfolio's current equity
    assert s.total_return == 0.0
    for name in ("cagr", "annualised_volatility", "sharpe", "sortino", "max_drawdown",
                 "max_drawdown_duration", "win_rate", "profit_factor", "average_win", "average_loss",
                 "exposure_time", "buy_and_hold_return", "periods_per_year"):
        assert getattr(s, name) is None, name
    json.dumps(s.to_dict(), allow_nan=False)


def test_single_row() -> None:
    s = compute_summary(state_with_equity([100.0]))
    assert s.start == s.end
    assert s.total_return == 0.0
    assert s.cagr is None  # zero span
    assert s.periods_per_year is None
    assert s.sharpe is None and s.sortino is None and s.annualised_volatility is None
    assert s.max_drawdown == 0.0
    assert s.max_drawdown_duration == 0.0
    json.dumps(s.to_dict(), allow_nan=False)


def test_flat_equity_has_zero_volatility_and_no_sharpe() -> None:
    s = compute_summary(state_with_equity([100, 100, 100]))
    assert s.annualised_volatility == 0.0
    assert s.sharpe is None
    assert s.sortino is None


def test_zero_equity_does_not_produce_nan() -> None:
    # 100 -> 0 -> 0: the return from 0 is dropped; the only return is -1.
    s = compute_summary(state_with_equity([100, 0, 0]))
    assert s.total_return == -1.0
    assert s.max_drawdown == 1.0
    assert s.cagr == -1.0
    json.dumps(s.to_dict(), allow_nan=False)


def test_to_dict_replaces_non_finite_floats() -> None:
    s = compute_summary(state_with_equity([100, 110]))
    fields = dict(s.to_dict())
    fields["sharpe"] = float("inf")
    fields["sortino"] = float("nan")
    broken = Summary(**fields)
    d = broken.to_dict()
    assert d["sharpe"] is None and d["sortino"] is None


# ---------------------------------------------------------------------------------------------
# Win / loss statistics


def test_win_rate_profit_factor_and_averages() -> None:
    state = state_with_equity([100, 100])
    # closed P&L: +30, -10, +20, -5, 0 (breakeven counts in the denominator only)
    state.portfolio.closed_positions = [
        closed_position(i + 1, pnl) for i, pnl in enumerate([30.0, -10.0, 20.0, -5.0, 0.0])
    ]
    # open and failed positions never count
    state.portfolio.open_positions = [Position(id=9, instrument_id=1, opened_at=T0, realised_pnl=500.0)]
    s = compute_summary(state)
    assert s.position_count == 5
    assert s.open_positions == 1
    # wins 2 of 5 = 0.4
    assert s.win_rate == pytest.approx(0.4)
    # (30 + 20) / |-10 - 5| = 50 / 15 = 3.3333
    assert s.profit_factor == pytest.approx(50 / 15)
    # (30 + 20) / 2 = 25; (-10 - 5) / 2 = -7.5
    assert s.average_win == pytest.approx(25.0)
    assert s.average_loss == pytest.approx(-7.5)


def test_no_losing_positions_gives_no_profit_factor() -> None:
    state = state_with_equity([100, 110])
    state.portfolio.closed_positions = [closed_position(1, 10.0), closed_position(2, 5.0)]
    s = compute_summary(state)
    assert s.win_rate == 1.0
    assert s.profit_factor is None  # would be +inf; documented as None
    assert s.average_loss is None
    assert s.average_win == pytest.approx(7.5)


# ---------------------------------------------------------------------------------------------
# Buy and hold


def test_buy_and_hold_is_equal_weighted_over_the_span() -> None:
    state = state_with_equity([100, 101, 102, 103])  # days 0..3
    index = pd.date_range(T0 - timedelta(days=1), periods=6, freq="D", tz="UTC")  # days -1..4
    prices = {
        # inside the span: 10 -> 15 = +0.5 (the 5 before and the 100 after are ignored)
        "AAA": pd.Series([5.0, 10.0, 11.0, 12.0, 15.0, 100.0], index=index),
        # 20 -> 18 = -0.1; a missing close inside the span is skipped
        "BBB": pd.Series([1.0, 20.0, np.nan, 19.0, 18.0, 1.0], index=index),
        # no close inside the span: left out
        "CCC": pd.Series([7.0], index=[T0 + timedelta(days=30)]),
    }
    s = compute_summary(state, benchmark_prices=prices)
    # (0.5 + -0.1) / 2 = 0.2
    assert s.buy_and_hold_return == pytest.approx(0.2)


def test_buy_and_hold_accepts_naive_index_as_utc() -> None:
    state = state_with_equity([100, 101])
    index = pd.date_range("2024-01-01", periods=2, freq="D")  # naive
    s = compute_summary(state, benchmark_prices={"X": pd.Series([50.0, 55.0], index=index)})
    assert s.buy_and_hold_return == pytest.approx(0.1)


def test_buy_and_hold_none_without_prices() -> None:
    s = compute_summary(state_with_equity([100, 101]))
    assert s.buy_and_hold_return is None


# ---------------------------------------------------------------------------------------------
# Terminal table


def test_summary_table_is_aligned_and_formatted() -> None:
    text = summary_table(compute_summary(state_with_equity([100, 110, 99, 121], step_ms=YEAR_MS)))
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # right-aligned values: equal widths
    table = {line[:22].strip(): line[22:].strip() for line in lines}
    assert table["Total return"] == "21.00 %"
    assert table["Max drawdown"] == "10.00 %"
    assert table["Max drawdown duration"] == "730.5 days"
    assert table["Profit factor"] == "n/a"
    assert table["Final equity"] == "121.00"


# ---------------------------------------------------------------------------------------------
# Trades table and CSV


def trading_state() -> State:
    """GOOG: an executed open and a stop-loss close; MSFT: a rejected open; one planned trade."""
    state = State(name="trades", initial_cash=10_000.0)
    goog = state.add_instrument("GOOG", "equity", 1.0)
    msft = state.add_instrument("MSFT", "equity", 1.0)
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=5)
    closed = Position(id=1, instrument_id=goog.id, opened_at=T0, realised_pnl=-31.0, fees_paid=2.0,
                      closed_at=t2)
    closed.orders = [
        make_order(1, 1, goog.id, "open", T0, quantity=10, reference_price=100.0, fill_at=t1, fill_price=100.5,
                   fee=1.0, slippage=5.0, note="breakout"),
        make_order(3, 1, goog.id, "close", t2, quantity=10, reference_price=97.5, fill_price=97.5, fee=1.0,
                   realised_pnl=-31.0, trigger="stop_loss", trigger_price=97.5, fill_id=2),
    ]
    failed = Position(id=2, instrument_id=msft.id, opened_at=t1)
    failed.orders = [
        make_order(2, 2, msft.id, "open", t1, status="rejected", value=50.0, reference_price=400.0,
                   reason="rounds to zero"),
    ]
    planned = Position(id=3, instrument_id=msft.id, opened_at=t2)
    planned.orders = [
        make_order(4, 3, msft.id, "open", t2, status="created", quantity=2, reference_price=410.0),
    ]
    state.portfolio.closed_positions = [closed]
    state.portfolio.failed_positions = [failed]
    state.portfolio.open_positions = [planned]
    state.portfolio.fees_paid = 2.0
    state.valuations.extend([T0_MS, T0_MS + 5 * DAY_MS], [10_000.0, 9_969.0], [10_000.0, 9_969.0], [0.0, 0.0])
    return state


def test_trade_counts_in_summary() -> None:
    s = compute_summary(trading_state())
    assert s.trade_count == 2
    assert s.rejected_trade_count == 1
    assert s.position_count == 1
    assert s.fees_paid == 2.0
    assert s.win_rate == 0.0
    assert s.average_loss == -31.0


def test_trades_frame_columns_and_rows() -> None:
    frame = trades_frame(trading_state())
    assert tuple(frame.columns) == TRADE_COLUMNS
    assert list(frame["trade_id"]) == [1, 2, 3, 4]  # sorted by id across positions
    assert list(frame["symbol"]) == ["GOOG", "MSFT", "GOOG", "MSFT"]
    assert list(frame["status"]) == ["filled", "rejected", "filled", "created"]
    assert list(frame["side"]) == ["buy", "buy", "sell", "buy"]
    # executed: |qty| * fill price; rejected: planned_value; planned: |qty| * planned price
    assert list(frame["value"]) == pytest.approx([10 * 100.5, 50.0, 10 * 97.5, 2 * 410.0])
    assert frame.loc[2, "trigger"] == "stop_loss"
    assert frame.loc[2, "realised_pnl"] == -31.0
    assert frame.loc[1, "reject_reason"] == "rounds to zero"
    assert pd.isna(frame.loc[1, "executed_at"])
    assert frame.loc[0, "executed_at"] == pd.Timestamp("2024-01-02", tz="UTC")


def test_empty_trades_frame_has_the_columns() -> None:
    frame = trades_frame(State())
    assert tuple(frame.columns) == TRADE_COLUMNS
    assert len(frame) == 0


def test_write_trades_csv(tmp_path: Path) -> None:
    path = write_trades_csv(trading_state(), tmp_path / "out" / "trades.csv")
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0].keys()) == TRADE_COLUMNS
    assert [r["trade_id"] for r in rows] == ["1", "2", "3", "4"]
    first, rejected = rows[0], rows[1]
    assert first["planned_at"] == "2024-01-01T00:00:00+00:00"
    assert first["executed_at"] == "2024-01-02T00:00:00+00:00"
    assert float(first["executed_price"]) == 100.5
    assert first["note"] == "breakout"
    assert rejected["executed_at"] == ""
    assert rejected["executed_price"] == ""
    assert rejected["reject_reason"] == "rounds to zero"
    assert list(tmp_path.joinpath("out").iterdir()) == [path]  # no temp file left behind


# ---------------------------------------------------------------------------------------------
# Speed and layering


def test_a_million_rows_summarise_exactly() -> None:
    """A million hourly valuations give the figures numpy computes directly. (How fast: bench/bench_summary.py;
    a timed assertion failed whenever other work kept the cores busy.)"""
    n = 1_000_000
    rng = np.random.default_rng(1)
    curve = 1e6 * np.cumprod(1 + rng.normal(0, 0.001, n))
    equity = curve.tolist()
    state = State(initial_cash=1e6)
    state.valuations.extend((T0_MS + np.arange(n) * 3_600_000).tolist(), equity, equity, [1.0] * n)
    s = compute_summary(state)
    assert s.periods_per_year == pytest.approx(8766, rel=1e-3)  # hourly, every day
    assert s.total_return == pytest.approx(curve[-1] / 1e6 - 1, rel=1e-12)
    assert s.max_drawdown == pytest.approx(float(np.max(1 - curve / np.maximum.accumulate(curve))), rel=1e-9)


def test_stats_does_not_import_matplotlib() -> None:
    code = "import sys, tradeexecutor.stats; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_gain_too_large_for_a_float_power_has_no_cagr_instead_of_a_crash() -> None:
    # 100 -> 1e300 within one hour: (1e298) ** 8766 overflows; Python raises OverflowError for float powers.
    state = state_with_equity([100.0, 1e300], step_ms=3_600_000)
    summary = compute_summary(state)
    assert summary.cagr is None
    assert summary.total_return == pytest.approx(1e298)
    running = RunningSummary().summary(state)
    assert running.cagr is None and running.total_return == summary.total_return
    json.dumps(summary.to_dict(), allow_nan=False)

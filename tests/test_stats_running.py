"""RunningSummary gives compute_summary's figures while the state grows, folding in only what changed."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state_builders import make_order
from tradeexecutor.state import Position, State
from tradeexecutor.stats import compute_summary
from tradeexecutor.stats.running import RunningSummary

DAY_MS = 86_400_000
T0 = datetime(2024, 1, 1, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float) and got[key] is not None:
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert got[key] == value, key


def closed(position_id: int, pnl: float, status: str = "filled") -> Position:
    """A position whose one order ended ``status`` (filled: with one fill)."""
    position = Position(id=position_id, instrument_id=1, opened_at=T0, realised_pnl=pnl,
                        closed_at=T0 + timedelta(days=1))
    position.orders.append(make_order(position_id, position_id, 1, "open", T0, status=status, quantity=1.0,
                                      fill_price=100.0 if status == "filled" else None,
                                      reason="not enough cash" if status == "rejected" else None))
    return position


rows = st.lists(
    st.tuples(st.one_of(st.just(0.0), st.floats(min_value=500.0, max_value=2_000.0)),  # equity, zero included
              st.floats(min_value=0.0, max_value=1.0),  # exposure
              st.booleans(),  # revalue the row again (a decision at the close replaces it)
              st.booleans(),  # a fresh RunningSummary here: what a restart does (numpy block fold)
              st.sampled_from([None, -5.0, 0.0, 7.5])),  # a position closes with this P&L
    min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(rows=rows, initial_cash=st.sampled_from([0.0, 1_000.0]), block_rows=st.sampled_from([1, 3, 64]))
def test_row_by_row_it_equals_compute_summary(rows: list, initial_cash: float, block_rows: int) -> None:
    state = State(name="t", initial_cash=initial_cash)
    running = RunningSummary(block_rows=block_rows)
    closes = np.cumsum(np.ones(len(rows) + 5)) + 100.0
    close_ns = (T0_MS + DAY_MS * np.arange(len(closes), dtype=np.int64)) * 1_000_000
    for index, (equity, exposure, revalue, restart, pnl) in enumerate(rows):
        ms = T0_MS + index * DAY_MS
        state.valuations.append(ms, equity, equity, exposure)
        if revalue:
            state.valuations.append(ms, equity * 1.01, equity, exposure)
        if pnl is not None:
            position = closed(len(state.portfolio.closed_positions) + 1, pnl, "rejected" if pnl == 0 else "filled")
            state.portfolio.closed_positions.append(position)
        if restart:
            running = RunningSummary(block_rows=block_rows)
        prices = {"X": pd.Series(closes[: index + 1], index=pd.to_datetime(close_ns[: index + 1], utc=True))}
        want = compute_summary(state, benchmark_prices=prices).to_dict()
        got = running.summary(state, {"X": (close_ns, closes, index)}).to_dict()
        same(got, want)


def test_without_rows_it_reports_the_portfolio() -> None:
    state = State(name="t", initial_cash=500.0)
    state.portfolio.cash = 500.0
    same(RunningSummary().summary(state).to_dict(), compute_summary(state).to_dict())


def test_another_state_starts_the_totals_over() -> None:
    running = RunningSummary()
    first = State(name="a", initial_cash=100.0)
    for day, equity in enumerate([100.0, 50.0, 120.0, 90.0]):
        first.valuations.append(T0_MS + day * DAY_MS, equity, equity, 1.0)
    running.summary(first)
    second = State(name="b", initial_cash=100.0)
    for day, equity in enumerate([100.0, 101.0]):
        second.valuations.append(T0_MS + day * DAY_MS, equity, equity, 0.0)
    same(running.summary(second).to_dict(), compute_summary(second).to_dict())
    assert not math.isnan(running.summary(second).to_dict()["total_return"])

"""The risk limits' arithmetic (engine/risk.py) against plain recomputations over the whole history.

Each property feeds :class:`RiskLimits` one valuation at a time, as the loop does, and compares
what it says with a reference that rescans everything seen so far: the running figures must give
the same drawdown, daily loss, streak and first hit as the rescan, including days that cross
UTC midnight at any hour and gaps of several days.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeexecutor.config import RiskConfig
from tradeexecutor.engine.risk import RiskLimits, daily_loss, drawdown, position_value_refusal, utc_day
from tradeexecutor.errors import ConfigError
from tradeexecutor.state import Position, RiskState

DAY_MS = 86_400_000
T0_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)

equities = st.lists(st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False),
                    min_size=1, max_size=60)
fractions = st.floats(min_value=0.001, max_value=0.9)


def closed(pnl: float) -> Position:
    position = Position(id=1, instrument_id=1, opened_at=datetime(2024, 1, 1, tzinfo=UTC))
    position.realised_pnl = pnl
    return position


def test_drawdown_and_daily_loss_are_fractions_of_the_reference_and_zero_for_gains() -> None:
    assert drawdown(10_000, 8_000) == pytest.approx(0.2)
    assert drawdown(10_000, 12_000) == 0.0 and drawdown(0.0, 5.0) == 0.0
    assert daily_loss(2_000, 1_900) == pytest.approx(0.05)
    assert daily_loss(2_000, 2_100) == 0.0 and daily_loss(0.0, 1.0) == 0.0
    assert utc_day(T0_MS - 1) == "2023-12-31" and utc_day(T0_MS) == "2024-01-01"


@settings(max_examples=200, deadline=None)
@given(equities, fractions)
def test_drawdown_from_the_running_peak_equals_a_rescan(values: list[float], limit: float) -> None:
    limits, risk = RiskLimits(RiskConfig(max_drawdown=limit)), RiskState()
    hit_at: int | None = None
    for index, equity in enumerate(values):
        hit = limits.observe(risk, T0_MS + index * 60_000, equity, [])
        peak = max(values[:index + 1])
        assert risk.peak_equity == peak
        expected = (peak - equity) / peak
        if hit is not None:
            assert hit_at is None, "a second hit while paused"
            hit_at = index
            assert hit.limit == "max_drawdown" and hit.value == pytest.approx(expected) and hit.threshold == limit
    first = next((i for i, e in enumerate(values) if (max(values[:i + 1]) - e) / max(values[:i + 1]) >= limit), None)
    assert hit_at == first
    assert risk.paused is (first is not None)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=3 * DAY_MS // 3_600_000),
                          st.floats(min_value=1.0, max_value=1e6, allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=60),
       st.integers(min_value=0, max_value=DAY_MS - 1), fractions)
def test_daily_loss_starts_each_utc_day_from_the_last_equity_before_it(
        steps: list[tuple[int, float]], offset_ms: int, limit: float) -> None:
    """Valuations an hour to three days apart from any time of day: days change at UTC midnight, and a day
    starts from the previous valuation's equity whatever its gap (the first day from its first valuation)."""
    limits, risk = RiskLimits(RiskConfig(max_daily_loss=limit)), RiskState()
    times: list[int] = []
    values: list[float] = []
    now = T0_MS + offset_ms
    hits: list[int] = []
    for hours, equity in steps:
        now += hours * 3_600_000
        times.append(now)
        values.append(equity)
        if limits.observe(risk, now, equity, []) is not None:
            hits.append(len(values) - 1)
        assert risk.day == datetime.fromtimestamp(now / 1000, UTC).date().isoformat()
        assert risk.day_start_equity == risk_start(times, values, len(values) - 1)
    losses = [daily_loss(risk_start(times, values, i), values[i]) for i in range(len(values))]
    first = next((i for i, loss in enumerate(losses) if loss >= limit), None)
    assert hits == ([] if first is None else [first])


def risk_start(times: list[int], values: list[float], index: int) -> float:
    """The reference day start of valuation ``index``: the equity before the first valuation of its day."""
    day = times[index] // DAY_MS
    first = next(i for i, t in enumerate(times) if t // DAY_MS == day)
    return values[first - 1] if first > 0 else values[0]


def test_a_loss_on_the_first_bar_after_midnight_counts_against_the_close_before_it() -> None:
    limits, risk = RiskLimits(RiskConfig(max_daily_loss=0.05)), RiskState()
    assert limits.observe(risk, T0_MS - 3_600_000, 10_000, []) is None  # 23:00 the day before
    assert limits.observe(risk, T0_MS - 60_000, 10_500, []) is None  # 23:59: the day's close
    hit = limits.observe(risk, T0_MS + 60_000, 9_900, [])  # 00:01: -5.7 % against 10,500
    assert hit is not None and hit.limit == "max_daily_loss" and hit.value == pytest.approx(600 / 10_500)
    assert risk.day == "2024-01-01" and risk.day_start_equity == 10_500
    assert hit.at == "2024-01-01T00:01:00+00:00"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(min_value=-100, max_value=100, allow_nan=False), max_size=4), max_size=30),
       st.integers(min_value=1, max_value=6))
def test_the_losing_streak_counts_negative_pnl_in_a_row_from_the_new_closes_only(
        batches: list[list[float]], limit: int) -> None:
    limits, risk = RiskLimits(RiskConfig(max_losing_streak=limit)), RiskState()
    history: list[Any] = []
    pnls: list[float] = []
    hit_after: int | None = None
    for index, batch in enumerate(batches):
        for pnl in batch:
            history.append(closed(pnl))
            pnls.append(pnl)
        streak = 0
        for pnl in pnls:
            streak = streak + 1 if pnl < 0 else 0
        if limits.observe(risk, T0_MS + index * 1000, 1_000.0, history) is not None:
            assert hit_after is None
            hit_after = len(pnls)
        assert risk.losing_streak == streak and risk.closed_counted == len(history)
        history[:] = [object()] * len(history)  # already counted: reading one again would fail
    streaks, run = [], 0
    for pnl in pnls:
        run = run + 1 if pnl < 0 else 0
        streaks.append(run)
    ends = [sum(len(batch) for batch in batches[:i + 1]) for i in range(len(batches))]
    first = next((end for end in ends if end and streaks[end - 1] >= limit), None)
    assert hit_after == first


def test_a_hit_is_recorded_once_the_figures_keep_running_and_a_lift_rebases_them() -> None:
    limits, risk = RiskLimits(RiskConfig(max_drawdown=0.1, max_losing_streak=2)), RiskState()
    limits.observe(risk, T0_MS, 10_000, [])
    hit = limits.observe(risk, T0_MS + 1000, 8_900, [])
    assert hit is not None and (risk.limit, risk.threshold) == ("max_drawdown", 0.1)
    assert risk.reason is not None and "max_drawdown" in risk.reason and "11.00 % (limit 10.00 %)" in risk.reason
    assert "POST /control/resume" in risk.reason
    losses = [closed(-1.0), closed(-2.0)]
    assert limits.observe(risk, T0_MS + 2000, 8_000, losses) is None  # paused: the streak of 2 is not a new hit
    assert risk.losing_streak == 2 and risk.peak_equity == 10_000 and risk.limit == "max_drawdown"
    assert RiskLimits.lift(risk, 8_000) == "max_drawdown"
    assert not risk.paused and risk.reason is None
    assert (risk.peak_equity, risk.day_start_equity, risk.losing_streak) == (8_000, 8_000, 0)
    assert limits.observe(risk, T0_MS + 3000, 7_900, losses) is None  # 1.25 % below the new peak
    assert RiskLimits.lift(risk, 7_900) is None  # nothing to lift


def test_limits_at_zero_are_off_and_bounds_are_checked_once() -> None:
    limits, risk = RiskLimits(RiskConfig()), RiskState()
    for index, equity in enumerate((10_000, 1.0, 0.5)):
        assert limits.observe(risk, T0_MS + index * DAY_MS, equity, [closed(-1)] * (index + 1)) is None
    assert risk.losing_streak == 3 and not risk.paused
    with pytest.raises(ConfigError, match=r"--max-drawdown 1.5 must be between 0 and 1 \(0 disables\)"):
        RiskConfig(max_drawdown=1.5)
    with pytest.raises(ConfigError, match=r"--max-position-value -1\.0 must not be negative"):
        RiskConfig(max_position_value=-1.0)
    with pytest.raises(ConfigError, match="--max-daily-loss nan is not a finite number"):
        RiskConfig(max_daily_loss=float("nan"))


@given(st.floats(min_value=0, max_value=1e6), st.floats(min_value=0, max_value=1e6),
       st.floats(min_value=0, max_value=1e6))
def test_a_position_may_grow_up_to_its_limit_and_not_past_it(held: float, adding: float, limit: float) -> None:
    refusal = position_value_refusal(held, adding, limit)
    assert (refusal is not None) == (limit > 0 and held + adding > limit)
    if refusal is not None:
        assert refusal.startswith("max_position_value: the position would be worth ")
        assert f"above the limit of {limit:,.2f}" in refusal

"""When cycles fire: tradeexecutor.engine.schedule.cycle_times over bar close times, and
tradeexecutor.timeframe.next_boundary / floor_boundary with offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeexecutor.engine.schedule import CycleSchedule, cycle_times
from tradeexecutor.timeframe import floor_boundary, next_boundary


def closes(open_times: pd.DatetimeIndex, freq: str) -> np.ndarray:
    """The timeline of a single instrument: bar open times plus the bar length, in ns."""
    return (open_times.as_unit("ns") + pd.Timedelta(freq)).asi8


def fired(timeline: np.ndarray, due: np.ndarray) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """(step close time, cycle time) of every step that runs a cycle."""
    return [(pd.Timestamp(int(t), tz="UTC"), pd.Timestamp(int(c), tz="UTC")) for t, c in zip(timeline, due) if c]


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# ---------------------------------------------------------------------------------------------
# cycle_times


def test_daily_bars_daily_cycle_fire_every_bar() -> None:
    timeline = closes(pd.date_range("2024-01-01", periods=10, freq="D", tz="UTC"), "1D")
    due = cycle_times(timeline, timedelta(days=1))
    # Every bar closes on a day boundary, and the cycle time is that close.
    np.testing.assert_array_equal(due, timeline)
    assert due.dtype == np.int64


def test_hourly_bars_4h_cycle_fire_every_4th_bar_at_the_boundary() -> None:
    # Bars open 00:00..23:00 → close 01:00..24:00.
    timeline = closes(pd.date_range("2024-01-01", periods=24, freq="h", tz="UTC"), "1h")
    due = cycle_times(timeline, timedelta(hours=4))
    runs = fired(timeline, due)
    assert [c for _, c in runs] == [ts("2024-01-01") + pd.Timedelta(hours=h) for h in (4, 8, 12, 16, 20, 24)]
    assert all(step == cycle for step, cycle in runs)
    assert np.flatnonzero(due).tolist() == [3, 7, 11, 15, 19, 23]


def test_one_hour_cycle_with_8_minute_offset_on_minute_bars() -> None:
    # Minute bars 00:00..02:59 → close 00:01..03:00.
    timeline = closes(pd.date_range("2024-01-01", periods=180, freq="min", tz="UTC"), "1min")
    due = cycle_times(timeline, timedelta(hours=1), timedelta(minutes=8))
    runs = fired(timeline, due)
    # 00:08, 01:08, 02:08; the 03:08 cycle is after the data ends and does not run.
    assert [c for _, c in runs] == [ts("2024-01-01 00:08"), ts("2024-01-01 01:08"), ts("2024-01-01 02:08")]
    # Each runs right after the minute bar 07-08 closes, seeing the bars closed by HH:08.
    assert all(step == cycle for step, cycle in runs)
    assert all(cycle.minute == 8 for _, cycle in runs)


def test_offset_between_bar_closes_runs_after_the_last_closed_bar() -> None:
    # Hourly bars with a 30 minute offset: the 10:30 cycle runs after the bar closing at 10:00.
    timeline = closes(pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC"), "1h")
    due = cycle_times(timeline, timedelta(hours=1), timedelta(minutes=30))
    runs = fired(timeline, due)
    # The last step closes 06:00; its boundary 06:30 is after the data: not run.
    assert runs == [(ts(f"2024-01-01 0{h}:00"), ts(f"2024-01-01 0{h}:30")) for h in range(1, 6)]


def test_weekends_are_skipped() -> None:
    # Weekday daily bars for two weeks (Mon 2024-01-01 .. Fri 2024-01-12).
    days = pd.bdate_range("2024-01-01", "2024-01-12", tz="UTC")
    timeline = closes(days, "1D")
    due = cycle_times(timeline, timedelta(days=1))
    cycles = [c for _, c in fired(timeline, due)]
    assert len(cycles) == 10
    # Friday's bar closes at Saturday 00:00 and runs; Sunday and Monday 00:00 have no new bar.
    assert ts("2024-01-06") in cycles
    assert ts("2024-01-07") not in cycles
    assert ts("2024-01-08") not in cycles
    assert cycles == sorted(cycles)


def test_gap_in_hourly_bars_skips_empty_cycles_and_keeps_the_boundary_time() -> None:
    hours = [0, 1, 2, 3, 4, 5, 13, 14, 15, 16, 17, 18, 19]  # nothing from 06:00 to 13:00
    opens = pd.DatetimeIndex([ts("2024-01-01") + pd.Timedelta(hours=h) for h in hours])
    timeline = closes(opens, "1h")
    due = cycle_times(timeline, timedelta(hours=4))
    runs = fired(timeline, due)
    assert runs == [
        (ts("2024-01-01 04:00"), ts("2024-01-01 04:00")),
        # The 08:00 boundary runs after the last bar before the gap (closing 06:00); it sees
        # exactly the bars closed by 08:00. The 12:00 boundary has no new bar: skipped.
        (ts("2024-01-01 06:00"), ts("2024-01-01 08:00")),
        (ts("2024-01-01 16:00"), ts("2024-01-01 16:00")),
        (ts("2024-01-01 20:00"), ts("2024-01-01 20:00")),
    ]


def test_final_partial_cycle_does_not_run() -> None:
    # Bars open 00:00..09:00 → close 01:00..10:00; the 12:00 cycle would need bars not yet there.
    timeline = closes(pd.date_range("2024-01-01", periods=10, freq="h", tz="UTC"), "1h")
    due = cycle_times(timeline, timedelta(hours=4))
    assert [c for _, c in fired(timeline, due)] == [ts("2024-01-01 04:00"), ts("2024-01-01 08:00")]
    assert due[-1] == 0 and due[-2] == 0


def test_cycle_longer_than_the_data_never_runs() -> None:
    timeline = closes(pd.date_range("2024-01-01 01:00", periods=5, freq="h", tz="UTC"), "1h")
    assert not cycle_times(timeline, timedelta(days=1)).any()


def test_empty_timeline() -> None:
    due = cycle_times(np.array([], dtype=np.int64), timedelta(hours=1))
    assert due.shape == (0,)


def test_weekly_cycle_on_daily_bars() -> None:
    # 7d boundaries count from the epoch, a Thursday: they fall on Thursdays 00:00.
    timeline = closes(pd.date_range("2024-01-01", periods=21, freq="D", tz="UTC"), "1D")
    cycles = [c for _, c in fired(timeline, cycle_times(timeline, timedelta(days=7)))]
    assert cycles == [ts("2024-01-04"), ts("2024-01-11"), ts("2024-01-18")]
    assert all(c.day_name() == "Thursday" for c in cycles)


@settings(max_examples=200, deadline=None)
@given(
    hours=st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=80, unique=True),
    period_h=st.sampled_from([1, 2, 3, 4, 6, 8, 12, 24]),
    offset_min=st.integers(min_value=0, max_value=59),
)
def test_cycle_times_properties(hours: list[int], period_h: int, offset_min: int) -> None:
    opens = pd.DatetimeIndex(sorted(ts("2024-01-01") + pd.Timedelta(hours=h) for h in hours))
    timeline = closes(opens, "1h")
    period = timedelta(hours=period_h)
    offset = timedelta(minutes=offset_min)
    due = cycle_times(timeline, period, offset)
    period_ns = int(pd.Timedelta(period).value)
    offset_ns = int(pd.Timedelta(offset).value)
    cycle_steps = np.flatnonzero(due)
    for step in cycle_steps:
        cycle = int(due[step])
        # A cycle time is a boundary, at or after its step, and before the next bar closes.
        assert (cycle - offset_ns) % period_ns == 0
        assert timeline[step] <= cycle
        assert cycle <= timeline[-1]
        if step + 1 < len(timeline):
            assert timeline[step + 1] > cycle
    # Cycle times strictly increase.
    assert (np.diff(due[cycle_steps]) > 0).all()
    # Every boundary inside the data that has a bar closed since the previous one runs.
    first = int(timeline[0])
    boundary = -(-(first - offset_ns) // period_ns) * period_ns + offset_ns
    expected = []
    last_seen = -1
    while boundary <= timeline[-1]:
        latest = int(np.searchsorted(timeline, boundary, side="right")) - 1
        if latest > last_seen:
            expected.append(boundary)
            last_seen = latest
        boundary += period_ns
    assert due[cycle_steps].tolist() == expected


# ---------------------------------------------------------------------------------------------
# next_boundary / floor_boundary


def dt(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "now, period, offset, expected",
    [
        ("2024-01-01T10:05:00", timedelta(hours=1), timedelta(minutes=8), "2024-01-01T10:08:00"),
        ("2024-01-01T10:08:00", timedelta(hours=1), timedelta(minutes=8), "2024-01-01T11:08:00"),  # strictly after
        ("2024-01-01T10:09:00", timedelta(hours=1), timedelta(minutes=8), "2024-01-01T11:08:00"),
        ("2024-01-01T10:07:59.999999", timedelta(hours=1), timedelta(minutes=8), "2024-01-01T10:08:00"),
        ("2024-01-01T23:59:00", timedelta(hours=1), timedelta(minutes=8), "2024-01-02T00:08:00"),
        ("2024-01-01T10:00:00", timedelta(hours=1), timedelta(0), "2024-01-01T11:00:00"),
        ("2024-01-01T10:00:00", timedelta(hours=4), timedelta(0), "2024-01-01T12:00:00"),
        ("2024-01-01T13:00:00", timedelta(hours=4), timedelta(minutes=30), "2024-01-01T16:30:00"),
        ("2024-01-01T12:15:00", timedelta(hours=4), timedelta(minutes=30), "2024-01-01T12:30:00"),
        ("2024-01-01T12:00:00", timedelta(days=1), timedelta(0), "2024-01-02T00:00:00"),
        ("2024-01-01T12:00:00", timedelta(days=1), timedelta(hours=13), "2024-01-01T13:00:00"),
        ("2024-01-01T00:14:00", timedelta(minutes=15), timedelta(0), "2024-01-01T00:15:00"),
        # An offset longer than the period is the same as its remainder.
        ("2024-01-01T10:05:00", timedelta(hours=1), timedelta(minutes=68), "2024-01-01T10:08:00"),
    ],
)
def test_next_boundary(now: str, period: timedelta, offset: timedelta, expected: str) -> None:
    got = next_boundary(dt(now), period, offset)
    assert got == dt(expected)
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_next_boundary_treats_naive_time_as_utc() -> None:
    naive = datetime(2024, 1, 1, 10, 5)
    assert next_boundary(naive, timedelta(hours=1), timedelta(minutes=8)) == dt("2024-01-01T10:08:00")


def test_next_boundary_converts_other_time_zones() -> None:
    plus_two = timezone(timedelta(hours=2))
    now = datetime(2024, 1, 1, 12, 5, tzinfo=plus_two)  # 10:05 UTC
    assert next_boundary(now, timedelta(hours=1), timedelta(minutes=8)) == dt("2024-01-01T10:08:00")


@pytest.mark.parametrize(
    "now, period, offset, expected",
    [
        ("2024-01-01T10:05:00", timedelta(hours=1), timedelta(minutes=8), "2024-01-01T09:08:00"),
        ("2024-01-01T10:08:00", timedelta(hours=1), timedelta(minutes=8), "2024-01-01T10:08:00"),  # at or before
        ("2024-01-01T10:09:00", timedelta(hours=1), timedelta(minutes=8), "2024-01-01T10:08:00"),
        ("2024-01-01T13:00:00", timedelta(hours=4), timedelta(0), "2024-01-01T12:00:00"),
    ],
)
def test_floor_boundary(now: str, period: timedelta, offset: timedelta, expected: str) -> None:
    assert floor_boundary(dt(now), period, offset) == dt(expected)


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.integers(min_value=0, max_value=10 * 365 * 86400),
    period_s=st.sampled_from([60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400]),
    offset_s=st.integers(min_value=0, max_value=3600),
)
def test_boundaries_bracket_now(seconds: int, period_s: int, offset_s: int) -> None:
    now = dt("2015-01-01T00:00:00") + timedelta(seconds=seconds)
    period, offset = timedelta(seconds=period_s), timedelta(seconds=offset_s)
    nxt = next_boundary(now, period, offset)
    low = floor_boundary(now, period, offset)
    assert low <= now < nxt
    assert nxt - low == period
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (nxt - epoch - offset) % period == timedelta(0)


# -- CycleSchedule: the same cycles, decided one step at a time on a timeline that grows -------------


@settings(max_examples=200, deadline=None)
@given(
    hours=st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=80, unique=True),
    period_h=st.sampled_from([1, 2, 3, 4, 6, 8, 12, 24]),
    offset_min=st.integers(min_value=0, max_value=59),
)
def test_a_growing_timeline_fires_the_cycles_of_the_whole_one(hours: list[int], period_h: int,
                                                             offset_min: int) -> None:
    opens = pd.DatetimeIndex(sorted(ts("2024-01-01") + pd.Timedelta(hours=h) for h in hours))
    timeline = closes(opens, "1h")
    period, offset = timedelta(hours=period_h), timedelta(minutes=offset_min)
    schedule = CycleSchedule(period, offset)
    expected = cycle_times(timeline, period, offset)
    fired = np.zeros(len(timeline), dtype=np.int64)
    for known in range(1, len(timeline) + 1):  # the feed has delivered `known` bars; nothing later is known
        grown = timeline[:known]
        for step in range(max(0, known - 2), known):  # the newest step, and the one before it
            cycle = schedule.due(grown, step, known_until_ns=int(grown[-1]))
            if cycle:
                assert fired[step] in (0, cycle)
                fired[step] = cycle
    assert fired.tolist() == expected.tolist()


def test_the_clock_passing_a_boundary_ends_the_cycle_of_the_newest_bar() -> None:
    timeline = closes(pd.DatetimeIndex([ts("2024-01-01 09:00"), ts("2024-01-01 10:00")]), "1h")  # close 10:00, 11:00
    schedule = CycleSchedule(timedelta(hours=4))  # boundaries 08:00, 12:00, ...
    assert schedule.due(timeline, 1, known_until_ns=int(timeline[-1])) == 0  # a bar may still close by 12:00
    assert schedule.due(timeline, 1, known_until_ns=ts("2024-01-01 11:59").value) == 0
    assert schedule.due(timeline, 1, known_until_ns=ts("2024-01-01 12:00").value) == ts("2024-01-01 12:00").value
    assert schedule.due(timeline, 0) == 0  # the 11:00 bar came before the boundary: the cycle is not 10:00's

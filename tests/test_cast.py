"""The cast contract and the executor's chart feed: targets, chart data checks, incremental downsampling, cast.json."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from tradeexecutor.cast import (
    MAX_POINTS,
    MAX_SERIES,
    chart_path,
    check_chart_data,
    check_name,
    parse_target,
    target_url,
)
from tradeexecutor.cast.feed import ChartFeed, Downsampled
from tradeexecutor.errors import ConfigError, StateCorruptError
from tradeexecutor.state import State
from tradeexecutor.store.cast_target import CastTargetFile

# -- targets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["-", "", "  ", None, " - "])
def test_dash_or_nothing_stops(text: str | None) -> None:
    assert parse_target(text) is None


@pytest.mark.parametrize("text", ["/wallboard/page1/chart1", "/wallbord/page1/chart1", "http://wb:8090/wallboard/p/c",
                                  "https://wb.example/x/wallboard/p/c"])
def test_paths_and_urls_are_targets_even_misspelt_ones(text: str) -> None:
    """Only the form is checked: a path the wallboard does not know is reported by the wallboard."""
    assert parse_target(f" {text} ") == text


@pytest.mark.parametrize("text, fragment", [
    ("wallboard/page1/chart1", "neither a wallboard path"),
    ("ftp://wb/wallboard/p/c", "neither a wallboard path"),
    ("http://user:pw@wb/wallboard/p/c", "must not carry credentials"),
    ("/wallboard/page 1/chart1", "spaces"),
    ("/wallboard/p/c?x=1", "'?'"),
    ("/" + "a" * 2001, "longer than"),
])
def test_bad_targets_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_target(text)
    assert fragment in str(info.value)
    assert "pw" not in str(info.value)


def test_a_path_goes_to_the_wallboard_url_and_needs_one() -> None:
    assert target_url("/wallboard/p/c", "http://wb:8090/") == "http://wb:8090/wallboard/p/c"
    assert target_url("http://other/wallboard/p/c", None) == "http://other/wallboard/p/c"
    with pytest.raises(ValueError, match="TRADEEXECUTOR_WALLBOARD_URL"):
        target_url("/wallboard/p/c", None)


def test_names() -> None:
    assert chart_path("page1", "chart-1.a_b") == "/wallboard/page1/chart-1.a_b"
    for bad in ("", ".hidden", "a/b", "x" * 65, "é"):
        with pytest.raises(ValueError, match="name"):
            check_name("page", bad)


# -- chart data ----------------------------------------------------------------------------------


def _data(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {"format": 1, "title": "t", "source": {"run": "r1", "x": 1.5, "y": None},
                               "series": [{"name": "equity", "axis": "left", "t": [1, 2, 3], "v": [1.0, None, 3]}],
                               "extra": "dropped"}
    data.update(changes)
    return data


def test_good_chart_data_is_kept_with_known_keys_only() -> None:
    clean = check_chart_data(_data())
    assert clean == {"format": 1, "title": "t", "source": {"run": "r1", "x": 1.5, "y": None},
                     "series": [{"name": "equity", "axis": "left", "t": [1, 2, 3], "v": [1.0, None, 3]}]}


@pytest.mark.parametrize("changes, fragment", [
    ({"format": 2}, "format must be 1"),
    ({"series": "x"}, "series must be a list"),
    ({"series": [{"name": "e", "t": [1], "v": [1, 2]}]}, "same length"),
    ({"series": [{"name": "e", "t": [2, 1], "v": [1, 2]}]}, "must increase"),
    ({"series": [{"name": "e", "t": [1.5], "v": [1]}]}, "integer epoch"),
    ({"series": [{"name": "e", "t": [1], "v": [float("nan")]}]}, "finite numbers"),
    ({"series": [{"name": "e", "t": [1], "v": [True]}]}, "finite numbers"),
    ({"series": [{"name": "e", "axis": "top", "t": [], "v": []}]}, "axis"),
    ({"series": [{"name": "e", "t": list(range(MAX_POINTS + 1)), "v": [0] * (MAX_POINTS + 1)}]}, "downsample"),
    ({"series": [{"name": "e", "t": [], "v": []}] * (MAX_SERIES + 1)}, "at most"),
    ({"title": "x" * 201}, "title"),
    ({"source": {"k": [1]}}, "source.k"),
])
def test_bad_chart_data_says_what_is_wrong(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        check_chart_data(_data(**changes))
    assert fragment in str(info.value)


# -- downsampling --------------------------------------------------------------------------------


def test_downsampled_keeps_at_most_max_points_plus_the_newest_evenly_strided() -> None:
    series = Downsampled(max_points=10)
    for i in range(1000):
        series.add(i * 10, float(i))
        times, values = series.points()
        assert len(times) <= 11 and times[0] == 0 and times[-1] == i * 10 and values[-1] == float(i)
        assert all(b > a for a, b in itertools.pairwise(times))
    times, _ = series.points()
    kept = [t // 10 for t in times[:-1]]
    assert all(index % series.stride == 0 for index in kept)
    assert kept == list(range(0, 1000, series.stride))  # evenly spaced over the whole history
    assert series.points(provisional=(99_999, 5.0))[0][-1] == 99_999


def _state_with(equity: Sequence[float], start_ms: int = 1_000) -> State:
    state = State(name="t")
    for i, value in enumerate(equity):
        state.valuations.append(start_ms + i * 1000, value, value, 0.0)
    return state


def test_chart_feed_takes_only_new_rows_and_equals_a_fresh_feed() -> None:
    """Fed a growing state bit by bit, the feed shows what a feed built once over the final state shows."""
    times = np.arange(0, 400_000, 1000, dtype=np.int64)
    closes = np.linspace(100.0, 140.0, len(times))
    values = [10_000 + 3 * i for i in range(300)]
    incremental = ChartFeed({"GOOG": (times, closes)}, max_points=16)
    state = State(name="t")
    keys = []
    for i, value in enumerate(values):
        state.valuations.append(5_000 + i * 1000, value, value, 0.0)
        keys.append(incremental.update(state, {"GOOG": 5 + i}))
    assert len(set(keys)) == len(keys), "every new row changes the key"
    assert incremental.update(state, {"GOOG": 5 + len(values) - 1}) == keys[-1], "nothing new: the same key"
    once = ChartFeed({"GOOG": (times, closes)}, max_points=16)
    once.update(_state_with(values, start_ms=5_000), {"GOOG": 5 + len(values) - 1})
    assert incremental.data("T", {}) == once.data("T", {})
    data = check_chart_data(incremental.data("SMA", {"run": "r1"}))
    equity, close = data["series"]
    assert equity["name"] == "equity" and equity["t"][0] == 5_000 and equity["v"][-1] == values[-1]
    assert close["name"] == "GOOG close" and close["axis"] == "right"
    assert close["t"][0] == 5_000, "closes start with the first valuation"
    assert close["t"][-1] == times[5 + len(values) - 1] and close["v"][-1] == closes[5 + len(values) - 1]
    assert len(equity["t"]) <= 17 and len(close["t"]) <= 17


def test_chart_feed_takes_the_newest_valuation_fresh_each_time() -> None:
    """A revaluation of the same bar replaces the newest row: the chart shows the replacement."""
    feed = ChartFeed({}, max_points=8)
    state = _state_with([100.0, 101.0])
    feed.update(state, {})
    state.valuations.append(2_000, 105.0, 105.0, 0.0)  # same time as the newest row: replaced
    key = feed.update(state, {})
    assert feed.data("t", {})["series"][0]["v"] == [100.0, 105.0]
    assert feed.update(state, {}) == key


def test_an_empty_state_has_no_chart_data() -> None:
    feed = ChartFeed({"GOOG": (np.array([1], dtype=np.int64), np.array([1.0]))})
    feed.update(State(name="t"), {"GOOG": 0})
    assert feed.empty


# -- cast.json ----------------------------------------------------------------------------------


def test_cast_file_round_trip_and_change_signature(tmp_path: Path) -> None:
    file = CastTargetFile(tmp_path / "state" / "cast.json")
    assert file.read() is None and file.signature() is None
    file.write("/wallboard/p/c", "runs cast")
    first = file.signature()
    record = file.read()
    assert record is not None and record.target == "/wallboard/p/c" and record.by == "runs cast" and record.set_at
    file.write(None, "control")
    assert file.read().target is None and file.signature() != first  # type: ignore[union-attr]


def test_a_damaged_cast_file_is_refused_by_name_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "cast.json"
    path.write_text("{not json")
    file = CastTargetFile(path)
    with pytest.raises(StateCorruptError, match=re.escape("cast.json")):
        file.read()
    with pytest.raises(StateCorruptError):
        file.write("/wallboard/p/c", "control")
    assert path.read_text() == "{not json"
    path.write_text(json.dumps({"target": 5}))
    with pytest.raises(StateCorruptError, match="expected"):
        file.read()

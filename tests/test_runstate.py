"""RunState: JSON round trip, exportable copies, cycle and crash bookkeeping, and consistent snapshots under a writer."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from tradeexecutor.runstate import GIT_COMMIT_ENV, RunState, RunStatus, image_key, read_version_info

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _filled() -> RunState:
    runstate = RunState.create(
        "exec-1",
        mode="replay",
        strategy_name="ema_cross",
        strategy_version="abc123",
        source_code="print('hello')\n",
        version={"package": "0.1.0", "git_commit": "deadbeef"},
        now=T0,
    )
    runstate.update(
        executor_running=True,
        status="running",
        position_trigger_checks=7,
        position_revaluations=3,
        summary_statistics={"equity": 1234.5, "trades": 4, "nested": {"a": [1, 2]}},
        market_data_feed_lag=1.5,
        next_cycle_at=T0 + timedelta(hours=1),
        safe_mode=True,
        safe_mode_reason="feed stale",
        paused=True,
        extra={"note": "x"},
    )
    runstate.update_complete_cycle(T0, now=T0 + timedelta(seconds=5))
    runstate.set_images({image_key("large", "light", "png"): b"\x89PNG..."}, now=T0 + timedelta(seconds=6))
    return runstate


def test_json_round_trip_is_exact_for_exportable_fields() -> None:
    runstate = _filled()
    exported = runstate.make_exportable_copy()
    text = exported.to_json()
    data = json.loads(text)
    assert data["started_at"] == "2024-01-01T00:00:00+00:00"
    assert data["completed_cycle"] == "2024-01-01T00:00:00+00:00"
    assert data["status"] == "running"
    assert "visualisation" not in data
    again = RunState.from_json(text)
    assert again == exported
    assert again.status is RunStatus.running
    assert RunState.from_dict(exported.to_dict()) == exported


def test_exportable_copy_excludes_source_and_images_and_is_independent() -> None:
    runstate = _filled()
    copy = runstate.make_exportable_copy()
    assert copy.source_code is None
    assert copy.visualisation == {}
    assert copy.visualisation_updated_at == T0 + timedelta(seconds=6)
    # The live object keeps them, readable through the accessors.
    assert runstate.get_source() == "print('hello')\n"
    assert runstate.get_image("large/light/png") == b"\x89PNG..."
    assert runstate.get_image("small/dark/svg") is None
    # The copy's dicts are its own.
    copy.summary_statistics["nested"]["a"].append(3)
    assert runstate.summary_statistics["nested"]["a"] == [1, 2]
    assert copy.lock is not runstate.lock


def test_update_complete_cycle_sets_time_count_and_refresh() -> None:
    runstate = RunState.create("e", version={}, now=T0)
    runstate.update_complete_cycle(T0 + timedelta(hours=1), now=T0 + timedelta(hours=1, seconds=2))
    runstate.update_complete_cycle(T0 + timedelta(hours=2), now=T0 + timedelta(hours=2, seconds=2))
    assert runstate.cycles == 2
    assert runstate.completed_cycle == T0 + timedelta(hours=2)
    assert runstate.last_refreshed_at == T0 + timedelta(hours=2, seconds=2)
    runstate.bump_refreshed(now=T0 + timedelta(hours=3))
    assert runstate.last_refreshed_at == T0 + timedelta(hours=3)


def test_set_fail_records_the_real_exception() -> None:
    runstate = RunState.create("e", version={}, now=T0)
    runstate.update(executor_running=True, status=RunStatus.running)
    try:
        raise KeyError("missing-pair")
    except KeyError as exc:
        runstate.set_fail(exc, now=T0 + timedelta(minutes=1))
    assert runstate.status is RunStatus.error
    assert runstate.executor_running is False
    assert runstate.crashed_at == T0 + timedelta(minutes=1)
    assert runstate.crash_count == 1
    assert runstate.exception is not None
    assert runstate.exception["class"] == "builtins.KeyError"
    assert runstate.exception["message"] == "'missing-pair'"
    assert runstate.exception["frames"][-1]["name"] == "test_set_fail_records_the_real_exception"
    snapshot = json.loads(runstate.snapshot().to_json())
    assert snapshot["exception"]["class"] == "builtins.KeyError"
    assert snapshot["status"] == "error"


def test_update_rejects_unknown_fields_and_bad_status() -> None:
    runstate = RunState()
    with pytest.raises(AttributeError):
        runstate.update(no_such_field=1)
    with pytest.raises(ValueError):
        runstate.update(status="flying")


def test_version_info_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GIT_COMMIT_ENV, "0123abcd")
    info = read_version_info()
    assert info["git_commit"] == "0123abcd"
    assert isinstance(info["package"], str)


def test_version_info_is_quietly_none_outside_git(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv(GIT_COMMIT_ENV, raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert read_version_info(repo_dir=tmp_path)["git_commit"] is None


def test_snapshots_are_consistent_while_another_thread_writes() -> None:
    runstate = RunState.create("e", version={}, now=T0)
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        while not stop.is_set():
            runstate.update_complete_cycle(T0 + timedelta(minutes=writes), now=T0 + timedelta(minutes=writes))
            writes += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 60
        # Read until the writer has visibly moved on many times (time-bounded, generously: it ends at 50 changes
        # seen, at once on any machine; the bound only keeps a broken writer from hanging the test).
        while len(seen) < 50 and time.monotonic() < deadline:
            snap = runstate.snapshot()
            if snap.cycles == 0:
                assert snap.completed_cycle is None
                continue
            assert snap.completed_cycle == T0 + timedelta(minutes=snap.cycles - 1)
            assert snap.last_refreshed_at == snap.completed_cycle
            seen.add(snap.cycles)
    finally:
        stop.set()
        thread.join()
    assert writes > 0
    assert len(seen) > 1, "the writer and the reader never overlapped"


def test_image_key_validates() -> None:
    assert image_key("small", "dark", "svg") == "small/dark/svg"
    with pytest.raises(ValueError):
        image_key("huge", "dark", "svg")


def test_cached_export_renders_once_per_change_and_sees_every_kind_of_write() -> None:
    runstate = RunState.create("rev", mode="replay", now=T0)
    calls: list[int] = []

    def render(snapshot: RunState) -> dict:
        calls.append(snapshot.cycles)
        return snapshot.to_dict()

    first = runstate.cached_export(render)
    assert runstate.cached_export(render) is first and len(calls) == 1  # no write, no new rendering
    runstate.update_complete_cycle(T0 + timedelta(minutes=1), now=T0 + timedelta(minutes=1))
    assert runstate.cached_export(render)["cycles"] == 1 and len(calls) == 2
    with runstate.lock:  # a writer setting a field directly is seen too
        runstate.position_trigger_checks += 1
    assert runstate.cached_export(render)["position_trigger_checks"] == 1 and len(calls) == 3

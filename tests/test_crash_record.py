"""Crash records: real exceptions keep class, message, frames and the cause/context chain; the crash file persists them."""

from __future__ import annotations

import json
import re
import threading
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tradeexecutor.errors import DataError, StateCorruptError
from tradeexecutor.runstate import (
    CrashFile,
    CrashHistory,
    RebuiltException,
    dump_all_thread_stacks,
    format_exception_record,
    rebuild_exception,
    serialise_exception,
)
from tradeexecutor.runstate.crash import MAX_RECENT_CRASHES

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
_NO_CLEANUP: dict[str, int] = {}


def _line_of(marker: str) -> int:
    """Line number in this file of the line carrying ``# <marker>``."""
    for number, line in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if line.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)


def _load_candles() -> None:
    raise OSError("disk on fire")  # RAISE-ROOT


def _read_feed() -> None:
    try:
        _load_candles()  # CALL-ROOT
    except OSError as exc:
        raise DataError("candles for BTC-USD cannot be read") from exc  # RAISE-CAUSE


def _run_cycle() -> None:
    try:
        _read_feed()  # CALL-FEED
    except DataError:
        _NO_CLEANUP["cleanup"]  # RAISE-CONTEXT


def _crash() -> BaseException:
    try:
        _run_cycle()  # CALL-CYCLE
    except KeyError as exc:
        return exc
    raise AssertionError("no crash")


def test_record_keeps_classes_messages_frames_and_chain_order() -> None:
    record = serialise_exception(_crash())
    json.dumps(record)  # JSON-safe

    assert record["class"] == "builtins.KeyError"
    assert record["message"] == "'cleanup'"
    assert record["repr"] == "KeyError('cleanup')"
    names = [frame["name"] for frame in record["frames"]]
    assert names == ["_crash", "_run_cycle"]
    assert record["frames"][0]["lineno"] == _line_of("CALL-CYCLE")
    assert record["frames"][1]["lineno"] == _line_of("RAISE-CONTEXT")
    assert record["frames"][1]["line"] == '_NO_CLEANUP["cleanup"]  # RAISE-CONTEXT'
    assert record["frames"][1]["filename"] == __file__

    first, second = record["chain"]
    assert first["relation"] == "context"
    assert first["class"] == "tradeexecutor.errors.DataError"
    assert first["message"] == "candles for BTC-USD cannot be read"
    assert [f["name"] for f in first["frames"]] == ["_run_cycle", "_read_feed"]
    assert [f["lineno"] for f in first["frames"]] == [_line_of("CALL-FEED"), _line_of("RAISE-CAUSE")]

    assert second["relation"] == "cause"
    assert second["class"] == "builtins.OSError"
    assert second["message"] == "disk on fire"
    assert [f["name"] for f in second["frames"]] == ["_read_feed", "_load_candles"]
    assert [f["lineno"] for f in second["frames"]] == [_line_of("CALL-ROOT"), _line_of("RAISE-ROOT")]
    assert "chain" not in first and "chain" not in second


def test_suppressed_context_is_not_followed() -> None:
    try:
        try:
            raise ValueError("hidden")
        except ValueError:
            raise RuntimeError("shown") from None
    except RuntimeError as exc:
        record = serialise_exception(exc)
    assert record["chain"] == []
    assert record["suppress_context"] is True


def test_formatted_record_matches_python_traceback_text() -> None:
    exc = _crash()
    ours = format_exception_record(serialise_exception(exc))
    python = "".join(traceback.format_exception(exc))
    # Python 3.11 adds caret lines under the failing expression; we do not keep columns.
    python = "".join(
        line for line in python.splitlines(keepends=True) if not re.fullmatch(r"\s*[\^~]+\s*", line)
    )
    assert ours == python


def test_rebuild_exception_has_real_traceback_and_chain() -> None:
    record = serialise_exception(_crash())
    rebuilt = rebuild_exception(record)
    assert type(rebuilt) is KeyError
    assert rebuilt.args == ("cleanup",)
    frames = traceback.extract_tb(rebuilt.__traceback__)
    assert [(f.name, f.lineno) for f in frames] == [
        ("_crash", _line_of("CALL-CYCLE")),
        ("_run_cycle", _line_of("RAISE-CONTEXT")),
    ]
    context = rebuilt.__context__
    assert isinstance(context, DataError)
    assert isinstance(context.__cause__, OSError)
    assert context.__suppress_context__ is True
    # A rebuilt exception serialises to the same record (apart from source lines and frame modules).
    again = serialise_exception(rebuilt)
    assert again["class"] == record["class"]
    assert [f["lineno"] for f in again["chain"][1]["frames"]] == [
        f["lineno"] for f in record["chain"][1]["frames"]
    ]
    with pytest.raises(KeyError):
        raise rebuilt


def test_rebuild_of_unknown_class_falls_back() -> None:
    record = serialise_exception(ValueError("x"))
    record["module"], record["class_name"], record["class"] = (
        "not.imported.mod",
        "Boom",
        "not.imported.mod.Boom",
    )
    rebuilt = rebuild_exception(record)
    assert isinstance(rebuilt, RebuiltException)
    assert rebuilt.original_class == "not.imported.mod.Boom"
    assert "x" in str(rebuilt)


def test_deep_recursion_is_truncated_not_fatal() -> None:
    def recurse(n: int) -> None:
        recurse(n + 1)

    try:
        recurse(0)
    except RecursionError as exc:
        record = serialise_exception(exc)
    assert len(record["frames"]) == 200
    assert record["frames_omitted"] > 0
    assert "Previous frames omitted" in format_exception_record(record)


def test_crash_file_survives_reload_and_counts(tmp_path: Path) -> None:
    crash_file = CrashFile.for_state_dir(tmp_path)
    assert crash_file.load() is None
    crash_file.record(_crash(), now=T0)
    history = crash_file.record(_crash(), now=T0 + timedelta(minutes=5))
    assert history.crash_count == 2

    reloaded = CrashFile(tmp_path / "crash.json").load()
    assert reloaded is not None
    assert reloaded.crash_count == 2
    assert reloaded.recent_crashes == [T0, T0 + timedelta(minutes=5)]
    assert reloaded.last_crashed_at == T0 + timedelta(minutes=5)
    assert reloaded.last_exception is not None
    assert reloaded.last_exception["chain"][1]["message"] == "disk on fire"
    assert sorted(tmp_path.iterdir()) == [tmp_path / "crash.json", tmp_path / "crash.tally"]  # no temp files left

    assert crash_file.recent_crashes(timedelta(minutes=2), now=T0 + timedelta(minutes=6)) == [
        T0 + timedelta(minutes=5)
    ]


def test_crash_file_keeps_the_last_max_recent_crashes_times(tmp_path: Path) -> None:
    crash_file = CrashFile.for_state_dir(tmp_path)
    times = [T0 + timedelta(minutes=minute) for minute in range(MAX_RECENT_CRASHES)]
    crash_file.path.write_text(json.dumps(CrashHistory(crash_count=len(times), recent_crashes=times).to_dict()))
    for extra in range(2):
        crash_file.record({"class": "builtins.ValueError", "message": str(extra)},
                          now=T0 + timedelta(minutes=MAX_RECENT_CRASHES + extra))
    history = crash_file.load()
    assert history is not None
    assert history.crash_count == MAX_RECENT_CRASHES + 2
    assert len(history.recent_crashes) == MAX_RECENT_CRASHES
    assert history.recent_crashes[0] == T0 + timedelta(minutes=2)
    assert history.recent_crashes[-1] == T0 + timedelta(minutes=MAX_RECENT_CRASHES + 1)


def test_corrupt_crash_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "crash.json"
    path.write_text("{not json")
    crash_file = CrashFile(path)
    with pytest.raises(StateCorruptError):
        crash_file.load()
    crash_file.record(ValueError("again"), now=T0)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("crash.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    history = crash_file.load()
    assert history is not None and history.crash_count == 1


def test_dump_all_thread_stacks_sees_a_blocked_thread() -> None:
    release = threading.Event()

    def stuck_job() -> None:
        release.wait(10)

    thread = threading.Thread(target=stuck_job, name="stuck-job")
    thread.start()
    try:
        dump = dump_all_thread_stacks()
    finally:
        release.set()
        thread.join()
    by_name = {item["name"]: item for item in dump["threads"]}
    assert by_name["stuck-job"]["ident"] == thread.ident
    assert "stuck_job" in by_name["stuck-job"]["stack"]
    assert "MainThread" in by_name

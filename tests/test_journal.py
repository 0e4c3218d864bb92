"""The run journal: fsynced JSON lines, read from the end by time, level and count, torn lines skipped; event fields never clash."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tradeexecutor.store.journal as journal_module
from tradeexecutor.daemon.journal import JournalSink, event_level
from tradeexecutor.ledger import Ledger
from tradeexecutor.runs.executor import EventBuffer
from tradeexecutor.store.journal import ENTRY_KEYS, LEVELS, Journal, entry_from_json

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Colour(Enum):
    red = "red"


def _fill(journal: Journal, count: int, *, level_cycle: tuple[str, ...] = ("info",)) -> None:
    for i in range(count):
        journal.append("cycle_completed", {"n": i}, level=level_cycle[i % len(level_cycle)], at=T0 + timedelta(minutes=i))


def test_append_writes_one_json_line_with_at_level_event_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.jsonl"  # the directory is created on first append
    journal = Journal(path)
    written = journal.append("order_rejected", {"trade_id": 7, "reason": "below minimum notional"}, level="warning",
                             at=T0)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2
    assert json.loads(lines[0]) == written == {
        "at": "2024-05-01T12:00:00+00:00",
        "level": "warning",
        "event": "order_rejected",
        "fields": {"trade_id": 7, "reason": "below minimum notional"},
    }
    assert journal.read() == [written]


def test_append_stores_utc_and_converts_odd_values(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    plus_two = timezone(timedelta(hours=2))
    entry = journal.append(
        "control", {"who": "ops", "what": Colour.red, "when": datetime(2024, 5, 1, 14, 0, tzinfo=plus_two),
                    "tags": {"a"}},
        at=datetime(2024, 5, 1, 14, 0, tzinfo=plus_two),
    )
    assert entry["at"] == "2024-05-01T12:00:00+00:00"
    fields = entry["fields"]
    assert fields["when"] == "2024-05-01T12:00:00+00:00"
    assert fields["what"] == "red" and fields["tags"] == ["a"]
    assert journal.append("started")["at"].endswith("+00:00")  # default: now, in UTC


def test_append_refuses_bad_level_and_empty_event(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with pytest.raises(ValueError, match="level"):
        journal.append("started", level="loud")
    with pytest.raises(ValueError):
        journal.append("")
    assert not (tmp_path / "journal.jsonl").exists()


def test_append_fsyncs_each_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("started")
    count = len(synced)
    journal.append("stopped")
    assert count >= 1 and len(synced) == count + 1  # the file (and the directory on creation)


def test_read_returns_newest_last_and_limits_to_the_most_recent(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    _fill(journal, 10)
    entries = journal.read(limit=3)
    assert [e["fields"]["n"] for e in entries] == [7, 8, 9]
    assert [e["fields"]["n"] for e in journal.read(limit=100)] == list(range(10))
    assert journal.read(limit=0) == []


def test_read_filters_since_inclusive_and_level_at_or_above(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    _fill(journal, 12, level_cycle=LEVELS)  # debug, info, warning, error, debug, ...
    since = T0 + timedelta(minutes=4)
    assert [e["fields"]["n"] for e in journal.read(since=since)] == list(range(4, 12))
    assert [e["fields"]["n"] for e in journal.read(level="warning")] == [2, 3, 6, 7, 10, 11]
    assert [e["fields"]["n"] for e in journal.read(level="ERROR")] == [3, 7, 11]
    assert [e["fields"]["n"] for e in journal.read(since=since, level="info", limit=4)] == [7, 9, 10, 11]
    naive = datetime(2024, 5, 1, 12, 10)  # naive means UTC
    assert [e["fields"]["n"] for e in journal.read(since=naive)] == [10, 11]
    with pytest.raises(ValueError):
        journal.read(level="loud")


def test_read_of_a_missing_journal_is_empty(tmp_path: Path) -> None:
    assert Journal(tmp_path / "nothing.jsonl").read() == []


def test_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    _fill(journal, 3)
    with open(path, "ab") as handle:  # what a crash in the middle of an append leaves
        handle.write(b'{"at": "2024-05-01T13:00:00+00:00", "level": "in')
    assert [e["fields"]["n"] for e in Journal(path).read()] == [0, 1, 2]

    reopened = Journal(path)  # the next process
    reopened.append("started", at=T0 + timedelta(hours=2))
    entries = reopened.read()
    assert [e["event"] for e in entries] == ["cycle_completed"] * 3 + ["started"]
    assert path.read_bytes().endswith(b'"event":"started","fields":{}}\n')


def test_a_file_that_is_only_a_torn_line_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(b'{"at": "2024-05-01T13:00:00+00:00", "lev')
    assert Journal(path).read() == []


@pytest.mark.parametrize("block", [7, 64, 1000, 64 * 1024])
def test_lines_spanning_blocks_read_the_same_whatever_the_block_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(journal_module, "_BLOCK_SIZE", block)
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for i in range(40):
        journal.append("order_planned", {"n": i, "note": "x" * (i * 13 % 150)}, at=T0 + timedelta(seconds=i))
    with open(path, "ab") as handle:
        handle.write(b'{"torn": "' + b"y" * 300)  # a torn tail longer than a small block
    assert [e["fields"]["n"] for e in journal.read(limit=1000)] == list(range(40))
    assert [e["fields"]["n"] for e in journal.read(limit=5)] == list(range(35, 40))
    assert [e["fields"]["n"] for e in journal.read(since=T0 + timedelta(seconds=30))] == list(range(30, 40))


class _CountingFile:
    """Wraps a binary file and counts the bytes read through it."""

    def __init__(self, handle: Any, counter: list[int]) -> None:
        self._handle = handle
        self._counter = counter

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._handle.read(size)
        self._counter[0] += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def test_reading_the_tail_does_not_read_the_whole_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.jsonl"
    line = json.dumps({"at": T0.isoformat(), "level": "info", "event": "revalued", "pad": "z" * 200}) + "\n"
    with open(path, "w") as handle:  # ~5 MB of history, written directly for speed
        for _ in range(25_000):
            handle.write(line)
    journal = Journal(path)
    journal.append("order_filled", {"trade_id": 1}, at=T0 + timedelta(days=1))
    size = path.stat().st_size
    counter = [0]
    monkeypatch.setattr(journal_module, "open", lambda p, mode="r": _CountingFile(open(p, mode), counter),  # noqa: SIM115 - the reader closes it
                        raising=False)

    entries = journal.read(limit=10)
    assert len(entries) == 10 and entries[-1]["event"] == "order_filled"
    assert counter[0] <= 2 * journal_module._BLOCK_SIZE < size / 10

    counter[0] = 0
    assert [e["event"] for e in journal.read(since=T0 + timedelta(hours=1))] == ["order_filled"]
    assert counter[0] <= journal_module._BLOCK_SIZE


# -- no event field can collide with the journal's own ------------------------------------------

#: Field names: anything at all, with the journal's own keys drawn often.
_NAMES = st.one_of(st.sampled_from([*ENTRY_KEYS, "run_id", "trigger_price"]), st.text(max_size=12))
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
              st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_FIELDS = st.dictionaries(_NAMES, _VALUES, max_size=8)
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(fields=_FIELDS, level=st.sampled_from(LEVELS))
def test_any_field_name_round_trips_without_touching_the_journals_own(tmp_path: Path, fields: dict[str, Any],
                                                                       level: str) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    journal = Journal(path)
    written = journal.append("trigger_fired", fields, level=level, at=T0)
    assert written == {"at": T0.isoformat(), "level": level, "event": "trigger_fired", "fields": fields}
    assert journal.read() == [written] == list(journal.entries())
    assert journal.read(level=level) == [written]


@_SETTINGS
@given(fields=_FIELDS)
def test_the_loops_sink_takes_any_field_name_as_a_keyword(tmp_path: Path, fields: dict[str, Any]) -> None:
    """The daemon's sink: ``event`` is positional-only, so even ``event=`` and ``level=`` are event fields."""
    path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    sink = JournalSink(Journal(path), lambda: T0)
    sink("order_rejected", **fields)
    sink("trigger_fired", **fields)
    rejected, fired = Journal(path).read()
    assert (rejected["event"], rejected["level"]) == ("order_rejected", event_level("order_rejected")) == \
        ("order_rejected", "warning")
    assert (fired["event"], fired["level"], fired["at"]) == ("trigger_fired", "info", T0.isoformat())
    assert rejected["fields"] == fired["fields"] == fields



@_SETTINGS
@given(fields=_FIELDS)
def test_the_loops_sink_over_the_ledger_takes_any_field_name(tmp_path: Path, fields: dict[str, Any]) -> None:
    """The executor's journal is the ledger: its table's at/level/event columns and its mirror file keep the
    journal's own values whatever the event's fields are called."""
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    ledger = Ledger(folder / "ledger.sqlite", now=lambda: T0, mirror=folder / "journal.jsonl")
    sink = JournalSink(ledger, lambda: T0)
    sink("order_rejected", **fields)
    sink("trigger_fired", **fields)
    ledger.flush()
    ledger.close()
    own = [("order_rejected", "warning", T0.isoformat()), ("trigger_fired", "info", T0.isoformat())]
    conn = sqlite3.connect(folder / "ledger.sqlite")
    try:
        rows = conn.execute("SELECT event, level, at, line FROM journal ORDER BY seq").fetchall()
    finally:
        conn.close()
    assert [(event, level, at) for event, level, at, _ in rows] == own
    assert [entry_from_json(json.loads(line)) for *_, line in rows] == \
        [{"at": at, "level": level, "event": event, "fields": fields} for event, level, at in own]
    mirrored = Journal(folder / "journal.jsonl").read()
    assert [(e["event"], e["level"], e["at"]) for e in mirrored] == own and all(e["fields"] == fields for e in mirrored)

@_SETTINGS
@given(fields=_FIELDS)
def test_a_backtest_runs_event_buffer_takes_any_field_name(tmp_path: Path, fields: dict[str, Any]) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    buffer = EventBuffer("run-1")
    buffer("order_rejected", **fields)
    buffer("trigger_fired", **fields)
    buffer.flush(path)
    entries = Journal(path).read()
    assert [(e["event"], e["level"]) for e in entries] == [("order_rejected", "warning"), ("trigger_fired", "info")]
    assert all(e["fields"] == {"run_id": "run-1", **fields} for e in entries)


def test_lines_of_the_flat_format_read_back_in_the_four_key_shape(tmp_path: Path) -> None:
    """Journals written before ``fields`` existed stay readable; a level an event field overwrote moves to fields."""
    path = tmp_path / "journal.jsonl"
    old = [
        {"at": T0.isoformat(), "level": "warning", "event": "order_rejected", "trade_id": 3, "reason": "cash"},
        {"at": T0.isoformat(), "level": 1.0765, "event": "trigger_fired", "trigger": "stop_loss", "price": 1.07},
        {"at": T0.isoformat(), "level": "info", "event": "started"},
    ]
    path.write_bytes(b"".join(json.dumps(entry).encode() + b"\n" for entry in old))
    journal = Journal(path)
    assert journal.read() == list(journal.entries()) == [
        {"at": T0.isoformat(), "level": "warning", "event": "order_rejected",
         "fields": {"trade_id": 3, "reason": "cash"}},
        {"at": T0.isoformat(), "level": "info", "event": "trigger_fired",
         "fields": {"trigger": "stop_loss", "price": 1.07, "level": 1.0765}},
        {"at": T0.isoformat(), "level": "info", "event": "started", "fields": {}},
    ]
    assert [e["event"] for e in journal.read(level="warning")] == ["order_rejected"]
    assert entry_from_json(["not", "an", "entry"]) is None

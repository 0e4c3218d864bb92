"""Durable storage of one State in a directory, with a per-cycle write that does not grow with history.

Layout of the directory::

    state.json       full snapshot: exactly ``dumps_state(state)``, readable by dataclasses-json
    state.json.bak   the snapshot before the last compaction (a good older copy)
    state.log        JSON lines: a header naming the snapshot it extends, then one record per save

A per-cycle :meth:`StateStore.save` appends one fsynced log record holding

- the *head*: the whole state except closed and failed positions and the valuation rows
  (cash, open positions, counters, instruments — small and bounded), and
- only the closed/failed positions and valuation rows added since the previous save.

This relies on two promises of the state model: a closed (or failed) position is never changed
again, and valuation rows are only appended (``ValuationSeries.append`` may still replace the
last row, so the last persisted row is always written again). If the store sees a different
State, Portfolio, list or ValuationSeries object than the one it last persisted, or a list that
shrank, it writes a full snapshot instead of a log record.

When the log passes ``max_log_records`` records or ``max_log_bytes`` bytes, the next save
*compacts*: the current snapshot is hard-linked to ``state.json.bak`` (so ``state.json`` exists
at every instant), the new snapshot replaces ``state.json`` atomically, and a fresh log with a new
header replaces ``state.log`` atomically. The header carries the sha256 of its snapshot, so a
crash between the last two steps leaves a *stale* log that :meth:`StateStore.load` recognises and
ignores (the new snapshot already contains everything in it).

Reading is strict. A torn last log line — no trailing newline, or invalid JSON on the very last
line, which is what a crash during an append leaves — is ignored and cut off by the next save.
Anything else that cannot be read raises StateCorruptError naming the file (and line), and this
store then refuses to write anything until a later ``load`` succeeds: a file that could not be
read is never overwritten. Another writer changing the files behind the store's back is detected
by ``stat`` before each save and treated the same way.

Threading: one thread owns a store (the daemon's loop thread) and makes every call; the class
takes no locks. Two processes must not share a directory (a lock file is the caller's job).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tradeexecutor.atomic import atomic_write_bytes, fsync_append, fsync_directory, temp_path_for
from tradeexecutor.errors import SchemaVersionError, StateCorruptError, StateError
from tradeexecutor.kept_rows import grown
from tradeexecutor.layout import RunFiles
from tradeexecutor.state import SCHEMA_VERSION, Portfolio, Position, State, ValuationSeries
from tradeexecutor.store.codec import (
    VALUATION_COLUMNS,
    PositionFragments,
    check_schema_version,
    dumps_json,
    dumps_state,
    gc_paused,
    loads_state,
    position_to_dict,
    state_from_dict,
    state_head_to_dict,
)

__all__ = ["InMemoryStateStore", "StateStore"]

#: Version of the log's own record format (the state inside follows SCHEMA_VERSION).
LOG_FORMAT = 1

_MiB = 1024 * 1024


@dataclass(slots=True)
class _Persisted:
    """What of one State object is already durable, so that the next save writes only the rest."""

    state: State
    portfolio: Portfolio
    closed: Sequence[Position]
    closed_count: int
    last_closed: Position | None
    failed: list[Position]
    failed_count: int
    last_failed: Position | None
    valuations: ValuationSeries
    columns: tuple[list[Any], ...]
    column_counts: tuple[int, ...]

    @classmethod
    def of(cls, state: State) -> _Persisted:
        """Marks for a state that has just been written or read in full."""
        portfolio = state.portfolio
        closed = portfolio.closed_positions
        failed = portfolio.failed_positions
        valuations = state.valuations
        columns = tuple(getattr(valuations, name) for name in VALUATION_COLUMNS)
        return cls(
            state=state,
            portfolio=portfolio,
            closed=closed,
            closed_count=len(closed),
            last_closed=closed[-1] if closed else None,
            failed=failed,
            failed_count=len(failed),
            last_failed=failed[-1] if failed else None,
            valuations=valuations,
            columns=columns,
            column_counts=tuple(len(c) for c in columns),
        )

    def extends(self, state: State) -> bool:
        """True when ``state`` is the same objects grown by appends only, so a log record suffices."""
        portfolio = state.portfolio
        if (
            state is not self.state
            or portfolio is not self.portfolio
            or state.valuations is not self.valuations
        ):
            return False
        for items, known, count, last in (
            (portfolio.closed_positions, self.closed, self.closed_count, self.last_closed),
            (portfolio.failed_positions, self.failed, self.failed_count, self.last_failed),
        ):
            if not grown(items, known, count, last):
                return False
        for name, column, count in zip(VALUATION_COLUMNS, self.columns, self.column_counts):
            current = getattr(state.valuations, name)
            if current is not column or len(current) < count:
                return False
        return True

    def delta(self, state: State) -> dict[str, Any]:
        """The log record that brings the persisted state up to ``state`` (which ``extends`` it)."""
        portfolio = state.portfolio
        valuations: dict[str, Any] = {}
        for name, column, count in zip(VALUATION_COLUMNS, self.columns, self.column_counts):
            start = max(count - 1, 0)  # the last row may have been replaced in place
            valuations[name] = {"from": start, "rows": column[start:]}
        return {
            "kind": "delta",
            "head": state_head_to_dict(state),
            "closed_positions": {
                "from": self.closed_count,
                "add": [position_to_dict(p) for p in portfolio.closed_positions[self.closed_count :]],
            },
            "failed_positions": {
                "from": self.failed_count,
                "add": [position_to_dict(p) for p in portfolio.failed_positions[self.failed_count :]],
            },
            "valuations": valuations,
        }


def _file_id(path: Path) -> tuple[int, int, int] | None:
    """Identity and size of a file as ``stat`` sees it, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _read_bytes(path: Path) -> bytes | None:
    """The file's bytes, None when it does not exist, StateCorruptError when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateCorruptError(f"{path} cannot be read: {error.strerror or error}") from error


def _one_line(error: Exception) -> str:
    """An exception's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__


class StateStore:
    """One State in a directory: snapshot + backup + append-only log (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_log_records: int = 1000,
        max_log_bytes: int = 8 * _MiB,
    ) -> None:
        """Use the directory ``path`` (created on the first save); nothing is read until load or save."""
        if max_log_records < 1 or max_log_bytes < 1:
            raise ValueError("max_log_records and max_log_bytes must be positive")
        #: The directory holding the files.
        self.path = Path(path)
        files = RunFiles(self.path)
        #: The full snapshot.
        self.snapshot_path = files.state
        #: The snapshot before the last compaction.
        self.backup_path = files.state_backup
        #: The append-only log of saves since the snapshot.
        self.log_path = files.state_log
        #: Compact after this many log records.
        self.max_log_records = max_log_records
        #: Compact rather than let the log grow past this many bytes.
        self.max_log_bytes = max_log_bytes
        #: Bytes the last save wrote (appended to the log, or the snapshot plus log header).
        self.last_save_bytes = 0
        #: Encoded closed positions, so a compaction encodes only what closed since the last one.
        self._fragments = PositionFragments()

        self._read_done = False  # the directory's content has been read (or found empty)
        self._refusal: StateError | None = None  # why writing is refused
        self._snapshot_sha: str | None = None  # sha256 of state.json; None when there is none
        self._snapshot_id: tuple[int, int, int] | None = None
        self._log_size: int | None = None  # bytes of valid log; None when a fresh log is needed
        # Bytes past _log_size that are ours to cut: the file size at load when its end was torn,
        # or -1 after an append of ours failed part-way.
        self._own_tail: int | None = None
        self._log_file_size = 0  # size of the log as last read
        self._log_records = 0
        self._last_record: bytes | None = None
        self._persisted: _Persisted | None = None

    def __repr__(self) -> str:
        return f"StateStore({str(self.path)!r})"

    # ------------------------------------------------------------------------------------------
    # Public API

    def exists(self) -> bool:
        """True when the directory holds a state (or the remains of one that load will report)."""
        return self.snapshot_path.exists() or self.backup_path.exists() or self.log_path.exists()

    def load(self) -> State | None:
        """Read the snapshot and replay the log; None when the directory holds no state.

        Raises StateCorruptError or SchemaVersionError; after either, saves are refused until a
        later load succeeds.
        """
        try:
            state = self._read()
        except StateError as error:
            self._refusal = error
            self._persisted = None
            raise
        self._refusal = None
        self._read_done = True
        return state

    def save(self, state: State) -> None:
        """Make ``state`` durable: one fsynced log record, or a full snapshot when compaction is due."""
        self._prepare_write()
        persisted = self._persisted
        if (
            self._snapshot_sha is None
            or self._log_size is None
            or persisted is None
            or not persisted.extends(state)
        ):
            self._write_snapshot(state)
            return
        record = dumps_json(persisted.delta(state))
        if record == self._last_record:
            self.last_save_bytes = 0  # nothing changed since the previous save
            return
        if self._log_records >= self.max_log_records or self._log_size + len(record) > self.max_log_bytes:
            self._write_snapshot(state)
            return
        try:
            fsync_append(self.log_path, record)
        except BaseException:
            self._own_tail = -1  # whatever reached the file is cut off by the next save
            raise
        self._log_size += len(record)
        self._log_records += 1
        self._last_record = record
        self.last_save_bytes = len(record)
        self._persisted = _Persisted.of(state)

    def save_snapshot(self, state: State) -> None:
        """Write ``state`` as a full snapshot now (keeping the previous one as .bak) and start a fresh log."""
        self._prepare_write()
        self._write_snapshot(state)

    # ------------------------------------------------------------------------------------------
    # Writing

    def _prepare_write(self) -> None:
        """Refuse to write over anything unread, unreadable or changed by someone else; mend a torn log."""
        if self._refusal is not None:
            raise type(self._refusal)(f"not saving: {self._refusal}")
        if not self._read_done:
            self.load()  # never write over files we have not read; raises if they are bad
        if _file_id(self.snapshot_path) != self._snapshot_id:
            self._refuse(
                f"{self.snapshot_path} was changed by another writer since this store read or wrote it; "
                "not saving over it (restart to reload)"
            )
        if self._log_size is not None:
            self._mend_log(self._log_size)

    def _refuse(self, message: str) -> None:
        """Record why writing is refused from now on, and raise."""
        self._refusal = StateCorruptError(message)
        raise self._refusal

    def _mend_log(self, good_size: int) -> None:
        """Cut a torn record (left by a crash or failed append) off the log's end; refuse on foreign changes."""
        try:
            size = os.stat(self.log_path).st_size
        except FileNotFoundError:
            size = -1
        if size == good_size:
            return
        if size > good_size:
            with open(self.log_path, "rb+") as f:
                f.seek(good_size)
                tail = f.read()
                # Ours to cut: judged torn at load, left by our failed append, or an unterminated
                # fragment (which no reader counts). A complete record of someone else's is not.
                if self._own_tail in (size, -1) or b"\n" not in tail:
                    f.truncate(good_size)
                    f.flush()
                    os.fsync(f.fileno())
                    self._own_tail = None
                    return
        self._refuse(
            f"{self.log_path} was changed by another writer since this store read or wrote it "
            f"(expected {good_size} bytes, found {max(size, 0)}); not saving over it (restart to reload)"
        )

    def _write_snapshot(self, state: State) -> None:
        """Compact: keep the old snapshot as .bak, write the new one, then a fresh log that names it."""
        data = dumps_state(state, self._fragments)
        sha = hashlib.sha256(data).hexdigest()
        self._make_directory()
        if self._snapshot_sha is not None:
            self._keep_backup()
        # Until the fresh log is in place, the old log is stale: only another snapshot is safe.
        self._log_size = None
        try:
            atomic_write_bytes(self.snapshot_path, data)
        finally:
            self._snapshot_id = _file_id(self.snapshot_path)
        self._snapshot_sha = sha
        header = dumps_json({"kind": "header", "format": LOG_FORMAT, "snapshot_sha256": sha})
        atomic_write_bytes(self.log_path, header)
        self._log_size = len(header)
        self._own_tail = None
        self._log_records = 0
        self._last_record = None
        self.last_save_bytes = len(data) + len(header)
        self._persisted = _Persisted.of(state)

    def _keep_backup(self) -> None:
        """Make state.json.bak a copy of the current snapshot while state.json stays in place.

        A hard link is instant and never leaves a moment without ``state.json``; where links are
        not supported the bytes are copied. The rename is made durable by the directory fsync of
        the snapshot write that follows.
        """
        tmp = temp_path_for(self.backup_path)
        try:
            os.link(self.snapshot_path, tmp)
        except OSError:
            data = _read_bytes(self.snapshot_path)
            if data is None:
                return
            atomic_write_bytes(self.backup_path, data)
            return
        os.replace(tmp, self.backup_path)

    def _make_directory(self) -> None:
        """Create the state directory (durably) if it does not exist yet."""
        if self.path.is_dir():
            return
        missing = []
        directory = self.path.absolute()
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        self.path.mkdir(parents=True, exist_ok=True)
        for created in reversed(missing):
            fsync_directory(created.parent)

    # ------------------------------------------------------------------------------------------
    # Reading

    def _read(self) -> State | None:
        """Snapshot plus log replay, or None for an empty directory; resets what the store has persisted."""
        self._persisted = None
        with gc_paused():
            return self._read_files()

    def _read_files(self) -> State | None:
        """The body of _read."""
        data = _read_bytes(self.snapshot_path)
        if data is None:
            if self.backup_path.exists():
                raise StateCorruptError(
                    f"{self.snapshot_path} is missing but {self.backup_path} exists: inspect the backup and, "
                    f"if it is good, restore it with `cp {self.backup_path} {self.snapshot_path}` "
                    f"(the log {self.log_path.name} only applies to the snapshot it names); "
                    "refusing to start a new state over it"
                )
            if self.log_path.exists():
                raise StateCorruptError(
                    f"{self.snapshot_path} is missing but {self.log_path} exists, and a log cannot be "
                    "replayed without its snapshot: restore the snapshot, or move the directory away to "
                    "start a new state; refusing to start a new state over it"
                )
            self._snapshot_sha = None
            self._snapshot_id = None
            self._log_size = None
            self._log_records = 0
            self._last_record = None
            return None

        source = str(self.snapshot_path)
        try:
            snapshot = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise StateCorruptError(f"{source} is not valid JSON: {_one_line(error)}") from error
        check_schema_version(snapshot, source=source)
        snapshot_id = _file_id(self.snapshot_path)
        sha = hashlib.sha256(data).hexdigest()
        records, log_size = self._read_log(sha)
        for line_number, record in records:
            self._replay(snapshot, record, f"{self.log_path} line {line_number}")
        if records:
            source = f"{self.snapshot_path} with {self.log_path} replayed"
        migrated = snapshot.get("schema_version") != SCHEMA_VERSION  # an older schema, brought up to date
        state = state_from_dict(snapshot, source=source)

        self._snapshot_sha = sha
        self._snapshot_id = snapshot_id
        self._log_size = log_size
        self._own_tail = (
            self._log_file_size if log_size is not None and self._log_file_size > log_size else None
        )
        self._log_records = len(records)
        self._last_record = None
        # A migrated state is written as a fresh snapshot on the next save: log records of the new
        # schema never follow a snapshot of the old one.
        self._persisted = None if migrated else _Persisted.of(state)
        return state

    def _read_log(self, snapshot_sha: str) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
        """The log's delta records with their line numbers, and the size of its valid part.

        The size is None when there is no usable log for this snapshot (missing, empty, or stale
        after a compaction that crashed before replacing it): the next save starts a fresh one.
        """
        raw = _read_bytes(self.log_path)
        self._log_file_size = len(raw) if raw else 0
        if not raw:
            return [], None
        records: list[tuple[int, dict[str, Any]]] = []
        position = 0
        line_number = 0
        has_header = False
        while position < len(raw):
            end = raw.find(b"\n", position)
            if end == -1:
                break  # unterminated last line: a torn append, not written as far as save knows
            line_number += 1
            where = f"{self.log_path} line {line_number}"
            try:
                record = orjson.loads(raw[position:end])
            except orjson.JSONDecodeError as error:
                if end + 1 == len(raw):
                    break  # torn last line
                raise StateCorruptError(f"{where} is not valid JSON: {_one_line(error)}") from error
            if not isinstance(record, dict):
                raise StateCorruptError(f"{where} is not a log record: expected a JSON object")
            if line_number == 1:
                if record.get("kind") != "header" or type(record.get("format")) is not int:
                    raise StateCorruptError(f"{where} is not a state log header")
                if record["format"] > LOG_FORMAT:
                    raise SchemaVersionError(
                        f"{self.log_path} has log format {record['format']}, but this tradeexecutor reads "
                        f"format {LOG_FORMAT} at most; upgrade tradeexecutor to use this state"
                    )
                if record.get("snapshot_sha256") != snapshot_sha:
                    return [], None  # stale: written for an older snapshot, which has been replaced
                has_header = True
            elif record.get("kind") != "delta":
                raise StateCorruptError(f"{where} is not a log record: kind is {record.get('kind')!r}")
            else:
                records.append((line_number, record))
            position = end + 1
        if not has_header:
            return [], None  # only a torn first line: nothing was ever appended
        return records, position

    @staticmethod
    def _replay(snapshot: dict[str, Any], record: dict[str, Any], where: str) -> None:
        """Apply one delta record to the snapshot dict in place."""
        try:
            head = dict(record["head"])
            check_schema_version(head, source=where)
            portfolio = snapshot["portfolio"]
            portfolio.update(head.pop("portfolio"))
            snapshot.update(head)
            for key in ("closed_positions", "failed_positions"):
                part = record[key]
                items = portfolio.setdefault(key, [])
                if part["from"] != len(items):
                    raise StateCorruptError(
                        f"{where} adds {key} from index {part['from']} but {len(items)} are known; "
                        "the log does not belong to this snapshot"
                    )
                if not isinstance(part["add"], list):
                    raise TypeError(f"{key} add is not a list")
                items.extend(part["add"])
            valuations = snapshot.setdefault("valuations", {})
            for name, part in record["valuations"].items():
                column = valuations.setdefault(name, [])
                start = part["from"]
                if type(start) is not int or not 0 <= start <= len(column):
                    raise StateCorruptError(
                        f"{where} adds valuation rows from index {start!r} but {len(column)} are known; "
                        "the log does not belong to this snapshot"
                    )
                if not isinstance(part["rows"], list):
                    raise TypeError(f"valuation column {name!r} rows is not a list")
                del column[start:]
                column.extend(part["rows"])
        except StateError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            detail = f"missing field {error.args[0]!r}" if isinstance(error, KeyError) else _one_line(error)
            raise StateCorruptError(f"{where} is not a valid log record: {detail}") from error


class InMemoryStateStore:
    """In-memory twin of StateStore for tests and backtests: same interface, same codec, no files.

    It keeps the last saved state as encoded bytes, so ``load`` returns an independent copy
    exactly as a reload from disk would, and encoding problems show up in tests and backtests
    too. Every save encodes the whole state: meant for small states or rare saves.
    """

    #: Name used in error messages.
    source = "in-memory state store"

    def __init__(self) -> None:
        #: What a full snapshot file would contain; None before the first save. Tests may tamper with it.
        self.data: bytes | None = None

    def __repr__(self) -> str:
        return "InMemoryStateStore()"

    def exists(self) -> bool:
        """True once a state has been saved."""
        return self.data is not None

    def load(self) -> State | None:
        """A fresh copy of the last saved state, or None."""
        if self.data is None:
            return None
        return loads_state(self.data, source=self.source)

    def save(self, state: State) -> None:
        """Replace the stored state."""
        self.data = dumps_state(state)

    def save_snapshot(self, state: State) -> None:
        """Same as save: an in-memory store holds only snapshots."""
        self.save(state)

"""The run registry: one SQLite file per runs folder listing every run, its unique ref, status and executor.

``<runs_dir>/registry.sqlite`` holds one row per run. It runs in WAL mode with a busy timeout,
and every change happens inside ``BEGIN IMMEDIATE`` (the write lock is taken at the start, so two
runner commands never interleave a read-modify-write), which makes concurrent ``tradeexecutor
runs`` commands safe. Refs are UNIQUE. The registry transaction also serialises the writes of
each run's ``metadata.json`` (see :mod:`tradeexecutor.runs.run`).

Example::

    registry = Registry(Path("runs"))
    with registry.transaction():
        registry.insert(RunRecord(id="r20240501-120000-a1b2", ref="sma", name="SMA", mode="backtest",
                                  status="new", created_at="2024-05-01T12:00:00+00:00"))
    registry.resolve("sma").id
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tradeexecutor.errors import NotFoundError, TradeExecutorError, UserInputError
from tradeexecutor.layout import REGISTRY_FILE

__all__ = ["RUN_ID_PATTERN", "Registry", "RegistryError", "RunRecord", "RunsError", "UnknownRunError", "check_ref",
           "read_rows"]

#: Milliseconds a command waits for another one's write lock before failing.
BUSY_TIMEOUT_MS = 30_000
#: Run ids: ``r`` + UTC date and time + 4 random hex digits, e.g. ``r20240501-120000-a1b2`` (sortable).
RUN_ID_PATTERN = re.compile(r"^r\d{8}-\d{6}-[0-9a-f]{4}$")
#: Refs a person may choose: a letter, then letters, digits, ``.``, ``_`` or ``-`` (at most 64).
REF_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    ref TEXT UNIQUE,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    pid INTEGER,
    port INTEGER
);
"""


class RunsError(UserInputError):
    """A runner command cannot do what was asked (unknown run, taken ref, wrong status): exit 2."""


class UnknownRunError(RunsError, NotFoundError):
    """No run has the id or ref asked for: exit 2, and 404 from the runner API."""


class RegistryError(TradeExecutorError):
    """The registry file cannot be used (locked for too long, not a database): exit 1."""

    exit_code = 1


@dataclass(frozen=True)
class RunRecord:
    """One row of the registry."""

    #: The run id (also the run folder's name).
    id: str
    #: The unique name a person chose, or None.
    ref: str | None
    #: Label: the spec's name or the strategy's.
    name: str
    #: backtest, replay, paper or live.
    mode: str
    #: new, starting, running, complete, stopped or error.
    status: str
    #: ISO time of creation (UTC).
    created_at: str
    #: ISO time of the last change.
    updated_at: str = ""
    #: Process running the run (the supervisor of a replay or paper run, the runner of a backtest), while it runs.
    pid: int | None = None
    #: Webhook port of a replay or paper run's executor.
    port: int | None = None

    @property
    def label(self) -> str:
        """The ref when there is one, else the id."""
        return self.ref or self.id


_COLUMNS = tuple(f.name for f in fields(RunRecord))


def check_ref(ref: str) -> str:
    """A valid ref, or RunsError saying what a ref may look like."""
    if not isinstance(ref, str) or not REF_PATTERN.match(ref):
        raise RunsError(f"ref {ref!r} is not valid: start with a letter, then letters, digits, '.', '_' or '-' "
                        "(at most 64 characters)")
    if RUN_ID_PATTERN.match(ref):
        raise RunsError(f"ref {ref!r} looks like a run id; choose another")
    return ref


class Registry:
    """The runs of one runs folder; open one per command (connections are not shared across threads)."""

    def __init__(self, runs_dir: Path) -> None:
        #: The runs folder.
        self.runs_dir = Path(runs_dir)
        #: The SQLite file.
        self.path = self.runs_dir / REGISTRY_FILE
        self._conn: sqlite3.Connection | None = None
        self._depth = 0

    # -- connection ------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            try:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(_SCHEMA)
                conn.execute("COMMIT")
                break
            except sqlite3.OperationalError as exc:
                conn.close()
                if "locked" in str(exc) and time.monotonic() < deadline:  # first-time setup by many at once
                    time.sleep(0.05)
                    continue
                raise RegistryError(f"{self.path}: cannot open the run registry: {exc}") from None
            except sqlite3.DatabaseError as exc:
                conn.close()
                raise RegistryError(f"{self.path}: not a run registry: {exc}") from None
        conn.row_factory = sqlite3.Row
        self._conn = conn
        return conn

    def close(self) -> None:
        """Close the connection (it reopens on the next call)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Registry]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any error); nested calls join the outer one."""
        conn = self._connect()
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise RegistryError(f"{self.path}: the run registry stayed locked for {BUSY_TIMEOUT_MS // 1000}s "
                                f"by another command: {exc}") from None
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            conn.execute("ROLLBACK")
            raise
        self._depth = 0
        conn.execute("COMMIT")

    # -- rows ------------------------------------------------------------------------------------

    def insert(self, record: RunRecord) -> None:
        """Add a run; RunsError when its ref is taken (sqlite3.IntegrityError when its id is)."""
        conn = self._connect()
        if record.ref is not None:
            owner = self.find_ref(record.ref)
            if owner is not None:
                raise RunsError(f"ref {record.ref!r} is taken by run {owner.id} ({owner.status}); choose another "
                                "ref, or pass --upsert to update that run while it is new")
        placeholders = ", ".join("?" for _ in _COLUMNS)
        values = [getattr(record, name) for name in _COLUMNS]
        values[_COLUMNS.index("updated_at")] = record.updated_at or record.created_at
        conn.execute(f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values)

    def update(self, run_id: str, **values: Any) -> None:
        """Change columns of one run (``updated_at`` is set by the caller when wanted)."""
        unknown = set(values) - set(_COLUMNS) - {"id"}
        if unknown or "id" in values:
            raise ValueError(f"cannot update {sorted(unknown | ({'id'} & set(values)))}")
        if not values:
            return
        assignments = ", ".join(f"{name} = ?" for name in values)
        try:
            cursor = self._connect().execute(f"UPDATE runs SET {assignments} WHERE id = ?",
                                             [*values.values(), run_id])
        except sqlite3.IntegrityError:
            ref = values.get("ref")
            raise RunsError(f"ref {ref!r} is taken by another run; choose another") from None
        if cursor.rowcount != 1:
            raise RunsError(f"no run {run_id} in {self.path}")

    def delete(self, run_id: str) -> None:
        """Forget a run (its folder is the caller's business)."""
        self._connect().execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def get(self, run_id: str) -> RunRecord | None:
        """The run with this id, or None."""
        row = self._connect().execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _record(row) if row is not None else None

    def find_ref(self, ref: str) -> RunRecord | None:
        """The run with this ref, or None."""
        row = self._connect().execute("SELECT * FROM runs WHERE ref = ?", (ref,)).fetchone()
        return _record(row) if row is not None else None

    def find(self, ref_or_id: str) -> RunRecord | None:
        """The run with this id or ref (ids first), or None."""
        return self.get(ref_or_id) or self.find_ref(ref_or_id)

    def resolve(self, ref_or_id: str) -> RunRecord:
        """The run with this id or ref; RunsError naming what was looked for otherwise."""
        record = self.find(ref_or_id)
        if record is None:
            raise UnknownRunError(f"no run with id or ref {ref_or_id!r} in {self.runs_dir} "
                            "(`tradeexecutor runs ls` lists them)")
        return record

    def all(self) -> list[RunRecord]:
        """Every run, oldest first (ids sort by creation time)."""
        rows = self._connect().execute("SELECT * FROM runs ORDER BY id").fetchall()
        return [_record(row) for row in rows]


def read_rows(runs_dir: Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """``columns`` of every run, oldest first, read without creating, migrating or locking anything.

    For readers beside the runner commands (the wallboard's fleet list): the registry is opened
    with SQLite's ``mode=ro``, so a missing registry is an empty list and is never created.
    RegistryError when the file cannot be opened or read.
    """
    unknown = set(columns) - set(_COLUMNS) - {"id"}
    if unknown:
        raise ValueError(f"no registry columns {sorted(unknown)}")
    path = runs_dir / REGISTRY_FILE
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    except sqlite3.Error as exc:
        raise RegistryError(f"{path}: cannot open the run registry: {exc}") from None
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(f"SELECT {', '.join(columns)} FROM runs ORDER BY id").fetchall()
        return [dict(row) for row in rows]
    except sqlite3.Error as exc:
        raise RegistryError(f"{path}: cannot read the run registry: {exc}") from None
    finally:
        conn.close()


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(**{name: row[name] for name in _COLUMNS})

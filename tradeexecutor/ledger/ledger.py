"""Ledger: one executor's state and journal in one SQLite file, each job committed in one transaction.

The engine and the loop keep mutating one in-memory State; :meth:`Job.commit` works out what
changed since the last commit (like the JSON store did) and writes only that, together with the
job's journal lines, in one transaction (WAL, ``synchronous=FULL``). After ``kill -9`` at any
instant the ledger holds a job entirely or not at all, and the journal never claims what the
state did not commit. What a commit writes:

- the head row (cash, counters, cursor, last completed cycle) — always, one row;
- open positions whose JSON changed, and the orders and fills of open positions that changed
  (an order row, and a fill row per new fill);
- positions that moved to the closed or failed lists since the last commit, with their orders and fills
  (a closed or failed position never changes again, so it is written once);
- valuation rows from the last persisted one on (``ValuationSeries.append`` may replace the last);
- journal lines, and the deletion of lines past the retention (``journal_keep``) — except the lines start-up reads
  back (``RECALLED``), which a restart needs however long ago they were journaled.

So a job costs O(what it changed), whatever the history. A state object the ledger has not seen
(another State, a replaced list, a list that shrank) is written in full instead.

Opening never changes a file it could refuse: :func:`tradeexecutor.ledger.read.read_ledger`
checks the bytes, SQLite's own check, the schema and every row's CRC first; only then is the
file opened for writing. A new ledger is made under a temporary name and renamed into place, so
a crash while creating it leaves no half-made ledger.

Threading: one thread writes (the loop's); ``load`` may run on another thread before the loop
starts. Two processes must not share a ledger (the executor's lock file sees to that).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
import zlib
from collections.abc import Callable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from tradeexecutor.atomic import atomic_write_bytes, fsyncs_deferred, install_temp_file, temp_path_for
from tradeexecutor.errors import StateCorruptError
from tradeexecutor.kept_rows import grown
from tradeexecutor.ledger.files import LedgerFiles
from tradeexecutor.ledger.orders import RowMarks, delete_rows, insert_rows, order_rows, write_orders
from tradeexecutor.ledger.read import LedgerContent, OlderRows, read_ledger
from tradeexecutor.ledger.rows import head_json, head_row, instrument_row, position_json, position_row, valuation_rows
from tradeexecutor.ledger.schema import APPLICATION_ID, LEDGER_FORMAT, TABLES, VIEWS
from tradeexecutor.state import Portfolio, Position, State, ValuationSeries
from tradeexecutor.store.codec import dumps_state
from tradeexecutor.store.journal import encode_entry

__all__ = ["DEFAULT_JOURNAL_KEEP", "Job", "Ledger"]

#: Journal lines kept in the ledger; older lines are deleted as new ones are committed.
DEFAULT_JOURNAL_KEEP = 100_000
#: The events start-up reads back (:meth:`Ledger.journaled`) and how many of each the retention spares beyond its
#: ``journal_keep`` newest lines (None: ``journal_keep``): the last ``started`` line (the cycles the last process ran
#: on, ``check_cycle_duration``), the last ``cycle_held`` line (the cycle the exchange's lag held, ``lag_held_before``:
#: decided after a restart only while still current), and the lines of cycles missed for good (an outage, the lag), of
#: cancels asked for and of orders found lost (``missed_before``, ``cancels_asked_before``, ``lost_before``: once
#: across restarts). A
#: long-running executor journals more than ``journal_keep`` lines between restarts; deleted, a restart would not see
#: them — another --cycle-duration taken, a missed cycle decided, a line journaled twice. Kept in the journal table
#: itself (no other table: the ledger's format stays), each bounded, so the ledger stays bounded too.
RECALLED: Mapping[str, int | None] = {"started": 1, "cycle_held": 1, "cycle_missed": None,
                                      "order_cancel_requested": None, "order_lost": None}
#: The recalled events as an SQL list (constant names, never input).
_RECALLED_LIST = ", ".join(f"'{event}'" for event in RECALLED)
#: Bytes the write-ahead log is cut back to after a checkpoint (SQLite checkpoints every 1,000 pages, 4 MiB).
WAL_SIZE_LIMIT = 8 * 1024 * 1024
#: KiB of database pages the write connection keeps in its cache (SQLite's default is 2,000 KiB). A job
#: touches the right-hand edge of a few B-trees (head, journal, valuations, positions, orders, fills) and the
#: journal's left-hand edge (retention): a few dozen pages. A bigger cache only fills, page by page, with the
#: history the ledger grows by, and keeps it for good (``docs/benchmarks.md``, "What grows with the cycles").
WRITER_CACHE_KIB = 512

_UPSERT_POSITION = ("INSERT OR REPLACE INTO positions (id, list, list_index, instrument_id, opened_at, closed_at, "
                    "quantity, realised_pnl, json, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
_UPSERT_HEAD = ("INSERT OR REPLACE INTO head (id, ledger_id, job, cash, cycles_completed, last_completed_cycle, "
                "replay_cursor, json, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_UPSERT_VALUATION = "INSERT OR REPLACE INTO valuations (idx, timestamp, equity, cash, exposure, crc) VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_JOURNAL = "INSERT INTO journal (job, at, level, event, line, crc) VALUES (?, ?, ?, ?, ?, ?)"
_UPSERT_INSTRUMENT = "INSERT OR REPLACE INTO instruments (id, symbol, json, crc) VALUES (?, ?, ?, ?)"


@dataclass(slots=True)
class _Tracked:
    """What of one State object is in the ledger, so the next commit writes only the rest."""

    state: State
    portfolio: Portfolio
    valuations: ValuationSeries
    closed: Sequence[Position]
    closed_count: int
    last_closed: Position | None
    failed: list[Position]
    failed_count: int
    last_failed: Position | None
    columns: tuple[Sized, ...]
    valuation_count: int
    instrument_count: int
    #: Open position id → (list index, JSON) as written.
    open_rows: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    #: Orders and fills of open positions as written (see ledger/orders.py).
    order_rows: RowMarks = field(default_factory=dict)

    @classmethod
    def of(cls, state: State) -> _Tracked:
        """Marks for a state that has just been written or read in full."""
        p, v = state.portfolio, state.valuations
        tracked = cls(state=state, portfolio=p, valuations=v,
                      closed=p.closed_positions, closed_count=len(p.closed_positions),
                      last_closed=p.closed_positions[-1] if p.closed_positions else None,
                      failed=p.failed_positions, failed_count=len(p.failed_positions),
                      last_failed=p.failed_positions[-1] if p.failed_positions else None,
                      columns=(v.timestamp, v.equity, v.cash, v.exposure), valuation_count=len(v.timestamp),
                      instrument_count=len(state.instruments))
        for index, position in enumerate(p.open_positions):
            tracked.open_rows[position.id] = (index, position_json(position))
            write_orders(None, position, None, tracked.order_rows)  # marks only: the rows are there
        return tracked

    def extends(self, state: State) -> bool:
        """True when ``state`` is the same objects grown by appends, so only the change is written."""
        p, v = state.portfolio, state.valuations
        if state is not self.state or p is not self.portfolio or v is not self.valuations:
            return False
        for items, known, count, last in ((p.closed_positions, self.closed, self.closed_count, self.last_closed),
                                          (p.failed_positions, self.failed, self.failed_count, self.last_failed)):
            if not grown(items, known, count, last):
                return False
        columns = (v.timestamp, v.equity, v.cash, v.exposure)
        if any(a is not b or len(a) < self.valuation_count for a, b in zip(columns, self.columns)):
            return False
        return len(state.instruments) >= self.instrument_count


class Job:
    """One job's scope over the ledger: its journal lines and commits (see :meth:`Ledger.begin_job`).

    Lines journaled here, or through ``Ledger.append`` (the journal sink the engine's events go
    through) while the job runs, wait in the ledger's one buffer; each ``commit`` writes them with
    the state's changes in one transaction. Leaving the job normally commits lines still waiting
    on their own; leaving it with an exception drops them, as the changes they describe were not
    committed either.
    """

    def __init__(self, ledger: Ledger, kind: str, at: datetime) -> None:
        self.ledger = ledger
        #: What kind of job (cycle, triggers, revaluation, control, ...).
        self.kind = kind
        #: When the job started.
        self.at = at

    def journal(self, event: str, level: str, fields: Mapping[str, Any]) -> None:
        """A journal line, committed with the job's next commit (never before)."""
        self.ledger.append(event, fields, level=level)

    def commit(self, state: State | None) -> None:
        """Write what changed in ``state`` since the last commit, and the waiting lines, in one transaction."""
        if state is None:
            self.ledger.flush()
        else:
            self.ledger.save(state)

    def __enter__(self) -> Job:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.ledger.flush()
        else:
            self.ledger.discard()


class Ledger:
    """The SQLite ledger of one executor (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], *, journal_keep: int = DEFAULT_JOURNAL_KEEP,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 mirror: str | os.PathLike[str] | None = None,
                 on_commit: Callable[[str, str, Mapping[str, Any]], None] | None = None,
                 keep_closed: int | None = None, tail_valuations: bool = False) -> None:
        """Use the ledger file ``path`` (created on the first commit); nothing is read until load or commit.

        ``mirror`` names a JSON-lines file (the state directory's ``journal.jsonl``) that gets each
        committed journal line after its commit, for readers that do not open the ledger (the
        webhook's ``/logs``, ``tradeexecutor logs``, run reports). It is published, not durable: it
        is brought up to date from the ledger when the ledger is opened, and rewritten from the
        ledger's retained lines whenever ``journal_keep`` more lines were appended, so it stays bounded.

        ``on_commit`` hears each journal line once it is committed, as ``(event, level, fields)``
        (the notifier: a notification never claims what the ledger did not commit).

        ``keep_closed`` (a running executor): the loaded state's closed positions are a PackedPositions
        keeping that many as objects (state/packed.py); None: a plain list.

        ``tail_valuations`` (a running executor): the loaded state's valuation series keeps only a tail
        in memory and reads older rows back from this ledger (state/valuation.py ``TailColumn``); each
        commit lets it forget the rows it made durable (``ValuationSeries.release``). Give a new state
        :meth:`new_valuations`. False: every row in memory.
        """
        if journal_keep < 1:
            raise ValueError("journal_keep must be positive")
        #: The ledger file and its WAL companions.
        self.files = LedgerFiles(Path(path))
        #: The ledger file.
        self.path = self.files.path
        #: Journal lines kept; older ones are deleted as new ones are committed (``RECALLED`` ones apart).
        self.journal_keep = journal_keep
        #: The journal's seq up to which lines past the retention were deleted by this process (each commit deletes
        #: only from here on, not again over the recalled lines spared below it).
        self._journal_cut = 0
        #: Lines of each recalled event committed since its spared lines were last cut back to their bound.
        self._recalled_since: dict[str, int] = {}
        #: Closed positions a loaded state keeps as objects (the rest packed); None: all, in a list.
        self.keep_closed = keep_closed
        #: Whether a loaded state keeps only a tail of its valuation rows in memory.
        self.tail_valuations = tail_valuations
        #: Reads committed valuation rows back (a tail's older rows).
        self.older_valuations = OlderRows(self.files)
        #: Clock for journal lines.
        self.now = now
        #: Number of the last committed job.
        self.job = 0
        #: Identity of the ledger file, kept in its head row (a WAL from another ledger shows another).
        self.ledger_id = ""
        #: Bytes of the last commit's rows (JSON and typed values), for benchmarks.
        self.last_commit_bytes = 0
        self._conn: sqlite3.Connection | None = None
        self._read_done = False
        self._refusal: StateCorruptError | None = None
        self._tracked: _Tracked | None = None
        #: True once the head row holds a state document (read from the file or committed since).
        self._has_state = False
        self._pending: list[bytes] = []
        #: The published copy of the committed journal, or None.
        self.mirror = Path(mirror) if mirror is not None else None
        #: Hears each committed journal line: (event, level, fields).
        self.on_commit = on_commit
        self._mirror_appended = 0

    def __repr__(self) -> str:
        return f"Ledger({str(self.path)!r})"

    # -- reading ----------------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when there is a ledger (or the remains of one that load will report)."""
        return bool(self.files.existing())

    def load(self) -> State | None:
        """The committed state, integrity-checked, or None when there is no ledger yet (see read_ledger)."""
        content = self.read()
        return None if content is None else content.state

    def read(self, *, full_check: bool = False) -> LedgerContent | None:
        """Like load, with the job number and identity; after a refusal every write is refused too."""
        self.close()
        self.older_valuations.forget()  # what was read back before belongs to the state being replaced
        try:
            content = read_ledger(self.files, full_check=full_check, keep_closed=self.keep_closed,
                                  tail=self.older_valuations if self.tail_valuations else None)
        except StateCorruptError as error:
            self._refusal = error
            raise
        self._refusal = None
        self._read_done = True
        self.job = content.job if content is not None else 0
        self._has_state = content is not None
        self.ledger_id = content.ledger_id if content is not None else ""
        self._tracked = _Tracked.of(content.state) if content is not None else None
        return content

    def journaled(self, event: str) -> list[dict[str, Any]]:
        """The fields of the committed journal lines of ``event`` the ledger still keeps, oldest first: what an
        earlier process recorded, read once at start-up (a live executor's cancels asked for and not yet confirmed,
        ``Engine.cancels_asked_before``). Empty without a ledger. Only the ``RECALLED`` events outlive the retention:
        a new start-up read-back must add its event there."""
        if not self.path.exists():
            return []
        rows = self._writer().execute("SELECT line FROM journal WHERE event = ? ORDER BY seq", (event,))
        return [orjson.loads(line)["fields"] for (line,) in rows]

    # -- jobs -------------------------------------------------------------------------------------

    def new_valuations(self) -> ValuationSeries:
        """An empty valuation series for a new state: a tail over this ledger's rows when ``tail_valuations``."""
        return ValuationSeries.tail(self.older_valuations) if self.tail_valuations else ValuationSeries()

    def begin_job(self, kind: str, at: datetime) -> Job:
        """A job whose journal lines commit with its state changes: ``with ledger.begin_job(...) as job:``."""
        return Job(self, kind, at)

    def append(self, event: str, fields: Mapping[str, Any] | None = None, /, *, level: str = "info",
               at: datetime | None = None) -> None:
        """A journal line for the next ``save`` or ``flush`` (the shape of ``Journal.append``, for JournalSink)."""
        self._pending.append(encode_entry(event, fields, level=level, at=at if at is not None else self.now()))

    def append_apart(self, event: str, fields: Mapping[str, Any] | None = None, /, *, level: str = "info",
                     at: datetime | None = None) -> None:
        """Commit one journal line now, on a connection of its own, apart from the lines of the running job.

        For a line another thread must get on record while the loop's job may be stuck half-way:
        the watchdog's ``crashed`` line, after which the process exits without committing that
        job. The stuck job's pending lines stay pending (and die with it); this line alone is
        committed, published to the mirror and heard by ``on_commit``. Safe from any thread; a
        ledger that does not exist yet or was refused is not written (nothing was committed to
        describe); a writer holding the database longer than ``timeout`` makes it raise.
        """
        if self._refusal is not None or not self.path.exists():
            raise StateCorruptError(f"{self.path}: no ledger to commit the {event!r} line to")
        line = encode_entry(event, fields, level=level, at=at if at is not None else self.now())
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                head_job, size = conn.execute("SELECT job, length(json) FROM head").fetchone()
                job = int(head_job) + 1
                if size:  # as commit(): no state yet keeps the head at job 0 with no document
                    conn.execute("UPDATE head SET job = ?", (job,))
                self._write_journal(conn, job, [line])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()
        if size:
            self.job = max(self.job, job)
        if self.mirror is not None:
            with open(self.mirror, "ab") as f:
                f.write(line)
        if self.on_commit is not None:
            entry = orjson.loads(line)
            self.on_commit(entry["event"], entry["level"], entry["fields"])

    def save(self, state: State) -> None:
        """Commit ``state``'s changes with the journal lines pending (the StateStore interface)."""
        lines, self._pending = self._pending, []
        self.commit(state, lines)

    def flush(self) -> None:
        """Commit pending journal lines on their own (events that changed no state)."""
        if self._pending:
            lines, self._pending = self._pending, []
            self.commit(None, lines)

    def discard(self) -> None:
        """Drop pending journal lines: the job they describe failed and committed nothing."""
        self._pending = []

    def commit(self, state: State | None, lines: list[bytes]) -> None:
        """One transaction: the state's changes (None: none) and ``lines``, encoded by encode_entry."""
        conn = self._writer()
        tracked = self._tracked
        full = state is not None and (tracked is None or not tracked.extends(state))
        conn.execute("BEGIN IMMEDIATE")
        try:
            written = 0
            new_tracked: _Tracked | None = tracked
            if state is not None:
                if full:
                    written, new_tracked = self._write_all(conn, state)
                else:
                    assert tracked is not None
                    written, new_tracked = self._write_changes(conn, state, tracked)
            job = self.job + 1
            if state is not None:
                data = head_json(state)
                conn.execute(_UPSERT_HEAD, head_row(state, self.ledger_id, job, data))
                written += len(data)
            elif self._has_state:
                conn.execute("UPDATE head SET job = ?", (job,))
            # else no state is committed yet (start-up's journal lines, or a crash's before the first
            # save): the head keeps job 0 and no document, which tells a reader "no state yet" (a job
            # number without a document would read as a damaged head); the lines carry the number the
            # first state commit will have.
            written += self._write_journal(conn, job, lines)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._tracked = None  # what is durable is no longer known: the next commit writes everything
            raise
        if state is not None or self._has_state:
            self.job = job
            self._has_state = True
        self._tracked = new_tracked
        self.last_commit_bytes = written
        if state is not None and new_tracked is not None:
            state.valuations.release(new_tracked.valuation_count)  # a tail forgets what is durable now
        self.older_valuations.forget()  # and what the last job's readers read back
        if lines and self.mirror is not None:
            self._publish_lines(conn, lines)
        if lines and self.on_commit is not None:
            for line in lines:
                entry = orjson.loads(line)
                self.on_commit(entry["event"], entry["level"], entry["fields"])

    # -- the published journal ---------------------------------------------------------------------

    def _publish_lines(self, conn: sqlite3.Connection, lines: list[bytes]) -> None:
        """Append committed lines to the mirror; rewrite it from the ledger once it has grown by journal_keep."""
        assert self.mirror is not None
        self._mirror_appended += len(lines)
        if self._mirror_appended > self.journal_keep:
            self._rewrite_mirror(conn)
            return
        with open(self.mirror, "ab") as f:
            f.write(b"".join(lines))

    def _rewrite_mirror(self, conn: sqlite3.Connection) -> None:
        """The mirror replaced by the ledger's retained journal lines."""
        assert self.mirror is not None
        data = b"".join(line for (line,) in conn.execute("SELECT line FROM journal ORDER BY seq"))
        atomic_write_bytes(self.mirror, data)
        self._mirror_appended = 0

    def _sync_mirror(self, conn: sqlite3.Connection) -> None:
        """Bring the mirror up to date: lines committed but not yet published (a kill -9 came between) are added."""
        assert self.mirror is not None
        last = _last_line(self.mirror)
        if last is None:
            if conn.execute("SELECT 1 FROM journal LIMIT 1").fetchone() is not None or self.mirror.exists():
                self._rewrite_mirror(conn)
            return
        row = conn.execute("SELECT max(seq) FROM journal WHERE line = ?", (last,)).fetchone()
        if row[0] is None:
            if conn.execute("SELECT 1 FROM journal LIMIT 1").fetchone() is not None:
                self._rewrite_mirror(conn)  # not ours, or older than what the ledger keeps
            return
        missing = [line for (line,) in conn.execute("SELECT line FROM journal WHERE seq > ? ORDER BY seq", row)]
        if missing:
            with open(self.mirror, "ab") as f:
                f.write(b"".join(missing))

    def close(self) -> None:
        """Commit pending journal lines, then close (SQLite checkpoints and removes the WAL)."""
        try:
            if self._refusal is None and self._read_done:
                self.flush()
        finally:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def export_json(self, state: State) -> bytes:
        """The state as the JSON the dataclasses-json model reads (``/state``, artifacts, state export)."""
        return dumps_state(state)

    # -- writing ----------------------------------------------------------------------------------

    def _writer(self) -> sqlite3.Connection:
        """The write connection, opened after the ledger was read and checked (or created)."""
        if self._refusal is not None:
            raise StateCorruptError(f"not writing: {self._refusal}")
        if self._conn is not None:
            return self._conn
        if not self._read_done:
            self.read()
        if not self.path.exists():
            self._create()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        # A ledger built in a folder nobody sees yet (a sweep's full run, atomic.deferred_fsyncs) leaves its
        # syncs to the folder's one pass, which fsyncs the database and its WAL; anywhere else, every commit.
        deferred = fsyncs_deferred(self.path, f"{self.path}-wal")
        conn.execute(f"PRAGMA synchronous = {'OFF' if deferred else 'FULL'}")
        # SQLite reuses a WAL from its start after each checkpoint but never shrinks it: one large
        # job (the first commit of a long history) would leave its size on disk until the executor stops.
        conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
        if mode != "wal":
            conn.close()
            raise StateCorruptError(f"{self.path}: cannot use write-ahead logging (journal mode {mode})")
        self.ledger_id = str(conn.execute("SELECT ledger_id FROM head").fetchone()[0])
        self._conn = conn
        if self.mirror is not None:
            self._sync_mirror(conn)
        return conn

    def _create(self) -> None:
        """Make an empty ledger under a temporary name, then rename it into place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(self.path)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode = OFF")  # a temporary file: no rollback journal beside it
                if fsyncs_deferred():  # install_temp_file's fsync, in the pass (see _writer)
                    conn.execute("PRAGMA synchronous = OFF")
                conn.execute("BEGIN")
                ledger_id = self._initialise(conn)
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
            install_temp_file(tmp, self.path)
        except BaseException:
            for leftover in (tmp, f"{tmp}-wal", f"{tmp}-shm", f"{tmp}-journal"):
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    pass
            raise
        self.ledger_id = ledger_id
        self._tracked = None
        self._has_state = False

    def _initialise(self, conn: sqlite3.Connection) -> str:
        """The format, schema, identity and empty head row of a new ledger, in ``conn``'s open transaction; its id."""
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {LEDGER_FORMAT}")
        for sql in (*TABLES.values(), *VIEWS.values()):
            conn.execute(sql)
        ledger_id = uuid.uuid4().hex
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
            ("ledger_id", ledger_id), ("created_at", self.now().isoformat())])
        conn.execute("INSERT INTO head (id, ledger_id, job, json, crc) VALUES (1, ?, 0, x'', 0)", (ledger_id,))
        return ledger_id

    def write_new(self, state: State) -> None:
        """Write ``state`` as the first job of this ledger, which must not exist yet: built in memory, one file write.

        For a ledger written once (a backtest run's state): the file :meth:`save` then :meth:`close` leave on a new
        ledger — the same format, schema, identity, head (job 1) and rows, in WAL mode with no WAL pending — without
        a temporary database, a write-ahead log, a checkpoint copying it back, or their fsyncs. The file is put in
        place as :func:`~tradeexecutor.atomic.atomic_write_bytes` puts any (durable, or in a deferred pass).
        StateCorruptError when there is a ledger (or its remains) already; ValueError with journal lines pending.
        Without ``sqlite3.Connection.serialize`` (some Python/SQLite builds lack it) it is :meth:`save` then :meth:`close`.
        """
        if self._pending or self.mirror is not None or self.on_commit is not None:
            raise ValueError("write_new writes a state alone: no journal lines, mirror or listener")
        if self.files.existing():
            raise StateCorruptError(f"{self.path}: a ledger is already there; not writing a new one over it")
        conn = sqlite3.connect(":memory:", isolation_level=None)
        if not hasattr(conn, "serialize"):  # a Python whose SQLite lacks sqlite3_serialize: the same file, the long way
            conn.close()
            self.save(state)
            self.close()
            return
        try:
            conn.execute("BEGIN")
            ledger_id = self._initialise(conn)
            written, _ = self._write_all(conn, state)
            data = head_json(state)
            conn.execute(_UPSERT_HEAD, head_row(state, ledger_id, 1, data))
            conn.execute("COMMIT")
            image = bytearray(conn.serialize())
        finally:
            conn.close()
        image[18] = image[19] = 2  # the file format's write and read versions: 2 is WAL mode (as _writer sets it)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, image)
        self.ledger_id, self.job, self.last_commit_bytes = ledger_id, 1, written + len(data)
        self._read_done, self._has_state, self._tracked, self._refusal = True, True, None, None

    def _write_all(self, conn: sqlite3.Connection, state: State) -> tuple[int, _Tracked]:
        """Replace every state row with ``state``'s."""
        for table in ("instruments", "positions", "orders", "fills", "valuations"):
            conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        written = 0
        conn.executemany(_UPSERT_INSTRUMENT, [instrument_row(i) for i in state.instruments])
        p = state.portfolio
        # Every row of a table in one executemany (a full run's 30 positions: 150 statements fewer).
        positions: list[tuple[Any, ...]] = []
        orders: list[tuple[Any, ...]] = []
        fills: list[tuple[Any, ...]] = []
        for where, items in (("open", p.open_positions), ("closed", p.closed_positions),
                             ("failed", p.failed_positions)):
            for index, position in enumerate(items):
                data = position_json(position)
                positions.append(position_row(position, where, index, data))
                written += len(data) + order_rows(position, None, None, orders, fills)
        conn.executemany(_UPSERT_POSITION, positions)
        insert_rows(conn, orders, fills)
        v = state.valuations
        conn.executemany(_UPSERT_VALUATION, valuation_rows(v))
        written += 32 * len(v.timestamp)
        return written, _Tracked.of(state)

    @staticmethod
    def _write_position(conn: sqlite3.Connection, position: Position, where: str, index: int, data: bytes,
                        known: RowMarks | None, written_rows: RowMarks | None = None) -> int:
        """Upsert a position row and those of its orders and fills not already written as they are."""
        conn.execute(_UPSERT_POSITION, position_row(position, where, index, data))
        return len(data) + write_orders(conn, position, known, written_rows)

    def _write_changes(self, conn: sqlite3.Connection, state: State, tracked: _Tracked) -> tuple[int, _Tracked]:
        """Write what changed since ``tracked``; the new marks (applied only once the transaction commits)."""
        p, v = state.portfolio, state.valuations
        written = 0
        if len(state.instruments) != tracked.instrument_count:
            conn.executemany(_UPSERT_INSTRUMENT, [instrument_row(i) for i in state.instruments])
        open_rows: dict[int, tuple[int, bytes]] = {}
        order_rows: RowMarks = {}
        for index, position in enumerate(p.open_positions):
            data = position_json(position)
            open_rows[position.id] = (index, data)
            if tracked.open_rows.get(position.id) == (index, data):
                # The position row is unchanged; its orders and fills may still have changed.
                written += write_orders(conn, position, tracked.order_rows, order_rows)
                continue
            written += self._write_position(conn, position, "open", index, data, tracked.order_rows, order_rows)
        moved: set[int] = set()
        moved_rows: set[tuple[str, int]] = set()
        for where, items, count in (("closed", p.closed_positions, tracked.closed_count),
                                    ("failed", p.failed_positions, tracked.failed_count)):
            for index in range(count, len(items)):
                position = items[index]
                moved.add(position.id)
                written += self._write_position(conn, position, where, index, position_json(position),
                                                tracked.order_rows)
                moved_rows.update(("order", o.id) for o in position.orders)
                moved_rows.update(("fill", f.id) for o in position.orders for f in o.fills)
        gone = [pid for pid in tracked.open_rows if pid not in open_rows and pid not in moved]
        conn.executemany("DELETE FROM positions WHERE id = ?", [(pid,) for pid in gone])
        delete_rows(conn, (key for key in tracked.order_rows if key not in order_rows and key not in moved_rows))
        start = max(tracked.valuation_count - 1, 0)
        rows = valuation_rows(v, start)
        conn.executemany(_UPSERT_VALUATION, rows)
        written += 32 * len(rows)
        new = _Tracked(state=state, portfolio=p, valuations=v,
                       closed=p.closed_positions, closed_count=len(p.closed_positions),
                       last_closed=p.closed_positions[-1] if p.closed_positions else None,
                       failed=p.failed_positions, failed_count=len(p.failed_positions),
                       last_failed=p.failed_positions[-1] if p.failed_positions else None,
                       columns=tracked.columns, valuation_count=len(v.timestamp),
                       instrument_count=len(state.instruments), open_rows=open_rows, order_rows=order_rows)
        return written, new

    def _write_journal(self, conn: sqlite3.Connection, job: int, lines: list[bytes]) -> int:
        """Insert the job's journal lines and delete those past the retention."""
        if not lines:
            return 0
        rows = []
        for line in lines:
            entry = orjson.loads(line)
            rows.append((job, entry["at"], entry["level"], entry["event"], line, zlib.crc32(line)))
        conn.executemany(_INSERT_JOURNAL, rows)
        last = conn.execute("SELECT max(seq) FROM journal").fetchone()[0]
        cut = last - self.journal_keep
        if cut > self._journal_cut:
            conn.execute(f"DELETE FROM journal WHERE seq > ? AND seq <= ? AND event NOT IN ({_RECALLED_LIST})",
                         (self._journal_cut, cut))
            self._journal_cut = cut
        for row in rows:
            if row[3] in RECALLED:
                self._recalled_since[row[3]] = self._recalled_since.get(row[3], 0) + 1
        for event, since in list(self._recalled_since.items()):
            # Spared below the cut: only the newest ``spare``. That scans the journal, so it runs once per tenth of
            # ``spare`` new lines of the event (at most ``spare`` + a tenth stay): not per line of a long outage.
            spare = RECALLED[event] or self.journal_keep
            if since >= max(1, spare // 10):
                conn.execute("DELETE FROM journal WHERE event = ? AND seq <= ? AND seq NOT IN (SELECT seq FROM journal "
                             "WHERE event = ? ORDER BY seq DESC LIMIT ?)", (event, cut, event, spare))
                del self._recalled_since[event]
        return sum(len(line) for line in lines)


def _last_line(path: Path) -> bytes | None:
    """The last complete line of a file (newline included), None when it has none; a torn tail is cut off."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - 256 * 1024)
            f.seek(start)
            tail = f.read()
            end = tail.rfind(b"\n")
            if end + 1 != len(tail):
                f.truncate(start + end + 1)  # a torn publication: the line is committed and comes again
            if end < 0:
                return None
            begin = tail.rfind(b"\n", 0, end) + 1
            return tail[begin:end + 1] if begin > 0 or start == 0 else None
    except FileNotFoundError:
        return None

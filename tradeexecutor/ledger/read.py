"""Reading a ledger without changing anything: file checks, SQLite's own check, the schema, every row's CRC.

:func:`read_ledger` never opens the ledger for writing and never creates a file beside it. When no
WAL is pending the file is opened ``immutable`` (no locks, no ``-shm``); when one is (a process
was killed), the file and its WAL are copied to a temporary folder and the copy is opened, so
SQLite's WAL recovery happens there. The identity in the head row (``ledger_id``, rewritten by
every commit, so every WAL carries it) must equal the one in ``meta`` (written once, so it stays in
the main file): a WAL from another ledger is refused.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import threading
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tradeexecutor.errors import StateCorruptError, TemporaryError
from tradeexecutor.ledger.files import RECOVER, LedgerFiles, check_files
from tradeexecutor.ledger.orders import read_orders
from tradeexecutor.ledger.rows import (
    HEAD_OPTIONAL_KEYS,
    HEAD_PORTFOLIO_KEYS,
    HEAD_STATE_KEYS,
    checked_json,
    valuation_crc,
)
from tradeexecutor.ledger.schema import APPLICATION_ID, LEDGER_FORMAT, TABLES, VIEWS
from tradeexecutor.state import PackedPositions, Portfolio, Position, RiskState, State, ValuationSeries
from tradeexecutor.state.timestamps import decode_datetime
from tradeexecutor.state.valuation import ROWS_BLOCK, Older, TailColumn
from tradeexecutor.store.codec import check_schema_version, gc_paused, instrument_from_dict, position_from_dict

__all__ = ["LedgerContent", "OlderRows", "read_ledger", "reader", "refused_as_damaged"]


def _valuations(conn: sqlite3.Connection, tail: Older | None) -> ValuationSeries:
    """Every valuation row, checked; with ``tail``, only the rows a running executor's tail keeps stay in memory."""
    stamps, equity_column, cash_column, exposure_column = columns = (
        array("q"), array("d"), array("d"), array("d"))
    dropped = 0  # rows before the arrays' first (a tail's)
    previous, increasing = -(2**63), True  # whether the times strictly increase (a tail's start-up check uses it)
    for index, timestamp, equity, cash, exposure, crc in conn.execute(
            "SELECT idx, timestamp, equity, cash, exposure, crc FROM valuations ORDER BY idx"):
        if index != dropped + len(stamps) or valuation_crc(timestamp, equity, cash, exposure) != crc:
            raise ValueError(f"valuation row {index} is damaged")
        if timestamp <= previous:
            increasing = False
        previous = timestamp
        stamps.append(timestamp)
        equity_column.append(equity)
        cash_column.append(cash)
        exposure_column.append(exposure)
        if tail is not None and len(stamps) >= 4 * ROWS_BLOCK:  # never more than a few blocks while reading
            for column in columns:
                del column[:2 * ROWS_BLOCK]
            dropped += 2 * ROWS_BLOCK
    valuations = ValuationSeries(*columns)
    if tail is None:
        return valuations
    series = ValuationSeries.tail(tail, dropped, valuations)
    series.release(len(series))
    if increasing:
        assert isinstance(series.timestamp, TailColumn)
        series.timestamp.increasing_to = len(series)
    return series


@dataclass
class LedgerContent:
    """What a ledger holds: the state, the last job's number and the ledger's identity."""

    state: State
    job: int
    ledger_id: str
    journal_lines: int


def _uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quote(str(path.absolute()))}?{query}"


@contextmanager
def reader(files: LedgerFiles) -> Iterator[sqlite3.Connection]:
    """A connection that sees the committed ledger (WAL included) and cannot change the real files."""
    if not files.wal_pending():
        conn = sqlite3.connect(_uri(files.path, mode="ro", immutable="1"), uri=True)
        try:
            yield conn
        finally:
            conn.close()
        return
    with tempfile.TemporaryDirectory(prefix="ledger-check-") as folder:
        copy = Path(folder) / files.path.name
        shutil.copyfile(files.path, copy)
        shutil.copyfile(files.wal, f"{copy}-wal")
        conn = sqlite3.connect(copy)
        try:
            conn.execute("PRAGMA query_only = 1")
            yield conn
        finally:
            conn.close()


def read_ledger(files: LedgerFiles, *, full_check: bool = False, keep_closed: int | None = None,
                tail: Older | None = None) -> LedgerContent | None:
    """The ledger's content, or None when there is no ledger; StateCorruptError/SchemaVersionError name the file.

    ``full_check`` runs ``PRAGMA integrity_check`` instead of the quicker ``quick_check``. ``keep_closed``
    (a running executor's state) reads the closed positions into a PackedPositions that keeps that many
    as objects, packing the older ones as they are read; None: a plain list. ``tail`` (a running
    executor's state, the :class:`OlderRows` of these files) keeps only the valuation rows a tail
    keeps (``ValuationSeries.release``) in memory, every row still read and checked; None: every row.
    """
    if not check_files(files):
        return None
    where = str(files.path)
    with refused_as_damaged(where), reader(files) as conn, gc_paused():
        _check_database(conn, where, full_check)
        return _content(conn, where, keep_closed, tail)


class OlderRows:
    """Reads committed valuation rows back from a ledger, each row's CRC checked: a tail's older rows (an ``Older``).

    Each read opens its own read-only connection (any thread may call; a connection kept open
    could outlive the file it opened), which sees what was committed, never a job's rows half
    written. A read fetches the four columns of its rows (the CRC covers all four) and keeps them,
    by range, for the :data:`KEPT_RANGES` ranges read last and until :meth:`forget` (the ledger
    calls it after each commit): the start-up's readers take the history a block at a time
    (``ValuationSeries.blocks``), column by column and reader after reader (the start-up's pass,
    ``daemon/publish.py``), so a block costs one query, and what is kept stays a few blocks
    whatever the history's length. A read of more than :data:`ROWS_BLOCK` rows keeps nothing.
    """

    def __init__(self, files: LedgerFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._kept: dict[tuple[int, int], dict[str, array[Any]]] = {}
        #: Queries made, rows they read back, the most rows one query read and the most rows
        #: kept at once (counts for tests and benchmarks: a pass a block at a time keeps them bounded).
        self.queries = 0
        self.rows = 0
        self.largest = 0
        self.most_kept = 0

    def forget(self) -> None:
        """Drop the columns kept from earlier reads."""
        with self._lock:
            self._kept.clear()

    def __call__(self, name: str, start: int, stop: int) -> array[Any]:
        with self._lock:
            kept = self._kept.pop((start, stop), None)
            if kept is not None:
                self._kept[(start, stop)] = kept  # read last now
                return kept[name][:]  # a copy: the caller may extend it
        columns: dict[str, array[Any]] = {"timestamp": array("q"), "equity": array("d"), "cash": array("d"),
                                          "exposure": array("d")}
        stamps, equity, cash, exposure = columns.values()
        with refused_as_damaged(str(self.files.path)):
            conn = sqlite3.connect(_uri(self.files.path, mode="ro"), uri=True)
            try:
                index = start
                for idx, timestamp, value, money, exposed, crc in conn.execute(
                        "SELECT idx, timestamp, equity, cash, exposure, crc FROM valuations "
                        "WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)):
                    if idx != index or valuation_crc(timestamp, value, money, exposed) != crc:
                        raise ValueError(f"valuation row {index} is damaged or missing")
                    stamps.append(timestamp)
                    equity.append(value)
                    cash.append(money)
                    exposure.append(exposed)
                    index += 1
            finally:
                conn.close()
            if index != stop:
                raise ValueError(f"valuation rows {index}..{stop} are missing")
        with self._lock:
            self.queries += 1
            self.rows += stop - start
            self.largest = max(self.largest, stop - start)
            if stop - start <= ROWS_BLOCK:
                self._kept[(start, stop)] = columns
                while len(self._kept) > KEPT_RANGES:  # the range read longest ago goes first
                    del self._kept[next(iter(self._kept))]
                self.most_kept = max(self.most_kept, sum(b - a for a, b in self._kept))
                return columns[name][:]
        return columns[name]


#: Ranges whose columns :class:`OlderRows` keeps (a block of four columns is 32 KiB).
KEPT_RANGES = 4


#: SQLite's primary result codes that say another connection holds the file for now: the read may be tried again.
_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
#: Those that say reading failed for a reason outside the file's content (it could not be opened: too many
#: open files; the disk, memory, permissions, an interrupt); the ledger's statements are fixed, so the other
#: codes (a malformed database, not a database, an unsupported format, a missing table) are the file's damage.
_OPERATIONAL = frozenset({
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_FULL, sqlite3.SQLITE_PERM,
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_AUTH, sqlite3.SQLITE_NOLFS,
    sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_MISUSE, sqlite3.SQLITE_INTERNAL,
})


@contextmanager
def refused_as_damaged(where: str) -> Iterator[None]:
    """Turn what reading a damaged ledger raises (SQLite's errors about its content, a wrong shape) into a
    StateCorruptError naming it.

    Only damage is reported as damage: telling the operator to recover a ledger that is fine (too many
    open files, a disk error, another connection's lock) would have them replace good rows. A busy or
    locked file is a TemporaryError (the loop tries the job again); the other operational errors, and
    the ones that carry no SQLite code (raised by Python's module itself), pass as they are.
    """
    try:
        yield
    except sqlite3.DatabaseError as error:
        code = getattr(error, "sqlite_errorcode", None)
        if not isinstance(code, int):
            raise
        primary = code & 0xFF  # an extended code keeps its primary code in the low byte
        if primary in _BUSY:
            raise TemporaryError(f"{where}: SQLite could not read it now ({error})") from error
        if primary in _OPERATIONAL:
            raise
        raise StateCorruptError(f"{where}: SQLite cannot read it ({error}); {RECOVER}") from error
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        detail = f"missing field {error.args[0]!r}" if isinstance(error, KeyError) else " ".join(str(error).split())
        raise StateCorruptError(f"{where}: damaged content ({detail}); {RECOVER}") from error


def _check_database(conn: sqlite3.Connection, where: str, full_check: bool) -> None:
    """SQLite's own check, the identity, the format and the exact schema."""
    application_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if application_id != APPLICATION_ID or version != LEDGER_FORMAT:
        raise ValueError(f"application_id {application_id:#x} / format {version} after the write-ahead log")
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check" if full_check else "PRAGMA quick_check")]
    if problems != ["ok"]:
        raise ValueError(f"SQLite's check failed: {'; '.join(problems[:3])}")
    schema = {name: sql for _type, name, sql in conn.execute(
        "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'")}
    expected = {**TABLES, **VIEWS}
    if schema != expected:
        different = sorted(set(schema.items()) ^ set(expected.items()))
        raise ValueError(f"unexpected schema ({', '.join(sorted({name for name, _ in different}))})")


def _content(conn: sqlite3.Connection, where: str, keep_closed: int | None, tail: Older | None) -> LedgerContent | None:
    """Rebuild the state from the rows, checking each row's CRC and how the rows refer to each other."""
    heads = conn.execute("SELECT id, ledger_id, job, json, crc FROM head").fetchall()
    if len(heads) != 1:
        raise ValueError(f"{len(heads)} head rows instead of 1")
    _id, ledger_id, job, data, crc = heads[0]
    meta = conn.execute("SELECT value FROM meta WHERE key = 'ledger_id'").fetchone()
    if meta is None or meta[0] != ledger_id:
        raise ValueError("the head row belongs to another ledger (a write-ahead log from another ledger?)")
    if data == b"" and crc == 0:
        # The row as created: no state committed yet. Journal-only commits (the ``started`` line)
        # may already have counted jobs, so the job number alone does not say it.
        return None
    head = checked_json(data, crc, "the head row")
    check_schema_version(head, source=where)
    state_fields = {key: head[key] for key in HEAD_STATE_KEYS}
    portfolio = Portfolio(**{key: head["portfolio"][key] for key in HEAD_PORTFOLIO_KEYS},
                          fee_asset_balances=dict(head["portfolio"].get("fee_asset_balances") or {}))
    instruments = [instrument_from_dict(checked_json(data, crc, f"instrument {i}"))
                   for i, data, crc in conn.execute("SELECT id, json, crc FROM instruments ORDER BY id")]
    orders = read_orders(conn, where, {i.id: i.quote_currency for i in instruments})
    if keep_closed is not None:
        portfolio.closed_positions = PackedPositions(keep=keep_closed)
    lists: dict[str, list[Position] | PackedPositions] = {
        "open": portfolio.open_positions, "closed": portfolio.closed_positions, "failed": portfolio.failed_positions}
    for position_id, which, index, data, crc in conn.execute(
            "SELECT id, list, list_index, json, crc FROM positions ORDER BY list, list_index"):
        d = checked_json(data, crc, f"position {position_id}")
        d.pop("orders", None)
        position = position_from_dict(d)
        position.orders = orders.pop(position_id, [])
        items = lists[which]
        if position.id != position_id or index != len(items):
            raise ValueError(f"position row {position_id} does not match its record or list order")
        items.append(position)
    if orders:
        raise ValueError(f"orders of unknown positions {sorted(orders)[:5]}")
    valuations = _valuations(conn, tail)
    state_fields["created_at"] = decode_datetime(state_fields["created_at"])
    state_fields["last_completed_cycle"] = decode_datetime(state_fields["last_completed_cycle"])
    for key in HEAD_OPTIONAL_KEYS:  # the progress time (last_bar_at): absent from older ledgers
        if head.get(key) is not None:
            state_fields[key] = decode_datetime(head[key])
    if head.get("risk") is not None:  # the risk limits' figures and pause: absent from older ledgers
        state_fields["risk"] = RiskState.from_dict(head["risk"])
    state = State(**state_fields, instruments=instruments, portfolio=portfolio, valuations=valuations)
    lines = conn.execute("SELECT count(*) FROM journal").fetchone()[0]
    return LedgerContent(state=state, job=job, ledger_id=ledger_id, journal_lines=lines)

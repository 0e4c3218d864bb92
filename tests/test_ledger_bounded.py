"""The ledger stays bounded on disk as its journal turns over: a process meant to run for months never fills its volume."""

from __future__ import annotations

import ctypes
import ctypes.util
import sqlite3
from pathlib import Path

from test_store_state_store import new_state, run_cycle
from tradeexecutor.ledger import Ledger
from tradeexecutor.ledger.ledger import WAL_SIZE_LIMIT, WRITER_CACHE_KIB

KEEP = 200
LINES_PER_JOB = 25


def journal_jobs(ledger: Ledger, jobs: int, start: int) -> None:
    """Jobs that change no state and commit only journal lines (the padding makes each line about 300 bytes)."""
    for job in range(jobs):
        for line in range(LINES_PER_JOB):
            ledger.append("revalued", {"i": start + job * LINES_PER_JOB + line, "pad": "x" * 250}, level="debug")
        ledger.flush()


def sizes(path: Path) -> tuple[int, int]:
    wal = Path(f"{path}-wal")
    return path.stat().st_size, wal.stat().st_size if wal.exists() else 0


def test_the_ledger_file_stops_growing_once_the_journal_is_past_its_retention(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, journal_keep=KEEP)
    state = new_state()
    run_cycle(state, 0)
    ledger.save(state)
    journal_jobs(ledger, 4 * KEEP // LINES_PER_JOB, 0)  # the retention filled and turned over 3 times
    ledger.close()
    settled, _ = sizes(path)
    ledger = Ledger(path, journal_keep=KEEP)
    ledger.load()
    journal_jobs(ledger, 40 * KEEP // LINES_PER_JOB, 10**6)  # ten times as many lines again
    _, wal = sizes(path)
    ledger.close()
    after, _ = sizes(path)
    conn = sqlite3.connect(path)
    try:
        kept = conn.execute("SELECT count(*) FROM journal").fetchone()[0]
        page = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    assert kept == KEEP
    assert after <= settled + 4 * page, (settled, after)  # freed pages are reused: the journal part stays its size
    assert wal <= WAL_SIZE_LIMIT + 1024 * page  # while running: at most a checkpoint's worth past the limit


def test_a_large_job_does_not_leave_a_large_write_ahead_log_behind(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, journal_keep=100_000)
    state = new_state()
    run_cycle(state, 0)
    ledger.save(state)
    # One job of about 12 MB of journal lines: its WAL frames exceed the limit.
    for line in range(40_000):
        ledger.append("revalued", {"i": line, "pad": "y" * 250}, level="debug")
    ledger.flush()
    assert sizes(path)[1] > WAL_SIZE_LIMIT
    journal_jobs(ledger, 200, 10**6)  # later small jobs: a checkpoint comes, and the WAL is cut back
    assert sizes(path)[1] <= WAL_SIZE_LIMIT
    ledger.close()


def sqlite_heap() -> int:
    """Bytes SQLite has allocated in this process now (``sqlite3_status64(SQLITE_STATUS_MEMORY_USED)``)."""
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    library = ctypes.CDLL(ctypes.util.find_library("sqlite3"))
    assert library.sqlite3_status64(0, ctypes.byref(current), ctypes.byref(highest), 0) == 0
    return current.value


def test_the_write_connection_caches_a_bounded_number_of_pages_however_much_it_wrote(tmp_path: Path) -> None:
    # A daemon's ledger grows a few hundred bytes a cycle, and every page it writes passes through the
    # write connection's cache: with SQLite's default (2,000 KiB) the process keeps that much of its history.
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, journal_keep=100_000)
    state = new_state()
    run_cycle(state, 0)
    before = sqlite_heap()
    ledger.save(state)
    for line in range(12_000):  # one job of about 3.6 MB of journal lines: many more pages than either cache holds
        ledger.append("revalued", {"i": line, "pad": "z" * 250}, level="debug")
    ledger.flush()
    journal_jobs(ledger, 20, 10**6)
    grown = sqlite_heap() - before
    conn = ledger._writer()
    cache_kib = -conn.execute("PRAGMA cache_size").fetchone()[0]
    ledger.close()
    assert path.stat().st_size > 2 * 2000 * 1024  # the history is more than twice the default cache
    assert cache_kib == WRITER_CACHE_KIB
    # The cache's pages (each with SQLite's header) plus the schema and prepared statements (about 600 KB
    # measured; 2.2 MB with SQLite's default cache) ...
    assert grown < (WRITER_CACHE_KIB + 256) * 1024, grown
    assert grown < 2000 * 1024 // 2, grown  # ... under half of what the default cache alone would keep

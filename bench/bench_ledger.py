"""Benchmark of the SQLite ledger: per-job commit cost against history, and load against dataclasses-json.

Run from the repository root::

    python bench/bench_ledger.py [--runs 3] [--jobs 50] [--sizes 100,1000,10000,100000] [--cache-kib 2000,512]

(a) Per-job commit, at each history size (closed positions of two filled orders each, 3 open ones, a
    valuation row per closed position), the sizes taking turns job by job: the median time of
    ``--jobs`` jobs, each revaluing the open
    positions, appending a valuation row and two journal lines and committing them with
    ``Ledger.save`` (one transaction, fsynced); with the bytes the commit's rows hold and the bytes
    the process handed to ``write()`` (``/proc/self/io`` wchar: WAL frames and the -shm). Goal: flat.
(b) Load of the 10,000-position ledger (``Ledger.load``: file checks, quick_check, schema, every
    row's CRC, the State rebuilt) side by side with ``State.from_json()`` of the same state's JSON,
    taking turns, median of ``--runs``. Goal: ≥ 20x.

``--cache-kib A,B`` runs (a) once per write-connection cache size (``PRAGMA cache_size``, KiB), the
ledgers of every size and cache taking turns job by job, and adds SQLite's heap after the jobs
(``sqlite3_status64(MEMORY_USED)``, all ledgers open). Uses the default configuration (``Ledger(path)``). Prints markdown tables. Not a pytest test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_state_store import build_state, median_ms  # noqa: E402

import tradeexecutor.ledger.ledger as ledger_module  # noqa: E402
from tradeexecutor.ledger import Ledger  # noqa: E402
from tradeexecutor.state import State  # noqa: E402
from tradeexecutor.store import dumps_state  # noqa: E402


def written_bytes() -> int:
    """Bytes this process has passed to write() so far."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def sqlite_heap() -> int:
    """Bytes SQLite has allocated in this process (its page caches, schemas and statements)."""
    import ctypes
    import ctypes.util

    current, highest = ctypes.c_int64(), ctypes.c_int64()
    ctypes.CDLL(ctypes.util.find_library("sqlite3")).sqlite3_status64(0, ctypes.byref(current),
                                                                       ctypes.byref(highest), 0)
    return current.value


class History:
    """One ledger of ``closed`` positions, and the state it holds, ready for jobs."""

    def __init__(self, closed: int, folder: Path, cache_kib: int | None = None) -> None:
        self.closed = closed
        self.cache_kib = cache_kib
        self.state = build_state(closed, closed)
        if cache_kib is not None:  # read when the write connection opens (the first save below)
            ledger_module.WRITER_CACHE_KIB = cache_kib
        self.ledger = Ledger(folder / f"ledger-{closed}-{cache_kib}.sqlite")
        self.ledger.save(self.state)  # the first commit writes everything
        self.times: list[float] = []
        self.rows: list[int] = []
        self.writes: list[int] = []

    def job(self, i: int) -> None:
        """Revalue, add a valuation row and two journal lines, commit; record time and bytes."""
        state = self.state
        for position in state.portfolio.open_positions:
            position.last_price = (position.last_price or 100.0) * 1.0001
        state.valuations.append(state.valuations.timestamp[-1] + 3_600_000, 1e6 + i, 5e5, 0.5)
        state.cycles_completed += 1
        self.ledger.append("revalued", {"job": i}, level="debug")
        self.ledger.append("cycle_completed", {"job": i, "decisions": 0}, level="debug")
        before = written_bytes()
        start = time.perf_counter()
        self.ledger.save(state)
        self.times.append(time.perf_counter() - start)
        self.writes.append(written_bytes() - before)
        self.rows.append(self.ledger.last_commit_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--no-load", action="store_true", help="Only the per-job commits.")
    parser.add_argument("--cache-kib", help="Comma-separated write-connection cache sizes to compare (KiB).")
    args = parser.parse_args()
    caches: list[int | None] = [int(c) for c in args.cache_kib.split(",")] if args.cache_kib else [None]
    with tempfile.TemporaryDirectory(prefix="bench-ledger-", dir=".") as tmp:
        folder = Path(tmp)
        histories = [History(int(size), folder, cache) for size in args.sizes.split(",") for cache in caches]
        for i in range(args.jobs):
            for history in histories:  # the sizes take turns, so a busy machine slows each alike
                history.job(i)
        if args.cache_kib:
            print(f"SQLite heap after the jobs, all {len(histories)} ledgers open: {sqlite_heap() / 1024:,.0f} KiB")
            print()
        print("| closed positions | cache | commit per job (median) | row bytes | bytes written |")
        print("|---:|---:|---:|---:|---:|")
        for h in histories:
            cache = "default" if h.cache_kib is None else f"{h.cache_kib:,} KiB"
            print(f"| {h.closed:,} | {cache} | {statistics.median(h.times) * 1000:.2f} ms "
                  f"| {statistics.median(h.rows):,.0f} B | {statistics.median(h.writes):,.0f} B |")
            h.ledger.close()

        if args.no_load:
            return
        state = build_state(10_000, 5_000)
        path = folder / "load.sqlite"
        ledger = Ledger(path)
        ledger.save(state)
        ledger.close()
        text = state.to_json()
        orders = list(state.portfolio.all_orders())
        fills = sum(len(o.fills) for o in orders)
        loaded = Ledger(path).load()
        assert loaded is not None and dumps_state(loaded) == dumps_state(state)
        json_ms, ledger_ms = median_ms(lambda: State.from_json(text), lambda: Ledger(path).load(), runs=args.runs)
        print()
        print(f"Load of 10,003 positions, {len(orders):,} orders, {fills:,} fills, 5,000 valuations "
              f"(ledger {path.stat().st_size / 1e6:.1f} MB, JSON {len(text) / 1e6:.1f} MB):")
        print()
        print("| operation | dataclasses-json from_json | Ledger.load | ratio | goal |")
        print("|---|---:|---:|---:|---|")
        print(f"| load | {json_ms:,.0f} ms | {ledger_ms:,.0f} ms | {json_ms / ledger_ms:.0f}x | ≥ 20x |")


if __name__ == "__main__":
    main()

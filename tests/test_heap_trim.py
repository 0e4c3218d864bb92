"""daemon/heap.py HeapTrim: between jobs, at most once a minute, the heaps' free pages go back to the system.

The mechanism is counted in a fresh interpreter (the allocator's state is process-wide): blocks of 64 KiB
(below the mmap threshold, so carved from the heap) with every other one freed leave free pages in the
middle of the heap, which glibc keeps resident; the trim gives them back, and RSS falls by about their size.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from replay_daemon import replay_daemon
from tradeexecutor.daemon import FakeClock
from tradeexecutor.daemon.heap import _GLIBC_TRIM, TRIM_SECONDS, HeapTrim
from tradeexecutor.data.bundled import load_bundled

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys
from tradeexecutor.daemon.heap import HeapTrim

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

blocks = [bytearray(b"x" * (64 * 1024)) for _ in range(800)]  # 50 MiB carved from the heap, every page touched
del blocks[::2]  # 25 MiB free in the middle: the heap's top is still in use, so nothing shrinks by itself
before = rss_kib()
trim = HeapTrim(0.0)
if sys.argv[1] == "trim":
    trim()
print(json.dumps({"freed_kib": before - rss_kib(), "trims": trim.trims, "kept": len(blocks)}))
"""


def _run(mode: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    result: dict[str, int] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(_GLIBC_TRIM is None, reason="glibc only: elsewhere there is no malloc_trim")
def test_a_trim_gives_the_heaps_free_pages_back() -> None:
    kept = _run("keep")
    trimmed = _run("trim")
    assert kept["trims"] == 0 and trimmed["trims"] == 1 and kept["kept"] == trimmed["kept"] == 400
    assert kept["freed_kib"] < 2 * 1024  # glibc keeps the 25 MiB of free pages resident
    assert trimmed["freed_kib"] > 20 * 1024  # the trim gave (nearly) all of them back


def test_it_trims_at_most_once_every_interval_and_not_at_all_without_glibc() -> None:
    now = [100.0]
    calls: list[int] = []

    def counted(pad: int) -> int:
        calls.append(pad)
        return 1

    trim = HeapTrim(60.0, monotonic=lambda: now[0], trim=counted)
    for at in (100.0, 130.0, 159.9):  # within the first minute after it was made
        now[0] = at
        trim()
    assert calls == []
    now[0] = 160.0
    trim()
    trim()  # called again at the same moment: not again
    assert calls == [0] and trim.trims == 1
    now[0] = 219.0
    trim()
    now[0] = 220.0
    trim()
    assert calls == [0, 0] and trim.trims == 2
    nothing = HeapTrim(0.0, trim=None)  # as on musl or macOS, where there is no malloc_trim
    nothing()
    assert nothing.trims == 0


def test_the_daemon_runs_its_heap_trim_after_every_scheduled_job(tmp_path: Path) -> None:
    data = tmp_path / "goog.csv"
    frame = load_bundled("stocks-daily")
    frame[frame["symbol"] == "GOOG"].drop(columns="symbol").iloc[:40].to_csv(data)
    strategy = ROOT / "strategies" / "sma_crossover.py"
    daemon, tickers = replay_daemon(strategy, tmp_path / "state", data, FakeClock(datetime(2024, 1, 1, tzinfo=UTC)))
    try:
        between = daemon.loop.between_jobs
        assert isinstance(between, HeapTrim) and between.seconds == TRIM_SECONDS
        calls: list[None] = []
        daemon.loop.between_jobs = lambda: calls.append(None)
        daemon.start_jobs()
        for _ in range(5):
            tickers[0].advance(120.0)
            daemon.loop.run_pending()
        assert len(calls) == 5 == daemon.loop.state.cycles_completed
    finally:
        daemon.close()

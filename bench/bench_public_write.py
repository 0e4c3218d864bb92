"""One write of a running executor's public files to ``public/``, against the run's history: CPU per write.

Run from the repository root (``PYTHONPATH`` picks the checkout to measure)::

    PYTHONPATH=. python bench/bench_public_write.py [--histories 1000,100000] [--writes 10]

For each history length N: the backtest of bench/strategies/sma_1m.py over N synthetic 1-minute
bars (bench_job's state), then ``--writes`` rounds of six publications (``public_files``, one
valuation row appended before each, as cycles do) followed by one write of the last
publication's files, in three ways, each into a folder of its own: the five files joined into one
``bytes`` each and all written (how the disk writer wrote them before issue 12's change), all
five written from their pieces (``write_public_files`` without a memory), and what the disk
writer does now (``write_public_files`` with its memory: only the files whose ETag changed, from
their pieces). Measured: the writing thread's CPU (``time.thread_time``) per write, median. Every
write is temp → fsync → rename → directory fsync; the kernel's copy of the bytes into new pages
is inside the thread's CPU.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.atomic import atomic_write_bytes  # noqa: E402
from tradeexecutor.backtest.runner import run_backtest  # noqa: E402
from tradeexecutor.config import EngineConfig  # noqa: E402
from tradeexecutor.data import generate_candles  # noqa: E402
from tradeexecutor.data.source import load_market  # noqa: E402
from tradeexecutor.layout import RunFiles  # noqa: E402
from tradeexecutor.state import State  # noqa: E402
from tradeexecutor.stats.trades_csv import TradesCsv  # noqa: E402
from tradeexecutor.store.publish import PublishCache, public_files, write_public_files  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

STRATEGY = ROOT / "bench" / "strategies" / "sma_1m.py"


def backtest_state(history: int, folder: Path) -> State:
    """The state after ``history`` cycles of the SMA strategy on synthetic 1-minute bars."""
    frame = generate_candles(history + 5, frequency="1m", seed=1, symbol="SYN")
    data = folder / f"candles-{history}.csv"
    frame.to_csv(data, index_label="timestamp")
    strategy = load_strategy(STRATEGY)
    market, _ = load_market([str(data)], strategy.instruments)
    prefix = market.between(None, market.step_time(history - 1))
    return run_backtest(strategy, prefix, EngineConfig(), now=datetime(2024, 1, 1, tzinfo=UTC)).state


def measure(history: int, writes: int, folder: Path) -> tuple[int, list[float], list[float], list[float]]:
    """state.json's size and the CPU seconds of each write: joined and all, pieces and all, pieces and changed only."""
    state = backtest_state(history, folder)
    cache, csv = PublishCache(), TradesCsv()
    joined, pieces, changed = (RunFiles(folder / f"{name}-{history}") for name in ("joined", "pieces", "changed"))
    joined.public.mkdir(parents=True)
    memory: dict[str, str] = {}
    times: tuple[list[float], list[float], list[float]] = ([], [], [])
    size = 0
    for write in range(writes):
        for cycle in range(6):
            state.valuations.append(int(state.valuations.timestamp[-1]) + 60_000, 1000.0 + cycle, 5.0, 0.5)
            state.cycles_completed += 1
            documents = public_files(state, changed, metadata={"history": history}, orders_csv=csv.parts,
                                     cache=cache, now=datetime(2024, 1, 1, write, cycle, tzinfo=UTC))
        started = time.thread_time()
        for name, document in documents.items():
            atomic_write_bytes(joined.public / name, b"".join(document.pieces()))
        times[0].append(time.thread_time() - started)
        started = time.thread_time()
        write_public_files(pieces, documents)
        times[1].append(time.thread_time() - started)
        started = time.thread_time()
        write_public_files(changed, documents, memory)
        times[2].append(time.thread_time() - started)
        size = changed.state_snapshot.stat().st_size
    return size, *times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", default="1000,100000")
    parser.add_argument("--writes", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}, {args.writes} writes each, checkout {ROOT}")
    with tempfile.TemporaryDirectory() as folder:
        for history in [int(h) for h in args.histories.split(",")]:
            size, joined, pieces, changed = measure(history, args.writes, Path(folder))
            print(f"after {history:>7,} cycles (state.json {size:,} B): CPU per write, median: joined, all five "
                  f"{statistics.median(joined) * 1e3:5.1f} ms; pieces, all five {statistics.median(pieces) * 1e3:5.1f} ms; "
                  f"pieces, changed only (the disk writer) {statistics.median(changed) * 1e3:5.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a running executor keeps in memory per closed position: the state's objects and the published files' caches.

Run from the repository root (``PYTHONPATH`` picks the checkout to measure)::

    PYTHONPATH=. python bench/bench_heap.py [--bars 20000]

A backtest of bench/strategies/flip_1m.py (an order every five 1-minute bars) over ``--bars``
synthetic bars makes a state of about bars / 10 closed positions (two orders and two fills each)
and a valuation row a bar; it is saved to a ledger. Measured with ``tracemalloc`` (bytes Python
allocated and still holds, a count, not a time): the state as the executor loads it from the
ledger at start-up, and the caches a running executor keeps to publish its files
(``store.publish.PublishCache`` and ``stats.trades_csv.TradesCsv``: the encoded pieces of
state.json and its gzip, positions.json and orders.csv) after two publications, next to the files'
sizes: once kept in memory, and once (on checkouts that have them) with the spill files a running
executor's caches write closed history to (``PublishCache.spilled``, ``tradeexecutor.spill``). The
state is loaded twice: with its closed positions as a plain list (as a backtest keeps them) and as
the executor loads it (``Ledger(keep_closed=...)``: a PackedPositions, state/packed.py).
Memory Python does not trace (SQLite's page cache, the allocator's free lists) is not in it.

``--daemon`` measures the whole process instead: a replay executor (``build_daemon``, the production
wiring as bench/bench_job.py builds it: ledger, journal, publisher with the public files and their
disk writer, chart renderer) resumes a ledger of ``--bars`` bars of the same backtest and runs
``--cycles`` more cycles of flip_1m on the in-memory ticker (a closed position every ten cycles),
each in a fresh interpreter, for glibc's defaults and with ``daemon.heap.return_large_blocks()`` (as
``tradeexecutor start`` calls it), interleaved ``--rounds`` times. Every 100 cycles (after the disk
writer finished) it reads VmRSS from /proc and SQLite's own memory (``sqlite3_status64``); the
*resting* RSS of a window of 1,000 cycles is its smallest sample (the joined public files, alive
for a moment after each read, are not resting memory). Reported: the resting RSS at the end and
its growth over the second half, per closed position. A count of pages, not a time::

    PYTHONPATH=. python bench/bench_heap.py --daemon --bars 20000 --cycles 10000 --rounds 2
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest.runner import run_backtest  # noqa: E402
from tradeexecutor.config import EngineConfig  # noqa: E402
from tradeexecutor.data import generate_candles  # noqa: E402
from tradeexecutor.data.source import load_market  # noqa: E402
from tradeexecutor.layout import RunFiles  # noqa: E402
from tradeexecutor.ledger import Ledger  # noqa: E402
from tradeexecutor.stats.trades_csv import TradesCsv  # noqa: E402
from tradeexecutor.store.publish import PublishCache, public_files  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

STRATEGY = ROOT / "bench" / "strategies" / "flip_1m.py"
try:  # closed positions packed past the newest few (the executor's form); None: a checkout from before it
    from tradeexecutor.state.packed import DEFAULT_KEEP as KEEP_CLOSED
except ImportError:
    KEEP_CLOSED = None
#: Cycles between two samples of the daemon's memory, and samples in a window whose smallest is its resting RSS.
SAMPLE_CYCLES = 100
WINDOW = 10
VARIANTS = ("glibc defaults", "return_large_blocks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--daemon", action="store_true", help="a replay executor's RSS per closed position")
    parser.add_argument("--cycles", type=int, default=10_000, help="with --daemon: cycles run after --bars")
    parser.add_argument("--rounds", type=int, default=1, help="with --daemon: runs of each variant, interleaved")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return daemon_child(args.bars, args.cycles, args.child)
    if args.daemon:
        return daemon_rounds(args.bars, args.cycles, args.rounds)
    print(f"python {platform.python_version()} on {platform.machine()}, checkout {ROOT}")
    spilled: int | None = None
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "candles.csv"
        generate_candles(args.bars, frequency="1m", seed=1, symbol="SYN").to_csv(data, index_label="timestamp")
        strategy = load_strategy(STRATEGY)
        market, _ = load_market([str(data)], strategy.instruments)
        files = RunFiles(Path(folder) / "state")
        files.root.mkdir()
        ledger = Ledger(files.ledger)
        ledger.save(run_backtest(strategy, market, EngineConfig(), now=datetime(2024, 1, 1, tzinfo=UTC)).state)
        ledger.close()
        gc.collect()
        tracemalloc.start()
        try:
            loads: dict[str, int] = {}
            for form, keep in (("a plain list", None), ("as the executor loads it", KEEP_CLOSED)):
                if form != "a plain list" and keep is None:
                    continue  # a checkout from before PackedPositions
                state = ledger = None  # the previous load (the ledger's marks hold its state) freed first
                gc.collect()
                start = tracemalloc.get_traced_memory()[0]
                ledger = Ledger(files.ledger, keep_closed=keep) if keep is not None else Ledger(files.ledger)
                state = ledger.load()
                assert state is not None
                gc.collect()
                loads[form] = tracemalloc.get_traced_memory()[0] - start
                ledger.close()
            caches, sizes = _caches_held(state, files, spilled=False)
            if hasattr(PublishCache, "spilled"):  # checkouts with spill files
                spilled, _ = _caches_held(state, files, spilled=True)
        finally:
            tracemalloc.stop()
        ledger.close()
    closed = state.portfolio.closed_positions
    orders = sum(len(position.orders) for position in closed)
    valuations = state.valuations
    columns = sum(len(column) * column.itemsize for column in (valuations.timestamp, valuations.equity,
                                                                 valuations.cash, valuations.exposure))
    print(f"{args.bars:,} bars: {len(closed):,} closed positions, {orders:,} orders, {len(valuations):,} valuation rows")
    for form, loaded in loads.items():
        print(f"state loaded from the ledger, closed positions {form}: {loaded / 2**20:.2f} MiB; of it the valuation "
              f"columns {columns / 2**20:.2f} MiB; the rest {(loaded - columns) / len(closed):,.0f} B per closed position")
    if hasattr(closed, "packed_bytes"):
        print(f"  {closed.packed:,} of the {len(closed):,} closed positions packed: {closed.packed_bytes() / closed.packed:,.0f} B "
              f"each in the blocks, the newest {len(closed) - closed.packed} as objects")
    print(f"publication caches in memory: {caches / 2**20:.1f} MiB = {caches / len(closed):,.0f} B per closed position; "
          f"the files: " + ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in sorted(sizes.items())))
    if spilled is not None:
        print(f"publication caches with spill files (a running executor's): {spilled / 2**20:.2f} MiB = "
              f"{spilled / len(closed):,.0f} B per closed position")
    return 0


def _caches_held(state: Any, files: RunFiles, *, spilled: bool) -> tuple[int, dict[str, int]]:
    """Bytes the publication caches hold (traced) after two publications, the gzip built, and the files' sizes."""
    if spilled:
        from tradeexecutor.spill import Spill
        from tradeexecutor.store.publish import SPILL_FILES

        cache, csv = PublishCache.spilled(files.spill), TradesCsv(Spill(files.spill / SPILL_FILES["orders"]))
    else:
        cache, csv = PublishCache(), TradesCsv()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(2):
        documents = public_files(state, files, metadata={"name": "heap"}, orders_csv=csv.parts, cache=cache)
        sizes = {name: len(document.data()) for name, document in documents.items()}
        del documents
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - start, sizes


def _memory() -> dict[str, int]:
    """This process's VmRSS and RssAnon (KiB, /proc) and SQLite's memory in use (KiB)."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                values[key] = int(value.split()[0])
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    ctypes.CDLL("libsqlite3.so.0").sqlite3_status64(0, ctypes.byref(current), ctypes.byref(highest), 0)
    values["sqlite"] = current.value // 1024
    return values


def daemon_child(bars: int, cycles: int, variant: str) -> int:
    """One run of the replay executor (a fresh interpreter): prints its samples as JSON lines."""
    from tradeexecutor.daemon import CommandQueue, FakeClock, InMemoryTicker, build_daemon
    from tradeexecutor.daemon.heap import return_large_blocks
    from tradeexecutor.settings import DaemonConfig, FeedConfig

    if variant == "return_large_blocks":
        assert return_large_blocks()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "candles.csv"
        generate_candles(bars + cycles + 30, frequency="1m", seed=1, symbol="SYN").to_csv(data, index_label="timestamp")
        strategy = load_strategy(STRATEGY)
        market, _ = load_market([str(data)], strategy.instruments)
        state = run_backtest(strategy, market.between(None, market.step_time(bars - 1)), EngineConfig(),
                             now=datetime(2024, 1, 1, tzinfo=UTC)).state
        state.replay_cursor = bars - 1
        files = RunFiles(Path(folder) / "state")
        files.root.mkdir()
        ledger = Ledger(files.ledger)
        ledger.save(state)
        ledger.close()
        del state, market
        clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
        tickers: list[InMemoryTicker] = []

        def factory(commands: CommandQueue) -> InMemoryTicker:
            tickers.append(InMemoryTicker(commands, clock))
            return tickers[0]

        config = DaemonConfig(strategy_file=STRATEGY, state_dir=files.root, watchdog_seconds=0,
                              feed=FeedConfig(data=(str(data),), replay_seconds=1.0, replay_start="first"))
        daemon = build_daemon(config, clock=clock, ticker_factory=factory, environ={})
        try:
            daemon.publisher.start()
            daemon.start_jobs()
            for index in range(cycles + 1):
                if index % SAMPLE_CYCLES == 0:
                    daemon.publisher.wait_written()
                    closed = len(daemon.loop.state.portfolio.closed_positions)
                    print(json.dumps({"cycle": index, "closed": closed, **_memory()}), flush=True)
                tickers[0].advance(1.0)
                daemon.loop.run_pending()
        finally:
            daemon.close()
    return 0


def daemon_rounds(bars: int, cycles: int, rounds: int) -> int:
    """Each variant ``rounds`` times, interleaved, in fresh interpreters; a line a run and the medians."""
    results: dict[str, list[tuple[float, float, float]]] = {variant: [] for variant in VARIANTS}
    for _ in range(rounds):
        for variant in VARIANTS:
            command = [sys.executable, __file__, "--bars", str(bars), "--cycles", str(cycles), "--child", variant]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            samples = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
            resting = [min(window, key=lambda sample: sample["VmRSS"])
                       for window in (samples[at:at + WINDOW] for at in range(0, len(samples) - 1, WINDOW))]
            first, middle, end = resting[1], resting[len(resting) // 2], resting[-1]  # resting[0]: start-up
            per_position = (end["VmRSS"] - middle["VmRSS"]) * 1024 / max(1, end["closed"] - middle["closed"])
            whole = (end["VmRSS"] - first["VmRSS"]) * 1024 / max(1, end["closed"] - first["closed"])
            results[variant].append((end["VmRSS"] / 1024, per_position, end["sqlite"] / 1024))
            print(f"{variant}: resting RSS at the end {end['VmRSS'] / 1024:.1f} MiB, second half "
                  f"{per_position:,.0f} B per closed position ({end['closed'] - middle['closed']} closed), from the "
                  f"second window {whole:,.0f} B; closed positions at the end {end['closed']:,}; "
                  f"SQLite {end['sqlite'] / 1024:.1f} MiB", flush=True)
    for variant, runs in results.items():
        print(f"median of {len(runs)}, {variant}: resting RSS {statistics.median(r[0] for r in runs):.1f} MiB, "
              f"{statistics.median(r[1] for r in runs):,.0f} B per closed position")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

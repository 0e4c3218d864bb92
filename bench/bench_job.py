"""A whole cycle job, end to end, against the length of the run's history: CPU per cycle at 1k, 10k and 100k cycles.

Run from the repository root (``PYTHONPATH`` picks the checkout to measure)::

    PYTHONPATH=. python bench/bench_job.py [--histories 1000,10000,100000] [--cycles 300]

For each history length N: synthetic 1-minute candles (bench/bench_backtest.py's generator) in
a CSV file, and the SMA crossover of bench/strategies/sma_1m.py (a cycle a bar). A fast replay
gets the run to N completed cycles — the backtest over the first N bars, whose state (N
valuation rows, its positions and trades) is saved as the executor's — and then a replay
executor (``build_daemon``, the production wiring: state store, journal, publisher with the
public files, RunningSummary, chart renderer process) resumes it on the in-memory ticker: each
fake second one cycle job delivers the next bar, manages it, decides, commits, publishes and
updates the statistics, with the charts job whenever the renderer asks. Measured: this
process's CPU time (``time.process_time``: every thread of the executor, not the chart
renderer's process) per cycle over ``--cycles`` cycles, after 20 unmeasured ones. Start-up is
not measured: the bench waits for the chart renderer's process to be ready before the first
cycle, so the first chart delta (a renderer that holds nothing gets every fill and valuation of
the history once, about 60 ms at 100k cycles, as after any start or renderer restart) goes in
the warm-up, and the wait for the start-up write of the public files lies outside every
measured cycle; what follows are the per-cycle deltas and writes a long run pays. Start-up is
reported apart: this process's CPU from building the daemon (the ledger read, the start-up checks)
to the end of its first cycle job (the first publication: the summary, state.json and the chart
feed over the whole history), the chart renderer's wait excluded, split into building the daemon and the rest;
with its peak RSS (the executor runs in a process of its own, ``--run``, so that the peak is not the backtest's:
``VmHWM`` is reset before building the daemon and read after building it and after the first job) and, for a
running executor's tail, the valuation rows it read back from the ledger (``OlderRows``' counts). The mean
(publication and chart deltas amortised) and the median; the public files' CPU in all and per
publication (publications are throttled by their wall time, ``publication_due``, so their share
per cycle hides what one costs), and the CPU of each write of the files to ``public/`` by the
publisher's writer thread (at most every ``DISK_SECONDS`` of the fake clock; that thread's CPU
is also in the cycles it ran beside). Goal: flat, the mean at each N at most 1.5x the mean at
the smallest N.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest.runner import run_backtest  # noqa: E402
from tradeexecutor.config import EngineConfig  # noqa: E402
from tradeexecutor.daemon import CommandQueue, FakeClock, InMemoryTicker, build_daemon  # noqa: E402
from tradeexecutor.data import generate_candles  # noqa: E402
from tradeexecutor.data.source import load_market  # noqa: E402
from tradeexecutor.layout import RunFiles  # noqa: E402
from tradeexecutor.ledger import Ledger  # noqa: E402
from tradeexecutor.settings import DaemonConfig, FeedConfig  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

STRATEGY = ROOT / "bench" / "strategies" / "sma_1m.py"
SYMBOL = "SYN"
WARMUP = 20
GOAL_RATIO = 1.5


def measure(history: int, cycles: int, folder: Path) -> dict[str, Any]:
    """CPU seconds of each of ``cycles`` cycle jobs after ``history`` completed ones, of the public files in all,
    how many publications those were, the CPU seconds of each write of the files to disk (its own thread), the
    start-up's CPU seconds and peak RSS, and its reads of the ledger's valuation rows (see the module docstring).

    The executor runs in a process of its own (this script with ``--run``), so that its peak RSS is the
    start-up's, not the backtest's that made the history."""
    frame = generate_candles(history + WARMUP + cycles + 5, frequency="1m", seed=1, symbol=SYMBOL)
    data = folder / f"candles-{history}.csv"
    frame.to_csv(data, index_label="timestamp")
    strategy = load_strategy(STRATEGY)
    market, _ = load_market([str(data)], strategy.instruments)
    prefix = market.between(None, market.step_time(history - 1))
    state = run_backtest(strategy, prefix, EngineConfig(), now=datetime(2024, 1, 1, tzinfo=UTC)).state
    state.replay_cursor = history - 1
    if hasattr(state, "last_bar_at"):
        state.last_bar_at = market.step_time(history - 1).to_pydatetime()
    state_dir = folder / f"state-{history}"
    state_dir.mkdir(parents=True)
    ledger = Ledger(RunFiles(state_dir).ledger)
    ledger.save(state)
    ledger.close()
    del state, prefix, market, frame
    run = subprocess.run([sys.executable, __file__, "--run", str(data), str(state_dir), str(history), str(cycles)],
                         check=True, capture_output=True, text=True)
    if "\n" in run.stdout.rstrip():
        print(run.stdout.rstrip().rpartition("\n")[0])
    return json.loads(run.stdout.rstrip().rpartition("\n")[2])  # type: ignore[no-any-return]


def _rss_mib(field: str) -> float:
    """This process's resident set (``VmRSS``) or its peak since the last :func:`_reset_peak` (``VmHWM``), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    """Start the peak resident set (``VmHWM``) again from the current one (Linux >= 4.0: ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def run_executor(data: Path, state_dir: Path, history: int, cycles: int) -> dict[str, Any]:
    """The executor's part of :func:`measure`, in this process: the figures as a dict."""
    gc.collect()
    _reset_peak()
    before_rss = _rss_mib("VmRSS")
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    tickers: list[InMemoryTicker] = []

    def factory(commands: CommandQueue) -> InMemoryTicker:
        tickers.append(InMemoryTicker(commands, clock))
        return tickers[0]

    config = DaemonConfig(strategy_file=STRATEGY, state_dir=state_dir, watchdog_seconds=0,
                          feed=FeedConfig(data=(str(data),), replay_seconds=1.0, replay_start="first"))
    startup = time.process_time()
    daemon = build_daemon(config, clock=clock, ticker_factory=factory, environ={})
    startup = time.process_time() - startup
    build_cpu = startup  # the load and the start-up check
    built_peak, built_rss = _rss_mib("VmHWM"), _rss_mib("VmRSS")  # the load and the start-up check
    _reset_peak()
    times: list[float] = []
    files_cpu = [0.0]
    publications = [0]
    write_files = daemon.publisher.files_now
    to_disk = daemon.publisher._write  # noqa: SLF001 - the bench counts the disk writer's CPU
    disk_cpu: list[float] = []
    measuring = [False]

    def timed_disk(*args: object) -> None:
        started = time.thread_time()  # the writer's own thread (it runs beside the loop)
        to_disk(*args)  # type: ignore[arg-type]
        if measuring[0]:
            disk_cpu.append(time.thread_time() - started)

    def timed_files(*args: object, **kwargs: object) -> None:
        started = time.process_time()
        write_files(*args, **kwargs)  # type: ignore[arg-type]
        files_cpu[0] += time.process_time() - started
        publications[0] += 1

    try:
        daemon.publisher.files_now = timed_files  # type: ignore[method-assign]
        daemon.publisher._write = timed_disk  # type: ignore[method-assign, assignment]  # noqa: SLF001
        started = time.process_time()
        daemon.publisher.start()
        startup += time.process_time() - started
        renderer = daemon.publisher.renderer
        if renderer is not None:  # ready before the first cycle, so the first (full) delta goes in the warm-up
            assert renderer.wait_idle(renderer.start_timeout), "the chart renderer did not start"
        daemon.start_jobs()
        ticker = tickers[0]
        for index in range(WARMUP + cycles):
            if index == WARMUP:
                assert renderer is None or daemon.publisher._charted is not None  # noqa: SLF001 - full delta sent
                daemon.publisher.wait_written()  # the start-up write is not measured (nor its wait)
                files_cpu[0], publications[0], measuring[0] = 0.0, 0, True
            started = time.process_time()
            ticker.advance(1.0)
            daemon.loop.run_pending()
            if index >= WARMUP:
                times.append(time.process_time() - started)
            elif index == 0:
                startup += time.process_time() - started
                startup_rss = _rss_mib("VmHWM")  # the peak from the daemon built to the end of the first job
                older = getattr(daemon.loop.state.valuations.timestamp, "older", None)  # a tail's OlderRows
                reads = {key: getattr(older, key, None) for key in ("queries", "rows", "largest", "most_kept")}
        assert daemon.feed.cursor == history - 1 + WARMUP + cycles, daemon.feed.cursor
        daemon.publisher.wait_written()
        valuations = daemon.loop.state.valuations
        print(f"  valuation rows: {len(valuations):,}, in memory {getattr(valuations, 'in_memory', len(valuations)):,}")
    finally:
        daemon.close()
    return {"times": times, "files": files_cpu[0], "publications": publications[0], "disk": disk_cpu,
            "startup": startup, "build_cpu": build_cpu, "rss_before": before_rss, "rss_startup": max(built_peak, startup_rss),
            "rss_built_peak": built_peak, "rss_built": built_rss, "rss_first_job_peak": startup_rss, "reads": reads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", default="1000,10000,100000")
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--run", nargs=4, metavar=("DATA", "STATE_DIR", "HISTORY", "CYCLES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        data, state_dir, history, cycles = args.run
        print(json.dumps(run_executor(Path(data), Path(state_dir), int(history), int(cycles))))
        return 0
    print(f"python {platform.python_version()} on {platform.machine()}, {args.cycles} cycles each, "
          f"checkout {ROOT}")
    base: float | None = None
    base_without: float | None = None
    worst = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for history in [int(h) for h in args.histories.split(",")]:
            figures = measure(history, args.cycles, Path(folder))
            times, files, publications, disk = figures["times"], figures["files"], figures["publications"], figures["disk"]
            startup = figures["startup"]
            mean, median = statistics.fmean(times), statistics.median(times)
            without = mean - files / len(times)
            base = base or mean
            base_without = base_without or without
            worst = max(worst, mean / base)  # the whole job, publication included, as the goal says
            print(f"after {history:>7,} cycles: CPU per cycle mean {mean * 1e3:6.2f} ms, median {median * 1e3:6.2f} ms, "
                  f"max {max(times) * 1e3:7.1f} ms = {mean / base:4.2f}x the shortest history; of the mean, public files {files / len(times) * 1e3:6.2f} ms "
                  f"({publications} publications, {files / max(1, publications) * 1e3:6.2f} ms each), "
                  f"the rest {without * 1e3:6.2f} ms ({without / base_without:4.2f}x); "
                  f"{len(disk)} writes to disk, {statistics.median(disk or [0.0]) * 1e3:6.1f} ms each (median); "
                  f"start-up {startup * 1e3:7.1f} ms (building the daemon {figures['build_cpu'] * 1e3:7.1f} ms)")
            reads = figures["reads"]
            print(f"  start-up: peak RSS {figures['rss_startup']:.1f} MiB, {figures['rss_startup'] - figures['rss_before']:+.1f} "
                  f"MiB over the executor process's RSS before building the daemon (building it: peak "
                  f"{figures['rss_built_peak'] - figures['rss_before']:+.1f}, then {figures['rss_built'] - figures['rss_before']:+.1f}; "
                  f"the first job: peak {figures['rss_first_job_peak'] - figures['rss_before']:+.1f}); valuation rows read back from the ledger "
                  f"{reads['rows']} in {reads['queries']} queries, the largest {reads['largest']} rows, at most "
                  f"{reads['most_kept']} rows' other columns kept")
    print(f"goal: flat (<= {GOAL_RATIO}x): {'met' if worst <= GOAL_RATIO else 'NOT met'} ({worst:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

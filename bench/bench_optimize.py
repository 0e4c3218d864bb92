"""Benchmark of parameter sweeps: backtests per second of ``optimize`` on a 20-point grid, and the speed-up from processes.

Run from the repository root::

    python bench/bench_optimize.py [--runs 3] [--processes 1,2]

The grid is the SMA crossover on GOOG over the bundled daily data
(``strategies/specs/sma_crossover_backtest.yaml``, 2005-2012): fast 5..20:5 x slow 20,30,40,50,60
= 20 points. Each point is a full run, as ``tradeexecutor optimize`` makes it: a run folder
created through the registry, the backtest, its state, journal and metadata, and its artifacts
(metrics.json, metrics.prom, orders.csv, the PNG and SVG chart, report.md and report.html). Each
process count is measured ``--runs`` times, each time into a fresh runs folder, and the median
is reported; the speed-up is against the first process count. For scale, the last row is the
bare engine: ``run_backtest`` alone over the same 20 points in one process (no run folder,
no artifacts).

Prints a markdown table (with the machine's core count and load, since a busy machine shrinks
the speed-up). Not a pytest test: timings are for people.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tradeexecutor.backtest import run_backtest  # noqa: E402
from tradeexecutor.data.source import load_market  # noqa: E402
from tradeexecutor.runs.optimize import build_grid, run_grid  # noqa: E402
from tradeexecutor.runs.spec import load_spec  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "strategies" / "specs" / "sma_crossover_backtest.yaml"
GRID = ["fast=5..20:5", "slow=20,30,40,50,60"]


def sweep_seconds(processes: int, runs: int) -> list[float]:
    """Wall-clock seconds of ``runs`` sweeps of the grid with ``processes`` workers, each into a fresh folder."""
    spec = load_spec(SPEC, env={})
    grid = build_grid(spec, GRID)
    times = []
    for _ in range(runs):
        folder = Path(tempfile.mkdtemp(prefix="bench-optimize-"))
        try:
            started = time.perf_counter()
            result = run_grid(spec, grid, runs_dir=folder / "runs", processes=processes, output_dir=folder / "out")
            times.append(time.perf_counter() - started)
            if result.failed:
                raise SystemExit(f"{result.failed} points failed: {result.results[-1].error}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return times


def bare_seconds(runs: int) -> list[float]:
    """Seconds of run_backtest alone over the 20 points (market loaded once), for scale."""
    spec = load_spec(SPEC, env={})
    grid = build_grid(spec, GRID)
    environment = spec.environment
    market, _ = load_market(list(environment.data), ["GOOG"], start=environment.start, end=environment.end)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        for point in grid:
            strategy = load_strategy(spec.strategy_file, {**spec.strategy, **point})
            run_backtest(strategy, market, spec.engine_config())
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="Repetitions per process count (median reported).")
    parser.add_argument("--processes", default="1,2", help="Comma-separated process counts to measure.")
    args = parser.parse_args()
    counts = [int(part) for part in args.processes.split(",") if part.strip()]
    points = 20
    load_before = os.getloadavg()
    rows = []
    baseline = None
    for count in counts:
        times = sweep_seconds(count, args.runs)
        median = statistics.median(times)
        baseline = baseline or median
        rows.append((f"optimize, {count} process{'es' if count > 1 else ''}", median, times, baseline / median))
    bare = bare_seconds(args.runs)
    load_after = os.getloadavg()

    print(f"20-point grid ({' x '.join(GRID)}), SMA crossover on GOOG daily 2005-2012; "
          f"median of {args.runs}; {os.cpu_count()} cores, load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    print()
    print("| Sweep | Median seconds | Backtests per second | Speed-up | All runs (s) |")
    print("|---|---:|---:|---:|---|")
    for label, median, times, speedup in rows:
        print(f"| {label} | {median:.2f} | {points / median:.2f} | {speedup:.2f}x | "
              f"{', '.join(f'{t:.2f}' for t in times)} |")
    median = statistics.median(bare)
    print(f"| bare run_backtest, 1 process (no run folder, no artifacts) | {median:.2f} | {points / median:.1f} | — | "
          f"{', '.join(f'{t:.2f}' for t in bare)} |")


if __name__ == "__main__":
    main()

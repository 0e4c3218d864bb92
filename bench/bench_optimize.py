"""Benchmark of parameter sweeps against backtesting.py's ``Backtest.optimize``, side by side, on 1 and 2 processes.

Run from the repository root::

    python bench/bench_optimize.py [--runs 5] [--processes 1,2] [--cluster]

The grid is the SMA crossover on GOOG over the bundled daily data, 2005-2012 (the spec
``strategies/specs/sma_crossover_backtest.yaml``): fast 5..20:5 x slow 20,30,40,50,60 = 20 points.
Measured in one process, interleaved run by run, median of ``--runs``:

- **backtesting.py**: ``Backtest(GOOG, SmaCross, commission=0.001).optimize(fast=..., slow=...,
  maximize="Sharpe Ratio")`` — the same rules, grid and candles; ``Backtest`` is built outside the
  timing (its data is ready), its pool is replaced by one of N processes (``backtesting.Pool``;
  one process: a one-thread pool in this process);
- **ours, --reports none**: ``run_sweep`` on a plan whose candles are loaded (like
  backtesting.py's): every point's row with its whole-period, in-sample and out-of-sample
  figures and fingerprints persisted, ranking, the out-of-sample pick, results.csv and results.md.
  This is what ``Backtest.optimize`` does (figures for every point, stats of the best). Planning —
  ``load_spec`` + ``plan_sweep``: every option checked, each point's strategy loaded once to
  check it, the candles read from the bundled file — is timed separately and shown beside it;
- **ours, default** (``--reports best``): the same, also full runs (registry, state, journal,
  metrics, report.md/html; their charts are drawn on demand) for the best 5 points, and the
  data of the sweep's two charts (drawn on demand too: ``tradeexecutor report SWEEP_FOLDER``).
  backtesting.py has no counterpart: its ``bt.plot()`` would be the charts;
- with ``--cluster``: ours, ``--reports none`` and default, on a 2-worker loopback Dask
  ``LocalCluster`` (processes, one thread each; the cluster's start-up is not timed, sending it
  the data is; the default's full runs are made in this process, as the command makes them);
- for scale: the bare engine, ``run_backtest`` alone over the 20 points in one process.

Prints a markdown table with the machine's cores and load. Not a pytest test: timings are for people.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.dummy
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bars

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest import run_backtest  # noqa: E402
from tradeexecutor.data import load_bundled  # noqa: E402
from tradeexecutor.data.source import load_market  # noqa: E402
from tradeexecutor.runs.optimize import build_grid  # noqa: E402
from tradeexecutor.runs.spec import load_spec  # noqa: E402
from tradeexecutor.runs.sweep import SweepOptions, plan_sweep, run_sweep  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

SPEC = ROOT / "strategies" / "specs" / "sma_crossover_backtest.yaml"
#: The grids: ``small`` is issue 15's 20 points, where a sweep's fixed cost (the best 5's full runs)
#: dominates; ``large`` is 200 points, a sweep's size where throughput decides.
GRIDS: dict[str, tuple[tuple[str, str], list[int], list[int]]] = {
    "small": (("fast=5..20:5", "slow=20,30,40,50,60"), [5, 10, 15, 20], [20, 30, 40, 50, 60]),
    "large": (("fast=5..50:5", "slow=60..250:10"), list(range(5, 55, 5)), list(range(60, 260, 10))),
}
GRID, FAST, SLOW = GRIDS["small"]
POINTS = len(FAST) * len(SLOW)
GOAL = 3.0


# ---------------------------------------------------------------------------------------------
# backtesting.py


class SmaCross(Strategy):
    """The SMA crossover with our rules: all-in at the next open after a cross up, out after a cross down."""

    fast = 10
    slow = 30

    def init(self) -> None:
        close = pd.Series(np.asarray(self.data.Close, dtype=np.float64))
        self.fast_sma = self.I(lambda: close.rolling(self.fast).mean().to_numpy())
        self.slow_sma = self.I(lambda: close.rolling(self.slow).mean().to_numpy())

    def next(self) -> None:
        if not self.position:
            if crossover(self.fast_sma, self.slow_sma):
                self.buy(size=0.999999999)
        elif crossover(self.slow_sma, self.fast_sma):
            self.position.close()


def their_backtest() -> Any:
    """backtesting.py's Backtest over the same GOOG candles and rules (built once, outside the timing)."""
    frame = load_bundled("stocks-daily")
    goog = frame[frame["symbol"] == "GOOG"]
    goog = goog[(goog.index >= "2005-01-01") & (goog.index <= "2012-12-31 23:59")]
    ohlcv = pd.DataFrame({"Open": goog["open"].to_numpy(), "High": goog["high"].to_numpy(),
                          "Low": goog["low"].to_numpy(), "Close": goog["close"].to_numpy(),
                          "Volume": goog["volume"].to_numpy()}, index=goog.index.tz_localize(None))
    return Backtest(ohlcv, SmaCross, cash=10_000, commission=0.001, trade_on_close=False)


def time_theirs(bt: Any, processes: int) -> float:
    import backtesting

    if processes == 1:
        backtesting.Pool = lambda *args, **kwargs: multiprocessing.dummy.Pool(1)
    else:
        backtesting.Pool = lambda *args, **kwargs: multiprocessing.get_context("fork").Pool(processes)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt.optimize(fast=FAST, slow=SLOW, maximize="Sharpe Ratio")
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# ours


def time_ours(processes: int, reports: str, cluster: str | None = None) -> tuple[float, float]:
    """Seconds of (planning: spec, checks, candles loaded; running: points, ranking, tables, reports)."""
    folder = Path(tempfile.mkdtemp(prefix="bench-optimize-"))
    try:
        started = time.perf_counter()
        spec = load_spec(SPEC, env={})
        plan = plan_sweep(spec, SweepOptions(params=GRID, processes=processes, reports=reports, cluster=cluster))
        planned = time.perf_counter()
        result = run_sweep(plan, output_dir=folder / "out", runs_dir=folder / "runs")
        finished = time.perf_counter()
        if result.failed or len(result.results) != POINTS:
            raise SystemExit(f"sweep failed: {result.failed} failed of {len(result.results)}")
        return planned - started, finished - planned
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def time_bare() -> float:
    spec = load_spec(SPEC, env={})
    grid = build_grid(spec, list(GRID))
    environment = spec.environment
    market, _ = load_market(list(environment.data), ["GOOG"], start=environment.start, end=environment.end)
    started = time.perf_counter()
    for point in grid:
        run_backtest(load_strategy(spec.strategy_file, {**spec.strategy, **point}), market, spec.engine_config())
    return time.perf_counter() - started


# ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="Repetitions of each measurement (median reported).")
    parser.add_argument("--processes", default="1,2", help="Comma-separated process counts.")
    parser.add_argument("--cluster", action="store_true", help="Also measure a 2-worker loopback LocalCluster.")
    parser.add_argument("--grid", choices=sorted(GRIDS), default="small",
                        help="small: 20 points (issue 15's grid); large: 200 points.")
    args = parser.parse_args()
    global GRID, FAST, SLOW, POINTS
    GRID, FAST, SLOW = GRIDS[args.grid]
    POINTS = len(FAST) * len(SLOW)
    counts = [int(part) for part in args.processes.split(",") if part.strip()]
    bt = their_backtest()
    cluster = client = None
    if args.cluster:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    measurements: dict[str, Callable[[], float | tuple[float, float]]] = {}
    for count in counts:
        label = f"{count} process{'es' if count > 1 else ''}"
        measurements[f"backtesting.py Backtest.optimize, {label}"] = (lambda c=count: time_theirs(bt, c))
        measurements[f"ours, --reports none (rows only), {label}"] = (lambda c=count: time_ours(c, "none"))
        measurements[f"ours, default (--reports best: full runs of the best 5), {label}"] = (
            lambda c=count: time_ours(c, "best"))
    if cluster is not None:
        address = cluster.scheduler_address
        measurements["ours, --reports none, Dask LocalCluster of 2 workers"] = lambda: time_ours(2, "none", address)
        measurements["ours, default (--reports best), Dask LocalCluster of 2 workers"] = (
            lambda: time_ours(2, "best", address))
    measurements["bare run_backtest, 1 process (for scale)"] = time_bare
    load_before = os.getloadavg()[0]
    for function in measurements.values():  # warm-up: imports, first-time caches, the pools' fork
        function()
    runs: dict[str, list[float]] = {label: [] for label in measurements}
    plans: dict[str, list[float]] = {label: [] for label in measurements}
    for _ in range(args.runs):
        for label, function in measurements.items():
            value = function()
            if isinstance(value, tuple):
                plans[label].append(value[0])
                value = value[1]
            runs[label].append(value)
    load_after = os.getloadavg()[0]
    if client is not None:
        client.close()
        cluster.close()  # type: ignore[union-attr]

    print(f"{POINTS}-point grid ({' x '.join(GRID)}), SMA crossover on GOOG daily 2005-2012; median of {args.runs}, "
          f"interleaved; {platform.machine()}, {os.cpu_count()} cores, load average {load_before:.2f} before, "
          f"{load_after:.2f} after")
    print()
    print("| Sweep | Median seconds | Backtests per second | vs backtesting.py, same processes | "
          "Planning (spec, checks, candles), not in the median | All runs (s) |")
    print("|---|---:|---:|---:|---:|---|")
    theirs = {}
    for count in counts:
        theirs[count] = statistics.median(runs[f"backtesting.py Backtest.optimize, "
                                               f"{count} process{'es' if count > 1 else ''}"])
    for label, values in runs.items():
        median = statistics.median(values)
        ratio = "—"
        for count in counts:
            if label.startswith("ours") and label.endswith(f", {count} process{'es' if count > 1 else ''}"):
                ratio = f"**{theirs[count] / median:.2f}x**"
        if "LocalCluster" in label and 2 in theirs:
            ratio = f"{theirs[2] / median:.2f}x"
        planning = f"{statistics.median(plans[label]):.3f} s" if plans[label] else "—"
        print(f"| {label} | {median:.3f} | {POINTS / median:.1f} | {ratio} | {planning} | "
              f"{', '.join(f'{value:.3f}' for value in values)} |")
    print()
    print(f"Goal: ours at least {GOAL:g}x backtesting.py on the same processes, data loaded for both.")


if __name__ == "__main__":
    main()

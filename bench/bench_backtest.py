"""Backtest throughput: our engine against backtesting.py on the same synthetic 1-minute bars.

Run from the repository root::

    PYTHONPATH=. python bench/bench_backtest.py [--bars 1000000] [--repeat 3] [--fee 0.0]

What it measures, in one process (except the memory probe):

1. data preparation (``generate_candles``, ``MarketData.from_long_frame``, backtesting.py's
   OHLCV frame), reported separately and never inside a timed run;
2. our run (``run_backtest`` wall time, indicators and their lookahead check included; the
   bar loop alone is shown too) and backtesting.py's run (``Backtest(...)`` + ``run()``, its
   statistics included, progress bar off), interleaved, median of ``--repeat`` runs;
3. linearity: our run on twice the bars, t(2N) / t(N) from runs timed in pairs (goal <= 2.2);
4. peak memory: our run on N bars (data preparation included) in a fresh subprocess started
   before this process loads anything; its own VmHWM, with ``getrusage(RUSAGE_CHILDREN)``
   shown beside it (goal < 1 GB);
5. completeness: every trade the rules imply was executed and recorded (counted independently
   from the candles), one valuation per bar, and the same trades and final equity as
   backtesting.py.

Strategy: bench/strategies/sma_1m.py (SMA 10/30 crossover, all-in by cash, whole shares, fill at
the next bar's open); backtesting.py gets the same rules (``trade_on_close=False``,
``buy(size=0.999999999)``, ``position.close()`` on the opposite cross).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest.runner import BacktestResult, run_backtest
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.data import generate_candles
from tradeexecutor.data.market import MarketData
from tradeexecutor.state import OrderStatus
from tradeexecutor.strategy.loader import load_strategy

STRATEGY = Path(__file__).resolve().parent / "strategies" / "sma_1m.py"
SYMBOL = "SYN"
FAST, SLOW = 10, 30
CASH = 10_000.0
SEED = 1
#: backtesting.py order size meaning "all available cash" (sizes must be < 1 to be fractions).
ALL_IN = 0.999999999
GOAL_LINEARITY = 2.2
GOAL_RSS_BYTES = 1 << 30


# -- data ---------------------------------------------------------------------------------------


def prepare(bars: int) -> tuple[pd.DataFrame, MarketData, float]:
    """Synthetic candles and our MarketData; returns the seconds it took."""
    started = time.perf_counter()
    frame = generate_candles(bars, frequency="1m", seed=SEED, symbol=SYMBOL)
    market = MarketData.from_long_frame(frame, asset_types={SYMBOL: "equity"})
    return frame, market, time.perf_counter() - started


def their_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """The identical OHLCV numbers in backtesting.py's column names."""
    started = time.perf_counter()
    ohlcv = pd.DataFrame(
        {
            "Open": frame["open"].to_numpy(),
            "High": frame["high"].to_numpy(),
            "Low": frame["low"].to_numpy(),
            "Close": frame["close"].to_numpy(),
            "Volume": frame["volume"].to_numpy(),
        },
        index=frame.index.tz_localize(None),
    )
    return ohlcv, time.perf_counter() - started


# -- the two engines ----------------------------------------------------------------------------


def run_ours(market: MarketData, fee: float) -> tuple[BacktestResult, float, float]:
    """Our backtest; returns the result, wall seconds and CPU seconds of the run."""
    strategy = load_strategy(STRATEGY, {"fast": FAST, "slow": SLOW})
    config = EngineConfig(execution=ExecutionConfig(fee=fee, fill_timing="next_open"), initial_cash=CASH)
    gc.collect()
    cpu = time.process_time()
    started = time.perf_counter()
    result = run_backtest(strategy, market, config)
    return result, time.perf_counter() - started, time.process_time() - cpu


def run_theirs(ohlcv: pd.DataFrame, fee: float) -> tuple[pd.Series, float]:
    import backtesting.backtesting as bt_module
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    bt_module._tqdm = lambda seq, **_: seq  # no progress bar: it would only slow them down

    class SmaCross(Strategy):
        def init(self):
            close = pd.Series(np.asarray(self.data.Close, dtype=np.float64))
            self.fast = self.I(lambda: close.rolling(FAST).mean().to_numpy(), name="fast")
            self.slow = self.I(lambda: close.rolling(SLOW).mean().to_numpy(), name="slow")

        def next(self):
            if not self.position:
                if crossover(self.fast, self.slow):
                    self.buy(size=ALL_IN)
            elif crossover(self.slow, self.fast):
                self.position.close()

    gc.collect()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(ohlcv, SmaCross, cash=CASH, commission=fee, trade_on_close=False, hedging=False,
                      exclusive_orders=False, finalize_trades=False)
        stats = bt.run()
    return stats, time.perf_counter() - started


# -- completeness ---------------------------------------------------------------------------------


def expected_fills(frame: pd.DataFrame) -> tuple[int, int]:
    """Entry and exit fills the rules imply, counted from the candles alone (no engine involved)."""
    close = frame["close"]
    fast = close.rolling(FAST).mean().to_numpy()
    slow = close.rolling(SLOW).mean().to_numpy()
    up = np.zeros(len(close), dtype=bool)
    down = np.zeros(len(close), dtype=bool)
    up[1:] = (fast[:-1] < slow[:-1]) & (fast[1:] > slow[1:])
    down[1:] = (fast[:-1] > slow[:-1]) & (fast[1:] < slow[1:])
    last = len(close) - 1
    entries = exits = 0
    holding = False
    for i in np.flatnonzero(up | down).tolist():
        if not holding and up[i]:
            holding = True  # the decision at bar i fills at bar i + 1's open, if there is one
            entries += i < last
        elif holding and down[i]:
            holding = False
            exits += i < last
    return entries, exits


def our_counts(result: BacktestResult) -> dict[str, int]:
    portfolio = result.state.portfolio
    positions = portfolio.closed_positions + portfolio.open_positions + portfolio.failed_positions
    trades = [t for p in positions for t in p.orders]
    executed = [t for t in trades if t.status == OrderStatus.filled]
    return {
        "entries": sum(1 for t in executed if t.signed_filled_quantity > 0),
        "exits": sum(1 for t in executed if t.signed_filled_quantity < 0),
        "rejected": sum(1 for t in trades if t.status == OrderStatus.rejected),
        "closed_positions": len(portfolio.closed_positions),
        "valuations": len(result.state.valuations),
    }


# -- memory probe (runs in a fresh interpreter) ---------------------------------------------------


def _vm_hwm_bytes() -> int | None:
    """This process's own peak RSS (VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def child_memory(bars: int, fee: float) -> None:
    import psutil

    rss_start = psutil.Process().memory_info().rss
    _, market, _ = prepare(bars)
    rss_data = psutil.Process().memory_info().rss
    result, seconds, _ = run_ours(market, fee)
    print(json.dumps({
        "rss_after_imports": rss_start,
        "rss_after_data": rss_data,
        "vm_hwm": _vm_hwm_bytes(),
        "seconds": seconds,
        "valuations": len(result.state.valuations),
    }))


def measure_peak_rss(bars: int, fee: float) -> tuple[int, int, dict]:
    """Peak RSS of a fresh interpreter that prepares N bars and runs our backtest on them.

    Returns (peak, ru_maxrss, child report). Linux's ``RUSAGE_CHILDREN.ru_maxrss`` also counts
    the RSS the child inherited from this process before it exec'd (the kernel keeps the old
    address space's high-water mark across exec), so it is only meaningful while this process is
    small: the probe runs before any data is loaded here, and the child's own VmHWM, which
    starts afresh at exec, is the figure reported when available.
    """
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-memory", "--bars", str(bars), "--fee", str(fee)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return child["vm_hwm"] or maxrss, maxrss, child


# -- report ---------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="bars of 1-minute data (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per engine; the median is reported")
    parser.add_argument("--fee", type=float, default=0.0,
                        help="fee per fill for both engines (default 0: the account never runs dry, so every "
                             "signal trades; 0.002 drains 10,000 to near zero within the first part of the bars)")
    parser.add_argument("--skip-theirs", action="store_true", help="time only our engine")
    parser.add_argument("--child-memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_memory:
        child_memory(args.bars, args.fee)
        return 0

    n = args.bars
    command = "PYTHONPATH=. python bench/bench_backtest.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"# Backtest benchmark: SMA {FAST}/{SLOW} on {n:,} synthetic 1m bars (seed {SEED}), fee {args.fee}")
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {cpu_model()}, "
          f"{os.cpu_count()} cores")
    print(f"command: {command}\n", flush=True)

    # Memory first, while this process is small (see measure_peak_rss).
    peak, maxrss, child = measure_peak_rss(n, args.fee)
    print(f"memory probe: peak RSS {mib(peak)} (ru_maxrss {mib(maxrss)}), run {child['seconds']:.2f} s", flush=True)

    frame, market, prep_ours = prepare(n)
    ohlcv, prep_theirs = their_frame(frame)
    print(f"data preparation: generate_candles + MarketData {prep_ours:.2f} s; backtesting.py frame "
          f"{prep_theirs:.2f} s", flush=True)

    ours_t: list[float] = []
    loop_t: list[float] = []
    theirs_t: list[float] = []
    result = stats = None
    for i in range(args.repeat):
        result, seconds, _ = run_ours(market, args.fee)
        ours_t.append(seconds)
        loop_t.append(result.seconds)
        line = f"run {i + 1}/{args.repeat}: ours {seconds:.2f} s (bar loop {result.seconds:.2f} s)"
        if not args.skip_theirs:
            stats, seconds = run_theirs(ohlcv, args.fee)
            theirs_t.append(seconds)
            line += f", backtesting.py {seconds:.2f} s"
        print(line, flush=True)
    assert result is not None
    t_ours = statistics.median(ours_t)
    t_loop = statistics.median(loop_t)

    # Completeness: every implied fill executed and recorded, one valuation per bar.
    counts = our_counts(result)
    entries, exits = expected_fills(frame)
    complete = (counts["entries"] == entries and counts["exits"] == exits and counts["rejected"] == 0
                and counts["valuations"] == n == result.bars)

    # Linearity: N and 2N bars timed in pairs, so that load on a shared machine hits both alike.
    _, market2, prep2 = prepare(2 * n)
    print(f"data preparation for {2 * n:,} bars: {prep2:.2f} s", flush=True)
    t1, t2, c1, c2 = [], [], [], []
    for i in range(args.repeat):
        _, wall, cpu = run_ours(market, args.fee)
        t1.append(wall)
        c1.append(cpu)
        _, wall, cpu = run_ours(market2, args.fee)
        t2.append(wall)
        c2.append(cpu)
        print(f"linearity pair {i + 1}/{args.repeat}: {n:,} bars {t1[-1]:.2f} s (cpu {c1[-1]:.2f} s), "
              f"{2 * n:,} bars {t2[-1]:.2f} s (cpu {c2[-1]:.2f} s)", flush=True)
    del market2
    linearity = statistics.median(t2) / statistics.median(t1)
    linearity_cpu = statistics.median(c2) / statistics.median(c1)

    rows = [("bars", f"{n:,}"), ("repeats (median reported)", str(args.repeat)),
            ("data preparation (not timed below)", f"{prep_ours:.2f} s ours, +{prep_theirs:.2f} s backtesting.py frame"),
            ("ours: run_backtest wall time", f"{t_ours:.2f} s"),
            ("ours: bars/s", f"{n / t_ours:,.0f}"),
            ("ours: bar loop only", f"{t_loop:.2f} s ({n / t_loop:,.0f} bars/s)")]
    if theirs_t:
        assert stats is not None
        t_theirs = statistics.median(theirs_t)
        their_trades = len(stats["_trades"])
        their_open = len(stats["_strategy"].trades)
        equity_diff = abs(result.state.valuations.equity[-1] - stats["Equity Final [$]"])
        rows += [("backtesting.py: Backtest + run wall time", f"{t_theirs:.2f} s"),
                 ("backtesting.py: bars/s", f"{n / t_theirs:,.0f}"),
                 ("speed ratio ours / backtesting.py", f"{t_theirs / t_ours:.1f}x")]
    rows += [(f"linearity t({2 * n:,}) / t({n:,})",
              (f"{linearity:.2f} (goal <= {GOAL_LINEARITY}) {'OK' if linearity <= GOAL_LINEARITY else 'MISSED'}; "
               f"medians {statistics.median(t2):.2f} s / {statistics.median(t1):.2f} s; "
               f"CPU time {linearity_cpu:.2f}")),
             ("peak RSS, ours on N bars in a fresh process",
              (f"{mib(peak)} (goal < 1 GiB) {'OK' if peak < GOAL_RSS_BYTES else 'MISSED'}; "
               f"after imports {mib(child['rss_after_imports'])}, after data {mib(child['rss_after_data'])}")),
             ("trades: entry / exit fills (implied by the rules)",
              f"{counts['entries']:,} / {counts['exits']:,} ({entries:,} / {exits:,}), rejected {counts['rejected']}"),
             ("valuations recorded", f"{counts['valuations']:,} ({'one per bar' if counts['valuations'] == n else 'MISMATCH'})"),
             ("every trade and valuation recorded", "yes" if complete else "NO")]
    if theirs_t:
        same = their_trades == counts["closed_positions"] and equity_diff < 0.005
        rows += [("backtesting.py round trips (+ open)", (f"{their_trades:,} (+{their_open}); ours "
                  f"{counts['closed_positions']:,} (+{counts['entries'] - counts['closed_positions']})")),
                 ("final equity ours / backtesting.py",
                  (f"{result.state.valuations.equity[-1]:,.2f} / {stats['Equity Final [$]']:,.2f} "
                   f"({'agree to the cent' if same else 'DIFFER'})"))]

    print()
    print("| measure | result |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    ok = complete and linearity <= GOAL_LINEARITY and peak < GOAL_RSS_BYTES
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

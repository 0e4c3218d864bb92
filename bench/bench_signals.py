"""The vectorised signals() path against backtesting.py (and vectorbt when installed), side by side, 1M bars.

Run from the repository root::

    PYTHONPATH=. python bench/bench_signals.py [--bars 1000000] [--repeat 3]

One process, the data of bench/bench_backtest.py (SMA 10/30 crossover on synthetic 1-minute
bars, all-in, fill at the next open, no fee), each engine timed in turn per round, medians:

- ours, signals(): bench/strategies/sma_1m_signals.py — signals computed and lookahead-checked
  like indicators, the engine visiting only the bars with a signal or a pending fill;
- ours, decide(): bench/strategies/sma_1m.py, the same rule called every bar;
- backtesting.py 0.6.6: ``Backtest(...).run()`` with the same rules (bench_backtest.run_theirs);
- vectorbt (if importable): ``Portfolio.from_signals`` on the same entries and exits with
  ``price=open`` shifted to the next bar — a vectorised simulator, a different class of tool,
  shown for reference only.

Checks that both of our runs made the same trades and final equity as backtesting.py.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for entry in (str(ROOT), str(ROOT / "bench")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import bench_backtest as bench  # noqa: E402

from tradeexecutor.backtest.runner import run_backtest  # noqa: E402
from tradeexecutor.config import EngineConfig, ExecutionConfig  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

SIGNALS = ROOT / "bench" / "strategies" / "sma_1m_signals.py"


def ours(path: Path, market: object) -> tuple[float, int, float]:
    strategy = load_strategy(path, {"fast": bench.FAST, "slow": bench.SLOW})
    config = EngineConfig(execution=ExecutionConfig(fee=0.0, fill_timing="next_open"), initial_cash=bench.CASH)
    started = time.perf_counter()
    result = run_backtest(strategy, market, config)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    return seconds, sum(1 for _ in result.state.portfolio.all_orders()), result.state.valuations.equity[-1]


def vectorbt_run(frame: object) -> tuple[float, int, float] | None:
    """Seconds, fills (orders) and final value of vectorbt's run, or None when it is not installed."""
    try:
        import vectorbt as vbt
    except ImportError:
        return None
    close = frame["close"]  # type: ignore[index]
    started = time.perf_counter()
    fast = close.rolling(bench.FAST).mean()
    slow = close.rolling(bench.SLOW).mean()
    entries = (fast.shift(1) < slow.shift(1)) & (fast > slow)
    exits = (fast.shift(1) > slow.shift(1)) & (fast < slow)
    portfolio = vbt.Portfolio.from_signals(close, entries.shift(1, fill_value=False),
                                           exits.shift(1, fill_value=False), price=frame["open"],  # type: ignore[index]
                                           init_cash=bench.CASH, size_granularity=1)
    seconds = time.perf_counter() - started
    return seconds, int(portfolio.orders.count()), float(portfolio.final_value())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    frame, market, _ = bench.prepare(args.bars)
    ohlcv, _ = bench.their_frame(frame)
    times: dict[str, list[float]] = {"signals": [], "decide": [], "theirs": [], "vectorbt": []}
    outcome: dict[str, tuple[int, float]] = {}
    vectorbt_run(frame)  # warm-up: numba compiles on first use
    for _ in range(args.repeat):
        seconds, trades, equity = ours(SIGNALS, market)
        times["signals"].append(seconds)
        outcome["signals"] = (trades, equity)
        seconds, trades, equity = ours(bench.STRATEGY, market)
        times["decide"].append(seconds)
        outcome["decide"] = (trades, equity)
        stats, seconds = bench.run_theirs(ohlcv, 0.0)
        times["theirs"].append(seconds)
        outcome["theirs"] = (int(stats["# Trades"]) * 2, float(stats["Equity Final [$]"]))
        vbt = vectorbt_run(frame)
        if vbt is not None:
            times["vectorbt"].append(vbt[0])
            outcome["vectorbt"] = vbt[1:]
    theirs = statistics.median(times["theirs"])
    print(f"{args.bars:,} bars; median of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| engine | median seconds | bars per second | backtesting.py / this | trades (fills) | final equity |")
    print("|---|---:|---:|---:|---:|---:|")
    labels = {"signals": "ours, signals()", "decide": "ours, decide()", "theirs": "backtesting.py",
              "vectorbt": "vectorbt from_signals (reference)"}
    for key, label in labels.items():
        if not times[key]:
            continue
        median = statistics.median(times[key])
        trades, equity = outcome.get(key, (0, float("nan")))
        print(f"| {label} | {median:.3f} | {args.bars / median:,.0f} | {theirs / median:.1f}x | "
              f"{trades:,} | {equity:,.2f} |")
    same = outcome["signals"] == outcome["decide"]
    print()
    print(f"signals() and decide() made the same fills and final equity: {same}")


if __name__ == "__main__":
    main()

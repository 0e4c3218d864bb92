"""The vectorised signals() path against backtesting.py (vectorbt and backtrader when installed), side by side, 1M bars.

Run from the repository root::

    PYTHONPATH=. python bench/bench_signals.py [--bars 1000000] [--repeat 3] [--backtrader]

One process, the data of bench/bench_backtest.py (SMA 10/30 crossover on synthetic 1-minute
bars, all-in, fill at the next open, no fee), each engine timed in turn per round, medians:

- ours, signals(): bench/strategies/sma_1m_signals.py — signals computed and lookahead-checked
  like indicators, the engine visiting only the bars with a signal or a pending fill;
- ours, decide(): bench/strategies/sma_1m.py, the same rule called every bar;
- backtesting.py 0.6.6: ``Backtest(...).run()`` with the same rules (bench_backtest.run_theirs);
- vectorbt (if importable): ``Portfolio.from_signals`` on the same entries and exits with
  ``price=open`` shifted to the next bar — a vectorised simulator, a different class of tool,
  shown for reference only;
- backtrader (with ``--backtrader``, if importable): the same rule as an event-driven
  ``bt.Strategy`` on a ``PandasData`` feed of the same candles. With ``cheat_on_open`` its
  ``next_open`` sees the last bar's crossover (``bt.ind.CrossOver`` of the two SMAs, as
  backtesting.py's ``crossover``) and the new bar's open, so it sizes all-in at the open it fills
  at, as backtesting.py and we do; no fee. About a minute a run at 1M bars, so it runs once, after
  the rounds (its row's median is of that one run).

Checks that both of our runs made the same trades and final equity as backtesting.py.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

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


def backtrader_run(frame: object) -> tuple[float, int, float] | None:
    """Seconds, fills and final value of backtrader's run, or None when it is not installed."""
    try:
        import backtrader as bt
    except ImportError:
        return None

    class SmaCross(bt.Strategy):  # type: ignore[misc]  # backtrader ships no type information
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(bt.ind.SMA(self.data.close, period=bench.FAST),
                                          bt.ind.SMA(self.data.close, period=bench.SLOW))
            self.fills = 0

        def notify_order(self, order: Any) -> None:
            if order.status == order.Completed:
                self.fills += 1

        def next_open(self) -> None:  # the indicators still hold the last bar's values; the open is this bar's
            if not self.position:
                if self.cross[0] > 0:
                    self.buy(size=math.floor(self.broker.getcash() * bench.ALL_IN / self.data.open[0]))
            elif self.cross[0] < 0:
                self.close()

    columns = frame[["open", "high", "low", "close", "volume"]]  # type: ignore[index]
    feed = bt.feeds.PandasData(dataname=columns.set_axis(columns.index.tz_localize(None)))
    cerebro = bt.Cerebro(cheat_on_open=True, stdstats=False)
    cerebro.adddata(feed)
    cerebro.addstrategy(SmaCross)
    cerebro.broker.setcash(bench.CASH)
    started = time.perf_counter()
    (strategy,) = cerebro.run()
    seconds = time.perf_counter() - started
    return seconds, strategy.fills, float(cerebro.broker.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backtrader", action="store_true", help="Also run backtrader once (about a minute).")
    args = parser.parse_args()
    frame, market, _ = bench.prepare(args.bars)
    ohlcv, _ = bench.their_frame(frame)
    times: dict[str, list[float]] = {"signals": [], "decide": [], "theirs": [], "vectorbt": [], "backtrader": []}
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
    backtrader = backtrader_run(frame) if args.backtrader else None
    if backtrader is not None:
        times["backtrader"].append(backtrader[0])
        outcome["backtrader"] = backtrader[1:]
    theirs = statistics.median(times["theirs"])
    print(f"{args.bars:,} bars; median of {args.repeat}; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| engine | median seconds | bars per second | backtesting.py / this | trades (fills) | final equity |")
    print("|---|---:|---:|---:|---:|---:|")
    labels = {"signals": "ours, signals()", "decide": "ours, decide()", "theirs": "backtesting.py",
              "vectorbt": "vectorbt from_signals (reference)", "backtrader": "backtrader (one run)"}
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

"""A backtest whose positions carry stop-loss, take-profit and a trailing stop: the engine's trigger check per bar.

Run from the repository root::

    PYTHONPATH=. python bench/bench_triggers.py [--bars 100000] [--repeat 5]

The strategy is strategies/eurusd_breakout.py with ``trailing_stop_pct=0.003`` on ``--bars`` synthetic hourly
EURUSD candles (seeded). Every bar with a position open checks its three triggers, so this is the path the
SMA benchmarks (no triggers) never take. Reported: CPU seconds of the backtest (median of ``--repeat`` in one
process), the same strategy without the trailing stop beside it, their ratio, and the orders and final cash, which
must not move with a speed change. To compare two checkouts, run this from each, alternated, and compare medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest.runner import run_backtest  # noqa: E402
from tradeexecutor.config import EngineConfig, ExecutionConfig  # noqa: E402
from tradeexecutor.data import generate_candles  # noqa: E402
from tradeexecutor.data.market import MarketData  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

STRATEGY = ROOT / "strategies" / "eurusd_breakout.py"


def timed(data: MarketData, trailing: float, repeat: int) -> tuple[list[float], int, float]:
    strategy = load_strategy(STRATEGY, {"trailing_stop_pct": trailing})
    config = EngineConfig(execution=ExecutionConfig(fee=0.0), initial_cash=10_000.0)
    seconds = []
    for _ in range(repeat):
        started = time.process_time()
        result = run_backtest(strategy, data, config)
        seconds.append(time.process_time() - started)
    orders = sum(1 for _ in result.state.portfolio.all_orders())
    return seconds, orders, result.state.portfolio.cash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    frame = generate_candles(args.bars, frequency="1h", seed=3, symbol="EURUSD", volatility=0.002)
    data = MarketData.from_long_frame(frame, asset_types={"EURUSD": "fx"})
    rows = {name: timed(data, trailing, args.repeat) for name, trailing in (("trailing", 0.003), ("fixed", 0.0))}
    medians = {name: statistics.median(row[0]) for name, row in rows.items()}
    print(f"{args.bars:,} hourly bars; median of {args.repeat}; load average {os.getloadavg()[0]:.1f}; {ROOT}")
    for name, (seconds, orders, cash) in rows.items():
        print(f"{name:>8}: {medians[name]:.3f} s CPU ({', '.join(f'{s:.3f}' for s in seconds)}); "
              f"{orders:,} orders; cash {cash:,.2f}")
    print(f"trailing / fixed: {medians['trailing'] / medians['fixed']:.2f}")


if __name__ == "__main__":
    main()

"""Append a candle and decide: the per-bar cost of market data that grows, against the length of the history.

Run from the repository root::

    PYTHONPATH=. python bench/bench_growing.py [--histories 1000,10000,100000,1000000] [--appends 300]

For each history length N: synthetic 1-minute candles (bench/bench_backtest.py's generator), of
which the first N are loaded as the market, and the SMA crossover of bench/strategies/sma_1m.py
with a 200-bar slow average (fast 50). Then, ``--appends`` times, one new candle is appended and
the daemon's per-bar work runs on it, timed as one: ``MarketData.append``, ``Engine.follow_market``
(the new bar's indicators, computed on the tail window found at start-up), fill/triggers/mark,
the cycle decision from ``CycleSchedule`` and the valuation row. The first append (which looks
for the tail window once) is left out. Timed in CPU seconds of this process
(``time.process_time``), which a busy machine disturbs less than wall time. Reported: the
median and 90th percentile per append, and the median at each N over the median at the
smallest N (goal: flat, <= 1.5).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tradeexecutor.backtest.runner import new_state  # noqa: E402
from tradeexecutor.config import EngineConfig  # noqa: E402
from tradeexecutor.data import generate_candles  # noqa: E402
from tradeexecutor.data.market import MarketData  # noqa: E402
from tradeexecutor.engine.engine import Engine  # noqa: E402
from tradeexecutor.engine.schedule import CycleSchedule  # noqa: E402
from tradeexecutor.strategy.loader import load_strategy  # noqa: E402

STRATEGY = ROOT / "bench" / "strategies" / "sma_1m.py"
SYMBOL = "SYN"
GOAL_RATIO = 1.5


def measure(history: int, appends: int) -> tuple[list[float], int | None]:
    """CPU seconds per append-and-decide after ``history`` bars; and the indicators' tail window."""
    frame = generate_candles(history + appends + 1, frequency="1m", seed=1, symbol=SYMBOL)
    whole = MarketData.from_long_frame(frame, asset_types={SYMBOL: "equity"})
    market = MarketData.from_long_frame(frame.iloc[:history], asset_types={SYMBOL: "equity"})
    strategy = load_strategy(STRATEGY, {"fast": "50", "slow": "200"})
    config = EngineConfig(check_indicator_lookahead=False)  # a start-up cost, not a per-bar one
    engine = Engine(strategy, market, new_state(strategy, config), config=config)
    schedule = CycleSchedule(timedelta(minutes=1))
    bars = whole.bars[SYMBOL]
    times: list[float] = []
    for index in range(history, history + appends + 1):
        started = time.process_time()
        step = market.append(int(bars.close_time_ns[index]), {SYMBOL: (
            bars.open.item(index), bars.high.item(index), bars.low.item(index), bars.close.item(index),
            bars.volume.item(index))})
        engine.follow_market()
        engine.manage(step)
        cycle = schedule.due(market.timeline_ns, step, int(market.timeline_ns[step]))
        if cycle:
            engine.decide(step, cycle)
        engine.record_valuation(step)
        times.append(time.process_time() - started)
    return times[1:], engine.indicators.tails.get(SYMBOL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--histories", default="1000,10000,100000,1000000")
    parser.add_argument("--appends", type=int, default=300)
    args = parser.parse_args(argv)
    histories = [int(h) for h in args.histories.split(",")]
    print(f"python {platform.python_version()} on {platform.machine()}, {args.appends} appends each")
    base: float | None = None
    worst = 0.0
    for history in histories:
        times, tail = measure(history, args.appends)
        median = statistics.median(times)
        p90 = sorted(times)[int(0.9 * len(times))]
        base = base or median
        worst = max(worst, median / base)
        print(f"history {history:>9,} bars: median {median * 1e3:6.2f} ms, p90 {p90 * 1e3:6.2f} ms per append "
              f"(tail window {tail} bars), {median / base:4.2f}x the shortest history")
    print(f"goal: flat (<= {GOAL_RATIO}x): {'met' if worst <= GOAL_RATIO else 'NOT met'} ({worst:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of state persistence: dataclasses-json against tradeexecutor.store on a large history.

Run from the repository root::

    python bench/bench_state_store.py [--positions 10000] [--runs 5]

Builds a State with N closed positions (2 trades each) plus valuations, then measures, side by
side in one process, the median of ``--runs`` runs of:

(a) ``state.to_json()`` against ``dumps_state`` plus an atomic write of the full snapshot,
(b) ``State.from_json()`` against ``loads_state``,
(c) one per-cycle ``StateStore.save`` adding one valuation row, at two history sizes, to show the
    bytes appended do not depend on history.

Goals: (a) ≥ 50x, (b) ≥ 20x, (c) bytes per save independent of history. Prints a markdown table.
Not a pytest test: timings are for people, the size property is tested in tests/.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import orjson

from state_builders import make_order  # noqa: E402
from tradeexecutor.atomic import atomic_write_bytes
from tradeexecutor.state import Position, State
from tradeexecutor.store import StateStore, dumps_state, loads_state
from tradeexecutor.store.codec import PositionFragments

T0 = datetime(2020, 1, 1, tzinfo=UTC)
MS0 = 1_577_836_800_000


def build_state(closed_positions: int, valuations: int) -> State:
    """A state with ``closed_positions`` closed positions of two trades each, 3 open ones and valuations."""
    state = State(name="bench", strategy_version="ab" * 32, created_at=T0, initial_cash=1_000_000.0)
    for symbol, asset_type, step in [
        ("AAPL", "equity", 1.0),
        ("MSFT", "equity", 1.0),
        ("EURUSD", "fx", 0.01),
        ("BTCUSD", "crypto", 1e-8),
        ("ES", "future", 1.0),
    ]:
        state.add_instrument(symbol, asset_type, step)
    portfolio = state.portfolio
    trade_id = 1

    def position(pid: int, at: datetime, closed: bool) -> Position:
        nonlocal trade_id
        instrument_id = pid % 5 + 1
        entry = 100.0 + pid / 7
        p = Position(
            id=pid,
            instrument_id=instrument_id,
            opened_at=at,
            quantity=0.0 if closed else 10.0,
            cost_basis=0.0 if closed else 10 * entry,
            realised_pnl=(pid % 13 - 6) * 1.37,
            fees_paid=1.5,
            stop_loss=entry * 0.95,
            take_profit=entry * 1.1,
            trailing_stop_pct=0.05,
            high_water=entry * 1.02,
            last_price=entry * 1.01,
            last_valued_at=at + timedelta(hours=1),
            closed_at=at + timedelta(hours=1) if closed else None,
        )
        legs = [("open", 10.0), ("close", -10.0)] if closed else [("open", 10.0)]
        for kind, quantity in legs:
            p.orders.append(
                make_order(trade_id, pid, instrument_id, kind, at, quantity=abs(quantity), reference_price=entry,
                           fill_at=at + timedelta(minutes=1), fill_price=entry * 1.0005, fee=0.75,
                           slippage=0.005 * entry, realised_pnl=-0.75 if kind == "open" else p.realised_pnl,
                           note="sma cross")
            )
            trade_id += 1
        return p

    for pid in range(1, closed_positions + 1):
        portfolio.closed_positions.append(position(pid, T0 + timedelta(hours=2 * pid), closed=True))
    for pid in range(closed_positions + 1, closed_positions + 4):
        portfolio.open_positions.append(position(pid, T0 + timedelta(hours=2 * pid), closed=False))
    portfolio.next_position_id = closed_positions + 4
    portfolio.next_order_id = trade_id
    portfolio.cash = 512_345.67
    for i in range(valuations):
        state.valuations.append(MS0 + i * 3_600_000, 1e6 + i * 1.1, 5e5 + i / 3, 0.5 + (i % 100) / 1000)
    state.cycles_completed = valuations
    return state


def median_ms(*fns: Callable[[], Any], runs: int) -> list[float]:
    """Median wall time of ``runs`` calls of each function, in milliseconds.

    The functions take turns, so that a busy machine slows each of them alike.
    """
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(runs):
        for fn, samples in zip(fns, times):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) * 1000 for samples in times]


def per_cycle_save(state: State, directory: Path, runs: int) -> tuple[float, int]:
    """Median time and bytes of StateStore.save adding one valuation row on top of ``state``'s history."""
    store = StateStore(directory, max_log_records=10_000, max_log_bytes=1 << 30)
    store.save(state)  # the first save writes the full snapshot
    times, sizes = [], []
    last = state.valuations.timestamp[-1]
    for i in range(runs):
        state.valuations.append(last + (i + 1) * 3_600_000, 1e6 + i, 5e5, 0.5)
        state.cycles_completed += 1
        start = time.perf_counter()
        store.save(state)
        times.append(time.perf_counter() - start)
        sizes.append(store.last_save_bytes)
    assert StateStore(directory).load() == state
    return statistics.median(times) * 1000, int(statistics.median(sizes))


def main() -> None:
    """Build the states, measure, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=10_000, help="closed positions (2 trades each)")
    parser.add_argument("--valuations", type=int, default=5_000, help="valuation rows")
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    args = parser.parse_args()

    state = build_state(args.positions, args.valuations)
    trades = sum(len(p.orders) for p in state.portfolio.all_positions())
    data = dumps_state(state)
    text = state.to_json()
    assert loads_state(data, source="bench") == state == State.from_json(text)

    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "state.json"

        def ours_save() -> None:
            atomic_write_bytes(snapshot, dumps_state(state))

        save_dcj, save_ours, encode_only, write_only = median_ms(
            state.to_json,
            ours_save,
            lambda: dumps_state(state),
            lambda: atomic_write_bytes(snapshot, data),
            runs=args.runs,
        )
        # The running executor's case: its cache already holds the closed positions' JSON.
        fragments = PositionFragments()
        assert dumps_state(state, fragments) == data  # identical bytes, cold or warm

        def warm_save() -> None:
            atomic_write_bytes(snapshot, dumps_state(state, fragments))

        (save_warm,) = median_ms(warm_save, runs=args.runs)
        load_dcj, load_ours = median_ms(
            lambda: State.from_json(text), lambda: loads_state(data, source="bench"), runs=args.runs
        )

        small = build_state(args.positions // 100, args.valuations // 100)
        cycle_small_ms, cycle_small_bytes = per_cycle_save(small, Path(tmp) / "small", args.runs)
        cycle_big_ms, cycle_big_bytes = per_cycle_save(state, Path(tmp) / "big", args.runs)
        (store_load,) = median_ms(lambda: StateStore(Path(tmp) / "big").load(), runs=args.runs)

    print(
        f"State: {args.positions:,} closed positions, {trades:,} trades, {args.valuations:,} valuation rows; "
        f"snapshot {len(data) / 1e6:.1f} MB; median of {args.runs} runs; Python {sys.version.split()[0]}, "
        f"orjson {orjson.__version__}\n"
    )
    print("| operation | dataclasses-json | tradeexecutor.store | speed-up | goal |")
    print("|---|---:|---:|---:|---|")
    print(
        f"| (a) save full state (ours: dumps_state + atomic write, fsync) | {save_dcj:,.1f} ms | "
        f"{save_ours:,.1f} ms | {save_dcj / save_ours:,.0f}x | ≥ 50x {'✓' if save_dcj / save_ours >= 50 else '✗'} |"
    )
    print(
        f"| &nbsp;&nbsp;of which dumps_state / atomic write | | {encode_only:,.1f} / {write_only:,.1f} ms | | |"
    )
    print(
        f"| (a') save full state, closed positions already encoded (a running executor) | {save_dcj:,.1f} ms | "
        f"{save_warm:,.1f} ms | {save_dcj / save_warm:,.0f}x | ≥ 50x {'✓' if save_dcj / save_warm >= 50 else '✗'} |"
    )
    print(
        f"| (b) load full state (loads_state) | {load_dcj:,.1f} ms | {load_ours:,.1f} ms | "
        f"{load_dcj / load_ours:,.0f}x | ≥ 20x {'✓' if load_dcj / load_ours >= 20 else '✗'} |"
    )
    print(
        f"| (c) per-cycle StateStore.save, +1 valuation row | {save_dcj:,.1f} ms (to_json) | "
        f"{cycle_big_ms:,.2f} ms, {cycle_big_bytes:,} B | {save_dcj / cycle_big_ms:,.0f}x | |"
    )
    print(
        f"| StateStore.load (snapshot + {args.runs}-record log) | {load_dcj:,.1f} ms (from_json) | "
        f"{store_load:,.1f} ms | {load_dcj / store_load:,.0f}x | |"
    )
    print()
    print("| per-cycle save (+1 valuation row) | bytes appended | time |")
    print("|---|---:|---:|")
    print(
        f"| history {args.positions // 100:,} closed positions | {cycle_small_bytes:,} B | {cycle_small_ms:,.2f} ms |"
    )
    print(f"| history {args.positions:,} closed positions | {cycle_big_bytes:,} B | {cycle_big_ms:,.2f} ms |")


if __name__ == "__main__":
    main()

"""The trades/orders CSV written row by row equals the pandas frame's CSV, and stays equal as a run grows."""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings

from state_builders import make_order
from test_store_codec import states
from tradeexecutor.state import Position, State
from tradeexecutor.stats import trades_frame, write_trades_csv
from tradeexecutor.stats.trades_csv import TradesCsv, trades_csv_bytes

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def pandas_csv(state: State) -> bytes:
    """What write_trades_csv wrote before it formatted rows itself: the frame's to_csv with ISO times."""
    frame = trades_frame(state)
    for column in ("planned_at", "executed_at"):
        frame[column] = ["" if pd.isna(value) else str(pd.Timestamp(value).isoformat()) for value in frame[column]]
    text: str = frame.to_csv(index=False, lineterminator="\n")
    return text.encode("utf-8")


def unique_order_ids(state: State) -> State:
    """Real states number orders uniquely (the frame's order for equal ids is not a contract)."""
    ids = list(range(1, 1 + sum(len(p.orders) for p in state.portfolio.all_positions())))
    random.Random(len(ids)).shuffle(ids)
    for position in state.portfolio.all_positions():
        for order in position.orders:
            order.id = ids.pop()
    return state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states)
def test_rows_equal_the_frames_csv_on_random_states(state: State) -> None:
    """Extremes included: huge, tiny and negative-zero floats, missing values, texts with commas, quotes, newlines."""
    state = unique_order_ids(state)
    assert trades_csv_bytes(state) == pandas_csv(state)


def test_an_empty_state_is_the_header_alone(tmp_path: Path) -> None:
    state = State(name="empty")
    written = write_trades_csv(state, tmp_path / "orders.csv")
    assert written.read_bytes() == pandas_csv(state) == (
        b"trade_id,position_id,symbol,kind,status,side,planned_at,executed_at,planned_quantity,executed_quantity,"
        b"executed_price,value,fee,slippage,realised_pnl,trigger,trigger_price,reject_reason,note,"
        b"client_order_id,reject_code,fee_currency\n")


def grow(state: State, rng: random.Random, cycle: int) -> None:
    """One cycle of a busy run: maybe open a position, maybe close one (any, not only the oldest), maybe fail one."""
    portfolio = state.portfolio
    at = T0 + timedelta(minutes=cycle)
    if rng.random() < 0.5:
        order_id = portfolio.next_order_id
        portfolio.next_order_id += 1
        position = Position(id=portfolio.next_position_id, instrument_id=1, opened_at=at, quantity=1.0)
        portfolio.next_position_id += 1
        position.orders.append(make_order(order_id, position.id, 1, "open", at, quantity=rng.random() * 10,
                                          fill_price=100 + rng.random(), note="a, \"quoted\" note" if cycle % 7 else None))
        portfolio.open_positions.append(position)
    if portfolio.open_positions and rng.random() < 0.4:
        position = portfolio.open_positions.pop(rng.randrange(len(portfolio.open_positions)))
        order_id = portfolio.next_order_id
        portfolio.next_order_id += 1
        position.orders.append(make_order(order_id, position.id, 1, "close", at, quantity=1.0,
                                          fill_price=99 + rng.random(), realised_pnl=rng.random() - 0.5))
        position.closed_at = at
        portfolio.closed_positions.append(position)
    if portfolio.open_positions and rng.random() < 0.05:
        position = portfolio.open_positions.pop(0)
        order_id = portfolio.next_order_id
        portfolio.next_order_id += 1
        position.orders.append(make_order(order_id, position.id, 1, "close", at, status="rejected", value=5.0,
                                          reason="not enough cash"))
        portfolio.failed_positions.append(position)


def test_one_writer_over_a_growing_run_writes_what_a_fresh_one_writes(tmp_path: Path) -> None:
    """500 cycles of opens, closes out of id order and failures; a reload (new lists) midway."""
    rng = random.Random(12)
    state = State(name="growing")
    state.add_instrument("SYN", "crypto", 0.001)
    writer = TradesCsv()
    target = tmp_path / "public" / "orders.csv"
    for cycle in range(500):
        grow(state, rng, cycle)
        if cycle == 250:
            state = copy.deepcopy(state)  # what a reload gives: the same content in new objects
        if cycle % 5 == 0 or cycle > 480:
            writer(state, target)
            assert target.read_bytes() == pandas_csv(state), cycle
    assert len(state.portfolio.closed_positions) > 100 and state.portfolio.failed_positions
    assert len(target.read_bytes().splitlines()) == 1 + sum(1 for _ in state.portfolio.all_orders())


def test_a_changed_symbol_or_an_order_added_to_a_kept_position_is_written_afresh() -> None:
    rng = random.Random(3)
    state = State(name="changes")
    state.add_instrument("SYN", "crypto", 0.001)
    for cycle in range(60):
        grow(state, rng, cycle)
    writer = TradesCsv()
    assert writer.data(state) == pandas_csv(state)
    state.instruments[0].symbol = "RENAMED"
    assert writer.data(state) == pandas_csv(state)
    closed = state.portfolio.closed_positions[0]
    closed.orders.append(make_order(state.portfolio.next_order_id, closed.id, 1, "close", T0, status="cancelled",
                                    reason="operator"))
    state.portfolio.next_order_id += 1
    state.portfolio.closed_positions = list(state.portfolio.closed_positions)  # a new list: the writer starts over
    assert writer.data(state) == pandas_csv(state)

"""The order model: the transition table (every legal and illegal change), client order ids, and schema 1 → 2.

The state machine is checked two ways: exhaustively over every (from, to) pair, and by
hypothesis over random walks, so a change to ORDER_TRANSITIONS that opens a way out of a
terminal status, or a transition() that forgets to check, fails here.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeexecutor.engine.accounting import recompute_cash, recompute_from_fills
from tradeexecutor.errors import InvariantError
from tradeexecutor.state import (
    ORDER_TRANSITIONS,
    SCHEMA_VERSION,
    TERMINAL_STATUSES,
    IllegalTransition,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    RejectReason,
    State,
    TriggerKind,
    client_order_id,
    run_key,
)
from tradeexecutor.state.client_id import CLIENT_ORDER_ID_PATTERN, parse_client_order_id
from tradeexecutor.state.migrate import migrate_state_dict
from tradeexecutor.store import StateStore
from tradeexecutor.store.codec import loads_state

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
ALL = list(OrderStatus)


def new_order(status: OrderStatus = OrderStatus.created) -> Order:
    order = Order(id=1, client_order_id="te00000000-0-00o", position_id=1, instrument_id=1,
                  purpose=OrderPurpose.open, side=OrderSide.buy, created_at=T0)
    order.status = status
    return order


# ---------------------------------------------------------------------------------------------
# The transition table


@pytest.mark.parametrize(("old", "new"), list(itertools.product(ALL, ALL)),
                         ids=lambda s: s.value)
def test_every_pair_is_legal_exactly_when_the_table_says(old: OrderStatus, new: OrderStatus) -> None:
    order = new_order(old)
    at = T0 + timedelta(minutes=1)
    if new in ORDER_TRANSITIONS[old]:
        order.transition(new, at, "why")
        assert order.status is new and order.updated_at == at and order.status_reason == "why"
        assert (order.closed_at == at) == (new in TERMINAL_STATUSES)
        assert (order.submitted_at == at) == (new is OrderStatus.submitting)
    else:
        with pytest.raises(IllegalTransition, match=f"from {old.value} to {new.value}") as caught:
            order.transition(new, at, "why")
        assert isinstance(caught.value, InvariantError)  # a bug: the loop crashes, never retries
        assert order.status is old and order.updated_at is None and order.status_reason is None


def test_the_table_has_the_shape_the_issue_draws() -> None:
    assert set(ORDER_TRANSITIONS) == set(OrderStatus)
    for status in TERMINAL_STATUSES:
        assert ORDER_TRANSITIONS[status] == frozenset(), f"{status.value} is terminal"
    assert {OrderStatus.filled, OrderStatus.cancelled, OrderStatus.rejected, OrderStatus.expired} == TERMINAL_STATUSES
    # created → submitting → open → partially_filled → filled | cancelled | rejected | expired, plus unknown.
    for old, new in [("created", "submitting"), ("submitting", "open"), ("open", "partially_filled"),
                     ("partially_filled", "filled"), ("partially_filled", "cancelled"), ("open", "expired"),
                     ("submitting", "rejected"), ("submitting", "unknown"), ("unknown", "filled"),
                     ("unknown", "rejected"), ("partially_filled", "partially_filled")]:
        assert OrderStatus(new) in ORDER_TRANSITIONS[OrderStatus(old)], (old, new)
    # Asked, the venue may say it never saw an unknown order: it is sent again under the same id.
    assert OrderStatus.submitting in ORDER_TRANSITIONS[OrderStatus.unknown]
    # A timeout happens only once something was sent: a created order is never unknown.
    assert OrderStatus.unknown not in ORDER_TRANSITIONS[OrderStatus.created]
    # Once the venue has accepted an order it may not reject it, and nothing goes back to created.
    assert OrderStatus.rejected not in ORDER_TRANSITIONS[OrderStatus.open]
    assert all(OrderStatus.created not in targets for targets in ORDER_TRANSITIONS.values())
    # Every status is reachable from created.
    seen, frontier = {OrderStatus.created}, [OrderStatus.created]
    while frontier:
        for nxt in ORDER_TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(OrderStatus)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(ALL), max_size=12))
def test_random_walks_follow_the_table_and_never_leave_a_terminal_status(targets: list[OrderStatus]) -> None:
    order = new_order()
    history = [order.status]
    for step, target in enumerate(targets):
        before = order.status
        at = T0 + timedelta(seconds=step + 1)
        if target in ORDER_TRANSITIONS[before]:
            order.transition(target, at)
            history.append(target)
        else:
            with pytest.raises(IllegalTransition):
                order.transition(target, at)
            assert order.status is before
        if before in TERMINAL_STATUSES:
            assert order.status is before, "a terminal order changed"
    for old, new in itertools.pairwise(history):
        assert new in ORDER_TRANSITIONS[old]
    assert (order.closed_at is not None) == (order.status in TERMINAL_STATUSES)


def test_partial_fills_add_up() -> None:
    from tradeexecutor.state import Fill

    order = new_order()
    order.quantity = 10.0
    order.transition(OrderStatus.submitting, T0)
    order.transition(OrderStatus.open, T0)
    order.fills.append(Fill(id=1, order_id=1, quantity=4.0, price=100.0, at=T0, fee=0.4))
    order.transition(OrderStatus.partially_filled, T0)
    order.fills.append(Fill(id=2, order_id=1, quantity=6.0, price=110.0, at=T0 + timedelta(seconds=5), fee=0.66))
    order.transition(OrderStatus.filled, T0 + timedelta(seconds=5))
    assert order.filled_quantity == 10.0 and order.signed_filled_quantity == 10.0
    assert order.average_fill_price == pytest.approx(106.0)
    assert order.fees == pytest.approx(1.06) and order.filled_at == T0 + timedelta(seconds=5)
    assert order.is_terminal


# ---------------------------------------------------------------------------------------------
# Client order ids


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=40), created=st.datetimes(timezones=st.just(UTC)),
       at=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)),
       seq=st.integers(min_value=0, max_value=10**6), purpose=st.sampled_from(list(OrderPurpose)),
       position=st.none() | st.integers(min_value=1, max_value=10**9))
def test_client_order_ids_are_deterministic_and_venue_safe(name: str, created: datetime, at: datetime, seq: int,
                                                           purpose: OrderPurpose, position: int | None) -> None:
    run = run_key(name, created)
    first = client_order_id(run, at, seq, purpose, position_id=position)
    assert first == client_order_id(run_key(name, created), at, seq, purpose, position_id=position)
    assert CLIENT_ORDER_ID_PATTERN.match(first) and len(first) <= 36


@settings(max_examples=200, deadline=None)
@given(created=st.datetimes(timezones=st.just(UTC)),
       at=st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)),
       seq=st.integers(min_value=0, max_value=899), purpose=st.sampled_from(list(OrderPurpose)),
       position=st.none() | st.integers(min_value=1, max_value=10**9))
def test_an_id_reads_back_as_what_made_it(created: datetime, at: datetime, seq: int, purpose: OrderPurpose,
                                          position: int | None) -> None:
    """Reconciliation reads an order of ours it finds on the exchange by its id (the engine names a position only in
    a close's id; an intent index below 900, which is all a decision ever reaches, is never read as a position)."""
    run = run_key("SMA", created)
    if position is not None:
        purpose = OrderPurpose.close
    parts = parse_client_order_id(client_order_id(run, at, seq, purpose, position_id=position))
    assert parts is not None
    assert (parts.run, parts.at, parts.purpose) == (run, at.replace(microsecond=at.microsecond // 1000 * 1000), purpose)
    assert (parts.position_id, parts.seq) == ((position, None) if position is not None else (None, seq))


def test_ids_not_ours_read_as_none() -> None:
    run = run_key("SMA", T0)
    made = client_order_id(run, T0, 0, OrderPurpose.open)
    for other in ("manual-order-1", "", made[:-1] + "x", made.replace("te", "tx", 1), f"{made}o", "te12-1-00o"):
        assert parse_client_order_id(other) is None, other


def test_client_order_ids_differ_when_the_decision_differs() -> None:
    run = run_key("SMA", T0)
    ids = {
        client_order_id(run, T0, 0, OrderPurpose.open),
        client_order_id(run, T0, 1, OrderPurpose.open),
        client_order_id(run, T0, 0, OrderPurpose.close),
        client_order_id(run, T0 + timedelta(milliseconds=1), 0, OrderPurpose.open),
        client_order_id(run_key("SMA", T0 + timedelta(seconds=1)), T0, 0, OrderPurpose.open),
        client_order_id(run_key("EMA", T0), T0, 0, OrderPurpose.open),
        client_order_id(run, T0, 1, OrderPurpose.close, position_id=1),  # a trigger exit never meets a cycle's id
        client_order_id(run, T0, 0, OrderPurpose.close, position_id=2),
    }
    assert len(ids) == 8


# ---------------------------------------------------------------------------------------------
# Schema 1 → 2


def _v1_trade(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "planned_quantity": 0.0, "planned_value": None, "planned_price": None, "executed_at": None,
        "executed_price": None, "executed_quantity": 0.0, "fee": 0.0, "slippage": 0.0, "reject_reason": None,
        "trigger": None, "trigger_price": None, "realised_pnl": 0.0, "note": None,
    }
    base.update(fields)
    return base


def _v1_position(pid: int, trades: list[dict[str, object]], **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": pid, "instrument_id": 1, "opened_at": "2024-03-01T12:00:00+00:00", "direction": "long",
        "quantity": 0.0, "cost_basis": 0.0, "realised_pnl": 0.0, "fees_paid": 0.0, "stop_loss": None,
        "take_profit": None, "trailing_stop_pct": None, "high_water": None, "stop_loss_pct": None,
        "take_profit_pct": None, "last_price": None, "last_valued_at": None, "closed_at": None, "trades": trades,
    }
    base.update(fields)
    return base


def v1_state() -> dict[str, Any]:
    """A schema-1 state as PR-era executors wrote it: a closed round trip (stop-loss exit), a rejected
    open, an open position with a filled entry and a still-planned increase, and a cancelled order."""
    d1, d2, d3 = "2024-03-02T00:00:00+00:00", "2024-03-03T00:00:00+00:00", "2024-03-04T00:00:00+00:00"
    closed = _v1_position(1, [
        _v1_trade(id=1, position_id=1, instrument_id=1, kind="open", status="executed", planned_at=d1,
                  planned_value=1000.0, planned_price=100.0, executed_at=d1, executed_price=100.0,
                  executed_quantity=9.0, fee=0.9, realised_pnl=-0.9, note="cross"),
        _v1_trade(id=2, position_id=1, instrument_id=1, kind="close", status="executed", planned_at=d2,
                  planned_quantity=-9.0, planned_price=95.0, executed_at=d2, executed_price=95.0,
                  executed_quantity=-9.0, fee=0.855, realised_pnl=-45.855, trigger="stop_loss",
                  trigger_price=95.0),
    ], realised_pnl=-46.755, fees_paid=1.755, closed_at=d2, last_price=95.0)
    failed = _v1_position(2, [
        _v1_trade(id=3, position_id=2, instrument_id=1, kind="open", status="rejected", planned_at=d2,
                  planned_value=5.0, planned_price=95.0, executed_at=d3,
                  reject_reason="order rounds to zero: value 5.00 buys less than one lot of 1 at 95"),
    ], closed_at=d3)
    cancelled = _v1_position(3, [
        _v1_trade(id=4, position_id=3, instrument_id=1, kind="open", status="rejected", planned_at=d2,
                  planned_value=500.0, planned_price=95.0, executed_at=d3,
                  reject_reason="cancelled by close() before it filled"),
    ], closed_at=d3)
    open_position = _v1_position(4, [
        _v1_trade(id=5, position_id=4, instrument_id=1, kind="open", status="executed", planned_at=d2,
                  planned_value=950.0, planned_price=95.0, executed_at=d3, executed_price=96.0,
                  executed_quantity=9.0, fee=0.864, realised_pnl=-0.864),
        _v1_trade(id=6, position_id=4, instrument_id=1, kind="increase", status="planned", planned_at=d3,
                  planned_value=100.0, planned_price=97.0),
    ], quantity=9.0, cost_basis=864.0, realised_pnl=-0.864, fees_paid=0.864, last_price=97.0)
    cash = 10_000.0 - 900.9 + 855 - 0.855 - 864.864
    return {
        "schema_version": 1, "name": "SMA", "strategy_version": "abc", "created_at": "2024-03-01T12:00:00+00:00",
        "instruments": [{"id": 1, "symbol": "GOOG", "asset_type": "equity", "quantity_step": 1.0,
                         "min_notional": 0.0, "quote_currency": "USD"}],
        "portfolio": {"cash": cash, "open_positions": [open_position], "closed_positions": [closed],
                      "failed_positions": [failed, cancelled], "next_position_id": 5, "next_trade_id": 7,
                      "fees_paid": 2.619},
        "valuations": {"timestamp": [1709337600000], "equity": [10_000.0], "cash": [10_000.0], "exposure": [0.0]},
        "last_completed_cycle": d3, "cycles_completed": 3, "replay_cursor": -1, "initial_cash": 10_000.0,
    }


def check_migrated(state: State) -> None:
    assert state.schema_version == SCHEMA_VERSION == 2
    portfolio = state.portfolio
    assert portfolio.next_order_id == 7 and portfolio.next_fill_id == 4
    (closed,) = portfolio.closed_positions
    entry, exit_ = closed.orders
    assert entry.status is OrderStatus.filled and entry.side is OrderSide.buy and entry.purpose is OrderPurpose.open
    assert entry.quantity is None and entry.value == 1000.0 and entry.reference_price == 100.0
    assert [(f.quantity, f.price, f.fee) for f in entry.fills] == [(9.0, 100.0, 0.9)] and entry.note == "cross"
    assert exit_.status is OrderStatus.filled and exit_.side is OrderSide.sell and exit_.quantity == 9.0
    assert exit_.trigger is TriggerKind.stop_loss and exit_.signed_filled_quantity == -9.0
    assert exit_.fills[0].realised_pnl == -45.855
    rejected = portfolio.failed_positions[0].orders[0]
    assert rejected.status is OrderStatus.rejected and rejected.reject_reason is RejectReason.rounds_to_zero
    assert rejected.status_reason is not None and "rounds to zero" in rejected.status_reason and not rejected.fills
    cancelled = portfolio.failed_positions[1].orders[0]
    assert cancelled.status is OrderStatus.cancelled and cancelled.reject_reason is None
    (position,) = portfolio.open_positions
    filled, waiting = position.orders
    assert filled.status is OrderStatus.filled and waiting.status is OrderStatus.created and not waiting.fills
    ids = [o.client_order_id for o in portfolio.all_orders()]
    assert len(set(ids)) == len(ids) and all(CLIENT_ORDER_ID_PATTERN.match(i) for i in ids)
    fill_ids = [f.id for o in portfolio.all_orders() for f in o.fills]
    assert sorted(fill_ids) == [1, 2, 3]
    for p in portfolio.all_positions():
        figures = recompute_from_fills(p)
        assert (figures.quantity, figures.cost_basis) == (p.quantity, p.cost_basis)
        assert figures.realised_pnl == pytest.approx(p.realised_pnl) and figures.fees_paid == pytest.approx(p.fees_paid)
    assert recompute_cash(state.initial_cash, portfolio) == pytest.approx(portfolio.cash)


def test_migrate_dict_leaves_schema_2_alone_and_is_deterministic() -> None:
    one = migrate_state_dict(v1_state())
    two = migrate_state_dict(v1_state())
    assert one == two and one["schema_version"] == 2
    assert migrate_state_dict(copy.deepcopy(one)) == one


def test_a_schema_1_file_loads_as_orders(tmp_path: Path) -> None:
    check_migrated(loads_state(orjson.dumps(v1_state()), source="state.json"))


def test_the_store_migrates_on_load_and_keeps_the_schema_1_original(tmp_path: Path) -> None:
    original = orjson.dumps(v1_state())
    (tmp_path / "state.json").write_bytes(original)
    # The log a schema-1 store kept beside it (just its header): without a fresh snapshot the next
    # save would append a schema-2 record to a schema-1 snapshot.
    header = {"kind": "header", "format": 1, "snapshot_sha256": hashlib.sha256(original).hexdigest()}
    (tmp_path / "state.log").write_bytes(orjson.dumps(header) + b"\n")
    store = StateStore(tmp_path)
    state = store.load()
    assert state is not None
    check_migrated(state)
    assert (tmp_path / "state.json").read_bytes() == original  # loading writes nothing
    state.cycles_completed += 1
    store.save(state)  # the first save after a migration is a full schema-2 snapshot, never a log record
    written = orjson.loads((tmp_path / "state.json").read_bytes())
    assert written["schema_version"] == 2 and "trades" not in written["portfolio"]["closed_positions"][0]
    assert (tmp_path / "state.json.bak").read_bytes() == original
    store.save(state)
    again = StateStore(tmp_path).load()
    assert again is not None
    check_migrated(again)
    assert again.cycles_completed == 4


def test_a_schema_1_snapshot_with_schema_1_log_records_is_replayed_then_migrated(tmp_path: Path) -> None:
    full = v1_state()
    portfolio = full["portfolio"]
    assert isinstance(portfolio, dict)
    snapshot = copy.deepcopy(full)
    snapshot["portfolio"]["closed_positions"] = []
    snapshot_bytes = orjson.dumps(snapshot)
    head = {key: value for key, value in full.items() if key != "valuations"}
    head["portfolio"] = {key: value for key, value in portfolio.items()
                         if key not in ("closed_positions", "failed_positions")}
    record = {
        "kind": "delta", "head": head,
        "closed_positions": {"from": 0, "add": portfolio["closed_positions"]},
        "failed_positions": {"from": 2, "add": []},
        "valuations": {name: {"from": 0, "rows": column} for name, column in full["valuations"].items()},
    }
    header = {"kind": "header", "format": 1, "snapshot_sha256": hashlib.sha256(snapshot_bytes).hexdigest()}
    (tmp_path / "state.json").write_bytes(snapshot_bytes)
    (tmp_path / "state.log").write_bytes(orjson.dumps(header) + b"\n" + orjson.dumps(record) + b"\n")
    state = StateStore(tmp_path).load()
    assert state is not None
    check_migrated(state)


def test_last_bar_at_survives_the_migration() -> None:
    d = v1_state()
    d["last_bar_at"] = "2024-03-04T00:00:00+00:00"  # a growing market's progress, saved since schema 1
    state = loads_state(orjson.dumps(d), source="state.json")
    check_migrated(state)
    assert state.last_bar_at == datetime(2024, 3, 4, tzinfo=UTC)
    assert loads_state(orjson.dumps(v1_state()), source="state.json").last_bar_at is None

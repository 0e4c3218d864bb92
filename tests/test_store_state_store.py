"""State stores: one suite for every backend, then the on-disk store's crash, corruption and size behaviour."""

from __future__ import annotations

import hashlib
import os
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import orjson
import pytest
from dataclasses_json import DataClassJsonMixin

from state_builders import make_order
from tradeexecutor.errors import SchemaVersionError, StateCorruptError
from tradeexecutor.state import SCHEMA_VERSION, Portfolio, Position, State, ValuationSeries
from tradeexecutor.store import InMemoryStateStore, StateStore, StateStoreProtocol, dumps_state, loads_state
from tradeexecutor.store import state_store as state_store_module

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MS0 = 1_704_067_200_000


# ----------------------------------------------------------------------------------------------
# A small simulated run


def new_state() -> State:
    """A fresh state with two instruments."""
    state = State(name="test", strategy_version="abc", created_at=T0, initial_cash=100_000.0)
    state.portfolio.cash = 100_000.0
    state.add_instrument("GOOG", "equity", 1.0)
    state.add_instrument("EURUSD", "fx", 0.01)
    return state


def run_cycle(state: State, i: int) -> None:
    """One cycle's worth of changes: revalue, open or close a position now and then, one valuation row."""
    now = T0 + timedelta(hours=i)
    portfolio = state.portfolio
    for position in portfolio.open_positions:
        position.last_price = 100.0 + i * 0.37
        position.last_valued_at = now
        position.high_water = max(position.high_water or 0.0, position.last_price)
    if i % 3 == 0 and not portfolio.open_positions:
        pid, tid = portfolio.next_position_id, portfolio.next_order_id
        order = make_order(tid, pid, 1, "open", now, quantity=10.0, fill_price=100.0 + i, fee=1.0,
                           fill_id=portfolio.next_fill_id)
        portfolio.open_positions.append(
            Position(
                id=pid, instrument_id=1, opened_at=now, quantity=10.0, cost_basis=1000.0 + i, orders=[order]
            )
        )
        portfolio.next_position_id += 1
        portfolio.next_order_id += 1
        portfolio.next_fill_id += 1
        portfolio.cash -= 1000.0 + i
    elif i % 3 == 2 and portfolio.open_positions:
        position = portfolio.open_positions.pop()
        tid = portfolio.next_order_id
        position.orders.append(
            make_order(tid, position.id, 1, "close", now, quantity=10.0, fill_price=101.0 + i, fee=1.0,
                       realised_pnl=7.5, fill_id=portfolio.next_fill_id)
        )
        position.quantity = 0.0
        position.closed_at = now
        portfolio.next_order_id += 1
        portfolio.next_fill_id += 1
        portfolio.closed_positions.append(position)
        portfolio.cash += 1010.0 + i
    if i % 7 == 5:
        pid, tid = portfolio.next_position_id, portfolio.next_order_id
        rejected = make_order(tid, pid, 2, "open", now, status="rejected", reason="below minimum notional")
        portfolio.failed_positions.append(Position(id=pid, instrument_id=2, opened_at=now, orders=[rejected]))
        portfolio.next_position_id += 1
        portfolio.next_order_id += 1
    state.valuations.append(MS0 + i * 3_600_000, portfolio.equity(), portfolio.cash, 0.5)
    state.last_completed_cycle = now
    state.cycles_completed += 1


def history_state(cycles: int) -> State:
    """A state after ``cycles`` simulated cycles."""
    state = new_state()
    for i in range(cycles):
        run_cycle(state, i)
    return state


# ----------------------------------------------------------------------------------------------
# One suite for every backend


@dataclass
class Backend:
    """A store plus a way to get a store that reads the same storage as a restarted process would."""

    store: StateStoreProtocol
    reopen: Callable[[], StateStoreProtocol]


@pytest.fixture(params=["file", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        directory = tmp_path / "state"
        return Backend(
            StateStore(directory, max_log_records=8), lambda: StateStore(directory, max_log_records=8)
        )
    store = InMemoryStateStore()
    return Backend(store, lambda: store)


def test_implements_the_protocol(backend: Backend) -> None:
    assert isinstance(backend.store, StateStoreProtocol)


def test_empty_store_has_no_state(backend: Backend) -> None:
    assert not backend.store.exists()
    assert backend.store.load() is None


def test_save_and_load_round_trip(backend: Backend) -> None:
    state = history_state(10)
    backend.store.save(state)
    assert backend.store.exists()
    assert backend.reopen().load() == state


def test_many_saves_with_growing_history(backend: Backend) -> None:
    state = new_state()
    store = backend.store
    for i in range(60):
        run_cycle(state, i)
        store.save(state)
        if i % 9 == 0:
            assert backend.reopen().load() == state, i
    assert state.portfolio.closed_positions and state.portfolio.failed_positions
    assert backend.reopen().load() == state


def test_loaded_state_continues_across_restarts(backend: Backend) -> None:
    state = new_state()
    store = backend.store
    for i in range(20):
        run_cycle(state, i)
        store.save(state)
    store = backend.reopen()
    loaded = store.load()
    assert loaded is not None
    state = loaded
    for i in range(20, 45):
        run_cycle(state, i)
        store.save(state)
    assert backend.reopen().load() == state == history_state(45)


def test_loaded_state_is_an_independent_copy(backend: Backend) -> None:
    state = history_state(5)
    backend.store.save(state)
    loaded = backend.reopen().load()
    state.portfolio.cash = -1.0
    state.valuations.append(MS0 + 10**9, 1.0, 1.0, 1.0)
    assert loaded == history_state(5)


def test_save_snapshot_round_trip(backend: Backend) -> None:
    state = history_state(30)
    backend.store.save(state)
    run_cycle(state, 30)
    backend.store.save_snapshot(state)
    assert backend.reopen().load() == state


def test_a_different_state_object_replaces_the_stored_one(backend: Backend) -> None:
    backend.store.save(history_state(30))
    other = history_state(3)
    backend.store.save(other)
    assert backend.reopen().load() == other


def test_newer_schema_is_refused(backend: Backend) -> None:
    state = history_state(3)
    state.schema_version = SCHEMA_VERSION + 1
    backend.store.save(state)
    with pytest.raises(SchemaVersionError, match="upgrade tradeexecutor"):
        backend.reopen().load()


# ----------------------------------------------------------------------------------------------
# The on-disk store


def files(directory: Path) -> dict[str, bytes]:
    """Every file in the directory with its bytes."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def log_lines(store: StateStore) -> list[bytes]:
    return store.log_path.read_bytes().splitlines()


def test_layout_and_snapshot_equal_codec_output(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "s")
    state = history_state(12)
    store.save(state)
    assert sorted(os.listdir(store.path)) == ["state.json", "state.log"]
    assert store.snapshot_path.read_bytes() == dumps_state(state)
    header = orjson.loads(log_lines(store)[0])
    assert header["kind"] == "header"
    assert header["snapshot_sha256"] == hashlib.sha256(dumps_state(state)).hexdigest()
    # The snapshot is also what dataclasses-json reads.
    assert cast("type[DataClassJsonMixin]", State).from_json(store.snapshot_path.read_bytes()) == state

    run_cycle(state, 12)
    store.save_snapshot(state)
    assert store.snapshot_path.read_bytes() == dumps_state(state)
    assert loads_state(store.snapshot_path.read_bytes(), source="s") == state


def test_saves_append_to_the_log_and_leave_the_snapshot_alone(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = history_state(5)
    store.save(state)
    snapshot = store.snapshot_path.read_bytes()
    for i in range(5, 15):
        run_cycle(state, i)
        store.save(state)
    assert store.snapshot_path.read_bytes() == snapshot
    assert len(log_lines(store)) == 11  # header + 10 records
    assert StateStore(tmp_path).load() == state


def test_unchanged_state_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = history_state(5)
    store.save(state)
    run_cycle(state, 5)
    store.save(state)
    store.save(state)
    size = store.log_path.stat().st_size
    store.save(state)
    assert store.log_path.stat().st_size == size
    assert store.last_save_bytes == 0


def test_compaction_keeps_backup_and_bounds_the_log(tmp_path: Path) -> None:
    store = StateStore(tmp_path, max_log_records=5)
    state = new_state()
    snapshots = []
    for i in range(23):
        run_cycle(state, i)
        store.save(state)
        snapshots.append(store.snapshot_path.read_bytes())
        assert len(log_lines(store)) <= 6
    assert store.backup_path.exists()
    distinct = list(dict.fromkeys(snapshots))
    assert len(distinct) >= 4
    assert store.backup_path.read_bytes() == distinct[-2]  # the snapshot before the last compaction
    assert StateStore(tmp_path).load() == state


def test_compaction_by_log_size(tmp_path: Path) -> None:
    store = StateStore(tmp_path, max_log_bytes=4000)
    state = new_state()
    for i in range(60):
        run_cycle(state, i)
        store.save(state)
        assert store.log_path.stat().st_size <= 4000
    assert store.backup_path.exists()
    assert StateStore(tmp_path).load() == state


def test_bytes_per_save_do_not_grow_with_history(tmp_path: Path) -> None:
    store = StateStore(tmp_path, max_log_records=100_000, max_log_bytes=1 << 40)
    state = history_state(300)  # some closed positions already
    store.save(state)
    growth = []
    for i in range(1000):
        state.valuations.append(MS0 + (10_000 + i) * 60_000, 100_000.0 + i / 7, 50_000.0 + i / 3, 0.5)
        state.cycles_completed += 1
        before = store.log_path.stat().st_size
        store.save(state)
        growth.append(store.log_path.stat().st_size - before)
        assert growth[-1] == store.last_save_bytes
    assert len(state.valuations) >= 1300
    assert growth[999] <= 2 * growth[9], (growth[9], growth[999])
    assert StateStore(tmp_path).load() == state


@pytest.mark.parametrize("cut", ["mid-line", "no-newline", "garbage-line"])
def test_torn_last_log_line_is_ignored_then_cut_off(tmp_path: Path, cut: str) -> None:
    store = StateStore(tmp_path)
    state = new_state()
    for i in range(10):
        run_cycle(state, i)
        store.save(state)
    good = history_state(9)
    raw = store.log_path.read_bytes()
    last_start = raw.rstrip(b"\n").rfind(b"\n") + 1
    if cut == "mid-line":
        torn = raw[: last_start + (len(raw) - last_start) // 2]
    elif cut == "no-newline":
        torn = raw[:-1]
    else:
        torn = raw[:last_start] + b'{"kind": "delta", "he\x00\x00\n'
    store.log_path.write_bytes(torn)

    reopened = StateStore(tmp_path)
    loaded = reopened.load()
    assert loaded == good
    assert loaded is not None
    run_cycle(loaded, 9)
    run_cycle(loaded, 10)
    reopened.save(loaded)
    assert store.log_path.read_bytes().startswith(raw[:last_start])
    assert all(orjson.loads(line) for line in log_lines(reopened))
    assert StateStore(tmp_path).load() == loaded == history_state(11)


def test_invalid_line_inside_the_log_is_corrupt_and_names_file_and_line(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = new_state()
    for i in range(6):
        run_cycle(state, i)
        store.save(state)
    lines = store.log_path.read_bytes().splitlines(keepends=True)
    lines[3] = b"{not json}\n"
    store.log_path.write_bytes(b"".join(lines))
    before = files(tmp_path)

    broken = StateStore(tmp_path)
    with pytest.raises(StateCorruptError) as error:
        broken.load()
    assert str(store.log_path) in str(error.value) and "line 4" in str(error.value)
    with pytest.raises(StateCorruptError):
        broken.save(state)
    with pytest.raises(StateCorruptError):
        broken.save_snapshot(state)
    assert files(tmp_path) == before


def test_corrupt_snapshot_is_reported_and_never_overwritten(tmp_path: Path) -> None:
    store = StateStore(tmp_path, max_log_records=2)
    state = new_state()
    for i in range(8):  # compacts, so a backup and a log exist too
        run_cycle(state, i)
        store.save(state)
    store.snapshot_path.write_bytes(store.snapshot_path.read_bytes()[:-100])
    before = files(tmp_path)
    assert set(before) == {"state.json", "state.json.bak", "state.log"}

    broken = StateStore(tmp_path)
    with pytest.raises(StateCorruptError) as error:
        broken.load()
    assert str(store.snapshot_path) in str(error.value)
    assert "\n" not in str(error.value)
    for attempt in (broken.save, broken.save_snapshot, StateStore(tmp_path).save):
        with pytest.raises(StateCorruptError):
            attempt(state)
    assert files(tmp_path) == before


def test_missing_snapshot_with_backup_asks_the_operator(tmp_path: Path) -> None:
    store = StateStore(tmp_path, max_log_records=2)
    state = history_state(3)
    store.save(state)
    run_cycle(state, 3)
    store.save_snapshot(state)
    store.snapshot_path.unlink()
    before = files(tmp_path)
    broken = StateStore(tmp_path)
    assert broken.exists()
    with pytest.raises(StateCorruptError, match=re.escape("state.json.bak")) as error:
        broken.load()
    assert "restore" in str(error.value)
    with pytest.raises(StateCorruptError):
        broken.save(state)
    assert files(tmp_path) == before


def test_log_without_snapshot_is_corrupt(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.save(history_state(2))
    store.snapshot_path.unlink()
    with pytest.raises(StateCorruptError, match=re.escape("state.log")):
        StateStore(tmp_path).load()


def test_newer_schema_in_the_log_is_refused_and_kept(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = history_state(3)
    store.save(state)
    run_cycle(state, 3)
    state.schema_version = SCHEMA_VERSION + 1
    store.save(state)
    before = files(tmp_path)
    broken = StateStore(tmp_path)
    with pytest.raises(SchemaVersionError) as error:
        broken.load()
    assert "line 2" in str(error.value) and str(SCHEMA_VERSION + 1) in str(error.value)
    with pytest.raises(SchemaVersionError):
        broken.save(history_state(1))
    assert files(tmp_path) == before


def test_stale_log_after_a_crash_during_compaction_is_ignored(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = new_state()
    for i in range(10):
        run_cycle(state, i)
        store.save(state)
    old_log = store.log_path.read_bytes()
    run_cycle(state, 10)
    store.save_snapshot(state)
    store.log_path.write_bytes(old_log)  # as if the crash came before the fresh log replaced it

    reopened = StateStore(tmp_path)
    loaded = reopened.load()
    assert loaded == state
    assert loaded is not None
    run_cycle(loaded, 11)
    reopened.save(loaded)
    assert StateStore(tmp_path).load() == loaded


@pytest.mark.parametrize("failing", ["state.json", "state.log"])
def test_failed_compaction_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    store = StateStore(tmp_path)
    state = new_state()
    for i in range(5):
        run_cycle(state, i)
        store.save(state)
    saved = history_state(5)
    real_write = state_store_module.atomic_write_bytes

    def write_or_fail(path: Path, data: bytes) -> None:
        if Path(path).name == failing:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(state_store_module, "atomic_write_bytes", write_or_fail)
    run_cycle(state, 5)
    with pytest.raises(OSError):
        store.save_snapshot(state)
    expected = saved if failing == "state.json" else state
    assert StateStore(tmp_path).load() == expected

    monkeypatch.setattr(state_store_module, "atomic_write_bytes", real_write)
    run_cycle(state, 6)
    store.save(state)
    assert StateStore(tmp_path).load() == state


def test_failed_append_is_cut_off_by_the_next_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StateStore(tmp_path)
    state = new_state()
    for i in range(5):
        run_cycle(state, i)
        store.save(state)

    def half_append(path: Path, data: bytes) -> int:
        with open(path, "ab") as f:
            f.write(data[: len(data) // 2])
        raise OSError(5, "I/O error")

    monkeypatch.setattr(state_store_module, "fsync_append", half_append)
    run_cycle(state, 5)
    with pytest.raises(OSError):
        store.save(state)
    assert StateStore(tmp_path).load() == history_state(5)
    monkeypatch.undo()
    run_cycle(state, 6)
    store.save(state)
    assert StateStore(tmp_path).load() == state == history_state(7)


@pytest.mark.parametrize("other_writes", ["snapshot", "log record"])
def test_another_writer_is_detected_and_not_overwritten(tmp_path: Path, other_writes: str) -> None:
    """A second store that wrote a snapshot, or appended a complete log record, is never overwritten or truncated."""
    first = StateStore(tmp_path)
    state = history_state(5)
    first.save(state)
    second = StateStore(tmp_path)
    other = second.load()
    assert other is not None
    run_cycle(other, 5)
    if other_writes == "snapshot":
        second.save_snapshot(other)
    else:
        second.save(other)
    before = files(tmp_path)
    run_cycle(state, 5)
    with pytest.raises(StateCorruptError, match="another writer"):
        first.save(state)
    assert files(tmp_path) == before


def test_save_without_load_reads_existing_files_first(tmp_path: Path) -> None:
    StateStore(tmp_path).save(history_state(5))
    store = StateStore(tmp_path)
    state = history_state(8)
    store.save(state)  # reads (and so validates) what is there, then replaces it
    assert StateStore(tmp_path).load() == state
    assert store.backup_path.exists()


def test_replacing_valuation_series_or_lists_forces_a_snapshot(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = history_state(10)
    store.save(state)
    state.valuations = ValuationSeries(timestamp=array("q", [1]), equity=array("d", [2.0]), cash=array("d", [3.0]),
                                       exposure=array("d", [0.0]))
    store.save(state)
    assert store.snapshot_path.read_bytes() == dumps_state(state)
    state.portfolio = Portfolio(cash=5.0)
    store.save(state)
    assert StateStore(tmp_path).load() == state


def test_last_valuation_row_replaced_in_place_is_saved(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = history_state(4)
    store.save(state)
    last = state.valuations.timestamp[-1]
    state.valuations.append(last, 1.25, 2.5, 0.75)  # same time: replaces the last row
    store.save(state)
    assert StateStore(tmp_path).load() == state

"""A running executor's closed positions, packed: the list's behaviour, the bytes kept, the ledger, the daemon's outputs."""

from __future__ import annotations

import gc
import pickle
import sqlite3
import tracemalloc
import types
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from dataclasses_json import DataClassJsonMixin

from replay_daemon import replay_daemon
from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.config import EngineConfig
from tradeexecutor.daemon import FakeClock
from tradeexecutor.data import generate_candles
from tradeexecutor.data.source import load_market
from tradeexecutor.errors import StateCorruptError
from tradeexecutor.kept_rows import Appended
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger
from tradeexecutor.state import OrderStatus, PackedPositions, Position, State
from tradeexecutor.state import packed as packed_module
from tradeexecutor.state.growth import ListTail
from tradeexecutor.store.codec import dumps_json, dumps_state
from tradeexecutor.store.publish import positions_document
from tradeexecutor.strategy.loader import load_strategy

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "bench" / "strategies" / "flip_1m.py"  # a closed position every ten 1-minute bars
NAMES = ("state.json", "state.json.gz", "positions.json", "orders.csv")


def _backtest(folder: Path, bars: int, extra: int = 0) -> tuple[State, Path]:
    """flip_1m over ``bars`` bars (about bars / 10 closed positions); the candle file holds ``extra`` more."""
    data = folder / "candles.csv"
    generate_candles(bars + extra, frequency="1m", seed=1, symbol="SYN").to_csv(data, index_label="timestamp")
    strategy = load_strategy(STRATEGY)
    market, _ = load_market([str(data)], strategy.instruments)
    state = run_backtest(strategy, market.between(None, market.step_time(bars - 1)), EngineConfig(),
                         now=datetime(2024, 1, 1, tzinfo=UTC)).state
    state.replay_cursor = bars - 1
    state.last_bar_at = market.step_time(bars - 1).to_pydatetime()
    return state, data


def _copies(positions: list[Position]) -> list[Position]:
    """New objects equal to ``positions``, shared with nothing else."""
    copies: list[Position] = pickle.loads(pickle.dumps(positions))  # noqa: S301 - our own bytes
    return copies


def _plain(state: State) -> State:
    """``state`` with its closed positions as a plain list, as before packing (the same other objects)."""
    portfolio = state.portfolio
    plain = State(**{name: getattr(state, name) for name in State.__slots__})  # type: ignore[attr-defined]
    plain.portfolio = type(portfolio)(**{name: getattr(portfolio, name) for name in type(portfolio).__slots__})  # type: ignore[attr-defined]
    plain.portfolio.closed_positions = list(portfolio.closed_positions)
    return plain


def test_packed_positions_behave_as_the_list_they_hold(tmp_path: Path) -> None:
    """len, iteration in close order, every index and slice, ==, + and `in` give what the list gives;
    the newest ``keep`` are the very objects appended, older ones equal copies."""
    state, _ = _backtest(tmp_path, 3000)
    positions = list(state.portfolio.closed_positions)
    assert len(positions) == 299
    packed = PackedPositions(keep=8, block=16)
    for position in positions:
        packed.append(position)
    assert packed.packed == 288 and len(packed) == 299  # 18 blocks; 11 objects (>= keep, < keep + block)
    assert list(packed) == positions and packed == positions and positions == packed
    assert all(packed[i] == positions[i] and packed[-1 - i] == positions[-1 - i] for i in range(len(positions)))
    assert all(packed[-i] is positions[-i] for i in range(1, 12)) and packed[0] is not positions[0]
    for start in (None, 0, 1, 15, 16, 17, 100, 287, 288, 290, -5, -40):
        for stop in (None, 0, 16, 33, 288, 289, 299, 400, -1, -20):
            for step in (None, 1, 3, -1):
                assert packed[start:stop:step] == positions[start:stop:step], (start, stop, step)
    assert packed + positions[:2] == positions + positions[:2] and positions[:2] + packed == positions[:2] + positions
    assert positions[150] in packed and list(reversed(packed)) == positions[::-1] and packed
    with pytest.raises(IndexError):
        packed[299]
    with pytest.raises(IndexError):
        packed[-300]
    other = PackedPositions(_copies(positions), keep=8, block=16)
    assert other == packed
    changed = _copies(positions)
    changed[3].realised_pnl += 1.0
    assert PackedPositions(changed, keep=8, block=16) != packed and PackedPositions([]) != packed
    seen = 0
    for _ in packed:  # an append while iterating is not seen, and nothing is skipped or repeated
        if seen == 0:
            packed.append(_copies(positions[:1])[0])
        seen += 1
    assert seen == 299 and len(packed) == 300
    with pytest.raises(ValueError, match="positive"):
        PackedPositions(keep=0)


def test_a_position_with_an_order_not_terminal_stays_an_object_until_it_is(tmp_path: Path) -> None:
    """Nothing that may still change is packed: an order still open keeps its position, and those after it, as objects."""
    state, _ = _backtest(tmp_path, 1000)
    positions = _copies(list(state.portfolio.closed_positions))
    order = positions[20].orders[-1]
    status = order.status
    order.status = OrderStatus.open
    packed = PackedPositions(keep=4, block=8)
    for position in positions:
        packed.append(position)
    assert packed.packed == 16 and packed[20] is positions[20] and packed[-1] is positions[-1]
    order.status = status  # done: the next append packs what waited
    packed.append(_copies(positions[:1])[0])
    assert packed.packed == 96 and len(packed) == 100 and list(packed)[:99] == positions


def _tracked_reachable(root: object) -> int:
    """Objects the collector tracks that ``root`` holds, classes and modules left out: what it keeps alive, counted
    on its own (a count of every object in the process moves with whatever else the process frees meanwhile)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        stack.extend(referent for referent in gc.get_referents(item)
                     if gc.is_tracked(referent) and not isinstance(referent, type | types.ModuleType))
    return len(seen)


def test_packed_closed_positions_keep_a_fraction_of_the_bytes_and_no_objects(tmp_path: Path) -> None:
    """Counted with tracemalloc and the collector's objects, never timed: 2,048 closed positions as a list hold
    over 2 KB and 8 tracked objects each; packed, a few hundred bytes and no objects (beyond the ``keep``)."""
    state, _ = _backtest(tmp_path, 20_500)
    source = list(state.portfolio.closed_positions)[:2048]
    assert len(source) == 2048
    blob = pickle.dumps(source)
    del state, source

    def held(make: Any) -> tuple[float, float]:
        gc.collect()
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            kept = make(pickle.loads(blob))  # noqa: S301 - our own bytes
            gc.collect()
            size = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        assert len(kept) == 2048
        return size / 2048, _tracked_reachable(kept) / 2048

    list_bytes, list_objects = held(list)
    packed_bytes, packed_objects = held(lambda items: PackedPositions(items, keep=64, block=64))
    print(f"list {list_bytes:.0f} B, {list_objects:.1f} objects; packed {packed_bytes:.0f} B, {packed_objects:.2f} objects")
    assert list_bytes > 2000 and list_objects >= 8  # the Position, its orders' list, 2 Orders, their fills' lists, 2 Fills
    # 64 kept objects (~180 B a position over 2,048) plus the packed blocks (~150 B each).
    assert packed_bytes < 500 and packed_bytes * 6 < list_bytes
    assert packed_objects < 0.5  # the 64 kept positions' objects only: none for the 1,984 packed


def test_a_ledger_reads_closed_positions_packed_and_commits_them_as_before(tmp_path: Path) -> None:
    """Ledger(keep_closed=N) loads what a plain load gives, packed as it reads; its marks still follow the
    list (a save with nothing new writes no position again); a restart reads the same state back."""
    state, _ = _backtest(tmp_path, 3000)
    files = RunFiles(tmp_path / "state")
    files.root.mkdir()
    ledger = Ledger(files.ledger)
    ledger.save(state)
    ledger.close()
    plain = Ledger(files.ledger).load()
    packing = Ledger(files.ledger, keep_closed=8)
    loaded = packing.load()
    assert plain is not None and loaded is not None
    closed = loaded.portfolio.closed_positions
    assert isinstance(closed, PackedPositions) and closed.packed == 256 and closed.keep == 8
    assert isinstance(plain.portfolio.closed_positions, list)
    assert closed == plain.portfolio.closed_positions and dumps_state(loaded) == dumps_state(plain)
    as_json = cast("DataClassJsonMixin", loaded).to_json()  # dataclasses-json: the same document, read back as a list
    assert as_json == cast("DataClassJsonMixin", plain).to_json()
    assert cast("type[DataClassJsonMixin]", State).from_json(as_json) == plain
    packing.save(loaded)  # nothing changed: the head and the last valuation row, no position
    assert packing.last_commit_bytes < 1000
    packing.close()
    again = Ledger(files.ledger, keep_closed=8).load()
    assert again is not None and dumps_state(again) == dumps_state(plain)


def test_a_damaged_closed_position_in_the_ledger_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A packed read checks every row as the plain one does: a damaged row is one error naming the file, not a state."""
    state, _ = _backtest(tmp_path, 1000)
    files = RunFiles(tmp_path / "state")
    files.root.mkdir()
    ledger = Ledger(files.ledger)
    ledger.save(state)
    ledger.close()
    with sqlite3.connect(files.ledger) as conn:
        data = conn.execute("SELECT json FROM positions WHERE list = 'closed' AND list_index = 3").fetchone()[0]
        damaged = data.replace(b'"realised_pnl":', b'"realised_pnl":1')
        conn.execute("UPDATE positions SET json = ? WHERE list = 'closed' AND list_index = 3", (damaged,))
    conn.close()
    assert zlib.crc32(damaged) != zlib.crc32(data)
    with pytest.raises(StateCorruptError, match=str(files.ledger)):
        Ledger(files.ledger, keep_closed=4).load()


def _run(state_dir: Path, data: Path, cycles: int) -> tuple[list[dict[str, bytes]], list[Any], State]:
    """``cycles`` cycle jobs of a replay executor: the public files and the summary after each, and the state."""
    daemon, tickers = replay_daemon(STRATEGY, state_dir, data, FakeClock(datetime(2024, 1, 1, tzinfo=UTC)))
    files: list[dict[str, bytes]] = []
    summaries: list[Any] = []
    try:
        daemon.start_jobs()
        for _ in range(cycles):
            tickers[0].advance(120.0)
            daemon.loop.run_pending()
            documents = {name: daemon.runstate.public.get(name) for name in NAMES}
            files.append({name: document.data() for name, document in documents.items() if document is not None})
            summaries.append(daemon.runstate.snapshot().summary_statistics)
        state = daemon.loop.state
        daemon.commands.stop("test")
        daemon.loop.run_pending()
    finally:
        daemon.close()
    return files, summaries, state


@pytest.mark.timeout(240)
def test_a_replay_executor_with_packed_closed_positions_publishes_what_it_did_with_a_list(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same ledger run 100 cycles twice, with the closed positions in a plain list (as before) and packed past
    the newest 4, 4 at a time: after every job the public files and the summary are byte for byte and value for
    value the same, the packed run packs as positions close, and its public files equal a fresh encoding of the
    state. A restart of the packed run reads the ledger back packed and publishes the same files."""
    cycles = 100
    state, data = _backtest(tmp_path, 2000, extra=cycles + 5)
    folders = {name: tmp_path / name for name in ("objects", "packed")}
    for folder in folders.values():
        folder.mkdir()
        ledger = Ledger(RunFiles(folder).ledger)
        ledger.save(state)
        ledger.close()
    with monkeypatch.context() as unpacked:  # the ledger reads a plain list, as before packing
        unpacked.setattr(packed_module, "daemon_keep", lambda instruments: None)
        before_files, before_summaries, objects = _run(folders["objects"], data, cycles)
    assert isinstance(objects.portfolio.closed_positions, list)
    monkeypatch.setattr(packed_module, "DEFAULT_KEEP", 4)
    monkeypatch.setattr(packed_module, "DEFAULT_BLOCK", 4)
    after_files, after_summaries, packed = _run(folders["packed"], data, cycles)
    closed = packed.portfolio.closed_positions
    assert isinstance(closed, PackedPositions) and closed.packed >= len(closed) - 8 and len(closed) >= 205
    assert len(closed) - len(state.portfolio.closed_positions) >= 9  # positions closed (and packed) on the way
    assert after_summaries == before_summaries and after_summaries[-1]["trade_count"] > 0
    for cycle, (before, after) in enumerate(zip(before_files, after_files, strict=True)):
        assert before == after and set(after) == set(NAMES), cycle
    assert after_files[-1]["state.json"] == dumps_state(_plain(packed)) == dumps_state(objects)
    assert after_files[-1]["positions.json"] == dumps_json(positions_document(_plain(packed)))
    restarted, _ = replay_daemon(STRATEGY, folders["packed"], data, FakeClock(datetime(2024, 1, 2, tzinfo=UTC)))
    try:
        restarted.loop.begin()
        assert isinstance(restarted.loop.state.portfolio.closed_positions, PackedPositions)
        for name in NAMES:
            document = restarted.runstate.public.get(name)
            assert document is not None and document.data() == after_files[-1][name], name
    finally:
        restarted.close()


def test_followers_starting_over_iterate_the_packed_positions_not_a_copy(tmp_path: Path) -> None:
    """At start-up every follower starts from the first position: it gets the sequence itself (read back a block
    at a time as it iterates), never a list of every position as objects; then only what was appended."""
    state, _ = _backtest(tmp_path, 1000)
    positions = list(state.portfolio.closed_positions)
    packed = PackedPositions(positions[:-2], keep=4, block=8)
    tail: ListTail[Position] = ListTail()
    appended: Appended[Position] = Appended()
    assert tail.new_items(packed) is packed and appended.appended(packed) == (False, packed)
    assert tail.new_items(packed) == [] and appended.appended(packed) == (True, [])
    packed.append(positions[-2])
    packed.append(positions[-1])
    assert tail.new_items(packed) == positions[-2:] and appended.appended(packed) == (True, positions[-2:])
    assert not tail.restarted
    grown = PackedPositions(keep=4, block=8)  # a new state's list: followed while empty, then grown
    fresh: Appended[Position] = Appended()
    fresh_tail: ListTail[Position] = ListTail()
    assert fresh.appended(grown) == (False, grown) and fresh_tail.new_items(grown) is grown
    for position in positions:
        grown.append(position)
    assert grown.packed == 88 and fresh.appended(grown)[1] is grown and fresh_tail.new_items(grown) is grown


def test_followers_that_fell_behind_the_packing_take_only_what_followed_their_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted: a follower whose last position was packed since its last look (more than ``keep + block`` closed
    in between) still finds its place, by count and id, and gets only the positions after it, reading back the
    blocks that hold them and the one that holds its place, never the blocks before; a list that was replaced
    (another state) is still started over."""
    state, _ = _backtest(tmp_path, 1000)
    positions = list(state.portfolio.closed_positions)
    assert len(positions) >= 90
    packed = PackedPositions(positions[:10], keep=4, block=8)
    tail: ListTail[Position] = ListTail()
    appended: Appended[Position] = Appended()
    tail.new_items(packed)
    appended.appended(packed)
    reads: list[int] = []
    unpack = packed_module._unpack

    def counted(data: bytes) -> list[Position]:
        reads.append(len(data))
        return unpack(data)

    monkeypatch.setattr(packed_module, "_unpack", counted)
    for position in positions[10:60]:  # position 9, the followers' last, is packed now
        packed.append(position)
    assert packed.packed >= 48 and packed.holds(9, positions[9]) and not packed.holds(9, positions[10])
    assert tail.new_items(packed) == positions[10:60] and not tail.restarted
    assert appended.appended(packed) == (True, positions[10:60])
    assert len(reads) <= 2 * (packed.packed // packed.block - 1)  # blocks 1.. for each follower, none twice in a row
    for position in positions[60:90]:
        packed.append(position)
    assert tail.new_items(packed) == positions[60:90] and appended.appended(packed) == (True, positions[60:90])
    other = PackedPositions(positions[:90], keep=4, block=8)  # equal, another object: a reload
    assert tail.new_items(other) is other and tail.restarted and appended.appended(other) == (False, other)


@pytest.mark.timeout(280)
def test_a_fast_replay_closing_more_than_keep_between_publications_spills_each_close_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted, never timed: a replay executor of flip_1m closing a position every other bar at 0.02 s a bar closes
    about 50 between two 2-second publications, more than the 32 it keeps as objects. Its spill files hold the
    same bytes as with 256 kept (which no follower falls behind), about a closed position's row once, and the
    public files are the same; before, every publication appended the whole closed history again."""
    state, data = _backtest(tmp_path, 2000, extra=1510)
    results = {}
    for keep in (32, 256):
        monkeypatch.setattr(packed_module, "DEFAULT_KEEP", keep)
        folder = tmp_path / f"keep{keep}"
        folder.mkdir()
        ledger = Ledger(RunFiles(folder).ledger)
        ledger.save(state)
        ledger.close()
        clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
        daemon, tickers = replay_daemon(STRATEGY, folder, data, clock, replay_seconds=0.02, publish_seconds=2.0,
                                        params={"every": "1"})
        try:
            daemon.start_jobs()
            for _ in range(1500):
                tickers[0].advance(0.02)
                daemon.loop.run_pending()
            closed = daemon.loop.state.portfolio.closed_positions
            assert isinstance(closed, PackedPositions) and closed.keep == keep
            count, encoded = len(closed), len(dumps_state(daemon.loop.state))
        finally:
            daemon.close()
        files = RunFiles(folder)
        spills = {p.name: p.stat().st_size for p in sorted(files.spill.iterdir())}
        public = {name: (files.public / name).read_bytes() for name in ("state.json", "positions.json", "orders.csv")}
        results[keep] = (count, spills, public, encoded)
    (count, spills, public, encoded), (count_256, spills_256, public_256, _) = results[32], results[256]
    assert count == count_256 >= len(state.portfolio.closed_positions) + 600  # ~50 closes a publication
    assert spills == spills_256, (spills, spills_256)
    assert public == public_256
    assert 0 < spills["state-closed.spill"] < encoded, (spills, encoded)  # before: 3.4x the spill of keep 256 here


def test_a_running_executor_holds_at_most_keep_plus_block_closed_positions_as_objects(tmp_path: Path) -> None:
    """Counted, never timed: an executor resuming a ledger of 199 closed positions and closing more holds the
    newest ``daemon_keep`` (32 for one instrument) to ``keep + block`` (96) of them as objects, and the collector
    objects reachable from the list are those of at most 96 positions (a list holds 8 or more for every one);
    a new state starts with the same list; a universe of many instruments keeps twice their number, so one
    job's closes stay objects."""
    state, data = _backtest(tmp_path, 2000, extra=45)
    folder = tmp_path / "run"
    folder.mkdir()
    ledger = Ledger(RunFiles(folder).ledger)
    ledger.save(state)
    ledger.close()
    daemon, tickers = replay_daemon(STRATEGY, folder, data, FakeClock(datetime(2024, 1, 1, tzinfo=UTC)))
    try:
        daemon.start_jobs()
        for _ in range(40):
            tickers[0].advance(120.0)
            daemon.loop.run_pending()
        closed = daemon.loop.state.portfolio.closed_positions
        assert isinstance(closed, PackedPositions) and closed.keep == packed_module.daemon_keep(1) == 32
        assert len(closed) >= len(state.portfolio.closed_positions) + 3 >= 200  # closed while running, too
        objects = len(closed) - closed.packed
        assert closed.keep <= objects < closed.keep + closed.block == 96
        assert _tracked_reachable(closed) < 12 * 96 < 8 * len(closed)
    finally:
        daemon.close()
    fresh, _ = replay_daemon(STRATEGY, tmp_path / "fresh", data, FakeClock(datetime(2024, 1, 1, tzinfo=UTC)))
    try:
        fresh.loop.begin()  # a new state: its empty list packs with the same keep
        started = fresh.loop.state.portfolio.closed_positions
        assert isinstance(started, PackedPositions) and started.keep == 32 and len(started) == 0
    finally:
        fresh.close()
    assert packed_module.daemon_keep(40) == 80 and packed_module.daemon_keep(3) == 32


def test_a_ledger_whose_commits_fall_behind_the_packing_writes_only_what_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger's commit follows the closed positions like the publications do: with two kept as objects and
    blocks of two, commits of 40, 7 and 30 closes each find the last position they wrote already packed. Only the
    first commit is a full write (a follower that lost its place would write everything again), and the state read
    back from the ledger is the live one, every id in order."""
    from tradeexecutor.ledger import ledger as ledger_module
    from tradeexecutor.ledger import load_state

    state, _ = _backtest(tmp_path, 1000)
    every = list(state.portfolio.closed_positions)
    assert len(every) >= 87, len(every)
    state.portfolio.closed_positions = PackedPositions(every[:10], keep=2, block=2)
    folder = tmp_path / "follower"
    folder.mkdir()
    ledger = Ledger(RunFiles(folder).ledger, keep_closed=2)
    full: list[int] = []
    write_all = ledger_module.Ledger._write_all

    def counting(self: Ledger, *args: Any) -> Any:
        full.append(1)
        return write_all(self, *args)

    monkeypatch.setattr(ledger_module.Ledger, "_write_all", counting)
    ledger.save(state)
    for step in (40, 7, 30):
        count = len(state.portfolio.closed_positions)
        for position in every[count:count + step]:
            state.portfolio.closed_positions.append(position)
        ledger.save(state)
    ledger.close()
    assert full == [1], full
    loaded = load_state(folder)
    assert loaded is not None
    assert [p.id for p in loaded.portfolio.closed_positions] == [p.id for p in every[:87]]
    assert dumps_state(loaded) == dumps_state(state)

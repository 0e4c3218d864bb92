"""Closed history's encoded rows in spill files: the same public files, the bytes off the heap, nothing
rewritten across a restart, a damaged file rebuilt at start; while running, append-only (a range an older
publication holds is never rewritten, also by closes out of id order), a damaged range refused by name to a
reader on another thread and, on the loop's thread, never a crash: the owner encodes afresh from the state."""

from __future__ import annotations

import gc
import gzip
import itertools
import logging
import queue
import random
import signal
import threading
import time
import tracemalloc
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from executor_process import Executor
from replay_daemon import replay_daemon
from state_builders import make_order
from test_publish_incremental import _get
from test_trades_csv import grow, pandas_csv
from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.config import EngineConfig
from tradeexecutor.daemon.clock import FakeClock
from tradeexecutor.data import generate_candles
from tradeexecutor.data.source import load_market
from tradeexecutor.kept_rows import CHUNK_MERGE, CHUNK_ROWS, KeptRows
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger, load_state
from tradeexecutor.runstate import RunState
from tradeexecutor.runstate.public import PublicDocument, PublicDocuments
from tradeexecutor.spill import Spill, SpillDamagedError, Spilled, joined
from tradeexecutor.state import PackedPositions, Position, State
from tradeexecutor.state.packed import daemon_keep
from tradeexecutor.stats.summary import write_trades_csv
from tradeexecutor.stats.trades_csv import TradesCsv
from tradeexecutor.store.codec import (
    BLOCK_MERGE,
    COLUMN_BLOCK,
    POSITION_BLOCK,
    VALUATION_COLUMNS,
    PositionFragments,
    dumps_json,
    dumps_state,
    loads_state,
)
from tradeexecutor.store.publish import (
    KEPT_PIECE_BYTES,
    SPILL_FILES,
    PublicFile,
    PublishCache,
    etag_of,
    positions_document,
    public_files,
    publish,
    write_public_files,
)
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.files import FAILED_KEPT, FileCache
from tradeexecutor.webhook.options import WebhookOptions

AT = datetime(2024, 1, 1, tzinfo=UTC)
META = {"name": "spill", "mode": "replay"}
SMA_1M = Path(__file__).resolve().parents[1] / "bench" / "strategies" / "sma_1m.py"
NAMES = ("state.json", "state.json.gz", "positions.json", "orders.csv", "metadata.json")


def _spilled(files: RunFiles) -> tuple[PublishCache, TradesCsv]:
    """A running executor's caches: closed history in spill files (daemon.publish builds them so)."""
    return PublishCache.spilled(files.spill), TradesCsv(Spill(files.spill / SPILL_FILES["orders"]))


def _publish(state: State, files: RunFiles, caches: tuple[PublishCache, TradesCsv]) -> dict[str, PublicFile]:
    cache, writer = caches
    return public_files(state, files, metadata=META, orders_csv=writer.parts, cache=cache, now=AT)


def _flip(state: State, positions: int) -> None:
    """``positions`` more positions, each opened and closed in order (a flip strategy's history)."""
    portfolio = state.portfolio
    for _ in range(positions):
        at = AT + timedelta(minutes=portfolio.next_position_id)
        position = Position(id=portfolio.next_position_id, instrument_id=1, opened_at=at, quantity=1.0)
        portfolio.next_position_id += 1
        for kind in ("open", "close"):
            position.orders.append(make_order(portfolio.next_order_id, position.id, 1, kind, at, quantity=1.0,
                                              fill_price=100.0 + position.id % 7))
            portfolio.next_order_id += 1
        position.closed_at = at
        portfolio.closed_positions.append(position)


def _fresh(state: State, directory: Path) -> RunFiles:
    """Every file published afresh (no cache) into ``directory``."""
    fresh = RunFiles(directory)
    publish(state, fresh, metadata=META, orders_csv_writer=write_trades_csv, now=AT)
    return fresh


def _check_fresh(documents: dict[str, PublicFile], state: State, tmp_path: Path) -> None:
    fresh = _fresh(state, tmp_path / "fresh")
    for name in ("state.json", "positions.json", "orders.csv"):
        assert documents[name].data() == (fresh.public / name).read_bytes(), name
    assert gzip.decompress(documents["state.json.gz"].data()) == fresh.state_snapshot.read_bytes()


def test_spilled_caches_give_the_in_memory_caches_files_on_a_busy_run(tmp_path: Path) -> None:
    """Positions closed out of order, failed ones, open ones among closed ids: every publication's files
    equal those of the in-memory caches, each ETag changes exactly when its bytes do, and the disk writer
    writes the same bytes from the spills."""
    rng = random.Random(13)
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    files = RunFiles(tmp_path / "live")
    spilled, memory = _spilled(files), (PublishCache(), TradesCsv())
    previous: dict[str, tuple[str, bytes]] = {}
    for cycle in range(700):
        grow(state, rng, cycle)
        if cycle % 35 and cycle != 699:
            continue
        ours, theirs = _publish(state, files, spilled), _publish(state, files, memory)
        for name in NAMES:
            assert ours[name].data() == theirs[name].data(), (cycle, name)
            if name in previous:
                assert (ours[name].etag == previous[name][0]) == (ours[name].data() == previous[name][1]), (cycle, name)
            previous[name] = (ours[name].etag, ours[name].data())
    assert len(state.portfolio.closed_positions) > CHUNK_ROWS * 4
    final = _publish(state, files, spilled)  # not read yet: its pieces name ranges of the spill files
    pieces = [piece for name in ("state.json", "positions.json", "orders.csv") for piece in final[name].pieces()]
    assert sum(isinstance(piece, Spilled) for piece in pieces) >= 9
    assert write_public_files(files, final) == list(NAMES)  # copied from the spills, each range checked
    for name in NAMES:
        assert (files.public / name).read_bytes() == theirs[name].data(), name


def test_the_caches_keep_closed_history_in_their_spills_not_in_memory(tmp_path: Path) -> None:
    """Counted: with spills the pieces in memory stay under a block's worth of rows while the history grows
    fivefold, and the memory the caches hold (traced) is a small fraction of the in-memory caches'."""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    files = RunFiles(tmp_path / "live")
    caches = _spilled(files)
    in_memory: list[int] = []
    for positions in (CHUNK_ROWS * CHUNK_MERGE, CHUNK_ROWS * CHUNK_MERGE * 4):
        _flip(state, positions - len(state.portfolio.closed_positions))
        documents = _publish(state, files, caches)
        for name in ("positions.json", "orders.csv"):
            in_memory.append(sum(len(piece) for piece in documents[name].pieces() if isinstance(piece, bytes)))
        assert documents["positions.json"].data() == dumps_json(positions_document(state))
        assert documents["orders.csv"].data() == pandas_csv(state)
    row = len(dumps_json(positions_document(state))) // len(state.portfolio.closed_positions)
    assert max(in_memory) < CHUNK_ROWS * row, in_memory  # at most the unfrozen rows, whatever the history
    # each document's pieces in memory at a larger history: at most a chunk more than at the first (element-wise)
    assert all(later <= in_memory[index % 2] + CHUNK_ROWS * row for index, later in enumerate(in_memory[2:])), in_memory

    def held(make: object) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = make()  # type: ignore[operator]
            for _ in range(2):
                documents = _publish(state, files, kept)
                for name in ("state.json", "positions.json", "orders.csv"):
                    documents[name].etag  # noqa: B018 - computed already; the pieces are held by the caches
            del documents
            gc.collect()
            size = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        del kept
        return size

    spilled = held(lambda: _spilled(RunFiles(tmp_path / "held")))
    memory = held(lambda: (PublishCache(), TradesCsv()))
    closed = len(state.portfolio.closed_positions)
    assert spilled < memory / 8, (spilled, memory)  # measured: 0.45 MB against 10.0 MB at 2,048 closed positions
    assert spilled / closed < 400, spilled / closed  # measured 220 B (4,898 B in memory): ids, offsets and a range's share a row: bytes, not kilobytes


def test_a_restarted_executor_reuses_its_spill_files_and_rewrites_nothing(tmp_path: Path) -> None:
    """New caches (a restart) on the same spill files, the state reloaded: the same files and ETags, and
    every block of closed history found in its file (compared byte for byte), none written again."""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    _flip(state, CHUNK_ROWS * CHUNK_MERGE + POSITION_BLOCK * 3 + 5)
    files = RunFiles(tmp_path / "live")
    before = _publish(state, files, _spilled(files))
    sizes = {path.name: path.stat().st_size for path in files.spill.iterdir()}
    reloaded = loads_state(dumps_state(state), source="test")
    caches = _spilled(files)
    after = _publish(reloaded, files, caches)
    assert {name: (d.etag, d.data()) for name, d in after.items()} == {
        name: (d.etag, d.data()) for name, d in before.items()}
    spills = [*caches[0].spills(), caches[1]._spill]  # noqa: SLF001 - the writer's own spill
    rows = {spill.path.name: (spill.written, spill.reused) for spill in spills if spill is not None}
    for name in (SPILL_FILES["closed"], SPILL_FILES["positions"], SPILL_FILES["orders"]):
        written, reused = rows[name]
        assert written == 0 and reused > 0, (name, rows)
    for name in (SPILL_FILES["closed"], SPILL_FILES["positions"], SPILL_FILES["orders"]):
        assert (files.spill / name).stat().st_size == sizes[name], name


def test_damaged_spill_files_are_rebuilt_from_the_state_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A byte changed in one file, another cut short, a third missing: the restarted caches compare, keep the
    good prefix, rewrite from the first difference (one line naming the file and the byte), and publish
    exactly the fresh files."""
    caplog.set_level(logging.INFO, logger="tradeexecutor.spill")
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    _flip(state, CHUNK_ROWS * 20)
    files = RunFiles(tmp_path / "live")
    _publish(state, files, _spilled(files))
    positions, orders, closed = (files.spill / SPILL_FILES[name] for name in ("positions", "orders", "closed"))
    data = bytearray(positions.read_bytes())
    data[len(data) // 2] ^= 0x01
    positions.write_bytes(bytes(data))
    orders.write_bytes(orders.read_bytes()[: orders.stat().st_size // 3])
    closed.unlink()
    caches = _spilled(files)
    documents = _publish(loads_state(dumps_state(state), source="test"), files, caches)
    _check_fresh(documents, state, tmp_path)
    listing = caches[0].listing.spill
    assert listing is not None and listing.reused > 0 and listing.written > 0  # the prefix kept, the rest rebuilt
    rewritten = [r.getMessage() for r in caplog.records if str(listing.path) in r.getMessage()]
    assert len(rewritten) == 1 and "differ from byte" in rewritten[0], rewritten
    at = int(rewritten[0].split("from byte ")[1].split()[0])
    assert 0 < at <= len(data) // 2  # the block holding the changed byte is the first rewritten
    assert write_public_files(files, documents) == list(NAMES)  # every range reads back and checks out


def test_a_spill_damaged_under_a_running_executor_is_refused_by_name_then_given_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A range whose bytes changed after it was written: the disk writer raises SpillDamagedError naming the
    file and leaves the public file as it was; the next publication encodes those rows afresh (kept in memory,
    one warning naming the file) and writes the right bytes, and so does every one after it."""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    _flip(state, CHUNK_ROWS * 6)
    files = RunFiles(tmp_path / "live")
    caches = _spilled(files)
    write_public_files(files, _publish(state, files, caches))
    good = files.positions.read_bytes()
    _flip(state, 3)
    documents = _publish(state, files, caches)
    path = files.spill / SPILL_FILES["positions"]
    data = bytearray(path.read_bytes())
    data[100] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(SpillDamagedError, match=str(path)):
        write_public_files(files, {"positions.json": documents["positions.json"]})
    assert files.positions.read_bytes() == good  # nothing half-written
    spill = caches[0].listing.spill
    assert spill is not None and spill.damaged
    for _ in range(3):
        documents = _publish(state, files, caches)  # the owner sees the mark and encodes its rows afresh, in memory
        write_public_files(files, documents)
        assert files.positions.read_bytes() == dumps_json(positions_document(state))
        _check_fresh(documents, state, tmp_path)
        _flip(state, CHUNK_ROWS)
    assert caches[0].listing.spill is None
    given = [r.getMessage() for r in caplog.records if "kept in memory until a restart" in r.getMessage()]
    assert len(given) == 1 and str(path) in given[0], given


def test_kept_rows_with_a_spill_equal_those_without_through_late_ids_and_merges(tmp_path: Path) -> None:
    """The same pieces' bytes with and without a spill (late ids rejoin everything); merged chunks are one
    range of the file whose digest checks out, and the frozen rows are not in memory."""
    rng = random.Random(3)
    spilled, memory = KeptRows(Spill(tmp_path / "rows.spill")), KeptRows()
    rows = 0
    for key in range(CHUNK_ROWS * CHUNK_MERGE * 2 + 40):
        if rng.random() < 0.9:
            row = b",%d:" % key + b"x" * rng.randint(0, 90)
            spilled.add(key, row)
            memory.add(key, row)
            rows += 1
        if key % 211 == 0 and key:
            late = rng.randrange(key)
            spilled.add(late, b",late")
            memory.add(late, b",late")
        live = [(i, b"L%d" % i) for i in sorted(rng.sample(range(key + 2), min(key + 2, 2)))]
        if key % 17 == 0:
            assert joined(spilled.parts(live, b",")) == joined(memory.parts(live, b",")), key
    parts = spilled.parts(separator=b",")
    assert joined(parts) == joined(memory.parts(separator=b","))
    merged = [part for part in parts if isinstance(part, Spilled) and len(part) > CHUNK_ROWS * 100]
    assert merged and all(part.read() for part in merged)  # read() checks the span's digest
    assert sum(len(part) for part in parts if isinstance(part, bytes)) < CHUNK_ROWS * 100


def test_a_spill_file_that_cannot_be_written_leaves_the_rows_in_memory_and_the_files_right(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A full disk (ENOSPC from every write, injected for a while): the blocks stay in memory with one warning
    naming the file, merged blocks that include them are joined in memory, and every file stays exact."""
    import errno
    import os

    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    files = RunFiles(tmp_path / "live")
    caches, memory = _spilled(files), (PublishCache(), TradesCsv())
    real_pwrite = os.pwrite

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    for step in range(12):
        if step == 4:
            monkeypatch.setattr(os, "pwrite", full)
        if step == 8:
            monkeypatch.setattr(os, "pwrite", real_pwrite)
        _flip(state, CHUNK_ROWS * 4 + 3)
        ours, theirs = _publish(state, files, caches), _publish(state, files, memory)
        assert write_public_files(files, ours)
        for name in ("state.json", "positions.json", "orders.csv"):
            assert ours[name].etag == theirs[name].etag and (files.public / name).read_bytes() == theirs[name].data()
    listing = caches[0].listing.spill
    assert listing is not None and listing.failed > 0 and listing.written > 0
    warnings = [r.getMessage() for r in caplog.records if "cannot be written" in r.getMessage()]
    assert any(str(listing.path) in message for message in warnings)
    assert len([m for m in warnings if str(listing.path) in m]) == 1  # once per file, not once per block


def _damage(path: Path) -> None:
    """One byte of ``path`` changed in its middle (a disk or an operator damaged it under the executor)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_damaged_spill_read_on_the_loop_thread_re_encodes_from_the_state(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A late position id re-joins history below the spilled chunks (its rows are joined afresh, which reads
    the spilled chunks back on the loop's thread) after the row spills were damaged: the publication does
    not raise, each owner warns once naming its file, and every file equals a fresh publication's, then and later."""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    state.portfolio.next_position_id, state.portfolio.next_order_id = 10, 10  # ids 1..9 free for the late one
    _flip(state, CHUNK_ROWS * 6)
    files = RunFiles(tmp_path / "live")
    caches = _spilled(files)
    _publish(state, files, caches)
    for name in ("positions", "orders"):
        _damage(files.spill / SPILL_FILES[name])
    late = Position(id=5, instrument_id=1, opened_at=AT, quantity=1.0, closed_at=AT)
    late.orders += [make_order(5, 5, 1, "open", AT, quantity=1.0, fill_price=101.0),
                    make_order(6, 5, 1, "close", AT, quantity=1.0, fill_price=102.0)]
    state.portfolio.closed_positions.append(late)
    documents = _publish(state, files, caches)  # raised SpillDamagedError out of publication before
    _check_fresh(documents, state, tmp_path)
    assert write_public_files(files, documents) == list(NAMES)
    assert caches[0].listing.spill is None and caches[1]._spill is None  # noqa: SLF001 - given up, in memory
    given = [r.getMessage() for r in caplog.records if "kept in memory until a restart" in r.getMessage()]
    for name in ("positions", "orders"):
        assert len([m for m in given if str(files.spill / SPILL_FILES[name]) in m]) == 1, given
    _flip(state, CHUNK_ROWS * 2)
    _check_fresh(_publish(state, files, caches), state, tmp_path / "later")
    assert len([r for r in caplog.records if "kept in memory until a restart" in r.getMessage()]) == 2


def test_out_of_order_closes_leave_every_range_an_older_publication_holds_and_stay_o_changed_rows(
        tmp_path: Path) -> None:
    """A multi-instrument run (positions closed in any order, long-open ones among them): a disk writer and a
    join on another thread take each publication while the loop goes on publishing, and publications held
    until the end are read last; each reads exactly its bytes (no 'damaged', no wrong file). The spill files
    are written once per chunk of closed history, never rewritten by a late close."""
    rng = random.Random(21)
    state = State(name="spill")
    for symbol in ("AAA", "BBB", "CCC"):
        state.add_instrument(symbol, "crypto", 0.001)
    files = RunFiles(tmp_path / "live")
    caches, memory = _spilled(files), (PublishCache(), TradesCsv())
    pending: queue.Queue[tuple[dict[str, PublicFile], dict[str, bytes]] | None] = queue.Queue()
    errors: list[str] = []

    def reader() -> None:  # what daemon.publish's writer and the webhook's join do with a publication
        while (item := pending.get()) is not None:
            documents, expected = item
            try:
                write_public_files(files, documents)
                for name in NAMES:
                    if documents[name].data() != expected[name] or (files.public / name).read_bytes() != expected[name]:
                        errors.append(name)
            except Exception as exc:  # noqa: BLE001 - collected, asserted below
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    held: list[tuple[dict[str, PublicFile], dict[str, bytes]]] = []
    portfolio = state.portfolio
    long_held = Position(id=portfolio.next_position_id, instrument_id=3, opened_at=AT, quantity=2.0)
    long_held.orders.append(make_order(portfolio.next_order_id, long_held.id, 3, "open", AT, quantity=2.0,
                                       fill_price=50.0))
    portfolio.next_position_id += 1
    portfolio.next_order_id += 1
    portfolio.open_positions.append(long_held)  # open for half the run, while hundreds close after it
    try:
        for cycle in range(900):
            if cycle < 450:
                portfolio.open_positions.remove(long_held)
            grow(state, rng, cycle)
            if cycle < 449:
                portfolio.open_positions.append(long_held)
            elif cycle == 449:  # closes last of hundreds: its rows join ahead of them all
                long_held.orders.append(make_order(portfolio.next_order_id, long_held.id, 3, "close", AT,
                                                   quantity=2.0, fill_price=55.0))
                portfolio.next_order_id += 1
                long_held.closed_at = AT
                portfolio.closed_positions.append(long_held)
            if cycle % 9:
                continue
            for position in state.portfolio.open_positions:  # spread over the instruments
                position.instrument_id = 1 + position.id % 3
            ours, theirs = _publish(state, files, caches), _publish(state, files, memory)
            expected = {name: theirs[name].data() for name in NAMES}
            if cycle % 18 == 0:
                held.append((ours, expected))  # not touched until the end (a join keeps the bytes it read)
            else:
                pending.put((ours, expected))
    finally:
        pending.put(None)
        thread.join(timeout=240)
    assert not thread.is_alive() and not errors, errors[:5]
    for documents, expected in held:  # read only now, after every later publication and late close
        assert write_public_files(files, documents) == list(NAMES)  # the disk writer's copy of the ranges
        for name in NAMES:
            assert (files.public / name).read_bytes() == documents[name].data() == expected[name], name
        assert gzip.decompress(documents["state.json.gz"].data()) == expected["state.json"]
    assert len(portfolio.closed_positions) > CHUNK_ROWS * 5 and portfolio.failed_positions
    ids = [position.id for position in portfolio.closed_positions]
    assert sum(a > b for a, b in itertools.pairwise(ids)) > 50  # many closes out of id order
    rows = {"positions": len(ids) + len(portfolio.failed_positions),
            "orders": sum(len(p.orders) for p in (*portfolio.closed_positions, *portfolio.failed_positions))}
    spills = {"positions": caches[0].listing.spill, "orders": caches[1]._spill}  # noqa: SLF001
    for name, spill in spills.items():
        assert spill is not None and spill.failed == 0, name
        assert 0 < spill.written <= rows[name] // CHUNK_ROWS, (name, spill.written)  # each chunk once, none again


def test_the_gzip_spill_grows_with_closed_history_only(tmp_path: Path) -> None:
    """Builds of state.json.gz whose large non-history pieces (the skeleton with 40 open positions) change
    every time: the gzip's spill holds closed history's segments and does not grow by a byte a build."""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    _flip(state, CHUNK_ROWS * 8)
    portfolio = state.portfolio
    for _ in range(40):
        portfolio.open_positions.append(Position(id=portfolio.next_position_id, instrument_id=1, opened_at=AT,
                                                 quantity=1.0))
        portfolio.next_position_id += 1
    files = RunFiles(tmp_path / "live")
    caches = _spilled(files)
    sizes = []
    for build in range(25):
        portfolio.cash = 1000.0 + build
        for position in portfolio.open_positions:
            position.quantity = 1.0 + build / 7
        documents = _publish(state, files, caches)
        assert gzip.decompress(documents["state.json.gz"].data()) == documents["state.json"].data()
        sizes.append((files.spill / SPILL_FILES["gzip"]).stat().st_size)
    assert sizes[0] > 0 and sizes == [sizes[0]] * len(sizes), sizes  # grew ~3.8 KB a build before


def test_an_older_publications_gzip_built_after_a_newer_one_keeps_the_newer_segments(tmp_path: Path) -> None:
    """Builds are lazy: a webhook request builds the newer publication's gzip, then the disk writer the older
    one's. The older build is exact and leaves the kept segments alone, so the next build re-spills nothing."""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    files = RunFiles(tmp_path / "live")
    caches = _spilled(files)
    spill = files.spill / SPILL_FILES["gzip"]
    _flip(state, POSITION_BLOCK * 4)
    _publish(state, files, caches)["state.json.gz"].data()
    for _ in range(3):
        older = _publish(state, files, caches)  # the writer took this one
        _flip(state, POSITION_BLOCK)  # a new block of closed positions
        newer = _publish(state, files, caches)
        assert gzip.decompress(newer["state.json.gz"].data()) == newer["state.json"].data()
        size = spill.stat().st_size
        assert gzip.decompress(older["state.json.gz"].data()) == older["state.json"].data()
        _flip(state, 1)
        newest = _publish(state, files, caches)
        assert gzip.decompress(newest["state.json.gz"].data()) == newest["state.json"].data()
        assert spill.stat().st_size == size  # grew by a re-spilled block a round before


def test_the_webhook_serves_the_disk_copy_when_a_join_finds_a_damaged_range(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Over HTTP (a real server): a publication whose orders spill was damaged after it was written is not a
    500; the webhook serves the copy on disk (its own ETag) with one warning naming the file, and keeps
    serving it for that publication without reading the spill again (the file repaired behind it changes
    nothing) nor warning again; the next publication (the owner encodes afresh) is served from memory."""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    _flip(state, CHUNK_ROWS * 4)
    files = RunFiles(tmp_path / "live")
    caches = _spilled(files)
    write_public_files(files, _publish(state, files, caches))
    on_disk = files.orders_csv.read_bytes()
    _flip(state, 2)
    runstate = RunState()
    runstate.public.replace(_publish(state, files, caches))  # not read yet
    intact = (files.spill / SPILL_FILES["orders"]).read_bytes()
    _damage(files.spill / SPILL_FILES["orders"])
    server = WebhookServer(create_app(runstate, options=WebhookOptions(files=files)), port=0)
    try:
        server.start()
        status, headers, body = _get(server.effective_port, "/orders.csv")
        assert (status, body) == (200, on_disk) and headers["etag"] == etag_of(on_disk)
        (files.spill / SPILL_FILES["orders"]).write_bytes(intact)  # a read now would succeed: none is made
        for _ in range(5):
            assert _get(server.effective_port, "/orders.csv")[::2] == (200, on_disk)
        warned = [r.getMessage() for r in caplog.records if "serving orders.csv from disk" in r.getMessage()]
        assert len(warned) == 1 and str(files.spill / SPILL_FILES["orders"]) in warned[0], warned
        runstate.public.replace(_publish(state, files, caches))
        status, _, body = _get(server.effective_port, "/orders.csv")
        assert (status, body) == (200, pandas_csv(state))
    finally:
        server.stop()



class _HeldDocuments(PublicDocuments):
    """The loop's documents, where a request marked by :meth:`hold` takes its document and then waits until released:
    a request descheduled between taking the current publication and building its bytes, as on a busy machine."""

    def __init__(self) -> None:
        super().__init__()
        self.held = threading.Event()  # the held request has taken its document
        self.release = threading.Event()
        self._hold: str | None = None

    def hold(self, name: str) -> None:
        self._hold = name

    def get(self, name: str) -> PublicDocument | None:
        document = super().get(name)
        if name == self._hold:
            self._hold = None
            self.held.set()
            assert self.release.wait(120)
        return document


def test_the_webhook_remembers_each_publication_whose_spill_range_was_damaged_while_an_older_one_is_served(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Over HTTP (a real server): a request of publication 1 is still in flight when publication 2 comes, whose
    orders.csv lies partly in a range damaged afterwards. A request of publication 2 is served the disk copy with
    one warning; the late request of publication 1 (its range intact) is served its own bytes from memory; and
    later requests of publication 2 still get the disk copy without reading the spill again nor warning again.
    (The memo held one document a path: publication 1's request cleared it, and the next one warned again.)"""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    _flip(state, CHUNK_ROWS * 2)
    files = RunFiles(tmp_path / "live")
    caches = _spilled(files)
    write_public_files(files, _publish(state, files, caches))  # the disk copy: older than both publications
    on_disk = files.orders_csv.read_bytes()
    spill = files.spill / SPILL_FILES["orders"]
    runstate = RunState()
    held = _HeldDocuments()
    runstate._public = held  # noqa: SLF001 - the documents a request takes, one request held after taking them
    _flip(state, 2)
    held.replace(_publish(state, files, caches))  # publication 1
    first_bytes, size = pandas_csv(state), spill.stat().st_size
    server = WebhookServer(create_app(runstate, options=WebhookOptions(files=files)), port=0)
    late: list[tuple[int, dict[str, str], bytes]] = []
    request = threading.Thread(target=lambda: late.append(_get(server.effective_port, "/orders.csv")))
    try:
        server.start()
        held.hold("orders.csv")
        request.start()
        assert held.held.wait(120)  # the late request holds publication 1's document, its bytes not built yet
        _flip(state, CHUNK_ROWS)
        held.replace(_publish(state, files, caches))  # publication 2
        assert spill.stat().st_size > size  # it spilled blocks that publication 1 does not hold
        damaged = bytearray(spill.read_bytes())
        damaged[-1] ^= 0x10  # in the last of them
        spill.write_bytes(bytes(damaged))
        assert _get(server.effective_port, "/orders.csv")[::2] == (200, on_disk)
        held.release.set()
        request.join(120)
        assert [(status, body) for status, _, body in late] == [(200, first_bytes)]  # its own, from memory
        for _ in range(3):
            assert _get(server.effective_port, "/orders.csv")[::2] == (200, on_disk)
        warned = [r.getMessage() for r in caplog.records if "serving orders.csv from disk" in r.getMessage()]
        assert len(warned) == 1 and str(spill) in warned[0], warned
    finally:
        held.release.set()
        server.stop()



def test_the_webhooks_memo_of_damaged_publications_is_bounded_and_lets_them_go(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Many publications whose bytes cannot be had: the newest FAILED_KEPT are remembered (no read, no warning
    again), older ones are forgotten (a read and a warning again), and none is kept alive by the memo."""
    spill = Spill(tmp_path / "rows.spill")
    piece = spill.keep(b"rows")
    _damage(spill.path)
    cache, path = FileCache(), tmp_path / "orders.csv"
    documents = [PublicFile("orders.csv", f'"{i}"', lambda: [piece]) for i in range(FAILED_KEPT + 3)]
    assert all(cache.published(path, document) is None for document in documents)
    warned = len(caplog.records)
    assert [cache.published(path, document) for document in documents[3:]] == [None] * FAILED_KEPT
    assert len(caplog.records) == warned  # remembered: not read again
    assert cache.published(path, documents[0]) is None and len(caplog.records) == warned + 1  # forgotten: read
    alive = weakref.ref(documents[-1])
    del documents
    gc.collect()
    assert alive() is None


@pytest.mark.timeout(280)
def test_an_executor_killed_with_its_spill_files_half_written_restarts_and_publishes_the_ledgers_files(
        tmp_path: Path) -> None:
    """``tradeexecutor start`` as a subprocess on a saved run with hundreds of closed positions: killed (-9)
    once its spill files hold closed history, one spill cut short (a kill in the middle of a write) and
    another with a byte changed; started again and stopped: exit 0, no traceback, and public/ equals what the
    ledger's state gives afresh."""
    history = 7_000
    frame = generate_candles(history + 400, frequency="1m", seed=3, symbol="SYN")
    data = tmp_path / "candles.csv"
    frame.to_csv(data, index_label="timestamp")
    strategy = load_strategy(SMA_1M)
    market, _ = load_market([str(data)], strategy.instruments)
    state = run_backtest(strategy, market.between(None, market.step_time(history - 1)), EngineConfig(),
                         now=datetime(2024, 1, 1, tzinfo=UTC)).state
    assert len(state.portfolio.closed_positions) > CHUNK_ROWS * 3
    state.replay_cursor = history - 1
    state.last_bar_at = market.step_time(history - 1).to_pydatetime()
    files = RunFiles(tmp_path / "state")
    files.root.mkdir()
    ledger = Ledger(files.ledger)
    ledger.save(state)
    ledger.close()
    arguments = ("--data", str(data), "--replay-seconds", "0.05", "--crash-loop-count", "0")
    first = Executor(tmp_path, *arguments, strategy=str(SMA_1M), state_dir=files.root, window=False)
    try:
        first.wait_status(lambda s: s["status"] == "running")
        spills = [files.spill / SPILL_FILES[name] for name in ("closed", "positions", "orders")]
        deadline = time.monotonic() + 120
        while not all(path.exists() and path.stat().st_size > 0 for path in spills):
            assert time.monotonic() < deadline and first.process.poll() is None, first.output()
            time.sleep(0.05)
    finally:
        first.kill()
    positions, orders = spills[1], spills[2]
    positions.write_bytes(positions.read_bytes()[: positions.stat().st_size // 2])
    _damage(orders)
    again = Executor(tmp_path, *arguments, strategy=str(SMA_1M), state_dir=files.root, window=False)
    try:
        again.wait_status(lambda s: s["status"] == "running")
        again.process.send_signal(signal.SIGTERM)
        assert again.wait(120) == 0, again.output()
    finally:
        again.kill()
    assert "Traceback" not in again.output() and " ERROR " not in again.output(), again.output()
    committed = load_state(files.root)
    assert committed is not None and len(committed.portfolio.closed_positions) >= len(state.portfolio.closed_positions)
    assert files.state_snapshot.read_bytes() == dumps_state(committed)
    assert gzip.decompress(files.state_snapshot_gz.read_bytes()) == dumps_state(committed)
    assert files.positions.read_bytes() == dumps_json(positions_document(committed))
    assert files.orders_csv.read_bytes() == pandas_csv(committed)
    assert positions.stat().st_size > 0 and orders.stat().st_size > 0  # rebuilt from the first difference


def test_a_position_held_open_costs_each_publication_a_chunk_not_the_closes_after_it(tmp_path: Path) -> None:
    """One position held open while thousands close after it: the rows after it are frozen in memory (as without a
    spill), so the bytes a publication copies or hashes anew stay within a merged chunk however many closed since;
    only chunks wholly below the held id are in the file, and once it closes the rest is appended, nothing rewritten."""
    spill = Spill(tmp_path / "rows.spill")
    kept, memory = KeptRows(spill), KeptRows()
    width = 48

    def row(key: int) -> bytes:
        return (b",%d:" % key).ljust(width, b"x")

    held = CHUNK_ROWS * 3 + 5
    for key in range(held):
        kept.add(key, row(key))
        memory.add(key, row(key))
    live = [(held, row(held))]
    previous = kept.parts(live, b",")
    below = spill.path.stat().st_size
    assert below == CHUNK_ROWS * 3 * width  # the chunks wholly below the held id, and nothing else
    work = []
    for key in range(held + 1, held + 1 + CHUNK_ROWS * CHUNK_MERGE * 4):
        kept.add(key, row(key))
        memory.add(key, row(key))
        parts = kept.parts(live, b",")
        seen = {id(part) for part in previous}  # previous holds its pieces: their ids are unique
        # what a publication copies (new pieces) and what its ETag hashes (new large pieces, every small one)
        work.append(sum(len(part) for part in parts if id(part) not in seen or len(part) < KEPT_PIECE_BYTES))
        previous = parts
    assert joined(previous) == joined(memory.parts(live, b","))
    assert spill.path.stat().st_size == below  # nothing above the held id went to the file
    # at most a merged group new, the unmerged chunks of two groups (the held id's and the last), the tail: 2 groups
    assert max(work) <= (2 * CHUNK_ROWS * CHUNK_MERGE + CHUNK_ROWS) * width, max(work)
    group = CHUNK_ROWS * CHUNK_MERGE
    assert max(work[-group:]) <= max(work[group:2 * group])  # not growing with the closes since the held one
    before = spill.path.read_bytes()
    kept.add(held, row(held))
    memory.add(held, row(held))
    parts = kept.parts([], b",")
    assert joined(parts) == joined(memory.parts([], b","))
    assert spill.path.read_bytes()[:len(before)] == before  # appended to, never rewritten
    assert sum(len(part) for part in parts if isinstance(part, bytes)) < CHUNK_ROWS * width  # the rest is spilled
    assert len(parts) <= len(memory.parts([], b",")) + CHUNK_MERGE  # merged groups, as in memory


def test_an_executor_whose_spill_path_is_a_regular_file_starts_and_publishes_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``spill`` under the state directory is a regular file (an operator's or a tool's): the spill files cannot be
    opened, so the caches keep closed history in memory, as before spill files; the executor starts, publishes
    the files a fresh publication gives, and says so once, naming the path."""
    data = tmp_path / "candles.csv"
    generate_candles(300, frequency="1m", seed=1, symbol="SYN").to_csv(data, index_label="timestamp")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    files = RunFiles(state_dir)
    files.spill.write_text("not a directory")
    daemon, tickers = replay_daemon(SMA_1M, state_dir, data, FakeClock(AT))
    try:
        daemon.start_jobs()
        for _ in range(3):
            tickers[0].advance(120.0)
            daemon.loop.run_pending()
        live = daemon.loop.state
        document = daemon.runstate.public.get("state.json")
        assert document is not None and document.data() == dumps_state(live)
        daemon.commands.stop("test")
        daemon.loop.run_pending()  # the stop publishes and writes the files to disk
        assert files.state_snapshot.read_bytes() == dumps_state(daemon.loop.state)
    finally:
        daemon.close()
    assert files.spill.read_text() == "not a directory"
    warned = [r.getMessage() for r in caplog.records if "spill files" in r.getMessage()]
    assert len(warned) == 1 and str(files.spill) in warned[0] and "in memory" in warned[0], warned


def test_the_end_of_a_run_that_finds_a_spill_damaged_encodes_afresh_and_writes_the_files(tmp_path: Path) -> None:
    """Spills damaged under a running executor, found by the stop's write of the public files: each failed write
    finds one and its owner encodes afresh, and the write is retried until public/ holds the final state's files
    (two damaged here: a single retry left orders.csv and metadata.json older than state.json)."""
    frame = generate_candles(2_000, frequency="1m", seed=3, symbol="SYN")
    data = tmp_path / "candles.csv"
    frame.to_csv(data, index_label="timestamp")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    files = RunFiles(state_dir)
    daemon, tickers = replay_daemon(SMA_1M, state_dir, data, FakeClock(AT))
    try:
        daemon.start_jobs()
        damaged = [files.spill / SPILL_FILES[name] for name in ("orders", "closed")]
        for _ in range(1_900):  # cycles until orders.csv's and the closed list's spills hold a chunk of closed history
            if all(path.stat().st_size for path in damaged):
                break
            tickers[0].advance(120.0)
            daemon.loop.run_pending()
        for path in damaged:
            assert path.stat().st_size
            _damage(path)
        daemon.commands.stop("test")
        daemon.loop.run_pending()  # the stop publishes and writes the files to disk
        assert files.orders_csv.read_bytes() == pandas_csv(daemon.loop.state)
        assert files.state_snapshot.read_bytes() == dumps_state(daemon.loop.state)
    finally:
        daemon.close()


@pytest.mark.parametrize("with_spill", [True, False])
def test_a_close_out_of_order_rejoins_from_the_chunk_that_holds_it_not_every_row(tmp_path: Path,
                                                                                  with_spill: bool) -> None:
    """A position held open from the very start (nothing can be spilled below it) while hundreds close after it,
    and two of those closing late, hundreds of rows out of order: each late close copies the rows from the
    frozen chunk that holds its place on (at most a merged group and what follows it), and the chunks before
    stay the same objects; the bytes equal the rows in id order. Main (and the code before) rejoined every row."""
    spill = Spill(tmp_path / "rows.spill") if with_spill else None
    kept = KeptRows(spill)
    width = 40

    def row(key: int, late: bool = False) -> bytes:
        return (b",%d:%s" % (key, b"late" if late else b"")).ljust(width, b"x")

    group = CHUNK_ROWS * CHUNK_MERGE
    end = group * 3 + CHUNK_ROWS + 9  # three merged groups, a chunk and a tail after the held id 0
    late = (end - 300, end - 40)  # closed after the rest, 300 and 40 rows out of order
    rows = {key: row(key) for key in range(1, end) if key not in late}
    for key in sorted(rows):
        kept.add(key, rows[key])
    live = [(0, row(0)[1:])]  # live rows come without the separator
    previous = kept.parts(live, b",")
    for key in late:
        kept.add(key, row(key, late=True))
        rows[key] = row(key, late=True)
        parts = kept.parts(live, b",")
        assert joined(parts) == row(0)[1:] + b"".join(rows[k] for k in sorted(rows)), key
        seen = {id(part) for part in previous}  # previous holds its pieces: their ids are unique
        copied = sum(len(part) for part in parts if id(part) not in seen)
        assert copied <= (group + 2 * CHUNK_ROWS) * width, (key, copied)  # every row: about 1,600 rows
        previous = parts
    assert kept.rejoined <= 2 * (group + 2 * CHUNK_ROWS), kept.rejoined  # two late closes: every row would be 3,100
    if spill is not None:
        assert spill.path.stat().st_size == 0  # nothing lies below the held id


def test_the_valuation_columns_keep_their_blocks_in_spills_reused_on_restart_and_given_up_when_damaged(
        tmp_path: Path) -> None:
    """Counted, never timed: 33,000 valuation rows (a row a cycle: nine hours of 1-second cycles) publish the
    bytes of a fresh encoding while state.json's pieces in memory hold under two blocks of rows; a row more
    publishes the right bytes again; a restart finds every column block in its file and writes none; a column
    spill damaged under the executor is refused on read, then given up, and the next publication is right."""
    state = State(name="spill")
    state.add_instrument("SYN", "crypto", 0.001)
    rows = COLUMN_BLOCK * BLOCK_MERGE * 2 + 100  # two merged blocks of each column, then single ones
    stamps = [1_700_000_000_000 + 1000 * i for i in range(rows)]
    state.valuations.extend(stamps, [10_000.0 + i / 7 for i in range(rows)], [9_000.0 - i / 3 for i in range(rows)],
                            [(i % 5) / 10 for i in range(rows)])
    files = RunFiles(tmp_path / "live")
    caches = _spilled(files)
    documents = _publish(state, files, caches)
    pieces = documents["state.json"].pieces()  # before a read, which joins them
    whole = documents["state.json"].data()
    assert whole == dumps_state(state) == _publish(state, files, (PublishCache(), TradesCsv()))["state.json"].data()
    in_memory = sum(len(piece) for piece in pieces if isinstance(piece, bytes))
    row = len(whole) // rows
    assert sum(isinstance(piece, Spilled) for piece in pieces) >= 4 * 2, pieces  # the merged blocks, per column
    assert in_memory < 2 * COLUMN_BLOCK * row, (in_memory, len(whole))  # measured: the open block's rows
    state.valuations.append(stamps[-1] + 1000, 1.5, 2.5, 0.0)
    grown = _publish(state, files, caches)
    assert grown["state.json"].data() == dumps_state(state) and grown["state.json"].etag != documents["state.json"].etag
    columns = [SPILL_FILES[name] for name in VALUATION_COLUMNS]
    sizes = {name: (files.spill / name).stat().st_size for name in columns}
    assert all(sizes.values()), sizes
    restarted = _spilled(files)
    state = loads_state(dumps_state(state), source="test")  # the restart's state, read back
    again = _publish(state, files, restarted)
    assert again["state.json"].data() == dumps_state(state) and again["state.json"].etag == grown["state.json"].etag
    spills = {spill.path.name: (spill.written, spill.reused) for spill in restarted[0].spills()}
    assert all(spills[name][0] == 0 and spills[name][1] > 0 for name in columns), spills
    assert {name: (files.spill / name).stat().st_size for name in columns} == sizes
    write_public_files(files, again)
    good = files.state_snapshot.read_bytes()
    _damage(files.spill / SPILL_FILES["equity"])
    state.valuations.append(stamps[-1] + 2000, 3.5, 4.5, 0.0)  # a change, so state.json is written again
    with pytest.raises(SpillDamagedError, match=SPILL_FILES["equity"]):
        write_public_files(files, _publish(state, files, restarted))
    assert files.state_snapshot.read_bytes() == good  # nothing half-written
    healed = _publish(state, files, restarted)  # the equity column encoded afresh, in memory
    assert write_public_files(files, healed) == list(NAMES) and files.state_snapshot.read_bytes() == dumps_state(state)
    assert SPILL_FILES["equity"] not in {spill.path.name for spill in restarted[0].spills()}


def test_followers_that_fall_behind_the_packing_append_only_the_new_closes_to_the_spills(tmp_path: Path) -> None:
    """Counted, never timed: a fast replay closes dozens of positions between two publications, more than the
    daemon keeps as objects (keep 32), so the last position each follower saw has been packed by its next look.
    The followers (state.json's blocks, positions.json, orders.csv) find their place by count and id all the
    same: every spill file grows by exactly the bytes it grows by for a plain list that packs nothing, and every
    file equals the plain list's byte for byte. Before, each publication appended the whole closed history again
    (the state's closed spill grew 10x the history's rows in 10 publications, where it now grows 0.2x)."""
    keep = daemon_keep(1)
    states: dict[str, State] = {}
    lists: tuple[tuple[str, list[Position] | PackedPositions], ...] = (("packed", PackedPositions(keep=keep)),
                                                                        ("list", []))
    for name, closed in lists:
        state = State(name="spill")
        state.add_instrument("SYN", "crypto", 0.001)
        state.portfolio.closed_positions = closed
        states[name] = state
    files = {name: RunFiles(tmp_path / name) for name in states}
    caches = {name: _spilled(files[name]) for name in states}

    def sizes(name: str) -> dict[str, int]:
        return {p.name: p.stat().st_size for p in sorted(files[name].spill.iterdir())}

    for closes in [2000] + [keep + 8] * 10:  # each look behind by more than the objects kept
        documents = {}
        for name, state in states.items():
            _flip(state, closes)
            documents[name] = _publish(state, files[name], caches[name])
        for document in ("state.json", "positions.json", "orders.csv"):
            assert documents["packed"][document].data() == documents["list"][document].data(), document
        assert sizes("packed") == sizes("list"), (sizes("packed"), sizes("list"))
    closed = states["packed"].portfolio.closed_positions
    assert isinstance(closed, PackedPositions) and closed.packed > len(closed) - keep - closed.block
    assert sizes("packed")["state-closed.spill"] > 0
    _check_fresh(documents["packed"], states["packed"], tmp_path)


def test_the_positions_of_a_block_not_yet_complete_are_kept_at_their_length() -> None:
    """Counted: the state's JSON cache keeps the encoded positions of its open block (up to POSITION_BLOCK - 1) in
    about their own length. orjson's bytes keep the whole buffer it wrote into (about 20 KiB a position of 2 KB
    here), so they are copied to their length: 31 positions hold under three times their bytes (the items, the
    joined open block, the fragment handed back), where the buffers held ten times (625 KB for 60 KB)."""
    state = State(name="open-block")
    state.add_instrument("SYN", "crypto", 0.001)
    _flip(state, POSITION_BLOCK - 1)
    fragments = PositionFragments()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fragment = fragments.positions("closed", state.portfolio.closed_positions)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    items = fragments._lists["closed"][1].open
    assert len(items) == POSITION_BLOCK - 1
    length = sum(len(item) for item in items)
    assert held < 3 * length + 16 * 1024, (held, length)
    assert fragment is not None

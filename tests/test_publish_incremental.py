"""Published files built from kept parts (state.json, positions.json, orders.csv) equal the files built afresh,
however long the run: unit checks of the caches, and a replay executor publishing over many cycles."""

from __future__ import annotations

import copy
import gzip
import http.client
import random
import zlib
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from replay_daemon import replay_daemon
from test_trades_csv import grow, pandas_csv
from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.config import EngineConfig
from tradeexecutor.daemon import FakeClock
from tradeexecutor.data import generate_candles
from tradeexecutor.data.source import load_market
from tradeexecutor.kept_rows import CHUNK_MERGE, CHUNK_ROWS, Appended, KeptRows
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger
from tradeexecutor.spill import Piece, joined
from tradeexecutor.state import Order, Position, State
from tradeexecutor.stats import trades_csv
from tradeexecutor.stats.summary import write_trades_csv
from tradeexecutor.stats.trades_csv import TradesCsv
from tradeexecutor.store import publish as store_publish
from tradeexecutor.store.codec import (
    BLOCK_MERGE,
    COLUMN_BLOCK,
    POSITION_BLOCK,
    PositionFragments,
    dumps_json,
    dumps_state,
    dumps_state_parts,
    loads_state,
)
from tradeexecutor.store.publish import (
    GZIP_LEVEL,
    KEPT_PIECE_BYTES,
    SPILL_FILES,
    KeptGzip,
    PartsDigest,
    PositionListing,
    PublishCache,
    positions_document,
    public_files,
    publish,
)
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.options import WebhookOptions

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "bench" / "strategies" / "sma_1m.py"


def test_kept_rows_splice_live_rows_by_id_and_rebuild_on_a_late_id() -> None:
    kept = KeptRows()
    for key in (2, 4, 6):
        kept.add(key, b"," + str(key).encode())
    assert kept.joined([(1, b"1"), (5, b"5"), (9, b"9")], separator=b",") == b"1,2,4,5,6,9"
    assert kept.joined(separator=b",") == b"2,4,6"
    kept.add(3, b",3")  # an id below the largest kept one
    kept.add(4, b",four")  # a kept row replaced
    assert kept.joined([(4, b"live")], separator=b",") == b"2,3,live,6"
    assert kept.joined([(0, b"0")], separator=b",") == b"0,2,3,four,6"
    assert KeptRows().joined([(1, b"x")], separator=b",") == b"x" and KeptRows().joined() == b""


def test_kept_rows_keep_each_row_once() -> None:
    """Kept rows hold their bytes once (a frozen chunk or the unfrozen tail), not a dict, a joined copy and the chunks:
    the memory traced for 5,000 rows of 200 bytes stays within their bytes plus the id and offset of each."""
    import tracemalloc

    rows, size = 5_000, 200
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = KeptRows()
        for key in range(1_000, 1_000 + rows):
            kept.add(key, b"," + bytes([65 + key % 26]) * (size - 1))  # the row is dropped once kept
            if key % 700 == 0:
                kept.parts([(key + 1, b",live")], separator=b",")  # freezes the complete chunks
        parts = kept.parts(separator=b",")
        held = tracemalloc.get_traced_memory()[0] - before  # parts are the chunks themselves, and one small slice
    finally:
        tracemalloc.stop()
    assert len(joined(parts)) == rows * size - 1
    assert held < rows * size * 1.7, held  # its bytes, and about 72 bytes of id and offset a row; 3.4x before
    assert kept.joined([(999, b"first")], separator=b",")[:6] == b"first,"


def test_kept_rows_parts_reuse_their_chunks_and_join_to_the_rows() -> None:
    """Chunks of CHUNK_ROWS, merged CHUNK_MERGE at a time, are the same objects while nothing is added;
    the pieces always join to the rows in id order with the live rows spliced in."""
    rng = random.Random(5)
    kept, rows = KeptRows(), {}
    previous: list[Piece] = []
    for key in range(CHUNK_ROWS * CHUNK_MERGE * 3 + 7):
        if rng.random() < 0.8:
            rows[key] = b",%d" % key
            kept.add(key, rows[key])
        if key % 97 == 0 and rows:  # now and then a late id (a position closed out of order)
            late = rng.choice(sorted(rows))
            rows[late] = b",late%d" % late
            kept.add(late, rows[late])
        live = [(i, b"L%d" % i) for i in sorted(rng.sample(range(key + 3), min(key + 3, rng.randint(0, 3))))]
        merged = {**rows, **{i: b"," + row for i, row in live}}
        parts = kept.parts(live, separator=b",")
        assert joined(parts) == b"".join(merged[i] for i in sorted(merged))[1:], key
        again = kept.parts(live, separator=b",")
        assert all(a is b for a, b in zip(parts, again, strict=True) if len(a) >= KEPT_PIECE_BYTES)
        previous = again
    assert len(previous) < CHUNK_MERGE + 12  # few pieces: merged chunks, the newest chunks and the spliced rows
    assert max(len(part) for part in previous) > CHUNK_ROWS * CHUNK_MERGE * 3  # a merged chunk is one piece


def test_public_files_equal_a_whole_publication_and_their_etags_change_exactly_with_the_bytes(tmp_path: Path) -> None:
    """public_files (a running executor) against publish (everything afresh) on a busy growing run.

    Every file's bytes are publish's; metadata.json names state.json's ETag; an ETag changes when
    and only when its file's bytes do; a restarted executor (the state reloaded, empty caches)
    gives the same ETags for the same state.
    """
    rng = random.Random(11)
    state = State(name="etags")
    state.add_instrument("SYN", "crypto", 0.001)
    cache, writer = PublishCache(), TradesCsv()
    files, fresh = RunFiles(tmp_path / "live"), RunFiles(tmp_path / "fresh")
    meta = {"name": "etags", "mode": "replay"}
    at = datetime(2024, 1, 1, tzinfo=UTC)
    previous: dict[str, tuple[bytes, str]] = {}
    for cycle in range(400):
        if cycle % 7:  # some publications see no change
            grow(state, rng, cycle)
        documents = public_files(state, files, metadata=meta, orders_csv=writer.parts, cache=cache, now=at)
        for name, document in documents.items():
            data, etag = document.data(), document.etag
            if name in previous:
                assert (data == previous[name][0]) == (etag == previous[name][1]), (cycle, name)
            previous[name] = (data, etag)
        if cycle % 100 == 99:
            publish(state, fresh, metadata=meta, orders_csv_writer=write_trades_csv, now=at)
            for name in ("state.json", "positions.json", "orders.csv"):
                assert documents[name].data() == (fresh.public / name).read_bytes(), (cycle, name)
            assert gzip.decompress(documents["state.json.gz"].data()) == fresh.state_snapshot.read_bytes()
            metadata = orjson.loads(documents["metadata.json"].data())
            assert metadata.pop("etag") == documents["state.json"].etag
            assert metadata == {k: v for k, v in orjson.loads(fresh.metadata.read_bytes()).items() if k != "etag"}
    assert len(state.portfolio.closed_positions) > CHUNK_ROWS  # kept chunks are part of what was compared
    reloaded = loads_state(dumps_state(state), source="test")
    restarted = public_files(reloaded, files, metadata=meta, orders_csv=TradesCsv().parts, cache=PublishCache(),
                             now=at)
    assert {name: (d.data(), d.etag) for name, d in restarted.items()} == previous


def test_appended_follows_one_list_and_notices_a_replaced_or_cut_one() -> None:
    follower: Appended[object] = Appended()
    items: list[object] = [object(), object()]
    assert follower.appended(items) == (False, items)
    items.append(object())
    assert follower.appended(items) == (True, items[2:])
    assert follower.appended(items) == (True, [])
    copied = list(items)
    assert follower.appended(copied) == (False, copied)
    copied[-1] = object()  # the last item replaced in place
    assert follower.appended(copied)[0] is False
    del copied[-1]
    assert follower.appended(copied)[0] is False


def test_a_cached_state_encoding_equals_a_fresh_one_as_the_run_grows() -> None:
    """Valuation blocks completed, the newest row replaced in place, positions closed and failed, a reload."""
    rng = random.Random(5)
    state = State(name="growing")
    state.add_instrument("SYN", "crypto", 0.001)
    fragments = PositionFragments()
    rows = 0
    for cycle in range(300):
        grow(state, rng, cycle)
        for _ in range(rng.choice([1, 20, 60])):
            rows += 1
            state.valuations.append(rows * 60_000, 1000.0 + rng.random(), 500.0 * rng.random(), rng.random())
        if cycle % 3 == 0:
            state.valuations.append(rows * 60_000, float("nan") if cycle == 99 else 1.5, 2.5, 0.0)  # replaces
        if cycle == 200:
            state = copy.deepcopy(state)
        assert dumps_state(state, fragments) == dumps_state(state), cycle
    assert len(state.valuations) > COLUMN_BLOCK + 1000 and len(state.portfolio.closed_positions) > 50


def test_the_kept_gzip_decompresses_to_the_snapshot_and_compresses_each_kept_block_once() -> None:
    rng = random.Random(9)
    state = State(name="gzip")
    state.add_instrument("SYN", "crypto", 0.001)
    fragments, kept = PositionFragments(), KeptGzip()
    compressed: list[bytes] = []
    real_segment = kept._segment  # noqa: SLF001 - watching what is compressed

    def watched(data: bytes, mode: int) -> bytes:
        compressed.append(data)
        return real_segment(data, mode)

    kept._segment = watched  # type: ignore[method-assign]  # noqa: SLF001
    previous: list[Piece] = []
    written = compressed_bytes = reused = 0
    for cycle in range(400):
        grow(state, rng, cycle)
        for _ in range(60):
            state.valuations.append(len(state.valuations) * 60_000 + 1, 1000.0 + rng.random(), 5.0, rng.random())
        parts = dumps_state_parts(state, fragments)
        data = joined(parts)
        compressed.clear()
        gz = kept.compress(parts)
        assert gzip.decompress(gz) == data, cycle
        if cycle % 40 == 0:
            assert data == dumps_state(state)
            assert gz == KeptGzip().compress(dumps_state_parts(state, PositionFragments()))  # equal states, equal files
        # A kept block (the same object as in the last snapshot) is never compressed again.
        kept_blocks = {id(part) for part in previous if len(part) >= KEPT_PIECE_BYTES}
        assert not [segment for segment in compressed if id(segment) in kept_blocks], cycle
        reused += sum(1 for part in parts if id(part) in kept_blocks)
        previous = parts
        written += len(data)
        compressed_bytes += sum(len(segment) for segment in compressed)
    assert reused > 400 * 20 and compressed_bytes < written / 5


def test_kept_blocks_merge_so_a_long_run_is_few_pieces() -> None:
    """Past BLOCK_MERGE**2 blocks of a column, and BLOCK_MERGE blocks of closed positions."""
    rng = random.Random(2)
    state = State(name="long")
    state.add_instrument("SYN", "crypto", 0.001)
    fragments = PositionFragments()
    step = COLUMN_BLOCK * BLOCK_MERGE // 3 + 17  # not a multiple of anything
    cycle = 0
    while len(state.valuations) < COLUMN_BLOCK * (BLOCK_MERGE**2 + 3):
        start = len(state.valuations)
        state.valuations.extend(list(range(start, start + step)), [rng.random() for _ in range(step)], [1.0] * step,
                                [0.5] * step)
        while len(state.portfolio.closed_positions) < POSITION_BLOCK * (BLOCK_MERGE + 1) * cycle // 40:
            grow(state, rng, cycle)
        cycle += 1
        parts = dumps_state_parts(state, fragments)
        assert joined(parts) == dumps_state(state), cycle
    assert len(state.portfolio.closed_positions) > POSITION_BLOCK * BLOCK_MERGE
    assert len(parts) < 4 * 2 * BLOCK_MERGE + 2 * 2 * BLOCK_MERGE + 40  # a few levels of blocks an array


def test_a_column_cut_or_replaced_is_encoded_afresh() -> None:
    state = State(name="cut")
    fragments = PositionFragments()
    for i in range(COLUMN_BLOCK * 2 + 3):
        state.valuations.append(i, float(i), 0.0, 0.0)
    assert dumps_state(state, fragments) == dumps_state(state)
    for column in (state.valuations.timestamp, state.valuations.equity, state.valuations.cash,
                   state.valuations.exposure):
        assert isinstance(column, array)  # a plain series (a running executor's tail only grows)
        del column[COLUMN_BLOCK - 2:]
    assert dumps_state(state, fragments) == dumps_state(state)
    state.valuations.equity = array("d", [7.0] * len(state.valuations.timestamp))
    assert dumps_state(state, fragments) == dumps_state(state)


def test_the_kept_position_listing_equals_the_document() -> None:
    rng = random.Random(8)
    state = State(name="listing")
    state.add_instrument("SYN", "crypto", 0.001)
    listing = PositionListing()
    assert listing.data(state) == (b"[]\n", 0)
    for cycle in range(400):
        grow(state, rng, cycle)
        if cycle == 150:
            state = copy.deepcopy(state)
        if cycle == 300:
            state.instruments[0].symbol = "RENAMED"
        document = positions_document(state)
        assert listing.data(state) == (dumps_json(document), len(document)), cycle


def _get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.timeout(280)
def test_a_replay_executor_serves_the_same_files_as_a_fresh_publication_after_many_cycles(tmp_path: Path) -> None:
    """The bench's set-up, shortened: 1,928 completed cycles from a fast replay, then 150 cycle jobs, each publishing.

    After every job the files the webhook serves from memory are what the state gives afresh, byte
    for byte: state.json (and its gzip), positions.json and orders.csv, whose kept parts span more
    than a valuation block and merged chunks; metadata.json names state.json's ETag. A change of
    the state always changes the ETag, and no change keeps it. Over HTTP (a real server on the
    daemon's RunState): Content-Length, a 304 for the current ETag, a 200 for the previous one
    after a change, gzip. At the stop the files on disk equal the last publication; a restarted
    executor serves the same bytes under the same ETags, so clients' copies stay valid, and
    rewrites public/ (left stale and cut short, as a kill -9 between writes leaves it) from the ledger.
    """
    history, cycles = COLUMN_BLOCK + 904, 150
    frame = generate_candles(history + cycles + 5, frequency="1m", seed=3, symbol="SYN")
    data = tmp_path / "candles.csv"
    frame.to_csv(data, index_label="timestamp")
    strategy = load_strategy(STRATEGY)
    market, _ = load_market([str(data)], strategy.instruments)
    state = run_backtest(strategy, market.between(None, market.step_time(history - 1)), EngineConfig(),
                         now=datetime(2024, 1, 1, tzinfo=UTC)).state
    state.replay_cursor = history - 1
    state.last_bar_at = market.step_time(history - 1).to_pydatetime()
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    ledger = Ledger(RunFiles(state_dir).ledger)
    ledger.save(state)
    ledger.close()
    files = RunFiles(state_dir)
    clock = FakeClock(datetime(2024, 1, 1, tzinfo=UTC))
    daemon, tickers = replay_daemon(STRATEGY, state_dir, data, clock)
    closed_before = len(state.portfolio.closed_positions)
    names = ("state.json", "state.json.gz", "positions.json", "orders.csv", "metadata.json")
    server = WebhookServer(create_app(daemon.runstate, options=WebhookOptions(files=files)), port=0)
    try:
        server.start()
        port = server.effective_port
        daemon.start_jobs()
        published, previous = [], (b"", "")
        for cycle in range(cycles):
            # 120 fake seconds a cycle: a publication is due after each unless one took over 12 s (cost / share).
            tickers[0].advance(120.0)
            daemon.loop.run_pending()
            live = daemon.loop.state
            found = {name: daemon.runstate.public.get(name) for name in names}
            documents = {name: document for name, document in found.items() if document is not None}
            assert len(documents) == len(names), found
            snapshot, etag = documents["state.json"].data(), documents["state.json"].etag
            metadata = orjson.loads(documents["metadata.json"].data())
            published.append(metadata["published_at"])
            assert snapshot == dumps_state(live)
            assert gzip.decompress(documents["state.json.gz"].data()) == snapshot
            assert metadata["etag"] == etag != documents["state.json.gz"].etag
            assert documents["positions.json"].data() == dumps_json(positions_document(live))
            assert documents["orders.csv"].data() == pandas_csv(live)
            assert (etag == previous[1]) == (snapshot == previous[0]), cycle  # a change, and only one, changes it
            if cycle % 10 == 0:
                status, headers, body = _get(port, "/state")
                assert (status, body, headers["etag"]) == (200, snapshot, etag)
                assert int(headers["content-length"]) == len(snapshot)
                assert _get(port, "/state", If_None_Match=etag)[0] == 304
                if previous[0] != snapshot:
                    assert _get(port, "/state", If_None_Match=previous[1])[0] == 200
                status, headers, body = _get(port, "/state", Accept_Encoding="gzip")
                assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == snapshot
                assert _get(port, "/state", Accept_Encoding="gzip", If_None_Match=headers["etag"])[0] == 304
                assert _get(port, "/orders.csv")[2] == documents["orders.csv"].data()
            previous = (snapshot, etag)
        assert daemon.feed.cursor == history - 1 + cycles and len(set(published)) == cycles
        assert len(daemon.loop.state.portfolio.closed_positions) > closed_before  # positions closed on the way
        daemon.commands.stop("test")
        daemon.loop.run_pending()  # the stop publishes and writes the files to disk
        found = {name: daemon.runstate.public.get(name) for name in names}
        last = {name: document for name, document in found.items() if document is not None}
        assert len(last) == len(names), found
        for name, document in last.items():
            assert (files.public / name).read_bytes() == document.data(), name
    finally:
        server.stop()
        daemon.close()
    # As a kill -9 between two writes leaves them: public/ older than the ledger (here: older still, cut short).
    files.state_snapshot.write_bytes(files.state_snapshot.read_bytes()[:1000])
    files.orders_csv.write_bytes(files.orders_csv.read_bytes()[:-7])
    # The closed history was kept in spill files; one of them damaged (a byte changed) is rebuilt from the ledger.
    spilled = {path.name: path.stat().st_size for path in files.spill.iterdir()}
    assert all(spilled[SPILL_FILES[name]] > 0 for name in ("closed", "positions", "orders", "gzip")), spilled
    damaged = bytearray((files.spill / SPILL_FILES["orders"]).read_bytes())
    damaged[len(damaged) // 2] ^= 0x04
    (files.spill / SPILL_FILES["orders"]).write_bytes(bytes(damaged))
    again, _ = replay_daemon(STRATEGY, state_dir, data, FakeClock(datetime(2024, 1, 2, tzinfo=UTC)))
    try:
        again.loop.begin()
        for name in ("state.json", "state.json.gz", "positions.json", "orders.csv"):
            restarted, before = again.runstate.public.get(name), last[name]
            assert restarted is not None
            assert (restarted.etag, restarted.data()) == (before.etag, before.data()), name
        again.publisher.wait_written()  # the start-up publication rewrites public/ from the ledger
        committed = again.loop.state
        assert files.state_snapshot.read_bytes() == dumps_state(committed) == last["state.json"].data()
        assert files.orders_csv.read_bytes() == pandas_csv(committed)
        assert {path.name: path.stat().st_size for path in files.spill.iterdir()}.items() >= {
            name: spilled[name] for name in (SPILL_FILES["closed"], SPILL_FILES["positions"], SPILL_FILES["orders"])
        }.items()  # reused (or rebuilt in place), not grown
    finally:
        again.close()


def test_a_publication_formats_only_open_and_newly_finished_positions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Work counted, not timed: orders.csv lines and positions.json entries made per write."""
    formatted: list[int] = []
    encoded: list[int] = []
    real_record, real_entry = trades_csv.trade_record, store_publish._entry  # noqa: SLF001

    def counted_record(order: Order, symbols: dict[int, tuple[str, str]]) -> dict[str, Any]:
        formatted.append(order.id)
        return real_record(order, symbols)

    def counted_entry(position: Position, status: str, symbols: dict[int, str]) -> bytes:
        encoded.append(position.id)
        return real_entry(position, status, symbols)

    monkeypatch.setattr(trades_csv, "trade_record", counted_record)
    monkeypatch.setattr(store_publish, "_entry", counted_entry)
    rng = random.Random(4)
    state = State(name="counted")
    state.add_instrument("SYN", "crypto", 0.001)
    writer, listing = TradesCsv(), PositionListing()
    for cycle in range(300):
        portfolio = state.portfolio
        closed_before, failed_before = len(portfolio.closed_positions), len(portfolio.failed_positions)
        grow(state, rng, cycle)
        newly = [*portfolio.closed_positions[closed_before:], *portfolio.failed_positions[failed_before:]]
        formatted.clear()
        encoded.clear()
        data, (document, _) = writer.data(state), listing.data(state)
        if cycle % 50 == 0:  # the references below format through functions not counted
            assert data == pandas_csv(state) and document == dumps_json(positions_document(state))
        if cycle:
            open_orders = sum(len(p.orders) for p in portfolio.open_positions)
            assert len(formatted) == open_orders + sum(len(p.orders) for p in newly), cycle
            assert len(encoded) == len(portfolio.open_positions) + len(newly), cycle
    assert len(state.portfolio.closed_positions) > 100


def test_the_etag_digests_each_run_of_kept_blocks_once_and_equals_a_fresh_digest() -> None:
    """A run of the history's blocks (the same objects) costs one lookup: the tag equals a fresh digest's at every
    step, also after blocks merged or the state was replaced, while the blocks hashed and the runs digested per
    call stay bounded as the document grows to many blocks; equal bytes cut alike give equal tags."""
    rng = random.Random(13)
    state = State(name="runs")
    state.add_instrument("SYN", "crypto", 0.001)
    fragments, digest = PositionFragments(), PartsDigest()
    previous = ("", b"")
    previous_ids: set[int] = set()
    for cycle in range(700):
        grow(state, rng, cycle)
        for _ in range(rng.choice([1, 30, 300])):
            state.valuations.append(len(state.valuations) * 60_000 + 1, 1000.0 + rng.random(), 5.0, rng.random())
        if cycle == 350:
            state = copy.deepcopy(state)
            fragments = PositionFragments()  # every piece a new object: every run digested afresh
        parts = dumps_state_parts(state, fragments)
        tag = digest.etag(parts)
        large = [part for part in parts if len(part) >= KEPT_PIECE_BYTES]
        # Exactly the blocks new since the last call are hashed; a run is digested again only when it changed.
        assert digest.hashed == len({id(part) for part in large} - previous_ids), cycle
        runs = sum(1 for i, part in enumerate(parts) if len(part) >= KEPT_PIECE_BYTES
                   and (i == 0 or len(parts[i - 1]) < KEPT_PIECE_BYTES))
        assert digest.new_runs <= runs <= 8, cycle
        previous_ids = {id(part) for part in large}
        if cycle % 25 == 0 or cycle in (350, 351):
            copies = [bytes(bytearray(joined([part]))) for part in parts]  # equal bytes, other objects
            assert tag == PartsDigest().etag(parts) == PartsDigest().etag(copies), cycle
            assert digest.etag(parts) == tag and digest.new_runs == digest.hashed == 0, cycle  # nothing new
        data = joined(parts)
        assert (tag == previous[0]) == (data == previous[1]), cycle
        previous = (tag, data)
    assert len(large) > 60  # many kept blocks in the document at the end, hashed once each


def test_the_kept_gzip_has_gzip_compress_header_and_decompresses_in_a_stream() -> None:
    """Readers that stream (an HTTP client's decoder) get the same bytes as gzip.decompress."""
    pieces = [b"{", b"x" * (KEPT_PIECE_BYTES + 1), b",", bytes(range(256)) * 40, b"}\n"]
    data = b"".join(pieces)
    gz = KeptGzip().compress(pieces)
    assert gz[:10] == gzip.compress(data, GZIP_LEVEL, mtime=0)[:10]
    decoder = zlib.decompressobj(wbits=31)
    streamed = b"".join(decoder.decompress(gz[i:i + 7]) for i in range(0, len(gz), 7)) + decoder.flush()
    assert streamed == data == gzip.decompress(gz) and decoder.eof and not decoder.unused_data
    assert gzip.decompress(KeptGzip().compress([])) == b""

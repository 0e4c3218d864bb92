"""A running executor's valuation rows as a tail in memory: the column's behaviour, the ledger, the daemon's outputs."""

from __future__ import annotations

import sqlite3
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from replay_daemon import replay_daemon
from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.cast.feed import ChartFeed
from tradeexecutor.config import EngineConfig
from tradeexecutor.daemon import FakeClock
from tradeexecutor.daemon import runner as runner_module
from tradeexecutor.data import generate_candles
from tradeexecutor.data.source import load_market
from tradeexecutor.errors import StateCorruptError, TemporaryError
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger
from tradeexecutor.ledger import read as read_module
from tradeexecutor.spill import SpillDamagedError
from tradeexecutor.state import State, ValuationSeries
from tradeexecutor.state import valuation as valuation_module
from tradeexecutor.state.valuation import TailColumn
from tradeexecutor.stats.trades_csv import TradesCsv
from tradeexecutor.store import codec as codec_module
from tradeexecutor.store.codec import dumps_state
from tradeexecutor.store.publish import SPILL_FILES, PublishCache, public_files, write_public_files
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.visual.series import ChartSeries, DeltaFeed

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "bench" / "strategies" / "flip_1m.py"  # a closed position every ten 1-minute bars
NAMES = ("state.json", "state.json.gz", "positions.json", "orders.csv")
#: A small block, so that a hundred cycles cross several (the rule is the same at 1,024).
BLOCK = 16


def _small_blocks(monkeypatch: pytest.MonkeyPatch, block: int = BLOCK) -> None:
    """Blocks of ``block`` rows for the tail (state/valuation.py), the ledger's read and state.json's column cache."""
    monkeypatch.setattr(valuation_module, "ROWS_BLOCK", block)
    monkeypatch.setattr(read_module, "ROWS_BLOCK", block)
    monkeypatch.setattr(codec_module, "COLUMN_BLOCK", block)


class _FullLedger(Ledger):
    """The ledger as a running executor opened it before tails: every valuation row in memory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "tail_valuations": False})


def _backtest(folder: Path, bars: int, extra: int) -> tuple[State, Path]:
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


def _ledgers(tmp_path: Path, names: tuple[str, ...], bars: int, extra: int) -> tuple[State, Path, dict[str, Path]]:
    state, data = _backtest(tmp_path, bars, extra)
    folders = {name: tmp_path / name for name in names}
    for folder in folders.values():
        folder.mkdir()
        ledger = Ledger(RunFiles(folder).ledger)
        ledger.save(state)
        ledger.close()
    return state, data, folders


def _run(state_dir: Path, data: Path, cycles: int, held: list[int] | None = None
         ) -> tuple[list[dict[str, bytes]], list[Any], State]:
    """``cycles`` cycle jobs of a replay executor: the public files and the summary after each, and the state.

    ``held`` gets the valuation rows the state holds in memory after each job."""
    daemon, tickers = replay_daemon(STRATEGY, state_dir, data, FakeClock(datetime(2024, 1, 1, tzinfo=UTC)))
    files: list[dict[str, bytes]] = []
    summaries: list[Any] = []
    try:
        if held is not None:
            held.append(daemon.loop.state.valuations.in_memory)  # as loaded, before any job
        daemon.start_jobs()
        for _ in range(cycles):
            tickers[0].advance(120.0)
            daemon.loop.run_pending()
            documents = {name: daemon.runstate.public.get(name) for name in NAMES}
            files.append({name: document.data() for name, document in documents.items() if document is not None})
            summaries.append(daemon.runstate.snapshot().summary_statistics)
            if held is not None:
                held.append(daemon.loop.state.valuations.in_memory)
        state = daemon.loop.state
        daemon.commands.stop("test")
        daemon.loop.run_pending()
    finally:
        daemon.close()
    return files, summaries, state


def _charts(state: State) -> tuple[Any, ...]:
    """What the chart readers take from a state: the whole series, a first delta, the wallboard's data."""
    series = ChartSeries.from_state(state, {})
    delta = DeltaFeed({}).delta(state, {})
    feed = ChartFeed({})
    feed.update(state, {})
    return (series.stamps.tolist(), series.equity.tolist(), delta.rows_from, delta.stamps.tolist(),
            delta.equity.tolist(), feed.data("t", {}))


def test_a_tail_column_answers_what_the_array_answers_by_absolute_row(tmp_path: Path) -> None:
    """Index, negative index, every slice, iteration, tolist, numpy, equality and the newest row's replacement
    give what the plain array gives, with 1,000 of 1,300 rows only in the ledger; only the ledger's rows are read
    back, a block at a time when iterated."""
    rows = 1300
    stamps = [1_700_000_000_000 + 60_000 * i for i in range(rows)]
    plain = ValuationSeries()
    plain.extend(stamps, [1000.0 + i / 7 for i in range(rows)], [900.0 - i / 3 for i in range(rows)],
                 [(i % 4) / 4 for i in range(rows)])
    reads: list[tuple[str, int, int]] = []

    def older(name: str, start: int, stop: int) -> array[Any]:
        reads.append((name, start, stop))
        assert 0 <= start < stop <= 1000
        column = getattr(plain, name)
        return array(column.typecode, column[start:stop])

    tail = ValuationSeries.tail(older, 1000, ValuationSeries(*(getattr(plain, name)[1000:] for name in (
        "timestamp", "equity", "cash", "exposure"))))
    assert tail.in_memory == 300 and len(tail) == rows
    for name in ("timestamp", "equity", "cash", "exposure"):
        column, whole = getattr(tail, name), getattr(plain, name)
        assert isinstance(column, TailColumn) and len(column) == rows
        for index in (0, 1, 999, 1000, 1001, rows - 1, -1, -300, -301, -rows):
            assert column[index] == whole[index], index
            assert column[np.int64(index)] == whole[index], index  # a numpy integer key, as an array takes it
        for key in (slice(None), slice(0, 5), slice(995, 1005), slice(1000, None), slice(-5, None), slice(10, 3),
                    slice(None, None, 7), slice(1200, 900, -3), slice(-2000, 2000)):
            assert column[key] == whole[key], key
        assert list(column) == list(whole) and column.tolist() == whole.tolist()
        assert column == whole and column == whole.tolist() and whole == column
        assert np.array_equal(np.asarray(column), np.asarray(whole))
        assert np.asarray(column, dtype=np.float64).dtype == np.float64
        with pytest.raises(IndexError):
            column[rows]
        with pytest.raises(IndexError):
            column[-rows - 1]
    reads.clear()
    list(tail.equity)
    assert reads == [("equity", 0, 1000)]  # ROWS_BLOCK is 1,024: the 1,000 older rows in one read
    tail.append(stamps[-1], 1.0, 2.0, 0.5)  # the newest row replaced in place, as in a plain series
    plain.append(stamps[-1], 1.0, 2.0, 0.5)
    assert tail.equity == plain.equity and len(tail) == rows
    with pytest.raises(IndexError, match="only in the ledger"):
        tail.equity[5] = 0.0
    reads.clear()
    tail.append(stamps[-1] + 60_000, 3.0, 4.0, 0.0)
    assert reads == [] and tail.in_memory == 301


def test_release_keeps_the_open_block_one_block_more_and_whatever_is_not_committed(tmp_path: Path) -> None:
    """A tail forgets whole blocks the ledger holds: after ``release(committed)`` it holds the rows from one block
    before the block the newest committed row is in; a plain series keeps everything."""
    def older(name: str, start: int, stop: int) -> array[Any]:
        raise AssertionError("not read")

    block = valuation_module.ROWS_BLOCK
    tail, plain = ValuationSeries.tail(older), ValuationSeries()
    for i in range(5 * block + 10):
        for series in (tail, plain):
            series.append(i, float(i), 0.0, 0.0)
            series.release(len(series))
        rows = i + 1
        keep_from = max(0, ((rows - 1) // block - 1) * block)
        assert tail.in_memory == rows - keep_from <= 2 * block and plain.in_memory == rows
    behind = ValuationSeries.tail(older)
    for i in range(5 * block + 10):
        behind.append(i, float(i), 0.0, 0.0)
    behind.release(3 * block)  # the ledger holds fewer rows (commits not done yet): every row after them stays
    assert behind.in_memory == 4 * block + 10 and behind.timestamp.start == block  # type: ignore[union-attr]
    behind.release(10 * block)  # never more than the series holds
    assert behind.in_memory == block + 10


def test_a_tail_takes_its_columns_memory_at_start_and_never_moves_it(tmp_path: Path) -> None:
    """Counted: a tail's four columns get their room (TAIL_ROWS rows) when the tail is made; 6,000 rows appended
    a row a cycle with a release after each, then a job of 200 rows not committed, then released: every column
    keeps the buffer it was made with (its address and capacity unchanged) and the rows a plain series has. More
    rows than the room double it once; it never shrinks."""
    def older(name: str, start: int, stop: int) -> array[Any]:
        column = getattr(plain, name)
        return array(column.typecode, column[start:stop])

    tail, plain = ValuationSeries.tail(older), ValuationSeries()
    names = ("timestamp", "equity", "cash", "exposure")
    columns = [getattr(tail, name) for name in names]
    made = [(column.rows.address(), column.rows.capacity) for column in columns]
    assert all(capacity == valuation_module.TAIL_ROWS for _, capacity in made)

    def row(i: int) -> tuple[int, float, float, float]:
        return 1_700_000_000_000 + 1000 * i, 1000.0 + i / 7, 900.0 - i / 3, (i % 4) / 4

    for i in range(6000):
        for series in (tail, plain):
            series.append(*row(i))
        tail.release(len(tail))
        if i % 997 == 0 or i == 5999:
            assert [(column.rows.address(), column.rows.capacity) for column in columns] == made, i
            assert all(column[-1] == whole[-1] and column[tail.timestamp.start:] == whole[tail.timestamp.start:]  # type: ignore[union-attr]
                       for column, whole in zip(columns, (getattr(plain, name) for name in names), strict=True))
    for i in range(6000, 6200):  # a job's rows, committed only at its end
        for series in (tail, plain):
            series.append(*row(i))
    assert tail.in_memory <= valuation_module.TAIL_ROWS
    tail.release(len(tail))
    assert [(column.rows.address(), column.rows.capacity) for column in columns] == made
    for name in names:
        assert getattr(tail, name) == getattr(plain, name)
    tail.equity.extend([1.0] * valuation_module.TAIL_ROWS)  # beyond the room: doubled, once
    plain.equity.extend([1.0] * valuation_module.TAIL_ROWS)
    assert tail.equity.rows.capacity == 2 * valuation_module.TAIL_ROWS and tail.equity == plain.equity  # type: ignore[union-attr]


def test_a_ledger_reads_a_tail_checks_every_row_and_refuses_a_damaged_one_by_name(tmp_path: Path) -> None:
    """Ledger(tail_valuations=True) loads the rows a plain load gives, holding at most two blocks of them; every row's
    CRC is still checked at load, and an older row read back later that was damaged is refused naming the file."""
    state, _data, folders = _ledgers(tmp_path, ("ledger",), 3000, 0)
    path = RunFiles(folders["ledger"]).ledger
    plain = Ledger(path).load()
    tail_ledger = Ledger(path, tail_valuations=True)
    tail = tail_ledger.load()
    assert plain is not None and tail is not None
    rows = len(state.valuations)
    assert rows == 3000 and len(tail.valuations) == rows and tail.valuations.in_memory <= 2 * 1024
    assert tail.valuations.in_memory == rows - (rows - 1) // 1024 * 1024 + 1024  # the open block and one more
    assert dumps_state(tail) == dumps_state(plain) == dumps_state(state)
    older = tail_ledger.older_valuations
    queries = older.queries
    assert tail.valuations.timestamp[:100] == plain.valuations.timestamp[:100]  # one query for the four columns
    assert tail.valuations.cash[:100] == plain.valuations.cash[:100] and older.queries == queries + 1
    older.forget()  # as a commit does
    assert tail.valuations.equity[:100] == plain.valuations.equity[:100] and older.queries == queries + 2
    older.forget()
    tail_ledger.close()
    with sqlite3.connect(path) as conn:  # a row only in the ledger, damaged under the executor
        conn.execute("UPDATE valuations SET equity = equity + 1 WHERE idx = 17")
    conn.close()
    with pytest.raises(StateCorruptError, match=f"{path.name}.*valuation row 17"):
        tail.valuations.equity[17]
    with pytest.raises(StateCorruptError, match=path.name):
        Ledger(path, tail_valuations=True).load()


@pytest.mark.timeout(300)
def test_a_replay_executor_with_a_tail_publishes_what_it_did_with_every_row_in_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same ledger (2,000 valuation rows) run 120 cycles twice, with every row in memory (as before) and with a
    tail, blocks of 16 rows: the tail holds at most two blocks after every job, from the load on, while the public
    files (state.json and its gzip, which /state serves; positions.json; orders.csv) and /summary's figures are byte
    for byte and value for value the same after every job; the chart readers and the ledgers end the same. A restart
    of the tail run loads a bounded tail and publishes the same files."""
    cycles = 120
    _small_blocks(monkeypatch)
    _state, data, folders = _ledgers(tmp_path, ("full", "tail"), 2000, cycles + 5)
    with monkeypatch.context() as full:
        full.setattr(runner_module, "Ledger", _FullLedger)
        before_files, before_summaries, every_row = _run(folders["full"], data, cycles)
    assert not isinstance(every_row.valuations.timestamp, TailColumn)
    held: list[int] = []
    after_files, after_summaries, tail = _run(folders["tail"], data, cycles, held)
    assert isinstance(tail.valuations.timestamp, TailColumn) and len(tail.valuations) == len(every_row.valuations)
    assert len(tail.valuations) >= 2000 + cycles - 1
    assert len(held) == cycles + 1 and all(BLOCK < rows <= 2 * BLOCK for rows in held), held
    assert after_summaries == before_summaries and after_summaries[-1]["trade_count"] > 0
    for cycle, (before, after) in enumerate(zip(before_files, after_files, strict=True)):
        assert before == after and set(after) == set(NAMES), cycle
    assert after_files[-1]["state.json"] == dumps_state(tail) == dumps_state(every_row)
    assert _charts(tail) == _charts(every_row)
    ledgers = [Ledger(RunFiles(folders[name]).ledger).load() for name in ("full", "tail")]
    assert ledgers[0] is not None and ledgers[1] is not None
    assert dumps_state(ledgers[0]) == dumps_state(ledgers[1]) == dumps_state(every_row)
    summaries = {}
    for name in ("full", "tail"):  # a restart folds the history at once: compare it with a restart of the other
        with monkeypatch.context() as patched:
            if name == "full":
                patched.setattr(runner_module, "Ledger", _FullLedger)
            restarted, _ = replay_daemon(STRATEGY, folders[name], data, FakeClock(datetime(2024, 1, 2, tzinfo=UTC)))
        try:
            loaded = restarted.loop.state.valuations
            assert isinstance(loaded.timestamp, TailColumn) == (name == "tail")
            if name == "tail":
                assert BLOCK < loaded.in_memory <= 2 * BLOCK
            restarted.loop.begin()
            assert loaded.in_memory <= 2 * BLOCK or name == "full"
            for document_name in NAMES:
                document = restarted.runstate.public.get(document_name)
                assert document is not None and document.data() == after_files[-1][document_name], document_name
            summaries[name] = restarted.runstate.snapshot().summary_statistics
        finally:
            restarted.close()
    assert summaries["tail"] == summaries["full"]


def test_a_new_state_of_a_running_executor_starts_as_a_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state directory without a ledger: the executor's new state keeps a tail from its first row on, and its files
    equal those of every row in memory."""
    _small_blocks(monkeypatch)
    data = tmp_path / "candles.csv"
    generate_candles(200, frequency="1m", seed=5, symbol="SYN").to_csv(data, index_label="timestamp")
    with monkeypatch.context() as full:
        full.setattr(runner_module, "Ledger", _FullLedger)
        before_files, before_summaries, _ = _run(tmp_path / "full", data, 80)
    held: list[int] = []
    after_files, after_summaries, tail = _run(tmp_path / "tail", data, 80, held)
    assert isinstance(tail.valuations.timestamp, TailColumn) and len(tail.valuations) >= 70
    assert max(held) <= 2 * BLOCK and tail.valuations.timestamp.start > 0
    assert after_files == before_files and after_summaries == before_summaries


def test_a_damaged_column_spill_of_a_tail_is_refused_by_name_and_healed_from_the_ledger(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """state.json of a tail whose older rows are only in the ledger: its column blocks go to the spill files; a
    damaged one is refused naming it and nothing is half-written (``spill.unless_damaged``); the next publication
    gives it up and encodes the column afresh, reading the older rows back from the ledger, and is right."""
    _small_blocks(monkeypatch)
    state, _data, folders = _ledgers(tmp_path, ("live",), 600, 0)
    files = RunFiles(folders["live"])
    ledger = Ledger(files.ledger, tail_valuations=True)
    tail = ledger.load()
    assert tail is not None and tail.valuations.in_memory <= 2 * BLOCK and len(tail.valuations) == 600
    cache, orders = PublishCache.spilled(files.spill), TradesCsv()

    def publish() -> dict[str, Any]:
        return public_files(tail, files, metadata={"name": "tail"}, orders_csv=orders.parts, cache=cache,
                            now=datetime(2024, 2, 1, tzinfo=UTC))

    write_public_files(files, publish())
    good = files.state_snapshot.read_bytes()
    assert good == dumps_state(state)
    name = SPILL_FILES["equity"]
    spill = files.spill / name
    damaged = bytearray(spill.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    spill.write_bytes(bytes(damaged))
    tail.valuations.append(tail.valuations.timestamp[-1] + 60_000, 1.5, 2.5, 0.0)
    ledger.save(tail)  # committed: the tail may forget more
    with pytest.raises(SpillDamagedError, match=name):
        write_public_files(files, publish())
    assert files.state_snapshot.read_bytes() == good  # nothing half-written
    healed = publish()
    write_public_files(files, healed)
    durable = Ledger(files.ledger).load()
    assert durable is not None and files.state_snapshot.read_bytes() == dumps_state(tail) == dumps_state(durable)
    assert tail.valuations.in_memory <= 2 * BLOCK
    ledger.close()


@pytest.mark.timeout(300)
def test_steady_state_reads_no_older_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/benchmarks.md's claim: every read-back of older rows happens at start-up. Once the first jobs ran (the
    summary's, the charts' and state.json's first pass), 116 more cycles crossing seven blocks read nothing back."""
    _small_blocks(monkeypatch)
    _state, data, folders = _ledgers(tmp_path, ("tail",), 2000, 130)
    daemon, tickers = replay_daemon(STRATEGY, folders["tail"], data, FakeClock(datetime(2024, 1, 1, tzinfo=UTC)))
    try:
        daemon.start_jobs()
        older = daemon.loop.store.older_valuations
        counts = []
        for _ in range(120):
            tickers[0].advance(120.0)
            daemon.loop.run_pending()
            counts.append(older.queries)
        assert counts[0] > 0 and len(daemon.loop.state.valuations) > 2000 + 7 * BLOCK  # start-up did read back
        assert counts[-1] == counts[3], counts
    finally:
        daemon.close()


def _committed_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Ledger, State]:
    """A ledger of 300 valuation rows, opened as a running executor opens it: most rows only in the ledger."""
    _small_blocks(monkeypatch)
    _state, _data, folders = _ledgers(tmp_path, ("ledger",), 300, 0)
    ledger = Ledger(RunFiles(folders["ledger"]).ledger, tail_valuations=True)
    tail = ledger.load()
    assert tail is not None and tail.valuations.timestamp.start > 0  # type: ignore[union-attr]
    return ledger, tail


def test_a_read_back_that_fails_for_want_of_a_file_descriptor_is_not_reported_as_damage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Too many open files (EMFILE) makes SQLite answer "unable to open database file": an operational error that
    passes as it is, not a StateCorruptError telling the operator to recover a ledger that is fine."""
    import os
    import resource

    ledger, tail = _committed_tail(tmp_path, monkeypatch)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")), hard))  # no descriptor left
        with pytest.raises(sqlite3.OperationalError, match="unable to open") as raised:
            tail.valuations.equity[3]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert not isinstance(raised.value, StateCorruptError)
    assert tail.valuations.equity[3] == _FullLedger(ledger.path).load().valuations.equity[3]  # type: ignore[union-attr]
    ledger.close()


def test_a_read_back_of_a_locked_ledger_is_temporary_not_damage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another connection holding the ledger exclusively makes SQLite answer "database is locked" (after its
    5 s busy wait): a TemporaryError the loop tries again, not damage; once the lock is gone the rows read back."""
    ledger, tail = _committed_tail(tmp_path, monkeypatch)
    holder = sqlite3.connect(ledger.path, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(TemporaryError, match=f"{ledger.path.name}.*locked"):
            tail.valuations.cash[5]
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    assert tail.valuations.cash[5] == _FullLedger(ledger.path).load().valuations.cash[5]  # type: ignore[union-attr]
    ledger.close()


def test_negative_zero_in_valuation_rows_reads_back_undamaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite stores -0.0 as 0.0: a row written with -0.0 (exposure of nothing open over negative equity) must not fail
    its CRC when read back, whole at start-up (plain and tail), by a tail's read-back, or after an incremental commit.
    Positions, orders and fills are CRC'd over their JSON blob (kept byte for byte), so only valuation rows had it."""
    _small_blocks(monkeypatch)
    state, _data, folders = _ledgers(tmp_path, ("ledger",), 300, 0)
    for name in ("equity", "cash", "exposure"):
        for index in (2, 150, 299):
            getattr(state.valuations, name)[index] = -0.0
    path = RunFiles(folders["ledger"]).ledger
    writer = Ledger(path)
    writer.save(state)  # rewrites every row
    writer.close()
    plain = Ledger(path).load()
    ledger = Ledger(path, tail_valuations=True)
    tail = ledger.load()
    assert plain is not None and tail is not None and tail.valuations.timestamp.start > 2  # type: ignore[union-attr]
    for name in ("equity", "cash", "exposure"):
        assert getattr(plain.valuations, name)[2] == getattr(tail.valuations, name)[2] == 0.0  # read back
        assert str(getattr(tail.valuations, name)[150]) == "0.0"
    tail.valuations.append(tail.valuations.timestamp[-1] + 60_000, -0.0, -0.0, -0.0)
    ledger.save(tail)  # the incremental commit's rows
    ledger.close()
    again = Ledger(path, tail_valuations=True).load()
    assert again is not None and again.valuations.exposure[-1] == 0.0 and len(again.valuations) == 301
    assert again.valuations.equity[:] == Ledger(path).load().valuations.equity[:]  # type: ignore[union-attr]

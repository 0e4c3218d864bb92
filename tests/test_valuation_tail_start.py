"""A restart of a running executor reads its valuation history back from the ledger once, a block at a time.

Counted, never timed: the rows read back (``OlderRows.rows``, ``queries``), the most read at once
(``largest``) and kept at once (``most_kept``), the blocks the readers take (``ValuationSeries.blocks``);
and the outputs (public files, summary, the first chart delta) against a restart with every row in
memory and against main's whole-history readers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from test_valuation_tail import BLOCK, NAMES, STRATEGY, _FullLedger, _ledgers, _small_blocks
from tradeexecutor.daemon import CommandQueue, Daemon, FakeClock, InMemoryTicker, build_daemon
from tradeexecutor.daemon import runner as runner_module
from tradeexecutor.errors import StateError
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger
from tradeexecutor.ledger import read as read_module
from tradeexecutor.settings import DaemonConfig, FeedConfig
from tradeexecutor.state import State, ValuationSeries
from tradeexecutor.state import valuation as valuation_module
from tradeexecutor.state.valuation import TailColumn
from tradeexecutor.store.codec import dumps_state
from tradeexecutor.visual.series import ChartDelta, DeltaFeed

#: The summary's figures that come from the returns' running moments: merged a block at a time, they can
#: differ from main's single fold over the whole history in the last bits (the sums are added in another order).
RETURN_MOMENTS = ("annualised_volatility", "sharpe", "sortino")


def _daemon(state_dir: Path, data: Path, clock: FakeClock) -> tuple[Daemon, list[InMemoryTicker]]:
    """A replay executor as tests/replay_daemon.py builds it, with the chart renderer (its own process)."""
    tickers: list[InMemoryTicker] = []

    def factory(commands: CommandQueue) -> InMemoryTicker:
        tickers.append(InMemoryTicker(commands, clock))
        return tickers[-1]

    config = DaemonConfig(strategy_file=STRATEGY, state_dir=state_dir, watchdog_seconds=0, chart_seconds=1.0,
                          publish_seconds=0.5, trigger_seconds=0, revaluation_seconds=0,
                          feed=FeedConfig(data=(str(data),), replay_seconds=120.0, replay_start="first"))
    return build_daemon(config, clock=clock, ticker_factory=factory, environ={}), tickers


def _restart(state_dir: Path, data: Path, counts: dict[str, Any] | None = None
             ) -> tuple[dict[str, bytes], dict[str, Any], ChartDelta, ValuationSeries]:
    """Start an executor on ``state_dir``, run its first cycle: its public files, summary and first chart delta.

    ``counts`` gets the tail's read-backs before the first job and after it (``OlderRows``' counts)."""
    daemon, tickers = _daemon(state_dir, data, FakeClock(datetime(2024, 1, 2, tzinfo=UTC)))
    deltas: list[ChartDelta] = []
    try:
        older = daemon.loop.store.older_valuations
        if counts is not None:
            counts["loaded"] = (older.queries, older.rows)
            counts["start"] = getattr(daemon.loop.state.valuations.timestamp, "start", 0)
        renderer = daemon.publisher.renderer
        assert renderer is not None
        submit = renderer.submit

        def recorded(delta: ChartDelta) -> bool:
            deltas.append(delta)
            return submit(delta)

        renderer.submit = recorded  # type: ignore[method-assign]
        daemon.publisher.start()
        assert renderer.wait_idle(renderer.start_timeout), "the chart renderer did not start"
        daemon.start_jobs()
        tickers[0].advance(120.0)
        daemon.loop.run_pending()
        assert deltas, "no chart delta was cut"
        if counts is not None:
            counts.update(queries=older.queries, rows=older.rows, largest=older.largest, most_kept=older.most_kept,
                          in_memory=daemon.loop.state.valuations.in_memory)
        documents = {name: daemon.runstate.public.get(name) for name in NAMES}
        files = {name: document.data() for name, document in documents.items() if document is not None}
        summary = daemon.runstate.snapshot().summary_statistics
        assert summary is not None and set(files) == set(NAMES)
        return files, summary, deltas[0], daemon.loop.state.valuations
    finally:
        daemon.close()


@pytest.mark.timeout(300)
def test_a_restart_reads_its_valuation_history_once_a_block_at_a_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running executor restarted on 2,000 valuation rows (16-row blocks): the start-up check reads nothing back
    (the load checked the times as it read them); the first job's readers (the summary, state.json's columns, the
    first chart delta) read every older row back exactly once, a block a query, never more than a block at once,
    at most ``KEPT_RANGES`` blocks kept; no reader takes more than a block. Its public files, summary and first
    delta are those of the same restart with every row in memory, and its files and delta are main's."""
    _small_blocks(monkeypatch)
    taken: list[int] = []  # the rows of each block a reader took (ValuationSeries.blocks)
    blocks = ValuationSeries.blocks

    def counted(self: ValuationSeries, start: int, stop: int, names: tuple[str, ...]) -> Any:
        for first, columns in blocks(self, start, stop, names):
            taken.append(max((len(column) for column in columns), default=0))
            yield first, columns

    monkeypatch.setattr(ValuationSeries, "blocks", counted)
    state, data, folders = _ledgers(tmp_path, ("full", "tail"), 2000, 10)
    counts: dict[str, Any] = {}
    files, summary, delta, tail = _restart(folders["tail"], data, counts)
    assert isinstance(tail.timestamp, TailColumn)
    start = counts["start"]
    assert start == (2000 - 1) // BLOCK * BLOCK - BLOCK  # the open block and one more in memory
    assert counts["loaded"] == (0, 0)  # the start-up check read nothing back
    assert counts["rows"] == start and counts["queries"] == start // BLOCK  # each older row once, a block a query
    assert counts["largest"] == BLOCK and counts["most_kept"] <= read_module.KEPT_RANGES * BLOCK
    assert counts["in_memory"] <= 2 * BLOCK
    assert taken and max(taken) <= BLOCK
    with monkeypatch.context() as full:
        full.setattr(runner_module, "Ledger", _FullLedger)
        full_files, full_summary, full_delta, every_row = _restart(folders["full"], data)
    assert not isinstance(every_row.timestamp, TailColumn)
    assert files == full_files and summary == full_summary
    assert delta.rows_from == full_delta.rows_from == 0
    assert np.array_equal(delta.stamps, full_delta.stamps) and np.array_equal(delta.equity, full_delta.equity)
    # main's readers: state.json encoded whole, the delta's columns whole
    assert files["state.json"] == dumps_state(Ledger(RunFiles(folders["full"]).ledger).load())  # type: ignore[arg-type]
    assert np.array_equal(delta.stamps, np.asarray(every_row.timestamp, dtype=np.int64))
    assert np.array_equal(delta.equity, np.asarray(every_row.equity, dtype=np.float64))
    assert len(delta.stamps) == len(state.valuations) + 1  # the history and the first cycle's row


@pytest.mark.timeout(300)
def test_a_restarts_summary_is_mains_but_the_last_bits_of_the_return_moments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary of a restart that folds the history a block at a time against main's, which folded it in one:
    (a block larger than the history makes this code fold it as main did) every figure equal, the three from the
    returns' mean and squares (volatility, Sharpe, Sortino) equal but for float rounding of sums added in another
    order."""
    _small_blocks(monkeypatch)
    _state, data, folders = _ledgers(tmp_path, ("blocks", "whole"), 2000, 10)
    with monkeypatch.context() as full:
        full.setattr(runner_module, "Ledger", _FullLedger)
        _files, by_blocks, _delta, _series = _restart(folders["blocks"], data)
        full.setattr(valuation_module, "ROWS_BLOCK", 10**9)  # one block: main's fold
        _files, whole, _delta, _series = _restart(folders["whole"], data)
    assert by_blocks.keys() == whole.keys()
    for key, value in whole.items():
        if key in RETURN_MOMENTS and value is not None:
            assert by_blocks[key] == pytest.approx(value, rel=1e-12, abs=0.0), key
        else:
            assert by_blocks[key] == value, key


@pytest.mark.parametrize("where", ["older", "recent"])
def test_valuation_times_that_do_not_increase_are_refused_at_start_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """A ledger whose valuation times go back once (a row only in the ledger, or one the tail keeps in memory):
    the start-up check refuses it, whether the load saw it (older rows) or the check reads it (recent ones)."""
    _small_blocks(monkeypatch)
    state, data = _ledgers(tmp_path, (), 600, 10)[:2]
    stamps = state.valuations.timestamp
    row = 100 if where == "older" else len(stamps) - 5
    stamps[row] = stamps[row - 1]
    folder = tmp_path / where
    folder.mkdir()
    ledger = Ledger(RunFiles(folder).ledger)
    ledger.save(state)
    ledger.close()
    loaded = Ledger(RunFiles(folder).ledger, tail_valuations=True)
    tail = loaded.load()
    loaded.close()
    assert tail is not None and isinstance(tail.valuations.timestamp, TailColumn)
    assert tail.valuations.timestamp.increasing_to == 0 and (row < tail.valuations.timestamp.start) == (where == "older")
    with pytest.raises(StateError, match="valuation times do not strictly increase"):
        _daemon(folder, data, FakeClock(datetime(2024, 1, 2, tzinfo=UTC)))


def test_a_first_delta_cut_from_rows_taken_ahead_is_the_delta_cut_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DeltaFeed.take`` (the start-up's pass) then ``delta``: the same first delta as a feed that took nothing,
    with rows appended between (within the room and past it); rows taken ahead that outgrew their room (no delta
    came: a renderer that never starts) are dropped rather than held for good."""
    monkeypatch.setattr(valuation_module, "ROWS_BLOCK", BLOCK)
    rows = 100
    state = State()

    def grown(more: int) -> None:
        for i in range(rows, rows + more):
            state.valuations.append(1_700_000_000_000 + 60_000 * i, 1000.0 - i, 500.0, 0.0)

    for more, ahead in ((0, rows - 1), (BLOCK, rows - 1), (BLOCK + 1, 0)):
        state.valuations = ValuationSeries()
        for i in range(rows):
            state.valuations.append(1_700_000_000_000 + 60_000 * i, 1000.0 + i, 500.0, (i % 3) / 3)
        feed = DeltaFeed({})
        for upto in range(BLOCK, rows + BLOCK, BLOCK):
            feed.take(state, upto)
        assert feed.taken_ahead == rows - 1  # never the newest row: it may still change
        grown(more)
        feed.drop_outgrown(state)
        assert feed.taken_ahead == ahead, more
        delta, whole = feed.delta(state, {}), DeltaFeed({}).delta(state, {})
        assert delta.rows_from == whole.rows_from == 0 and len(delta.stamps) == rows + more
        assert np.array_equal(delta.stamps, whole.stamps) and np.array_equal(delta.equity, whole.equity)
        assert feed.taken_ahead == 0  # used once

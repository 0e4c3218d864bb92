"""The SQLite ledger: what a commit writes, what a load reads back, and that a job is one transaction."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from dataclasses_json import DataClassJsonMixin

from state_builders import make_order
from test_store_state_store import new_state, run_cycle
from tradeexecutor.engine.accounting import apply_fill, recompute_cash
from tradeexecutor.errors import StateCorruptError
from tradeexecutor.ledger import Ledger, read_ledger
from tradeexecutor.ledger.files import LedgerFiles
from tradeexecutor.state import OrderStatus, Position, State
from tradeexecutor.store import dumps_state

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def reloaded(path: Path) -> State:
    """The state a fresh process would load."""
    content = read_ledger(LedgerFiles(path))
    assert content is not None
    return content.state


def test_a_missing_ledger_loads_as_none_and_creates_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    assert ledger.load() is None
    assert list(tmp_path.iterdir()) == []


def test_a_ledger_with_journal_lines_but_no_state_yet_loads_as_none(tmp_path: Path) -> None:
    """A journal-only commit (the executor's ``started`` line) can be the only one before the process
    dies (a full disk): the next start must see no state yet, not a damaged head row."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger.append("started", {"strategy": "s"})
    ledger.flush()
    assert read_ledger(LedgerFiles(path)) is None
    assert Ledger(path).load() is None


def test_each_commit_round_trips_to_the_same_json_as_dataclasses_json(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    state = new_state()
    ledger.save(state)
    for i in range(40):
        run_cycle(state, i)
        ledger.save(state)
        if i % 9 == 0:
            assert dumps_state(reloaded(path)) == dumps_state(state)
    ledger.close()
    again = reloaded(path)
    assert dumps_state(again) == dumps_state(state)
    reference = cast(DataClassJsonMixin, state)  # @dataclass_json adds to_json/from_json at run time
    assert again == cast("type[DataClassJsonMixin]", State).from_json(reference.to_json())  # what dataclasses-json reads
    assert orjson.loads(Ledger(path).export_json(again)) == reference.to_dict(encode_json=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite"]  # close checkpointed the WAL


def test_a_reloaded_ledger_continues_with_changes_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    state = new_state()
    for i in range(30):
        run_cycle(state, i)
        ledger.save(state)
    ledger.close()
    second = Ledger(path)
    loaded = second.load()
    assert loaded is not None
    state = loaded
    for i in range(30, 60):
        run_cycle(state, i)
        second.save(state)
        assert second.last_commit_bytes < 4000  # the change, not the history
    second.close()
    expected = new_state()
    for i in range(60):
        run_cycle(expected, i)
    assert dumps_state(reloaded(path)) == dumps_state(expected)


def test_a_different_state_object_is_written_in_full(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    state = new_state()
    for i in range(20):
        run_cycle(state, i)
    ledger.save(state)
    other = new_state()
    run_cycle(other, 0)
    ledger.save(other)
    assert dumps_state(reloaded(path)) == dumps_state(other)


def test_journal_lines_commit_with_the_job_and_die_with_a_failed_one(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, now=lambda: T0)
    state = new_state()
    with ledger.begin_job("cycle", T0) as job:
        run_cycle(state, 0)
        job.journal("order_filled", "info", {"trade_id": 1, "level": "not the entry's level"})
        job.commit(state)
    with pytest.raises(RuntimeError), ledger.begin_job("cycle", T0) as job:
        run_cycle(state, 1)
        job.journal("order_filled", "info", {"trade_id": 2})
        raise RuntimeError("the job failed before committing")
    with ledger.begin_job("control", T0) as job:
        job.journal("paused", "info", {})  # no state change: committed alone when the job ends
    ledger.close()
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT job, event, level, line FROM journal ORDER BY seq").fetchall()
    assert [(job, event, level) for job, event, level, _ in rows] == [(1, "order_filled", "info"), (2, "paused", "info")]
    assert orjson.loads(rows[0][3])["fields"] == {"trade_id": 1, "level": "not the entry's level"}
    assert conn.execute("SELECT job, cycles_completed FROM head").fetchone() == (2, 1)


def test_a_failed_commit_leaves_the_previous_job_and_the_next_writes_everything(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    state = new_state()
    run_cycle(state, 0)
    ledger.save(state)
    committed = dumps_state(state)
    run_cycle(state, 1)
    # The valuation rows are written last in the transaction; SQLite stores NaN as NULL, which the
    # column's NOT NULL refuses (the typed column itself refuses a non-number before any commit).
    state.valuations.equity[-1] = float("nan")
    with pytest.raises((ValueError, TypeError, sqlite3.IntegrityError)):
        ledger.save(state)
    assert dumps_state(reloaded(path)) == committed
    state.valuations.equity[-1] = 1.0
    ledger.save(state)
    assert dumps_state(reloaded(path)) == dumps_state(state)


def test_the_journal_keeps_only_its_retention(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, journal_keep=50)
    state = new_state()
    for i in range(200):
        ledger.append("revalued", {"i": i}, level="debug")
        run_cycle(state, i)
        ledger.save(state)
    ledger.close()
    events = [orjson.loads(line)["fields"]["i"] for (line,) in
              sqlite3.connect(path).execute("SELECT line FROM journal ORDER BY seq")]
    assert events == list(range(150, 200))


def test_the_retention_spares_the_lines_start_up_reads_back(tmp_path: Path) -> None:
    """A tiny ``journal_keep``: the lines of the events a restart reads back (``RECALLED``) outlive the retention —
    the newest ``started`` and the newest ``cycle_held`` (an older one goes), each ``cycle_missed``,
    ``order_cancel_requested`` and ``order_lost`` up to ``journal_keep`` of them — while every other line past it is
    deleted (fails before: all were deleted; the ``cycle_held`` lines too, before it was recalled)."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, journal_keep=3)
    state = new_state()
    ledger.append("started", {"cycle_duration": "1s", "run": 1})
    ledger.append("cycle_missed", {"boundary": "2024-01-01T00:00:00+00:00", "reason": "lag"})
    ledger.append("order_cancel_requested", {"client_order_id": "te1-a", "reason": "exit"})
    ledger.append("order_lost", {"client_order_id": "te1-b", "reason": "lost"})
    ledger.append("cycle_held", {"boundary": "2024-01-01T00:00:01+00:00", "reason": "lag"})
    ledger.save(state)
    ledger.append("started", {"cycle_duration": "1s", "run": 2})
    ledger.append("cycle_held", {"boundary": "2024-01-01T00:00:02+00:00", "reason": "lag"})
    for i in range(10):
        ledger.append("revalued", {"i": i}, level="debug")
        run_cycle(state, i)
        ledger.save(state)
    for i in range(5):  # more of one recalled event than journal_keep: its newest journal_keep stay
        ledger.append("cycle_missed", {"boundary": f"2024-01-02T0{i}:00:00+00:00", "reason": "lag"})
    for i in range(10, 20):
        ledger.append("revalued", {"i": i}, level="debug")
        ledger.save(state)
    ledger.close()
    reopened = Ledger(path, journal_keep=3)
    assert reopened.journaled("started") == [{"cycle_duration": "1s", "run": 2}]
    assert reopened.journaled("cycle_held") == [{"boundary": "2024-01-01T00:00:02+00:00", "reason": "lag"}]
    assert [f["boundary"][:13] for f in reopened.journaled("cycle_missed")] == [
        "2024-01-02T02", "2024-01-02T03", "2024-01-02T04"]
    assert reopened.journaled("order_cancel_requested") == [{"client_order_id": "te1-a", "reason": "exit"}]
    assert reopened.journaled("order_lost") == [{"client_order_id": "te1-b", "reason": "lost"}]
    others = [orjson.loads(line)["fields"]["i"] for (line,) in sqlite3.connect(path).execute(
        "SELECT line FROM journal WHERE event = 'revalued' ORDER BY seq")]
    assert others == [17, 18, 19] and reopened.journaled("revalued") == [{"i": 17}, {"i": 18}, {"i": 19}]
    reopened.close()


def test_a_ledger_created_but_never_committed_loads_as_new(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger._writer()  # noqa: SLF001 - what a crash right after creating the file leaves
    ledger.close()
    assert Ledger(path).load() is None
    ledger = Ledger(path)
    state = new_state()
    ledger.save(state)
    assert dumps_state(reloaded(path)) == dumps_state(state)


def test_journal_lines_committed_before_any_state_leave_a_ledger_that_loads_as_new(tmp_path: Path) -> None:
    """The daemon commits its ``started`` line before the first cycle saves a state; a process that ends
    in between (killed, or its first save failing on a full disk) used to leave job 1 with no head
    document, refused at the next start as "damaged content (... zero-length, empty document ...)"."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path, now=lambda: T0)
    ledger.append("started", {"cursor": -1})
    ledger.flush()
    ledger.append("crashed", {"job": "cycle"})
    ledger.close()  # close flushes the crash's line, again with no state
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT job, json FROM head").fetchone() == (0, b"")  # no job without a document
    conn.close()
    again = Ledger(path, now=lambda: T0)
    assert again.load() is None  # a new executor, not a refusal
    state = new_state()
    run_cycle(state, 0)
    again.save(state)
    again.close()
    assert dumps_state(reloaded(path)) == dumps_state(state)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT job, event FROM journal ORDER BY seq").fetchall() == [(1, "started"), (1, "crashed")]
    assert conn.execute("SELECT job FROM head").fetchone() == (1,)


def test_a_ledger_older_versions_left_with_a_job_but_no_state_loads_as_new(tmp_path: Path) -> None:
    """What the bug above left behind on disk is not damage: such a ledger starts as new, while an empty
    document whose checksum says it had content is still refused."""
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    ledger._writer()  # noqa: SLF001 - the created ledger, as the old code's journal-only commit found it
    ledger.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE head SET job = 3")
    assert Ledger(path).load() is None
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE head SET crc = 12345")
    with pytest.raises(StateCorruptError, match=r"ledger\.sqlite: damaged content \(the head row is damaged"):
        Ledger(path).load()


def test_a_refused_ledger_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"")
    ledger = Ledger(path)
    with pytest.raises(StateCorruptError, match=r"ledger\.sqlite.*empty"):
        ledger.load()
    with pytest.raises(StateCorruptError, match="not writing"):
        ledger.save(new_state())
    assert path.read_bytes() == b"" and sorted(os.listdir(tmp_path)) == ["ledger.sqlite"]


def test_the_published_journal_is_bounded_and_caught_up_after_a_kill(tmp_path: Path) -> None:
    path, mirror = tmp_path / "ledger.sqlite", tmp_path / "journal.jsonl"
    heard: list[tuple[str, str, dict[str, object]]] = []
    ledger = Ledger(path, journal_keep=50, mirror=mirror, on_commit=lambda e, lv, f: heard.append((e, lv, dict(f))))
    state = new_state()
    for i in range(200):
        ledger.append("revalued", {"i": i}, level="debug")
        run_cycle(state, i)
        ledger.save(state)
        assert len(mirror.read_bytes().splitlines()) <= 100  # rewritten from the ledger every 50 lines
    ledger.close()
    assert [f["i"] for _, _, f in heard] == list(range(200))  # each line heard once, after its commit

    def table() -> list[bytes]:
        conn = sqlite3.connect(path)
        try:
            return [line for (line,) in conn.execute("SELECT line FROM journal ORDER BY seq")]
        finally:
            conn.close()

    lines = table()
    assert mirror.read_bytes().endswith(b"".join(lines[-10:]))
    # A kill between a commit and its publication: the last two lines are not in the mirror, the last torn.
    data = mirror.read_bytes()
    cut = data[: data.rindex(b"\n", 0, len(data) - 1) + 1]
    cut = cut[: cut.rindex(b"\n", 0, len(cut) - 1) + 1] + b'{"at": "20'
    mirror.write_bytes(cut)
    reopened = Ledger(path, journal_keep=50, mirror=mirror)
    reopened.load()
    reopened.flush()
    reopened._writer()  # noqa: SLF001 - opening for writing is what catches the mirror up
    reopened.close()
    assert mirror.read_bytes().endswith(b"".join(lines[-10:])) and b'{"at": "20' not in mirror.read_bytes()


def test_orders_and_fills_have_rows_of_their_own_and_a_partial_fill_writes_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    state = new_state()
    portfolio = state.portfolio
    position = Position(id=1, instrument_id=1, opened_at=T0)
    order = make_order(1, 1, 1, "open", T0, status="created", quantity=30.0, reference_price=100.0)
    position.orders.append(order)
    portfolio.open_positions.append(position)
    portfolio.next_position_id = portfolio.next_order_id = 2
    order.transition(OrderStatus.submitting, T0)
    order.transition(OrderStatus.open, T0)
    ledger.save(state)
    sizes = []
    for part in range(3):
        apply_fill(portfolio, position, order, 10.0, 100.0 + part, 0.1, T0, complete=part == 2)
        ledger.save(state)
        sizes.append(ledger.last_commit_bytes)
        assert dumps_state(reloaded(path)) == dumps_state(state)
    ledger.close()
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT client_order_id, purpose, side, status, quantity, filled_quantity, average_price, "
                           "fees FROM orders").fetchall()
        assert row == [(order.client_order_id, "open", "buy", "filled", 30.0, 30.0, 101.0, pytest.approx(0.3))]
        fills = conn.execute("SELECT id, order_id, position_id, seq, quantity, price FROM fills ORDER BY id").fetchall()
        assert fills == [(1, 1, 1, 0, 10.0, 100.0), (2, 1, 1, 1, 10.0, 101.0), (3, 1, 1, 2, 10.0, 102.0)]
        assert conn.execute("SELECT count(*) FROM order_fills WHERE client_order_id = ?",
                            (order.client_order_id,)).fetchone() == (3,)
    finally:
        conn.close()
    assert max(sizes) < 3000  # the order, the position, the head and one fill: never the older fills again
    again = reloaded(path)
    assert [f.price for f in again.portfolio.open_positions[0].orders[0].fills] == [100.0, 101.0, 102.0]
    assert again.portfolio.cash == pytest.approx(recompute_cash(state.initial_cash, again.portfolio))


def test_an_edited_fill_without_its_checksum_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    state = new_state()
    for i in range(6):
        run_cycle(state, i)
    ledger.save(state)
    ledger.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE fills SET json = replace(json, '\"quantity\":10.0', '\"quantity\":11.0') WHERE id = 1")
    conn.commit()
    conn.close()
    with pytest.raises(StateCorruptError, match="fill 1 is damaged"):
        Ledger(path).load()


def test_a_line_committed_apart_skips_the_running_jobs_lines_and_keeps_the_head_readable(tmp_path: Path) -> None:
    """The watchdog's line (``append_apart``) commits at once while a hung job's lines stay pending and die with
    it; before any state it leaves the head at job 0 with no document, as a journal-only commit does."""
    path = tmp_path / "ledger.sqlite"
    mirror = tmp_path / "journal.jsonl"
    heard: list[str] = []
    ledger = Ledger(path, now=lambda: T0, mirror=mirror, on_commit=lambda event, level, fields: heard.append(event))
    ledger.append("started", {"cursor": -1})
    ledger.flush()
    ledger.append("order_planned", {"order_id": 1})  # the hung job's line: never committed
    ledger.append_apart("crashed", {"job": "cycle"}, level="error")
    assert Ledger(path).load() is None  # still no state: a new executor, not a damaged head
    state = new_state()
    run_cycle(state, 0)
    ledger.discard()  # the hung job dies with the process
    ledger.save(state)
    ledger.append_apart("crashed", {"job": "revaluation"}, level="error")
    conn = sqlite3.connect(path)
    try:
        assert [event for (event,) in conn.execute("SELECT event FROM journal ORDER BY seq")] == [
            "started", "crashed", "crashed"]
        assert conn.execute("SELECT job FROM head").fetchone() == (2,)
    finally:
        conn.close()
    assert heard == ["started", "crashed", "crashed"]
    assert [orjson.loads(line)["event"] for line in mirror.read_bytes().splitlines()] == heard
    assert dumps_state(reloaded(path)) == dumps_state(state)


def test_a_ledger_built_inside_deferred_fsyncs_leaves_its_syncs_to_the_pass(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a folder built out of sight (a sweep's full run) the ledger commits without syncing
    (``synchronous = OFF``) and the block's one pass fsyncs the database and its WAL; elsewhere every commit syncs."""
    from tradeexecutor import atomic

    synced: list[str] = []
    real = atomic._fsync_path

    def recording(path: str) -> None:
        synced.append(path)
        real(path)

    monkeypatch.setattr(atomic, "_fsync_path", recording)
    built = tmp_path / "built" / "ledger.sqlite"
    with atomic.deferred_fsyncs():
        store = Ledger(built)
        store.save(new_state())
        assert store._conn is not None and store._conn.execute("PRAGMA synchronous").fetchone()[0] == 0
        store.close()
        assert synced == []
    assert synced == [str(built), f"{built}-wal"]
    assert read_ledger(LedgerFiles(built)) is not None
    elsewhere = Ledger(tmp_path / "ledger.sqlite")
    elsewhere.save(new_state())
    assert elsewhere._conn is not None and elsewhere._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    elsewhere.close()


def test_a_ledger_written_new_in_one_piece_is_the_one_save_and_close_leave(tmp_path: Path) -> None:
    """write_new (a backtest run's state, written once) builds the ledger in memory and writes one file: the same
    rows, head, schema and format as save + close on a new ledger, in WAL mode with nothing beside it; a process
    opening it later continues it like any other; an existing ledger is never written over."""
    state = new_state()
    for i in range(30):  # open and closed positions, orders, fills, valuations
        run_cycle(state, i)
    saved, written = tmp_path / "saved" / "ledger.sqlite", tmp_path / "written" / "ledger.sqlite"
    store = Ledger(saved)
    store.save(state)
    store.close()
    Ledger(written).write_new(state)
    assert [p.name for p in written.parent.iterdir()] == ["ledger.sqlite"]  # no WAL, -shm or temporary file left
    a, b = read_ledger(LedgerFiles(saved), full_check=True), read_ledger(LedgerFiles(written), full_check=True)
    assert a is not None and b is not None and (a.job, b.job) == (1, 1)
    assert dumps_state(b.state) == dumps_state(a.state) == dumps_state(state)

    def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
        assert path.read_bytes()[18:20] == b"\x02\x02"  # WAL mode (the file format's write and read versions)
        conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_schema ORDER BY name")]
            found = {name: conn.execute(f"SELECT * FROM {name}").fetchall() for name in tables  # noqa: S608
                     if name not in ("meta", "head") and not name.startswith("sqlite_")}
            found["schema"] = conn.execute("SELECT type, name, sql FROM sqlite_schema ORDER BY name").fetchall()
            found["format"] = [(conn.execute("PRAGMA application_id").fetchone()[0],
                                conn.execute("PRAGMA user_version").fetchone()[0])]
            found["head"] = [row[2:] for row in conn.execute("SELECT * FROM head")]  # after (id, ledger_id)
            return found
        finally:
            conn.close()

    assert rows(written) == rows(saved)
    later = Ledger(written)  # the daemon's way in: read, then commit the changes
    assert later.load() is not None
    run_cycle(state, 30)
    later.save(state)
    later.close()
    again = read_ledger(LedgerFiles(written), full_check=True)
    assert again is not None and again.job == 2 and again.ledger_id == b.ledger_id
    assert dumps_state(again.state) == dumps_state(state)
    with pytest.raises(StateCorruptError, match="already there"):
        Ledger(written).write_new(state)
    assert read_ledger(LedgerFiles(written)) is not None


def test_write_new_without_sqlite_serialize_saves_and_closes_instead(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Some Python/SQLite builds have no ``Connection.serialize``: write_new then writes the ledger as save + close
    do, the same state at job 1, instead of failing with AttributeError."""
    import types

    import tradeexecutor.ledger.ledger as ledger_module

    class NoSerialize(sqlite3.Connection):
        def __getattribute__(self, name: str) -> object:
            if name == "serialize":
                raise AttributeError(f"'sqlite3.Connection' object has no attribute {name!r}")
            return super().__getattribute__(name)

    shim = types.SimpleNamespace(**{k: getattr(sqlite3, k) for k in dir(sqlite3) if not k.startswith("__")})
    shim.connect = lambda *args, **kwargs: sqlite3.connect(*args, factory=NoSerialize, **kwargs)
    monkeypatch.setattr(ledger_module, "sqlite3", shim)
    state = new_state()
    run_cycle(state, 0)
    written = tmp_path / "ledger.sqlite"
    store = Ledger(written)
    store.write_new(state)
    assert store._conn is None  # closed, as write_new leaves it
    found = read_ledger(LedgerFiles(written), full_check=True)
    assert found is not None and found.job == 1 and dumps_state(found.state) == dumps_state(state)


def test_marks_only_build_no_order_or_fill_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """write_orders with no connection (the marks a read or written state leaves, _Tracked.of, which the daemon
    pays) takes every order's and fill's marks and bytes without building their rows (timestamps, CRC)."""
    import tradeexecutor.ledger.orders as orders_module

    state = new_state()
    run_cycle(state, 0)
    position = state.portfolio.open_positions[0]
    position.orders.append(make_order(2, position.id, 1, "increase", position.opened_at, quantity=1.0,
                                      fill_price=101.0, fill_id=2))
    expected: dict[tuple[str, int], tuple[int, bytes]] = {}
    size = orders_module.order_rows(position, None, expected, [], [])
    built: list[str] = []
    real_order, real_fill = orders_module._order_row, orders_module._fill_row
    def counted(kind: str, real: Any) -> Any:
        def row(*args: Any) -> Any:
            built.append(kind)
            return real(*args)
        return row

    monkeypatch.setattr(orders_module, "_order_row", counted("order", real_order))
    monkeypatch.setattr(orders_module, "_fill_row", counted("fill", real_fill))
    marks: dict[tuple[str, int], tuple[int, bytes]] = {}
    assert orders_module.write_orders(None, position, None, marks) == size
    assert marks == expected and len(marks) == 4 and built == []  # two orders, two fills: marks, no rows
    orders_module.order_rows(position, None, None, [], [])  # the rows a write builds: counted as built
    assert built == ["order", "fill", "order", "fill"]


def test_valuation_rows_are_the_rows_one_at_a_time_would_be(tmp_path: Path) -> None:
    """The valuation rows packed in one pass (ledger.rows.valuation_rows) equal valuation_row's, value, type and
    CRC, from any starting row, odd floats included."""
    from tradeexecutor.ledger.rows import valuation_row, valuation_rows
    from tradeexecutor.state import ValuationSeries

    series = ValuationSeries()
    for i in range(50):
        series.append(1_700_000_000_000 + i * 60_000, 10_000.0 + i / 3, -0.0 if i % 7 == 0 else 1e-300 * i,
                      float("nan") if i == 5 else (float("inf") if i == 6 else i / 49))
    for start in (0, 1, 25, 49, 50, 60):
        expected = [valuation_row(start + i, *row) for i, row in enumerate(
            zip(series.timestamp[start:], series.equity[start:], series.cash[start:], series.exposure[start:]))]
        got = valuation_rows(series, start)
        assert [repr(row) for row in got] == [repr(row) for row in expected], start
        assert [tuple(map(type, row)) for row in got] == [tuple(map(type, row)) for row in expected]

"""A ledger of format 1 (trades, written before orders and fills had tables) is refused with a pointer to
``tradeexecutor state migrate``, which converts it in place and keeps the original."""

from __future__ import annotations

import hashlib
import sqlite3
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from executor_process import Executor
from test_cli_state import tradeexecutor
from test_state_orders import check_migrated, v1_state
from tradeexecutor.errors import StateCorruptError, StateError
from tradeexecutor.ledger import Ledger
from tradeexecutor.ledger.schema import APPLICATION_ID
from tradeexecutor.store import dumps_state

#: The format-1 tables exactly as the ledger before orders created them (main at 8e28312).
V1_TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 1), ledger_id TEXT NOT NULL, job INTEGER NOT NULL, "
    "cash REAL, cycles_completed INTEGER, last_completed_cycle TEXT, replay_cursor INTEGER, "
    "json BLOB NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE instruments (id INTEGER PRIMARY KEY, symbol TEXT NOT NULL, json BLOB NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE positions (id INTEGER PRIMARY KEY, list TEXT NOT NULL CHECK (list IN ('open', 'closed', "
    "'failed')), list_index INTEGER NOT NULL, instrument_id INTEGER NOT NULL, opened_at TEXT, closed_at TEXT, "
    "quantity REAL, realised_pnl REAL, json BLOB NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE trades (id INTEGER PRIMARY KEY, position_id INTEGER NOT NULL, seq INTEGER NOT NULL, "
    "kind TEXT, status TEXT, planned_at TEXT, executed_at TEXT, executed_quantity REAL, executed_price REAL, "
    "fee REAL, json BLOB NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE valuations (idx INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, equity REAL NOT NULL, "
    "cash REAL NOT NULL, exposure REAL NOT NULL, crc INTEGER NOT NULL)",
    "CREATE TABLE journal (seq INTEGER PRIMARY KEY, job INTEGER NOT NULL, at TEXT NOT NULL, "
    "level TEXT NOT NULL, event TEXT NOT NULL, line BLOB NOT NULL, crc INTEGER NOT NULL)",
    "CREATE VIEW fills AS SELECT id AS trade_id, position_id, executed_at AS at, executed_quantity AS quantity, "
    "executed_price AS price, fee FROM trades WHERE status = 'executed'",
)
LAST_BAR_AT = "2024-03-04T00:00:00+00:00"
LINES = [orjson.dumps({"at": f"2024-03-0{i}T00:00:00+00:00", "level": "info", "event": "cycle_completed",
                       "fields": {"cycle": i}}) + b"\n" for i in range(1, 4)]


def _row(d: Any) -> tuple[bytes, int]:
    data = orjson.dumps(d)
    return data, zlib.crc32(data)


def write_v1_ledger(path: Path, *, keep_wal: bool = False) -> sqlite3.Connection | None:
    """The state of test_state_orders.v1_state (with last_bar_at) and three journal lines, as format 1 kept them."""
    d = v1_state()
    d["last_bar_at"] = LAST_BAR_AT
    portfolio = d["portfolio"]
    assert isinstance(portfolio, dict)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("PRAGMA journal_mode = WAL")
    for sql in V1_TABLES:
        conn.execute(sql)
    conn.execute("INSERT INTO meta VALUES ('ledger_id', 'v1ledger'), ('created_at', '2024-03-01T12:00:00+00:00')")
    head = {key: d[key] for key in ("schema_version", "name", "strategy_version", "created_at", "last_completed_cycle",
                                    "cycles_completed", "replay_cursor", "initial_cash", "last_bar_at")}
    head["portfolio"] = {key: portfolio[key] for key in ("cash", "next_position_id", "next_trade_id", "fees_paid")}
    conn.execute("INSERT INTO head (id, ledger_id, job, cash, json, crc) VALUES (1, 'v1ledger', 3, ?, ?, ?)",
                 (portfolio["cash"], *_row(head)))
    for instrument in d["instruments"]:  # type: ignore[attr-defined]
        conn.execute("INSERT INTO instruments VALUES (?, ?, ?, ?)", (instrument["id"], instrument["symbol"],
                                                                    *_row(instrument)))
    for which in ("open", "closed", "failed"):
        for index, position in enumerate(portfolio[f"{which}_positions"]):
            trades = position.pop("trades")
            conn.execute("INSERT INTO positions (id, list, list_index, instrument_id, json, crc) VALUES "
                         "(?, ?, ?, 1, ?, ?)", (position["id"], which, index, *_row(position)))
            for seq, trade in enumerate(trades):
                conn.execute("INSERT INTO trades (id, position_id, seq, status, json, crc) VALUES (?, ?, ?, ?, ?, ?)",
                             (trade["id"], trade["position_id"], seq, trade["status"], *_row(trade)))
    valuations = d["valuations"]
    assert isinstance(valuations, dict)
    from tradeexecutor.ledger.rows import valuation_row

    for index, row in enumerate(zip(*valuations.values())):
        conn.execute("INSERT INTO valuations VALUES (?, ?, ?, ?, ?, ?)", valuation_row(index, *row))
    for line in LINES:
        entry = orjson.loads(line)
        conn.execute("INSERT INTO journal (job, at, level, event, line, crc) VALUES (1, ?, ?, ?, ?, ?)",
                     (entry["at"], entry["level"], entry["event"], line, zlib.crc32(line)))
    if keep_wal:
        return conn  # still open: the rows are in the write-ahead log only
    conn.close()
    return None


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_format_1_ledger_is_refused_in_one_line_naming_state_migrate(tmp_path: Path) -> None:
    write_v1_ledger(tmp_path / "ledger.sqlite")
    before = digest(tmp_path)
    with pytest.raises(StateError, match="tradeexecutor state migrate") as caught:
        Ledger(tmp_path / "ledger.sqlite").load()
    assert not isinstance(caught.value, StateCorruptError)  # not damaged: it is converted, not restored
    assert "\n" not in str(caught.value) and str(tmp_path / "ledger.sqlite") in str(caught.value)
    result = tradeexecutor("export", str(tmp_path))
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1
    assert "tradeexecutor state migrate" in result.stderr and "Traceback" not in result.stderr
    assert digest(tmp_path) == before


@pytest.mark.parametrize("pending_wal", [False, True])
def test_state_migrate_converts_a_format_1_ledger_and_keeps_it(tmp_path: Path, pending_wal: bool) -> None:
    writer = write_v1_ledger(tmp_path / "ledger.sqlite", keep_wal=pending_wal)
    if pending_wal:
        assert (tmp_path / "ledger.sqlite-wal").stat().st_size > 32
    try:
        result = tradeexecutor("migrate", str(tmp_path))
    finally:
        if writer is not None:
            writer.close()
    assert result.returncode == 0, result.stderr
    assert "ledger.sqlite.v1" in result.stdout and "3 journal lines" in result.stdout
    state = Ledger(tmp_path / "ledger.sqlite").load()
    assert state is not None
    check_migrated(state)  # every trade an order with its fill, money replayed from the fills
    assert state.last_bar_at == datetime(2024, 3, 4, tzinfo=UTC)  # the progress time survives
    conn = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        assert [bytes(line) for (line,) in conn.execute("SELECT line FROM journal ORDER BY seq")] == LINES
        statuses = conn.execute("SELECT status, count(*) FROM orders GROUP BY status ORDER BY status").fetchall()
        assert statuses == [("cancelled", 1), ("created", 1), ("filled", 3), ("rejected", 1)]
        assert conn.execute("SELECT count(*) FROM fills").fetchone() == (3,)
    finally:
        conn.close()
    # The original, complete on its own (its write-ahead log folded in), still reads as format 1.
    kept = sqlite3.connect(tmp_path / "ledger.sqlite.v1")
    try:
        assert kept.execute("PRAGMA user_version").fetchone() == (1,)
        assert kept.execute("SELECT count(*) FROM trades").fetchone() == (6,)
    finally:
        kept.close()
    check = tradeexecutor("check", str(tmp_path))
    assert check.returncode == 0 and "6 orders, 3 fills" in check.stdout, check.stdout + check.stderr
    again = tradeexecutor("migrate", str(tmp_path))
    assert again.returncode == 3 and "already exists" in again.stderr


def test_a_damaged_format_1_ledger_is_refused_by_migrate_and_left_untouched(tmp_path: Path) -> None:
    write_v1_ledger(tmp_path / "ledger.sqlite")
    conn = sqlite3.connect(tmp_path / "ledger.sqlite")
    conn.execute("UPDATE trades SET json = replace(json, '9.0', '8.0') WHERE id = 1")
    conn.commit()
    conn.close()
    before = digest(tmp_path)
    result = tradeexecutor("migrate", str(tmp_path))
    assert result.returncode == 3 and "trade 1 is damaged" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert digest(tmp_path) == before


def test_the_migrated_ledger_exports_what_dataclasses_json_reads(tmp_path: Path) -> None:
    write_v1_ledger(tmp_path / "ledger.sqlite")
    assert tradeexecutor("migrate", str(tmp_path)).returncode == 0
    state = Ledger(tmp_path / "ledger.sqlite").load()
    assert state is not None
    exported = tradeexecutor("export", str(tmp_path))
    assert exported.returncode == 0 and exported.stdout.encode() == dumps_state(state)


@pytest.mark.slow
def test_an_executor_started_on_a_format_1_ledger_refuses_in_one_line(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    write_v1_ledger(state_dir / "ledger.sqlite")
    before = digest(state_dir)
    executor = Executor(tmp_path, state_dir=state_dir)
    try:
        assert executor.wait() == 3, executor.output()
    finally:
        executor.kill()
    output = executor.output()
    refusal = [line for line in output.splitlines() if "tradeexecutor state migrate" in line]
    assert len(refusal) == 1 and "ledger format 1" in refusal[0] and "Traceback" not in output, output
    assert {name: value for name, value in digest(state_dir).items() if name.startswith("ledger")} == before

"""Convert a state directory to today's ledger: from the JSON layout, or from an older ledger format.

From the JSON layout (state.json + state.log + journal.jsonl): the old files are read with the
JSON store's strict reader (a damaged one is refused, naming it) and left exactly as they were;
the ledger gets the state and the journal's newest lines (``journal_keep``) in one transaction,
so a migration that is interrupted leaves no ledger. Journal lines are kept byte for byte, so
``journal.jsonl`` stays the ledger's published copy.

From ledger format 1 (trades, state schema 1): the old ledger is checked as a load checks it
(bytes, SQLite's check, every row's CRC), its state rebuilt as the schema-1 dict and migrated to
schema 2 (state/migrate.py: orders and fills), and a new ledger with the state and the journal's
lines replaces it in one rename. The old file is kept as ``ledger.sqlite.v1`` (its write-ahead
log checkpointed into it first, so the copy is complete on its own); an interrupted migration
leaves the old ledger in place and can simply be run again.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from tradeexecutor.atomic import atomic_write_bytes, install_temp_file
from tradeexecutor.errors import StateError
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger.files import LedgerFiles, check_files
from tradeexecutor.ledger.ledger import DEFAULT_JOURNAL_KEEP, Ledger
from tradeexecutor.ledger.read import reader, refused_as_damaged
from tradeexecutor.ledger.rows import HEAD_OPTIONAL_KEYS, HEAD_STATE_KEYS, checked_json, valuation_crc
from tradeexecutor.ledger.schema import LEDGER_FORMAT
from tradeexecutor.state import State
from tradeexecutor.state.timestamps import decode_datetime
from tradeexecutor.store.codec import gc_paused, state_from_dict
from tradeexecutor.store.journal import LEVELS, encode_entry, entry_from_json
from tradeexecutor.store.state_store import StateStore

__all__ = ["Migration", "migrate_ledger", "migrate_state_dir"]

#: Portfolio fields of a format-1 head row (state schema 1).
_V1_PORTFOLIO_KEYS = ("cash", "next_position_id", "next_trade_id", "fees_paid")


@dataclass(frozen=True)
class Migration:
    """What a migration wrote."""

    ledger: Path
    positions: int
    journal_lines: int
    journal_dropped: int
    #: What the originals are kept as, in words for the command's one line.
    kept: str = "state.json and state.log are kept as they were and no longer used"


def _journal_lines(path: Path) -> list[bytes]:
    """The journal's complete, readable lines as they are on disk (each ending in a newline)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    lines = []
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n") or not line.strip():
            continue  # a torn last line, or an empty one
        try:
            entry = entry_from_json(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue  # a torn line the journal's readers skip too
        if entry is None or not isinstance(entry.get("event"), str) or not isinstance(entry.get("at"), str):
            continue
        if entry.keys() != {"at", "level", "event", "fields"} or line != orjson.dumps(entry) + b"\n":
            # An old-shape line: stored in today's shape so the ledger's columns agree with it.
            level, fields = entry["level"], dict(entry["fields"])
            if not (isinstance(level, str) and level.lower() in LEVELS):
                fields["level"], level = level, "info"  # an event field that had overwritten the level
            line = encode_entry(entry["event"], fields, level=level.lower(), at=decode_datetime(entry["at"]))
        lines.append(line)
    return lines


def migrate_state_dir(state_dir: str | os.PathLike[str], *, journal_keep: int = DEFAULT_JOURNAL_KEEP) -> Migration:
    """Write ``state_dir``'s ledger from its JSON state and journal; the originals are kept untouched."""
    files = RunFiles(Path(state_dir))
    if files.ledger.exists() and _format(files.ledger) < LEDGER_FORMAT:
        return migrate_ledger(files.ledger, journal_keep=journal_keep)
    if files.ledger.exists():
        raise StateError(f"{files.ledger} already exists: {state_dir} was migrated already (nothing changed)")
    if not files.legacy_state.exists():
        raise StateError(f"{files.legacy_state} does not exist: {state_dir} holds no JSON state to migrate")
    state = StateStore(files.root).load()
    if state is None:
        raise StateError(f"{files.legacy_state} holds no state to migrate")
    lines = _journal_lines(files.journal)
    kept = lines[-journal_keep:]
    ledger = Ledger(files.ledger, journal_keep=journal_keep)
    ledger.commit(state, kept)
    ledger.close()
    positions = sum(1 for _ in state.portfolio.all_positions())
    return Migration(ledger=files.ledger, positions=positions, journal_lines=len(kept),
                     journal_dropped=len(lines) - len(kept))


def _format(path: Path) -> int:
    """The ledger format in a SQLite file's header (its ``user_version``)."""
    with open(path, "rb") as f:
        header = f.read(100)
    return struct.unpack(">I", header[60:64])[0] if len(header) == 100 else LEDGER_FORMAT


def _read_v1(conn: sqlite3.Connection, where: str) -> tuple[State, list[bytes]]:
    """The state (migrated to schema 2) and journal lines of a format-1 ledger; ValueError on a damaged row."""
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise ValueError(f"SQLite's check failed: {'; '.join(problems[:3])}")
    (data, crc), = conn.execute("SELECT json, crc FROM head").fetchall()
    head = checked_json(data, crc, "the head row")
    d: dict[str, Any] = {key: head[key] for key in HEAD_STATE_KEYS}
    d.update({key: head[key] for key in HEAD_OPTIONAL_KEYS if head.get(key) is not None})
    portfolio: dict[str, Any] = {key: head["portfolio"][key] for key in _V1_PORTFOLIO_KEYS}
    d["portfolio"] = portfolio
    d["instruments"] = [checked_json(data, crc, f"instrument {i}")
                        for i, data, crc in conn.execute("SELECT id, json, crc FROM instruments ORDER BY id")]
    trades: dict[int, list[Any]] = {}
    for trade_id, position_id, data, crc in conn.execute(
            "SELECT id, position_id, json, crc FROM trades ORDER BY position_id, seq"):
        trades.setdefault(position_id, []).append(checked_json(data, crc, f"trade {trade_id}"))
    for key in ("open_positions", "closed_positions", "failed_positions"):
        portfolio[key] = []
    for position_id, which, data, crc in conn.execute(
            "SELECT id, list, json, crc FROM positions ORDER BY list, list_index"):
        position = checked_json(data, crc, f"position {position_id}")
        position["trades"] = trades.pop(position_id, [])
        portfolio[f"{which}_positions"].append(position)
    if trades:
        raise ValueError(f"trades of unknown positions {sorted(trades)[:5]}")
    columns: dict[str, list[Any]] = {"timestamp": [], "equity": [], "cash": [], "exposure": []}
    for index, timestamp, equity, cash, exposure, crc in conn.execute(
            "SELECT idx, timestamp, equity, cash, exposure, crc FROM valuations ORDER BY idx"):
        if index != len(columns["timestamp"]) or valuation_crc(timestamp, equity, cash, exposure) != crc:
            raise ValueError(f"valuation row {index} is damaged")
        for key, value in zip(columns, (timestamp, equity, cash, exposure)):
            columns[key].append(value)
    d["valuations"] = columns
    if d.get("schema_version") != 1:
        raise ValueError(f"a format-1 ledger with state schema {d.get('schema_version')!r}")
    state = state_from_dict(d, source=where)
    lines = []
    for seq, line, crc in conn.execute("SELECT seq, line, crc FROM journal ORDER BY seq"):
        if type(line) is not bytes or zlib.crc32(line) != crc:
            raise ValueError(f"journal line {seq} is damaged (checksum mismatch)")
        lines.append(line)
    return state, lines


def migrate_ledger(path: str | os.PathLike[str], *, journal_keep: int = DEFAULT_JOURNAL_KEEP) -> Migration:
    """Convert a format-1 ledger to LEDGER_FORMAT in place; the original is kept as ``<name>.v1``."""
    files = LedgerFiles(Path(path))
    where = str(files.path)
    if not check_files(files, older=True):
        raise StateError(f"{where} does not exist: nothing to migrate")
    version = _format(files.path)
    if version >= LEDGER_FORMAT:
        raise StateError(f"{where} is ledger format {version} already (nothing changed)")
    with refused_as_damaged(where), reader(files) as conn, gc_paused():
        state, lines = _read_v1(conn, where)
    # Checked: fold its write-ahead log into the file, so the kept copy is one complete file.
    conn = sqlite3.connect(files.path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    backup = files.path.with_name(f"{files.path.name}.v{version}")
    atomic_write_bytes(backup, files.path.read_bytes())
    new = files.path.with_name(f"{files.path.name}.new")
    for leftover in LedgerFiles(new).existing():
        leftover.unlink()  # an earlier migration that was interrupted
    kept = lines[-journal_keep:]
    ledger = Ledger(new, journal_keep=journal_keep)
    ledger.commit(state, kept)
    ledger.close()
    for stale in (files.wal, files.shm):  # the old file's, empty since the checkpoint; never beside the new one
        stale.unlink(missing_ok=True)
    install_temp_file(new, files.path)
    positions = sum(1 for _ in state.portfolio.all_positions())
    return Migration(ledger=files.path, positions=positions, journal_lines=len(kept),
                     journal_dropped=len(lines) - len(kept),
                     kept=f"the format-{version} ledger is kept as {backup.name} and no longer used")

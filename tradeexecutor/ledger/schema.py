"""The ledger's SQLite schema: tables, the file's identity (application_id) and its format version.

Everything a reader needs to trust a file is here: a ledger file carries APPLICATION_ID in its
header (so a foreign SQLite file is told apart before anything is read) and LEDGER_FORMAT as its
``user_version``; its schema must be exactly TABLES, so an edited or half-made file is refused.
docs/ledger.md documents each table for people opening the file with the ``sqlite3`` shell.

Each row that holds state carries ``crc``, the CRC-32 of its ``json`` bytes (or of its packed
numbers): SQLite's own check finds damaged pages, the CRCs find a damaged value inside a page.
"""

from __future__ import annotations

__all__ = ["APPLICATION_ID", "LEDGER_FORMAT", "TABLES", "VIEWS"]

#: "TEL1" as a big-endian 32-bit integer: marks a file as a tradeexecutor ledger.
APPLICATION_ID = 0x54454C31

#: Version of the table layout (SQLite ``user_version``); a newer file is refused, never rewritten.
LEDGER_FORMAT = 1

#: Table name → its CREATE statement, exactly as sqlite_schema keeps it.
TABLES: dict[str, str] = {
    "meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "head": (
        "CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 1), ledger_id TEXT NOT NULL, job INTEGER NOT NULL, "
        "cash REAL, cycles_completed INTEGER, last_completed_cycle TEXT, replay_cursor INTEGER, "
        "json BLOB NOT NULL, crc INTEGER NOT NULL)"
    ),
    "instruments": (
        "CREATE TABLE instruments (id INTEGER PRIMARY KEY, symbol TEXT NOT NULL, "
        "json BLOB NOT NULL, crc INTEGER NOT NULL)"
    ),
    "positions": (
        "CREATE TABLE positions (id INTEGER PRIMARY KEY, list TEXT NOT NULL CHECK (list IN ('open', 'closed', "
        "'failed')), list_index INTEGER NOT NULL, instrument_id INTEGER NOT NULL, opened_at TEXT, closed_at TEXT, "
        "quantity REAL, realised_pnl REAL, json BLOB NOT NULL, crc INTEGER NOT NULL)"
    ),
    "trades": (
        "CREATE TABLE trades (id INTEGER PRIMARY KEY, position_id INTEGER NOT NULL, seq INTEGER NOT NULL, "
        "kind TEXT, status TEXT, planned_at TEXT, executed_at TEXT, executed_quantity REAL, executed_price REAL, "
        "fee REAL, json BLOB NOT NULL, crc INTEGER NOT NULL)"
    ),
    "valuations": (
        "CREATE TABLE valuations (idx INTEGER PRIMARY KEY, timestamp INTEGER NOT NULL, equity REAL NOT NULL, "
        "cash REAL NOT NULL, exposure REAL NOT NULL, crc INTEGER NOT NULL)"
    ),
    "journal": (
        "CREATE TABLE journal (seq INTEGER PRIMARY KEY, job INTEGER NOT NULL, at TEXT NOT NULL, "
        "level TEXT NOT NULL, event TEXT NOT NULL, line BLOB NOT NULL, crc INTEGER NOT NULL)"
    ),
}

#: Read-only conveniences for the sqlite3 shell; the ledger never reads them.
VIEWS: dict[str, str] = {
    "fills": (
        "CREATE VIEW fills AS SELECT id AS trade_id, position_id, executed_at AS at, executed_quantity AS quantity, "
        "executed_price AS price, fee FROM trades WHERE status = 'executed'"
    ),
}

"""The ledger's SQLite schema: tables, the file's identity (application_id) and its format version.

Everything a reader needs to trust a file is here: a ledger file carries APPLICATION_ID in its
header (so a foreign SQLite file is told apart before anything is read) and LEDGER_FORMAT as its
``user_version``; its schema must be exactly TABLES, so an edited or half-made file is refused.
docs/ledger.md documents each table for people opening the file with the ``sqlite3`` shell.

Each row that holds state carries ``crc``, the CRC-32 of its ``json`` bytes (or of its packed
numbers): SQLite's own check finds damaged pages, the CRCs find a damaged value inside a page.
"""

from __future__ import annotations

__all__ = ["APPLICATION_ID", "LEDGER_FORMAT", "MIGRATABLE_FORMATS", "TABLES", "VIEWS"]

#: "TEL1" as a big-endian 32-bit integer: marks a file as a tradeexecutor ledger.
APPLICATION_ID = 0x54454C31

#: Version of the table layout (SQLite ``user_version``); a newer file is refused, never rewritten.
#: 1: trades (an order fused with its fill, state schema 1). 2: orders and fills (state schema 2).
LEDGER_FORMAT = 2

#: Formats ``tradeexecutor state migrate`` converts to LEDGER_FORMAT (an older file is refused until then).
MIGRATABLE_FORMATS = (1,)

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
    "orders": (
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, position_id INTEGER NOT NULL, seq INTEGER NOT NULL, "
        "client_order_id TEXT NOT NULL, purpose TEXT, side TEXT, type TEXT, status TEXT, created_at TEXT, "
        "closed_at TEXT, quantity REAL, filled_quantity REAL, average_price REAL, fees REAL, "
        "json BLOB NOT NULL, crc INTEGER NOT NULL)"
    ),
    "fills": (
        "CREATE TABLE fills (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, position_id INTEGER NOT NULL, "
        "seq INTEGER NOT NULL, at TEXT, quantity REAL, price REAL, fee REAL, json BLOB NOT NULL, "
        "crc INTEGER NOT NULL)"
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
    "order_fills": (
        "CREATE VIEW order_fills AS SELECT f.id AS fill_id, o.id AS order_id, o.client_order_id, f.position_id, "
        "o.purpose, o.side, f.at, f.quantity, f.price, f.fee FROM fills f JOIN orders o ON o.id = f.order_id"
    ),
}

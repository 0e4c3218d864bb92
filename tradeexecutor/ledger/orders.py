"""The state's trades as ledger rows: the one module that knows how orders and fills are stored.

Today a trade is one market order fused with its fill, kept as one row of ``trades`` (typed
columns for what people query, plus the record's JSON). When the state model's Order and Fill
arrive, this module is what changes: an ``orders`` and a ``fills`` table, and the same three
functions (a row for a record, upsert, read back per position).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable
from datetime import datetime
from enum import Enum
from typing import Any

import orjson

from tradeexecutor.state import Trade
from tradeexecutor.store.codec import dumps_json, trade_from_dict, trade_to_dict

__all__ = ["UPSERT_TRADE", "read_trades", "trade_row"]

#: One statement writes a new or changed trade.
UPSERT_TRADE = (
    "INSERT OR REPLACE INTO trades (id, position_id, seq, kind, status, planned_at, executed_at, "
    "executed_quantity, executed_price, fee, json, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def text(value: Any) -> Any:
    """A value SQLite can bind: enums as their value, datetimes as ISO text."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def trade_json(trade: Trade) -> bytes:
    """The trade's JSON, as the state export writes it."""
    return dumps_json(trade_to_dict(trade))


def trade_row(trade: Trade, seq: int, data: bytes) -> tuple[Any, ...]:
    """The ``trades`` row of ``trade``, the ``seq``-th of its position, whose JSON is ``data``."""
    return (trade.id, trade.position_id, seq, text(trade.kind), text(trade.status), text(trade.planned_at),
            text(trade.executed_at), float(trade.executed_quantity),
            None if trade.executed_price is None else float(trade.executed_price), float(trade.fee),
            data, zlib.crc32(data))


def read_trades(conn: sqlite3.Connection, where: str) -> dict[int, list[Trade]]:
    """Every trade, grouped by position id in their order; ValueError naming the row when one is damaged."""
    found: dict[int, list[Trade]] = {}
    rows: Iterable[tuple[Any, ...]] = conn.execute(
        "SELECT id, position_id, json, crc FROM trades ORDER BY position_id, seq")
    for trade_id, position_id, data, crc in rows:
        if type(data) is not bytes or zlib.crc32(data) != crc:
            raise ValueError(f"{where}: trade {trade_id} is damaged (checksum mismatch)")
        trade = trade_from_dict(orjson.loads(data))
        if trade.id != trade_id or trade.position_id != position_id:
            raise ValueError(f"{where}: trade row {trade_id} does not match its record")
        found.setdefault(position_id, []).append(trade)
    return found

"""The state's orders and fills as ledger rows: the one module that knows how they are stored.

An order is one row of ``orders`` (typed columns for what people query, plus the order's JSON
without its fills); each of its fills is one row of ``fills`` (typed columns plus the fill's JSON).
Each row carries the CRC-32 of its JSON. A fill never changes once made, so an order that fills
in parts costs one new fill row and one rewritten order row per fill.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from tradeexecutor.ledger.rows import checked_json, text
from tradeexecutor.state import Fill, Order, Position
from tradeexecutor.state.migrate import mark_old_fill
from tradeexecutor.store.codec import dumps_json, fill_from_dict, fill_to_dict, order_from_dict, order_to_dict

__all__ = ["RowMarks", "delete_rows", "insert_rows", "order_rows", "read_orders", "write_orders"]

#: One statement writes a new or changed order.
UPSERT_ORDER = (
    "INSERT OR REPLACE INTO orders (id, position_id, seq, client_order_id, purpose, side, type, status, "
    "created_at, closed_at, quantity, filled_quantity, average_price, fees, json, crc) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: One statement writes a new fill (a fill never changes, but a rewrite is harmless).
UPSERT_FILL = (
    "INSERT OR REPLACE INTO fills (id, order_id, position_id, seq, at, quantity, price, fee, json, crc) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

#: What of a position's orders and fills is in the ledger: ("order" | "fill", id) → (seq, JSON) as written.
RowMarks = dict[tuple[str, int], tuple[int, bytes]]


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


def order_json(order: Order) -> bytes:
    """The order's JSON as the state export writes it, without its fills (they have rows of their own)."""
    d = order_to_dict(order)
    del d["fills"]
    return dumps_json(d)


def fill_json(fill: Fill) -> bytes:
    """The fill's JSON as the state export writes it."""
    return dumps_json(fill_to_dict(fill))


def _order_row(order: Order, seq: int, data: bytes) -> tuple[Any, ...]:
    return (order.id, order.position_id, seq, order.client_order_id, text(order.purpose), text(order.side),
            text(order.type), text(order.status), text(order.created_at), text(order.closed_at),
            _number(order.quantity), float(order.filled_quantity), _number(order.average_fill_price),
            float(order.fees), data, zlib.crc32(data))


def _fill_row(fill: Fill, position_id: int, seq: int, data: bytes) -> tuple[Any, ...]:
    return (fill.id, fill.order_id, position_id, seq, text(fill.at), float(fill.quantity), float(fill.price),
            float(fill.fee), data, zlib.crc32(data))


def write_orders(conn: sqlite3.Connection | None, position: Position, known: RowMarks | None,
                 written: RowMarks | None = None) -> int:
    """Upsert the position's orders and fills not already in ``known`` as they are; bytes written.

    ``written`` (when given) gets the marks of every order and fill of the position, written or not;
    with ``conn`` None nothing is written, only the marks are taken (rows just read or written): no row is built
    (its timestamps and CRC were half the cost of a daemon's marks of a long position's orders).
    """
    if conn is None:
        return order_rows(position, known, written, None, None)
    orders: list[tuple[Any, ...]] = []
    fills: list[tuple[Any, ...]] = []
    size = order_rows(position, known, written, orders, fills)
    insert_rows(conn, orders, fills)
    return size


def order_rows(position: Position, known: RowMarks | None, written: RowMarks | None,
               orders: list[tuple[Any, ...]] | None, fills: list[tuple[Any, ...]] | None) -> int:
    """Append to ``orders`` and ``fills`` the rows of the position's orders and fills not already in ``known`` as
    they are (see write_orders); their bytes. A caller writing many positions inserts all their rows at once
    (:func:`insert_rows`), not a statement per row. With ``orders`` and ``fills`` None: only the bytes and marks."""
    size = 0
    for seq, order in enumerate(position.orders):
        data = order_json(order)
        key = ("order", order.id)
        if written is not None:
            written[key] = (seq, data)
        if known is None or known.get(key) != (seq, data):
            if orders is not None:
                orders.append(_order_row(order, seq, data))
            size += len(data)
        for fill_seq, fill in enumerate(order.fills):
            fill_data = fill_json(fill)
            fill_key = ("fill", fill.id)
            if written is not None:
                written[fill_key] = (fill_seq, fill_data)
            if known is None or known.get(fill_key) != (fill_seq, fill_data):
                if fills is not None:
                    fills.append(_fill_row(fill, position.id, fill_seq, fill_data))
                size += len(fill_data)
    return size


def insert_rows(conn: sqlite3.Connection, orders: list[tuple[Any, ...]], fills: list[tuple[Any, ...]]) -> None:
    """Upsert order rows and fill rows made by :func:`order_rows`."""
    if orders:
        conn.executemany(UPSERT_ORDER, orders)
    if fills:
        conn.executemany(UPSERT_FILL, fills)


def delete_rows(conn: sqlite3.Connection, keys: Iterable[tuple[str, int]]) -> None:
    """Delete the order and fill rows ``keys`` name (an order or fill the state no longer has)."""
    keys = list(keys)
    conn.executemany("DELETE FROM fills WHERE id = ?", [(i,) for kind, i in keys if kind == "fill"])
    conn.executemany("DELETE FROM orders WHERE id = ?", [(i,) for kind, i in keys if kind == "order"])


def read_orders(conn: sqlite3.Connection, where: str, quotes: Mapping[int, str]) -> dict[int, list[Order]]:
    """Every order with its fills, grouped by position id in their order; ValueError naming a damaged row.

    ``quotes`` (instrument id → quote currency) tells a fill row written before fills recorded ``fee_in_base``
    whether its fee was in the base asset (state/migrate.py ``mark_old_fill``); the row itself is left as it is.
    """
    fills: dict[int, list[dict[str, Any]]] = {}
    fill_positions: dict[int, int] = {}
    for fill_id, order_id, position_id, data, crc in conn.execute(
            "SELECT id, order_id, position_id, json, crc FROM fills ORDER BY order_id, seq"):
        fill = checked_json(data, crc, f"fill {fill_id}")
        if type(fill) is not dict or fill.get("id") != fill_id or fill.get("order_id") != order_id:
            raise ValueError(f"{where}: fill row {fill_id} does not match its record")
        fills.setdefault(order_id, []).append(fill)
        fill_positions[order_id] = position_id
    found: dict[int, list[Order]] = {}
    for order_id, position_id, data, crc in conn.execute(
            "SELECT id, position_id, json, crc FROM orders ORDER BY position_id, seq"):
        d = checked_json(data, crc, f"order {order_id}")
        d["fills"] = []
        order = order_from_dict(d)
        if order.id != order_id or order.position_id != position_id:
            raise ValueError(f"{where}: order row {order_id} does not match its record")
        quote = quotes.get(order.instrument_id)
        order.fills = [fill_from_dict(mark_old_fill(f, quote)) for f in fills.pop(order_id, [])]
        if order.fills and fill_positions[order_id] != position_id:
            raise ValueError(f"{where}: fills of order {order_id} name another position")
        found.setdefault(position_id, []).append(order)
    if fills:
        raise ValueError(f"{where}: fills of unknown orders {sorted(fills)[:5]}")
    return found

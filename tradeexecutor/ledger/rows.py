"""Rows of the ledger's state tables other than orders and fills: head, instruments, positions, valuations, journal.

Each row keeps its record's JSON (the same JSON the state export writes) with its CRC-32, and a
few typed columns for people querying the file; a reader rebuilds the state from the JSON only.
"""

from __future__ import annotations

import struct
import zlib
from datetime import datetime
from enum import Enum
from typing import Any

import numpy as np
import orjson

from tradeexecutor.state import Instrument, Position, State, ValuationSeries
from tradeexecutor.store.codec import dumps_json, instrument_to_dict, position_to_dict

__all__ = [
    "HEAD_OPTIONAL_KEYS",
    "HEAD_PORTFOLIO_KEYS",
    "HEAD_STATE_KEYS",
    "checked_json",
    "head_json",
    "head_row",
    "instrument_row",
    "position_json",
    "position_row",
    "text",
    "valuation_crc",
    "valuation_row",
    "valuation_rows",
]

#: State fields kept in the head row's JSON.
HEAD_STATE_KEYS = ("schema_version", "name", "strategy_version", "created_at", "last_completed_cycle",
                   "cycles_completed", "replay_cursor", "initial_cash")
#: State fields kept in the head row's JSON when set, absent from ledgers written before they existed.
HEAD_OPTIONAL_KEYS = ("last_bar_at",)
#: Portfolio fields kept in the head row's JSON (its position lists have their own rows).
HEAD_PORTFOLIO_KEYS = ("cash", "next_position_id", "next_order_id", "next_fill_id", "fees_paid")

_VALUATION = struct.Struct("<qddd")
#: One valuation row's numbers laid out as _VALUATION packs them (32 bytes, no padding).
_VALUATION_FIELDS = ("timestamp", "equity", "cash", "exposure")
_VALUATION_RECORD = np.dtype([(name, "<i8" if name == "timestamp" else "<f8") for name in _VALUATION_FIELDS])


def text(value: Any) -> Any:
    """A value SQLite can bind: enums as their value, datetimes as ISO text."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def checked_json(data: Any, crc: Any, what: str) -> Any:
    """The parsed JSON of a row whose CRC-32 matches; ValueError naming ``what`` when it does not."""
    if type(data) is not bytes or zlib.crc32(data) != crc:
        raise ValueError(f"{what} is damaged (checksum mismatch)")
    return orjson.loads(data)


def head_json(state: State) -> bytes:
    """The scalar part of the state: everything but instruments, positions and valuations (the risk figures too)."""
    d: dict[str, Any] = {key: getattr(state, key) for key in HEAD_STATE_KEYS + HEAD_OPTIONAL_KEYS}
    d["portfolio"] = {key: getattr(state.portfolio, key) for key in HEAD_PORTFOLIO_KEYS}
    if state.portfolio.fee_asset_balances:  # absent until an account pays fees in a third asset (BNB)
        d["portfolio"]["fee_asset_balances"] = dict(state.portfolio.fee_asset_balances)
    d["risk"] = state.risk.to_dict()
    return dumps_json(d)


def head_row(state: State, ledger_id: str, job: int, data: bytes) -> tuple[Any, ...]:
    """The one ``head`` row."""
    return (1, ledger_id, job, float(state.portfolio.cash), state.cycles_completed, text(state.last_completed_cycle),
            state.replay_cursor, data, zlib.crc32(data))


def instrument_row(instrument: Instrument) -> tuple[Any, ...]:
    """An ``instruments`` row."""
    data = dumps_json(instrument_to_dict(instrument))
    return (instrument.id, instrument.symbol, data, zlib.crc32(data))


def position_json(position: Position) -> bytes:
    """A position's JSON without its orders (they and their fills have rows of their own)."""
    d = position_to_dict(position)
    del d["orders"]
    return dumps_json(d)


def position_row(position: Position, where: str, index: int, data: bytes) -> tuple[Any, ...]:
    """A ``positions`` row: the ``index``-th position of the ``where`` list (open, closed, failed)."""
    return (position.id, where, index, position.instrument_id, text(position.opened_at), text(position.closed_at),
            float(position.quantity), float(position.realised_pnl), data, zlib.crc32(data))


def valuation_crc(timestamp: int, equity: float, cash: float, exposure: float) -> int:
    """CRC-32 of one valuation row's numbers."""
    return zlib.crc32(_VALUATION.pack(timestamp, equity, cash, exposure))


def valuation_row(index: int, timestamp: Any, equity: Any, cash: Any, exposure: Any) -> tuple[Any, ...]:
    """A ``valuations`` row (numpy numbers become Python ones, -0.0 becomes 0.0: see :func:`valuation_rows`)."""
    values = (int(timestamp), float(equity) + 0.0, float(cash) + 0.0, float(exposure) + 0.0)
    return (index, *values, valuation_crc(*values))


def valuation_rows(valuations: ValuationSeries, start: int = 0) -> list[tuple[Any, ...]]:
    """The ``valuations`` rows from the ``start``-th on: each the :func:`valuation_row` of its numbers.

    The columns are packed as _VALUATION packs a row in one pass, so that a row costs one CRC call and
    one tuple, not four conversions and a pack (a full run's 2,000 rows: a fifth of its ledger save).

    -0.0 is written as 0.0, before the CRC: SQLite stores a REAL with no fraction as an integer, so
    -0.0 comes back as 0.0, and a CRC of -0.0's bytes would refuse the row as damaged when read back
    (an exposure of 0.0 / negative equity is -0.0). Adding 0.0 turns -0.0 into 0.0 and changes nothing else.
    """
    columns: tuple[Any, ...] = (valuations.timestamp, valuations.equity, valuations.cash, valuations.exposure)
    count = len(columns[0]) - start
    if count <= 0:
        return []
    packed = np.empty(count, dtype=_VALUATION_RECORD)
    lists: list[list[Any]] = []
    for name, column in zip(_VALUATION_FIELDS, columns, strict=True):
        field: Any = packed[name]
        field[:] = column[start:]
        if name != "timestamp":
            field += 0.0  # -0.0 + 0.0 is 0.0: the number SQLite gives back
        lists.append(field.tolist())
    data = memoryview(packed.tobytes())
    size = _VALUATION.size
    crcs = [zlib.crc32(data[offset:offset + size]) for offset in range(0, count * size, size)]
    return list(zip(range(start, start + count), *lists, crcs, strict=True))

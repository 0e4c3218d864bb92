"""Fast JSON codec for State: hand-written per-class conversions, so saving and loading stay cheap.

dataclasses-json reflects over every field of every object on every call, which costs seconds
for a state with tens of thousands of trades. The functions here do the same conversion with
one plain function per class and no reflection, and they keep two promises that the tests
check with random states:

- ``state_to_dict(s) == s.to_dict(encode_json=True)`` exactly, and
- ``state_from_dict(s.to_dict(encode_json=True)) == s``.

So a file written by either codec is read by the other. Bytes are produced and parsed with
orjson: stdlib ``json`` is about 4x slower to encode and 2x slower to parse a large state,
and orjson formats datetimes natively (see bench/bench_state_store.py).

Floats round-trip exactly (shortest repr). JSON has no NaN or infinity: orjson writes them as
``null``, so a non-finite float in a non-optional field would come back as None. The engine must
not put NaN or infinity into the state; :func:`dumps_state` does not scan every float for speed.
Datetimes are written by orjson, whose text equals ``isoformat()`` for every UTC offset in whole
minutes (the state holds UTC); only historical sub-minute offsets would lose their seconds.

When a field is added to a class in ``tradeexecutor.state``, add it to the matching pair of
functions below; ``tests/test_store_codec.py`` fails until you do.
"""

from __future__ import annotations

import gc
import hashlib
from array import array
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from numbers import Integral, Real
from typing import Any

import orjson

from tradeexecutor.errors import SchemaVersionError, StateCorruptError
from tradeexecutor.kept_rows import Appended
from tradeexecutor.spill import Piece, Spill, joined, unless_damaged
from tradeexecutor.state import (
    SCHEMA_VERSION,
    Fill,
    Instrument,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    Portfolio,
    Position,
    RejectReason,
    RiskState,
    State,
    TimeInForce,
    TriggerKind,
    ValuationSeries,
)
from tradeexecutor.state.migrate import migrate_state_dict
from tradeexecutor.state.valuation import ROWS_BLOCK, TailColumn

__all__ = [
    "VALUATION_COLUMNS",
    "check_schema_version",
    "dumps_json",
    "dumps_state",
    "dumps_state_parts",
    "fill_from_dict",
    "fill_to_dict",
    "gc_paused",
    "instrument_from_dict",
    "instrument_to_dict",
    "loads_json",
    "loads_state",
    "order_from_dict",
    "order_to_dict",
    "position_from_dict",
    "position_to_dict",
    "state_from_dict",
    "state_head_to_dict",
    "state_to_dict",
]

#: Column names of ValuationSeries, in declaration order.
VALUATION_COLUMNS = ("timestamp", "equity", "cash", "exposure")


_fromisoformat = datetime.fromisoformat


# --------------------------------------------------------------------------------------------
# JSON bytes


@contextmanager
def gc_paused() -> Iterator[None]:
    """Suspend the cyclic garbage collector while a whole state is converted, to halve the time.

    Encoding or decoding a large state allocates tens of thousands of dicts and objects, which
    sets off repeated full collections that walk the entire heap; none of these objects form
    cycles, so there is nothing for the collector to find. Collection resumes afterwards (the
    pause is process-wide and lasts only as long as the conversion).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _json_default(value: Any) -> Any:
    """Encode what orjson does not know natively: datetime subclasses, typed arrays and numpy/pandas numbers."""
    if isinstance(value, datetime):  # pandas.Timestamp and other subclasses
        return value.isoformat()
    if isinstance(value, (array, TailColumn)):  # the valuation columns (state/valuation.py)
        return value.tolist()
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    raise TypeError(f"cannot store a {type(value).__name__} in the state: {value!r}")


def dumps_json(obj: Any) -> bytes:
    """Encode a JSON value the way the codec does: compact UTF-8 ending in a newline.

    Datetimes may be left as objects: orjson writes them as RFC 3339 text, the same text as
    ``isoformat()`` for every UTC offset in whole minutes.
    """
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_APPEND_NEWLINE)


def _right_sized(data: bytes) -> bytes:
    """``data`` copied to bytes of its own length, for an encoding kept beyond the call that made it.

    orjson (3.13) returns bytes that keep the whole buffer it wrote into: about 32 KiB of the
    allocator's for a position of 2 KiB, of which it leaves about 8 KiB resident. Kept by the
    dozen (the positions of a block not yet complete), they cost 14 times their length in the heap
    and scatter 32 KiB holes through it when they go.
    """
    return bytes(memoryview(data))


def loads_json(data: bytes | str) -> Any:
    """Parse JSON text; raises ValueError (orjson.JSONDecodeError) when it is not valid JSON."""
    return orjson.loads(data)


# --------------------------------------------------------------------------------------------
# Encoding: objects → dicts. The builders leave datetimes as objects, because orjson formats
# them ten times faster than ``isoformat()``; state_to_dict then turns them into text.


def _instrument_to_dict(i: Instrument) -> dict[str, Any]:
    """One Instrument as a dict."""
    return {
        "id": i.id,
        "symbol": i.symbol,
        "asset_type": i.asset_type,
        "quantity_step": i.quantity_step,
        "min_notional": i.min_notional,
        "quote_currency": i.quote_currency,
    }


def _fill_to_dict(f: Fill) -> dict[str, Any]:
    """One Fill as a dict (datetimes as objects)."""
    return {
        "id": f.id,
        "order_id": f.order_id,
        "quantity": f.quantity,
        "price": f.price,
        "at": f.at,
        "fee": f.fee,
        "fee_currency": f.fee_currency,
        "venue_trade_id": f.venue_trade_id,
        "slippage": f.slippage,
        "realised_pnl": f.realised_pnl,
        "fee_price": f.fee_price,
        "fee_price_source": f.fee_price_source,
        "fee_in_base": f.fee_in_base,
    }


def _value(member: Any) -> Any:
    """An enum member's value, None as it is."""
    return None if member is None else member.value


def _order_to_dict(o: Order) -> dict[str, Any]:
    """One Order with its fills as a dict (enums as their values, datetimes as objects)."""
    return {
        "id": o.id,
        "client_order_id": o.client_order_id,
        "position_id": o.position_id,
        "instrument_id": o.instrument_id,
        "purpose": o.purpose.value,
        "side": o.side.value,
        "created_at": o.created_at,
        "status": o.status.value,
        "type": o.type.value,
        "time_in_force": o.time_in_force.value,
        "quantity": o.quantity,
        "value": o.value,
        "limit_price": o.limit_price,
        "stop_price": o.stop_price,
        "reference_price": o.reference_price,
        "venue_order_id": o.venue_order_id,
        "status_reason": o.status_reason,
        "reject_reason": _value(o.reject_reason),
        "trigger": _value(o.trigger),
        "trigger_price": o.trigger_price,
        "note": o.note,
        "submitted_at": o.submitted_at,
        "updated_at": o.updated_at,
        "closed_at": o.closed_at,
        "fills": [_fill_to_dict(f) for f in o.fills],
    }


def position_to_dict(p: Position) -> dict[str, Any]:
    """One Position with its orders as a dict (datetimes as objects); pass the result to dumps_json."""
    return {
        "id": p.id,
        "instrument_id": p.instrument_id,
        "opened_at": p.opened_at,
        "direction": p.direction,
        "quantity": p.quantity,
        "cost_basis": p.cost_basis,
        "realised_pnl": p.realised_pnl,
        "fees_paid": p.fees_paid,
        "stop_loss": p.stop_loss,
        "take_profit": p.take_profit,
        "trailing_stop_pct": p.trailing_stop_pct,
        "high_water": p.high_water,
        "high_water_at": p.high_water_at,
        "stop_loss_pct": p.stop_loss_pct,
        "take_profit_pct": p.take_profit_pct,
        "last_price": p.last_price,
        "last_valued_at": p.last_valued_at,
        "dust_quantity": p.dust_quantity,
        "closed_at": p.closed_at,
        "orders": [_order_to_dict(o) for o in p.orders],
    }


class PositionFragments:
    """Encoded JSON of what a state only appends to, kept between writes of the same state.

    A running executor writes its whole state again and again (compaction, the public /state
    snapshot); with this cache each write encodes only what changed since the last one:

    - closed and failed positions, which never change once in those lists: encoded as they are
      appended, in blocks of :data:`POSITION_BLOCK` positions kept once complete;
    - the valuation columns, which grow a row per cycle: encoded in blocks of
      :data:`COLUMN_BLOCK` rows, a block kept once a later row exists (only the newest row of a
      series may be replaced in place, see ``ValuationSeries.append``).

    A list is followed by identity, length and last item, a column by identity and length: a
    reloaded state, a replaced list or a shrunk column is encoded afresh. The bytes are exactly
    those of encoding without the cache. A kept block is the same ``bytes`` object from write
    to write, which lets :func:`dumps_state_parts`'s callers keep work done on it (the gzip of
    the public snapshot). One cache per state owner.

    ``spills`` (a running executor's publication cache) maps a list's name (``closed``, ``failed``)
    or a valuation column's (``timestamp``, ``equity``, ``cash``, ``exposure``) to the
    :class:`~tradeexecutor.spill.Spill` its complete blocks go to: they are then ranges of that
    file, not bytes in memory, and :func:`dumps_state_parts` gives them as such. (The columns' JSON
    is about 65 bytes a row, a row a cycle for the life of a running executor.)
    """

    def __init__(self, spills: dict[str, Spill] | None = None) -> None:
        self._spills = dict(spills or {})
        self._lists: dict[str, tuple[Appended[Position], _Blocks]] = {}
        self._columns: dict[str, tuple[Any, _Blocks]] = {}
        #: While dumps_state_parts runs: the pieces of each array, in the order of their markers.
        self._parts: list[list[Piece]] | None = None

    def spills(self) -> list[Spill]:
        """The spill files of the position lists and the valuation columns."""
        return list(self._spills.values())

    def positions(self, name: str, positions: Sequence[Position]) -> orjson.Fragment:
        """The JSON array of a list of finished positions (``name`` tells the lists apart).

        A spill found damaged (a read here, or a reader on another thread) is given up: the list is
        encoded afresh from ``positions`` and kept in memory, with one warning naming the file.
        """
        return unless_damaged(self._spills.get(name), lambda: self._positions(name, positions),
                              lambda: self._forget_spill(name))

    def _forget_spill(self, name: str) -> None:
        del self._spills[name]
        self._lists.pop(name, None)  # start over
        self._columns.pop(name, None)

    def _positions(self, name: str, positions: Sequence[Position]) -> orjson.Fragment:
        spill = self._spills.get(name)
        follower, blocks = self._lists.get(name) or (Appended(), _Blocks(POSITION_BLOCK, spill))
        followed, new = follower.appended(positions)
        if not followed:
            blocks = _Blocks(POSITION_BLOCK, spill)  # encoded afresh (a spill's earlier ranges stay as they are)
        self._lists[name] = (follower, blocks)
        if new:
            blocks.add([_right_sized(orjson.dumps(position_to_dict(p), default=_json_default)) for p in new])
        return self._array(blocks.pieces())

    def column(self, name: str, values: Any) -> orjson.Fragment:
        """The JSON array of a valuation column (an ``array``), its complete blocks kept (in its spill, if any).

        A damaged spill is given up as in :meth:`positions`: the column is encoded afresh, in memory.
        """
        return unless_damaged(self._spills.get(name), lambda: self._column(name, values),
                              lambda: self._forget_spill(name))

    def columns(self, columns: Mapping[str, Any]) -> dict[str, orjson.Fragment]:
        """The JSON arrays of a series' columns (:meth:`column` of each), blocks not kept yet encoded block-major.

        A block of every column, then the next block of every column: a running executor's older rows
        come back from its ledger a block at a time, one query for a block's four columns (``OlderRows``
        keeps the others of a range), so the first publication after a start reads the history once,
        never holding more than a block of it. The bytes are those of :meth:`column` taken one by one.
        """
        rows = min((len(values) for values in columns.values()), default=0)
        complete = (rows - 1) // COLUMN_BLOCK * COLUMN_BLOCK if rows else 0
        kept = min((self._kept_rows(name, values) for name, values in columns.items()), default=complete)
        for upto in range(kept + COLUMN_BLOCK, complete, COLUMN_BLOCK):  # the last block: column() below
            self.keep_blocks(columns, upto)
        return {name: self.column(name, values) for name, values in columns.items()}

    def keep_blocks(self, columns: Mapping[str, Any], upto: int) -> None:
        """Encode and keep each column's complete blocks before row ``upto`` (a block of each column in turn).

        What :meth:`columns` does block by block; the start-up's pass (``daemon/publish.py``) calls it
        beside the other readers of the same block, so the ledger is read once.
        """
        for name, values in columns.items():
            self._keep_blocks(name, values, upto)

    def _keep_blocks(self, name: str, values: Any, upto: int) -> None:
        unless_damaged(self._spills.get(name), lambda: self._column(name, values, upto),
                       lambda: self._forget_spill(name))

    def _kept_rows(self, name: str, values: Any) -> int:
        """Rows of ``values`` whose blocks are kept (0 when the column is not the one followed)."""
        entry = self._columns.get(name)
        if entry is None:
            return 0
        known, blocks = entry
        return blocks.items if known is values and len(values) >= blocks.items else 0

    def _column(self, name: str, values: Any, upto: int | None = None) -> orjson.Fragment:
        """The column's array, its complete blocks kept; with ``upto``, only its blocks before that row kept (no array)."""
        rows = len(values)
        spill = self._spills.get(name)
        known, blocks = self._columns.get(name) or (None, _Blocks(COLUMN_BLOCK, spill))
        if known is not values or rows < blocks.items:
            blocks = _Blocks(COLUMN_BLOCK, spill)  # encoded afresh (a spill's earlier ranges stay as they are)
        self._columns[name] = (values, blocks)  # held, so its id cannot be reused by another column
        # A block is kept once a row after it exists: only the newest row may change in place.
        complete = (rows - 1) // COLUMN_BLOCK * COLUMN_BLOCK if rows else 0
        if upto is not None:
            complete = min(complete, upto // COLUMN_BLOCK * COLUMN_BLOCK)
        while blocks.items < complete:
            start = blocks.items
            blocks.add_block(_dumps_rows(values[start:start + COLUMN_BLOCK]), COLUMN_BLOCK)
        if upto is not None:
            return orjson.Fragment(b"")
        return self._array(blocks.pieces(_dumps_rows(values[blocks.items:])))

    def _array(self, pieces: list[Piece]) -> orjson.Fragment:
        """The array as one fragment, or a marker for dumps_state_parts to replace by its pieces."""
        if self._parts is not None:
            self._parts.append(pieces)
            return orjson.Fragment(b"\x00%d\x00" % (len(self._parts) - 1))
        return orjson.Fragment(joined(pieces))


#: Finished positions encoded together and kept once complete.
POSITION_BLOCK = 32
#: Rows of a valuation column encoded together and kept once complete (a running executor's tail keeps
#: whole blocks of these in memory: state/valuation.py).
COLUMN_BLOCK = ROWS_BLOCK


def _dumps_rows(values: Any) -> bytes:
    """Rows of a column as JSON array items without brackets (a typed or numpy array's tolist; a list as it is)."""
    rows = values.tolist() if hasattr(values, "tolist") else list(values)
    return orjson.dumps(rows, default=_json_default)[1:-1]


#: Kept blocks of one size merged into one block of the next (so an array of n items is O(log n) pieces).
BLOCK_MERGE = 16


class _Blocks:
    """The body of a growing JSON array as complete blocks of ``size`` items and a tail.

    A block after the first carries its separating comma (``,a,b,c``), so the array's pieces are
    the blocks themselves, one after another, with no small piece between them. Every
    :data:`BLOCK_MERGE` blocks of one level are joined into one block of the next, so a long array
    is a few dozen pieces, not thousands (a new, larger block is encoded and compressed once).

    With a ``spill`` each block is written to its file once and kept as its range; a merged block
    is the range of the blocks it joins (written one after another), its sha256 taken from
    hashes that follow each level's bytes as they are written, so nothing is read back.
    """

    def __init__(self, size: int, spill: Spill | None = None) -> None:
        self.size = size
        self.spill = spill
        #: With a spill: the sha256 of the bytes since the last block of level >= i + 1 (the next merged block of level i + 1).
        self._hashes = [hashlib.sha256()]
        self.blocks: list[Piece] = []
        self._levels: list[int] = []  # each block's level: 0 for size items, 1 for BLOCK_MERGE of those...
        self.items = 0  # items in complete blocks
        self.open: list[bytes] = []  # encoded items after them (lists of positions only)
        self._joined_open = b""  # those joined, the same object until an item is added

    def add(self, encoded: list[bytes]) -> None:
        """Items appended to a list of positions: complete blocks are joined and kept."""
        self.open.extend(encoded)
        while len(self.open) >= self.size:
            self.add_block(b",".join(self.open[:self.size]), self.size)
            del self.open[:self.size]
        self._joined_open = self._tail(b",".join(self.open))

    def add_block(self, block: bytes, items: int) -> None:
        data = self._tail(block)
        spill = self.spill
        if spill is None:
            self.blocks.append(data)
        else:
            for hasher in self._hashes:
                hasher.update(data)
            self.blocks.append(spill.keep(data))
        self._levels.append(0)
        self.items += items
        levels = self._levels
        while len(levels) >= BLOCK_MERGE and len(set(levels[-BLOCK_MERGE:])) == 1:
            level = levels[-1]
            merged: Piece
            if spill is None:
                merged = b"".join(self.blocks[-BLOCK_MERGE:])  # type: ignore[arg-type]  # bytes without a spill
            else:
                hashes = self._hashes
                if len(hashes) == level + 1:  # the first block of a new level: every byte so far
                    hashes.append(hashes[level].copy())
                merged = spill.span(self.blocks[-BLOCK_MERGE:], hashes[level].digest())
                for lower in range(level + 1):
                    hashes[lower] = hashlib.sha256()
            del self.blocks[-BLOCK_MERGE:], levels[-BLOCK_MERGE:]
            self.blocks.append(merged)
            levels.append(level + 1)

    def _tail(self, items: bytes) -> bytes:
        """Items that follow the kept blocks, with the comma that separates them from those."""
        return b"," + items if items and self.blocks else items

    def pieces(self, tail: bytes | None = None) -> list[Piece]:
        """``[``, the blocks, the rest (``tail`` for a column, else the open items) and ``]``: the array in pieces."""
        rest = self._joined_open if tail is None else self._tail(tail)
        return [b"[", *self.blocks, rest, b"]"] if rest else [b"[", *self.blocks, b"]"]


def _portfolio_to_dict(p: Portfolio, *, head_only: bool, fragments: PositionFragments | None = None) -> dict[str, Any]:
    """The portfolio as a dict; ``head_only`` leaves out closed and failed positions."""
    d: dict[str, Any] = {
        "cash": p.cash,
        "open_positions": [position_to_dict(x) for x in p.open_positions],
    }
    if not head_only and fragments is not None:
        d["closed_positions"] = fragments.positions("closed", p.closed_positions)
        d["failed_positions"] = fragments.positions("failed", p.failed_positions)
    elif not head_only:
        d["closed_positions"] = [position_to_dict(x) for x in p.closed_positions]
        d["failed_positions"] = [position_to_dict(x) for x in p.failed_positions]
    d["next_position_id"] = p.next_position_id
    d["next_order_id"] = p.next_order_id
    d["next_fill_id"] = p.next_fill_id
    d["fees_paid"] = p.fees_paid
    d["fee_asset_balances"] = dict(p.fee_asset_balances)
    return d


def _state_to_dict(s: State, *, head_only: bool = False, fragments: PositionFragments | None = None) -> dict[str, Any]:
    """The state as a dict with datetimes as objects and valuation columns shared with the state.

    ``head_only`` leaves out what only grows (closed and failed positions, valuation columns):
    the part of the state a per-cycle log record carries in full.
    """
    d: dict[str, Any] = {
        "schema_version": s.schema_version,
        "name": s.name,
        "strategy_version": s.strategy_version,
        "created_at": s.created_at,
        "instruments": [_instrument_to_dict(i) for i in s.instruments],
        "portfolio": _portfolio_to_dict(s.portfolio, head_only=head_only, fragments=fragments),
    }
    if not head_only:
        v = s.valuations
        d["valuations"] = {
            "timestamp": v.timestamp,
            "equity": v.equity,
            "cash": v.cash,
            "exposure": v.exposure,
        }
        if fragments is not None:
            d["valuations"] = fragments.columns(d["valuations"])
    d["last_completed_cycle"] = s.last_completed_cycle
    d["cycles_completed"] = s.cycles_completed
    d["replay_cursor"] = s.replay_cursor
    d["initial_cash"] = s.initial_cash
    d["last_bar_at"] = s.last_bar_at
    d["risk"] = s.risk.to_dict()
    return d


def state_head_to_dict(state: State) -> dict[str, Any]:
    """The state without closed/failed positions and valuation columns; pass the result to dumps_json."""
    return _state_to_dict(state, head_only=True)


def _iso(value: Any) -> Any:
    """Same result as state.timestamps.encode_datetime."""
    return None if value is None else value.isoformat()


#: The datetime fields of an order.
_ORDER_TIMES = ("created_at", "submitted_at", "updated_at", "closed_at")


def _position_datetimes_to_text(d: dict[str, Any]) -> None:
    """Replace the datetimes of a position dict, its orders and their fills with ISO text, in place."""
    d["opened_at"] = _iso(d["opened_at"])
    d["last_valued_at"] = _iso(d["last_valued_at"])
    d["closed_at"] = _iso(d["closed_at"])
    for o in d["orders"]:
        for key in _ORDER_TIMES:
            o[key] = _iso(o[key])
        for f in o["fills"]:
            f["at"] = _iso(f["at"])


def state_to_dict(state: State) -> dict[str, Any]:
    """The state as plain JSON types, equal to ``state.to_dict(encode_json=True)`` but much faster."""
    d = _state_to_dict(state)
    d["created_at"] = _iso(d["created_at"])
    d["last_completed_cycle"] = _iso(d["last_completed_cycle"])
    d["last_bar_at"] = _iso(d["last_bar_at"])
    portfolio = d["portfolio"]
    for key in ("open_positions", "closed_positions", "failed_positions"):
        for position in portfolio[key]:
            _position_datetimes_to_text(position)
    d["valuations"] = {key: list(column) for key, column in d["valuations"].items()}
    return d


def dumps_state(state: State, fragments: PositionFragments | None = None) -> bytes:
    """The state as compact UTF-8 JSON ending in a newline: the content of a full snapshot file.

    Pass the owner's ``fragments`` cache to encode only what changed since the last call.
    """
    if fragments is not None:
        return joined(dumps_state_parts(state, fragments))
    with gc_paused():
        d = _state_to_dict(state)
        data = dumps_json(d)
        del d  # freed while the collector is still paused
    return data


def dumps_state_parts(state: State, fragments: PositionFragments) -> list[Piece]:
    """dumps_state's bytes in pieces whose join is the file: kept blocks are the same objects from call to call.

    The arrays that only grow are written as markers (a NUL byte, which encoded JSON never holds:
    orjson escapes control characters in strings) and replaced by their pieces.
    """
    fragments._parts = []  # noqa: SLF001 - the cache and this function are one mechanism
    try:
        with gc_paused():
            skeleton = dumps_json(_state_to_dict(state, fragments=fragments))
        arrays = fragments._parts  # noqa: SLF001
    finally:
        fragments._parts = None  # noqa: SLF001
    parts: list[Piece] = []
    for index, text in enumerate(skeleton.split(b"\x00")):
        if index % 2:
            parts.extend(arrays[int(text)])
        else:
            parts.append(text)
    return parts


# --------------------------------------------------------------------------------------------
# Decoding: dicts → objects. Errors here are plain TypeError/ValueError/KeyError; the public
# entry points turn them into StateCorruptError naming the source.


def _dt(value: Any) -> datetime | None:
    """Same result as state.timestamps.decode_datetime: ISO text to an aware datetime (naive = UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    parsed = _fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _fields(d: Any, what: str) -> dict[str, Any]:
    """A copy of a JSON object's fields, to build ``what`` from; TypeError for anything else."""
    if type(d) is not dict:
        raise TypeError(f"{what} is a {type(d).__name__}, not a JSON object")
    return d.copy()


def _list(items: Any, what: str) -> list[Any]:
    """``items`` itself when it is a JSON array; TypeError for anything else."""
    if type(items) is not list:
        raise TypeError(f"{what} is a {type(items).__name__}, not a list")
    return items


def _instrument_from_dict(d: dict[str, Any]) -> Instrument:
    """One Instrument from its dict."""
    return Instrument(**_fields(d, "an instrument"))


def _fill_from_dict(d: dict[str, Any]) -> Fill:
    """One Fill from its dict."""
    kw = _fields(d, "a fill")
    kw["at"] = _dt(kw["at"])
    return Fill(**kw)


#: Enum fields of an order and their types; the optional ones may be null.
_ORDER_ENUMS: tuple[tuple[str, Any], ...] = (
    ("purpose", OrderPurpose), ("side", OrderSide), ("status", OrderStatus), ("type", OrderType),
    ("time_in_force", TimeInForce),
)
_ORDER_OPTIONAL_ENUMS: tuple[tuple[str, Any], ...] = (("reject_reason", RejectReason), ("trigger", TriggerKind))


def _order_from_dict(d: dict[str, Any]) -> Order:
    """One Order, with its fills, from its dict."""
    kw = _fields(d, "an order")
    for key in _ORDER_TIMES:
        value = kw.get(key)
        if value is not None:
            kw[key] = _dt(value)
    for key, kind in _ORDER_ENUMS:
        if key in kw:
            kw[key] = kind(kw[key])
    for key, kind in _ORDER_OPTIONAL_ENUMS:
        value = kw.get(key)
        if value is not None:
            kw[key] = kind(value)
    if "fills" in kw:
        kw["fills"] = [_fill_from_dict(f) for f in _list(kw["fills"], "fills")]
    return Order(**kw)


def position_from_dict(d: dict[str, Any]) -> Position:
    """One Position, with its orders, from its dict."""
    kw = _fields(d, "a position")
    kw["opened_at"] = _dt(kw["opened_at"])
    for key in ("last_valued_at", "high_water_at"):
        value = kw.get(key)
        if value is not None:
            kw[key] = _dt(value)
    value = kw.get("closed_at")
    if value is not None:
        kw["closed_at"] = _dt(value)
    if "orders" in kw:
        kw["orders"] = [_order_from_dict(o) for o in _list(kw["orders"], "orders")]
    return Position(**kw)


def _portfolio_from_dict(d: dict[str, Any]) -> Portfolio:
    """The portfolio from its dict."""
    kw = _fields(d, "portfolio")
    for key in ("open_positions", "closed_positions", "failed_positions"):
        if key in kw:
            kw[key] = [position_from_dict(x) for x in _list(kw[key], key)]
    return Portfolio(**kw)


def _valuations_from_dict(d: dict[str, Any]) -> ValuationSeries:
    """The valuation columns from their dict; each column is copied into a new typed array."""
    kw = _fields(d, "valuations")
    for key, column in kw.items():
        try:
            kw[key] = array("q" if key == "timestamp" else "d", _list(column, f"valuation column {key!r}"))
        except OverflowError as exc:
            raise ValueError(f"valuation column {key!r} holds a number out of range: {exc}") from exc
    return ValuationSeries(**kw)


def _state_from_dict(d: dict[str, Any]) -> State:
    """The state from its dict (schema 1 is migrated first, in place), raising plain Python errors on a wrong shape."""
    kw = _fields(migrate_state_dict(d), "the top level")
    for key in ("created_at", "last_completed_cycle", "last_bar_at"):
        value = kw.get(key)
        if value is not None:
            kw[key] = _dt(value)
    if "instruments" in kw:
        kw["instruments"] = [_instrument_from_dict(i) for i in _list(kw["instruments"], "instruments")]
    if "portfolio" in kw:
        kw["portfolio"] = _portfolio_from_dict(kw["portfolio"])
    if "valuations" in kw:
        kw["valuations"] = _valuations_from_dict(kw["valuations"])
    if "risk" in kw:  # absent from states written before the risk limits
        kw["risk"] = RiskState.from_dict(kw["risk"])
    return State(**kw)


def _describe(error: Exception) -> str:
    """A one-line description of a shape error."""
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}"
    return " ".join(str(error).split()) or type(error).__name__


def state_from_dict(d: dict[str, Any], *, source: str = "state dict") -> State:
    """Build a State from ``state_to_dict`` (or dataclasses-json) output; StateCorruptError on a wrong shape."""
    try:
        return _state_from_dict(d)
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise StateCorruptError(f"{source} is not a valid state: {_describe(error)}") from error


def check_schema_version(d: Any, *, source: str) -> None:
    """Refuse a parsed state from a newer schema (SchemaVersionError) or without a valid version."""
    if not isinstance(d, dict):
        raise StateCorruptError(
            f"{source} is not a valid state: expected a JSON object, got {type(d).__name__}"
        )
    version = d.get("schema_version")
    if type(version) is not int or version < 1:
        raise StateCorruptError(f"{source} is not a valid state: schema_version is {version!r}")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{source} was written by state schema {version}, but this tradeexecutor reads schema "
            f"{SCHEMA_VERSION} at most; upgrade tradeexecutor to use this state"
        )


def loads_state(data: bytes, *, source: str) -> State:
    """Parse a state file's bytes; StateCorruptError or SchemaVersionError name ``source``."""
    with gc_paused():
        try:
            d = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise StateCorruptError(f"{source} is not valid JSON: {_describe(error)}") from error
        check_schema_version(d, source=source)
        state = state_from_dict(d, source=source)
        del d
    return state


#: Per-record conversions for stores that keep records apart (the ledger keeps one row per order and per fill).
instrument_to_dict = _instrument_to_dict
instrument_from_dict = _instrument_from_dict
order_to_dict = _order_to_dict
order_from_dict = _order_from_dict
fill_to_dict = _fill_to_dict
fill_from_dict = _fill_from_dict

"""Encoded rows kept between publications, so a file of the whole history is rebuilt at the cost of what changed.

A running executor publishes files that list every order or position of its run (``orders.csv``,
``positions.json``). Positions that are closed or failed never change again, so their rows are
encoded once and kept here; each publication encodes only the live rows (open positions) and
splices them in by id. :class:`Appended` tells what was appended to a list since the last look,
and notices a list that was replaced or cut (a reloaded state), so the caller starts over.

:meth:`KeptRows.parts` gives the same bytes as pieces: kept rows in frozen chunks of
:data:`CHUNK_ROWS` rows that are the same ``bytes`` objects from call to call, so whoever holds
a publication (the webhook's ETag, its lazy join) pays for a chunk once, not once a publication.
Each row's bytes are kept once: in its frozen chunk, or in the unfrozen tail until its chunk is
complete (a kept row costs its bytes and two list entries, its id and its offset). Given a
:class:`~tradeexecutor.spill.Spill` (a running executor's caches), frozen chunks go to its file
and the pieces are :class:`~tradeexecutor.spill.Spilled` ranges, not bytes: a kept row then
costs its two list entries and its share of a chunk's range (see :mod:`tradeexecutor.spill`).
Complete chunks are frozen in memory as without a spill (a close costs a chunk, whatever is
still open); a frozen chunk goes to the file only once all its ids lie below the oldest open
position's id (the *closed prefix*, which no later close can land among), so the file is only
appended to and a close out of id order costs the rows from the chunk that holds its place on, not the history.

>>> kept = KeptRows()
>>> kept.add(1, b"a\\n"); kept.add(3, b"c\\n")
>>> kept.joined([(2, b"b\\n")])
b'a\\nb\\nc\\n'
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from tradeexecutor.spill import Piece, Spill, Spilled, joined

__all__ = ["CHUNK_MERGE", "CHUNK_ROWS", "Appended", "KeptRows", "grown"]

T = TypeVar("T")

#: Kept rows are frozen into immutable chunks of this many rows (the pieces :meth:`KeptRows.parts` reuses).
CHUNK_ROWS = 32
#: Every this many chunks of CHUNK_ROWS are merged into one (once), so a long history is few pieces; merged
#: chunks are not merged again, so a live row that falls inside one copies at most CHUNK_ROWS * CHUNK_MERGE rows.
CHUNK_MERGE = 16


def grown(items: Sequence[Any], followed: Sequence[Any] | None, count: int, last: Any) -> bool:
    """Whether ``items`` is the list ``followed``, grown at its end only since it was ``count`` long with ``last``
    at its end. A list shows that by identity (``items[count - 1] is last``). A sequence that reads old items back
    as new objects (a PackedPositions: ``items[i] is items[i]`` fails where it packed them) answers through its own
    ``holds(index, item)``, by something that does not depend on objects, so a follower that fell behind its
    packing still finds its place instead of starting over (and re-encoding every item it already handed on)."""
    if items is not followed or len(items) < count:
        return False
    if not count:
        return True
    holds = getattr(items, "holds", None)
    return bool(holds(count - 1, last)) if holds is not None else items[count - 1] is last


class Appended(Generic[T]):
    """Follows a list that only grows at its end, by identity, length and last item (see :func:`grown`)."""

    def __init__(self) -> None:
        self._items: Sequence[T] | None = None
        self._count = 0
        self._last: T | None = None

    def appended(self, items: Sequence[T]) -> tuple[bool, Sequence[T]]:
        """(True, the items appended since the last call) when ``items`` is the list followed, as it was;
        otherwise (False, every item), and ``items`` is followed from now on."""
        count, last = self._count, self._last
        followed = grown(items, self._items, count, last)
        self._items, self._count, self._last = items, len(items), items[-1] if items else None
        return (True, items[count:] if count else items) if followed else (False, items)  # never a whole copy


class KeptRows:
    """Encoded rows by integer id, joined in id order; live rows are spliced in without copying the kept ones twice.

    The bytes of a row live in one place: the frozen chunk that holds it, or ``_tail`` (the rows
    after the last complete chunk). ``_offsets`` are positions in the concatenation of all rows.

    With a ``spill`` chunks are frozen in memory as without one, and the first ``_spilled`` chunks
    (the *spilled prefix*) are in its file: a chunk moves there, written once, when its ids all
    lie below the first live id (the oldest open position's), so no row can later land inside it.
    Chunks merge in aligned groups of CHUNK_MERGE (rows ``k * CHUNK_ROWS * CHUNK_MERGE`` on): a
    group wholly in memory merges there (and is spilled as one block), one partly spilled merges
    once its last chunk is spilled (one range of the file). A row that closes out of order above
    the spilled prefix rejoins the rows from the chunk that holds its place on (in memory; the
    chunks before it stay as they are, with or without a spill); the spill file is only ever
    appended to. A row below the spilled prefix (which the live ids rule out) joins every row afresh.
    """

    def __init__(self, spill: Spill | None = None) -> None:
        #: Where frozen chunks go (None: they stay in memory as bytes).
        self.spill = spill
        self._group = hashlib.sha256()  # with a spill: the bytes of the unmerged chunks since the last merged one
        self._head: dict[tuple[int, int, int], bytes] = {}  # with a spill: (offset, length, cut) of a row-0 piece -> sha256 without the separator
        self._head_group: Any = None  # the sha256 of the row-0 group's bytes without the separator, while it is unmerged
        self._ids: list[int] = []  # sorted
        self._tail = bytearray()  # the rows not frozen yet, joined in id order
        self._tail_at = 0  # where _tail starts in the concatenation of all rows
        self._offsets = [0]  # where each row starts in the concatenation, and where the last ends
        self._chunks: list[Piece] = []  # frozen rows, in order: chunks of CHUNK_ROWS and merged ones
        self._starts: list[int] = []  # the first row of each chunk
        self._merged: list[bool] = []  # whether each chunk is a merged one
        self._frozen = 0  # rows in the chunks
        self._spilled = 0  # chunks offered to the spill (a prefix of _chunks; always 0 without one)
        self._stripped: tuple[Piece, Piece] = (b"", b"")  # the last first part and it without the separator (see _strip)
        #: Kept rows copied again by adds out of id order (each such add re-joins the rows from the chunk that
        #: holds its place on): a count of work, for the tests and benchmarks.
        self.rejoined = 0
        #: Slices of rows outside whole chunks made by the last parts(), by (first row, end row): the
        #: same objects again while no row is added. Emptied by add().
        self._slices: dict[tuple[int, int], Piece] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: int, row: bytes) -> None:
        """Keep a row; appended when its id is the largest, else spliced into the tail, or the rows from the frozen
        chunk that holds its place on rejoined (in memory, above the spilled prefix), or, below the spilled
        prefix, every row joined afresh (rare: the live ids rule it out)."""
        ids = self._ids
        if not ids or key > ids[-1]:  # the rows before are as they were: so are the slices of them kept
            ids.append(key)
            self._tail += row
            self._offsets.append(self._offsets[-1] + len(row))
            return
        self._slices = {}
        frozen = self._frozen
        if not frozen or key > ids[frozen - 1]:  # among the tail's rows
            first, in_memory = frozen, True
        else:  # from the chunk that holds the key's place on; in the file (below the spilled prefix): every row
            chunk = bisect_right(self._starts, bisect_left(ids, key)) - 1
            in_memory = chunk >= self._spilled
            first = self._starts[chunk] if in_memory else 0
        self.rejoined += len(ids) - first
        if in_memory:  # rows in memory only (the tail, chunks above the spilled prefix)
            rows = [self._slice(index, index + 1) for index in range(first, len(ids))]
        else:  # below the spilled prefix: every row, each chunk read once (a spill's on this thread)
            everything = joined(self._chunks) + bytes(self._tail)
            offsets = self._offsets
            rows = [everything[offsets[index]:offsets[index + 1]] for index in range(len(ids))]
            del everything
        at = bisect_left(ids, key, lo=first)
        if at < len(ids) and ids[at] == key:
            rows[at - first] = row
        else:
            ids.insert(at, key)
            rows.insert(at - first, row)
        del self._offsets[first + 1:]
        offsets = self._offsets
        for row_bytes in rows:
            offsets.append(offsets[-1] + len(row_bytes))
        self._tail, self._tail_at = bytearray(b"".join(rows)), offsets[first]
        if first < frozen:  # freeze them afresh (a spill's earlier ranges stay as they are: readers may hold them)
            kept = bisect_left(self._starts, first)
            del self._chunks[kept:], self._starts[kept:], self._merged[kept:]
            self._frozen = first
            if not first:
                self._spilled = 0
                self._group, self._head, self._head_group = hashlib.sha256(), {}, None

    def joined(self, live: Sequence[tuple[int, bytes]] = (), separator: bytes = b"") -> bytes:
        """Every kept row and the ``live`` ones (sorted by id; a live id replaces a kept one), in id order.

        With a ``separator`` (``b","`` for a JSON array) rows are separated by it; kept rows must
        then have been added with the separator in front (``b"," + row``), which is dropped for the first.
        """
        return joined(self.parts(live, separator))

    def parts(self, live: Sequence[tuple[int, bytes]] = (), separator: bytes = b"") -> list[Piece]:
        """:meth:`joined`'s bytes as pieces whose join they are; complete chunks are the same objects each call."""
        ids = self._ids
        self._freeze(live[0][0] if live and self.spill is not None else None, len(separator))
        slices, self._slices = self._slices, {}
        parts: list[Piece] = []
        start = 0
        for key, row in live:
            at = bisect_left(ids, key, lo=start)
            self._range(start, at, parts, slices)
            parts.append(separator + row)
            start = at + 1 if at < len(ids) and ids[at] == key else at
        self._range(start, len(ids), parts, slices)
        if separator:
            first = next((i for i, part in enumerate(parts) if part), None)
            if first is not None:
                parts[first] = self._strip(parts[first], len(separator))
        return parts

    def _strip(self, part: Piece, cut: int) -> Piece:
        """``part`` without its first ``cut`` bytes; the same object again for the same part (a kept chunk)."""
        source, stripped = self._stripped
        if part is not source:
            if isinstance(part, Spilled):  # a spilled row-0 chunk: its digest without the separator was kept
                stripped = part.spill.cut(part, cut, self._head.get((part.offset, part.length, cut)))
            else:
                stripped = part[cut:]
            self._stripped = (part, stripped)
        return stripped

    def _freeze(self, below: int | None, cut: int) -> None:
        """Freeze every complete chunk not frozen yet, merging aligned groups of CHUNK_MERGE; the frozen rows leave
        the tail (their bytes are kept once, in the chunk). With a spill, each chunk whose ids all lie ``below``
        the first live id (all of them when None) moves to its file, in order, as soon as it is frozen."""
        chunks, starts, merged, offsets, tail, ids = \
            self._chunks, self._starts, self._merged, self._offsets, self._tail, self._ids
        at = self._tail_at
        group = CHUNK_ROWS * CHUNK_MERGE
        while self._frozen + CHUNK_ROWS <= len(ids):
            first = self._frozen
            chunks.append(bytes(tail[offsets[first] - at:offsets[first + CHUNK_ROWS] - at]))
            starts.append(first)
            merged.append(False)
            self._frozen += CHUNK_ROWS
            if self.spill is not None:  # to the file chunk by chunk while it may (a restart compares them so)
                self._spill(below, cut)
            if (self._frozen % group == 0 and len(chunks) - CHUNK_MERGE >= self._spilled
                    and starts[-CHUNK_MERGE] == self._frozen - group):  # a group all in memory: merged there
                whole = b"".join(chunks[-CHUNK_MERGE:])  # type: ignore[arg-type]  # in memory: bytes
                del chunks[-CHUNK_MERGE:], starts[-CHUNK_MERGE:], merged[-CHUNK_MERGE:]
                chunks.append(whole)
                starts.append(self._frozen - group)
                merged.append(True)
        if offsets[self._frozen] > at:
            del tail[:offsets[self._frozen] - at]
            self._tail_at = offsets[self._frozen]
        if self.spill is not None:  # chunks (and merged groups) the oldest open position held back
            self._spill(below, cut)

    def _spill(self, below: int | None, cut: int) -> None:
        """Move the chunks after the spilled prefix whose ids all lie ``below`` to the spill file, in order; a group
        spilled chunk by chunk becomes one range once its last chunk is spilled."""
        assert self.spill is not None
        chunks, starts, merged, ids = self._chunks, self._starts, self._merged, self._ids
        group = CHUNK_ROWS * CHUNK_MERGE
        while self._spilled < len(chunks):
            index = self._spilled
            end = starts[index + 1] if index + 1 < len(starts) else self._frozen
            if below is not None and ids[end - 1] >= below:
                return
            chunk = chunks[index]
            assert isinstance(chunk, bytes)  # after the spilled prefix: in memory
            chunks[index] = self._keep(chunk, starts[index], cut, merged[index])
            self._spilled += 1
            if merged[index] or end % group or index + 1 < CHUNK_MERGE or starts[index + 1 - CHUNK_MERGE] != end - group:
                continue
            whole = self.spill.span(chunks[index + 1 - CHUNK_MERGE:index + 1], self._group.digest())
            begins = end - group
            if begins == 0 and self._head_group is not None and isinstance(whole, Spilled):
                self._head[whole.offset, whole.length, cut] = self._head_group.digest()
            self._group, self._head_group = hashlib.sha256(), None
            del chunks[index + 1 - CHUNK_MERGE:index + 1], starts[index + 1 - CHUNK_MERGE:index + 1]
            del merged[index + 1 - CHUNK_MERGE:index + 1]
            chunks.insert(index + 1 - CHUNK_MERGE, whole)
            starts.insert(index + 1 - CHUNK_MERGE, begins)
            merged.insert(index + 1 - CHUNK_MERGE, True)
            self._spilled = index + 2 - CHUNK_MERGE

    def _keep(self, chunk: bytes, first: int, cut: int, whole: bool) -> Piece:
        """A chunk (a merged group when ``whole``) written to the spill; for row 0's chunk (and its group) the digest
        without the separator too."""
        assert self.spill is not None
        if not whole:  # a group spilled chunk by chunk: its digest, for the range it becomes
            if first % (CHUNK_ROWS * CHUNK_MERGE) == 0:
                self._group = hashlib.sha256()
            self._group.update(chunk)
            if first == 0:
                self._head_group = hashlib.sha256(chunk[cut:])
            elif self._head_group is not None:
                self._head_group.update(chunk)
        piece = self.spill.keep(chunk)
        if first == 0 and isinstance(piece, Spilled):
            self._head[piece.offset, piece.length, cut] = hashlib.sha256(chunk[cut:]).digest()
        return piece

    def _slice(self, start: int, stop: int) -> bytes:
        """The bytes of rows ``start`` to ``stop``, which lie in one chunk or all in the tail."""
        offsets = self._offsets
        if start >= self._frozen:
            at = self._tail_at
            return bytes(self._tail[offsets[start] - at:offsets[stop] - at])
        chunk = bisect_right(self._starts, start) - 1
        base = offsets[self._starts[chunk]]
        piece = self._chunks[chunk]
        data = piece.read() if isinstance(piece, Spilled) else piece  # a spill's: only when rows are joined afresh
        return data[offsets[start] - base:offsets[stop] - base]

    def _range(self, start: int, end: int, parts: list[Piece], slices: dict[tuple[int, int], Piece]) -> None:
        """Append the pieces of kept rows ``start`` to ``end``: whole frozen chunks as they are, the rest copied
        (or the same copy as last time, from ``slices``, when no row was added since)."""
        chunks, starts = self._chunks, self._starts
        while start < end:
            stop = end
            if start < self._frozen:
                chunk = bisect_right(starts, start) - 1
                chunk_end = starts[chunk + 1] if chunk + 1 < len(starts) else self._frozen
                if start == starts[chunk] and chunk_end <= end:
                    parts.append(chunks[chunk])
                    start = chunk_end
                    continue
                stop = min(end, chunk_end)
            piece = slices.get((start, stop))
            if piece is None:
                piece = self._slice(start, stop)
            self._slices[start, stop] = piece
            parts.append(piece)
            start = stop

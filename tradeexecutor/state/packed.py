"""PackedPositions: a running executor's closed positions, the newest as objects, the older ones packed.

A closed position never changes again, yet as objects it costs about 2.9 KB of heap (datetimes,
floats, two Orders and two Fills, their lists and strings: docs/benchmarks.md), kept for the life
of a daemon that may run for months. PackedPositions keeps the newest ``keep`` of them as the
objects they are and packs the older ones, ``block`` at a time, into one zlib-compressed pickle
(about 150 B a position for a strategy's typical orders); reading one back makes new objects,
equal to the packed ones field for field.

It is the list interface the readers of ``Portfolio.closed_positions`` use: ``len``, iteration in
close order, indexing and slicing (a slice is a list), ``append`` when a position closes, ``==``
with a list. What it does not give is identity beyond the newest ``keep``: ``items[i] is items[i]``
only holds there. The followers that remember how far they got in the list (``ListTail``,
``kept_rows.Appended``, the ledger's and state store's marks: ``kept_rows.grown``) remember a count
and the last position they saw, and ask :meth:`PackedPositions.holds` whether it is still there: by
identity among the objects, by its id where it has been packed since (a position's id is unique in
a portfolio, and nothing here is ever replaced or removed). So a follower that fell behind by more
than ``keep`` (a fast replay closes dozens of positions between two publications) still takes only
the positions after its place, reading back just the blocks that hold them.

A position is packed only once every one of its orders is terminal (nothing can change it any
more): a position whose order is still open at the exchange stays an object, and so does every
position after it, until it is done. Backtests keep a plain list (nothing to gain in a run that
ends, and appends stay list appends); the daemon's state uses this (ledger ``keep_closed``).

Every block is packed through one deflate stream a process (:class:`Packer`), not a new compressor a block:
zlib's compressor state is about 260 KiB (window, hash chains, pending buffer: four blocks of 64 KiB, below
glibc's mmap threshold, so from the heap). Made and freed a block, it was carved from the loop thread's arena at
the first pack and stayed there as free space under the packed block kept after it: part of the soak's step of
~250 KiB of RSS at the executor's 96th close, 100-180 KiB smaller with the stream (docs/benchmarks.md, "The first
pack's step"). ``tradeexecutor start`` makes the stream at start
(:func:`take_packer`), written through once so its pages are resident from then on; other processes make it at
their first pack. Each block ends with a full flush (``Z_FULL_FLUSH``): nothing after it refers to what came
before, so each block's bytes are a raw deflate stream that reads back on its own.
"""

from __future__ import annotations

import pickle
import random
import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from tradeexecutor.state.position import Position

__all__ = ["DEFAULT_BLOCK", "DEFAULT_KEEP", "PackedPositions", "Packer", "daemon_keep", "take_packer"]

#: Newest closed positions kept as objects (at least): more than one job closes, so the ledger's commit after it
#: finds its marks among the objects (a follower further behind finds its place by id: ``holds``). Objects cost about 2.9 KB a position and at most ``keep + block`` of them are alive: 96 at 32 and
#: 64, about 0.3 MB, reached after 96 closes (at 256 it was 320, 0.9 MB, which a 1-second strategy closing a
#: position every 10 s reached only after 53 minutes; docs/benchmarks.md, "The soak's executor RSS flat").
DEFAULT_KEEP = 32
#: Positions packed together: zlib finds the repeats between them (field names, classes, currencies).
DEFAULT_BLOCK = 64


def daemon_keep(instruments: int) -> int:
    """Closed positions a running executor over ``instruments`` instruments keeps as objects: DEFAULT_KEEP, or
    twice the instruments when that is more (a job seldom closes more than one position an instrument, so the
    ledger's commit after it finds its marks among the objects; a follower that fell further behind finds its
    place by id, see :meth:`PackedPositions.holds`)."""
    return max(DEFAULT_KEEP, 2 * instruments)


#: zlib's window bits for a raw deflate stream (no header or checksum: a block is a piece of one stream).
_RAW = -zlib.MAX_WBITS
#: Bytes written through a new stream at start: twice its window, so every page of its state is touched.
_WARM_BYTES = 2 << zlib.MAX_WBITS
#: ... in pieces of this many.
_WARM_PIECE = 8192


class Packer:
    """One deflate stream (level 1) that packs block after block, its state allocated once (module docstring)."""

    __slots__ = ("_lock", "_stream")

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the daemon packs on its loop thread; a reader's process may pack elsewhere
        self._stream = zlib.compressobj(1, zlib.DEFLATED, _RAW)
        # Bytes without repeats: every position enters the window and the hash chains and every byte is a literal,
        # so the window, the chains and the pending buffer are all written now rather than at the first pack. In
        # pieces, so that no piece nor its output is a large block of its own.
        filler = random.Random(0)  # noqa: S311 - filler, not a secret
        for _ in range(_WARM_BYTES // _WARM_PIECE):
            self._stream.compress(filler.randbytes(_WARM_PIECE))
        self._stream.flush(zlib.Z_FULL_FLUSH)

    def pack(self, data: bytes) -> bytes:
        """``data`` deflated, ending on a full flush: it reads back alone (:func:`_unpack`)."""
        with self._lock:
            try:
                return self._stream.compress(data) + self._stream.flush(zlib.Z_FULL_FLUSH)
            except BaseException:
                # The stream may hold part of this block (compress returned some output, flush failed): the next
                # block would start mid-block and not read back alone. A fresh stream starts clean (its memory is
                # then taken at this pack, once).
                self._stream = zlib.compressobj(1, zlib.DEFLATED, _RAW)
                raise


_packer: Packer | None = None
_packer_made = threading.Lock()


def take_packer() -> Packer:
    """The process's one :class:`Packer`, made (and its memory taken) by the first call: ``tradeexecutor start``
    calls this at start, so the executor's first pack allocates nothing new."""
    global _packer  # noqa: PLW0603 - one stream a process, made once
    with _packer_made:
        if _packer is None:
            _packer = Packer()
        return _packer


def _pack(positions: list[Position]) -> bytes:
    return take_packer().pack(pickle.dumps(positions, protocol=pickle.HIGHEST_PROTOCOL))


def _unpack(data: bytes) -> list[Position]:
    raw = zlib.decompressobj(_RAW).decompress(data)  # a piece of the stream, complete up to its full flush
    positions: list[Position] = pickle.loads(raw)  # noqa: S301 - our own bytes, never from outside
    return positions


class PackedPositions(Sequence[Position]):
    """Closed positions in close order: the newest as objects, older ones packed (module docstring)."""

    __slots__ = ("_blocks", "_cache", "_tail", "block", "keep")

    def __init__(self, positions: Iterable[Position] = (), *, keep: int | None = None,
                 block: int | None = None) -> None:
        """``positions`` in close order; ``keep`` and ``block`` default to DEFAULT_KEEP and DEFAULT_BLOCK."""
        keep = DEFAULT_KEEP if keep is None else keep
        block = DEFAULT_BLOCK if block is None else block
        if keep < 1 or block < 1:
            raise ValueError("keep and block must be positive")
        #: Newest positions kept as objects (at least this many, once there are).
        self.keep = keep
        #: Positions in one packed block.
        self.block = block
        self._blocks: list[bytes] = []  # block i holds positions [i * block, (i + 1) * block)
        self._tail: list[Position] = []  # the positions after the last block, as objects
        self._cache: tuple[int, list[Position]] | None = None  # the last block read back, for runs of indexing
        for position in positions:
            self.append(position)

    def append(self, position: Position) -> None:
        """A position that closed; the oldest objects are packed once there are ``keep + block`` of them."""
        tail = self._tail
        tail.append(position)
        while len(tail) >= self.keep + self.block:
            head = tail[:self.block]
            if not all(order.is_terminal for p in head for order in p.orders):
                return  # an order may still change: kept as objects until it is done
            self._blocks.append(_pack(head))
            del tail[:self.block]

    @property
    def packed(self) -> int:
        """Positions held packed, not as objects."""
        return len(self._blocks) * self.block

    def packed_bytes(self) -> int:
        """Bytes of the packed blocks (the compressed pickles alone)."""
        return sum(len(data) for data in self._blocks)

    def __len__(self) -> int:
        return len(self._blocks) * self.block + len(self._tail)

    def holds(self, index: int, item: Position) -> bool:
        """Whether ``item`` is the position at ``index`` (0 <= index < len): the object itself while it is one,
        else by id (a packed position reads back as a new object, equal field for field). For followers that
        remember their place (``kept_rows.grown``); reads back at most the one block that holds ``index``."""
        packed = self.packed
        if index >= packed:
            return self._tail[index - packed] is item
        return self._block(index // self.block)[index % self.block].id == item.id

    def _block(self, number: int) -> list[Position]:
        cache = self._cache
        if cache is not None and cache[0] == number:
            return cache[1]
        positions = _unpack(self._blocks[number])
        self._cache = (number, positions)
        return positions

    @overload
    def __getitem__(self, index: int) -> Position: ...

    @overload
    def __getitem__(self, index: slice) -> list[Position]: ...

    def __getitem__(self, index: int | slice) -> Position | list[Position]:
        count = len(self)
        if isinstance(index, slice):
            start, stop, step = index.indices(count)
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self._range(start, stop)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("closed position index out of range")
        packed = self.packed
        if index >= packed:
            return self._tail[index - packed]
        return self._block(index // self.block)[index % self.block]

    def _range(self, start: int, stop: int) -> list[Position]:
        """Positions [start, stop) as a list: whole blocks read back once each, the tail's objects as they are."""
        packed, block = self.packed, self.block
        found: list[Position] = []
        at = start
        while at < min(stop, packed):
            number = at // block
            first = number * block
            found.extend(self._block(number)[at - first:min(stop, first + block) - first])
            at = first + block
        if stop > packed:
            found.extend(self._tail[max(start, packed) - packed:stop - packed])
        return found

    def __iter__(self) -> Iterator[Position]:
        blocks, tail = list(self._blocks), list(self._tail)  # as they are now: an append while iterating is not seen
        for data in blocks:
            yield from _unpack(data)
        yield from tail

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (list, PackedPositions)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __add__(self, other: Sequence[Position]) -> list[Position]:
        """A list of these positions and then ``other``'s, as ``list + list`` gives."""
        return [*self, *other]

    def __radd__(self, other: Sequence[Position]) -> list[Position]:
        return [*other, *self]

    def __repr__(self) -> str:
        return f"PackedPositions({len(self)} positions, {self.packed} packed, keep={self.keep})"

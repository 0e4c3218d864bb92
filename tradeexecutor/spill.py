"""Encoded rows of closed history kept in a file instead of the heap: an append-only spill file per cache.

A running executor publishes files that list its whole history (state.json's closed positions,
positions.json, orders.csv). The rows of finished positions never change, so the publication
caches encode them once (``kept_rows``, ``store.codec``); before this module they kept those
bytes in memory for good, about 6 KB a closed position. A :class:`Spill` writes each kept block
once, at the end of its file, and hands back a :class:`Spilled` piece instead: where the block
lies (offset, length) and its sha256, about a hundred bytes for a block of dozens of rows.
Whoever needs the bytes (the disk writer, the webhook's join, the gzip) reads the range back
with :func:`resolve`, a MiB at a time, and checks it against the digest.

**Append-only for the life of the process.** A range once handed out is never cut or written
again: a publication the disk writer or a webhook join still reads keeps exactly its bytes
while later publications go on. An owner that starts over (a reloaded state) writes its blocks
again at the end; only the caches' closed prefix is spilled (``kept_rows``), so closing
positions out of order changes rows in memory, not ranges of the file.

The file is a cache of what the ledger already holds, so it is never fsynced and never trusted:

- at start-up the owners encode their rows again from the state the ledger gave; each block is
  compared with the bytes at its place in the file and reused when equal; at the first that
  differs (or cannot be read) the file is cut there and written afresh — nothing after that
  place was handed out yet, so no reader can hold it;
- a block that cannot be written (a full disk) stays in memory, as before spill files, with one
  warning naming the file: a cache of the ledger is no reason to stop trading;
- a range read back that is short or whose sha256 differs raises :class:`SpillDamagedError`
  naming the file (nothing half-written: the reader's atomic write is discarded) and marks the
  spill :attr:`~Spill.damaged`; the owner then encodes its rows afresh from the state, in memory
  until the next start rebuilds the file (one warning naming it), so a damaged file is never a
  crash of the loop nor a wrong public file.

Blocks of one owner are written one after another, so a merged block (the caches merge their
blocks into larger ones) is a range of its own without writing anything again: :meth:`Spill.span`.

>>> import tempfile, pathlib
>>> spill = Spill(pathlib.Path(tempfile.mkdtemp()) / "rows.spill")
>>> a, b = spill.keep(b"abc"), spill.keep(b"def")
>>> b"".join(resolve([a, b"-", spill.span([a, b], hashlib.sha256(b"abcdef").digest())]))
b'abc-abcdef'
>>> spill.close()
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from tradeexecutor.errors import StateError

__all__ = ["READ_BYTES", "Piece", "Spill", "SpillDamagedError", "Spilled", "digest_of", "given_up", "joined", "resolve",
           "unless_damaged"]

T = TypeVar("T")

#: A spilled range is read back this many bytes at a time (the largest buffer a reader holds).
READ_BYTES = 1 << 20

logger = logging.getLogger(__name__)

_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class SpillDamagedError(StateError):
    """A spill file's range is not the bytes written there (short, or another sha256): delete it or restart."""


class Spilled:
    """A kept block in a spill file: where it lies and the sha256 of its bytes. ``len()`` is its length."""

    __slots__ = ("digest", "length", "offset", "spill")

    def __init__(self, spill: Spill, offset: int, length: int, digest: bytes) -> None:
        self.spill = spill
        self.offset = offset
        self.length = length
        #: sha256 of the bytes (raw, 32 bytes): the ETag digests take it instead of hashing the bytes again.
        self.digest = digest

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return f"Spilled({self.spill.path.name}, {self.offset}+{self.length})"

    def read(self) -> bytes:
        """The block's bytes, checked (:class:`SpillDamagedError` when they are not those written)."""
        return b"".join(self.spill.chunks(self))


#: What a cache's pieces are: bytes in memory, or a block in a spill file.
Piece = bytes | Spilled


class Spill:
    """One append-only spill file, written by one owner (one thread at a time), read by any thread.

    :meth:`keep` appends a block (or, in the first pass after opening, finds it already there from
    an earlier run). Where the next block goes only moves forward, so no range handed out is ever
    cut or overwritten. Reads take no lock (``os.pread`` of ranges already written).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_BINARY | _O_CLOEXEC, 0o666)
        self._end = 0  # where the next block goes; never moves back
        self._reusable = os.fstat(self._fd).st_size  # bytes from an earlier run, from _end on, not compared yet
        self._lock = threading.Lock()
        #: Set by a reader that found a damaged range; the owner then encodes its rows afresh (see the module).
        self.damaged = False
        #: Set once an owner has given this file up (:func:`given_up`): it warns once, and writes nothing more.
        self.abandoned = False
        #: Blocks written, blocks found already in the file (a restart's reuse), and blocks that could not be
        #: written (kept in memory instead), since the spill was opened.
        self.written = 0
        self.reused = 0
        self.failed = 0

    def __del__(self) -> None:  # the last piece naming the file is gone
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            os.close(fd)
            self._fd = -1

    def close(self) -> None:
        """Close the file (pieces that name it cannot be read afterwards)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def keep(self, data: bytes) -> Piece:
        """Append ``data`` (or find it already at this place in the file) and return its piece.

        When the file cannot be written (a full disk), ``data`` itself is returned, kept in memory
        as before spill files, with a warning: a cache of the ledger is no reason to stop trading.
        """
        digest = hashlib.sha256(data).digest()
        with self._lock:
            at, length = self._end, len(data)
            try:
                if at + length <= self._reusable and _same(self._fd, data, at):
                    self.reused += 1
                else:
                    if at < self._reusable:  # an earlier run's bytes differ from here: nobody holds them, cut
                        logger.info("spill file %s: an earlier run's bytes differ from byte %d on (or end there); "
                                    "rewriting it from there from the state", self.path, at)
                        os.ftruncate(self._fd, at)
                        self._reusable = at
                    view = memoryview(data)
                    offset = at
                    while view:
                        written = os.pwrite(self._fd, view, offset)
                        view, offset = view[written:], offset + written
                    self.written += 1
            except OSError as exc:
                self._reusable = min(self._reusable, at)  # what lies from here on is not known any more
                if not self.failed:
                    logger.warning("spill file %s cannot be written (%s): keeping those rows in memory", self.path, exc)
                self.failed += 1
                return data
            self._end = at + length
        return Spilled(self, at, length, digest)

    def span(self, pieces: Sequence[Piece], digest: bytes) -> Piece:
        """One piece for consecutive blocks of this file (a merged block); ``digest`` is the sha256 of their bytes.

        Blocks that are not one run of this file (one was kept in memory: :meth:`keep` could not
        write it) are joined in memory instead, reading the spilled ones back (a damaged one raises
        :class:`SpillDamagedError`, which the owner turns into encoding afresh).
        """
        first, last = pieces[0], pieces[-1]
        spilled = [p for p in pieces if isinstance(p, Spilled) and p.spill is self]
        if len(spilled) != len(pieces) or any(a.offset + a.length != b.offset for a, b in itertools.pairwise(spilled)):
            return joined(pieces)
        assert isinstance(first, Spilled) and isinstance(last, Spilled)
        return Spilled(self, first.offset, last.offset + last.length - first.offset, digest)

    def cut(self, piece: Spilled, cut: int, digest: bytes | None = None) -> Spilled:
        """The piece without its first ``cut`` bytes; ``digest`` is the sha256 of the rest (read back, checked, when None)."""
        if digest is None:
            digest = hashlib.sha256(piece.read()[cut:]).digest()
        return Spilled(self, piece.offset + cut, piece.length - cut, digest)

    def chunks(self, piece: Spilled) -> Iterator[bytes]:
        """The piece's bytes, READ_BYTES at a time; the last chunk is yielded only after the whole range checked out."""
        hasher = hashlib.sha256()
        offset, end = piece.offset, piece.offset + piece.length
        pending: bytes | None = None
        while offset < end:
            try:
                data = _pread(self._fd, min(READ_BYTES, end - offset), offset)
            except OSError as exc:  # closed, or the disk failed: the bytes cannot be had
                raise self._damaged(piece, f"cannot be read ({exc})") from exc
            if not data:
                raise self._damaged(piece, f"ends at byte {offset}")
            hasher.update(data)
            offset += len(data)
            if pending is not None:
                yield pending
            pending = data
        if hasher.digest() != piece.digest:
            raise self._damaged(piece, "holds other bytes than were written there")
        if pending is not None:
            yield pending

    def _damaged(self, piece: Spilled, what: str) -> SpillDamagedError:
        self.damaged = True
        return SpillDamagedError(
            f"spill file {self.path}: bytes {piece.offset}..{piece.offset + piece.length} {what}; "
            "the executor encodes those rows afresh from its state (a restart rebuilds the file)")


def _same(fd: int, data: bytes, offset: int) -> bool:
    """Whether the file holds ``data`` at ``offset`` (a read error counts as a difference: the block is written)."""
    try:
        return _pread(fd, len(data), offset) == data
    except OSError:
        return False


def _pread(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes at ``offset`` (fewer only at the end of the file)."""
    parts: list[bytes] = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            break
        parts.append(data)
        length -= len(data)
        offset += len(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def digest_of(piece: Piece) -> bytes:
    """The sha256 of a piece's bytes (a spilled piece's is kept, not computed)."""
    return piece.digest if isinstance(piece, Spilled) else hashlib.sha256(piece).digest()


def resolve(pieces: Iterable[Piece]) -> Iterator[bytes]:
    """The bytes of the pieces in order: bytes as they are, spilled blocks read back (checked) a MiB at a time."""
    for piece in pieces:
        if isinstance(piece, Spilled):
            yield from piece.spill.chunks(piece)
        else:
            yield piece


def joined(pieces: Iterable[Piece]) -> bytes:
    """The pieces' bytes joined (spilled ones read back and checked)."""
    return b"".join(resolve(pieces))


def given_up(spill: Spill, error: SpillDamagedError | None = None) -> None:
    """Log (once, naming the file) that the owner of ``spill`` encodes its rows afresh and keeps them in memory.

    Called by an owner on the loop's thread when a read of its spill failed (``error``) or a reader
    on another thread marked the spill :attr:`~Spill.damaged`: the public files stay right, the
    memory is what it was before spill files, and the next start rebuilds the file.
    """
    if not spill.abandoned:
        spill.abandoned = True
        what = str(error) if error is not None else f"spill file {spill.path} was found damaged by a reader"
        logger.warning("%s; those rows are encoded afresh from the state and kept in memory until a restart", what)


def unless_damaged(spill: Spill | None, build: Callable[[], T], forget: Callable[[], None]) -> T:
    """``build()`` of an owner whose kept rows live in ``spill``; when that spill is damaged, given up and built afresh.

    The one give-up rule of every spill's owner (the publication caches): a spill a reader on another
    thread marked :attr:`~Spill.damaged` is given up before building; a build that finds it damaged
    (:class:`SpillDamagedError`) gives it up and builds again. Giving up is :func:`given_up` (one
    warning naming the file) and the owner's ``forget``, which drops the spill and what it kept, so
    the next build encodes the rows afresh from the state, in memory. Without a spill (or once given
    up) a :class:`SpillDamagedError` is not this spill's and propagates.
    """
    if spill is not None and spill.damaged:
        given_up(spill)
        forget()
        spill = None
    try:
        return build()
    except SpillDamagedError as error:
        if spill is None:  # pragma: no cover - nothing is read back without a spill
            raise
        given_up(spill, error)
        forget()
        return build()

"""Publishing: the loop builds the public files once per change; the webhook serves those bytes.

The files, by name under ``public/``:

- ``state.json`` — exactly ``dumps_state(state)``;
- ``state.json.gz`` — the same bytes gzip-compressed (fixed mtime, so equal states give equal files);
- ``orders.csv`` — the orders CSV (``stats.trades_csv``, the backtest trades CSV's columns; the
  store may not import stats, a sibling layer, so the caller passes it);
- ``positions.json`` — every position as a JSON list sorted by id, each with its
  ``status`` (open, closed, failed) and ``symbol``, for paged reads;
- ``metadata.json`` — the caller's ``metadata`` plus ``published_at`` and ``etag`` (state.json's).

Two ways, one per kind of owner:

- :func:`public_files` (a running executor, after each change): the files in memory as
  :class:`PublicFile` pieces, with a :class:`PublishCache` kept between calls so closed positions,
  complete valuation blocks and finished orders are encoded once, ETags come from the pieces'
  digests (:class:`PartsDigest`) and joining and compressing wait for the first reader. A
  publication costs what changed, not the history: nothing the size of the state is hashed,
  joined or written on the loop's thread. The webhook serves these from memory;
  :func:`write_public_files` puts them on disk (crash-safely: temp → fsync → rename → fsync dir)
  at a bounded cadence and at the end of a run (``daemon.publish``), only the files whose ETag
  changed since the last write, each from its pieces.
- :func:`publish` (a state published once, a finished backtest): every file built and written
  whole at once; the ETag is the sha256 of state.json, as the webhook derives it from files on disk.

Example (a finished backtest)::

    snapshot = publish(state, files, metadata={"name": state.name, "mode": "backtest"},
                       orders_csv_writer=write_trades_csv)
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import operator
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tradeexecutor.atomic import atomic_write_bytes, atomic_write_pieces
from tradeexecutor.kept_rows import Appended, KeptRows
from tradeexecutor.layout import RunFiles
from tradeexecutor.spill import Piece, Spill, Spilled, digest_of, given_up, joined, resolve, unless_damaged
from tradeexecutor.state import Position, State
from tradeexecutor.store.codec import (
    VALUATION_COLUMNS,
    PositionFragments,
    dumps_json,
    dumps_state,
    dumps_state_parts,
    gc_paused,
    position_to_dict,
)

__all__ = ["GZIP_LEVEL", "SPILL_FILES", "KeptGzip", "OrdersCsvWriter", "PartsDigest", "PositionListing", "PublicFile",
           "PublishCache", "PublishedSnapshot", "etag_of", "positions_document", "public_files", "publish",
           "write_public_files"]

#: Writes the orders CSV of a state to a path, atomically (``stats.write_trades_csv`` does).
OrdersCsvWriter = Callable[[State, Path], object]

#: gzip level of state.json.gz. Measured on a 12.6 MB state: level 3 gives 1.18 MB in ~80 ms,
#: level 6 gives 1.02 MB in ~220 ms, level 9 0.97 MB in ~480 ms; publishing runs on the loop
#: thread, and clients polling with If-None-Match mostly get a 304 anyway.
GZIP_LEVEL = 3


@dataclass(frozen=True)
class PublishedSnapshot:
    """What one publish wrote."""

    #: Strong ETag of state.json (quoted sha256 hex of its bytes), as the webhook sends it.
    etag: str
    #: Bytes of state.json.
    size: int
    #: Bytes of state.json.gz.
    gzip_size: int
    #: Positions in positions.json.
    positions: int
    #: When the files were written.
    published_at: datetime


def etag_of(data: bytes) -> str:
    """The strong ETag of a published file: its sha256 in hex, quoted as HTTP wants."""
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def positions_document(state: State) -> list[dict[str, Any]]:
    """Every position as a dict (datetimes as objects) with ``status`` and ``symbol``, sorted by id."""
    symbols = {instrument.id: instrument.symbol for instrument in state.instruments}
    portfolio = state.portfolio
    rows: list[dict[str, Any]] = []
    for status, positions in (
        ("open", portfolio.open_positions),
        ("closed", portfolio.closed_positions),
        ("failed", portfolio.failed_positions),
    ):
        for position in positions:
            row = position_to_dict(position)
            row["status"] = status
            row["symbol"] = symbols.get(position.instrument_id, "")
            rows.append(row)
    rows.sort(key=lambda row: row["id"])
    return rows


class PositionListing:
    """positions.json of a running executor, with the entries of closed and failed positions kept between writes.

    Finished positions never change, so each is encoded once (:class:`~tradeexecutor.kept_rows.KeptRows`);
    a write encodes only the open positions and splices them in by id. The bytes equal
    ``dumps_json(positions_document(state))``. One listing per state owner; with a ``spill`` the
    kept entries live in its file, not in memory (:mod:`tradeexecutor.spill`).
    """

    def __init__(self, spill: Spill | None = None) -> None:
        #: Where the kept entries go (None: in memory; also once the file was given up, see parts).
        self.spill = spill
        self._kept = KeptRows(spill)
        self._finished: tuple[Appended[Position], Appended[Position]] = (Appended(), Appended())
        self._symbols: dict[int, str] = {}

    def data(self, state: State) -> tuple[bytes, int]:
        """The bytes of positions.json and the number of positions in it."""
        parts, count = self.parts(state)
        return joined(parts), count

    def parts(self, state: State) -> tuple[list[Piece], int]:
        """positions.json as pieces (kept chunks are the same objects from call to call), and its positions; a
        damaged spill is given up and the entries encoded afresh, in memory (:func:`~tradeexecutor.spill.unless_damaged`)."""
        return unless_damaged(self.spill, lambda: self._parts(state), self._forget_spill)

    def _forget_spill(self) -> None:
        self.spill = None
        self._finished = (Appended(), Appended())  # start over

    def _parts(self, state: State) -> tuple[list[Piece], int]:
        symbols = {instrument.id: instrument.symbol for instrument in state.instruments}
        portfolio = state.portfolio
        lists = (("closed", portfolio.closed_positions), ("failed", portfolio.failed_positions))
        changes = [(status, *follower.appended(positions)) for follower, (status, positions) in
                   zip(self._finished, lists, strict=True)]
        if symbols != self._symbols or not all(followed for _, followed, _ in changes):
            self._symbols, self._kept = symbols, KeptRows(self.spill)
            changes = [(status, False, positions) for status, positions in lists]
        for status, _, positions in changes:
            for position in positions:
                self._kept.add(position.id, b"," + _entry(position, status, symbols))
        live = sorted((position.id, _entry(position, "open", symbols)) for position in portfolio.open_positions)
        return [b"[", *self._kept.parts(live, separator=b","), b"]\n"], len(self._kept) + len(live)


def _entry(position: Position, status: str, symbols: dict[int, str]) -> bytes:
    """One positions.json entry: the position's JSON with its ``status`` and ``symbol``."""
    row = position_to_dict(position)
    row["status"] = status
    row["symbol"] = symbols.get(position.instrument_id, "")
    return dumps_json(row)[:-1]


#: Pieces of the snapshot at least this long are compressed on their own and their deflate output kept.
KEPT_PIECE_BYTES = 4 * 1024


class KeptGzip:
    """state.json.gz from the snapshot's pieces, the kept blocks' compressed bytes reused between publications.

    A gzip member holds one deflate stream; a stream may be cut into segments, each compressed by
    a compressor of its own and ended with a full flush (byte-aligned, no reference to earlier
    data), so the compressed form of a block that did not change is valid again at any place in
    a later stream. Only the small changing pieces and new blocks are compressed; the CRC-32 runs
    over every byte (C speed). The file differs from ``gzip.compress`` of the same bytes (a few
    bytes more a block) but decompresses to exactly the snapshot; its header has mtime 0, and the
    pieces are cut the same way for the same state, so equal states give equal files.
    """

    def __init__(self, level: int = GZIP_LEVEL, spill: Spill | None = None) -> None:
        self.level = level
        #: Where the kept segments go (None: they stay in memory).
        self.spill = spill
        #: id(piece) -> (piece, its deflate segment, the piece's CRC-32)
        self._kept: dict[int, tuple[Piece, Piece, int]] = {}
        self._latest = -1  # the newest publication built (see segments' ``publication``)

    def compress(self, parts: Sequence[Piece]) -> bytes:
        """The gzip file of the pieces' bytes."""
        return joined(self.segments(parts))

    def segments(self, parts: Sequence[Piece], publication: int | None = None) -> list[Piece]:
        """The gzip file of the pieces' bytes as pieces: the header, the deflate segments (kept ones reused), the trailer.

        ``publication`` numbers the publication the pieces are from (builds are lazy: a webhook request
        may build a newer one before the disk writer builds an older one). An older one's build uses
        the kept segments but keeps nothing: it neither lets the newer pieces go nor spills its own.

        A kept piece's CRC-32 is kept with its segment and extended over, so a spilled piece is
        read back only when it is new to the gzip (CRC-32 is linear: see :func:`_crc32_extend`).
        Only the segments of spilled pieces (closed history, kept for good) go to the gzip's own
        spill; a large piece in memory (the state's skeleton, a tail of rows) keeps its segment in
        memory, let go with the piece, so the spill grows with the history, not with each build.
        """
        spill = self.spill
        if spill is not None and spill.damaged:  # a reader found a kept segment damaged: compress afresh, in memory
            given_up(spill)
            self.spill, self._kept = None, {}
        current = publication is None or publication >= self._latest
        kept: dict[int, tuple[Piece, Piece, int]] = {}
        out: list[Piece] = [_GZIP_HEADER]
        pending: list[bytes] = []
        crc = size = 0
        for piece in parts:
            size += len(piece)
            if len(piece) < KEPT_PIECE_BYTES:
                data = piece.read() if isinstance(piece, Spilled) else piece
                crc = zlib.crc32(data, crc)
                pending.append(data)
                continue
            if pending:
                out.append(self._segment(b"".join(pending), zlib.Z_FULL_FLUSH))
                pending = []
            entry = self._kept.get(id(piece))
            if entry is None or entry[0] is not piece:
                entry = self._compressed(piece, keep=current)  # holding the piece keeps its id unique
            kept[id(piece)] = entry
            crc = _crc32_extend(crc, entry[2], len(piece))
            out.append(entry[1])
        out.append(self._segment(b"".join(pending), zlib.Z_FINISH))
        out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
        if current:
            self._kept = kept  # pieces no longer in the snapshot are let go
            if publication is not None:
                self._latest = publication
        return out

    def _compressed(self, piece: Piece, keep: bool = True) -> tuple[Piece, Piece, int]:
        """A large piece's kept entry: it, its deflate segment ended by a full flush, its CRC-32 (the segment of a
        spilled piece goes to the gzip's spill when ``keep``; that of a piece in memory stays in memory)."""
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, -zlib.MAX_WBITS)
        crc = 0
        out: list[bytes] = []
        for data in resolve([piece]):
            crc = zlib.crc32(data, crc)
            out.append(compressor.compress(data))
        out.append(compressor.flush(zlib.Z_FULL_FLUSH))
        segment = b"".join(out)
        if self.spill is None or not keep or not isinstance(piece, Spilled):
            return piece, segment, crc
        return piece, self.spill.keep(segment), crc

    def _segment(self, data: bytes, mode: int) -> bytes:
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, -zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush(mode)


#: Zero bytes, for extending a CRC-32 over a piece's length without its bytes.
_ZEROS = bytes(1 << 16)


def _crc32_extend(crc: int, piece_crc: int, length: int) -> int:
    """The CRC-32 of (what gave ``crc``) followed by a piece of ``length`` bytes whose own CRC-32 is ``piece_crc``.

    CRC-32 is affine in the message: crc(A + B) = crc(A + zeros) ^ crc(B) ^ crc(zeros), zeros
    as long as B. Running over zeros is the C loop of zlib.crc32 over a small buffer held once,
    so a history's kept pieces cost no reads and no memory, only a pass of their length.
    """
    zero = 0
    left = length
    while left:
        step = min(left, len(_ZEROS))
        view = _ZEROS if step == len(_ZEROS) else _ZEROS[:step]
        crc = zlib.crc32(view, crc)
        zero = zlib.crc32(view, zero)
        left -= step
    return crc ^ piece_crc ^ zero


#: gzip's member header: magic, deflate, no flags, mtime 0, no extra flags, OS Unix (gzip.compress's with mtime 0).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"


class PartsDigest:
    """A strong ETag of a document given as pieces, each run of large pieces hashed once while it stays in the document.

    The tag is the sha256 of the pieces in order: a small piece by its length and bytes, each
    maximal run of pieces of at least :data:`KEPT_PIECE_BYTES` (or spilled: their bytes are never read
    on the loop's thread) by one digest — the sha256 of its
    pieces' own sha256s — computed once for those ``bytes`` objects (kept blocks are the same
    objects from publication to publication, so a run of the history's blocks is recognised by
    identity). A run that is the one before with blocks appended at its end (a history growing)
    costs the new blocks and one digest of the run's 32-byte block digests, compared by identity
    at C speed: nothing per block of the history runs in Python. Different bytes always give a
    different tag; the same state gives the same tag again, also after a restart, because its
    pieces are cut by count (blocks of positions, rows and chunks), not by the run's history of
    publications. One digest per document and owner; the loop's thread only.
    """

    def __init__(self) -> None:
        #: id(first piece) -> (the run's pieces, their sha256s, the run's digest); holding the pieces keeps ids unique.
        self._runs: dict[int, tuple[Sequence[Piece], list[bytes], bytes]] = {}
        #: Large pieces the last call hashed on their own (new ones), and runs whose digest it had to make.
        self.hashed = 0
        self.new_runs = 0

    def etag(self, parts: Sequence[Piece]) -> str:
        """The quoted tag of the pieces' bytes cut as ``parts`` (a spilled piece's kept sha256 stands for its bytes)."""
        runs: dict[int, tuple[Sequence[Piece], list[bytes], bytes]] = {}
        outer = hashlib.sha256()
        self.hashed = self.new_runs = 0
        known_digests: dict[int, bytes] | None = None  # id -> sha256 of every large piece known, built when needed
        index, count = 0, len(parts)
        while index < count:
            piece = parts[index]
            if not isinstance(piece, Spilled) and len(piece) < KEPT_PIECE_BYTES:
                outer.update(b"s%d:" % len(piece))
                outer.update(piece)
                index += 1
                continue
            end = index + 1
            while end < count and (isinstance(parts[end], Spilled) or len(parts[end]) >= KEPT_PIECE_BYTES):
                end += 1
            run = parts[index:end]
            known = self._runs.get(id(piece))
            kept = 0 if known is None else _same_prefix(known[0], run)  # the known run's first pieces it still has
            if known is None or kept != len(run) or kept != len(known[0]):
                if known_digests is None:
                    known_digests = {}
                    for pieces, digests, _ in self._runs.values():
                        known_digests.update(zip(map(id, pieces), digests))
                digests = known[1][:kept] if known is not None and kept else []
                for new in run[len(digests):]:
                    digest = known_digests.get(id(new))
                    if digest is None:
                        digest = known_digests[id(new)] = digest_of(new)
                        self.hashed += 1
                    digests.append(digest)
                known = (run, digests, hashlib.sha256(b"".join(digests)).digest())
                self.new_runs += 1
            runs[id(piece)] = known
            outer.update(b"r")
            outer.update(known[2])
            index = end
        self._runs = runs
        return '"' + outer.hexdigest() + '"'


def _same_prefix(known: Sequence[Piece], run: Sequence[Piece]) -> int:
    """How many first pieces of ``run`` are those of ``known``, the same objects (compared at C speed, by halving)."""
    same = min(len(known), len(run))
    if all(map(operator.is_, known[:same], run)):
        return same
    low, high = 0, same  # the first ``low`` pieces are the same, the first ``high`` are not
    while high - low > 1:
        middle = (low + high) // 2
        if all(map(operator.is_, known[low:middle], run[low:middle])):
            low = middle
        else:
            high = middle
    return low


#: The spill files of a running executor's publication caches, by what they keep (under ``RunFiles.spill``).
SPILL_FILES = {"closed": "state-closed.spill", "failed": "state-failed.spill", "positions": "positions.spill",
               "gzip": "state-gzip.spill", "orders": "orders.spill",
               **{column: f"state-{column}.spill" for column in VALUATION_COLUMNS}}


@dataclass
class PublishCache:
    """What a running executor keeps between publications, so each costs what changed (see public_files)."""

    fragments: PositionFragments = field(default_factory=PositionFragments)
    listing: PositionListing = field(default_factory=PositionListing)
    gzip: KeptGzip = field(default_factory=KeptGzip)
    #: Held while the gzip is built: the webhook's threads and the disk writer build it lazily.
    gzip_lock: threading.Lock = field(default_factory=threading.Lock)
    #: A digest per document name, for its ETag.
    digests: dict[str, PartsDigest] = field(default_factory=dict)
    #: Numbers the publications (public_files calls), so an older one's lazy gzip build keeps nothing.
    publications: Iterator[int] = field(default_factory=itertools.count)

    @classmethod
    def spilled(cls, directory: Path) -> PublishCache:
        """A cache whose kept blocks of closed history live in spill files in ``directory`` (a running executor's).

        One file per cache: state.json's closed and failed positions and its valuation columns,
        positions.json's entries, the gzip's segments (orders.csv's lines are the TradesCsv's, with a spill of its own).
        """
        spills = {name: Spill(directory / SPILL_FILES[name]) for name in ("closed", "failed", *VALUATION_COLUMNS)}
        return cls(fragments=PositionFragments(spills), listing=PositionListing(Spill(directory / SPILL_FILES["positions"])),
                   gzip=KeptGzip(spill=Spill(directory / SPILL_FILES["gzip"])))

    def spills(self) -> list[Spill]:
        """The spill files this cache writes (none for an in-memory cache)."""
        found = [*self.fragments.spills(), self.listing.spill, self.gzip.spill]
        return [spill for spill in found if spill is not None]

    def etag(self, name: str, parts: Sequence[Piece]) -> str:
        """The ETag of document ``name`` cut as ``parts``."""
        return self.digests.setdefault(name, PartsDigest()).etag(parts)

    def compress(self, parts: Sequence[Piece], publication: int | None = None) -> list[Piece]:
        """The gzip file of the pieces (of publication number ``publication``), as pieces, under the lock."""
        with self.gzip_lock:
            return self.gzip.segments(parts, publication)


class PublicFile:
    """One public file of one publication, held in memory: its ETag at once, its bytes built on first read.

    Building (compressing, joining the pieces) happens once, on whichever thread reads first (a
    webhook request, the disk writer), never on the loop's. The disk writer takes :meth:`pieces`,
    not :meth:`data`, so it writes the kept blocks as they are instead of first copying the whole
    history into one ``bytes``. Immutable otherwise: any thread may hold it.
    """

    def __init__(self, name: str, etag: str, build: Callable[[], Sequence[Piece]]) -> None:
        #: The file's name under ``public/``.
        self.name = name
        #: Its strong ETag, quoted.
        self.etag = etag
        self._build: Callable[[], Sequence[Piece]] | None = build
        self._pieces: Sequence[Piece] | None = None
        self._data: bytes | None = None
        self._lock = threading.Lock()

    def pieces(self) -> Sequence[Piece]:
        """The file's bytes as pieces in order (built on the first call; the joined bytes once :meth:`data` ran).

        Pieces may be ranges of spill files: read them with :func:`tradeexecutor.spill.resolve`.
        """
        data = self._data
        if data is not None:
            return [data]
        with self._lock:
            if self._data is not None:
                return [self._data]
            if self._pieces is None:
                assert self._build is not None
                self._pieces, self._build = self._build(), None
            return self._pieces

    def data(self) -> bytes:
        """The file's bytes (joined on the first call)."""
        data = self._data
        if data is not None:
            return data
        pieces = self.pieces()
        with self._lock:
            if self._data is None:
                self._data, self._pieces = joined(pieces), None  # the pieces are let go once joined
            return self._data


def public_files(
    state: State,
    files: RunFiles,
    *,
    metadata: Mapping[str, Any],
    orders_csv: Callable[[State], list[Piece]],
    cache: PublishCache,
    now: datetime | None = None,
) -> dict[str, PublicFile]:
    """The public files of ``state`` by name, in memory, at the cost of what changed since the owner's last call.

    The same bytes as :func:`publish` writes (metadata apart from its ``etag``), with ETags from
    :class:`PartsDigest` rather than a hash of each whole file: state.json's is the ``etag`` in
    metadata.json, state.json.gz's is it with ``-gzip`` (a representation of its own). Nothing is
    joined, compressed or written here; :func:`write_public_files` puts them on disk. ``orders_csv``
    gives the orders CSV as pieces (``stats.trades_csv.TradesCsv.parts``).
    """
    published_at = now or datetime.now(UTC)
    publication = next(cache.publications)
    state_parts = dumps_state_parts(state, cache.fragments)
    etag = cache.etag("state", state_parts)
    positions_parts, _ = cache.listing.parts(state)
    csv_parts = orders_csv(state)
    meta = dumps_json({**metadata, "published_at": published_at, "etag": etag})
    documents = [
        PublicFile(files.state_snapshot.name, etag, lambda: state_parts),
        PublicFile(files.state_snapshot_gz.name, etag[:-1] + '-gzip"', lambda: cache.compress(state_parts, publication)),
        PublicFile(files.positions.name, cache.etag("positions", positions_parts), lambda: positions_parts),
        PublicFile(files.orders_csv.name, cache.etag("orders", csv_parts), lambda: csv_parts),
        PublicFile(files.metadata.name, etag_of(meta), lambda: [meta]),
    ]
    return {document.name: document for document in documents}


def write_public_files(files: RunFiles, documents: Mapping[str, PublicFile],
                       written: dict[str, str] | None = None) -> list[str]:
    """Write each file crash-safely into ``public/``, metadata.json last (it names state.json's ETag).

    ``written`` (the writer's memory, name → ETag of the bytes it last put on disk) makes a write
    cost what changed: a file whose ETag equals the one written before is left as it is (an ETag
    changes exactly when the bytes do), and a file is entered only once its rename is done. A
    new writer (an executor starting) has an empty memory, so it writes every file. Each file is
    written piece by piece (:meth:`PublicFile.pieces`), not joined first. Returns the names written.
    """
    files.public.mkdir(parents=True, exist_ok=True)
    last = files.metadata.name
    done: list[str] = []
    for name in [*(name for name in documents if name != last), *([last] if last in documents else [])]:
        document = documents[name]
        if written is not None and written.get(name) == document.etag:
            continue
        atomic_write_pieces(files.public / name, resolve(document.pieces()))
        done.append(name)
        if written is not None:
            written[name] = document.etag
    return done


def publish(
    state: State,
    files: RunFiles,
    *,
    metadata: Mapping[str, Any],
    orders_csv_writer: OrdersCsvWriter,
    now: datetime | None = None,
) -> PublishedSnapshot:
    """Write the public snapshot files of ``state`` in one go (see the module docstring).

    For a state published once (a finished backtest); a running executor keeps its files in memory
    with :func:`public_files`. ``metadata`` must be JSON-friendly (datetimes allowed) and must not
    carry secrets: it is served as it is. Its keys ``published_at`` and ``etag`` are set here.
    """
    published_at = now or datetime.now(UTC)
    public = files.public
    public.mkdir(parents=True, exist_ok=True)
    data = dumps_state(state)
    compressed = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    etag = etag_of(data)
    with gc_paused():
        positions = positions_document(state)
        positions_bytes = dumps_json(positions)
    count = len(positions)
    del positions

    orders_csv_writer(state, files.orders_csv)
    atomic_write_bytes(files.positions, positions_bytes)
    atomic_write_bytes(files.state_snapshot, data)
    atomic_write_bytes(files.state_snapshot_gz, compressed)
    atomic_write_bytes(files.metadata, dumps_json({**metadata, "published_at": published_at, "etag": etag}))
    return PublishedSnapshot(
        etag=etag, size=len(data), gzip_size=len(compressed), positions=count, published_at=published_at
    )

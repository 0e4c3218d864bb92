"""Checks on a ledger's bytes made before SQLite opens it, so a refused file and its neighbours stay untouched.

SQLite itself would quietly make the best of a damaged file: it ignores a WAL that does not
match, drops WAL frames after a bad checksum (committed transactions included) and creates
``-wal``/``-shm`` files beside whatever it opens. So before any connection is made,
:func:`check_files` reads

- the database header: SQLite's magic, our application_id (a foreign SQLite file), the format
  (``user_version``), the page size and, when no WAL is pending, the size against the page count
  (truncation at or inside a page boundary; an empty file);
- the WAL and its shared-memory index (``-shm``): a WAL written by a process that was killed
  still has its ``-shm``, which records how many frames were committed and the WAL's salts. A
  missing WAL, a WAL from another file, or fewer valid frames than committed is refused. Without
  a ``-shm`` only a torn last transaction can be told apart from damage: a complete commit frame
  of the current WAL after a broken frame means a committed transaction would be lost.

Every refusal is a StateCorruptError (SchemaVersionError for a newer format) whose one line names
the file, what is wrong and how to recover.
"""

from __future__ import annotations

import functools
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tradeexecutor.errors import SchemaVersionError, StateCorruptError, StateError
from tradeexecutor.ledger.schema import APPLICATION_ID, LEDGER_FORMAT, MIGRATABLE_FORMATS

__all__ = ["LedgerFiles", "check_files", "wal_valid_frames"]

_MAGIC = b"SQLite format 3\x00"
_WAL_MAGICS = (0x377F0682, 0x377F0683)
_WAL_HEADER = 32
_FRAME_HEADER = 24
_SHM_VERSION = 3007000

#: How to recover, appended to refusals of a damaged ledger.
RECOVER = ("move the ledger and its -wal/-shm files aside and restore them from a backup "
           "(`tradeexecutor state check` explains what is wrong; nothing was changed)")


@dataclass(frozen=True)
class LedgerFiles:
    """The ledger file and the two files SQLite keeps beside it in WAL mode."""

    path: Path

    @property
    def wal(self) -> Path:
        """The write-ahead log: committed transactions not yet copied into the file."""
        return Path(f"{self.path}-wal")

    @property
    def shm(self) -> Path:
        """The WAL's shared-memory index (how many WAL frames are committed)."""
        return Path(f"{self.path}-shm")

    def existing(self) -> list[Path]:
        """Which of the three exist."""
        return [p for p in (self.path, self.wal, self.shm) if p.exists()]

    def wal_pending(self) -> bool:
        """True when the WAL holds at least one frame (a process ended without checkpointing)."""
        try:
            return os.path.getsize(self.wal) > _WAL_HEADER
        except FileNotFoundError:
            return False


def _refuse(path: Path, what: str) -> StateCorruptError:
    return StateCorruptError(f"{path}: {what}; {RECOVER}")


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StateCorruptError(f"{path} cannot be read: {error.strerror or error}") from error


def check_files(files: LedgerFiles, *, older: bool = False) -> bool:
    """Refuse a ledger whose bytes are wrong (see the module docstring); False when there is no ledger yet.

    A ledger of an older format that ``tradeexecutor state migrate`` converts is refused with a
    line saying so (StateError), unless ``older`` (the migration itself reads it).
    """
    path = files.path
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        stray = [p.name for p in (files.wal, files.shm) if p.exists()]
        if stray:
            raise StateCorruptError(
                f"{path} is missing but {', '.join(stray)} exist beside it: the ledger was moved or deleted "
                f"while its write-ahead log was pending; restore the ledger file, or move {', '.join(stray)} "
                "aside to start a new ledger") from None
        return False
    if size == 0:
        raise _refuse(path, "the file is empty (0 bytes), not a ledger")
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise _refuse(path, "not a SQLite database (bad header)")
    application_id, = struct.unpack(">I", header[68:72])
    if application_id != APPLICATION_ID:
        raise StateCorruptError(
            f"{path}: a SQLite database that is not a tradeexecutor ledger (application_id {application_id:#x}); "
            "point --state-dir at the executor's own folder, or move this file away")
    version, = struct.unpack(">I", header[60:64])
    if version > LEDGER_FORMAT:
        raise SchemaVersionError(
            f"{path} has ledger format {version}, but this tradeexecutor reads format {LEDGER_FORMAT} at most; "
            "upgrade tradeexecutor to use this ledger")
    if version < 1:
        raise _refuse(path, f"ledger format {version} is not a valid format")
    if version < LEDGER_FORMAT and not older:
        if version not in MIGRATABLE_FORMATS:
            raise _refuse(path, f"ledger format {version} is not one this tradeexecutor can convert")
        raise StateError(
            f"{path} has ledger format {version}, from before orders and fills had tables of their own; convert it "
            f"once with `tradeexecutor state migrate {path.parent}` (the original is kept beside it), then start again")
    page_size, = struct.unpack(">H", header[16:18])
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise _refuse(path, f"bad page size {page_size} in the header")
    _check_wal(files, page_size)
    if not files.wal_pending():
        if size % page_size:
            raise _refuse(path, f"truncated inside a page ({size} bytes is not a multiple of the "
                                f"{page_size}-byte page)")
        pages, = struct.unpack(">I", header[28:32])
        if header[24:28] == header[92:96] and pages * page_size > size:
            raise _refuse(path, f"truncated: {size // page_size} of its {pages} pages are there")
    return True


def wal_valid_frames(wal: bytes) -> tuple[int, int, bool]:
    """(frames that SQLite would accept, frames up to the last valid commit, a complete commit frame lies after a bad one).

    Follows SQLite's rules: frames count while their salts equal the header's and their
    cumulative checksum matches; the first that does not ends the WAL.
    """
    if len(wal) < _WAL_HEADER:
        return 0, 0, False
    magic, _version, page_size, _seq, salt1, salt2, c1, c2 = struct.unpack(">8I", wal[:_WAL_HEADER])
    if magic not in _WAL_MAGICS:
        raise ValueError("bad WAL magic")
    order = ">" if magic & 1 else "<"
    s0, s1 = _checksum(wal[:24], 0, 0, order)
    if (s0, s1) != (c1, c2):
        raise ValueError("bad WAL header checksum")
    frame_size = _FRAME_HEADER + page_size
    valid = committed = 0
    offset = _WAL_HEADER
    while offset + frame_size <= len(wal):
        pgno, commit, fs1, fs2, fc1, fc2 = struct.unpack(">6I", wal[offset:offset + _FRAME_HEADER])
        if (fs1, fs2) != (salt1, salt2) or pgno == 0:
            break
        s0, s1 = _checksum(wal[offset:offset + 8], s0, s1, order)
        s0, s1 = _checksum(wal[offset + _FRAME_HEADER:offset + frame_size], s0, s1, order)
        if (s0, s1) != (fc1, fc2):
            break
        valid += 1
        if commit:
            committed = valid
        offset += frame_size
    # Past the break: a complete commit frame of this WAL (same salts) was committed, so it is damage.
    later_commit = False
    offset += frame_size
    while offset + frame_size <= len(wal):
        pgno, commit, fs1, fs2 = struct.unpack(">4I", wal[offset:offset + 16])
        if (fs1, fs2) == (salt1, salt2) and commit:
            later_commit = True
            break
        offset += frame_size
    return valid, committed, later_commit


def _checksum(data: bytes, s0: int, s1: int, order: str) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` (a multiple of 8 bytes), continuing from (s0, s1).

    SQLite's loop (``s0 += x[2k] + s1; s1 += x[2k+1] + s0`` over 32-bit words, mod 2**32) is linear:
    the pair (a, b) takes (s0, s1) to M·(s0, s1) + (a, a + b) with M = [[1, 1], [1, 2]]. After n pairs
    (s0, s1) is M**n·(s0, s1) + Σ_k M**(n-1-k)·(a_k, a_k + b_k), which numpy sums in uint64 (its
    wrap-around is exact mod 2**32) with M's powers cached per length: the loop's result, some fifty
    times faster. A restart pays this over its whole WAL (up to thousands of 4 KiB frames).
    """
    words = np.frombuffer(data, dtype=f"{order}u4").astype(np.uint64)
    first, second = words[0::2], words[0::2] + words[1::2]
    (m00, m01, m10, m11), powers = _checksum_powers(len(first))
    t0 = int(powers[0] @ first) + int(powers[1] @ second)
    t1 = int(powers[2] @ first) + int(powers[3] @ second)
    return (m00 * s0 + m01 * s1 + t0) & 0xFFFFFFFF, (m10 * s0 + m11 * s1 + t1) & 0xFFFFFFFF


@functools.lru_cache(maxsize=8)
def _checksum_powers(pairs: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """M**pairs, and the entries (00, 01, 10, 11) of M**(pairs-1-k) for k = 0 .. pairs-1 (mod 2**32) as rows."""
    rows = np.empty((4, pairs), dtype=np.uint64)
    m00, m01, m10, m11 = 1, 0, 0, 1
    for k in range(pairs - 1, -1, -1):
        rows[:, k] = (m00, m01, m10, m11)
        m00, m01, m10, m11 = ((m00 + m01) & 0xFFFFFFFF, (m00 + 2 * m01) & 0xFFFFFFFF,
                              (m10 + m11) & 0xFFFFFFFF, (m10 + 2 * m11) & 0xFFFFFFFF)
    rows.setflags(write=False)
    return (m00, m01, m10, m11), rows


def _shm_header(shm: bytes | None) -> tuple[int, bytes] | None:
    """(committed WAL frames, WAL salts) from a consistent -shm header, or None when it cannot be trusted."""
    if shm is None or len(shm) < 96 or shm[0:48] != shm[48:96]:
        return None
    version, = struct.unpack("=I", shm[0:4])
    if version != _SHM_VERSION or shm[12] != 1:
        return None
    mx_frame, = struct.unpack("=I", shm[16:20])
    return mx_frame, shm[32:40]


def _check_wal(files: LedgerFiles, page_size: int) -> None:
    """Refuse a WAL that is missing, foreign or damaged where committed transactions live."""
    shm = _shm_header(_read(files.shm))  # first: a live writer only adds WAL frames after recording them here
    wal = _read(files.wal)
    committed_frames = shm[0] if shm is not None else 0
    if not wal:
        if committed_frames:
            raise _refuse(files.wal, f"missing or empty, but {files.shm.name} records {committed_frames} committed "
                                     "WAL frames: committed transactions were deleted")
        return
    try:
        valid, last_commit, later_commit = wal_valid_frames(wal)
    except ValueError as error:
        raise _refuse(files.wal, f"damaged write-ahead log ({error})") from None
    if struct.unpack(">I", wal[8:12])[0] != page_size:
        raise _refuse(files.wal, "the write-ahead log belongs to another database (page size differs)")
    if shm is not None and committed_frames:
        if wal[16:24] != shm[1]:
            raise _refuse(files.wal, f"the write-ahead log is not the one {files.shm.name} records "
                                     "(swapped or replaced)")
        if last_commit < committed_frames:
            raise _refuse(files.wal, f"damaged write-ahead log: {committed_frames} frames were committed, "
                                     f"{last_commit} can be read")
    if later_commit:
        raise _refuse(files.wal, f"damaged write-ahead log: a committed transaction follows a bad frame "
                                 f"(frame {valid + 1})")

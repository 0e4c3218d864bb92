"""Crash-safe file writes: a reader sees the old bytes or the new bytes, never a mix, even after a power cut.

Whole files are replaced with the classic sequence — write a temporary file in the same
directory, flush and fsync it, ``os.replace`` it over the target, fsync the directory so the
rename itself is durable. Append-only logs are appended to and fsynced before returning.
A writer that puts several files in one directory may wrap them in :func:`deferred_directory_fsyncs`:
each file is still fsynced before its rename, but the directory is fsynced once, when the block
ends, instead of after every rename (the writer records the files as done only after the block).

Every whole-file writer of the package goes through here (state, crash.json, orders.csv, the
public snapshots, run artifacts), so all of them name their temporary files one way
(``.NAME.<12 hex digits>.tmp``) and give new files one mode (0666 minus the umask, like any
file the process creates). A ``kill -9`` between creating the temporary file and the rename
leaves it behind; :func:`remove_temp_files` clears them when the directory's owner starts
again (while it holds the directory's lock, so no writer is mid-way).

This module sits below every layer that writes files (``store``, ``runstate``, ``stats``,
``runs``, ``daemon``) and imports nothing from the package.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_files", "atomic_write_pieces", "atomic_write_text",
           "deferred_directory_fsyncs",
           "deferred_fsyncs", "fsync_append", "fsync_directory", "fsyncs_deferred", "install_temp_file",
           "remove_temp_files", "sync_finished", "temp_path_for"]

#: Names of temporary files: :func:`temp_path_for`'s, and the ``.NAME.XXXXXXXX.tmp`` (mkstemp) and
#: ``.state.json.bak.PID.tmp`` names earlier versions used, so their leftovers go too.
TEMP_NAME = re.compile(r"^\..+\.tmp$")

_O_BINARY = getattr(os, "O_BINARY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

#: Directories whose fsync the innermost :func:`deferred_directory_fsyncs` block owes, or None outside one.
_PENDING: ContextVar[dict[str, None] | None] = ContextVar("tradeexecutor_pending_directory_fsyncs", default=None)
#: Files whose fsync the innermost :func:`deferred_fsyncs` block owes, or None outside one.
_PENDING_FILES: ContextVar[dict[str, None] | None] = ContextVar("tradeexecutor_pending_file_fsyncs", default=None)


class _Early:
    """The syncs :func:`sync_finished` started in one :func:`deferred_fsyncs` block, on a pool of that block's own
    (never one shared by the process: a forked child would inherit a pool whose threads it does not have).

    Do not fork inside a block once :func:`sync_finished` has run in it: the child inherits this block's pool
    without its threads, and ``ThreadPoolExecutor`` counts the parent's idle threads as its own, so the child's
    next sync waits for ever. Nothing forks there today (the sweep's pool forks its workers before any block)."""

    def __init__(self) -> None:
        self.futures: list[Future[None]] = []
        self.pool: ThreadPoolExecutor | None = None

    def start(self, files: list[str], directories: list[str]) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fsync-early")
        self.futures.append(self.pool.submit(_sync_early, files, directories))

    def wait(self) -> None:
        """Wait for every sync started; then raise the first that failed."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        for future in self.futures:
            future.result()


#: The early syncs of the innermost :func:`deferred_fsyncs` block, or None outside one.
_EARLY: ContextVar[_Early | None] = ContextVar("tradeexecutor_early_fsyncs", default=None)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename, creation or deletion inside ``directory`` durable.

    A no-op where directories cannot be opened (Windows), which has no such requirement.
    """
    try:
        fd = os.open(os.fspath(directory), os.O_RDONLY | _O_CLOEXEC)
    except (PermissionError, IsADirectoryError):  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory_if_there(directory: str) -> None:
    """fsync_directory for a deferred pass: a directory removed since (a staged run discarded on Ctrl+C) is skipped,
    as a removed file is — nothing in it is to be kept, and its parent's fsync makes the removal durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    except (PermissionError, IsADirectoryError):  # pragma: no cover - Windows
        return
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def deferred_directory_fsyncs() -> Iterator[None]:
    """Within the block, fsync each directory a rename or a new log touched once, at the end, not after every file.

    For a writer that puts several files into the same folders in one step (a run folder being
    built, a run's reports): every file's bytes are still fsynced before its rename, so a reader
    never sees a torn file; what a power cut inside the block may lose is a rename itself (the
    old file or no file is seen). So the caller must not record the step as done until the block
    has ended: the directories are fsynced on the way out, also when the block raises (the renames
    that happened are made durable either way). Nested blocks join the outermost one. The pending
    set lives in a context variable, so each thread (and asyncio task) has its own.
    """
    if _PENDING.get() is not None:
        yield
        return
    pending: dict[str, None] = {}
    token = _PENDING.set(pending)
    try:
        yield
    finally:
        _PENDING.reset(token)
        for directory in pending:
            _fsync_directory_if_there(directory)


@contextmanager
def deferred_fsyncs() -> Iterator[None]:
    """Within the block, write files without fsyncing them; fsync each file, then each directory, once at the end.

    Only for files nobody reads until the block has ended: a folder built under a temporary name
    (``.creating-RUN``) and renamed into place afterwards. A power cut inside the block may leave
    any of its files torn or empty, so the caller makes them visible (the rename, the registry row)
    only after the block. The pass runs on the way out also when the block raises (what was written
    is made durable either way; the caller discards it). A file renamed or removed before the end is
    skipped (its directory is still fsynced). Includes :func:`deferred_directory_fsyncs`; nested
    blocks join the outermost one; per thread, like it.

    The pass issues its fsyncs from a few threads at once (every file's, then every directory's):
    each still returns only when its file is durable, and nothing in the pass is visible before all
    have returned, so their order does not matter — while the filesystem's journal can commit
    concurrent fsyncs together instead of one flush each (a sweep's five runs are ~70 files).
    """
    if _PENDING_FILES.get() is not None:
        yield
        return
    files: dict[str, None] = {}
    early = _Early()
    outer = _PENDING.get()  # an enclosing deferred_directory_fsyncs block owes the directories, when there is one
    directories: dict[str, None] = {} if outer is None else outer
    directory_token = _PENDING.set(directories) if outer is None else None
    token, early_token = _PENDING_FILES.set(files), _EARLY.set(early)
    try:
        yield
    finally:
        _PENDING_FILES.reset(token)
        _EARLY.reset(early_token)
        if directory_token is not None:
            _PENDING.reset(directory_token)
        try:
            try:
                early.wait()
            finally:
                _concurrently(_fsync_path, list(files))
        finally:
            if outer is None:
                _concurrently(_fsync_directory_if_there, list(directories))


def sync_finished(folder: str | os.PathLike[str]) -> None:
    """In a :func:`deferred_fsyncs` block, start its pass now, in the background, for ``folder``: the files and
    directories at or under it that the block owes. Outside one, nothing (they were fsynced as written).

    For a folder the caller has finished and will not write into again in the block (a sweep's full run, once
    built): its fsyncs wait on the disk while this thread builds the next one, instead of all at the block's end.
    The block's end still waits for them (and raises the first that failed) before it returns, so nothing written
    in the block is durable any later than before, and nothing is made visible earlier.
    """
    files, early, directories = _PENDING_FILES.get(), _EARLY.get(), _PENDING.get()
    if files is None or early is None or directories is None:
        return
    root = os.path.abspath(os.fspath(folder))
    under = root + os.sep
    mine = [path for path in files if path == root or path.startswith(under)]
    folders = [path for path in directories if path == root or path.startswith(under)]
    for path in mine:
        del files[path]
    for path in folders:
        del directories[path]
    if mine or folders:
        early.start(mine, folders)


def _sync_early(files: list[str], directories: list[str]) -> None:
    """One finished folder's part of the pass: its files, then its directories (as the pass orders them)."""
    _concurrently(_fsync_path, files)
    _concurrently(_fsync_directory_if_there, directories)


#: Threads of a :func:`deferred_fsyncs` pass.
_PASS_THREADS = 8


def _concurrently(function: Callable[[str], None], paths: list[str]) -> None:
    """``function`` on every path, from up to :data:`_PASS_THREADS` threads; the first exception is raised."""
    if len(paths) < 2:
        for path in paths:
            function(path)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(_PASS_THREADS, len(paths)), thread_name_prefix="fsync-pass") as pool:
        for _ in pool.map(function, paths):
            pass


def fsyncs_deferred(*paths: str | os.PathLike[str]) -> bool:
    """True inside a :func:`deferred_fsyncs` block, whose pass will then fsync ``paths`` too (those that still exist).

    For a writer whose files are made durable by someone else (SQLite): inside the block it may
    skip its own syncs (``PRAGMA synchronous = OFF``) and leave its files to the pass.
    """
    pending = _PENDING_FILES.get()
    if pending is None:
        return False
    for path in paths:
        pending[os.path.abspath(os.fspath(path))] = None
    return True


def _fsync_path(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | _O_BINARY | _O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(fd: int, path: str) -> None:
    """fsync the open file ``fd`` (named ``path`` once written) now, or at the end of a :func:`deferred_fsyncs` block."""
    pending = _PENDING_FILES.get()
    if pending is None:
        os.fsync(fd)
    else:
        pending[path] = None


def _directory_changed(directory: str) -> None:
    """fsync ``directory`` now, or at the end of the enclosing :func:`deferred_directory_fsyncs` block."""
    pending = _PENDING.get()
    if pending is None:
        fsync_directory(directory)
    else:
        pending[directory] = None


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte; os.write may write fewer than asked."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def temp_path_for(path: str | os.PathLike[str]) -> str:
    """A fresh temporary name next to ``path`` (``.NAME.<12 hex digits>.tmp``), as the atomic writers use."""
    target = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(target)
    return os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")


def remove_temp_files(*directories: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in ``directories``; returns what was removed.

    Only files named like temporary files (:data:`TEMP_NAME`: a dot, then ``.tmp`` at the end)
    are touched, never a sub-directory or its content. Call it only on directories the package
    owns (a state directory, its ``public/``, a run folder) and only while no writer can be
    working in them (the executor holds the state directory's lock; a run is not active), since
    a live writer's temporary file looks the same. A directory that does not exist is skipped.
    """
    removed: list[Path] = []
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        before = len(removed)
        for entry in entries:
            if TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed.append(Path(entry.path))
        if len(removed) > before:
            fsync_directory(directory)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Replace the file at ``path`` with ``data`` so that a crash leaves the old or the new content.

    The temporary file sits next to the target (``.NAME.RANDOM.tmp``) so the rename stays on
    one file system. An existing target's permission bits are kept; a new file gets the usual
    0666 minus umask. On any error the temporary file is removed and the target is untouched.
    """
    atomic_write_pieces(path, (data,))


def atomic_write_pieces(path: str | os.PathLike[str], pieces: Iterable[bytes | bytearray | memoryview]) -> None:
    """:func:`atomic_write_bytes` of the pieces' concatenation, written piece by piece, never joined in memory.

    For a file kept as large blocks that do not change (the public files of a long run): joining
    them first would copy the whole file once more in this process only to hand it to the kernel.
    """
    target = os.path.abspath(os.fspath(path))
    tmp = temp_path_for(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_CLOEXEC, 0o666)
    try:
        try:
            for piece in pieces:
                _write_all(fd, piece)
            try:
                os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
            except FileNotFoundError:
                pass
            _fsync_file(fd, target)
        finally:
            os.close(fd)
    except BaseException:
        _discard(tmp)
        raise
    _replace(tmp, target)


def atomic_write_files(files: Sequence[tuple[str | os.PathLike[str], bytes | bytearray | memoryview]]) -> None:
    """Replace several files at once, each as :func:`atomic_write_bytes` replaces one: fsynced before its rename.

    Every temporary file is written first, then all are fsynced in one pass from a few threads (as
    :func:`deferred_fsyncs`' pass: a journaling filesystem commits concurrent fsyncs together), then each is
    renamed into place in the order given and each directory fsynced once at the end (or by an enclosing
    :func:`deferred_directory_fsyncs` block). So a crash leaves each file old or new, never torn — as one
    call per file would — at about the cost of one durable write, not one per file (a sweep's closing files
    and its point specs: docs/benchmarks.md). Inside a :func:`deferred_fsyncs` block the files are that
    block's, as any write there. On an error before the renames no target is touched and no temporary file
    stays; a rename that fails leaves the earlier files replaced and removes the later temporary files.
    """
    written: list[tuple[str, str]] = []  # (temporary file, target)
    try:
        for path, data in files:
            target = os.path.abspath(os.fspath(path))
            tmp = temp_path_for(target)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY | _O_CLOEXEC, 0o666)
            written.append((tmp, target))
            try:
                _write_all(fd, data)
                try:
                    os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
                except FileNotFoundError:
                    pass
            finally:
                os.close(fd)
        pending = _PENDING_FILES.get()
        if pending is None:
            _concurrently(_fsync_path, [tmp for tmp, _ in written])
        else:
            pending.update(dict.fromkeys(target for _, target in written))
    except BaseException:
        for tmp, _ in written:
            _discard(tmp)
        raise
    with deferred_directory_fsyncs():
        for index, (tmp, target) in enumerate(written):
            try:
                _replace(tmp, target)
            except BaseException:
                for later, _ in written[index + 1:]:
                    _discard(later)
                raise


def install_temp_file(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Put a finished temporary file in place of ``path``: fsync it, ``os.replace`` it, fsync the directory.

    For files another writer fills (SQLite makes a new ledger under :func:`temp_path_for`'s name),
    so they are made durable the one way :func:`atomic_write_bytes` makes its own. On any error
    the temporary file is removed and ``path`` is untouched.
    """
    try:
        fd = os.open(tmp, os.O_RDWR | _O_BINARY | _O_CLOEXEC)
        try:
            _fsync_file(fd, os.path.abspath(os.fspath(path)))
        finally:
            os.close(fd)
    except BaseException:
        _discard(tmp)
        raise
    _replace(tmp, path)


def _replace(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Rename the fsynced ``tmp`` over ``path`` and fsync the directory (now, or when the deferring block ends)."""
    target = os.path.abspath(os.fspath(path))
    try:
        os.replace(tmp, target)
    except BaseException:
        _discard(tmp)
        raise
    _directory_changed(os.path.dirname(target))


def _discard(tmp: str | os.PathLike[str]) -> None:
    """Remove a temporary file that will not be installed (gone already is fine)."""
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Like atomic_write_bytes, for text (no newline translation)."""
    atomic_write_bytes(path, text.encode(encoding))


def fsync_append(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> int:
    """Append ``data`` to an append-only log and fsync it; returns the number of bytes appended.

    The directory is fsynced too when this call created the file, so the new name survives a
    crash. A crash during the call may leave a partial record at the end of the file: readers of
    the log must treat an unterminated or unparsable last record as not written.
    """
    target = os.fspath(path)
    flags = os.O_WRONLY | os.O_APPEND | _O_BINARY | _O_CLOEXEC
    try:
        fd = os.open(target, flags)
        created = False
    except FileNotFoundError:
        fd = os.open(target, flags | os.O_CREAT, 0o666)
        created = True
    try:
        _write_all(fd, data)
        _fsync_file(fd, os.path.abspath(target))
    finally:
        os.close(fd)
    if created:
        _directory_changed(os.path.dirname(os.path.abspath(target)))
    return len(data)

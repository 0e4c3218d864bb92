"""Crash records: turn an exception into JSON that keeps every frame and link, and keep them across restarts.

A crash record is a plain, JSON-safe dict built with tblib::

    {
      "class": "tradeexecutor.errors.DataError",   # module-qualified class
      "class_name": "DataError",                   # qualified name inside its module
      "module": "tradeexecutor.errors",
      "message": "str(exc)",
      "repr": "repr(exc)",
      "args": [...] | None,                        # only when every arg is JSON-safe
      "notes": [...],                              # PEP 678 notes, possibly empty
      "frames": [{"filename", "lineno", "name", "module", "line"}, ...],  # outermost first
      "frames_omitted": 0,                         # frames dropped from the middle of a huge traceback
      "suppress_context": false,
      "chain": [{"relation": "cause" | "context", ...the same keys, no "chain"}, ...]
    }

``chain[0]`` is the exception the top-level one was raised *from* (relation ``"cause"``) or
*while handling* (relation ``"context"``); ``chain[1]`` is the same for ``chain[0]``, and so on.
``__suppress_context__`` (``raise X from None``) is respected the way Python's traceback module does.
The record always describes the real exception, never a wrapper message.

This is the only module of the package that imports tblib.
"""

from __future__ import annotations

import json
import linecache
import logging
import os
import struct
import sys
import threading
import traceback
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tblib

from tradeexecutor.atomic import atomic_write_bytes, fsync_directory
from tradeexecutor.errors import StateCorruptError
from tradeexecutor.layout import RunFiles

logger = logging.getLogger(__name__)

#: Frames kept per exception; a deeper traceback keeps its first and last half of this many.
MAX_FRAMES = 200
#: Links of ``__cause__``/``__context__`` followed before giving up (guards against cycles too).
MAX_CHAIN = 32
#: Crash times the crash file remembers: more than a day of a crash loop restarted once a minute, so
#: /metrics can count the crashes of the last 24 hours exactly (``tradeexecutor_recent_crashes``).
MAX_RECENT_CRASHES = 1500

_CAUSE_HEADER = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT_HEADER = "\nDuring handling of the above exception, another exception occurred:\n\n"


class RebuiltException(Exception):
    """Stands in for an exception whose class cannot be found or constructed when a record is rebuilt."""

    def __init__(self, message: str, original_class: str) -> None:
        super().__init__(message)
        #: Module-qualified name of the class the record was made from.
        self.original_class = original_class


# ---------------------------------------------------------------------------------------------
# Serialising


def serialise_exception(exc: BaseException) -> dict[str, Any]:
    """Describe an exception and its whole cause/context chain as a JSON-safe dict, for /status and crash.json."""
    record = _serialise_one(exc)
    chain: list[dict[str, Any]] = []
    seen = {id(exc)}
    current: BaseException = exc
    while len(chain) < MAX_CHAIN:
        link = _next_link(current)
        if link is None:
            break
        relation, nxt = link
        if id(nxt) in seen:  # a cycle: Python's own formatter stops here too
            break
        seen.add(id(nxt))
        entry = _serialise_one(nxt)
        entry["relation"] = relation
        chain.append(entry)
        current = nxt
    record["chain"] = chain
    return record


def _next_link(exc: BaseException) -> tuple[str, BaseException] | None:
    """The exception shown above ``exc`` in a traceback, and how it is related, as Python decides it."""
    if exc.__cause__ is not None:
        return "cause", exc.__cause__
    if exc.__context__ is not None and not exc.__suppress_context__:
        return "context", exc.__context__
    return None


def _serialise_one(exc: BaseException) -> dict[str, Any]:
    """Record one exception without following its chain."""
    cls = type(exc)
    module = cls.__module__
    frames, omitted = _frames_of(exc)
    notes = getattr(exc, "__notes__", None)
    return {
        "class": f"{module}.{cls.__qualname__}",
        "class_name": cls.__qualname__,
        "module": module,
        "message": _safe_str(exc),
        "repr": _safe_repr(exc),
        "args": _json_safe_args(exc.args),
        "notes": [str(note) for note in notes] if isinstance(notes, list) else [],
        "frames": frames,
        "frames_omitted": omitted,
        "suppress_context": bool(exc.__suppress_context__),
    }


def _frames_of(exc: BaseException) -> tuple[list[dict[str, Any]], int]:
    """Frames of the exception's traceback, outermost first, read through tblib; huge ones lose their middle."""
    if exc.__traceback__ is None:
        return [], 0
    frames: list[dict[str, Any]] = []
    # tblib.Traceback builds its copy iteratively, so a RecursionError's traceback is fine here.
    current: Any = tblib.Traceback(exc.__traceback__)
    while current is not None:
        frame = current.tb_frame
        filename = frame.f_code.co_filename
        lineno = int(current.tb_lineno)
        globals_ = frame.f_globals
        line = linecache.getline(filename, lineno, globals_ if "__name__" in globals_ else None).strip()
        frames.append(
            {
                "filename": filename,
                "lineno": lineno,
                "name": frame.f_code.co_name,
                "module": globals_.get("__name__"),
                "line": line or None,
            }
        )
        current = current.tb_next
    omitted = 0
    if len(frames) > MAX_FRAMES:
        half = MAX_FRAMES // 2
        omitted = len(frames) - MAX_FRAMES
        frames = frames[:half] + frames[-half:]
    return frames, omitted


def _safe_str(exc: BaseException) -> str:
    """str(exc), even when the exception's __str__ itself fails."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the crash
        return f"<unprintable {type(exc).__name__} object>"


def _safe_repr(exc: BaseException) -> str:
    """repr(exc), even when the exception's __repr__ itself fails."""
    try:
        return repr(exc)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the crash
        return f"<unreprable {type(exc).__name__} object>"


def _json_safe_args(args: tuple[Any, ...]) -> list[Any] | None:
    """The exception's args when all are plain JSON scalars, so it can be rebuilt; otherwise None."""
    if all(arg is None or isinstance(arg, (str, int, float, bool)) for arg in args):
        return list(args)
    return None


# ---------------------------------------------------------------------------------------------
# Rendering


def format_exception_record(record: dict[str, Any]) -> str:
    """Render a crash record as Python's traceback text, root cause first, for logs and people."""
    links = [record, *record.get("chain", [])]
    parts: list[str] = []
    # links[0] is the outermost exception; Python prints the innermost first.
    for index in range(len(links) - 1, -1, -1):
        parts.append(_format_one(links[index]))
        if index > 0:
            relation = links[index].get("relation")
            parts.append(_CAUSE_HEADER if relation == "cause" else _CONTEXT_HEADER)
    return "".join(parts)


def _format_one(record: dict[str, Any]) -> str:
    """Render one exception of a record: its frames then its ``Class: message`` line."""
    lines: list[str] = []
    frames = record.get("frames") or []
    if frames:
        lines.append("Traceback (most recent call last):\n")
        omitted = int(record.get("frames_omitted") or 0)
        half = len(frames) // 2 if omitted else len(frames)
        for position, frame in enumerate(frames):
            if omitted and position == half:
                lines.append(f"  [Previous frames omitted: {omitted} more]\n")
            lines.append(f'  File "{frame["filename"]}", line {frame["lineno"]}, in {frame["name"]}\n')
            if frame.get("line"):
                lines.append(f"    {frame['line']}\n")
    module = record.get("module")
    name = record.get("class_name") or record.get("class") or "Exception"
    if module not in (None, "builtins", "__main__"):
        name = f"{module}.{name}"
    message = record.get("message") or ""
    lines.append(f"{name}: {message}\n" if message else f"{name}\n")
    for note in record.get("notes") or []:
        lines.append(f"{note}\n")
    return "".join(lines)


# ---------------------------------------------------------------------------------------------
# Rebuilding


def rebuild_exception(record: dict[str, Any]) -> BaseException:
    """Reconstruct an exception with a real traceback and chain from a record, for tests and re-raising.

    The original class is used when its module is already imported (a record never causes an
    import) and it can be built from the recorded args; otherwise a RebuiltException stands in.
    """
    links = [record, *record.get("chain", [])]
    rebuilt = [_rebuild_one(link) for link in links]
    for index in range(len(rebuilt) - 1):
        outer, inner = rebuilt[index], rebuilt[index + 1]
        if links[index + 1].get("relation") == "cause":
            outer.__cause__ = inner
        else:
            outer.__context__ = inner
    for exc, link in zip(rebuilt, links):
        exc.__suppress_context__ = bool(link.get("suppress_context"))
    return rebuilt[0]


def _rebuild_one(record: dict[str, Any]) -> BaseException:
    """Rebuild one exception of a record, traceback included, without its chain."""
    exc = _instantiate(record)
    frames = record.get("frames") or []
    if frames:
        exc = exc.with_traceback(_traceback_from_frames(frames))
    return exc


def _instantiate(record: dict[str, Any]) -> BaseException:
    """An instance of the recorded class when possible, else a RebuiltException carrying the message."""
    qualified = str(record.get("class") or "builtins.Exception")
    message = str(record.get("message") or "")
    cls = _find_class(record.get("module"), record.get("class_name"))
    if cls is not None:
        args = record.get("args")
        try:
            return cls(*args) if isinstance(args, list) else cls(message)
        except Exception:  # a custom __init__ we cannot satisfy
            logger.debug("cannot rebuild %s from its args; using RebuiltException", qualified, exc_info=True)
    return RebuiltException(f"{qualified}: {message}" if message else qualified, qualified)


def _find_class(module_name: Any, qualname: Any) -> type[BaseException] | None:
    """Look a class up in an already imported module; never imports anything named by data."""
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        return None
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        if obj is None or part == "<locals>":
            return None
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return obj
    return None


def _traceback_from_frames(frames: list[dict[str, Any]]) -> Any:
    """A real traceback object whose frames carry the recorded file names, functions and line numbers."""
    tb_dict: dict[str, Any] | None = None
    for frame in reversed(frames):  # built innermost outwards, so no recursion here
        tb_dict = {
            "tb_frame": {
                "f_globals": {"__name__": frame.get("module") or "?", "__file__": frame["filename"]},
                "f_locals": {},
                "f_code": {"co_filename": frame["filename"], "co_name": frame["name"]},
                "f_lineno": frame["lineno"],
            },
            "tb_lineno": frame["lineno"],
            "tb_next": tb_dict,
        }
    return tblib.Traceback.from_dict(tb_dict).as_traceback()


# ---------------------------------------------------------------------------------------------
# The crash file


@dataclass
class CrashHistory:
    """What crash.json remembers: how many crashes, when the recent ones were, and the last record."""

    #: Crashes recorded over the life of the state directory.
    crash_count: int = 0
    #: UTC times of the most recent crashes, oldest first, at most MAX_RECENT_CRASHES.
    recent_crashes: list[datetime] = field(default_factory=list)
    #: When the last crash happened.
    last_crashed_at: datetime | None = None
    #: Crash record of the last crash (see serialise_exception).
    last_exception: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, datetimes as ISO 8601 text."""
        return {
            "crash_count": self.crash_count,
            "recent_crashes": [moment.isoformat() for moment in self.recent_crashes],
            "last_crashed_at": self.last_crashed_at.isoformat() if self.last_crashed_at else None,
            "last_exception": self.last_exception,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CrashHistory:
        """Inverse of to_dict."""
        last = data.get("last_crashed_at")
        return cls(
            crash_count=int(data.get("crash_count", 0)),
            recent_crashes=[_parse_utc(text) for text in data.get("recent_crashes", [])],
            last_crashed_at=_parse_utc(last) if last else None,
            last_exception=data.get("last_exception"),
        )


class CrashTally:
    """A second, tiny record of the crashes — a counter and the last few crash times — that works on a full disk.

    crash.json holds the whole crash record (frames, cause chain, thread stacks: kilobytes) and
    is replaced through a new temporary file, which a full disk or a file-size limit refuses.
    The crash must still count towards crash-loop safe mode, so every crash is also tallied in
    ``crash.tally``: one fixed-size block (magic, crc32, count, the last
    :data:`TALLY_TIMES` crash times in µs) created once while there is room
    (:meth:`prepare`, at start-up) and then overwritten in place. Overwriting bytes a file
    already has needs no new blocks (tmpfs, ext4, xfs; not copy-on-write file systems such as
    btrfs or ZFS), and the block is smaller than a disk sector, so it is written whole or not at
    all. A block that does not check out is ignored (crash.json still counts) and replaced by
    the next crash.
    """

    _MAGIC = b"TECT"
    _FORMAT = "<4sIq" + "q" * 16
    #: Crash times the tally keeps.
    TALLY_TIMES = 16
    #: Bytes of the block.
    SIZE = struct.calcsize(_FORMAT)

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def prepare(self) -> None:
        """Create the zeroed block if there is none yet (at start-up, so a full disk later can still count)."""
        if self.path.exists():
            return
        atomic_write_bytes(self.path, self._pack(0, []))

    def read(self) -> tuple[int, list[datetime]]:
        """The crash count and recent crash times, oldest first; (0, []) when missing or damaged."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return 0, []
        except OSError as exc:
            logger.warning("cannot read crash tally %s: %s", self.path, exc)
            return 0, []
        if len(data) != self.SIZE:
            logger.warning("crash tally %s has %d bytes, not %d; ignored", self.path, len(data), self.SIZE)
            return 0, []
        magic, crc, count, *stamps = struct.unpack(self._FORMAT, data)
        if magic != self._MAGIC or crc != zlib.crc32(data[8:]):
            logger.warning("crash tally %s does not check out; ignored", self.path)
            return 0, []
        times = sorted(_EPOCH + timedelta(microseconds=stamp) for stamp in stamps if stamp > 0)
        return max(0, count), times

    def add(self, now: datetime) -> int:
        """Count one crash at ``now`` in place (fsynced); the new count. Raises OSError when even this fails."""
        count, times = self.read()
        block = self._pack(count + 1, [*times, now][-self.TALLY_TIMES:])
        try:
            fd = os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
            created = False
        except FileNotFoundError:  # never prepared: needs room for a new file
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            created = True
        try:
            if os.pwrite(fd, block, 0) != len(block):
                raise OSError(f"short write to {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)
        return count + 1

    def _pack(self, count: int, times: list[datetime]) -> bytes:
        stamps = [_microseconds(moment) for moment in times]
        stamps += [0] * (self.TALLY_TIMES - len(stamps))
        body = struct.pack("<q" + "q" * self.TALLY_TIMES, count, *stamps)
        return self._MAGIC + struct.pack("<I", zlib.crc32(body)) + body


class CrashFile:
    """Keeps the last crash record, a crash counter and recent crash times in one atomically written JSON file.

    The daemon records every crash here before exiting, and loads it at start-up so /status still
    shows the last crash after a restart and the crash policy can see a crash loop. Every crash
    is counted in :class:`CrashTally` (``crash.tally``) first, so a crash whose crash.json could
    not be written (a full disk) still counts: :meth:`load` and :meth:`recent_crashes` read both.
    """

    def __init__(self, path: Path | str, tally_path: Path | str | None = None) -> None:
        #: Where the file lives; see for_state_dir for the usual place.
        self.path = Path(path)
        #: The tiny second record (default: the state directory's ``crash.tally`` next to the file).
        self.tally = CrashTally(Path(tally_path) if tally_path is not None else RunFiles(self.path.parent).crash_tally)
        self._lock = threading.Lock()

    @classmethod
    def for_state_dir(cls, state_dir: Path | str) -> CrashFile:
        """The crash file kept inside a state directory, next to the state file."""
        files = RunFiles(Path(state_dir))
        return cls(files.crash, files.crash_tally)

    def prepare(self) -> None:
        """Make room for counting crashes while there is room (start-up); a failure is logged, not raised."""
        try:
            self.tally.prepare()
        except OSError as exc:
            logger.warning("cannot create crash tally %s: %s; crashes count only while crash.json can be written",
                           self.tally.path, exc)

    def load(self) -> CrashHistory | None:
        """The recorded history (crash.json with the tally's count and times), or None when no crash was recorded.

        Raises StateCorruptError when crash.json exists but cannot be read; the file is left as it is.
        """
        return self._merge_tally(self._load_json())

    def _load_json(self) -> CrashHistory | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateCorruptError(f"cannot read crash file {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("top level is not an object")
            return CrashHistory.from_dict(data)
        except (ValueError, TypeError, KeyError) as exc:
            raise StateCorruptError(f"crash file {self.path} is not valid: {exc}") from exc

    def _merge_tally(self, history: CrashHistory | None) -> CrashHistory | None:
        """``history`` with the crashes only the tally saw added (same moment: same crash)."""
        count, times = self.tally.read()
        if not count and history is None:
            return None
        merged = history or CrashHistory()
        merged.crash_count = max(merged.crash_count, count)
        seen = {_microseconds(moment) for moment in merged.recent_crashes}
        extra = [moment for moment in times if _microseconds(moment) not in seen]
        if extra:
            merged.recent_crashes = sorted([*merged.recent_crashes, *extra])[-MAX_RECENT_CRASHES:]
            if merged.last_crashed_at is None or merged.recent_crashes[-1] > merged.last_crashed_at:
                merged.last_crashed_at = merged.recent_crashes[-1]
        return merged

    def record(self, exc: BaseException | dict[str, Any], now: datetime | None = None) -> CrashHistory:
        """Count one crash (an exception or an already serialised record) in the tally, then write crash.json.

        An unreadable existing crash.json is moved aside (``crash.json.corrupt-<time>``), never
        overwritten. When crash.json cannot be written (a full disk) but the tally could, the
        failure is logged and the history is returned all the same: the crash counts. OSError
        only when neither could be written.
        """
        now = _utc(now)
        record = exc if isinstance(exc, dict) else serialise_exception(exc)
        with self._lock:
            try:
                history = self._load_json() or CrashHistory()
            except StateCorruptError:
                aside = self.path.with_name(f"{self.path.name}.corrupt-{now.strftime('%Y%m%dT%H%M%S%f')}")
                logger.warning("crash file %s is unreadable; moved aside to %s", self.path, aside)
                os.replace(self.path, aside)
                history = CrashHistory()
            history = self._merge_tally(history) or history
            try:
                self.tally.add(now)
                tallied = True
            except OSError as error:
                logger.error("cannot count the crash in %s: %s", self.tally.path, error)
                tallied = False
            history.crash_count += 1
            history.recent_crashes = [*history.recent_crashes, now][-MAX_RECENT_CRASHES:]
            history.last_crashed_at = now
            history.last_exception = record
            payload = json.dumps(history.to_dict(), indent=2, default=str).encode("utf-8")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self.path, payload)
            except OSError as error:
                if not tallied:
                    raise
                logger.error("cannot write crash file %s: %s; the crash is counted in %s (crash %d)", self.path,
                             error, self.tally.path, history.crash_count)
        return history

    def recent_crashes(self, within: timedelta, now: datetime | None = None) -> list[datetime]:
        """Crash times no older than ``within`` before ``now``, oldest first; for crash-loop detection.

        A damaged crash.json raises StateCorruptError; the tally alone still answers through
        :meth:`tallied_crashes`.
        """
        now = _utc(now)
        history = self.load()
        if history is None:
            return []
        cutoff = now - within
        return [moment for moment in history.recent_crashes if cutoff <= moment <= now]

    def tallied_crashes(self, within: timedelta, now: datetime | None = None) -> list[datetime]:
        """The tally's crash times no older than ``within`` before ``now`` (when crash.json is unreadable)."""
        now = _utc(now)
        cutoff = now - within
        return [moment for moment in self.tally.read()[1] if cutoff <= moment <= now]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _microseconds(moment: datetime) -> int:
    """A time as integer µs since the epoch (exact: the tally's precision, and how its times are compared)."""
    return (_utc(moment) - _EPOCH) // timedelta(microseconds=1)


def _utc(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime, the wall clock when None."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def _parse_utc(text: str) -> datetime:
    """Parse ISO 8601 text; a naive value is taken as UTC."""
    return _utc(datetime.fromisoformat(text))


# ---------------------------------------------------------------------------------------------
# Watchdog


def dump_all_thread_stacks() -> dict[str, Any]:
    """Every live thread's name, ident and formatted stack, for the watchdog to log when a job hangs."""
    frames = sys._current_frames()
    threads_by_ident = {thread.ident: thread for thread in threading.enumerate()}
    threads: list[dict[str, Any]] = []
    for ident, frame in frames.items():
        thread = threads_by_ident.get(ident)
        threads.append(
            {
                "name": thread.name if thread is not None else f"<unknown {ident}>",
                "ident": ident,
                "native_id": getattr(thread, "native_id", None),
                "daemon": thread.daemon if thread is not None else None,
                "stack": "".join(traceback.format_stack(frame)),
            }
        )
    del frames
    threads.sort(key=lambda item: str(item["name"]))
    return {"taken_at": datetime.now(UTC).isoformat(), "threads": threads}

"""RingBufferHandler: the process's most recent log records kept in memory, for /logs/technical.

Attach one handler to the root logger at start-up and hand it to the webhook
(``WebhookOptions.log_buffer``)::

    buffer = RingBufferHandler(capacity=1000)
    logging.getLogger().addHandler(buffer)
    ...
    buffer.records(limit=100, level="warning")  # newest last

Each record is formatted when it is logged (message formatted, exception text rendered) and
written, UTF-8 encoded, into a fixed slot of ``SLOT_BYTES`` of one buffer allocated and written
at start: readers never touch live ``LogRecord`` arguments, and the memory the ring takes is the
same from the first record to the last, however many are logged (a deque of dicts took a few
hundred bytes more with each record until it was full, the executor's resident set rising for
an hour and more of its first records). A record longer than its slot keeps its beginning and
its end, each shortened field showing ``…[cut from N bytes]…`` where its middle was. The full
records go to stderr as well. Safe to log from any thread and read from any other.
"""

from __future__ import annotations

import logging
import struct
import threading
from datetime import UTC, datetime
from typing import Any

__all__ = ["LOG_LEVELS", "SLOT_BYTES", "RingBufferHandler"]

#: Level names accepted by :meth:`RingBufferHandler.records`, least severe first.
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")

#: Bytes a record takes in the ring: the header below, then its fields. A log line of the executor is well under it
#: (a few hundred bytes); a long traceback is cut in its middle.
SLOT_BYTES = 1024

_LEVEL_NUMBERS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

#: A slot's header: the record's time (epoch seconds), level number, which optional fields it has, and the encoded
#: lengths of its four fields (logger, message, exception, stack) as stored.
_HEADER = struct.Struct("<dHB4H")
_FIELDS = ("logger", "message", "exception", "stack")
_OPTIONAL = {"exception": 1, "stack": 2}


class RingBufferHandler(logging.Handler):
    """A logging handler remembering the last ``capacity`` records, each in a slot of ``SLOT_BYTES``."""

    def __init__(self, capacity: int = 1000, level: int = logging.NOTSET) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        super().__init__(level)
        #: How many records are kept; older ones fall off.
        self.capacity = capacity
        # Written now, every byte: an allocator maps fresh pages lazily, and they would become resident one
        # record at a time.
        self._ring = bytearray(b"\0") * (capacity * SLOT_BYTES)
        self._view = memoryview(self._ring)
        self._written = 0  # records logged since the start (or the last clear); the newest is slot (written-1) % capacity
        self._buffer_lock = threading.Lock()
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Store one record: time, level, logger name, message and formatted exception and stack, if any."""
        try:
            fields: dict[str, str | None] = {"logger": record.name, "message": record.getMessage(),
                                             "exception": None, "stack": None}
            if record.exc_info:
                fields["exception"] = self._formatter.formatException(record.exc_info)
            elif record.exc_text:
                fields["exception"] = record.exc_text
            if record.stack_info:
                fields["stack"] = record.stack_info
            slot = _encode(record.created, record.levelno, fields)
        except Exception:  # a bad format string must not break the caller
            self.handleError(record)
            return
        with self._buffer_lock:
            start = (self._written % self.capacity) * SLOT_BYTES
            self._view[start:start + len(slot)] = slot
            self._written += 1

    def records(self, limit: int | None = None, level: str | None = None) -> list[dict[str, Any]]:
        """The ``limit`` newest records at or above ``level`` (a LOG_LEVELS name), oldest first; new dicts."""
        floor = logging.NOTSET
        if level is not None:
            name = str(level).lower()
            if name not in _LEVEL_NUMBERS:
                raise ValueError(f"unknown log level {level!r}; allowed: {', '.join(LOG_LEVELS)}")
            floor = _LEVEL_NUMBERS[name]
        wanted = self.capacity if limit is None else min(max(limit, 0), self.capacity)
        chosen: list[bytes] = []
        with self._buffer_lock:  # newest first, copying only the slots taken
            written = self._written
            for number in range(written - 1, max(-1, written - 1 - self.capacity), -1):
                if len(chosen) >= wanted:
                    break
                start = (number % self.capacity) * SLOT_BYTES
                if _HEADER.unpack_from(self._ring, start)[1] >= floor:
                    chosen.append(bytes(self._view[start:start + SLOT_BYTES]))
        return [_decode(slot) for slot in reversed(chosen)]

    def clear(self) -> None:
        """Forget every record."""
        with self._buffer_lock:
            self._written = 0


def _encode(created: float, levelno: int, fields: dict[str, str | None]) -> bytes:
    """A record as a slot's bytes: the header, then each field, a field too long for its share cut in its middle.

    Shares are fair: a field shorter than an equal share of the room left takes what it needs, the rest is
    shared by the longer ones.
    """
    data = {name: (value or "").encode("utf-8", "backslashreplace") for name, value in fields.items()}
    room = SLOT_BYTES - _HEADER.size
    kept: dict[str, bytes] = {}
    for position, name in enumerate(sorted(_FIELDS, key=lambda field: len(data[field]))):
        share = room // (len(_FIELDS) - position)
        kept[name] = data[name] if len(data[name]) <= share else _cut(data[name], share)
        room -= len(kept[name])
    flags = sum(bit for name, bit in _OPTIONAL.items() if fields[name] is not None)
    levelno = min(max(levelno, 0), 0xFFFF)
    return _HEADER.pack(created, levelno, flags, *(len(kept[name]) for name in _FIELDS)) + b"".join(
        kept[name] for name in _FIELDS)


def _cut(data: bytes, room: int) -> bytes:
    """``data`` in ``room`` bytes: its first third and its last two thirds, a marker naming its length between."""
    marker = f"…[cut from {len(data)} bytes]…".encode()
    keep = max(0, room - len(marker))
    head = keep // 3
    tail = data[len(data) - (keep - head):] if keep > head else b""
    return data[:head] + marker[:room] + tail


def _decode(slot: bytes) -> dict[str, Any]:
    """A slot back as the dict /logs/technical serves."""
    created, levelno, flags, *lengths = _HEADER.unpack_from(slot)
    values: dict[str, str] = {}
    offset = _HEADER.size
    for name, length in zip(_FIELDS, lengths):
        values[name] = slot[offset:offset + length].decode("utf-8", "ignore")  # "ignore": a character a cut split
        offset += length
    entry: dict[str, Any] = {
        "at": datetime.fromtimestamp(created, UTC).isoformat(),
        "level": str(logging.getLevelName(levelno)).lower(),
        "logger": values["logger"],
        "message": values["message"],
    }
    for name, bit in _OPTIONAL.items():
        if flags & bit:
            entry[name] = values[name]
    return entry

"""RingBufferHandler: the process's most recent log records kept in memory, for /logs/technical.

Attach one handler to the root logger at start-up and hand it to the webhook
(``WebhookOptions.log_buffer``)::

    buffer = RingBufferHandler(capacity=1000)
    logging.getLogger().addHandler(buffer)
    ...
    buffer.records(limit=100, level="warning")  # newest last

Each record is turned into a small dict when it is logged (message formatted, exception text
rendered), so readers never touch live ``LogRecord`` arguments and the memory used stays
bounded by ``capacity``. Safe to log from any thread and read from any other.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Any

__all__ = ["LOG_LEVELS", "RingBufferHandler"]

#: Level names accepted by :meth:`RingBufferHandler.records`, least severe first.
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")

_LEVEL_NUMBERS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class RingBufferHandler(logging.Handler):
    """A logging handler remembering the last ``capacity`` records as JSON-safe dicts."""

    def __init__(self, capacity: int = 1000, level: int = logging.NOTSET) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        super().__init__(level)
        #: How many records are kept; older ones fall off.
        self.capacity = capacity
        self._records: deque[tuple[int, dict[str, Any]]] = deque(maxlen=capacity)
        self._buffer_lock = threading.Lock()
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Store one record: time (ISO UTC), level, logger name, message and formatted exception."""
        try:
            entry: dict[str, Any] = {
                "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
            if record.exc_info:
                entry["exception"] = self._formatter.formatException(record.exc_info)
            elif record.exc_text:
                entry["exception"] = record.exc_text
            if record.stack_info:
                entry["stack"] = record.stack_info
        except Exception:  # a bad format string must not break the caller
            self.handleError(record)
            return
        with self._buffer_lock:
            self._records.append((record.levelno, entry))

    def records(self, limit: int | None = None, level: str | None = None) -> list[dict[str, Any]]:
        """The ``limit`` newest records at or above ``level`` (a LOG_LEVELS name), oldest first; copies."""
        floor = logging.NOTSET
        if level is not None:
            name = str(level).lower()
            if name not in _LEVEL_NUMBERS:
                raise ValueError(f"unknown log level {level!r}; allowed: {', '.join(LOG_LEVELS)}")
            floor = _LEVEL_NUMBERS[name]
        with self._buffer_lock:
            snapshot = list(self._records)
        chosen = [entry for levelno, entry in snapshot if levelno >= floor]
        if limit is not None:
            chosen = chosen[-limit:] if limit > 0 else []
        return [dict(entry) for entry in chosen]

    def clear(self) -> None:
        """Forget every record."""
        with self._buffer_lock:
            self._records.clear()

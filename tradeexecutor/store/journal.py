"""The run's journal: append-only JSON lines of what happened to the job, read back from the end.

One ``journal.jsonl`` per state directory (``RunFiles.journal``), one line per event::

    {"at": "2024-05-01T12:00:00+00:00", "level": "info", "event": "order_filled",
     "fields": {"order_id": 7, "price": 101.5, ...}}

Every entry has exactly these four keys (:data:`ENTRY_KEYS`): the journal's own ``at``,
``level`` and ``event``, and the event's ``fields`` in an object of their own. An event may
therefore carry any field name at all — ``level``, ``at``, ``event`` included — without ever
overwriting the journal's own (a trigger's ``level=`` once replaced the entry's level, and a
keyword clash in ``append`` crashed the executor). :meth:`Journal.append` takes the fields as
one mapping for the same reason: no field name can clash with a parameter.

Events the executor writes (:data:`EVENTS`; any other name is accepted too): started, stopped,
complete, error, cycle_completed (``decisions``, ``planned``, ``executed``, ``rejected``,
``ignored``, ``duration``, ``lag``: seconds from the scheduler's boundary to the job's start, null when
unscheduled), order_planned, order_filled, order_rejected (``reason``), order_cancelled,
order_cancel_requested (live: a cancel asked of the exchange, committed before it is sent; ``order_cancelled``
follows once the exchange confirms it),
dust_written_off (``quantity``: what a close left below one lot; the position closed without it),
order_resolved (``detail``: an order a restart found ``submitting``, or whose reply never came, asked about by
client order id), order_unknown (live: a submit whose reply never came; asked about at the next job),
order_expired (live: an order the exchange ended with only part, or none, of it filled),
order_completed (live: an order whose last fill was journaled ``partial`` before the exchange said it was the last,
ended filled: ``filled_quantity``, ``average_price``, ``fees``),
order_capped (live: a value-sized entry sent for less than its decision asked — the cash there was when it was sent,
less a fee reserve: ``asked``, ``value`` sent, ``cash``, ``exchange_free``, ``fee_rate``, ``reason``),
order_lost (live: an order the exchange accepted once and no longer knows — found when its cancel was not
confirmed, or by the ccxt venue's poll — once that answer has lasted, ``NotFoundAnswers``; once per order, across restarts;
``reason`` says what a person does: the executor enters safe mode),
order_fills_missing (live: an order the exchange says ended having filled ``filled`` while its trades add up to
``listed`` only, for ``--exchange-fills-missing-seconds``; still followed, nothing resent; once per order, across
restarts), order_fills_found (its trades came: booked, the order ended; ``status``, ``filled_quantity``),
exit_waiting (live: an exit of a position held back — ``exit``: close, reduce, a trigger's kind, operator close —
because an order of it ended at the exchange while its trades add up to ``listed`` of ``filled`` only; once per
order and process; the exit goes once the trades are listed and booked),
decision_resumed (``cycle_time``, ``orders``: a cycle whose orders a killed process committed), intent_ignored, trigger_fired (``trigger``, ``trigger_price``, ``price``), revalued, crashed,
safe_mode, paused, resumed, risk_limit_hit (``limit``, ``value``, ``threshold``, ``bar_time``),
risk_pause_lifted, stop_requested, operator_action and operator_refused (``action``, ``by``,
``outcome``, ``message``), daily_summary and the cast's cast_set, cast_stopped,
cast_delivered and cast_failed. Like every file the loop writes, the
journal must never hold a secret.

Writing: every :meth:`Journal.append` is flushed and fsynced before it returns (see
``tradeexecutor.atomic.fsync_append``). Lines are in the order they were appended, which is time order
because the loop appends as things happen.

Reading: :meth:`Journal.read` scans backwards from the end in blocks, so the cost of reading the
newest entries depends on how many are wanted, not on the size of the file. A crash during an
append can leave a torn last line (no newline, or half a JSON object): readers skip it, and the
next append starts a fresh line after it, so the torn fragment never swallows a good entry.
Lines written before the ``fields`` object existed (event fields beside ``at``/``level``/``event``)
are read back in the same four-key shape (:func:`entry_from_json`).

Example::

    journal = Journal(files.journal)
    journal.append("order_rejected", {"order_id": 12, "reason": "below minimum notional"}, level="warning")
    journal.read(limit=50, level="warning")   # the 50 newest warnings and errors, oldest first
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from tradeexecutor.atomic import fsync_append

__all__ = ["ENTRY_KEYS", "EVENTS", "LEVELS", "Journal", "Tail", "encode_entry", "entry_from_json", "level_rank", "parse_level"]

#: Journal levels, least severe first; a level filter keeps entries at or above the level asked.
LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")

#: The keys of every entry: the journal's own three, then the event's fields in an object of their own.
ENTRY_KEYS: tuple[str, ...] = ("at", "level", "event", "fields")

#: Event names the executor writes; documentation and a shared vocabulary, not a closed list.
EVENTS: frozenset[str] = frozenset(
    {
        "started",
        "stopped",
        "complete",
        "error",
        "cycle_completed",
        "dust_written_off",
        "order_planned",
        "order_filled",
        "order_rejected",
        "order_cancelled",
        "order_cancel_requested",
        "order_resolved",
        "order_unknown",
        "order_expired",
        "order_completed",
        "order_capped",
        "order_lost",
        "order_fills_missing",
        "order_fills_found",
        "exit_waiting",
        "order_adopted",
        "decision_resumed",
        "intent_ignored",
        "trigger_fired",
        "revalued",
        "crashed",
        "safe_mode",
        "paused",
        "resumed",
        "risk_limit_hit",
        "risk_pause_lifted",
        "stop_requested",
        "operator_action",
        "operator_refused",
        "daily_summary",
        "cast_set",
        "cast_stopped",
        "cast_delivered",
        "cast_failed",
    }
)

#: Bytes read per step when scanning backwards.
_BLOCK_SIZE = 64 * 1024

#: Datetimes go through _default so that every one is written in UTC.
_DUMP_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME

_RANK = {name: rank for rank, name in enumerate(LEVELS)}
_ENTRY_KEY_SET = frozenset(ENTRY_KEYS)
_OWN_KEYS = frozenset(("at", "level", "event"))


def parse_level(level: str) -> str:
    """A level name checked and lower-cased; raises ValueError naming the allowed ones."""
    name = str(level).lower()
    if name not in _RANK:
        raise ValueError(f"unknown journal level {level!r}; allowed: {', '.join(LEVELS)}")
    return name


def level_rank(level: Any) -> int:
    """Severity of a level name (an unknown one counts as info)."""
    return _RANK.get(str(level).lower(), _RANK["info"])


def _utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _default(value: Any) -> Any:
    """Encode field values orjson does not know: datetime subclasses, enums, numpy scalars, the rest as text."""
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _entry_time(entry: dict[str, Any]) -> datetime | None:
    """The ``at`` of an entry as an aware datetime, None when missing or unreadable."""
    text = entry.get("at")
    if not isinstance(text, str):
        return None
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def encode_entry(event: str, fields: Mapping[Any, Any] | None = None, /, *, level: str = "info",
                 at: datetime | None = None) -> bytes:
    """One journal line (newline included): ``at``, ``level``, ``event`` and the event's ``fields``.

    ``at`` defaults to now; it is stored in UTC. ``fields`` may use any names; their values must
    be JSON-friendly (datetimes, enums and numpy numbers are converted; anything else unknown is
    written as its text). Raises ValueError for an empty event name or an unknown level.
    """
    if not isinstance(event, str) or not event:
        raise ValueError("a journal event needs a non-empty name")
    entry: dict[str, Any] = {
        "at": _utc(at if at is not None else datetime.now(UTC)).isoformat(),
        "level": parse_level(level),
        "event": event,
        "fields": dict(fields) if fields else {},
    }
    return orjson.dumps(entry, default=_default, option=_DUMP_OPTIONS)


def entry_from_json(value: Any) -> dict[str, Any] | None:
    """A parsed journal line as an entry of the four :data:`ENTRY_KEYS`; None when it is not an object.

    Lines written before the ``fields`` object existed kept event fields beside the journal's
    own: those fields move into ``fields``, and a ``level`` that is not a level name (an event
    field that had overwritten it) moves there too, the entry's level becoming ``info``.
    """
    if not isinstance(value, dict):
        return None
    fields = value.get("fields")
    if isinstance(fields, dict) and value.keys() <= _ENTRY_KEY_SET:
        return value
    if fields is None and value.keys() <= _ENTRY_KEY_SET:
        value["fields"] = {}
        return value
    moved = {key: item for key, item in value.items() if key not in _OWN_KEYS}
    level = value.get("level", "info")
    if not (isinstance(level, str) and level.lower() in _RANK):
        moved["level"] = level
        level = "info"
    return {"at": value.get("at"), "level": level, "event": value.get("event"), "fields": moved}


def _parse_line(line: bytes) -> dict[str, Any] | None:
    """The entry on one line, None when the line is torn or not an object."""
    try:
        return entry_from_json(orjson.loads(line))
    except orjson.JSONDecodeError:
        return None


class Journal:
    """Append-only JSON-lines journal of one run; one writer (the loop), any number of readers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        #: The journal file (usually ``RunFiles.journal``).
        self.path = Path(path)
        self._lock = threading.Lock()
        self._checked_tail = False

    # -- writing ---------------------------------------------------------------------------------

    def append(self, event: str, fields: Mapping[Any, Any] | None = None, /, *, level: str = "info",
               at: datetime | None = None) -> dict[str, Any]:
        """Write one entry, flushed and fsynced, and return it as written (``at`` as ISO text).

        ``fields`` is one mapping, never keywords, so that an event field may be called
        ``level`` or ``at`` (see the module docstring and :func:`encode_entry`).
        """
        line = encode_entry(event, fields, level=level, at=at)
        self.append_encoded(line)
        return orjson.loads(line)  # type: ignore[no-any-return]

    def append_encoded(self, lines: bytes) -> None:
        """Append lines made by :func:`encode_entry` (several at once: one fsync), after a torn tail if any."""
        if not lines:
            return
        with self._lock:
            if not self._checked_tail:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self._ends_torn():
                    lines = b"\n" + lines  # close the torn fragment so this entry gets its own line
                self._checked_tail = True
            fsync_append(self.path, lines)

    def _ends_torn(self) -> bool:
        """True when the file exists and its last byte is not a newline (a crash cut an append short)."""
        try:
            with open(self.path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                if size == 0:
                    return False
                handle.seek(size - 1)
                return handle.read(1) != b"\n"
        except FileNotFoundError:
            return False

    # -- reading ---------------------------------------------------------------------------------

    def read(self, since: datetime | None = None, limit: int = 100, level: str | None = None) -> list[dict[str, Any]]:
        """The ``limit`` most recent entries at or after ``since`` and at or above ``level``, oldest first.

        Scans backwards from the end and stops once it has ``limit`` matches or meets an entry
        older than ``since`` (entries are in time order), so it reads only the tail it needs.
        An empty list when the journal does not exist yet. Unparsable lines (torn appends) are skipped.
        """
        if limit <= 0:
            return []
        floor = level_rank(parse_level(level)) if level is not None else None
        since_utc = _utc(since) if since is not None else None
        found: list[dict[str, Any]] = []
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed by the with below; a missing file is no entries
        except FileNotFoundError:
            return []
        with handle:
            for line in _lines_backwards(handle):
                entry = _parse_line(line)
                if entry is None:
                    continue
                if since_utc is not None:
                    at = _entry_time(entry)
                    if at is not None and at < since_utc:
                        break
                if floor is not None and level_rank(entry.get("level")) < floor:
                    continue
                found.append(entry)
                if len(found) >= limit:
                    break
        found.reverse()
        return found

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every readable entry, oldest first (a whole-file pass, for reports); torn lines are skipped."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed by the with below; a missing file is no entries
        except FileNotFoundError:
            return
        with handle:
            for line in handle:
                if line.strip():
                    entry = _parse_line(line)
                    if entry is not None:
                        yield entry


def _lines_backwards(handle: BinaryIO) -> Iterator[bytes]:
    """Complete, non-empty lines of a file from last to first, reading blocks from the end.

    The size is taken once, so lines appended during the scan are not seen. The bytes after the
    last newline are a torn append (empty when the file ends cleanly) and are never yielded.
    """
    position = handle.seek(0, os.SEEK_END)
    carry = b""
    tail_pending = True  # the bytes after the last newline have not been dropped yet
    while position > 0:
        start = max(0, position - _BLOCK_SIZE)
        handle.seek(start)
        block = handle.read(position - start) + carry
        position = start
        pieces = block.split(b"\n")
        carry = pieces.pop(0)  # may continue in the block before; whole when position is 0
        if tail_pending:
            if not pieces:  # no newline in sight yet: everything so far is the torn tail
                continue
            pieces.pop()
            tail_pending = False
        for line in reversed(pieces):
            if line.strip():
                yield line
    if not tail_pending and carry.strip():
        yield carry


def _entry_key(entry: dict[str, Any]) -> bytes:
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS, default=str)


class Tail:
    """Remembers what was shown, so polling by ``since`` of the newest entry prints each entry once.

    ``since`` is inclusive on the server, so entries stamped with the newest time seen come back
    on the next poll; they are recognised and skipped.
    """

    def __init__(self) -> None:
        self.last_at: str | None = None
        self._at_last: set[bytes] = set()

    def new(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = []
        for entry in entries:
            at = entry.get("at")
            key = _entry_key(entry)
            if at is not None and at == self.last_at and key in self._at_last:
                continue
            fresh.append(entry)
            if isinstance(at, str):
                if at != self.last_at:
                    self.last_at = at
                    self._at_last = set()
                self._at_last.add(key)
        return fresh

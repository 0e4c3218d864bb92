"""Instants people type: an RFC 3339 time with its zone, a date, or Unix seconds; pure, no I/O.

One parser for every door a time comes through: the webhook's and the runner API's ``since``
query parameters (``web/params.py``, as their OpenAPI documents declare them) and the CLI's
``runs logs --since``. It imports nothing heavy, so a command can use it without loading a web
framework.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["TIME_FORMS", "UNIX_SECONDS_PATTERN", "parse_time"]

#: Unix seconds as ``openapi.yaml`` declares them: up to 11 digits (year 5138), up to 6 decimals.
UNIX_SECONDS_PATTERN = r"^[0-9]{1,11}(\.[0-9]{1,6})?$"
#: What a time parameter may be, for messages (the document declares the same three forms).
TIME_FORMS = "an RFC 3339 time with its zone (2024-05-01T12:00:00Z), a date (2024-05-01, midnight UTC) or Unix seconds"

_UNIX_SECONDS = re.compile(UNIX_SECONDS_PATTERN)
_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
#: RFC 3339 ``date-time`` (section 5.6). A space where the offset's sign should be is an unencoded
#: "+" (a query string decodes "+" as a space), read as "+".
_DATE_TIME = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:([Zz])|([+ -])([0-9]{2}):([0-9]{2}))$"
)


def parse_time(text: str) -> datetime:
    """One of :data:`TIME_FORMS` as an aware UTC datetime; ValueError saying what is wrong (``is not ...``).

    A valid time before year 1 or after year 9999 once moved to UTC (``0001-01-01T00:00:00+01:00``)
    is clamped to the first or last representable instant: as a lower bound it means the same.
    """
    try:
        if _UNIX_SECONDS.match(text):
            return datetime.fromtimestamp(float(text), UTC)
        date = _DATE.match(text)
        if date:
            year, month, day = (int(part) for part in date.groups())
            return datetime(year, month, day, tzinfo=UTC)
        stamp = _DATE_TIME.match(text)
        if stamp:
            return _rfc3339(stamp)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"is not a valid time: {text!r}") from None
    raise ValueError(f"must be {TIME_FORMS}, not {text!r}")


def _rfc3339(match: re.Match[str]) -> datetime:
    """The UTC datetime of a matched RFC 3339 date-time (fractions past microseconds are cut)."""
    year, month, day, hour, minute, second = (int(match[i]) for i in range(1, 7))
    micro = int((match[7] or ".0")[1:7].ljust(6, "0"))
    offset = timedelta(0)
    if not match[8]:
        hours, minutes = int(match[10]), int(match[11])
        if hours > 23 or minutes > 59:
            raise ValueError(f"offset {match[10]}:{match[11]} is not a time zone offset")
        offset = timedelta(hours=hours, minutes=minutes)
        if match[9] == "-":
            offset = -offset
    local = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
    try:
        return local.astimezone(UTC)
    except OverflowError:  # valid, but outside datetime's range once in UTC
        return datetime.min.replace(tzinfo=UTC) if offset > timedelta(0) else datetime.max.replace(tzinfo=UTC)

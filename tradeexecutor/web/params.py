"""Query parameters of the webhook and the runner API: each value the OpenAPI document does not allow is a 400.

The parsers accept exactly what the OpenAPI documents declare, so a client generated from the
document (or schemathesis) and the code agree: an empty value (``?level=``) is not a value, a
choice is one of its enum's values as written, an integer is ASCII digits, and a time is one of
:data:`TIME_FORMS`. Views call the parsers inside ``try`` and turn :class:`BadParameter` into
the JSON error::

    try:
        limit = int_param(request, "limit", default=100, minimum=1, maximum=1000)
    except BadParameter as exc:
        return exc.response()

Unknown parameters are ignored (the dashboard adds ``v=`` to bust caches).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.web.responses import json_error, query_params

__all__ = [
    "TIME_FORMS",
    "UNIX_SECONDS_PATTERN",
    "BadParameter",
    "choice_param",
    "datetime_param",
    "int_param",
    "parse_time",
    "single_param",
]

#: Unix seconds as ``openapi.yaml`` declares them: up to 11 digits (year 5138), up to 6 decimals.
UNIX_SECONDS_PATTERN = r"^[0-9]{1,11}(\.[0-9]{1,6})?$"
#: What a time parameter may be, for messages (the document declares the same three forms).
TIME_FORMS = "an RFC 3339 time with its zone (2024-05-01T12:00:00Z), a date (2024-05-01, midnight UTC) or Unix seconds"

_UNIX_SECONDS = re.compile(UNIX_SECONDS_PATTERN)
_INTEGER = re.compile(r"^-?[0-9]+$")
_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
#: RFC 3339 ``date-time`` (section 5.6). A space where the offset's sign should be is an unencoded
#: "+" (a query string decodes "+" as a space), read as "+".
_DATE_TIME = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:([Zz])|([+ -])([0-9]{2}):([0-9]{2}))$"
)


class BadParameter(ValueError):
    """A query parameter that cannot be used; ``response()`` is the 400 naming it."""

    def __init__(self, parameter: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.details = details

    def response(self) -> Response:
        """The JSON 400: ``{"error": ..., "status": 400, "parameter": name, ...}``."""
        return json_error(400, str(self), parameter=self.parameter, **self.details)


def single_param(request: Request, name: str) -> str | None:
    """The one value of a parameter, None when absent; given twice or empty is an error."""
    values = query_params(request).getall(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadParameter(name, f"parameter {name!r} given more than once")
    value: str = values[0]
    if value == "":
        raise BadParameter(name, f"parameter {name!r} is empty: give a value or leave the parameter out")
    return value


def int_param(request: Request, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    """An integer parameter (ASCII digits, optional minus) within ``[minimum, maximum]``."""
    text = single_param(request, name)
    if text is None:
        return default
    if not _INTEGER.match(text):
        raise BadParameter(name, f"parameter {name!r} must be an integer, not {text!r}")
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise BadParameter(name, f"parameter {name!r} must be {bounds}, not {value}")
    return value


def choice_param(request: Request, name: str, allowed: Sequence[str], default: str | None) -> str | None:
    """A parameter that must be exactly one of ``allowed`` (the document's enum)."""
    text = single_param(request, name)
    if text is None:
        return default
    if text not in allowed:
        raise BadParameter(
            name,
            f"invalid value {text!r} for parameter {name!r}; allowed: {', '.join(allowed)}",
            allowed=list(allowed),
        )
    return text


def datetime_param(request: Request, name: str) -> datetime | None:
    """A time (one of :data:`TIME_FORMS`) as an aware UTC datetime, None when absent (see :func:`parse_time`)."""
    text = single_param(request, name)
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise BadParameter(name, f"parameter {name!r} {exc}") from None


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

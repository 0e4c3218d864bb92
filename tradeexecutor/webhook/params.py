"""Query parameter parsing for route modules: each bad value becomes a 400 that names the parameter.

Views call the parsers inside ``try`` and turn :class:`BadParameter` into the JSON error::

    try:
        limit = int_param(request, "limit", default=100, minimum=1, maximum=1000)
    except BadParameter as exc:
        return exc.response()
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.webhook.app import json_error, query_params

__all__ = ["BadParameter", "choice_param", "datetime_param", "int_param", "single_param"]


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
    """The one value of a parameter, None when absent; given twice is an error."""
    values = query_params(request).getall(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadParameter(name, f"parameter {name!r} given more than once")
    value: str = values[0]
    return value


def int_param(request: Request, name: str, *, default: int, minimum: int, maximum: int | None = None) -> int:
    """An integer parameter within ``[minimum, maximum]``."""
    text = single_param(request, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(name, f"parameter {name!r} must be an integer, not {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise BadParameter(name, f"parameter {name!r} must be {bounds}, not {value}")
    return value


def choice_param(request: Request, name: str, allowed: Sequence[str], default: str | None) -> str | None:
    """A parameter that must be one of ``allowed`` (compared case-insensitively, returned lower-case)."""
    text = single_param(request, name)
    if text is None or text == "":
        return default
    value = text.lower()
    if value not in allowed:
        raise BadParameter(
            name,
            f"invalid value {text!r} for parameter {name!r}; allowed: {', '.join(allowed)}",
            allowed=list(allowed),
        )
    return value


def datetime_param(request: Request, name: str) -> datetime | None:
    """An ISO 8601 time (naive = UTC) or Unix seconds, as an aware UTC datetime."""
    text = single_param(request, name)
    if text is None or text == "":
        return None
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    if len(text) > 6 and text[-6] == " ":  # an unencoded "+00:00" arrives as " 00:00"
        text = text[:-6] + "+" + text[-5:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter(
            name, f"parameter {name!r} must be an ISO 8601 time or Unix seconds, not {text!r}"
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise BadParameter(name, f"parameter {name!r} is out of range: {text!r}") from None

"""Query parameters of the webhook and the runner API: each value the OpenAPI document does not allow is a 400.

The parsers accept exactly what the OpenAPI documents declare, so a client generated from the
document (or schemathesis) and the code agree: an empty value (``?level=``) is not a value, a
choice is one of its enum's values as written, an integer is ASCII digits, and a time is one of
:data:`tradeexecutor.times.TIME_FORMS`. Views call the parsers inside ``try`` and turn :class:`BadParameter` into
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
from datetime import datetime
from typing import Any

from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.times import parse_time
from tradeexecutor.web.responses import json_error, query_params

__all__ = [
    "BadParameter",
    "choice_param",
    "datetime_param",
    "int_param",
    "single_param",
]

_INTEGER = re.compile(r"^-?[0-9]+$")


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
    """A time (one of :data:`tradeexecutor.times.TIME_FORMS`) as an aware UTC datetime, None when absent (see :func:`parse_time`)."""
    text = single_param(request, name)
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError as exc:
        raise BadParameter(name, f"parameter {name!r} {exc}") from None

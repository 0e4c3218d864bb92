"""JSON answers, JSON errors and routes that answer 405 for other methods: what every Pyramid app here shares.

The webhook (one executor) and the wallboard (the fleet) are siblings and do not import each
other, so the plumbing they both need lives here, one layer down:

- :func:`json_response` / :func:`json_error`: never cached, NaN and infinities become null, and
  every error has the one shape ``{"error": "...", "status": <code>, ...details}``;
- :func:`add_json_route`: a route served for some methods, a JSON 405 (with ``Allow``) for the rest;
- :func:`include_errors`: 404 for unknown paths, raised HTTP errors as JSON, and a catch-all 500
  carrying only a short id (the traceback goes to the log named by ``logger_name``, never to the
  client).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any

from pyramid.config import Configurator
from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import HTTPBadRequest, HTTPError, HTTPException
from pyramid.request import Request
from pyramid.response import Response

__all__ = ["LOGGER_SETTING", "View", "add_json_route", "encode_json", "include_errors", "json_bytes_response", "json_error",
           "json_response", "query_params", "safe_path"]

#: A Pyramid view callable as used here: request in, response out.
View = Callable[[Request], Response]

#: Settings key naming the logger the catch-all 500 writes tracebacks to.
LOGGER_SETTING = "tradeexecutor.error_logger"


def _json_default(value: Any) -> Any:
    """Encode the few non-JSON values a snapshot may hold: datetimes, enums, numpy scalars."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)


def _sanitise_floats(value: Any) -> Any:
    """Replace NaN and infinities (invalid JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _sanitise_floats(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_sanitise_floats(item) for item in value]
    return value


def encode_json(data: Any) -> bytes:
    """JSON bytes: datetimes as ISO text, enums by value, NaN and infinity as null."""
    try:
        text = json.dumps(data, default=_json_default, allow_nan=False)
    except ValueError:
        text = json.dumps(_sanitise_floats(data), default=_json_default)
    return text.encode("utf-8")


def json_bytes_response(body: bytes, status: int = 200) -> Response:
    """Already-encoded JSON bytes as a response that is never cached."""
    response = Response(body=body, status=status, content_type="application/json", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response that is never cached, serialised once with ``json.dumps``."""
    response = json_bytes_response(encode_json(data), status)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def json_error(status: int, message: str, **details: Any) -> Response:
    """The one error shape: ``{"error": message, "status": status, **details}``."""
    return json_response({"error": message, "status": status, **details}, status=status)


def safe_path(request: Request) -> str:
    """The request path for messages and logs, even when it is not valid UTF-8."""
    try:
        return str(request.path)
    except UnicodeDecodeError:
        raw = str(request.environ.get("SCRIPT_NAME", "")) + str(request.environ.get("PATH_INFO", ""))
        return raw.encode("latin-1", "replace").decode("utf-8", "replace")


def query_params(request: Request) -> Any:
    """The decoded query string (a MultiDict); raises HTTPBadRequest (a JSON 400) when it is not UTF-8."""
    try:
        return request.GET
    except UnicodeDecodeError as exc:
        raise HTTPBadRequest("query string is not valid UTF-8") from exc


def add_json_route(
    config: Configurator,
    name: str,
    pattern: str,
    view: View,
    *,
    methods: Sequence[str] = ("GET",),
) -> None:
    """Add a route served by ``view`` for ``methods``; any other method gets a 405 JSON error."""
    allowed = sorted({method.upper() for method in methods} | ({"HEAD"} if "GET" in methods else set()))
    config.add_route(name, pattern)
    config.add_view(view, route_name=name, request_method=tuple(allowed))

    def method_not_allowed(request: Request) -> Response:
        response = json_error(
            405, f"method {request.method} is not allowed for {safe_path(request)}", allowed=allowed
        )
        response.headers["Allow"] = ", ".join(allowed)
        return response

    # A view without predicates ranks below the method-specific one, so it only sees the rest.
    config.add_view(method_not_allowed, route_name=name)


# ---------------------------------------------------------------------------------------------
# Error views


def _not_found(request: Request) -> Response:
    """404 for a path no route matches."""
    return json_error(404, f"not found: {safe_path(request)}")


def _http_error(exc: HTTPError, request: Request) -> Response:
    """A 4xx/5xx raised by a view (``raise HTTPBadRequest(...)``), reshaped as the JSON error."""
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else exc.title
    return json_error(exc.code or 500, str(message))


def _bad_url(exc: URLDecodeError, request: Request) -> Response:
    """400 for a path that is not valid UTF-8."""
    return json_error(400, "path is not valid UTF-8")


def _http_passthrough(exc: HTTPException, request: Request) -> Response:
    """A non-error HTTP exception (a redirect) raised by a view is already the response."""
    return exc


def _internal_error(exc: Exception, request: Request) -> Response:
    """500 for anything unhandled: the traceback is logged with an id, the client gets only the id."""
    error_id = uuid.uuid4().hex[:12]
    logger = logging.getLogger(request.registry.settings.get(LOGGER_SETTING) or "tradeexecutor.web")
    logger.error(
        "unhandled error %s in %s %s",
        error_id,
        request.method,
        safe_path(request),
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return json_response({"error": "internal server error", "status": 500, "id": error_id}, status=500)


def include_errors(config: Configurator) -> None:
    """Register the error views: 404, raised HTTP errors as JSON, redirects as they are, and the catch-all 500."""
    config.add_notfound_view(_not_found)
    config.add_exception_view(_http_passthrough, context=HTTPException)
    config.add_exception_view(_http_error, context=HTTPError)
    config.add_exception_view(_bad_url, context=URLDecodeError)
    config.add_exception_view(_internal_error, context=Exception)

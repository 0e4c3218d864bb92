"""The Pyramid WSGI app of the webhook: JSON helpers, error views and the core read-only routes.

The app only reads the RunState it is given (``snapshot()``, ``get_source()``, ``get_image()``);
it never imports the engine, strategies or execution.

Adding routes from another module (issue 4: /healthz, /metrics, /state, /logs, dashboard,
auth, control): write a module with ``includeme(config)`` that calls ``add_json_route`` for
each route, and list its dotted name in ``ROUTE_MODULES`` (or pass it to ``create_app`` as
``extra_includes``)::

    # tradeexecutor/webhook/health.py
    from tradeexecutor.webhook.app import add_json_route, get_runstate, json_response

    def healthz(request):
        return json_response({"ok": get_runstate(request).snapshot().executor_running})

    def includeme(config):
        add_json_route(config, "healthz", "/healthz", healthz)

Every error leaves as ``{"error": "...", "status": <code>, ...details}`` with
``Cache-Control: no-store``; an unhandled exception becomes a 500 carrying only a short id,
and its traceback goes to the ``tradeexecutor.webhook`` log, never to the client.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from enum import Enum
from typing import Any

from pyramid.config import Configurator
from pyramid.exceptions import URLDecodeError
from pyramid.httpexceptions import HTTPBadRequest, HTTPError, HTTPException
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.webhook.options import WebhookOptions
from tradeexecutor.runstate import IMAGE_FORMATS, IMAGE_SIZES, IMAGE_THEMES, RunState, image_key

logger = logging.getLogger("tradeexecutor.webhook")

#: A Pyramid view callable as used here: request in, response out.
View = Callable[[Request], Response]
#: What create_app accepts as an extra include: a dotted module name or an ``includeme``-style callable.
Include = str | Callable[[Configurator], None]

#: Modules whose ``includeme`` adds routes; issue 4 appends its own here.
ROUTE_MODULES: tuple[str, ...] = (
    "tradeexecutor.webhook.auth",
    "tradeexecutor.webhook.control",
    "tradeexecutor.webhook.openapi",
    "tradeexecutor.webhook.dashboard",
    "tradeexecutor.webhook.health",
    "tradeexecutor.webhook.metrics",
    "tradeexecutor.webhook.logs",
    "tradeexecutor.webhook.files",
)

_RUNSTATE_SETTING = "tradeexecutor.runstate"
_SOURCE_ENABLED_SETTING = "tradeexecutor.source_enabled"
_OPTIONS_SETTING = "tradeexecutor.options"

_CONTENT_TYPES = {"png": "image/png", "svg": "image/svg+xml"}


# ---------------------------------------------------------------------------------------------
# Responses


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


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response that is never cached, serialised once with ``json.dumps``."""
    try:
        body = json.dumps(data, default=_json_default, allow_nan=False)
    except ValueError:
        body = json.dumps(_sanitise_floats(data), default=_json_default)
    response = Response(
        body=body.encode("utf-8"), status=status, content_type="application/json", charset="utf-8"
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def json_error(status: int, message: str, **details: Any) -> Response:
    """The one error shape: ``{"error": message, "status": status, **details}``."""
    return json_response({"error": message, "status": status, **details}, status=status)


def get_options(request: Request) -> WebhookOptions:
    """The WebhookOptions the app was built with."""
    options: WebhookOptions = request.registry.settings[_OPTIONS_SETTING]
    return options


def get_runstate(request: Request) -> RunState:
    """The RunState this app serves."""
    runstate: RunState = request.registry.settings[_RUNSTATE_SETTING]
    return runstate


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


# ---------------------------------------------------------------------------------------------
# Core views


def ping(request: Request) -> Response:
    """Liveness of the web server itself."""
    return json_response({"ping": "pong"})


def status(request: Request) -> Response:
    """The RunState snapshot, crash record included; rendered once per RunState change, not per request."""
    return _cached_json(get_runstate(request).cached_export(_status_body))


def _status_body(snapshot: RunState) -> bytes:
    """The /status JSON bytes of one snapshot."""
    return _encode(snapshot.to_dict())


def _encode(data: Any) -> bytes:
    """JSON bytes with the same encoding as json_response (NaN and infinity become null)."""
    try:
        text = json.dumps(data, default=_json_default, allow_nan=False)
    except ValueError:
        text = json.dumps(_sanitise_floats(data), default=_json_default)
    return text.encode("utf-8")


def source(request: Request) -> Response:
    """The strategy source code as plain text, unless this executor disabled it."""
    if not request.registry.settings[_SOURCE_ENABLED_SETTING]:
        return json_error(404, "source is disabled for this executor")
    text = get_runstate(request).get_source()
    if text is None:
        return json_error(404, "no strategy source loaded")
    response = Response(body=text.encode("utf-8"), content_type="text/plain", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _choice(request: Request, name: str, allowed: Iterable[str], default: str) -> str | Response:
    """A query parameter checked against its allowed values; a 400 response when it is not one."""
    allowed = tuple(allowed)
    values = query_params(request).getall(name)
    if not values:
        return default
    if len(values) > 1:
        return json_error(
            400, f"parameter {name!r} given more than once", parameter=name, allowed=list(allowed)
        )
    if values[0] not in allowed:
        return json_error(
            400,
            f"invalid value {values[0]!r} for parameter {name!r}; allowed: {', '.join(allowed)}",
            parameter=name,
            allowed=list(allowed),
        )
    return values[0]


def visualisation(request: Request) -> Response:
    """A chart image (``?type=small|large&theme=light|dark&format=svg|png``) as stored by the loop."""
    size = _choice(request, "type", IMAGE_SIZES, "large")
    theme = _choice(request, "theme", IMAGE_THEMES, "light")
    fmt = _choice(request, "format", IMAGE_FORMATS, "png")
    for choice in (size, theme, fmt):
        if isinstance(choice, Response):
            return choice
    assert isinstance(size, str) and isinstance(theme, str) and isinstance(fmt, str)
    runstate = get_runstate(request)
    key = image_key(size, theme, fmt)
    data = runstate.get_image(key)
    if data is None:
        available = runstate.image_keys()
        if not available:
            return json_error(404, "no chart yet: the first cycle has not completed")
        return json_error(404, f"no chart for {key}", available=available)
    response = Response(body=data, content_type=_CONTENT_TYPES[fmt])
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    if fmt == "svg":  # an SVG is a document: keep any script in it inert
        response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    return response


def summary(request: Request) -> Response:
    """The run's summary statistics; 404 until the loop has computed them. Rendered once per change."""
    body = get_runstate(request).cached_export(_summary_body)
    if body is None:
        return json_error(404, "no summary statistics yet: the first cycle has not completed")
    return _cached_json(body)


def _summary_body(snapshot: RunState) -> bytes | None:
    """The /summary JSON bytes of one snapshot, None while there are no statistics."""
    stats = snapshot.summary_statistics
    return _encode(stats) if stats else None


def _cached_json(body: bytes) -> Response:
    response = Response(body=body, content_type="application/json", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def include_core(config: Configurator) -> None:
    """Register /ping, /status, /source, /visualisation and /summary."""
    add_json_route(config, "ping", "/ping", ping)
    add_json_route(config, "status", "/status", status)
    add_json_route(config, "source", "/source", source)
    add_json_route(config, "visualisation", "/visualisation", visualisation)
    add_json_route(config, "summary", "/summary", summary)


# ---------------------------------------------------------------------------------------------
# The app


def create_app(
    runstate: RunState,
    *,
    source_enabled: bool | None = None,
    extra_includes: Sequence[Include] = (),
    options: WebhookOptions | None = None,
) -> Callable[..., Any]:
    """Build the WSGI app serving ``runstate``; ``extra_includes`` add route modules (or test-only views).

    ``options`` carries everything else the routes need (files, auth, CORS, control); route
    modules read it with ``get_options(request)``.
    """
    options = options or WebhookOptions()
    if source_enabled is not None:
        options = dataclasses.replace(options, source_enabled=bool(source_enabled))
    settings = {
        _RUNSTATE_SETTING: runstate,
        _SOURCE_ENABLED_SETTING: options.source_enabled,
        _OPTIONS_SETTING: options,
    }
    config = Configurator(settings=settings)
    config.include(include_errors)
    config.include(include_core)
    for module in ROUTE_MODULES:
        config.include(module)
    for extra in extra_includes:
        config.include(extra)
    return config.make_wsgi_app()

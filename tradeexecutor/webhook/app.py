"""The Pyramid WSGI app of the webhook: the core read-only routes, and the route modules it includes.

The app only reads the RunState it is given (``snapshot()``, ``get_source()``, ``get_image()``);
it never imports the engine, strategies or execution.

Adding routes from another module (as /healthz, /metrics, /state, /logs, the dashboard,
auth and control do): write a module with ``includeme(config)`` that calls ``add_json_route`` for
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
and its traceback goes to the ``tradeexecutor.webhook`` log, never to the client. The JSON
helpers and error views live in :mod:`tradeexecutor.web` (the wallboard uses them too) and are
re-exported here, so route modules keep importing them from this module.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.runstate import IMAGE_FORMATS, IMAGE_SIZES, IMAGE_THEMES, RunState, image_key
from tradeexecutor.web import (
    LOGGER_SETTING,
    View,
    add_json_route,
    encode_json,
    include_errors,
    json_bytes_response,
    json_error,
    json_response,
    query_params,
    safe_path,
)
from tradeexecutor.webhook.options import WebhookOptions

__all__ = ["ROUTE_MODULES", "View", "add_json_route", "create_app", "get_options", "get_runstate", "include_errors",
           "json_error", "json_response", "query_params", "safe_path"]

logger = logging.getLogger("tradeexecutor.webhook")

#: What create_app accepts as an extra include: a dotted module name or an ``includeme``-style callable.
Include = str | Callable[[Configurator], None]

#: Modules whose ``includeme`` adds routes; a new route module is listed here.
ROUTE_MODULES: tuple[str, ...] = (
    "tradeexecutor.webhook.auth",
    "tradeexecutor.webhook.control",
    "tradeexecutor.webhook.cast",
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


def get_options(request: Request) -> WebhookOptions:
    """The WebhookOptions the app was built with."""
    options: WebhookOptions = request.registry.settings[_OPTIONS_SETTING]
    return options


def get_runstate(request: Request) -> RunState:
    """The RunState this app serves."""
    runstate: RunState = request.registry.settings[_RUNSTATE_SETTING]
    return runstate


# ---------------------------------------------------------------------------------------------
# Core views


def ping(request: Request) -> Response:
    """Liveness of the web server itself."""
    return json_response({"ping": "pong"})


def status(request: Request) -> Response:
    """The RunState snapshot, crash record included; rendered once per RunState change, not per request."""
    return json_bytes_response(get_runstate(request).cached_export(_status_body))


def _status_body(snapshot: RunState) -> bytes:
    """The /status JSON bytes of one snapshot."""
    return encode_json(snapshot.to_dict())


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
    return json_bytes_response(body)


def _summary_body(snapshot: RunState) -> bytes | None:
    """The /summary JSON bytes of one snapshot, None while there are no statistics."""
    stats = snapshot.summary_statistics
    return encode_json(stats) if stats else None


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
        LOGGER_SETTING: logger.name,
    }
    config = Configurator(settings=settings)
    config.include(include_errors)
    config.include(include_core)
    for module in ROUTE_MODULES:
        config.include(module)
    for extra in extra_includes:
        config.include(extra)
    return config.make_wsgi_app()

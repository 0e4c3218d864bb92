"""The wallboard's Pyramid app: the fleet page, the executors' JSON, and the charts jobs cast to.

Routes:

- ``GET /`` — the fleet page: every executor's status, health, mode, equity and its change, open
  positions, last and next cycle and crash reason, sortable, refreshed every ``refresh_seconds``;
- ``GET /api/executors`` — the rows of the last poll, as the poller serialised them (one JSON
  document, never built per request, never waiting on an executor);
- ``GET /wallboard/{page}`` and ``GET /wallboard/{page}/{chart}`` — a page (the grid of its
  charts) or one chart, drawn in the browser from ``/api/wallboard/{page}[/{chart}]``;
- ``PUT /wallboard/{page}/{chart}`` — a job casts chart data (``tradeexecutor.cast``) with
  ``Authorization: Bearer <TRADEEXECUTOR_WALLBOARD_TOKEN>``; ``DELETE`` removes the chart;
- ``GET /api/wallboard`` — every page and chart (names, titles, sources, times);
- ``GET /ping``, ``GET /healthz`` — liveness; /healthz fails when polling has stopped;
- ``/api/runs...`` — the runner API, every ``tradeexecutor runs`` verb over HTTP, behind basic auth
  (:mod:`tradeexecutor.wallboard.runner_api`).

Every error is the JSON shape of :mod:`tradeexecutor.web`; the token is compared in constant
time and never logged. Reading the board needs no credentials: put it behind the same proxy as
the executors' dashboards if it must not be public (it shows what they show, minus control).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from functools import cache
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.cast import MAX_BODY_BYTES, WALLBOARD_TOKEN_ENV, check_name
from tradeexecutor.wallboard.charts import ChartsFull, ChartStore
from tradeexecutor.wallboard.poller import Poller
from tradeexecutor.wallboard.runner_api import Runner, include_runner_api
from tradeexecutor.wallboard.settings import WallboardConfig
from tradeexecutor.web import (
    LOGGER_SETTING,
    Asset,
    add_json_route,
    include_errors,
    json_bytes_response,
    json_error,
    json_response,
    page_response,
    read_assets,
    static_view,
)

__all__ = ["ASSETS", "PAGES", "create_app", "load_assets"]

logger = logging.getLogger("tradeexecutor.wallboard")

#: Served files and their content types.
ASSETS: dict[str, str] = {
    "fleet.html": "text/html; charset=utf-8",
    "charts.html": "text/html; charset=utf-8",
    "wallboard.css": "text/css; charset=utf-8",
    "fleet.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "linechart.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: The pages (served at their own paths, not under /static).
PAGES = ("fleet.html", "charts.html")

_SETTINGS = "tradeexecutor.wallboard"


@cache
def load_assets() -> dict[str, Asset]:
    """Every file of the wallboard's static folder, read once."""
    return read_assets("tradeexecutor.wallboard", ASSETS, pages=PAGES)


def _parts(request: Request) -> tuple[WallboardConfig, Poller, ChartStore]:
    parts: tuple[WallboardConfig, Poller, ChartStore] = request.registry.settings[_SETTINGS]
    return parts


def _names(request: Request) -> tuple[str, str | None] | Response:
    """The page and chart names of the path, or a 400 naming what is wrong."""
    page, chart = request.matchdict["page"], request.matchdict.get("chart")
    try:
        check_name("page", page)
        if chart is not None:
            check_name("chart", chart)
    except ValueError as exc:
        return json_error(400, str(exc))
    return page, chart


# ---------------------------------------------------------------------------------------------
# Views


def fleet_page(request: Request) -> Response:
    """GET / : the fleet page."""
    return page_response(request, load_assets()["fleet.html"])


def executors(request: Request) -> Response:
    """GET /api/executors : the last poll's rows."""
    return json_bytes_response(_parts(request)[1].body())


def index(request: Request) -> Response:
    """GET /api/wallboard : pages and charts."""
    return json_response(_parts(request)[2].index())


def page_data(request: Request) -> Response:
    """GET /api/wallboard/{page} : the page's charts with their data."""
    names = _names(request)
    if isinstance(names, Response):
        return names
    config, _, charts = _parts(request)
    return json_bytes_response(charts.page(names[0], refresh_seconds=config.refresh_seconds))


def chart_data(request: Request) -> Response:
    """GET /api/wallboard/{page}/{chart} : one chart with its data."""
    names = _names(request)
    if isinstance(names, Response):
        return names
    page, chart = names
    assert chart is not None
    body = _parts(request)[2].chart(page, chart)
    if body is None:
        return json_error(404, f"nothing was cast to /wallboard/{page}/{chart} yet")
    return json_bytes_response(body)


def page_view(request: Request) -> Response:
    """GET /wallboard/{page} : the page of charts (it may be empty until a job casts to it)."""
    names = _names(request)
    if isinstance(names, Response):
        return names
    return page_response(request, load_assets()["charts.html"])


def _token_refusal(request: Request, config: WallboardConfig) -> Response | None:
    """None when the request carries the wallboard's token; else the 403 (no token set) or 401."""
    if not config.token:
        return json_error(403, f"casting is off: start the wallboard with {WALLBOARD_TOKEN_ENV} set")
    scheme, _, given = str(request.headers.get("Authorization", "")).strip().partition(" ")
    ok = hmac.compare_digest(given.strip().encode("utf-8"), config.token.encode("utf-8"))
    if scheme.lower() == "bearer" and ok:
        return None
    logger.info("refused a %s of %s without the right token from %s", request.method, request.path,
                request.client_addr)
    response = json_error(401, f"casting needs Authorization: Bearer <the wallboard's {WALLBOARD_TOKEN_ENV}>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="wallboard"'
    return response


def _cast(request: Request, page: str, chart: str) -> Response:
    """PUT: store the chart data sent."""
    config, _, charts = _parts(request)
    refusal = _token_refusal(request, config)
    if refusal is not None:
        return refusal
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return json_error(413, f"chart data is larger than {MAX_BODY_BYTES} bytes; downsample it")
    raw = request.body_file.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        return json_error(413, f"chart data is larger than {MAX_BODY_BYTES} bytes; downsample it")
    try:
        data = json.loads(raw)
    except ValueError:
        return json_error(400, "chart data is not JSON")
    try:
        created, updates = charts.put(page, chart, data)
    except ValueError as exc:
        return json_error(400, str(exc))
    except ChartsFull as exc:
        return json_error(409, str(exc))
    if created:
        logger.info("chart /wallboard/%s/%s created", page, chart)
    return json_response({"path": f"/wallboard/{page}/{chart}", "created": created, "updates": updates})


def _delete(request: Request, page: str, chart: str) -> Response:
    """DELETE: forget the chart."""
    config, _, charts = _parts(request)
    refusal = _token_refusal(request, config)
    if refusal is not None:
        return refusal
    if not charts.delete(page, chart):
        return json_error(404, f"nothing was cast to /wallboard/{page}/{chart}")
    return json_response({"path": f"/wallboard/{page}/{chart}", "deleted": True})


def chart_view(request: Request) -> Response:
    """GET (the chart's page), PUT (cast) and DELETE of /wallboard/{page}/{chart}."""
    names = _names(request)
    if isinstance(names, Response):
        return names
    page, chart = names
    assert chart is not None
    if request.method == "PUT":
        return _cast(request, page, chart)
    if request.method == "DELETE":
        return _delete(request, page, chart)
    return page_response(request, load_assets()["charts.html"])


def ping(request: Request) -> Response:
    """GET /ping : the web server answers."""
    return json_response({"ping": "pong"})


def healthz(request: Request) -> Response:
    """GET /healthz : 200 while the poll keeps running, 503 when it has stopped or hangs."""
    _, poller, _ = _parts(request)
    details = {"rounds": poller.rounds}
    if poller.healthy():
        return json_response({"healthy": True, **details})
    return json_error(503, "the wallboard has stopped polling its executors", healthy=False, **details)


# ---------------------------------------------------------------------------------------------
# The app


def create_app(config: WallboardConfig, poller: Poller, charts: ChartStore,
               runner: Runner | None = None) -> Callable[..., Any]:
    """The WSGI app of the wallboard; the caller starts the poller and serves the app.

    ``runner`` does the runner API's work (the CLI's ``runs.verbs.RunVerbs`` over ``--runs-dir``);
    without it the API answers 404.
    """
    configurator = Configurator(settings={_SETTINGS: (config, poller, charts), LOGGER_SETTING: logger.name})
    configurator.include(include_errors)
    add_json_route(configurator, "fleet", "/", fleet_page)
    add_json_route(configurator, "static", "/static/{name}", static_view(load_assets, pages=PAGES))
    add_json_route(configurator, "executors", "/api/executors", executors)
    add_json_route(configurator, "index", "/api/wallboard", index)
    add_json_route(configurator, "page_data", "/api/wallboard/{page}", page_data)
    add_json_route(configurator, "chart_data", "/api/wallboard/{page}/{chart}", chart_data)
    add_json_route(configurator, "page", "/wallboard/{page}", page_view)
    add_json_route(configurator, "chart", "/wallboard/{page}/{chart}", chart_view, methods=("GET", "PUT", "DELETE"))
    add_json_route(configurator, "ping", "/ping", ping)
    add_json_route(configurator, "healthz", "/healthz", healthz)
    include_runner_api(configurator, config, runner)
    return configurator.make_wsgi_app()

"""The dashboard: one self-contained HTML page at ``/`` and its few assets at ``/static/{name}``.

The page (``static/dashboard.html`` + ``.css`` + ``.js``, plain files, no build step) fetches
/status, /summary, /positions, /logs and /visualisation with URLs relative to itself every ten
seconds; nothing is loaded from anywhere else, and its Content-Security-Policy says so.

Only the files named in ``ASSETS`` are served, read once from the package and looked up by exact
name (:mod:`tradeexecutor.web.assets`, shared with the wallboard). The page links its assets as
``static/<name>?v=<hash of the file>``: such a URL never changes meaning, so it is cached for a
year, while the page itself (and an asset asked for without the current hash) is revalidated on
every load with its ETag.
"""

from __future__ import annotations

from functools import cache

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.web import (
    CACHE_IMMUTABLE,
    CACHE_REVALIDATE,
    CONTENT_SECURITY_POLICY,
    Asset,
    add_json_route,
    page_response,
    read_assets,
    static_view,
)

__all__ = ["ASSETS", "CACHE_IMMUTABLE", "CACHE_REVALIDATE", "CONTENT_SECURITY_POLICY", "PAGE", "Asset",
           "dashboard", "includeme", "load_assets"]

#: Served files and their content types; the page is ``dashboard.html``, served at ``/``.
ASSETS: dict[str, str] = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

PAGE = "dashboard.html"


@cache
def load_assets() -> dict[str, Asset]:
    """Every asset by name, the page's asset links rewritten to carry each asset's version."""
    return read_assets("tradeexecutor.webhook", ASSETS, pages=(PAGE,))


def dashboard(request: Request) -> Response:
    """GET / : the dashboard page."""
    return page_response(request, load_assets()[PAGE])


def includeme(config: Configurator) -> None:
    """Register ``/`` and ``/static/{name}``."""
    add_json_route(config, "dashboard", "/", dashboard)
    add_json_route(config, "dashboard_static", "/static/{name}", static_view(load_assets, pages=(PAGE,)))

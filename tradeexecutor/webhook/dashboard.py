"""The dashboard: one self-contained HTML page at ``/`` and its few assets at ``/static/{name}``.

The page (``static/dashboard.html`` + ``.css`` + ``.js``, plain files, no build step) fetches
/status, /summary, /positions, /logs and /visualisation with URLs relative to itself every ten
seconds; nothing is loaded from anywhere else, and its Content-Security-Policy says so.

Only the files named in ``ASSETS`` are served, looked up by exact name in a dict read once from
the package, so no request can reach any other file. The page links its assets as
``static/<name>?v=<hash of the file>``: such a URL never changes meaning, so it is cached for a
year, while the page itself (and an asset asked for without the current hash) is revalidated on
every load with its ETag.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.webhook.app import add_json_route, json_error, query_params

#: Served files and their content types; the page is ``dashboard.html``, served at ``/``.
ASSETS: dict[str, str] = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}

PAGE = "dashboard.html"

#: What the page may load: its own assets and endpoints, nothing else; no inline code, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Cache-Control of a versioned asset URL (its bytes can never change) and of everything else.
CACHE_IMMUTABLE = "private, max-age=31536000, immutable"
CACHE_REVALIDATE = "no-cache"

_ASSET_LINK = re.compile(r"""(?<=["'])static/([A-Za-z0-9_.-]+)(?=["'])""")


@dataclass(frozen=True)
class Asset:
    """One served file, read once."""

    #: The bytes sent.
    body: bytes
    #: Content-Type header.
    content_type: str
    #: Short hash of ``body``: the ETag and the ``?v=`` of versioned links.
    version: str


def _read(name: str) -> bytes:
    return (resources.files("tradeexecutor.webhook") / "static" / name).read_bytes()


def _version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


@cache
def load_assets() -> dict[str, Asset]:
    """Every asset by name, the page's asset links rewritten to carry each asset's version."""
    assets: dict[str, Asset] = {}
    for name, content_type in ASSETS.items():
        if name != PAGE:
            body = _read(name)
            assets[name] = Asset(body, content_type, _version(body))

    def versioned(match: re.Match[str]) -> str:
        asset = assets.get(match.group(1))
        return f"static/{match.group(1)}" + (f"?v={asset.version}" if asset else "")

    page = _ASSET_LINK.sub(versioned, _read(PAGE).decode("utf-8")).encode("utf-8")
    assets[PAGE] = Asset(page, ASSETS[PAGE], _version(page))
    return assets


def _asset_response(request: Request, asset: Asset, cache_control: str) -> Response:
    """The asset with its ETag (a matching If-None-Match gets 304) and safe headers."""
    response = Response(body=asset.body, conditional_response=True)
    response.headers["Content-Type"] = asset.content_type
    response.etag = asset.version
    response.headers["Cache-Control"] = cache_control
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def dashboard(request: Request) -> Response:
    """GET / : the dashboard page."""
    response = _asset_response(request, load_assets()[PAGE], CACHE_REVALIDATE)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    return response


def static_asset(request: Request) -> Response:
    """GET /static/{name} : one of the page's assets, by exact name only."""
    name = request.matchdict["name"]
    assets = load_assets()
    if name == PAGE or name not in assets:
        return json_error(404, f"no static file {name!r}", available=sorted(set(assets) - {PAGE}))
    asset = assets[name]
    versions = query_params(request).getall("v")
    immutable = versions == [asset.version]
    return _asset_response(request, asset, CACHE_IMMUTABLE if immutable else CACHE_REVALIDATE)


def includeme(config: Configurator) -> None:
    """Register ``/`` and ``/static/{name}``."""
    add_json_route(config, "dashboard", "/", dashboard)
    add_json_route(config, "dashboard_static", "/static/{name}", static_asset)

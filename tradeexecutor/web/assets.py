"""Self-contained pages shipped inside a package: files read once, served by exact name with safe headers.

A page (HTML) links its assets as ``static/<name>`` or ``/static/<name>``; :func:`read_assets`
rewrites those links to carry ``?v=<hash of the file>``. Such a URL never changes meaning, so
it is cached for a year, while a page (and an asset asked for without the current hash) is
revalidated on every load with its ETag. Only the files listed are served, looked up by exact
name in a dict, so no request can reach any other file.

Pages load nothing from anywhere else (no CDN, no network), and :data:`CONTENT_SECURITY_POLICY`
says so to the browser.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.web.responses import View, json_error, query_params

__all__ = ["CACHE_IMMUTABLE", "CACHE_REVALIDATE", "CONTENT_SECURITY_POLICY", "Asset", "asset_response",
           "page_response", "read_assets", "static_view"]

#: What a page may load: its own assets and endpoints, nothing else; no inline code, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

#: Cache-Control of a versioned asset URL (its bytes can never change) and of everything else.
CACHE_IMMUTABLE = "private, max-age=31536000, immutable"
CACHE_REVALIDATE = "no-cache"

_ASSET_LINK = re.compile(r"""(?<=["'])(/?static/)([A-Za-z0-9_.-]+)(?=["'])""")


@dataclass(frozen=True)
class Asset:
    """One served file, read once."""

    #: The bytes sent.
    body: bytes
    #: Content-Type header.
    content_type: str
    #: Short hash of ``body``: the ETag and the ``?v=`` of versioned links.
    version: str


def _version(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:16]


def read_assets(package: str, files: Mapping[str, str], pages: Iterable[str]) -> dict[str, Asset]:
    """Every file of ``<package>/static`` named in ``files`` (name → content type), pages' links versioned."""
    folder = resources.files(package) / "static"
    pages = set(pages)
    assets: dict[str, Asset] = {}
    for name, content_type in files.items():
        if name not in pages:
            body = (folder / name).read_bytes()
            assets[name] = Asset(body, content_type, _version(body))

    def versioned(match: re.Match[str]) -> str:
        asset = assets.get(match.group(2))
        return match.group(1) + match.group(2) + (f"?v={asset.version}" if asset else "")

    for name in pages:
        page = _ASSET_LINK.sub(versioned, (folder / name).read_bytes().decode("utf-8")).encode("utf-8")
        assets[name] = Asset(page, files[name], _version(page))
    return assets


def asset_response(request: Request, asset: Asset, cache_control: str) -> Response:
    """The asset with its ETag (a matching If-None-Match gets 304) and safe headers."""
    response = Response(body=asset.body, conditional_response=True)
    response.headers["Content-Type"] = asset.content_type
    response.etag = asset.version
    response.headers["Cache-Control"] = cache_control
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def page_response(request: Request, asset: Asset) -> Response:
    """A page: revalidated on every load, its Content-Security-Policy on, never framed."""
    response = asset_response(request, asset, CACHE_REVALIDATE)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    return response


def static_view(load: Callable[[], dict[str, Asset]], pages: Iterable[str]) -> View:
    """``GET /static/{name}``: one of the assets by exact name (pages are served at their own paths)."""
    hidden = frozenset(pages)

    def static_asset(request: Request) -> Response:
        name = request.matchdict["name"]
        assets = load()
        if name in hidden or name not in assets:
            return json_error(404, f"no static file {name!r}", available=sorted(set(assets) - hidden))
        asset = assets[name]
        immutable = query_params(request).getall("v") == [asset.version]
        return asset_response(request, asset, CACHE_IMMUTABLE if immutable else CACHE_REVALIDATE)

    return static_asset

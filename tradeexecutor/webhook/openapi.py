"""The webhook's OpenAPI 3 description, served as YAML at ``GET /api/openapi.yaml``.

The document is ``openapi.yaml`` next to this module (package data), read once when the app is
built; ``tests/test_openapi.py`` keeps it in step with the routes the app really registers, and
``tests/test_schemathesis.py`` checks a live executor's responses against it.
"""

from __future__ import annotations

from importlib import resources

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.webhook.app import add_json_route

#: Where the document is served.
OPENAPI_PATH = "/api/openapi.yaml"

#: Media type of the document.
OPENAPI_CONTENT_TYPE = "application/yaml"


def openapi_document() -> bytes:
    """The OpenAPI document as the UTF-8 YAML bytes shipped with the package."""
    return resources.files("tradeexecutor.webhook").joinpath("openapi.yaml").read_bytes()


def includeme(config: Configurator) -> None:
    """Register ``GET /api/openapi.yaml``; the file is read here, once, not per request."""
    document = openapi_document()

    def openapi(request: Request) -> Response:
        response = Response(body=document, content_type=OPENAPI_CONTENT_TYPE, charset="utf-8")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    add_json_route(config, "openapi", OPENAPI_PATH, openapi)

"""HTTP plumbing shared by the webhook and the wallboard: JSON answers and errors, routes, packaged pages.

A layer below both (they are siblings and never import each other); it imports only pyramid
and webob, never anything of the executor. The waitress server that runs either app is the
webhook's ``WebhookServer``, wired by the CLI.
"""

from __future__ import annotations

from tradeexecutor.web.assets import (
    CACHE_IMMUTABLE,
    CACHE_REVALIDATE,
    CONTENT_SECURITY_POLICY,
    Asset,
    asset_response,
    page_response,
    read_assets,
    static_view,
)
from tradeexecutor.web.responses import (
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

__all__ = [
    "CACHE_IMMUTABLE",
    "CACHE_REVALIDATE",
    "CONTENT_SECURITY_POLICY",
    "LOGGER_SETTING",
    "Asset",
    "View",
    "add_json_route",
    "asset_response",
    "encode_json",
    "include_errors",
    "json_bytes_response",
    "json_error",
    "json_response",
    "page_response",
    "query_params",
    "read_assets",
    "safe_path",
    "static_view",
]

"""The executor's HTTP interface: a Pyramid app over a RunState, served by waitress.

This is the only package that imports pyramid and waitress. It reads RunState snapshots and
files the store wrote; it never imports the engine, strategies, execution or daemon.
"""

from __future__ import annotations

from tradeexecutor.webhook.app import (
    ROUTE_MODULES,
    add_json_route,
    create_app,
    get_runstate,
    json_error,
    json_response,
    query_params,
    safe_path,
)
from tradeexecutor.webhook.server import WebhookServer, check_port_free

__all__ = [
    "ROUTE_MODULES",
    "WebhookServer",
    "add_json_route",
    "check_port_free",
    "create_app",
    "get_runstate",
    "json_error",
    "json_response",
    "query_params",
    "safe_path",
]

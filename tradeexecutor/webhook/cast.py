"""``POST /control/cast``: point the executor's chart casting at another wallboard chart, or stop it.

The body is ``{"target": "/wallboard/page1/chart1"}`` (a wallboard path or an http(s) URL), or
``{"target": null}`` / ``"-"`` / ``""`` to stop. The target is checked here (a 400 says what is
wrong with it), then handed to ``WebhookOptions.cast_sink`` (the loop's queue), which records it
in the state directory's cast.json and journals it on the loop's thread; the answer is 202 at
once. Whether the wallboard knows the path is found out by sending, and journalled.

Like every control route it is refused with 403 unless basic auth is configured (the auth tween
has already checked the credentials when it is).
"""

from __future__ import annotations

import json
import logging

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.cast import parse_target
from tradeexecutor.errors import ConfigError
from tradeexecutor.webhook.app import add_json_route, get_options, json_error, json_response
from tradeexecutor.webhook.control import AUTH_REQUIRED_MESSAGE

__all__ = ["MAX_BODY", "cast", "includeme"]

logger = logging.getLogger("tradeexecutor.webhook")

#: Largest body read.
MAX_BODY = 8192


def _target(request: Request) -> tuple[str | None, Response | None]:
    """The target the body names, or the 400 saying what is wrong with the body."""
    raw = request.body_file.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        return None, json_error(400, f"the body is larger than {MAX_BODY} bytes", command="cast")
    try:
        body = json.loads(raw)
    except ValueError:
        return None, json_error(400, 'the body must be JSON: {"target": "/wallboard/page1/chart1"} or '
                                     '{"target": null} to stop', command="cast")
    if not isinstance(body, dict) or "target" not in body or not (body["target"] is None
                                                                  or isinstance(body["target"], str)):
        return None, json_error(400, 'the body must be {"target": <a wallboard path or URL, or null>}',
                                command="cast")
    try:
        return parse_target(body["target"]), None
    except ConfigError as exc:
        return None, json_error(400, str(exc), command="cast")


def cast(request: Request) -> Response:
    """POST /control/cast."""
    options = get_options(request)
    if not options.auth_enabled:
        return json_error(403, AUTH_REQUIRED_MESSAGE, command="cast")
    target, problem = _target(request)
    if problem is not None:
        return problem
    sink = options.cast_sink
    if sink is None:
        return json_error(503, "casting is not available: no loop is running", command="cast")
    try:
        accepted = sink(target)
    except Exception:  # the sink belongs to the loop; its failure must not become a traceback here
        logger.exception("cast sink failed")
        accepted = False
    if not accepted:
        return json_error(503, "the cast target was not accepted", command="cast")
    logger.info("control command cast queued (%s)", target or "stop")
    return json_response({"accepted": True, "command": "cast", "target": target}, status=202)


def includeme(config: Configurator) -> None:
    """Register ``POST /control/cast`` (any other method: 405)."""
    add_json_route(config, "control_cast", "/control/cast", cast, methods=("POST",))

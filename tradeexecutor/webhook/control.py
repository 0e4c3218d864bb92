"""Operator control over HTTP: ``POST /control/stop|pause|resume|cycle-now`` hand a command to the loop.

The webhook never touches the loop itself: each request passes one command name to
``WebhookOptions.command_sink`` (the loop's queue, which journals it and acts on its own
thread) and answers 202 once the command is queued. Control is refused with 403 unless basic
auth is configured, since anyone who can reach the port could otherwise stop the executor;
with auth on, the auth tween has already checked the credentials before these views run.
"""

from __future__ import annotations

import logging

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.webhook.app import View, add_json_route, get_options, json_error, json_response

logger = logging.getLogger("tradeexecutor.webhook")

#: URL path segment → command name given to the sink.
COMMANDS: dict[str, str] = {
    "stop": "stop",
    "pause": "pause",
    "resume": "resume",
    "cycle-now": "cycle_now",
}

#: The 403 message when auth is not configured.
AUTH_REQUIRED_MESSAGE = (
    "control needs authentication: set TRADEEXECUTOR_WEBHOOK_USERNAME and TRADEEXECUTOR_WEBHOOK_PASSWORD"
)


def _command_view(command: str) -> View:
    """The POST view for one command."""

    def control(request: Request) -> Response:
        options = get_options(request)
        if not options.auth_enabled:
            return json_error(403, AUTH_REQUIRED_MESSAGE, command=command)
        sink = options.command_sink
        if sink is None:
            return json_error(503, "control is not available: no loop is running", command=command)
        try:
            accepted = sink(command)
        except Exception:  # the sink belongs to the loop; its failure must not become a traceback here
            logger.exception("command sink failed on %s", command)
            accepted = False
        if not accepted:
            return json_error(503, f"command {command} was not accepted", command=command)
        logger.info("control command %s queued", command)
        return json_response({"accepted": True, "command": command}, status=202)

    control.__name__ = f"control_{command}"
    return control


def includeme(config: Configurator) -> None:
    """Register the four ``POST /control/...`` routes (any other method: 405)."""
    for segment, command in COMMANDS.items():
        add_json_route(
            config, f"control_{command}", f"/control/{segment}", _command_view(command), methods=("POST",)
        )

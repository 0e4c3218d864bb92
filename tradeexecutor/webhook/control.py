"""Operator control over HTTP: ``POST /control/<action>`` for every action of :data:`tradeexecutor.control.ACTIONS`.

The webhook never touches the loop's state itself. Signals (stop, pause, resume, cycle-now)
pass one command name to ``WebhookOptions.command_sink`` and are answered 202 once queued.
Jobs (close, close-all, reload-params) have their body checked here (a 400 says what is wrong),
then go to ``WebhookOptions.action_sink`` (the loop's queue), whose reply the view waits on for
up to ``action_wait_seconds``: the loop's answer becomes 200 (done), 404 (no such position),
409 (already closed, nothing open) or 400 (parameters refused, with the reason); a loop busy
for longer gets 202, and the journal tells the result. Control is refused with 403 unless
basic auth is configured, since anyone who can reach the port could otherwise act on the
executor; with auth on, the auth tween has already checked the credentials before these views run.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.control import ACTIONS, Action, ActionRequest, Outcome
from tradeexecutor.webhook.app import View, add_json_route, get_options, json_error, json_response

logger = logging.getLogger("tradeexecutor.webhook")

#: Largest body a job action reads.
MAX_BODY = 65536

#: The loop's answer → HTTP status.
STATUS_OF: dict[Outcome, int] = {Outcome.done: 200, Outcome.not_found: 404, Outcome.conflict: 409,
                                 Outcome.invalid: 400, Outcome.failed: 503}

#: What each job's body must look like, for error messages.
_BODY_FORMS = {
    "position_id": '{"position_id": 3}',
    "parameters": '{"parameters": {"fast": 10}}',
    "": "no body (or {})",
}

#: Who an action over the webhook is journaled as (pause and resume are journaled with the same reason).
OPERATOR = "operator"

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


class BadBody(ValueError):
    """The body of a job action is not what the action takes; the message says what it must be."""


def _body(request: Request, action: Action) -> dict[str, Any]:
    """The JSON object of the body (empty for no body), checked against what ``action`` takes."""
    raw = request.body_file.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise BadBody(f"the body is larger than {MAX_BODY} bytes")
    form = _BODY_FORMS[action.argument]
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadBody(f"the body must be JSON: {form}") from None
    if not isinstance(body, dict):
        raise BadBody(f"the body must be a JSON object: {form}")
    allowed = {action.argument} - {""}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadBody(f"unknown field {unknown[0]!r}; the body must be {form}")
    if action.argument == "position_id":
        value = body.get("position_id")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadBody(f"position_id must be a position id (a whole number from 1): {form}")
    elif action.argument == "parameters":
        value = body.get("parameters")
        if not isinstance(value, dict) or not value:
            raise BadBody(f"parameters must be an object of at least one name and value: {form}")
        for name, item in value.items():
            if not isinstance(item, (str, int, float, bool)):
                raise BadBody(f"parameter {name!r} must be a single value (number, text or true/false)")
    return body


def _job_view(action: Action) -> View:
    """The POST view for one job action: checked body → the loop → its answer (or 202 when it is busy)."""
    command = action.command

    def control(request: Request) -> Response:
        options = get_options(request)
        if not options.auth_enabled:
            return json_error(403, AUTH_REQUIRED_MESSAGE, command=command)
        try:
            body = _body(request, action)
        except BadBody as exc:
            return json_error(400, str(exc), command=command)
        sink = options.action_sink
        if sink is None:
            return json_error(503, "control is not available: no loop is running", command=command)
        # "operator", never the username: the webhook has one configured user, so the name says nothing the
        # journal needs, and it is half of a credential, which never reaches the journal or the ledger.
        job = ActionRequest(command, by=OPERATOR, position_id=body.get("position_id"),
                            parameters=body.get("parameters"))
        try:
            reply = sink(job)
        except Exception:  # the sink belongs to the loop; its failure must not become a traceback here
            logger.exception("action sink failed on %s", command)
            return json_error(503, f"command {command} was not accepted", command=command)
        logger.info("control command %s queued", command)
        result = reply.wait(options.action_wait_seconds)
        if result is None:
            return json_response({"accepted": True, "command": command,
                                  "message": "queued; the loop is busy, the journal will tell the result"},
                                 status=202)
        status = STATUS_OF[result.outcome]
        if status != 200:  # the loop's details too (close-all's ``not_closed``), as a done answer has them
            extra = {"details": result.details} if result.details else {}
            return json_error(status, result.message, command=command, outcome=result.outcome.value, **extra)
        return json_response({"command": command, "outcome": result.outcome.value, "message": result.message,
                              "details": result.details})

    control.__name__ = f"control_{command}"
    return control


def control_info(request: Request) -> Response:
    """GET /control: the actions and whether this executor takes them now (the dashboard shows its buttons by it)."""
    options = get_options(request)
    if not options.auth_enabled:
        reason = AUTH_REQUIRED_MESSAGE
    elif options.command_sink is None or options.action_sink is None:
        reason = "control is not available: no loop is running"
    else:
        reason = ""
    actions = [{"name": a.name, "command": a.command, "summary": a.summary, "job": a.job, "argument": a.argument}
               for a in ACTIONS]
    return json_response({"enabled": not reason, "reason": reason, "actions": actions})


def includeme(config: Configurator) -> None:
    """Register ``GET /control`` and a ``POST /control/<action>`` route per action (any other method: 405)."""
    add_json_route(config, "control", "/control", control_info)
    for action in ACTIONS:
        view = _job_view(action) if action.job else _command_view(action.command)
        add_json_route(config, f"control_{action.command}", f"/control/{action.name}", view, methods=("POST",))

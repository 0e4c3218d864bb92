"""The operator actions: their names, what each takes, and the answer the loop gives — one list for HTTP and CLI.

``POST /control/<path>`` (tradeexecutor/webhook/control.py), ``tradeexecutor control URL ACTION``
(tradeexecutor/cli/control_cmd.py) and the dashboard's buttons all come from :data:`ACTIONS`,
so an action added here is offered everywhere or a test says where it is missing.

Two kinds of action. *Signals* (stop, pause, resume, cycle-now) are queued and answered 202 at
once: the loop acts on them when it gets to them and journals it. *Jobs* (close, close-all,
reload-params) change positions or parameters; the loop runs each as a job of its own (its
state changes and journal lines commit together) and answers through an :class:`ActionReply`
that the webhook waits on briefly, so the operator learns at once whether the position was
closed or why the parameters were refused. When the loop is busy longer than the wait, the
answer is 202 and the journal tells the result.

Pure: no I/O, importable by every layer above (daemon, webhook, cli).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["ACTIONS", "Action", "ActionReply", "ActionRequest", "ActionResult", "Outcome", "action_named"]


@dataclass(frozen=True)
class Action:
    """One operator action as the webhook, the CLI and the dashboard offer it."""

    #: Name on the command line and in the URL (``/control/<name>``).
    name: str
    #: The name the loop's command sink takes (``cycle_now`` for ``cycle-now``).
    command: str
    #: One line for --help, the OpenAPI summary and the dashboard's tooltip.
    summary: str
    #: True for actions the loop answers after doing them (close, close-all, reload-params).
    job: bool = False
    #: The argument the action takes: "" none, "position_id" or "parameters".
    argument: str = ""


#: Every operator action, in the order the CLI lists them.
ACTIONS: tuple[Action, ...] = (
    Action("stop", "stop", "Stop the executor cleanly after the job in progress."),
    Action("pause", "pause", "Stop entries: open no new positions (triggers and exits go on)."),
    Action("resume", "resume", "Lift a pause: new positions may open again."),
    Action("cycle-now", "cycle_now", "Run a strategy cycle now instead of at the next boundary."),
    Action("close", "close", "Close one open position at the current price.", job=True, argument="position_id"),
    Action("close-all", "close_all", "Close every open position at the current price.", job=True),
    Action("reload-params", "reload_params", "Change the running strategy's parameters (validated as at start).",
           job=True, argument="parameters"),
)


def action_named(name: str) -> Action | None:
    """The action called ``name`` on the command line or in the URL, None if there is none."""
    return next((action for action in ACTIONS if action.name == name), None)


class Outcome(StrEnum):
    """How the loop answered a job action; the webhook maps it onto an HTTP status."""

    #: Done: the state changed and was committed.
    done = "done"
    #: The action names something that does not exist (an unknown position id).
    not_found = "not_found"
    #: It cannot be done now (the position is already closed, nothing is open).
    conflict = "conflict"
    #: The request itself is wrong (a parameter that does not fit its type): nothing changed.
    invalid = "invalid"
    #: Doing it crashed the executor (a bug): the crash is in /status and the journal; nothing was committed.
    failed = "failed"


@dataclass(frozen=True)
class ActionResult:
    """The loop's answer to a job action."""

    outcome: Outcome
    #: One line for the operator: what was done, or why not.
    message: str
    #: What changed, JSON-safe (closed positions, old and new parameter values).
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionRequest:
    """A job action as the webhook hands it to the loop's queue."""

    #: The action's command name (``close``, ``close_all``, ``reload_params``).
    command: str
    #: Who asked (the authenticated user name), for the journal.
    by: str
    #: For ``close``: the position id.
    position_id: int | None = None
    #: For ``reload_params``: the parameters to change, as JSON gave them.
    parameters: dict[str, Any] | None = None


class ActionReply:
    """A one-shot answer slot: the loop sets the result once, the requester waits for it with a timeout.

    A requester that gave up waiting is not an error: the loop still sets the result, and it
    is journaled either way.
    """

    def __init__(self) -> None:
        self._done = threading.Event()
        self._result: ActionResult | None = None

    def set(self, result: ActionResult) -> None:
        """Give the answer (the loop's thread; the first answer counts)."""
        if self._result is None:
            self._result = result
            self._done.set()

    def wait(self, timeout: float) -> ActionResult | None:
        """The answer, or None when the loop has not answered within ``timeout`` seconds."""
        self._done.wait(timeout)
        return self._result

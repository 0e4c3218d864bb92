"""``tradeexecutor control URL ACTION [ARGS]``: act on a running executor (stop, pause, close, reload-params ...).

The actions are :data:`tradeexecutor.control.ACTIONS`, the list the webhook's ``POST /control/<action>``
routes come from, so the CLI and HTTP cannot drift apart. It speaks to the webhook like
``status`` and ``logs`` (same credentials, same one-line errors): exit 1 when the executor
cannot be reached or refuses (401, 403, 404 no such position, 409 already closed, 503), exit 2
for bad input (an unknown action, a position id that is no number, parameters the strategy
refuses — the executor's reason is shown). A refusal's ``details`` follow its error line, indented
(close-all's ``not_closed``: each position left open, its order in flight and why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tradeexecutor.cli.client_cmd import AUTH_OPTIONS, TIMEOUT_OPTION, Webhook
from tradeexecutor.cli.common import env, user_errors
from tradeexecutor.control import ACTIONS, Action, action_named
from tradeexecutor.errors import UserInputError

#: The actions and what they take, for --help.
_ACTION_HELP = "\n".join(
    f"  {action.name + (' ID' if action.argument == 'position_id' else ''):<16} {action.summary}" for action in ACTIONS
)


def _body(action: Action, args: tuple[str, ...], params: tuple[str, ...], params_file: Path | None) -> dict[str, Any]:
    """The request body ``action`` takes, from the command line; UserInputError (exit 2) for what does not fit."""
    takes_args = 1 if action.argument == "position_id" else 0
    if len(args) != takes_args:
        wanted = "a position id" if takes_args else "no arguments"
        raise UserInputError(f"{action.name} takes {wanted}, got {' '.join(args) or 'none'}")
    if (params or params_file) and action.argument != "parameters":
        raise UserInputError(f"--param and --file are for reload-params, not {action.name}")
    if action.argument == "position_id":
        text = args[0]
        if not text.isdigit() or int(text) < 1:
            raise UserInputError(f"position id {text!r} is not a whole number from 1 (see /positions)")
        return {"position_id": int(text)}
    if action.argument == "parameters":
        if bool(params) == bool(params_file):
            raise UserInputError("reload-params needs the new values: --param name=value (repeatable) or --file "
                                 "params.json, not both")
        if not params:
            return {"parameters": _read_file(params_file)}
        from tradeexecutor.strategy.parameters import parse_override  # the strategy package imports pandas

        return {"parameters": dict(parse_override(text) for text in params)}
    return {}


def _read_file(path: Path | None) -> dict[str, Any]:
    """The parameters in a JSON file: an object of name → value."""
    assert path is not None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UserInputError(f"{path} is not JSON: {exc}") from None
    if not isinstance(loaded, dict) or not loaded:
        raise UserInputError(f'{path} must hold a JSON object of parameter names and values, such as {{"fast": 10}}')
    return loaded


@click.command("control", epilog="Actions:\n\n\b\n" + _ACTION_HELP)
@click.argument("url", envvar=env("WEBHOOK_URL"))
@click.argument("action")
@click.argument("args", nargs=-1)
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="reload-params: a parameter's new value, as `start -p` takes it (repeatable).")
@click.option("--file", "params_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="reload-params: a JSON file of parameter names and values.")
@click.option("--json", "as_json", is_flag=True, help="Print the executor's whole JSON answer.")
@AUTH_OPTIONS[0]
@AUTH_OPTIONS[1]
@TIMEOUT_OPTION
@user_errors
def control_command(url: str, action: str, args: tuple[str, ...], params: tuple[str, ...], params_file: Path | None,
                    as_json: bool, username: str | None, password: str | None, timeout: float) -> None:
    """Ask the executor at URL to do ACTION, and show its answer: closes and parameter changes are done
    (or refused, with the reason) before the answer comes; the journal records who did what."""
    chosen = action_named(action)
    if chosen is None:
        raise UserInputError(f"unknown action {action!r}; use one of {', '.join(a.name for a in ACTIONS)}")
    body = _body(chosen, args, params, params_file)
    webhook = Webhook.parse(url, username, password, timeout)
    status, payload = webhook.post_json(f"/control/{chosen.name}", body if chosen.job else None)
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    message = payload.get("message") if isinstance(payload, dict) else None
    if status == 202 and not chosen.job:
        message = f"{chosen.name}: queued; the executor acts on it after the job in progress"
    click.echo(str(message or f"{chosen.name}: done"))

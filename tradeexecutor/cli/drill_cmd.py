"""``tradeexecutor drill NAME``: rehearse one failure against the exchange simulator with a real executor.

Only click is imported at module level: the drill machinery (``tradeexecutor.drill``) loads when
the command runs, so ``tradeexecutor --help`` and ``drill --help`` stay quick. Exit code: 0 the
drill passed, 1 it failed (``drills/NAME.json`` says which check and why), 2 bad usage (an
unknown drill name lists the names).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from tradeexecutor.cli.common import env, user_errors
from tradeexecutor.errors import ConfigError

#: The simulator's own credential variables (``exchange-sim --api-key-env``' defaults): what a drill against an
#: external simulator signs with unless told other names.
SIM_KEY_VARIABLE, SIM_SECRET_VARIABLE = env("SIM_API_KEY"), env("SIM_API_SECRET")


def _names() -> list[str]:
    from tradeexecutor.drill import DRILLS

    return list(DRILLS)


def _credentials(key_variable: str, secret_variable: str) -> tuple[str, str]:
    values = os.environ.get(key_variable, ""), os.environ.get(secret_variable, "")
    for name, value in zip((key_variable, secret_variable), values, strict=True):
        if not value:
            raise ConfigError(f"{name} is not set: with --exchange-url the drill signs with the credentials that "
                              f"simulator was started with (name other variables with --api-key-env/--api-secret-env)")
    return values


@click.command("drill")
@click.argument("name", required=False)
@click.option("--list", "list_drills", is_flag=True, help="List the drills with what each injects, and exit.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), envvar=env("DRILL_OUT"), show_envvar=True,
              help="Run folder for the drill's files (drills/NAME.json, the executor's state and log). "
                   "Default: a new folder in the runs folder ($TRADEEXECUTOR_RUNS_DIR or ./runs).")
@click.option("--exchange-url", envvar=env("DRILL_EXCHANGE_URL"), show_envvar=True,
              help="A running `tradeexecutor exchange-sim` on loopback to drill against (the drill resets it). "
                   "Default: the drill starts one on a free loopback port.")
@click.option("--api-key-env", default=SIM_KEY_VARIABLE, show_default=True,
              help="With --exchange-url: the variable holding the API key that simulator accepts (its name).")
@click.option("--api-secret-env", default=SIM_SECRET_VARIABLE, show_default=True,
              help="With --exchange-url: the variable holding the API secret that simulator accepts (its name).")
@user_errors
def drill_command(name: str | None, list_drills: bool, out: Path | None, exchange_url: str | None,
                  api_key_env: str, api_secret_env: str) -> None:
    """Run drill NAME: a fault injected into the exchange simulator while a live executor trades on it.

    Writes drills/NAME.json (what was injected and when, what the executor did, the expected
    behaviour, each check's verdict) into the run folder. Exit 0 passed, 1 failed, 2 bad usage.
    `tradeexecutor drill --list` names the drills; docs/exchange-simulator.md describes them.
    """
    if list_drills:
        from tradeexecutor.drill import DRILLS

        for drill in DRILLS.values():
            click.echo(f"{drill.name:22} {drill.summary}")
        return
    if not name:
        raise click.UsageError(f"name a drill: {', '.join(_names())} (or --list)")
    if name not in _names():
        raise click.UsageError(f"no drill {name!r}; the drills are {', '.join(_names())}")
    credentials = _credentials(api_key_env, api_secret_env) if exchange_url else None
    from tradeexecutor.drill import run_drill
    from tradeexecutor.runs.run import default_runs_dir, new_run_id

    folder = out if out is not None else default_runs_dir() / f"{new_run_id()}-drill-{name}"
    if folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"{folder} is not empty: give --out a new or empty folder")
    click.echo(f"drill {name}: running in {folder} ...")
    passed, report = run_drill(name, folder, exchange_url.rstrip("/") if exchange_url else None, credentials)
    click.echo(f"drill {name}: {'passed' if passed else 'FAILED'}; report {report}")
    if not passed:
        import json

        for check in json.loads(report.read_text())["checks"]:
            if not check["passed"]:
                click.echo(f"  failed: {check['check']}: {check['reason']}", err=True)
        sys.exit(1)

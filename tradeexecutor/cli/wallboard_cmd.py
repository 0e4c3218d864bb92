"""``tradeexecutor wallboard``: one page over a fleet of executors, and the charts jobs cast to it.

The command only wires: the configuration from options and environment, the runs folder as a
source of executors (``runs.fleet``, read every poll) and as the runner API's work
(``runs.verbs.RunVerbs``, the functions ``tradeexecutor runs`` calls), the poller, the chart
store and the app (``tradeexecutor.wallboard``), served by the webhook's waitress server until SIGTERM or SIGINT.
Heavy imports happen inside the command, so ``tradeexecutor --help`` stays fast.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tradeexecutor.cli.common import env, user_errors
from tradeexecutor.cli.options import config_options, config_values
from tradeexecutor.config import build_config
from tradeexecutor.wallboard.settings import WallboardConfig

if TYPE_CHECKING:
    from tradeexecutor.wallboard import ExecutorTarget

#: Prefix of the runner API's credential variables (TRADEEXECUTOR_RUNNER_USERNAME, _PASSWORD).
RUNNER_CREDENTIALS = env("RUNNER_")


def _fleet(runs_dir: Path) -> list[ExecutorTarget]:
    """The runs folder's executors as wallboard targets (called every poll, on the poller's thread)."""
    from tradeexecutor.runs.fleet import fleet_runs
    from tradeexecutor.wallboard import ExecutorTarget

    return [ExecutorTarget(run.label, run.url, "runs", run.status, run.error)
            for run in fleet_runs(runs_dir) if run.url]


@click.command("wallboard")
@config_options(WallboardConfig)
@user_errors
def wallboard_command(**options: Any) -> None:
    """Serve the fleet wallboard: every executor's status, health, equity and cycles, and the charts cast to it.

    Executor credentials (basic auth) come from TRADEEXECUTOR_WALLBOARD_<NAME>_USERNAME and
    _PASSWORD, else TRADEEXECUTOR_WEBHOOK_USERNAME and _PASSWORD; they are never shown.
    """
    from tradeexecutor.runs.verbs import RunVerbs
    from tradeexecutor.wallboard import ChartStore, Poller, create_app
    from tradeexecutor.webhook import WebhookServer

    config: WallboardConfig = build_config(WallboardConfig, config_values(WallboardConfig, options),
                                           environ=dict(os.environ))
    runs_dir = config.runs_dir
    logging.basicConfig(level=getattr(logging, config.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    fleet = (lambda: _fleet(runs_dir)) if runs_dir is not None else None
    poller = Poller(config, fleet)
    # The runs it starts get the wallboard's environment, as the CLI's runs get the shell's, without the
    # runner API's own credentials: a strategy has no business holding the key to start and stop runs.
    run_env = {name: value for name, value in os.environ.items() if not name.startswith(RUNNER_CREDENTIALS)}
    runner = RunVerbs(runs_dir, run_env) if runs_dir is not None else None
    server = WebhookServer(create_app(config, poller, ChartStore(), runner), host=config.host, port=config.port,
                           threads=config.threads,
                           name="wallboard")
    server.start()  # a port in use fails here, with one line
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        poller.start()
        sources = [f"{len(config.executors)} executor(s) named"] + ([f"runs in {runs_dir}"] if runs_dir else [])
        api = ("on" if config.runner_username and runs_dir else
               "off: set " + env("RUNNER_USERNAME") + " and _PASSWORD" if runs_dir else "off: no --runs-dir")
        click.echo(f"wallboard at {server.url}/ ({', '.join(sources)}; casting "
                   f"{'on' if config.token else 'off: set ' + env('WALLBOARD_TOKEN')}; runner API {api})", err=True)
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        poller.stop()
        server.stop()
    click.echo("wallboard stopped", err=True)

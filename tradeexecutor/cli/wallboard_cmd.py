"""``tradeexecutor wallboard``: one page over a fleet of executors, and the charts jobs cast to it.

The command only wires: the configuration from options and environment, the runs folder as a
source of executors (``runs.fleet``, read every poll), the poller, the chart store and the app
(``tradeexecutor.wallboard``), served by the webhook's waitress server until SIGTERM or SIGINT.
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

if TYPE_CHECKING:
    from tradeexecutor.wallboard import ExecutorTarget

#: The wallboard's default port.
DEFAULT_PORT = 8090


def _fleet(runs_dir: Path) -> list[ExecutorTarget]:
    """The runs folder's executors as wallboard targets (called every poll, on the poller's thread)."""
    from tradeexecutor.runs.fleet import fleet_runs
    from tradeexecutor.wallboard import ExecutorTarget

    return [ExecutorTarget(run.label, run.url, "runs", run.status, run.error)
            for run in fleet_runs(runs_dir) if run.url]


@click.command("wallboard")
@click.option("--host", default="127.0.0.1", show_default=True, envvar=env("WALLBOARD_HOST"), show_envvar=True,
              help="Interface the wallboard listens on.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              envvar=env("WALLBOARD_PORT"), show_envvar=True, help="Port (0: any free port, printed at start).")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar=env("RUNS_DIR"), show_envvar=True,
              help="A runs folder: its paper and live runs that run, start or crashed are shown (read-only).")
@click.option("--executor", "executors", multiple=True, envvar=env("WALLBOARD_EXECUTORS"), show_envvar=True,
              help="An executor to show: [NAME=]URL, or a Compose/Kubernetes service name [NAME=]SERVICE[:PORT] "
                   "(port 3456 by default). Repeat, or separate with commas or spaces.")
@click.option("--refresh-seconds", type=float, default=10.0, show_default=True,
              envvar=env("WALLBOARD_REFRESH_SECONDS"), show_envvar=True,
              help="Seconds between polls of the executors, and between page refreshes.")
@click.option("--timeout-seconds", type=float, default=3.0, show_default=True,
              envvar=env("WALLBOARD_TIMEOUT_SECONDS"), show_envvar=True,
              help="Seconds each executor gets to answer a poll; slower ones show as unreachable.")
@click.option("--token", default=None, envvar=env("WALLBOARD_TOKEN"), show_envvar=True,
              help="Bearer token jobs must send to cast charts; without it casting is refused (403). Give it "
                   "through the environment variable, not the command line.")
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True,
              envvar=env("WALLBOARD_THREADS"), show_envvar=True, help="Worker threads of the web server.")
@click.option("--log-level", type=click.Choice(("debug", "info", "warning", "error")), default="info",
              show_default=True, envvar=env("LOG_LEVEL"), show_envvar=True, help="Log verbosity on stderr.")
@user_errors
def wallboard_command(host: str, port: int, runs_dir: Path | None, executors: tuple[str, ...],
                      refresh_seconds: float, timeout_seconds: float, token: str | None, threads: int,
                      log_level: str) -> None:
    """Serve the fleet wallboard: every executor's status, health, equity and cycles, and the charts cast to it.

    Executor credentials (basic auth) come from TRADEEXECUTOR_WALLBOARD_<NAME>_USERNAME and
    _PASSWORD, else TRADEEXECUTOR_WEBHOOK_USERNAME and _PASSWORD; they are never shown.
    """
    from tradeexecutor.wallboard import ChartStore, Poller, WallboardConfig, create_app, parse_executors
    from tradeexecutor.webhook import WebhookServer

    config = WallboardConfig(executors=parse_executors(executors), runs_dir=runs_dir,
                             refresh_seconds=refresh_seconds, timeout_seconds=timeout_seconds,
                             token=token or None, environ=dict(os.environ))
    logging.basicConfig(level=getattr(logging, log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    fleet = (lambda: _fleet(runs_dir)) if runs_dir is not None else None
    poller = Poller(config, fleet)
    server = WebhookServer(create_app(config, poller, ChartStore()), host=host, port=port, threads=threads,
                           name="wallboard")
    server.start()  # a port in use fails here, with one line
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        poller.start()
        sources = [f"{len(config.executors)} executor(s) named"] + ([f"runs in {runs_dir}"] if runs_dir else [])
        click.echo(f"wallboard at {server.url}/ ({', '.join(sources)}; casting "
                   f"{'on' if config.token else 'off: set ' + env('WALLBOARD_TOKEN')})", err=True)
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        poller.stop()
        server.stop()
    click.echo("wallboard stopped", err=True)

"""``tradeexecutor start``: run a strategy unattended with its webhook.

Modes: a replay of historical candles (the default), paper trading on an exchange's live prices, or a backtest.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tradeexecutor.cli.common import check_times, env, user_errors
from tradeexecutor.cli.options import config_options, config_values, given_on_command_line
from tradeexecutor.config import build_config
from tradeexecutor.settings import DaemonConfig

if TYPE_CHECKING:
    from tradeexecutor.daemon.signals import StopSignals
    from tradeexecutor.runstate.logbuffer import RingBufferHandler

@click.command("start")
@click.argument("strategy_file", type=click.Path(dir_okay=False, path_type=Path), envvar=env("STRATEGY_FILE"),
                required=False)
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run spec (YAML) naming the strategy file, mode and config, instead of STRATEGY_FILE; "
                   "TRADEEXECUTOR_* variables override its values, options it holds are refused.")
@config_options(DaemonConfig)
@user_errors
def start_command(strategy_file: Path | None, spec_file: Path | None, **options: Any) -> None:
    """Run STRATEGY_FILE (or --spec RUN_SPEC) as a long-running executor with a webhook (/status, /summary)."""
    from tradeexecutor.cli.early import release
    from tradeexecutor.daemon.signals import StopSignals

    signals = StopSignals().install()  # first: a SIGTERM from here on is a graceful stop, never a kill
    signals.adopt(*release())  # and one that came while the commands loaded (cli/early.py) is one too

    from tradeexecutor.cli.runs_cmd import spec_for_command

    # Everything is validated before anything is written.
    values = config_values(DaemonConfig, options)
    check_times(values.get(("feed", "start")), values.get(("feed", "end")))
    host, port = values[("host",)], values[("port",)]
    values.setdefault(("notify", "public_url"), f"http://{host}:{port}" if port else "")
    spec = spec_for_command(spec_file, strategy_file)
    if spec is not None:
        # The spec (with the TRADEEXECUTOR_* variables) decides its own keys; a --port typed here still wins.
        typed = given_on_command_line(["port"])
        values = {**values, **{path: value for path, value in spec.config_values().items()
                               if not (path == ("port",) and "port" in typed)}}
        values[("mode",)] = spec.mode
        values[("params",)] = spec.parameter_overrides()
        strategy_file = spec.strategy_file
        stem = spec_file.stem  # type: ignore[union-attr]
    else:
        stem = strategy_file.stem  # type: ignore[union-attr]
    values.setdefault(("state_dir",), Path("state") / stem)
    config: DaemonConfig = build_config(DaemonConfig, values, strategy_file=strategy_file)
    if config.mode != "backtest":
        import os

        from tradeexecutor.notify import channels_from_env

        channels_from_env(os.environ)  # a bad TRADEEXECUTOR_NOTIFY_*_URL is one line, before the webhook loads
    log_buffer = _configure_logging(config.log_level)
    sys.exit(_run(config, log_buffer, signals))


def _run(config: DaemonConfig, log_buffer: RingBufferHandler | None = None, signals: StopSignals | None = None) -> int:
    """Build the daemon (or the backtest), hand it the webhook, run it; 0 when a signal stopped start-up."""
    from tradeexecutor.daemon.signals import StopRequested, StopSignals

    signals = signals or StopSignals().install()
    try:
        return _build_and_run(config, log_buffer, signals)
    except StopRequested as stopped:
        logging.getLogger("tradeexecutor.daemon").info("executor stopped: %s", stopped)
        return 0
    finally:
        signals.restore()


def _build_and_run(config: DaemonConfig, log_buffer: RingBufferHandler | None, signals: StopSignals) -> int:
    from tradeexecutor.layout import RunFiles
    from tradeexecutor.runstate import RunState
    from tradeexecutor.webhook import WebhookServer, check_port_free, create_app
    from tradeexecutor.webhook.options import ActionSink, CastSink, CommandSink, NotificationCounts, WebhookOptions

    check_port_free(config.host, config.port)  # before the state directory is made or locked
    signals.check("the settings were read")

    def web(runstate: RunState, command_sink: CommandSink | None,
            notification_counts: NotificationCounts | None = None,
            cast_sink: CastSink | None = None, action_sink: ActionSink | None = None) -> WebhookServer:
        options = WebhookOptions(
            source_enabled=config.webhook.source_enabled, files=RunFiles(config.state_dir),
            auth_username=config.webhook.username, auth_password=config.webhook.password,
            cors_origins=config.webhook.cors_origins, command_sink=command_sink, cast_sink=cast_sink,
            action_sink=action_sink,
            health_limits=config.health,
            log_buffer=log_buffer, notification_counts=notification_counts,
        )
        return WebhookServer(create_app(runstate, options=options), host=config.host, port=config.port,
                             threads=config.webhook.threads)

    from tradeexecutor.daemon.affinity import CpuPinning
    from tradeexecutor.daemon.heap import bound_arenas, return_large_blocks
    from tradeexecutor.state.packed import take_packer

    # The command line set both before pyarrow's import (through pandas) started threads (cli/early.py settle_heap); set again here for
    # a start that did not come through it (a test's forked server), where they bind what is allocated from now on.
    return_large_blocks()  # the public files, rebuilt each publication, are unmapped when freed (daemon/heap.py)
    bound_arenas()  # the threads share one arena's free space (daemon/heap.py)
    take_packer()  # the closed positions' deflate stream: its ~260 KiB taken now, not at the first pack (state/packed.py)
    pinning = CpuPinning(config.cpu)
    pinning.start()  # before any thread starts, so every later thread inherits the pin
    try:
        if config.mode == "backtest":
            from tradeexecutor.daemon.backtest_mode import prepare_backtest

            backtest = prepare_backtest(config, signals=signals)
            return backtest.run(web(backtest.runstate, None))
        from tradeexecutor.daemon.runner import build_daemon
        from tradeexecutor.daemon.startup_wait import build_when_reachable

        # An exchange that is down at start-up is waited for in-process, with /healthz and /status served meanwhile.
        daemon = build_when_reachable(config, lambda: build_daemon(config, signals=signals),
                                      lambda runstate: web(runstate, None).start(), signals)
        try:
            server = web(daemon.runstate, daemon.commands.submit,
                         daemon.notifier.counts if daemon.notifier is not None else None, daemon.commands.cast,
                         daemon.commands.ask)
        except BaseException:
            daemon.close()
            raise
        return daemon.run(server)
    finally:
        pinning.stop()


def _configure_logging(level: str) -> RingBufferHandler:
    """Log to stderr, and keep the recent records in a ring buffer for GET /logs/technical."""
    from tradeexecutor.runstate.logbuffer import RingBufferHandler

    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    buffer = RingBufferHandler(capacity=1000)
    buffer.setLevel(getattr(logging, level.upper()))
    logging.getLogger().addHandler(buffer)
    return buffer

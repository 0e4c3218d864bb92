"""``tradeexecutor start``: run a strategy unattended (paper trading on a replay feed, or a backtest) with its webhook."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from tradeexecutor.cli.common import check_times, env, parse_overrides, split_sources, user_errors
from tradeexecutor.config import FILL_TIMINGS, EngineConfig, ExecutionConfig
from tradeexecutor.errors import ConfigError

if TYPE_CHECKING:
    from tradeexecutor.daemon.settings import DaemonConfig
    from tradeexecutor.daemon.signals import StopSignals
    from tradeexecutor.runstate.logbuffer import RingBufferHandler

MODES = ("paper", "backtest", "live")
CRASH_POLICIES = ("exit", "serve")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _offset_seconds(text: str) -> float:
    """``0``, ``90`` (seconds) or a duration such as ``8m``."""
    from tradeexecutor.timeframe import parse_duration

    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        return parse_duration(text).total_seconds()
    if seconds < 0:
        raise ConfigError(f"--cycle-offset {text} must not be negative")
    return seconds


@click.command("start")
@click.argument("strategy_file", type=click.Path(dir_okay=False, path_type=Path), envvar=env("STRATEGY_FILE"),
                required=False)
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run spec (YAML) naming the strategy file, mode and config, instead of STRATEGY_FILE; "
                   "TRADEEXECUTOR_* variables override its values, options it holds are refused.")
@click.option("--mode", type=click.Choice(MODES), default="paper", show_default=True, envvar=env("MODE"),
              show_envvar=True, help="paper: simulated fills on a replay feed; backtest: the whole history at once; "
                                     "live: reserved (no exchange adapter yet).")
@click.option("--data", "data", multiple=True, envvar=env("DATA"), show_envvar=True,
              help="Bundled dataset or candle files to replay; default: the bundled dataset holding the symbols.")
@click.option("--start", envvar=env("START"), show_envvar=True, help="First bar of the data (ISO, UTC).")
@click.option("--end", envvar=env("END"), show_envvar=True, help="Last bar close of the data (ISO, UTC).")
@click.option("-p", "--param", "params", multiple=True, envvar=env("PARAMS"), show_envvar=True,
              help="Override a strategy parameter: -p fast=5 -p slow=20.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar=env("STATE_DIR"), show_envvar=True,
              help="Folder of the state, its log and crash.json. Default: state/<strategy file stem>.")
@click.option("--host", default="127.0.0.1", show_default=True, envvar=env("HOST"), show_envvar=True,
              help="Interface the webhook listens on.")
@click.option("--port", type=int, default=3456, show_default=True, envvar=env("PORT"), show_envvar=True,
              help="Webhook port (0: any free port).")
@click.option("--replay-seconds", type=float, default=0.1, show_default=True, envvar=env("REPLAY_SECONDS"),
              show_envvar=True, help="Wall-clock seconds per replayed bar (the cycle job's period in replay mode).")
@click.option("--replay-start", default="warm", show_default=True, envvar=env("REPLAY_START"), show_envvar=True,
              help="Where a new replay begins: warm (once every indicator has a value), first, or an ISO date.")
@click.option("--cycle-offset", default="0", show_default=True, envvar=env("CYCLE_OFFSET"), show_envvar=True,
              help="Cycles fire this long after each boundary: seconds or a duration such as 8m.")
@click.option("--trigger-seconds", type=float, default=10.0, show_default=True, envvar=env("TRIGGER_SECONDS"),
              show_envvar=True, help="Seconds between position trigger checks; 0 disables.")
@click.option("--revaluation-seconds", type=float, default=60.0, show_default=True,
              envvar=env("REVALUATION_SECONDS"), show_envvar=True, help="Seconds between revaluations; 0 disables.")
@click.option("--max-cycles", type=int, default=0, show_default=True, envvar=env("MAX_CYCLES"), show_envvar=True,
              help="Stop after this many strategy cycles; 0: no limit.")
@click.option("--run-single-cycle", is_flag=True, envvar=env("RUN_SINGLE_CYCLE"), show_envvar=True,
              help="Run one cycle at once, then stop.")
@click.option("--trade-immediately", is_flag=True, envvar=env("TRADE_IMMEDIATELY"), show_envvar=True,
              help="Run a cycle at start-up instead of waiting for the first boundary.")
@click.option("--crash-policy", type=click.Choice(CRASH_POLICIES), default="exit", show_default=True,
              envvar=env("CRASH_POLICY"), show_envvar=True,
              help="After a crash: exit at once, or serve the webhook for --crash-serve-seconds first (exit 1 both).")
@click.option("--crash-serve-seconds", type=float, default=300.0, show_default=True,
              envvar=env("CRASH_SERVE_SECONDS"), show_envvar=True, help="Webhook time after a crash (serve policy).")
@click.option("--crash-loop-count", type=int, default=3, show_default=True, envvar=env("CRASH_LOOP_COUNT"),
              show_envvar=True, help="Crashes within --crash-loop-minutes that put the executor in safe mode (the strategy is not "
                   "called, positions are still managed); 0 disables.")
@click.option("--crash-loop-minutes", type=float, default=10.0, show_default=True,
              envvar=env("CRASH_LOOP_MINUTES"), show_envvar=True, help="Window of the crash-loop check.")
@click.option("--watchdog-seconds", type=float, default=600.0, show_default=True, envvar=env("WATCHDOG_SECONDS"),
              show_envvar=True, help="A job running longer is a crash (every thread's stack recorded); 0 disables.")
@click.option("--complete-serve-seconds", type=float, default=0.0, show_default=True,
              envvar=env("COMPLETE_SERVE_SECONDS"), show_envvar=True,
              help="Webhook time after the replay (or backtest) completed.")
@click.option("--chart-seconds", type=float, default=10.0, show_default=True, envvar=env("CHART_SECONDS"),
              show_envvar=True, help="Least seconds between chart renders after cycles (drawn in a process of "
                                     "their own); 0 disables charts.")
@click.option("--chart-timeout-seconds", type=float, default=120.0, show_default=True,
              envvar=env("CHART_TIMEOUT_SECONDS"), show_envvar=True,
              help="A chart render taking longer is a hang: the renderer is restarted, the charts marked stale.")
@click.option("--webhook-threads", type=click.IntRange(1, 64), default=4, show_default=True,
              envvar=env("WEBHOOK_THREADS"), show_envvar=True,
              help="Worker threads of the webhook server (fewer leave more room for the loop under heavy polling).")
@click.option("--publish-seconds", type=float, default=2.0, show_default=True, envvar=env("PUBLISH_SECONDS"),
              show_envvar=True, help="Least seconds between publications of /state, /orders.csv and /positions.")
@click.option("--cpu", default="auto", show_default=True, envvar=env("CPU"), show_envvar=True,
              help="Keep every executor thread on one CPU, since Python runs them one at a time (much less cycle lag "
                   "and more webhook throughput under heavy polling): auto (least busy CPU, moving off a crowded "
                   "one), a CPU number, or off.")
@click.option("--webhook-username", default=None, envvar=env("WEBHOOK_USERNAME"), show_envvar=True,
              help="Turns on basic auth for every route but /ping and /healthz (with the password).")
@click.option("--webhook-password", default=None, envvar=env("WEBHOOK_PASSWORD"), show_envvar=True,
              help="Basic-auth password; give it through the environment variable, not the command line.")
@click.option("--cors-origin", "cors_origins", multiple=True, envvar=env("CORS_ORIGINS"), show_envvar=True,
              help="Origin allowed to read the webhook from a browser; repeat or comma-separate. Default: none.")
@click.option("--wallboard-url", default=None, envvar=env("WALLBOARD_URL"), show_envvar=True,
              help="Base URL of the fleet wallboard that `runs cast` / POST /control/cast targets given as paths "
                   "(/wallboard/page1/chart1) are sent to.")
@click.option("--wallboard-token", default=None, envvar=env("WALLBOARD_TOKEN"), show_envvar=True,
              help="Bearer token the wallboard expects from casts; give it through the environment variable.")
@click.option("--health-grace-seconds", type=float, default=60.0, show_default=True,
              envvar=env("HEALTH_GRACE_SECONDS"), show_envvar=True,
              help="/healthz fails when the next cycle is this many seconds overdue.")
@click.option("--data-stale-seconds", type=float, default=0.0, show_default=True, envvar=env("DATA_STALE_SECONDS"),
              show_envvar=True, help="/healthz fails when market data is older than this; 0 disables.")
@click.option("--source/--no-source", "source_enabled", default=True, show_default=True, envvar=env("SOURCE"),
              show_envvar=True, help="Serve the strategy source at /source (off for closed-source strategies).")
@click.option("--notify-events", default="all", show_default=True, envvar=env("NOTIFY_EVENTS"), show_envvar=True,
              help="Events that send a notification: all, none, or names (crash, safe_mode, health, order_filled, "
                   "order_rejected, trigger_fired, reconciliation_mismatch, risk_limit_hit, run_completed, "
                   "daily_summary) separated by commas; -name switches one off (all,-order_filled). Channels come "
                   "from the TRADEEXECUTOR_NOTIFY_*_URL variables (docs/notifications.md).")
@click.option("--notify-cooldown-seconds", type=float, default=300.0, show_default=True,
              envvar=env("NOTIFY_COOLDOWN_SECONDS"), show_envvar=True,
              help="After a notification, similar ones (same event and subject) are held back this long and then "
                   "summed up in one digest; 0 sends every one.")
@click.option("--notify-queue-size", type=int, default=100, show_default=True, envvar=env("NOTIFY_QUEUE_SIZE"),
              show_envvar=True, help="Notifications waiting per channel; when full the oldest low-priority one is "
                                     "dropped (and counted in /metrics).")
@click.option("--notify-summary-time", default="00:00", show_default=True, envvar=env("NOTIFY_SUMMARY_TIME"),
              show_envvar=True, help="UTC time of day (HH:MM) of the daily summary notification.")
@click.option("--notify-flush-seconds", type=float, default=5.0, show_default=True,
              envvar=env("NOTIFY_FLUSH_SECONDS"), show_envvar=True,
              help="At shutdown, how long to keep sending queued notifications.")
@click.option("--public-url", default=None, envvar=env("PUBLIC_URL"), show_envvar=True,
              help="Address operators reach the webhook at, for links in notifications (crash → /status). "
                   "Default: http://HOST:PORT.")
@click.option("--cash", type=float, default=10_000.0, show_default=True, envvar=env("CASH"), show_envvar=True,
              help="Starting cash of a new state.")
@click.option("--fee", type=float, default=0.0, show_default=True, envvar=env("FEE"), show_envvar=True,
              help="Fee per fill as a fraction of traded value (0.002 = 0.2 %).")
@click.option("--slippage-bps", type=float, default=0.0, show_default=True, envvar=env("SLIPPAGE_BPS"),
              show_envvar=True, help="Adverse price move per fill in basis points.")
@click.option("--fill-timing", type=click.Choice(FILL_TIMINGS), default="next_open", show_default=True,
              envvar=env("FILL_TIMING"), show_envvar=True, help="next_open or close.")
@click.option("--min-notional", type=float, default=0.0, show_default=True, envvar=env("MIN_NOTIONAL"),
              show_envvar=True, help="Reject orders worth less than this.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              envvar=env("LOG_LEVEL"), show_envvar=True, help="Log verbosity on stderr.")
@user_errors
def start_command(strategy_file: Path | None, spec_file: Path | None, mode: str, data: tuple[str, ...],
                  start: str | None, end: str | None, params: tuple[str, ...], state_dir: Path | None, host: str, port: int, replay_seconds: float,
                  replay_start: str, cycle_offset: str, trigger_seconds: float, revaluation_seconds: float,
                  max_cycles: int, run_single_cycle: bool, trade_immediately: bool, crash_policy: str,
                  crash_serve_seconds: float, crash_loop_count: int, crash_loop_minutes: float,
                  watchdog_seconds: float, complete_serve_seconds: float, chart_seconds: float,
                  chart_timeout_seconds: float,
                  webhook_threads: int, publish_seconds: float, cpu: str,
                  webhook_username: str | None, webhook_password: str | None,
                  cors_origins: tuple[str, ...], wallboard_url: str | None, wallboard_token: str | None,
                  health_grace_seconds: float, data_stale_seconds: float,
                  source_enabled: bool, notify_events: str, notify_cooldown_seconds: float, notify_queue_size: int,
                  notify_summary_time: str, notify_flush_seconds: float, public_url: str | None,
                  cash: float, fee: float, slippage_bps: float, fill_timing: str,
                  min_notional: float, log_level: str) -> None:
    """Run STRATEGY_FILE (or --spec RUN_SPEC) as a long-running executor with a webhook (/status, /summary)."""
    from tradeexecutor.daemon.signals import StopSignals

    signals = StopSignals().install()  # first: a SIGTERM from here on is a graceful stop, never a kill

    from tradeexecutor.cli.runs_cmd import spec_for_command
    from tradeexecutor.daemon.caster import CastConfig
    from tradeexecutor.daemon.settings import DaemonConfig
    from tradeexecutor.notify import NotifyConfig, parse_event_switches, parse_summary_time
    from tradeexecutor.runstate import HealthLimits

    # Everything is validated before anything is written.
    check_times(start, end)
    health = HealthLimits(grace_seconds=health_grace_seconds, data_stale_seconds=data_stale_seconds)
    notify = NotifyConfig(events=parse_event_switches(notify_events), cooldown_seconds=notify_cooldown_seconds,
                          queue_size=notify_queue_size, summary_time=parse_summary_time(notify_summary_time),
                          flush_seconds=notify_flush_seconds,
                          public_url=public_url if public_url is not None else f"http://{host}:{port}" if port else "")
    spec = spec_for_command(spec_file, strategy_file)
    cast = CastConfig(wallboard_url=wallboard_url or None, token=wallboard_token or None)
    spec_config = None if spec is None else spec.daemon_config(
        state_dir if state_dir is not None else Path("state") / spec_file.stem,  # type: ignore[union-attr]
        max_cycles=max_cycles, run_single_cycle=run_single_cycle, trade_immediately=trade_immediately,
        complete_serve_seconds=complete_serve_seconds, chart_seconds=chart_seconds,
        chart_timeout_seconds=chart_timeout_seconds, publish_seconds=publish_seconds,
        cpu=cpu, health=health, notify=notify, cast=cast, **({"port": port} if _on_command_line("port") else {}))
    config = spec_config or DaemonConfig(
        strategy_file=strategy_file, mode=mode,  # type: ignore[arg-type]
        state_dir=state_dir if state_dir is not None else Path("state") / strategy_file.stem,  # type: ignore[union-attr]
        data=tuple(split_sources(data)), start=start, end=end, params=parse_overrides(params),
        engine=EngineConfig(
            execution=ExecutionConfig(fee=fee, slippage_bps=slippage_bps, fill_timing=fill_timing,
                                      min_notional=min_notional),
            initial_cash=cash, cycle_offset_seconds=_offset_seconds(cycle_offset)),
        host=host, port=port, replay_seconds=replay_seconds, replay_start=replay_start,
        trigger_seconds=trigger_seconds, revaluation_seconds=revaluation_seconds, max_cycles=max_cycles,
        run_single_cycle=run_single_cycle, trade_immediately=trade_immediately, crash_policy=crash_policy,
        crash_serve_seconds=crash_serve_seconds, crash_loop_count=crash_loop_count,
        crash_loop_minutes=crash_loop_minutes, watchdog_seconds=watchdog_seconds,
        complete_serve_seconds=complete_serve_seconds, chart_seconds=chart_seconds,
        chart_timeout_seconds=chart_timeout_seconds, publish_seconds=publish_seconds, cpu=cpu, health=health,
        notify=notify, cast=cast,
    )
    if bool(webhook_username) != bool(webhook_password):
        raise ConfigError("webhook auth needs both TRADEEXECUTOR_WEBHOOK_USERNAME and TRADEEXECUTOR_WEBHOOK_PASSWORD")
    web = WebSettings(username=webhook_username, password=webhook_password, threads=webhook_threads,
                      cors_origins=tuple(split_sources(cors_origins)), source_enabled=source_enabled)
    if config.mode != "backtest":
        import os

        from tradeexecutor.notify import channels_from_env

        channels_from_env(os.environ)  # a bad TRADEEXECUTOR_NOTIFY_*_URL is one line, before the webhook loads
    log_buffer = _configure_logging(log_level)
    sys.exit(_run(config, web, log_buffer, signals))


@dataclass(frozen=True)
class WebSettings:
    """Webhook settings from options and environment; the password is never shown in a repr."""

    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    cors_origins: tuple[str, ...] = ()
    threads: int = 4
    source_enabled: bool = True


def _on_command_line(name: str) -> bool:
    """True when the option was given on the command line (not by default or environment)."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) is ParameterSource.COMMANDLINE


def _run(config: DaemonConfig, settings: WebSettings | None = None, log_buffer: RingBufferHandler | None = None,
         signals: StopSignals | None = None) -> int:
    """Build the daemon (or the backtest), hand it the webhook, run it; 0 when a signal stopped start-up."""
    from tradeexecutor.daemon.signals import StopRequested, StopSignals

    signals = signals or StopSignals().install()
    try:
        return _build_and_run(config, settings or WebSettings(), log_buffer, signals)
    except StopRequested as stopped:
        logging.getLogger("tradeexecutor.daemon").info("executor stopped: %s", stopped)
        return 0
    finally:
        signals.restore()


def _build_and_run(config: DaemonConfig, settings: WebSettings, log_buffer: RingBufferHandler | None,
                   signals: StopSignals) -> int:
    from tradeexecutor.runstate import RunState
    from tradeexecutor.store.layout import RunFiles
    from tradeexecutor.webhook import WebhookServer, check_port_free, create_app
    from tradeexecutor.webhook.options import CastSink, CommandSink, NotificationCounts, WebhookOptions

    check_port_free(config.host, config.port)  # before the state directory is made or locked
    signals.check("the settings were read")

    def web(runstate: RunState, command_sink: CommandSink | None,
            notification_counts: NotificationCounts | None = None,
            cast_sink: CastSink | None = None) -> WebhookServer:
        options = WebhookOptions(
            source_enabled=settings.source_enabled, files=RunFiles(config.state_dir),
            auth_username=settings.username, auth_password=settings.password,
            cors_origins=settings.cors_origins, command_sink=command_sink, cast_sink=cast_sink,
            health_grace_seconds=config.health.grace_seconds, data_stale_seconds=config.health.data_stale_seconds,
            log_buffer=log_buffer, notification_counts=notification_counts,
        )
        return WebhookServer(create_app(runstate, options=options), host=config.host, port=config.port,
                             threads=settings.threads)

    from tradeexecutor.daemon.affinity import CpuPinning

    pinning = CpuPinning(config.cpu)
    pinning.start()  # before any thread starts, so every later thread inherits the pin
    try:
        if config.mode == "backtest":
            from tradeexecutor.daemon.backtest_mode import prepare_backtest

            backtest = prepare_backtest(config, signals=signals)
            return backtest.run(web(backtest.runstate, None))
        from tradeexecutor.daemon.runner import build_daemon

        daemon = build_daemon(config, signals=signals)
        try:
            server = web(daemon.runstate, daemon.commands.submit,
                         daemon.notifier.counts if daemon.notifier is not None else None, daemon.commands.cast)
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

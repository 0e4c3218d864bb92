"""DaemonConfig: the executor's configuration tree, composing one frozen config per component.

It sits below ``daemon`` and ``runs`` (both build one: the daemon to run, a run spec to pin and
check what it will run), so neither has to import the other.

Every setting of ``tradeexecutor start`` is declared here or in a part it composes (the feed's, the
engine's, the risk limits', the webhook's, the health rule's, the notifier's, the caster's and the
exchange's config), each field with its
:func:`~tradeexecutor.config.setting` metadata. The command's options, their environment
variables, the run spec's keys and the generated reference all come from this tree, so a new
setting is one field. A ``*_seconds`` interval of 0 disables that job or window.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from tradeexecutor.cast import CastConfig
from tradeexecutor.config import (
    CcxtVenueConfig,
    EngineConfig,
    HealthLimits,
    RiskConfig,
    WebhookConfig,
    check_settings,
    setting,
    split_list,
)
from tradeexecutor.errors import ConfigError
from tradeexecutor.notify.config import NotifyConfig

__all__ = ["CPU_SETTINGS", "CRASH_POLICIES", "DEFAULT_PORT", "EXCHANGE_MODES", "LOG_LEVELS", "MODES", "PAPER_NEEDS_EXCHANGE",
           "REPLAY_HINT", "REPLAY_STARTS", "DaemonConfig", "FeedConfig", "check_cpu_setting", "check_cycle_duration",
           "parse_params"]

#: Execution modes. ``replay``: simulated fills on historical candles replayed on the clock (the default: no
#: network, no credentials); ``paper``: simulated fills at an exchange's live prices (``--exchange``);
#: ``backtest``: the whole history at once; ``live``: real orders on ``--exchange`` (its live prices too).
MODES = ("replay", "paper", "backtest", "live")
#: Modes whose prices come from an exchange (``--exchange``), not from candle files or bundled data.
EXCHANGE_MODES = ("paper", "live")
#: What happens after a crash: exit at once, or keep the webhook up for a while first.
CRASH_POLICIES = ("exit", "serve")
#: Named replay starting points; anything else is an ISO date or time.
REPLAY_STARTS = ("warm", "first")
#: Log verbosity on stderr.
LOG_LEVELS = ("debug", "info", "warning", "error")
#: Named ``--cpu`` settings; anything else is a CPU number.
CPU_SETTINGS = ("auto", "off")
#: The webhook's port unless ``--port`` says otherwise (the wallboard assumes it for a service name without one).
DEFAULT_PORT = 3456


def check_cpu_setting(setting: str) -> str:
    """``auto``, ``off`` or a CPU number, normalised; ConfigError otherwise."""
    text = setting.strip().lower()
    if text in CPU_SETTINGS or (text.isdigit() and len(text) < 5):
        return str(int(text)) if text.isdigit() else text
    raise ConfigError(f"--cpu {setting!r} is not valid: use auto (pin to the least busy CPU), off (let the OS "
                      f"place threads) or a CPU number such as 0")


#: What a run spec or state of the old meaning of ``paper`` (a replay) is told to use instead.
REPLAY_HINT = "for simulated fills on historical candles, what paper meant before, use --mode replay"
#: The one line for --mode paper without an exchange (a run spec saved with the old meaning gets it too).
PAPER_NEEDS_EXCHANGE = ("--mode paper trades on an exchange's live prices and needs --exchange NAME (a ccxt id such as "
                        f"binance; --exchange-url for a simulator); {REPLAY_HINT}")


#: The one line for --mode live without an exchange.
LIVE_NEEDS_EXCHANGE = ("--mode live sends real orders to an exchange and needs --exchange NAME (a ccxt id such as "
                       "binance; --exchange-url for a simulator or testnet) and its API key and secret in the variables "
                       "--exchange-key-variable and --exchange-secret-variable name")


def check_paper(config: DaemonConfig) -> None:
    """Paper and live mode need an exchange and take their candles from it: replay settings would be silently
    unused."""
    if config.exchange.exchange is None:
        raise ConfigError(LIVE_NEEDS_EXCHANGE if config.mode == "live" else PAPER_NEEDS_EXCHANGE)
    from tradeexecutor.venue.ccxt_connection import check_exchange_id, credentials  # imports ccxt: only here

    check_exchange_id(config.exchange.exchange)
    if config.mode == "live":  # a missing credential is a usage error before anything starts
        credentials(config.exchange, os.environ)
    feed = config.feed
    for flag, value in (("--data", feed.data), ("--start", feed.start), ("--end", feed.end),
                        ("--follow", feed.follow)):
        if value:
            raise ConfigError(f"{flag} does not apply to --mode {config.mode}, which takes its candles from "
                              f"{config.exchange.exchange}: drop {flag}, or use --mode replay for candle files")


def check_cycle_duration(text: str, mode: str) -> str:
    """``--cycle-duration`` normalised (`` 60s `` → ``1m``); ConfigError for bad text or a mode it does not apply to.

    Only paper and live take it: their candles come from the exchange at whatever size is asked for, so a faster
    cycle is a faster rehearsal of the same strategy. A replay or backtest reads candle files whose bar size is
    fixed (and is sped up with --replay-seconds instead); giving it there is refused rather than silently ignored
    or turned into a different strategy.
    """
    from tradeexecutor.timeframe import format_duration, parse_duration  # pandas: only when the setting is given

    try:
        duration = parse_duration(str(text).strip())
    except ConfigError as exc:
        raise ConfigError(f"--cycle-duration {text!r}: {exc}") from None
    if mode not in EXCHANGE_MODES:
        raise ConfigError(f"--cycle-duration applies to --mode paper and live, whose candles come from the exchange "
                          f"at the size asked for; --mode {mode} replays candles of a fixed size: drop it (a replay "
                          "is sped up with --replay-seconds)")
    return format_duration(duration)


def parse_params(values: Any) -> dict[str, str]:
    """``("fast=5", "slow=20")`` → ``{"fast": "5", "slow": "20"}``; a variable may join them with commas or spaces."""
    from tradeexecutor.strategy.parameters import parse_override  # imports pandas: only when a command runs

    if isinstance(values, dict):
        return dict(values)
    result: dict[str, str] = {}
    for value in [values] if isinstance(values, str) else values:
        for part in value.replace(",", " ").split():
            name, text = parse_override(part)
            result[name] = text
    return result


@dataclass(frozen=True)
class FeedConfig:
    """Where the executor's candles come from: the data, its window, the replay's pace and start, growing files.

    One part of :class:`DaemonConfig`, so the feed's settings are declared once for ``start``,
    ``backtest`` (data and window only), run specs and the generated reference.
    """

    data: tuple[str, ...] = setting((), spec="environment.data", multiple=True, parse=split_list,
                                    help="Bundled dataset (stocks-daily, eurusd-hourly) or candle files (CSV, "
                                         "CSV.gz, Parquet); repeat or comma-separate. Default: the bundled dataset "
                                         "holding the strategy's symbols.")
    start: str | None = setting(None, spec="environment.start", help="First bar of the data (ISO, UTC).")
    end: str | None = setting(None, spec="environment.end", help="Last bar close of the data (ISO, UTC).")
    replay_seconds: float = setting(0.1, spec="environment.replay_seconds", unit="seconds", above=0,
                                    hint="0.1 = ten bars a second",
                                    help="Wall-clock seconds per replayed bar (the cycle job's period in replay "
                                         "mode).")
    replay_start: str = setting("warm", spec="environment.replay_start",
                                help="Where a new replay begins: warm (once every indicator has a value), first, or "
                                     "an ISO date.")
    #: The --data candle files grow: after replaying them, lines appended to them become new bars.
    follow: bool = setting(False, help="The --data .csv files grow: after replaying them, candles appended to them "
                                       "become new bars (the run never completes; stop it with SIGTERM or "
                                       "--max-cycles).")

    def __post_init__(self) -> None:
        if self.follow and not self.data:
            raise ConfigError("--follow needs --data naming the .csv candle file(s) that grow; bundled data does not")
        if self.follow and self.end:
            raise ConfigError("--end cuts the data, but --follow takes every candle appended to it: drop --end")
        check_settings(self)


@dataclass(frozen=True)
class DaemonConfig:
    """Settings of one executor process."""

    #: The strategy module.
    strategy_file: Path
    mode: str = setting("replay", choices=MODES, spec="mode",
                        help="replay: simulated fills on historical candles replayed on the clock (no network); "
                             "paper: simulated fills at the live prices of --exchange; backtest: the whole history "
                             "at once; live: real orders on --exchange, with the API key and secret from the variables "
                             "--exchange-key-variable and --exchange-secret-variable name.")
    #: The candles: data, window, replay pace and start, growing files.
    feed: FeedConfig = field(default_factory=FeedConfig)
    params: dict[str, str] = setting(factory=dict, flag="--param", short="-p", env="PARAMS", multiple=True,
                                     spec="strategy.<parameter>",
                                     parse=parse_params,
                                     help="Override a strategy parameter: -p fast=5 -p slow=20.")
    state_dir: Path = setting(Path("state"), computed_default=True,
                              help="Folder of the state, its log and crash.json. Default: state/<strategy file stem>.")
    host: str = setting("127.0.0.1", spec="core.host", help="Interface the webhook listens on.")
    port: int = setting(DEFAULT_PORT, spec="core.port", minimum=0, maximum=65535, help="Webhook port (0: any free port).")
    #: Cash, fees, fills and the cycle offset.
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: Limits that pause new entries (drawdown, daily loss, losing streak) or refuse them (position value).
    risk: RiskConfig = field(default_factory=RiskConfig)
    trigger_seconds: float = setting(10.0, spec="core.trigger_seconds", unit="seconds", minimum=0,
                                     hint="0 disables", help="Seconds between position trigger checks; 0 disables.")
    revaluation_seconds: float = setting(60.0, spec="core.revaluation_seconds", unit="seconds", minimum=0,
                                         hint="0 disables", help="Seconds between revaluations; 0 disables.")
    max_cycles: int = setting(0, minimum=0, hint="0 = no limit",
                              help="Stop after this many strategy cycles; 0: no limit.")
    run_single_cycle: bool = setting(False, help="Run one cycle at once, then stop.")
    trade_immediately: bool = setting(False, help="Run a cycle at start-up instead of waiting for the first "
                                                  "boundary.")
    crash_policy: str = setting("exit", spec="core.crash_policy", choices=CRASH_POLICIES,
                                help="After a crash: exit at once, or serve the webhook for --crash-serve-seconds "
                                     "first (exit 1 both).")
    crash_serve_seconds: float = setting(300.0, spec="core.crash_serve_seconds", unit="seconds", minimum=0,
                                         hint="0 disables", help="Webhook time after a crash (serve policy).")
    crash_loop_count: int = setting(3, spec="core.crash_loop_count", minimum=0, hint="0 disables",
                                    help="Crashes within --crash-loop-minutes that put the executor in safe mode (the "
                                         "strategy is not called, positions are still managed); 0 disables.")
    crash_loop_minutes: float = setting(10.0, spec="core.crash_loop_minutes", unit="minutes", minimum=0,
                                        help="Window of the crash-loop check.")
    watchdog_seconds: float = setting(600.0, spec="core.watchdog_seconds", unit="seconds", minimum=0,
                                      hint="0 disables",
                                      help="A job running longer is a crash (every thread's stack recorded); 0 "
                                           "disables.")
    retry_max_seconds: float = setting(60.0, unit="seconds", above=0, maximum=3600,
                                       help="Longest wait between tries of a job that failed temporarily (network, "
                                            "exchange down or in maintenance, rate limit): the wait doubles from 1 s "
                                            "up to this, longer only when the exchange names a Retry-After.")
    complete_serve_seconds: float = setting(0.0, unit="seconds", minimum=0,
                                            help="Webhook time after the replay (or backtest) completed.")
    chart_seconds: float = setting(10.0, unit="seconds", minimum=0, hint="0 disables",
                                   help="Least seconds between chart renders after cycles (drawn in a process of "
                                        "their own); 0 disables charts.")
    chart_timeout_seconds: float = setting(120.0, unit="seconds", above=0,
                                           help="A chart render taking longer is a hang: the renderer is restarted, "
                                                "the charts marked stale.")
    publish_seconds: float = setting(2.0, unit="seconds", minimum=0,
                                     help="Least seconds between publications of /state, /orders.csv and /positions.")
    cpu: str = setting("auto", help="Keep every executor thread on one CPU, since Python runs them one at a time "
                                    "(much less cycle lag and more webhook throughput under heavy polling): auto "
                                    "(least busy CPU, moving off a crowded one), a CPU number, or off.")
    #: Who may read the webhook, and its threads.
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    #: When the executor counts as unhealthy (the /healthz rule; health changes are notified).
    health: HealthLimits = field(default_factory=HealthLimits)
    #: Which events notify and how often (the channels themselves come from TRADEEXECUTOR_NOTIFY_*_URL).
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    #: The wallboard to cast chart data to (the target itself is in <state dir>/cast.json).
    cast: CastConfig = field(default_factory=CastConfig)
    #: The exchange of paper and live mode: ccxt id, URL override, credential variable names, rate share
    #: (docs/exchanges.md).
    exchange: CcxtVenueConfig = field(default_factory=CcxtVenueConfig)
    cycle_duration: str | None = setting(None, kind=str, spec="core.cycle_duration", fingerprint_when_set=True,
                                         metavar="DURATION",
                                         help="Paper and live only: run the strategy on cycles this long instead of "
                                              "the cycle_duration it declares (1s, 1m, ...), its bar frequency "
                                              "scaled alike, to rehearse it on an exchange or simulator in seconds "
                                              "rather than days. Never longer than the strategy's own cycle.")
    log_level: str = setting("info", choices=LOG_LEVELS, help="Log verbosity on stderr.")

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.cycle_duration is not None:
            object.__setattr__(self, "cycle_duration", check_cycle_duration(self.cycle_duration, self.mode))
        if self.mode in EXCHANGE_MODES:
            check_paper(self)
        if self.crash_policy not in CRASH_POLICIES:
            raise ConfigError(f"unknown crash policy {self.crash_policy!r}: use one of {', '.join(CRASH_POLICIES)}")
        check_settings(self)
        object.__setattr__(self, "cpu", check_cpu_setting(str(self.cpu)))

    @property
    def cycle_limit(self) -> int:
        """Cycles after which the loop stops (0: none)."""
        return 1 if self.run_single_cycle else self.max_cycles

    @property
    def cycle_override(self) -> timedelta | None:
        """The operator's cycle duration (``--cycle-duration``), None to keep the strategy's own."""
        if self.cycle_duration is None:
            return None
        from tradeexecutor.timeframe import parse_duration  # pandas: only when the setting is given

        return parse_duration(self.cycle_duration)

    @property
    def cycle_offset(self) -> timedelta:
        """Offset of cycle boundaries from the period's multiples."""
        return timedelta(seconds=self.engine.cycle_offset_seconds)

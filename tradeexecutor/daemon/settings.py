"""DaemonConfig: every setting of ``tradeexecutor start``, frozen and validated once.

The CLI builds one from options and environment variables; nothing else reads options. A
``*_seconds`` interval of 0 disables that job or window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from tradeexecutor.config import EngineConfig, check_finite_fields
from tradeexecutor.daemon.affinity import check_cpu_setting
from tradeexecutor.daemon.caster import CastConfig
from tradeexecutor.errors import ConfigError
from tradeexecutor.notify import NotifyConfig
from tradeexecutor.runstate import HealthLimits

__all__ = ["CRASH_POLICIES", "MODES", "REPLAY_STARTS", "DaemonConfig"]

#: Execution modes; ``live`` is reserved until an exchange adapter exists.
MODES = ("paper", "backtest", "live")
#: What happens after a crash: exit at once, or keep the webhook up for a while first.
CRASH_POLICIES = ("exit", "serve")
#: Named replay starting points; anything else is an ISO date or time.
REPLAY_STARTS = ("warm", "first")


@dataclass(frozen=True)
class DaemonConfig:
    """Settings of one executor process."""

    #: The strategy module.
    strategy_file: Path
    #: paper or backtest (live is refused).
    mode: str = "paper"
    #: Where state.json, its log and crash.json live.
    state_dir: Path = Path("state")
    #: Bundled dataset names or candle files; empty: the bundled dataset holding the strategy's symbols.
    data: tuple[str, ...] = ()
    #: First and last bar of the data (ISO, UTC).
    start: str | None = None
    end: str | None = None
    #: Strategy parameter overrides, name → text.
    params: dict[str, str] = field(default_factory=dict)
    #: Cash, fees and fills.
    engine: EngineConfig = field(default_factory=EngineConfig)
    #: Webhook interface and port.
    host: str = "127.0.0.1"
    port: int = 3456
    #: Wall-clock seconds per replayed bar.
    replay_seconds: float = 0.1
    #: Where a new replay starts: "warm" (once every indicator has a value), "first", or an ISO time.
    replay_start: str = "warm"
    #: Seconds between position trigger checks; 0 disables.
    trigger_seconds: float = 10.0
    #: Seconds between revaluations; 0 disables.
    revaluation_seconds: float = 60.0
    #: Stop after this many strategy cycles of this process; 0 = no limit.
    max_cycles: int = 0
    #: Run one cycle at once, then stop.
    run_single_cycle: bool = False
    #: Run a cycle at start-up instead of waiting for the first boundary.
    trade_immediately: bool = False
    #: exit or serve.
    crash_policy: str = "exit"
    #: How long the webhook keeps answering after a crash under the serve policy.
    crash_serve_seconds: float = 300.0
    #: This many crashes within crash_loop_minutes start the executor in safe mode; 0 disables.
    crash_loop_count: int = 3
    crash_loop_minutes: float = 10.0
    #: A job running longer than this is a crash (with every thread's stack); 0 disables.
    watchdog_seconds: float = 600.0
    #: How long the webhook keeps answering after the replay completed.
    complete_serve_seconds: float = 0.0
    #: Least seconds between chart renders after cycles (drawn in a process of their own); 0 disables charts.
    chart_seconds: float = 10.0
    #: A chart render taking longer is taken for a hang: the renderer is killed and charts are marked stale.
    chart_timeout_seconds: float = 120.0
    #: Least seconds between publications of the public snapshot files (state.json, orders.csv) after cycles.
    publish_seconds: float = 2.0
    #: Pin every thread to one CPU: auto (least busy, moving off a crowded one), off, or a CPU number.
    cpu: str = "auto"
    #: When the executor counts as unhealthy (the /healthz rule; health changes are notified).
    health: HealthLimits = field(default_factory=HealthLimits)
    #: Which events notify and how often (the channels themselves come from TRADEEXECUTOR_NOTIFY_*_URL).
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    #: The wallboard to cast chart data to (the target itself is in <state dir>/cast.json).
    cast: CastConfig = field(default_factory=CastConfig)

    def __post_init__(self) -> None:
        check_finite_fields(self)
        if self.mode == "live":
            raise ConfigError("--mode live is not available yet: no exchange adapter exists; use --mode paper "
                              "(simulated fills on a replay feed) or --mode backtest")
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.crash_policy not in CRASH_POLICIES:
            raise ConfigError(f"unknown crash policy {self.crash_policy!r}: use one of {', '.join(CRASH_POLICIES)}")
        if not self.replay_seconds > 0:
            raise ConfigError(f"--replay-seconds {self.replay_seconds} must be positive (0.1 = ten bars a second)")
        object.__setattr__(self, "cpu", check_cpu_setting(str(self.cpu)))
        if not self.chart_timeout_seconds > 0:
            raise ConfigError(f"--chart-timeout-seconds {self.chart_timeout_seconds} must be positive")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port} must be between 0 and 65535")
        for name in ("trigger_seconds", "revaluation_seconds", "crash_serve_seconds", "crash_loop_minutes",
                     "watchdog_seconds", "complete_serve_seconds", "chart_seconds", "publish_seconds"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} {value} must not be negative (0 disables)")
        for name in ("max_cycles", "crash_loop_count"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative (0 = no limit / disabled)")

    @property
    def cycle_limit(self) -> int:
        """Cycles after which the loop stops (0: none)."""
        return 1 if self.run_single_cycle else self.max_cycles

    @property
    def cycle_offset(self) -> timedelta:
        """Offset of cycle boundaries from the period's multiples."""
        return timedelta(seconds=self.engine.cycle_offset_seconds)

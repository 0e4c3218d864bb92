"""RunState: what the running executor reports about itself, written by the loop and read by the web server.

One RunState is created at start-up (RunState.create) and handed to both the loop and the web
server; there is no module global. The loop's worker thread writes it, under ``runstate.lock``
(the helper methods take it themselves); so do, for their own fields only, the crash recorder
and watchdog (a crash record) and the chart renderer's thread (chart images, or why they are
stale), whenever their work finishes. Web threads never read the
live object: they call ``snapshot()``, which copies the small fields under the lock, and read
the strategy source and chart images through ``get_source()`` / ``get_image(key)``, which hand
out the current immutable ``str`` / ``bytes``. Writers replace those values, never mutate them,
so per-request cost does not grow with the run's history.
"""

from __future__ import annotations

import copy
import os
import subprocess
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar, cast

from dataclasses_json import DataClassJsonMixin, config

from tradeexecutor.runstate.crash import MAX_RECENT_CRASHES, CrashHistory
from tradeexecutor.runstate.crash import serialise_exception as _serialise_exception
from tradeexecutor.runstate.figures import PortfolioFigures
from tradeexecutor.runstate.public import PublicDocuments
from tradeexecutor.state.timestamps import datetime_field

#: Environment variable that names the deployed git commit (set it in images without a .git directory).
GIT_COMMIT_ENV = "TRADEEXECUTOR_GIT_COMMIT"

#: Allowed chart sizes, themes and formats; an image key is ``"size/theme/format"``.
IMAGE_SIZES = ("small", "large")
IMAGE_THEMES = ("light", "dark")
IMAGE_FORMATS = ("svg", "png")

_EXCLUDE = config(exclude=lambda _value: True)


#: What a cached rendering of the exportable RunState is (bytes for /status).
T = TypeVar("T")


class RunStatus(StrEnum):
    """Where the executor is in its life; shown as plain text in /status."""

    new = "new"
    starting = "starting"
    running = "running"
    complete = "complete"
    stopped = "stopped"
    error = "error"


def image_key(size: str, theme: str, fmt: str) -> str:
    """The key a chart image is stored under, e.g. ``"large/light/png"``; raises ValueError on unknown values."""
    for value, allowed, name in (
        (size, IMAGE_SIZES, "size"),
        (theme, IMAGE_THEMES, "theme"),
        (fmt, IMAGE_FORMATS, "format"),
    ):
        if value not in allowed:
            raise ValueError(f"unknown image {name} {value!r}; allowed: {', '.join(allowed)}")
    return f"{size}/{theme}/{fmt}"


def read_version_info(repo_dir: Path | str | None = None) -> dict[str, str | None]:
    """Package version and git commit of the running code, read once at start-up; None where unknown."""
    from tradeexecutor import __version__

    commit = os.environ.get(GIT_COMMIT_ENV) or None
    if commit is None:
        cwd = Path(repo_dir) if repo_dir is not None else Path(__file__).resolve().parent
        try:
            result = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
            if result.returncode == 0 and result.stdout.strip():
                commit = result.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"package": __version__, "git_commit": commit}


def _utcnow(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime, the wall clock when None."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now


@dataclass
class RunState(DataClassJsonMixin):
    """The executor's live self-report: progress counters, crash record, charts and source for the web server."""

    #: Identifies this executor in logs and dashboards.
    executor_id: str = ""
    #: When the process started.
    started_at: datetime | None = datetime_field()
    #: Last time the loop showed it was alive (any cycle, trigger check or revaluation).
    last_refreshed_at: datetime | None = datetime_field()
    #: True while the loop is running jobs.
    executor_running: bool = False
    #: Timestamp of the last completed strategy cycle, on the data's timeline (simulated in a replay).
    completed_cycle: datetime | None = datetime_field()
    #: Wall-clock time the last strategy cycle completed (``completed_cycle`` is the cycle's own time).
    completed_cycle_at: datetime | None = datetime_field()
    #: Strategy cycles completed by this process.
    cycles: int = 0
    #: Stop-loss / take-profit trigger checks done by this process.
    position_trigger_checks: int = 0
    #: Position revaluations done by this process.
    position_revaluations: int = 0
    #: When the executor last crashed (this process or, after apply_crash_history, an earlier one).
    crashed_at: datetime | None = datetime_field()
    #: Crash record of the last crash (see runstate.crash.serialise_exception), or None.
    exception: dict[str, Any] | None = None
    #: The strategy module's source text; not part of snapshots, read with get_source().
    source_code: str | None = None
    #: Chart images keyed ``"size/theme/format"``; never serialised, read with get_image().
    visualisation: dict[str, bytes] = field(default_factory=dict, metadata=_EXCLUDE)
    #: When the chart images were last replaced.
    visualisation_updated_at: datetime | None = datetime_field()
    #: Why the chart images are out of date (their renderer crashed or hung), None while they are current.
    visualisation_stale: str | None = None
    #: Headline statistics of the run (JSON-safe values), empty until the first cycle.
    summary_statistics: dict[str, Any] = field(default_factory=dict)
    #: Seconds between the newest market data and the wall clock when the loop last looked, when known.
    market_data_feed_lag: float | None = None
    #: Wall-clock time of the newest market data (when a replay delivered its bar), so its age can be
    #: told at any moment (``market_data_age``), also while the loop is stuck in a job.
    market_data_at: datetime | None = datetime_field()
    #: Wall-clock seconds between strategy cycles: the cycle duration, or in a replay the time one
    #: cycle's bars take to replay; alert thresholds are relative to it. None when unknown.
    cycle_interval_seconds: float | None = None
    #: ``{"package": ..., "git_commit": ...}``, see read_version_info.
    version: dict[str, Any] = field(default_factory=dict)
    #: Life-cycle status.
    status: RunStatus = RunStatus.new
    #: replay, paper, backtest or live (settings.MODES).
    mode: str = ""
    #: The cycle duration the strategy runs on (``1h``), empty until an executor starts.
    cycle_duration: str = ""
    #: The cycle duration the strategy declares when an operator runs it on shorter cycles (``--cycle-duration``),
    #: None when it runs on its own.
    declared_cycle_duration: str | None = None
    #: Where the prices come from, in words for /status, the dashboard header and the wallboard:
    #: ``historical candles (stocks-daily)`` in a replay, ``binance live prices via http://127.0.0.1:8765`` in paper.
    prices: str = ""
    #: The exchange connection's figures in paper and live mode (empty otherwise): exchange, url, clock_offset_ms,
    #: requests, held_back_seconds, rate_share, rate_used (share of the budget used over the last minute).
    venue: dict[str, Any] = field(default_factory=dict)
    #: Strategy name.
    strategy_name: str = ""
    #: sha256 of the strategy source.
    strategy_version: str = ""
    #: The strategy's parameters as it runs with them now (changed by an operator's reload-params).
    strategy_parameters: dict[str, Any] = field(default_factory=dict)
    #: When the next strategy cycle is due.
    next_cycle_at: datetime | None = datetime_field()
    #: Crashes recorded for this state directory (restored from crash.json at start-up).
    crash_count: int = 0
    #: When the most recent of those crashes happened, oldest first (at most MAX_RECENT_CRASHES; from
    #: crash.json plus this process's), so crashes within a window are counted exactly across restarts.
    #: Not in /status (it can be long); read it with ``crashes_since``.
    recent_crashes: tuple[datetime, ...] = field(default=(), metadata=_EXCLUDE)
    #: True after a crash loop: the strategy is not called; existing positions are still managed.
    safe_mode: bool = False
    #: Why safe mode is on.
    safe_mode_reason: str | None = None
    #: Live: orders the exchange says ended while the trades it lists have not added up for long enough
    #: (``--exchange-fills-missing-seconds``), still followed: client order id, symbol, filled (what the exchange says
    #: filled), listed (what its trades add up to), since, reason. Empty when there are none.
    fills_missing: list[dict[str, Any]] = field(default_factory=list)
    #: Live: open positions whose exits wait, from the exchange's first answer that an order of theirs ended while
    #: the trades it lists do not add up yet (``Engine.waiting_exits``): position id, symbol, client order id,
    #: purpose, filled, listed, since, reason. Empty when there are none; the trades arriving clear it.
    exits_waiting: list[dict[str, Any]] = field(default_factory=list)
    #: A temporary failure the loop is retrying (network, exchange down, rate limit): the job, since when, retries,
    #: the last error's class and scrubbed message, the next try (``daemon/outage.py``); None while there is none.
    outage: dict[str, Any] | None = None
    #: Temporary failures this process retried, all outages together.
    temporary_failures: int = 0
    #: The last reconciliation with the venue (``engine/reconcile.py``): outcome, when, counts; None before one.
    reconciliation: dict[str, Any] | None = None
    #: True when cycles are paused by an operator.
    paused: bool = False
    #: True while a risk limit keeps new entries paused (persisted; lifted only by an operator's resume).
    risk_paused: bool = False
    #: Which limit, by how much and what lifts it, while ``risk_paused``.
    risk_pause_reason: str | None = None
    #: The risk limits' running figures: drawdown and daily loss (fractions), losing streak, peak and day start.
    risk: dict[str, Any] = field(default_factory=dict)
    #: Free-form extra values for new features before they earn a field.
    extra: dict[str, Any] = field(default_factory=dict)
    #: Portfolio headline figures (value, cash, orders, fees), replaced as a whole after each cycle;
    #: ``updated_at`` is None until the loop first fills them (see runstate.figures.FigureCounter).
    portfolio: PortfolioFigures = field(default_factory=PortfolioFigures)
    #: Wall-clock seconds the last strategy cycle took.
    last_cycle_duration: float | None = None
    #: Seconds between when the last cycle was due and when it started.
    last_cycle_lag: float | None = None

    def __post_init__(self) -> None:
        """Give every instance its own lock (not a field: never serialised, copied or compared)."""
        self._lock = threading.RLock()
        self._export_cache: dict[Callable[..., Any], tuple[int, Any]] = {}
        self._public = PublicDocuments()
        if not isinstance(self.status, RunStatus):
            self.status = RunStatus(self.status)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        executor_id: str,
        *,
        mode: str = "",
        strategy_name: str = "",
        strategy_version: str = "",
        source_code: str | None = None,
        version: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> RunState:
        """The one RunState of a process, made at start-up with start time and version filled in."""
        now = _utcnow(now)
        return cls(
            executor_id=executor_id,
            started_at=now,
            last_refreshed_at=now,
            status=RunStatus.starting,
            mode=mode,
            strategy_name=strategy_name,
            strategy_version=strategy_version,
            source_code=source_code,
            version=read_version_info() if version is None else dict(version),
        )

    def __setattr__(self, name: str, value: Any) -> None:
        """Every write of a public field bumps the revision, so cached renderings know they are stale."""
        object.__setattr__(self, name, value)
        if not name.startswith("_"):
            object.__setattr__(self, "_revision", self.__dict__.get("_revision", 0) + 1)

    @property
    def revision(self) -> int:
        """Counts writes of public fields; equal revisions mean equal exportable content."""
        return int(self.__dict__.get("_revision", 0))

    def cached_export(self, render: Callable[[RunState], T]) -> T:
        """``render(snapshot)`` computed once per revision (per renderer) and shared until the next write.

        Serialise once: fifty dashboards polling /status between two cycles cost one rendering,
        not fifty (the dataclasses-json conversion is the expensive part of a status request).
        """
        with self._lock:
            revision = self.revision
            cached = self._export_cache.get(render)
            if cached is not None and cached[0] == revision:
                return cast(T, cached[1])
            snapshot = self.make_exportable_copy()
        rendered = render(snapshot)
        with self._lock:
            current = self._export_cache.get(render)
            if current is None or current[0] < revision:
                self._export_cache[render] = (revision, rendered)
        return rendered

    # -- locking and reading --------------------------------------------------------------------

    @property
    def public(self) -> PublicDocuments:
        """The public files the loop published last, in memory (the webhook's /state, /orders.csv, ...)."""
        return self._public

    @property
    def lock(self) -> threading.RLock:
        """Reentrant lock writers hold while changing several fields that must be seen together."""
        return self._lock

    def make_exportable_copy(self) -> RunState:
        """A copy without source code and images whose dicts are private, safe to serialise from any thread."""
        with self._lock:
            values = {f.name: getattr(self, f.name) for f in fields(self)}
            for name in ("exception", "summary_statistics", "version", "extra", "outage", "reconciliation"):
                values[name] = copy.deepcopy(values[name])
            values["source_code"] = None
            values["visualisation"] = {}
            return type(self)(**values)

    def snapshot(self) -> RunState:
        """The exportable copy, taken under the lock so related fields always agree; what web threads read."""
        with self._lock:
            return self.make_exportable_copy()

    def get_source(self) -> str | None:
        """The current strategy source text (immutable), or None when none was loaded."""
        with self._lock:
            return self.source_code

    def get_image(self, key: str) -> bytes | None:
        """The current chart image stored under ``"size/theme/format"`` (immutable bytes), or None."""
        with self._lock:
            return self.visualisation.get(key)

    def image_keys(self) -> list[str]:
        """Keys of the chart images available now, sorted."""
        with self._lock:
            return sorted(self.visualisation)

    # -- writing (the loop thread only) ---------------------------------------------------------

    def update(self, **values: Any) -> None:
        """Set several fields at once under the lock; unknown names raise AttributeError."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise AttributeError(f"RunState has no field {', '.join(unknown)}")
        if "status" in values:
            values["status"] = RunStatus(values["status"])
        with self._lock:
            for name, value in values.items():
                setattr(self, name, value)

    def bump_refreshed(self, now: datetime | None = None) -> None:
        """Record that the loop is alive now."""
        with self._lock:
            self.last_refreshed_at = _utcnow(now)

    def update_complete_cycle(self, cycle_time: datetime, now: datetime | None = None) -> None:
        """Record a completed strategy cycle: its timestamp, the cycle count and the refresh time, together."""
        with self._lock:
            now = _utcnow(now)
            self.completed_cycle = cycle_time
            self.completed_cycle_at = now
            self.cycles += 1
            self.last_refreshed_at = now

    def set_fail(self, exc: BaseException, now: datetime | None = None) -> None:
        """Record a crash: its full crash record, when it happened, status error and the loop stopped."""
        record = _serialise_exception(exc)
        now = _utcnow(now)
        with self._lock:
            self.crashed_at = now
            self.exception = record
            self.status = RunStatus.error
            self.executor_running = False
            self.crash_count += 1
            self.recent_crashes = (*self.recent_crashes, now)[-MAX_RECENT_CRASHES:]

    def apply_crash_history(self, history: CrashHistory | None) -> None:
        """Show the last crash recorded in crash.json (from before a restart) and its crash count."""
        if history is None:
            return
        with self._lock:
            self.crash_count = history.crash_count
            self.crashed_at = history.last_crashed_at
            self.exception = copy.deepcopy(history.last_exception)
            self.recent_crashes = tuple(history.recent_crashes)[-MAX_RECENT_CRASHES:]

    # -- derived values (any thread, on a snapshot) ---------------------------------------------

    def market_data_age(self, now: datetime | None = None) -> float | None:
        """Seconds between the newest market data and ``now`` (the wall clock when None); None when unknown.

        Computed when asked, from ``market_data_at``: a value stored after each job would stand
        still while the loop hangs, exactly when it matters.
        """
        if self.market_data_at is None:
            return self.market_data_feed_lag
        return max(0.0, (_utcnow(now) - self.market_data_at).total_seconds())

    def crashes_since(self, since: datetime) -> int:
        """How many of ``recent_crashes`` happened at or after ``since``."""
        since = _utcnow(since)
        return sum(1 for moment in self.recent_crashes if moment >= since)

    def set_images(self, images: Mapping[str, bytes], now: datetime | None = None) -> None:
        """Replace every chart image at once (keys from image_key), so readers never see a half-updated set.

        New images are current: ``visualisation_stale`` is cleared.
        """
        new_images = {key: bytes(data) for key, data in images.items()}
        with self._lock:
            self.visualisation = new_images
            self.visualisation_updated_at = _utcnow(now)
            if self.visualisation_stale is not None:
                self.visualisation_stale = None

    def set_image(self, key: str, data: bytes, now: datetime | None = None) -> None:
        """Replace one chart image (copy-on-write of the image dict)."""
        with self._lock:
            self.visualisation = {**self.visualisation, key: bytes(data)}
            self.visualisation_updated_at = _utcnow(now)

    @staticmethod
    def serialise_exception(exc: BaseException) -> dict[str, Any]:
        """The crash record of an exception; see runstate.crash.serialise_exception."""
        return _serialise_exception(exc)

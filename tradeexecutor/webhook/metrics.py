"""GET /metrics: Prometheus text exposition of the RunState, read at scrape time, plus process metrics.

Each app gets its own ``CollectorRegistry`` (never prometheus_client's global one, so several
apps in one process — tests, ``metrics serve`` — do not collide) holding

- :class:`RunStateCollector`, which takes one ``runstate.snapshot()`` per scrape and turns it
  into the ``tradeexecutor_*`` families below, and
- prometheus_client's ``ProcessCollector`` (``process_resident_memory_bytes``, CPU seconds,
  open file descriptors, start time).

The metric names are a contract with the deployment's alert rules (deploy/prometheus/alerts.yml)
and dashboard: never rename one; add a new name and keep the old one working.

====================================================  ======================================
``tradeexecutor_info{executor_id,strategy,mode,version}``  gauge, always 1
``tradeexecutor_status{status}``                       1 for the run's status, 0 for the others
                                                       (new, starting, running, complete, stopped, error)
``tradeexecutor_up``                                   1 while the loop runs (0 once the run ended)
``tradeexecutor_crashed``                              1 after a crash in this process
``tradeexecutor_healthy``                              1/0, the /healthz rule
``tradeexecutor_safe_mode``, ``tradeexecutor_paused``  1/0
``tradeexecutor_risk_paused``                          1 while a risk limit keeps entries paused
``tradeexecutor_orders_fills_missing``                 live: orders the exchange says ended whose trades
                                                       have not added up for long enough (still followed)
``tradeexecutor_risk_drawdown``, ``_risk_daily_loss``  fractions below the peak and the day's start
``tradeexecutor_risk_losing_streak``                   positions closed at a loss in a row
``tradeexecutor_cycles_total``                         counter (this process)
``tradeexecutor_position_trigger_checks_total``        counter (this process)
``tradeexecutor_position_revaluations_total``          counter (this process)
``tradeexecutor_crashes_total``                        counter (this state directory, from crash.json)
``tradeexecutor_recent_crashes{window="30m|24h"}``     crashes of this state directory within the window
``tradeexecutor_last_crash_timestamp_seconds``         wall time of the last crash (this state directory)
``tradeexecutor_cycle_interval_seconds``               wall seconds between cycles (thresholds use it)
``tradeexecutor_last_cycle_duration_seconds``          when known
``tradeexecutor_last_cycle_lag_seconds``               when known
``tradeexecutor_last_cycle_wall_timestamp_seconds``    wall time the last cycle completed
``tradeexecutor_last_cycle_bar_timestamp_seconds``     the last cycle's time on the data's timeline
``tradeexecutor_last_cycle_timestamp_seconds``         the same (kept for existing rules; ambiguous name)
``tradeexecutor_next_cycle_overdue_seconds``           ``max(0, now - next_cycle_at)``
``tradeexecutor_market_data_feed_lag_seconds``         age of the newest market data, at scrape time
``tradeexecutor_outage``                               1 while a job that failed temporarily is retried
``tradeexecutor_outage_seconds``, ``_outage_retries``  how long that has lasted, failed retries (0: none)
``tradeexecutor_temporary_failures_total``             counter (this process): never crashes
``tradeexecutor_portfolio_value``, ``_cash``,          once the loop has filled
``_unrealised_pnl``, ``_open_positions``,              ``RunState.portfolio``
``_orders{state="planned|filled|rejected"}``,
``_fees_paid{currency}``                               ``currency``: the quote (several: joined
                                                       with ``/``, their fees summed)
``tradeexecutor_notifications_total``                  counter ``{channel,event,outcome}``;
                                                       outcome sent, failed or dropped
``tradeexecutor_notifications_suppressed_total``       counter ``{event}``: held back by the
                                                       rate limit (summed up in a digest)
``tradeexecutor_exchange_clock_offset_seconds``        ``{exchange}``: the exchange's clock minus ours
``tradeexecutor_exchange_requests_total``              counter ``{exchange}``: requests sent (this process)
``tradeexecutor_exchange_held_back_seconds``           ``{exchange}``: seconds until a 429/418 wait ends
``tradeexecutor_exchange_held_back_seconds_total``     counter ``{exchange}``: seconds held back by 429/418
``tradeexecutor_exchange_rate_share``                  ``{exchange}``: configured share of the rate budget
``tradeexecutor_exchange_rate_share_used``             ``{exchange}``: fraction of that share the last
                                                       minute's requests used (1 = all of it)
====================================================  ======================================

Everything that depends on time is computed at scrape time (overdue, feed lag, crashes within a
window), so it keeps moving while the loop is stuck in a job. Crash figures come from crash.json,
which every crash updates before the process exits: the restarted executor reports crashes that
no scrape of the crashed one could see (``--crash-policy exit`` leaves no time to scrape).

The notification families have samples only when a notification channel is configured; the
exchange families only in paper and live mode, which talk to an exchange.

A value that is not known yet is left out (the family is still declared), never exported as NaN.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.runstate import RunState, RunStatus, assess_health, next_cycle_overdue
from tradeexecutor.webhook.app import add_json_route, get_options, get_runstate
from tradeexecutor.webhook.options import WebhookOptions

__all__ = [
    "CRASH_WINDOWS",
    "METRIC_NAMES",
    "NOTIFICATION_METRIC_NAMES",
    "VENUE_METRIC_NAMES",
    "RunStateCollector",
    "build_registry",
    "get_metrics_registry",
    "includeme",
]

#: Every ``tradeexecutor_*`` sample name this module exports (tests and alert rules rely on them).
METRIC_NAMES: tuple[str, ...] = (
    "tradeexecutor_info",
    "tradeexecutor_status",
    "tradeexecutor_up",
    "tradeexecutor_crashed",
    "tradeexecutor_healthy",
    "tradeexecutor_safe_mode",
    "tradeexecutor_paused",
    "tradeexecutor_risk_paused",
    "tradeexecutor_orders_fills_missing",
    "tradeexecutor_risk_drawdown",
    "tradeexecutor_risk_daily_loss",
    "tradeexecutor_risk_losing_streak",
    "tradeexecutor_cycles_total",
    "tradeexecutor_position_trigger_checks_total",
    "tradeexecutor_position_revaluations_total",
    "tradeexecutor_crashes_total",
    "tradeexecutor_recent_crashes",
    "tradeexecutor_last_crash_timestamp_seconds",
    "tradeexecutor_cycle_interval_seconds",
    "tradeexecutor_last_cycle_duration_seconds",
    "tradeexecutor_last_cycle_lag_seconds",
    "tradeexecutor_last_cycle_wall_timestamp_seconds",
    "tradeexecutor_last_cycle_bar_timestamp_seconds",
    "tradeexecutor_last_cycle_timestamp_seconds",
    "tradeexecutor_next_cycle_overdue_seconds",
    "tradeexecutor_market_data_feed_lag_seconds",
    "tradeexecutor_outage",
    "tradeexecutor_outage_seconds",
    "tradeexecutor_outage_retries",
    "tradeexecutor_temporary_failures_total",
    "tradeexecutor_portfolio_value",
    "tradeexecutor_cash",
    "tradeexecutor_unrealised_pnl",
    "tradeexecutor_open_positions",
    "tradeexecutor_orders",
    "tradeexecutor_fees_paid",
)

#: Sample names of the notification counts, exported only by an executor with a notification channel.
NOTIFICATION_METRIC_NAMES: tuple[str, ...] = (
    "tradeexecutor_notifications_total",
    "tradeexecutor_notifications_suppressed_total",
)

#: Sample names of the exchange connection's figures, exported only in paper and live mode.
VENUE_METRIC_NAMES: tuple[str, ...] = (
    "tradeexecutor_exchange_clock_offset_seconds",
    "tradeexecutor_exchange_requests_total",
    "tradeexecutor_exchange_held_back_seconds",
    "tradeexecutor_exchange_held_back_seconds_total",
    "tradeexecutor_exchange_rate_share",
    "tradeexecutor_exchange_rate_share_used",
)

#: Windows of ``tradeexecutor_recent_crashes``: the crash-loop alert's and the dashboard's.
CRASH_WINDOWS: dict[str, timedelta] = {"30m": timedelta(minutes=30), "24h": timedelta(hours=24)}

_REGISTRY_SETTING = "tradeexecutor.metrics_registry"


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    """A gauge family with one sample, or none when the value is unknown."""
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric([], float(value))
    return family


def _flag(name: str, documentation: str, value: bool) -> GaugeMetricFamily:
    """A 1/0 gauge."""
    return _gauge(name, documentation, 1.0 if value else 0.0)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``; prometheus_client adds it)."""
    return CounterMetricFamily(name, documentation, value=float(value))


def _unix(moment: datetime | None) -> float | None:
    """Unix seconds of an aware datetime (naive is UTC), or None."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


class RunStateCollector(Collector):
    """Turns one RunState snapshot per scrape into the ``tradeexecutor_*`` families."""

    def __init__(self, runstate: RunState, options: WebhookOptions) -> None:
        self.runstate = runstate
        self.options = options

    def collect(self) -> Iterator[Metric]:
        """Every family of the module docstring, from a snapshot taken now."""
        snapshot = self.runstate.snapshot()
        now = datetime.now(UTC)
        verdict = assess_health(snapshot, self.options.health_limits, now)

        info = GaugeMetricFamily(
            "tradeexecutor_info",
            "Executor identity; always 1.",
            labels=["executor_id", "strategy", "mode", "version"],
        )
        version = snapshot.version.get("package") or "unknown"
        info.add_metric([snapshot.executor_id, snapshot.strategy_name, snapshot.mode, str(version)], 1.0)
        yield info
        status = GaugeMetricFamily("tradeexecutor_status", "1 for the run's status, 0 for the others.",
                                   labels=["status"])
        for each in RunStatus:
            status.add_metric([each.value], 1.0 if snapshot.status is each else 0.0)
        yield status
        yield _flag("tradeexecutor_up", "1 while the executor's loop is running.", snapshot.executor_running)
        yield _flag("tradeexecutor_crashed", "1 when this process recorded a crash.", verdict.crashed)
        yield _flag("tradeexecutor_healthy", "1 when /healthz answers 200.", verdict.healthy)
        yield _flag("tradeexecutor_safe_mode", "1 while only existing positions are managed.", snapshot.safe_mode)
        yield _flag("tradeexecutor_paused", "1 while cycles are paused by an operator.", snapshot.paused)
        yield _flag("tradeexecutor_risk_paused", "1 while a risk limit keeps new entries paused (until an operator "
                    "resumes).", snapshot.risk_paused)
        yield _gauge("tradeexecutor_orders_fills_missing", "Orders the exchange says ended whose trades have not added "
                     "up for --exchange-fills-missing-seconds; still followed.", len(snapshot.fills_missing))
        risk = snapshot.risk
        yield _gauge("tradeexecutor_risk_drawdown", "Equity below its peak, as a fraction of the peak.",
                     risk.get("drawdown"))
        yield _gauge("tradeexecutor_risk_daily_loss", "Equity below the UTC day's starting equity, as a fraction "
                     "of it.", risk.get("daily_loss"))
        yield _gauge("tradeexecutor_risk_losing_streak", "Positions closed in a row with a negative realised P&L.",
                     risk.get("losing_streak"))
        yield _counter("tradeexecutor_cycles", "Strategy cycles completed by this process.", snapshot.cycles)
        yield _counter(
            "tradeexecutor_position_trigger_checks",
            "Stop-loss and take-profit checks done by this process.",
            snapshot.position_trigger_checks,
        )
        yield _counter(
            "tradeexecutor_position_revaluations",
            "Position revaluations done by this process.",
            snapshot.position_revaluations,
        )
        yield from self._crashes(snapshot, now)
        yield _gauge(
            "tradeexecutor_cycle_interval_seconds",
            "Wall-clock seconds between strategy cycles (the cycle duration; in a replay, the time one "
            "cycle's bars take to replay).",
            snapshot.cycle_interval_seconds,
        )
        yield _gauge(
            "tradeexecutor_last_cycle_duration_seconds",
            "Wall-clock seconds the last strategy cycle took.",
            snapshot.last_cycle_duration,
        )
        yield _gauge(
            "tradeexecutor_last_cycle_lag_seconds",
            "Seconds between when the last cycle was due and when it started.",
            snapshot.last_cycle_lag,
        )
        yield _gauge(
            "tradeexecutor_last_cycle_wall_timestamp_seconds",
            "Unix time (wall clock) at which the last strategy cycle completed.",
            _unix(snapshot.completed_cycle_at),
        )
        bar_time = _unix(snapshot.completed_cycle)
        yield _gauge(
            "tradeexecutor_last_cycle_bar_timestamp_seconds",
            "Unix time of the last completed strategy cycle on the data's timeline (simulated in a replay).",
            bar_time,
        )
        yield _gauge(
            "tradeexecutor_last_cycle_timestamp_seconds",
            "Deprecated: same as tradeexecutor_last_cycle_bar_timestamp_seconds (the cycle's bar time, "
            "not wall time).",
            bar_time,
        )
        yield _gauge(
            "tradeexecutor_next_cycle_overdue_seconds",
            "Seconds the next strategy cycle is late (0 when on time).",
            next_cycle_overdue(snapshot, now),
        )
        yield _gauge(
            "tradeexecutor_market_data_feed_lag_seconds",
            "Seconds between the newest market data and the wall clock, at scrape time.",
            snapshot.market_data_age(now),
        )
        yield from self._outage(snapshot, now)
        yield from self._portfolio(snapshot)
        yield from self._notifications()
        yield from self._venue(snapshot.venue)

    @staticmethod
    def _venue(venue: dict[str, Any]) -> Iterator[Metric]:
        """The exchange connection's figures (paper and live mode), labelled with the exchange's ccxt id."""
        if not venue:
            return
        labels = [str(venue.get("exchange") or "")]
        offset = venue.get("clock_offset_ms")
        rows: tuple[tuple[str, str, Any, bool], ...] = (
            ("tradeexecutor_exchange_clock_offset_seconds", "The exchange's clock minus ours, as last measured.",
             None if offset is None else float(offset) / 1000, False),
            ("tradeexecutor_exchange_requests", "Requests this process sent to the exchange.",
             venue.get("requests"), True),
            ("tradeexecutor_exchange_held_back_seconds", "Seconds until the exchange's 429/418 wait ends (0: none).",
             venue.get("held_back_seconds"), False),
            ("tradeexecutor_exchange_held_back_seconds", "Seconds the exchange had this process hold requests back "
             "(429 Retry-After, 418 ban).", venue.get("held_back_total_seconds"), True),
            ("tradeexecutor_exchange_rate_share", "This executor's configured share of the exchange's request "
             "budget for its address.", venue.get("rate_share"), False),
            ("tradeexecutor_exchange_rate_share_used", "Fraction of that share the last minute's requests used "
             "(1: all of it).", venue.get("rate_share_used"), False),
        )
        for name, documentation, value, counter in rows:
            family: GaugeMetricFamily | CounterMetricFamily = (
                CounterMetricFamily(name, documentation, labels=["exchange"]) if counter
                else GaugeMetricFamily(name, documentation, labels=["exchange"]))
            if value is not None and math.isfinite(float(value)):
                family.add_metric(labels, float(value))
            yield family

    @staticmethod
    def _outage(snapshot: RunState, now: datetime) -> Iterator[Metric]:
        """The temporary failure being retried (exchange down, network, rate limit): whether, how long, how often."""
        outage = snapshot.outage or {}
        since = outage.get("since")
        seconds = max(0.0, (now - datetime.fromisoformat(since)).total_seconds()) if since else 0.0
        yield _flag("tradeexecutor_outage", "1 while a job that failed temporarily is being retried (not a crash).",
                    bool(outage))
        yield _gauge("tradeexecutor_outage_seconds", "Seconds the current temporary failure has lasted (0: none).",
                     seconds)
        yield _gauge("tradeexecutor_outage_retries", "Failed retries of the current temporary failure (0: none).",
                     float(outage.get("retries") or 0))
        yield _counter("tradeexecutor_temporary_failures", "Temporary failures this process retried (network, "
                       "exchange down or in maintenance, rate limits).", snapshot.temporary_failures)

    def _notifications(self) -> Iterator[Metric]:
        """The notifier's counts: per channel, event and outcome, and suppressed per event."""
        counts = self.options.notification_counts() if self.options.notification_counts is not None else {}
        delivered = CounterMetricFamily("tradeexecutor_notifications",
                                        "Notifications by channel, event and outcome (sent, failed, dropped).",
                                        labels=["channel", "event", "outcome"])
        suppressed = CounterMetricFamily("tradeexecutor_notifications_suppressed",
                                         "Notifications held back by the rate limit, by event.", labels=["event"])
        for (channel, event, outcome), value in sorted(counts.items()):
            if outcome == "suppressed":
                suppressed.add_metric([event], float(value))
            else:
                delivered.add_metric([channel, event, outcome], float(value))
        yield delivered
        yield suppressed

    @staticmethod
    def _crashes(snapshot: RunState, now: datetime) -> Iterator[Metric]:
        """Crash counter, crashes within each of CRASH_WINDOWS and the last crash's time, all from crash.json."""
        yield _counter("tradeexecutor_crashes", "Crashes recorded for this state directory.", snapshot.crash_count)
        recent = GaugeMetricFamily(
            "tradeexecutor_recent_crashes",
            "Crashes recorded for this state directory within the window before the scrape.",
            labels=["window"],
        )
        for window, span in CRASH_WINDOWS.items():
            recent.add_metric([window], float(snapshot.crashes_since(now - span)))
        yield recent
        yield _gauge(
            "tradeexecutor_last_crash_timestamp_seconds",
            "Unix time of the last crash recorded for this state directory.",
            _unix(snapshot.crashed_at),
        )

    @staticmethod
    def _portfolio(snapshot: RunState) -> Iterator[Metric]:
        """The portfolio families; without samples until the loop has filled RunState.portfolio."""
        figures = snapshot.portfolio
        known = figures.updated_at is not None

        def value(number: float) -> float | None:
            return number if known else None

        yield _gauge("tradeexecutor_portfolio_value", "Cash plus open positions at market value.",
                     value(figures.portfolio_value))
        yield _gauge("tradeexecutor_cash", "Cash in the quote currency.", value(figures.cash))
        yield _gauge("tradeexecutor_unrealised_pnl", "Unrealised profit of open positions.",
                     value(figures.unrealised_pnl))
        yield _gauge("tradeexecutor_open_positions", "Positions open now.", value(figures.open_positions))
        orders = GaugeMetricFamily("tradeexecutor_orders", "Orders by state.", labels=["state"])
        if known:
            orders.add_metric(["planned"], float(figures.orders_planned))
            orders.add_metric(["filled"], float(figures.orders_filled))
            orders.add_metric(["rejected"], float(figures.orders_rejected))
        yield orders
        # The name is kept; ``currency`` says what the number is in — a state trading several quote currencies
        # sums them (``fee_currency`` joins them with /), so a rule must not read it as one of them.
        fees = GaugeMetricFamily("tradeexecutor_fees_paid", "Fees paid over the life of the state, in `currency` "
                                 "(several quote currencies: summed, joined with /).", labels=["currency"])
        if known:
            fees.add_metric([figures.fee_currency or ""], float(figures.fees_paid))
        yield fees


def build_registry(runstate: RunState, options: WebhookOptions) -> CollectorRegistry:
    """A new registry with the RunState collector and the process collector; nothing global is touched."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunStateCollector(runstate, options))
    ProcessCollector(registry=registry)
    return registry


class _RegistryHolder:
    """Builds the app's registry on the first scrape (from the app's RunState and options) and keeps it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._registry: CollectorRegistry | None = None

    def get(self, request: Request) -> CollectorRegistry:
        with self._lock:
            if self._registry is None:
                self._registry = build_registry(get_runstate(request), get_options(request))
            return self._registry


def get_metrics_registry(request: Request) -> CollectorRegistry:
    """The prometheus registry of the app serving ``request``."""
    holder: _RegistryHolder = request.registry.settings[_REGISTRY_SETTING]
    return holder.get(request)


def metrics(request: Request) -> Response:
    """The Prometheus text format (0.0.4) of this app's registry."""
    body = generate_latest(get_metrics_registry(request))
    response = Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_PLAIN_0_0_4  # every name is legacy-safe: 0.0.4 text
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def includeme(config: Configurator) -> None:
    """Give this app its own registry (built on first scrape) and register /metrics."""
    config.registry.settings[_REGISTRY_SETTING] = _RegistryHolder()
    add_json_route(config, "metrics", "/metrics", metrics)

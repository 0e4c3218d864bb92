"""Prometheus text of runs, rendered from each run's ``metrics.json``: one renderer for metrics.prom, export and serve.

:func:`run_families` turns run documents (the dicts :mod:`tradeexecutor.runs.artifacts` writes to
``metrics.json``) into metric families, one family per name with a sample per run, labelled with
:data:`RUN_LABELS`. :func:`render_runs` builds a private ``CollectorRegistry`` around them (never
prometheus_client's global one) and returns the text exposition format 0.0.4.
:class:`RunsFolderCollector` does the same at scrape time for every run of a runs folder; its
per-scrape work is one small ``metrics.json`` read per run.

Where a figure means the same as on a live executor's ``/metrics`` (webhook/metrics.py), the
live name is reused: ``tradeexecutor_cycles_total``, ``tradeexecutor_crashes_total``,
``tradeexecutor_last_cycle_timestamp_seconds``, ``tradeexecutor_portfolio_value``,
``tradeexecutor_cash``, ``tradeexecutor_unrealised_pnl``, ``tradeexecutor_open_positions``,
``tradeexecutor_orders{state}`` and ``tradeexecutor_fees_paid``. The liveness flags (up, crashed,
healthy, ...) are not exported for runs: a finished run is not a process that alerts should page
about. Run-only figures are ``tradeexecutor_run_*``. A value that is unknown is left out (the family
is still declared), never exported as NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tradeexecutor.layout import RunPaths

__all__ = [
    "RUN_LABELS",
    "RUN_METRIC_NAMES",
    "RunsFolderCollector",
    "build_runs_registry",
    "read_run_document",
    "read_run_documents",
    "render_runs",
    "run_families",
]

#: Labels every per-run sample carries, in this order.
RUN_LABELS: tuple[str, ...] = ("run_id", "ref", "strategy", "mode")

#: (metric name, help, summary field, scale) of the summary statistics exported as gauges.
_SUMMARY_GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("tradeexecutor_run_initial_cash", "Starting cash of the run.", "initial_cash", 1.0),
    ("tradeexecutor_run_final_equity", "Equity at the last valuation of the run.", "final_equity", 1.0),
    ("tradeexecutor_run_total_return_ratio", "Total return as a fraction (0.21 = 21 %).", "total_return", 1.0),
    ("tradeexecutor_run_cagr_ratio", "Compound annual growth rate as a fraction.", "cagr", 1.0),
    ("tradeexecutor_run_annualised_volatility_ratio", "Annualised volatility of period returns.",
     "annualised_volatility", 1.0),
    ("tradeexecutor_run_sharpe", "Annualised Sharpe ratio.", "sharpe", 1.0),
    ("tradeexecutor_run_sortino", "Annualised Sortino ratio.", "sortino", 1.0),
    ("tradeexecutor_run_max_drawdown_ratio", "Largest peak-to-trough fall of equity as a fraction.",
     "max_drawdown", 1.0),
    ("tradeexecutor_run_max_drawdown_duration_seconds", "Longest time from an equity peak until it was regained.",
     "max_drawdown_duration", 86_400.0),
    ("tradeexecutor_run_win_rate_ratio", "Winning closed positions as a fraction of closed positions.",
     "win_rate", 1.0),
    ("tradeexecutor_run_profit_factor", "Sum of wins over the absolute sum of losses.", "profit_factor", 1.0),
    ("tradeexecutor_run_average_win", "Mean realised profit of winning positions.", "average_win", 1.0),
    ("tradeexecutor_run_average_loss", "Mean realised profit of losing positions (negative).", "average_loss", 1.0),
    ("tradeexecutor_run_positions_closed", "Positions closed during the run.", "position_count", 1.0),
    ("tradeexecutor_run_exposure_time_ratio", "Fraction of valuations with money in the market.",
     "exposure_time", 1.0),
    ("tradeexecutor_run_buy_and_hold_return_ratio", "Buy-and-hold return of the traded symbols over the span.",
     "buy_and_hold_return", 1.0),
)

#: Every sample name this module exports (counters with their ``_total``).
RUN_METRIC_NAMES: tuple[str, ...] = (
    "tradeexecutor_run_info",
    "tradeexecutor_cycles_total",
    "tradeexecutor_crashes_total",
    "tradeexecutor_last_cycle_timestamp_seconds",
    "tradeexecutor_portfolio_value",
    "tradeexecutor_cash",
    "tradeexecutor_unrealised_pnl",
    "tradeexecutor_open_positions",
    "tradeexecutor_orders",
    "tradeexecutor_fees_paid",
    *(name for name, _, _, _ in _SUMMARY_GAUGES),
    "tradeexecutor_run_data_start_timestamp_seconds",
    "tradeexecutor_run_data_end_timestamp_seconds",
    "tradeexecutor_run_started_timestamp_seconds",
    "tradeexecutor_run_finished_timestamp_seconds",
    "tradeexecutor_run_duration_seconds",
    "tradeexecutor_run_artifacts_timestamp_seconds",
    "tradeexecutor_run_check_passed",
    "tradeexecutor_run_journal_events",
)


def _number(value: Any) -> float | None:
    """A finite float, or None for anything missing, non-numeric, NaN or infinite."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _epoch(value: Any) -> float | None:
    """ISO 8601 text as Unix seconds (naive text taken as UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _labels(document: Mapping[str, Any]) -> list[str]:
    """The RUN_LABELS values of one run."""
    strategy = document.get("strategy")
    strategy_name = strategy.get("name") if isinstance(strategy, Mapping) else strategy
    return [
        str(document.get("run_id") or ""),
        str(document.get("ref") or ""),
        str(strategy_name or ""),
        str(document.get("mode") or ""),
    ]


def _section(document: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """A dict-valued key of the document, or an empty mapping."""
    value = document.get(name)
    return value if isinstance(value, Mapping) else {}


class _Families:
    """Families by name, created on first use in a fixed order, so every run adds to the same family."""

    def __init__(self) -> None:
        self._families: dict[str, Metric] = {}

    def gauge(self, name: str, documentation: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
        family = self._families.get(name)
        if family is None:
            family = GaugeMetricFamily(name, documentation, labels=[*RUN_LABELS, *extra])
            self._families[name] = family
        assert isinstance(family, GaugeMetricFamily)
        return family

    def counter(self, name: str, documentation: str) -> CounterMetricFamily:
        family = self._families.get(name)
        if family is None:
            family = CounterMetricFamily(name, documentation, labels=list(RUN_LABELS))
            self._families[name] = family
        assert isinstance(family, CounterMetricFamily)
        return family

    def values(self) -> list[Metric]:
        return list(self._families.values())


def _declare(families: _Families) -> None:
    """Create every family once, so each is declared even when no run has a value for it."""
    families.gauge("tradeexecutor_run_info", "Run identity and status; always 1.", ("name", "status", "strategy_version"))
    families.counter("tradeexecutor_cycles", "Strategy cycles the run completed.")
    families.counter("tradeexecutor_crashes", "Crashes recorded in the run's state directory.")
    families.gauge("tradeexecutor_last_cycle_timestamp_seconds", "Unix time of the run's last completed cycle.")
    families.gauge("tradeexecutor_portfolio_value", "Cash plus open positions at market value.")
    families.gauge("tradeexecutor_cash", "Cash in the quote currency.")
    families.gauge("tradeexecutor_unrealised_pnl", "Unrealised profit of open positions.")
    families.gauge("tradeexecutor_open_positions", "Positions open at the end of the run.")
    families.gauge("tradeexecutor_orders", "Orders by state.", ("state",))
    families.gauge("tradeexecutor_fees_paid", "Fees paid over the run.")
    for name, documentation, _, _ in _SUMMARY_GAUGES:
        families.gauge(name, documentation)
    families.gauge("tradeexecutor_run_data_start_timestamp_seconds", "Unix time of the run's first valuation.")
    families.gauge("tradeexecutor_run_data_end_timestamp_seconds", "Unix time of the run's last valuation.")
    families.gauge("tradeexecutor_run_started_timestamp_seconds", "Unix time the run started (wall clock).")
    families.gauge("tradeexecutor_run_finished_timestamp_seconds", "Unix time the run finished (wall clock).")
    families.gauge("tradeexecutor_run_duration_seconds", "Wall-clock seconds the run took.")
    families.gauge("tradeexecutor_run_artifacts_timestamp_seconds", "Unix time the run's artifacts were written.")
    families.gauge("tradeexecutor_run_check_passed", "1 when a report check passed, 0 when it failed.", ("check",))
    families.gauge("tradeexecutor_run_journal_events", "Notable journal events of the run, by event.", ("event",))


def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], value: Any) -> None:
    """Add one sample when the value is known."""
    number = _number(value)
    if number is not None:
        family.add_metric(labels, number)


def _add_run(families: _Families, document: Mapping[str, Any]) -> None:
    """The samples of one run document."""
    labels = _labels(document)
    strategy = _section(document, "strategy")
    families.gauge("tradeexecutor_run_info", "").add_metric(
        [*labels, str(document.get("name") or ""), str(document.get("status") or "unknown"),
         str(strategy.get("version") or "")],
        1.0,
    )
    run = _section(document, "run")
    portfolio = _section(document, "portfolio")
    summary = _section(document, "summary")
    _add(families.counter("tradeexecutor_cycles", ""), labels, run.get("cycles"))
    _add(families.counter("tradeexecutor_crashes", ""), labels, run.get("crashes"))
    _add(families.gauge("tradeexecutor_last_cycle_timestamp_seconds", ""), labels, _epoch(run.get("last_cycle_at")))
    _add(families.gauge("tradeexecutor_portfolio_value", ""), labels, portfolio.get("value"))
    _add(families.gauge("tradeexecutor_cash", ""), labels, portfolio.get("cash"))
    _add(families.gauge("tradeexecutor_unrealised_pnl", ""), labels, portfolio.get("unrealised_pnl"))
    _add(families.gauge("tradeexecutor_open_positions", ""), labels, portfolio.get("open_positions"))
    orders = _section(run, "orders")
    for state in ("planned", "filled", "rejected"):
        _add(families.gauge("tradeexecutor_orders", ""), [*labels, state], orders.get(state))
    _add(families.gauge("tradeexecutor_fees_paid", ""), labels, run.get("fees_paid"))
    for name, _, field, scale in _SUMMARY_GAUGES:
        value = _number(summary.get(field))
        _add(families.gauge(name, ""), labels, value * scale if value is not None else None)
    _add(families.gauge("tradeexecutor_run_data_start_timestamp_seconds", ""), labels, _epoch(summary.get("start")))
    _add(families.gauge("tradeexecutor_run_data_end_timestamp_seconds", ""), labels, _epoch(summary.get("end")))
    _add(families.gauge("tradeexecutor_run_started_timestamp_seconds", ""), labels, _epoch(run.get("started_at")))
    _add(families.gauge("tradeexecutor_run_finished_timestamp_seconds", ""), labels, _epoch(run.get("finished_at")))
    _add(families.gauge("tradeexecutor_run_duration_seconds", ""), labels, run.get("duration_seconds"))
    _add(families.gauge("tradeexecutor_run_artifacts_timestamp_seconds", ""), labels,
         _epoch(document.get("generated_at")))
    checks = document.get("checks")
    for check in checks if isinstance(checks, list) else []:
        if isinstance(check, Mapping) and isinstance(check.get("passed"), bool):
            families.gauge("tradeexecutor_run_check_passed", "").add_metric(
                [*labels, str(check.get("name") or "")], 1.0 if check["passed"] else 0.0)
    events = _section(document, "events")
    for event in sorted(events):
        _add(families.gauge("tradeexecutor_run_journal_events", ""), [*labels, str(event)], events[event])


def run_families(documents: Iterable[Mapping[str, Any]]) -> list[Metric]:
    """Every family of the module docstring, with one sample per run (documents with the same run_id once)."""
    families = _Families()
    _declare(families)
    seen: set[tuple[str, ...]] = set()
    for document in documents:
        key = tuple(_labels(document))
        if key in seen:
            continue
        seen.add(key)
        _add_run(families, document)
    return families.values()


class _DocumentsCollector(Collector):
    """Renders the documents a callable returns at collect time."""

    def __init__(self, source: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from run_families(self._source())


def render_runs(documents: Iterable[Mapping[str, Any]]) -> bytes:
    """Prometheus text (format 0.0.4) of the given run documents, from a private registry."""
    items = list(documents)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_DocumentsCollector(lambda: items))
    return generate_latest(registry)


def read_run_document(run_dir: Path) -> dict[str, Any] | None:
    """A run's metrics.json; for a run without one yet, a stub made from its metadata.json (identity and status).

    None when the folder holds neither or they cannot be read (a run being written is skipped, not fatal).
    """
    paths = RunPaths(run_dir)
    for path in (paths.metrics_json, paths.metadata):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        if path == paths.metadata:
            return {
                "run_id": data.get("run_id") or run_dir.name,
                "ref": data.get("ref"),
                "name": data.get("name"),
                "mode": data.get("mode"),
                "status": data.get("status"),
                "strategy": {"name": data.get("strategy") if isinstance(data.get("strategy"), str) else None,
                             "version": data.get("strategy_version")},
            }
        return data
    return None


def read_run_documents(runs_dir: Path) -> list[dict[str, Any]]:
    """The documents of every run folder directly inside ``runs_dir``, sorted by folder name."""
    try:
        folders = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    documents = []
    for folder in folders:
        document = read_run_document(folder)
        if document is not None:
            documents.append(document)
    return documents


class RunsFolderCollector(Collector):
    """At each scrape, the families of every run in a runs folder (one small JSON read per run)."""

    def __init__(self, runs_dir: Path) -> None:
        #: The folder holding one sub-folder per run.
        self.runs_dir = Path(runs_dir)

    def collect(self) -> Iterator[Metric]:
        yield from run_families(read_run_documents(self.runs_dir))


def build_runs_registry(runs_dir: Path, *, process: bool = True) -> CollectorRegistry:
    """A new registry over a runs folder, with the process collector of the serving process when asked."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunsFolderCollector(runs_dir))
    if process:
        ProcessCollector(registry=registry)
    return registry

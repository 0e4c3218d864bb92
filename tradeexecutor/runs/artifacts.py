"""A run's artifacts — metrics.json, metrics.prom, orders.csv, charts/, report.md, report.html — made from its folder.

:func:`write_artifacts` reads what a run left behind — ``state/`` (the executor's state
directory: ``load_state(run_dir / "state")``, ``crash.json``, ``journal.jsonl``), the run's
own ``journal.jsonl`` and ``metadata.json`` — and writes, each file crash-safely:

- ``metrics.json``: identity (run_id, ref, name, mode, status, strategy), run figures (cycles,
  trades, orders by state, fees, crashes, wall-clock times), the portfolio at the end,
  ``compute_summary(state).to_dict()``, journal event counts and the report checks;
- ``metrics.prom``: the same as Prometheus text (:mod:`tradeexecutor.runs.metrics_text`);
- ``orders.csv``: ``stats.write_trades_csv`` (the columns of the backtest trades CSV);
- ``charts/equity.{png,svg}``: the equity curve and, below it, the traded symbols' prices with
  their buy and sell fills;
- ``report.md`` and ``report.html``: outcome, key figures, checks, notable journal events
  (crashes, rejections, triggers, safe mode, operator actions) and the charts. The HTML is one
  self-contained file: the chart is inline SVG, nothing is fetched.

Prices for the charts come from the ``prices`` argument (the executor passes the market it just
ran on) or, failing that, from the data the run's ``run_spec.yaml`` names; a run whose data cannot be
loaded still gets charts (equity and fills, no price line).

Like every artifact, none of these may hold a secret: they are built from the state, the journal
(which never holds one) and metadata; crash details are limited to the exception class and message.

Example::

    write_artifacts(Path("runs/20240501-120000-sma"))          # after the run finished
    write_report(Path("runs/20240501-120000-sma"))             # charts + report.md/html only
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tradeexecutor.atomic import atomic_write_bytes, atomic_write_text, deferred_directory_fsyncs
from tradeexecutor.data.source import file_stamps
from tradeexecutor.layout import RunPaths
from tradeexecutor.ledger import load_state
from tradeexecutor.runs.metrics_text import render_runs
from tradeexecutor.runstate import CrashFile
from tradeexecutor.runstate.figures import figures_from_state
from tradeexecutor.state import State
from tradeexecutor.stats import SUMMARY_ROWS, Summary, compute_summary, format_figure, write_trades_csv
from tradeexecutor.store.journal import Journal
from tradeexecutor.visual import render_formats

__all__ = [
    "CHART_FILES",
    "NOTABLE_EVENTS",
    "Check",
    "RunFacts",
    "Thresholds",
    "collect_run",
    "format_figure",
    "key_figures",
    "run_checks",
    "write_artifacts",
    "write_report",
]

#: Chart files under ``charts/``: name → (visual size, format). The large chart is the equity curve with,
#: below it, each traded symbol's close price and fills; drawing costs ~0.15 s per file, so only these two.
CHART_FILES: dict[str, tuple[str, str]] = {
    "equity.png": ("large", "png"),
    "equity.svg": ("large", "svg"),
}
#: Journal events a report lists; entries at level warning or error are listed too.
NOTABLE_EVENTS: frozenset[str] = frozenset({
    "crashed", "order_rejected", "trigger_fired", "safe_mode", "paused", "resumed", "risk_limit_hit",
    "risk_pause_lifted", "stop_requested", "control",
    "failed", "run_failed", "stopped",
})
#: At most this many notable events are listed in a report (the rest are counted).
MAX_LISTED_EVENTS = 25
#: Journal fields shown next to an event in a report, in this order (never free-form payloads).
_EVENT_FIELDS: tuple[str, ...] = ("symbol", "order_id", "position_id", "trigger", "trigger_price", "price", "reason",
                                  "who", "what", "message", "error", "detail")
#: Version of the metrics.json layout.
METRICS_FORMAT = 1


@dataclass(frozen=True)
class Thresholds:
    """Limits of the report's checks."""

    #: Fees may be at most this fraction of the gross profit (profit before fees).
    max_fee_share: float = 0.10
    #: The largest drawdown may be at most this fraction of the peak.
    max_drawdown: float = 0.30


@dataclass(frozen=True)
class Check:
    """One report check: a stable name, a title, a verdict (None when it does not apply) and why."""

    name: str
    title: str
    passed: bool | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"name": self.name, "title": self.title, "passed": self.passed, "detail": self.detail}


@dataclass
class RunFacts:
    """Everything the artifacts are made from, gathered once from a run folder."""

    run_dir: Path
    metadata: dict[str, Any]
    #: The final state; an empty State when the run saved none.
    state: State
    #: True when state/ held a saved state.
    has_state: bool
    summary: Summary
    prices: dict[str, pd.Series]
    #: Event name → count over both journals.
    event_counts: dict[str, int]
    #: Notable entries, oldest first, at most MAX_LISTED_EVENTS.
    notable: list[dict[str, Any]]
    #: Notable entries beyond the listed ones.
    notable_omitted: int
    crash_count: int
    #: "ClassName: message" of the last crash, when there was one.
    last_crash: str | None
    checks: list[Check]
    #: The metrics.json document.
    document: dict[str, Any] = field(default_factory=dict)
    #: Why prices could not be loaded, when they could not.
    price_note: str | None = None


# ---------------------------------------------------------------------------------------------
# Entry points


def write_artifacts(run_dir: Path, *, prices: Mapping[str, pd.Series] | None = None,
                    thresholds: Thresholds | None = None, now: datetime | None = None,
                    ending: Mapping[str, Any] | None = None, charts: bool = True, orders: bool = True,
                    state: State | None = None, summary: Summary | None = None) -> None:
    """Write every artifact of the module docstring into ``run_dir`` from its state, journals and metadata.

    ``ending`` (``status``, ``stopped_at``, ``error``) overlays metadata.json: a supervisor writes the
    artifacts of how the run ended *before* it records that ending, so whoever sees the final status
    finds the reports already there.

    ``charts=False`` leaves the charts to be drawn on demand (``tradeexecutor report RUN``, i.e.
    :func:`write_report`): drawing them is most of a short run's artifact time, which a sweep's
    full runs should not pay for images nobody may look at. The reports then say how to draw them.

    ``orders=False``: orders.csv is left as it is, for a caller that wrote it from the same final
    state already (a backtest, :func:`tradeexecutor.runs.executor.execute_backtest`).
    ``state``: the final state the caller has just saved to the run's ledger, used instead of reading
    the ledger back (a sweep's full run: the read was a tenth of its time; the reports are the same,
    ``test_reports_from_the_saved_state_equal_reports_read_back``).
    ``summary``: that state's summary with ``prices`` as its benchmark, when the caller computed it already (a
    sweep's full run: its backtest's own, over the same prices; not computed a second time).
    Each file is replaced atomically; the folders are fsynced once, at the end.
    """
    paths = RunPaths(Path(run_dir))
    facts = collect_run(paths.root, prices=prices, thresholds=thresholds, now=now, ending=ending, state=state,
                        summary=summary)
    with deferred_directory_fsyncs():
        if orders:
            write_trades_csv(facts.state, paths.orders_csv)
        atomic_write_bytes(paths.metrics_json, json.dumps(facts.document, indent=2).encode("utf-8") + b"\n")
        atomic_write_bytes(paths.metrics_prom, render_runs([facts.document]))
        _write_report_files(facts, charts=charts)


def write_report(run_dir: Path, *, prices: Mapping[str, pd.Series] | None = None,
                 thresholds: Thresholds | None = None, now: datetime | None = None) -> None:
    """Regenerate charts/, report.md and report.html (the other artifacts are left as they are)."""
    run_dir = Path(run_dir)
    _write_report_files(collect_run(run_dir, prices=prices, thresholds=thresholds, now=now))


def collect_run(run_dir: Path, *, prices: Mapping[str, pd.Series] | None = None,
                thresholds: Thresholds | None = None, now: datetime | None = None,
                ending: Mapping[str, Any] | None = None, state: State | None = None,
                summary: Summary | None = None) -> RunFacts:
    """Read a run folder once: metadata, state, summary, journals, crash record, checks and the metrics document.

    ``state``: the run's final state as its ledger holds it, when the caller has it in memory (not read again).
    ``summary``: that state's summary with ``prices`` as the benchmark, when the caller has it (not computed again).
    """
    run_dir = Path(run_dir)
    paths = RunPaths(run_dir)
    state_files = paths.state_files
    metadata = {**_read_json(paths.metadata), **(ending or {})}
    state_dir = paths.state
    reuse = summary is not None and state is not None  # a summary is taken only with the state it is of
    loaded = state if state is not None else load_state(state_dir) if state_files.ledger.exists() else None
    state = loaded if loaded is not None else State(name=str(metadata.get("name") or ""))
    price_note = None
    if prices is None:
        price_map, price_note = _prices_from_spec(run_dir, state)
    else:
        price_map = dict(prices)
    if not reuse or summary is None or not price_map:
        summary = compute_summary(state, benchmark_prices=price_map or None)
    counts, notable, omitted = _journal_events(paths.journal, state_files.journal)
    history = CrashFile.for_state_dir(state_dir).load() if state_files.crash.exists() else None
    crash_count = max(history.crash_count if history else 0, counts.get("crashed", 0))
    last_crash = None
    if history is not None and history.last_exception:
        record = history.last_exception
        message = " ".join(str(record.get("message") or "").split())[:300]
        last_crash = f"{record.get('class_name') or 'Exception'}: {message}" if message else str(
            record.get("class_name") or "Exception")
    facts = RunFacts(run_dir=run_dir, metadata=metadata, state=state, has_state=loaded is not None,
                     summary=summary, prices=price_map, event_counts=dict(counts), notable=notable,
                     notable_omitted=omitted, crash_count=crash_count, last_crash=last_crash, checks=[],
                     price_note=price_note)
    facts.checks = run_checks(facts, thresholds or Thresholds())
    facts.document = _document(facts, now or datetime.now(UTC))
    return facts


# ---------------------------------------------------------------------------------------------
# Gathering


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or {} when missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _prices_from_spec(run_dir: Path, state: State) -> tuple[dict[str, pd.Series], str | None]:
    """Close prices of the state's symbols from the data the run's run_spec.yaml names; ({}, why) when unavailable."""
    symbols = tuple(instrument.symbol for instrument in state.instruments)
    spec_path = RunPaths(run_dir).spec
    if not symbols or not spec_path.exists():
        return {}, None
    try:
        from tradeexecutor.runs.spec import load_spec

        environment = load_spec(spec_path, env={}).environment
        sources = tuple(environment.data)
        return dict(_close_prices(sources, symbols, environment.start, environment.end, file_stamps(sources))), None
    except Exception as exc:  # noqa: BLE001 - charts without a price line beat no artifacts
        return {}, f"prices not loaded: {' '.join(str(exc).split())[:200]}"


@functools.lru_cache(maxsize=4)
def _close_prices(sources: tuple[str, ...], symbols: tuple[str, ...], start: str | None, end: str | None,
                  stamps: tuple[tuple[str, int, int], ...]) -> tuple[tuple[str, pd.Series], ...]:
    """Close prices per symbol, cached per process: a sweep writes many runs' artifacts over the same data."""
    from tradeexecutor.data.source import load_market

    market, _ = load_market(list(sources), list(symbols), start=start, end=end)
    return tuple((symbol, market.close_series(symbol)) for symbol in market.symbols)


def _journal_events(*paths: Path) -> tuple[Counter[str], list[dict[str, Any]], int]:
    """Event counts over the journals, the first notable entries (sorted by time) and how many more there were."""
    counts: Counter[str] = Counter()
    notable: list[dict[str, Any]] = []
    for path in paths:
        for entry in Journal(path).entries():
            event = str(entry.get("event") or "")
            if not event:
                continue
            counts[event] += 1
            level = str(entry.get("level") or "info").lower()
            if event in NOTABLE_EVENTS or level in ("warning", "error"):
                notable.append(entry)
    notable.sort(key=lambda entry: str(entry.get("at") or ""))
    listed = notable[:MAX_LISTED_EVENTS]
    return counts, listed, len(notable) - len(listed)


def _timeline(metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The metadata timeline as (what, ISO time) pairs in time order, whatever its shape (dict or list)."""
    raw = metadata.get("timeline")
    items: list[tuple[str, str]] = []
    if isinstance(raw, Mapping):
        items = [(str(key), str(value)) for key, value in raw.items() if isinstance(value, str)]
    elif isinstance(raw, list):
        for entry in raw:
            if not isinstance(entry, Mapping):
                continue
            at = entry.get("at") or entry.get("time") or entry.get("timestamp")
            what = entry.get("status") or entry.get("event") or entry.get("state") or ""
            if isinstance(at, str):
                items.append((str(what), at))
    return sorted(items, key=lambda item: item[1])


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_START_WORDS = ("start", "running")
_FINISH_WORDS = ("finish", "complete", "fail", "error", "crash", "stop", "end", "done", "cancel")


def _run_times(metadata: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Wall-clock start and finish of the run from metadata (explicit keys first, then the timeline)."""
    started = metadata.get("started_at") if isinstance(metadata.get("started_at"), str) else None
    finished = next((metadata[key] for key in ("finished_at", "stopped_at") if isinstance(metadata.get(key), str)),
                    None)
    for what, at in _timeline(metadata):
        word = what.lower()
        if started is None and any(w in word for w in _START_WORDS):
            started = at
        if any(w in word for w in _FINISH_WORDS):
            finished = at if finished is None or at > finished else finished
    return started, finished


def _strategy_name(facts: RunFacts) -> str:
    strategy = facts.metadata.get("strategy_name") or facts.metadata.get("strategy")
    if isinstance(strategy, Mapping):
        strategy = strategy.get("name")
    return str(strategy or facts.state.name or "")


def _document(facts: RunFacts, now: datetime) -> dict[str, Any]:
    """The metrics.json document (see the module docstring)."""
    metadata, state = facts.metadata, facts.state
    figures = figures_from_state(state)
    started, finished = _run_times(metadata)
    start_time, finish_time = _parse_time(started), _parse_time(finished)
    duration = (finish_time - start_time).total_seconds() if start_time and finish_time else None
    summary = facts.summary.to_dict()
    strategy_version = str(metadata.get("strategy_version") or state.strategy_version or "")
    return {
        "format": METRICS_FORMAT,
        "run_id": str(metadata.get("run_id") or facts.run_dir.name),
        "ref": metadata.get("ref"),
        "name": metadata.get("name") or state.name or None,
        "mode": metadata.get("mode"),
        "status": metadata.get("status") or "unknown",
        "strategy": {"name": _strategy_name(facts), "version": strategy_version},
        "generated_at": now.isoformat(),
        "run": {
            "cycles": state.cycles_completed,
            "trades": facts.summary.trade_count,
            "orders": {"planned": figures.orders_planned, "filled": figures.orders_filled,
                       "rejected": figures.orders_rejected},
            "fees_paid": _finite(state.portfolio.fees_paid),
            "crashes": facts.crash_count,
            "last_crash": facts.last_crash,
            "last_cycle_at": state.last_completed_cycle.isoformat() if state.last_completed_cycle else None,
            "started_at": started,
            "finished_at": finished,
            "duration_seconds": duration,
        },
        "portfolio": {
            "value": _finite(figures.portfolio_value),
            "cash": _finite(figures.cash),
            "unrealised_pnl": _finite(figures.unrealised_pnl),
            "open_positions": figures.open_positions,
        },
        "summary": summary,
        "events": dict(sorted(facts.event_counts.items())),
        "checks": [check.to_dict() for check in facts.checks],
    }


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ---------------------------------------------------------------------------------------------
# Checks


def run_checks(facts: RunFacts, thresholds: Thresholds) -> list[Check]:
    """The report's checks: run finished, no crashes, no rejected orders, fees vs profit, max drawdown."""
    summary = facts.summary
    checks: list[Check] = []
    status = str(facts.metadata.get("status") or "")
    if status:
        ok = status.lower() in ("complete", "completed", "finished", "done", "succeeded")
        checks.append(Check("run_completed", "Run completed", ok, f"status {status}"))
    checks.append(Check("no_crashes", "No crashes", facts.crash_count == 0,
                        f"{facts.crash_count} crash(es)" + (f"; last: {facts.last_crash}" if facts.last_crash else "")))
    orders = summary.trade_count + summary.rejected_trade_count
    checks.append(Check("no_rejected_orders", "No rejected orders", summary.rejected_trade_count == 0,
                        f"{summary.rejected_trade_count} of {orders} orders rejected"))
    limit = thresholds.max_fee_share
    fees = summary.fees_paid
    if summary.final_equity is None or summary.initial_cash is None or not facts.has_state:
        checks.append(Check("fees_share_of_pnl", f"Fees under {limit:.0%} of PnL", None, "no result to compare with"))
    else:
        gross = summary.final_equity - summary.initial_cash + fees
        if fees <= 0:
            checks.append(Check("fees_share_of_pnl", f"Fees under {limit:.0%} of PnL", True, "no fees paid"))
        elif gross <= 0:
            checks.append(Check("fees_share_of_pnl", f"Fees under {limit:.0%} of PnL", False,
                                f"fees {format_figure(fees, 'money')} with no gross profit "
                                f"({format_figure(gross, 'money')})"))
        else:
            share = fees / gross
            checks.append(Check("fees_share_of_pnl", f"Fees under {limit:.0%} of PnL", share <= limit,
                                f"fees {format_figure(fees, 'money')} are {format_figure(share, 'pct')} of the "
                                f"gross profit {format_figure(gross, 'money')}"))
    cap = thresholds.max_drawdown
    drawdown = summary.max_drawdown
    checks.append(Check("max_drawdown", f"Max drawdown under {cap:.0%}", None if drawdown is None else drawdown <= cap,
                        "no valuations" if drawdown is None else f"max drawdown {format_figure(drawdown, 'pct')}"))
    return checks


# ---------------------------------------------------------------------------------------------
# Formatting

def key_figures(summary: Summary, cycles: int | None = None) -> list[tuple[str, str]]:
    """(label, text) rows of a summary, as the report's key figures table shows them."""
    values = summary.to_dict()
    rows = [(label, format_figure(values[name], kind)) for name, label, kind in SUMMARY_ROWS
            if name != "periods_per_year"]
    if cycles is not None:
        rows.append(("Cycles", f"{cycles:,}"))
    return rows


def _verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else ("pass" if passed else "FAIL")


def _event_text(entry: Mapping[str, Any]) -> str:
    """An event's selected fields as ``key=value`` text (never the whole payload)."""
    fields = entry.get("fields") or {}
    parts = []
    for key in _EVENT_FIELDS:
        value = fields.get(key)
        if value is None or value == "":
            continue
        text = " ".join(str(value).split())
        parts.append(f"{key}={text[:160]}")
    return " ".join(parts)


def _outcome(facts: RunFacts) -> str:
    """One sentence: status, mode, strategy, return, trades."""
    document = facts.document
    summary = facts.summary
    pieces = [f"**{document.get('status') or 'unknown'}**"]
    if document.get("mode"):
        pieces.append(str(document["mode"]))
    strategy = document["strategy"]
    if strategy.get("name"):
        version = f" ({str(strategy.get('version') or '')[:12]})" if strategy.get("version") else ""
        pieces.append(f"{strategy['name']}{version}")
    if facts.has_state:
        pieces.append(f"total return {format_figure(summary.total_return, 'pct')}")
        pieces.append(f"{summary.trade_count:,} trades, {summary.rejected_trade_count:,} rejected")
    else:
        pieces.append("no state saved")
    failed = [check.title for check in facts.checks if check.passed is False]
    pieces.append(f"{len(failed)} check(s) failed" if failed else "all checks passed")
    return " · ".join(pieces)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _charts_on_demand(facts: RunFacts) -> str:
    """What a report without charts says instead: the command that draws them."""
    return f"Not drawn yet: `tradeexecutor report {facts.document['run_id']}` draws them."


def _report_md(facts: RunFacts, *, charts: bool = True) -> str:
    document = facts.document
    run = document["run"]
    title = document.get("name") or document["run_id"]
    lines = [f"# Run {document['run_id']}: {title}", "", f"Outcome: {_outcome(facts)}", ""]
    ident = [("Run id", document["run_id"]), ("Ref", document.get("ref")), ("Mode", document.get("mode")),
             ("Status", document.get("status")), ("Started", run.get("started_at")),
             ("Finished", run.get("finished_at")),
             ("Duration", f"{run['duration_seconds']:,.1f} s" if run.get("duration_seconds") is not None else None)]
    lines += ["| Run | |", "|---|---|"]
    lines += [f"| {label} | {_md_cell(str(value))} |" for label, value in ident if value not in (None, "")]
    lines += ["", "## Key figures", "", "| Figure | Value |", "|---|---:|"]
    lines += [f"| {label} | {_md_cell(text)} |" for label, text in key_figures(facts.summary, run.get("cycles"))]
    lines += ["", "## Checks", "", "| Check | Result | Detail |", "|---|---|---|"]
    lines += [f"| {c.title} | {_verdict(c.passed)} | {_md_cell(c.detail)} |" for c in facts.checks]
    lines += ["", "## Notable events", ""]
    if facts.notable:
        for entry in facts.notable:
            detail = _event_text(entry)
            lines.append(f"- {entry.get('at', '')} {entry.get('level', 'info')} **{entry.get('event')}**"
                         + (f": {_md_cell(detail)}" if detail else ""))
        if facts.notable_omitted:
            lines.append(f"- … and {facts.notable_omitted:,} more (see journal.jsonl and state/journal.jsonl)")
    else:
        lines.append("None: no crashes, rejected orders, triggers or operator actions were journalled.")
    counts = facts.event_counts
    if counts:
        lines += ["", "Journal events: " + ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))]
    lines += ["", "## Charts", ""]
    lines.append("![Equity and prices](charts/equity.svg)" if charts else _charts_on_demand(facts))
    if facts.price_note:
        lines += ["", f"_{facts.price_note}_"]
    lines += ["", "Files: " + ", ".join(f"`{name}`" for name in listed_files(facts.run_dir)) + ".", ""]
    return "\n".join(lines)


def listed_files(run_dir: Path) -> list[str]:
    """The files the report lists: every run's, then those only some runs have, when present: ``state/reconciliation.json``,
    the last reconciliation of the ledger with the venue, which every executor start writes (a backtest has none)."""
    paths = RunPaths(run_dir)
    reconciliation = paths.state_files.reconciliation
    every = [paths.metrics_json.name, paths.metrics_prom.name, paths.orders_csv.name, f"{paths.charts.name}/",
             f"{paths.state.name}/", paths.journal.name]
    return [*every, *([reconciliation.relative_to(run_dir).as_posix()] if reconciliation.is_file() else [])]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1240px;margin:2em auto;padding:0 1em;
color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}.pass{color:#2a7a2a}.FAIL{color:#b22;font-weight:bold}
.na{color:#888}.chart svg{max-width:100%;height:auto}code{background:#f4f4f4;padding:0 .2em}
"""


def _inline_svg(data: bytes) -> str:
    """SVG bytes without the XML prolog and doctype, ready to sit inside HTML."""
    text = data.decode("utf-8")
    start = text.find("<svg")
    return text[start:] if start >= 0 else ""


def _report_html(facts: RunFacts, charts: Mapping[str, bytes]) -> str:
    e = html.escape
    document = facts.document
    run = document["run"]
    title = str(document.get("name") or document["run_id"])
    outcome = e(_outcome(facts)).replace("**", "")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Run {e(document['run_id'])}: {e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Run {e(document['run_id'])}: {e(title)}</h1>",
        f"<p><strong>Outcome:</strong> {outcome}</p>",
        "<table>",
    ]
    ident = [("Run id", document["run_id"]), ("Ref", document.get("ref")), ("Mode", document.get("mode")),
             ("Status", document.get("status")), ("Started", run.get("started_at")),
             ("Finished", run.get("finished_at"))]
    parts += [f"<tr><th>{e(label)}</th><td>{e(str(value))}</td></tr>" for label, value in ident
              if value not in (None, "")]
    parts += ["</table>", "<h2>Key figures</h2>", "<table><tr><th>Figure</th><th>Value</th></tr>"]
    parts += [f'<tr><td>{e(label)}</td><td class="num">{e(text)}</td></tr>'
              for label, text in key_figures(facts.summary, run.get("cycles"))]
    parts += ["</table>", "<h2>Checks</h2>", "<table><tr><th>Check</th><th>Result</th><th>Detail</th></tr>"]
    for check in facts.checks:
        verdict = _verdict(check.passed)
        css = {"pass": "pass", "FAIL": "FAIL"}.get(verdict, "na")
        parts.append(f'<tr><td>{e(check.title)}</td><td class="{css}">{verdict}</td><td>{e(check.detail)}</td></tr>')
    parts += ["</table>", "<h2>Notable events</h2>"]
    if facts.notable:
        parts.append("<ul>")
        for entry in facts.notable:
            detail = _event_text(entry)
            parts.append(f"<li><code>{e(str(entry.get('at', '')))}</code> {e(str(entry.get('level', 'info')))} "
                         f"<strong>{e(str(entry.get('event')))}</strong>{': ' + e(detail) if detail else ''}</li>")
        if facts.notable_omitted:
            parts.append(f"<li>… and {facts.notable_omitted:,} more</li>")
        parts.append("</ul>")
    else:
        parts.append("<p>None: no crashes, rejected orders, triggers or operator actions were journalled.</p>")
    parts.append("<h2>Charts</h2>")
    svg = charts.get("equity.svg")
    if svg:
        parts.append(f'<div class="chart">{_inline_svg(svg)}</div>')
    elif charts.get("equity.png"):
        encoded = base64.b64encode(charts["equity.png"]).decode("ascii")
        parts.append(f'<div class="chart"><img alt="Equity and prices" src="data:image/png;base64,{encoded}"></div>')
    else:
        parts.append(f"<p>{e(_charts_on_demand(facts)).replace('`', '')}</p>")
    if facts.price_note:
        parts.append(f"<p><em>{e(facts.price_note)}</em></p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _write_report_files(facts: RunFacts, *, charts: bool = True) -> None:
    """charts/ (unless ``charts`` is False), report.md and report.html."""
    images = _draw_charts(facts) if charts else {}
    paths = RunPaths(facts.run_dir)
    atomic_write_text(paths.report_md, _report_md(facts, charts=charts))
    atomic_write_text(paths.report_html, _report_html(facts, images))


def _draw_charts(facts: RunFacts) -> dict[str, bytes]:
    """Draw and write charts/: file name → bytes."""
    charts_dir = RunPaths(facts.run_dir).charts
    charts_dir.mkdir(parents=True, exist_ok=True)
    charts: dict[str, bytes] = {}
    for size in dict.fromkeys(size for size, _ in CHART_FILES.values()):
        names = {fmt: name for name, (chart_size, fmt) in CHART_FILES.items() if chart_size == size}
        images = render_formats(facts.state, facts.prices, size=size, theme="light", formats=tuple(names))
        for fmt, name in names.items():  # one drawing, saved in every format the folder keeps
            atomic_write_bytes(charts_dir / name, images[fmt])
            charts[name] = images[fmt]
    return charts

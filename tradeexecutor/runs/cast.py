"""``runs cast RUN TARGET``: record where a run casts its chart data, tell its executor, and cast finished runs once.

The target lives in the run's ``state/cast.json`` (``store.cast_target``), the one place the
executor reads it from, at start-up and whenever it changed; ``metadata.json`` repeats it
(``cast``) and the run's journal records the request (``cast_requested``). So the command
returns at once and the choice survives restarts, whatever state the run is in:

- a running replay or paper (or live) run is also told through its control route (``POST /control/cast``,
  basic auth from ``TRADEEXECUTOR_WEBHOOK_USERNAME`` / ``_PASSWORD``), so it casts at once; when
  that route cannot be used (no auth configured, not answering yet) the executor still takes the
  new target from cast.json within one job;
- a run that has not started casts once it runs; a backtest casts its final data when it
  completes (:func:`cast_final`, from the runner);
- a run that has finished (a complete backtest, a stopped replay run) casts its final data once,
  from a detached process (``runs cast-send``), so the command does not wait for the wallboard.

Whether the wallboard took the data — a wrong path, a refused token, no answer — is written to
the run's journal (``cast_delivered`` / ``cast_failed``), where ``runs logs`` shows it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tradeexecutor.cast import CastConfig, parse_target, target_url
from tradeexecutor.cast.client import put_chart
from tradeexecutor.cast.feed import ChartFeed
from tradeexecutor.errors import StateCorruptError
from tradeexecutor.ledger import load_state
from tradeexecutor.runs.registry import RunRecord, RunsError
from tradeexecutor.runs.run import ACTIVE_STATUSES, Runs
from tradeexecutor.store.cast_target import CastTargetFile

__all__ = ["CastResult", "cast_final", "cast_run"]

#: Seconds the control request to a running executor may take.
CONTROL_TIMEOUT = 3.0


@dataclass(frozen=True)
class CastResult:
    """What ``runs cast`` did, for the command to say."""

    record: RunRecord
    #: The target recorded (None: casting stopped).
    target: str | None
    #: Notes for the user: how and when the run takes it up.
    notes: tuple[str, ...] = ()


def cast_run(runs: Runs, ref_or_id: str, text: str | None, config: CastConfig, *,
             env: Mapping[str, str] = os.environ) -> CastResult:
    """Record ``text`` as the run's cast target and get it taken up (see the module docstring)."""
    target = parse_target(text)
    with runs.locked(ref_or_id) as record:
        target_file = CastTargetFile(runs.paths(record.id).state_files.cast)
        try:
            target_file.read()  # a damaged cast.json is refused, untouched, before anything is recorded
            runs.record(record.id, "cast_requested", detail=target or "stop", cast=target)
            target_file.write(target, "runs cast")  # last: the executor may take it up at once
        except StateCorruptError as exc:
            raise RunsError(f"run {record.label}: {exc}") from None
    record = runs.resolve(record.id)
    notes: list[str] = []
    if target is not None:
        try:
            target_url(target, config.wallboard_url)
        except ValueError as exc:
            notes.append(f"warning: {exc}")
    if record.status in ACTIVE_STATUSES and record.mode != "backtest":
        notes.append(_tell_executor(runs, record, target, env))
    elif record.status in ACTIVE_STATUSES:
        notes.append("the backtest casts its final data when it completes")
    elif record.status == "new":
        notes.append("the run casts once it is started" if target else "the run will not cast")
    elif target is not None:
        _send_detached(runs, record)
        notes.append(f"sending the final data of the {record.status} run once; see `runs logs {record.label}`")
    return CastResult(record, target, tuple(notes))


def _tell_executor(runs: Runs, record: RunRecord, target: str | None, env: Mapping[str, str]) -> str:
    """POST /control/cast to the run's executor; a note saying how it went."""
    url = (runs.metadata(record.id).get("executor") or {}).get("url")
    later = "it takes the new target from cast.json after its next job"
    if not url:
        return f"the executor is starting; {later}"
    headers = {"Content-Type": "application/json"}
    username, password = env.get("TRADEEXECUTOR_WEBHOOK_USERNAME"), env.get("TRADEEXECUTOR_WEBHOOK_PASSWORD")
    if username and password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    request = urllib.request.Request(url + "/control/cast", data=json.dumps({"target": target}).encode("utf-8"),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT):
            return "the executor took it"
    except urllib.error.HTTPError as exc:
        if exc.code == 403:
            return f"the executor's control route is off (it runs without webhook auth); {later}"
        if exc.code == 401:
            return f"the executor refused the webhook credentials (401); {later}"
        return f"the executor answered {exc.code}; {later}"
    except (OSError, ValueError):
        return f"the executor did not answer; {later}"


def _send_detached(runs: Runs, record: RunRecord) -> None:
    """Start ``runs cast-send RUN_ID`` in its own session, its output appended to the run's executor.log."""
    paths = runs.paths(record.id)
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "runs", "--runs-dir", str(runs.runs_dir),
               "cast-send", record.id]
    with open(paths.executor_log, "ab") as log:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                         cwd=paths.root, start_new_session=True)


def cast_final(runs: Runs, run_id: str, config: CastConfig) -> str | None:
    """Send a finished run's chart data once to the target in its cast.json; journal and return the outcome.

    None when there is no target or the wallboard took the data, else the reason it did not.
    """
    paths = runs.paths(run_id)
    try:
        record = CastTargetFile(paths.state_files.cast).read()
    except StateCorruptError as exc:
        runs.journal(run_id, "cast_failed", {"reason": str(exc)}, level="warning")
        return str(exc)
    if record is None or record.target is None:
        return None
    target = record.target
    try:
        url = target_url(target, config.wallboard_url)
        data = _final_data(runs, run_id)
    except (ValueError, RunsError, StateCorruptError) as exc:
        runs.journal(run_id, "cast_failed", {"target": target, "reason": str(exc)}, level="warning")
        return str(exc)
    reason = put_chart(url, config.token, data, config.timeout_seconds)
    if reason is None:
        runs.journal(run_id, "cast_delivered", {"target": target, "url": url})
    else:
        runs.journal(run_id, "cast_failed", {"target": target, "url": url, "reason": reason}, level="warning")
    return reason


def _final_data(runs: Runs, run_id: str) -> dict[str, object]:
    """The chart data of the run's saved state: equity, and closes over the same time."""
    from tradeexecutor.data.source import load_market

    record = runs.resolve(run_id)
    state = load_state(runs.paths(run_id).state)
    if state is None or not len(state.valuations):
        raise RunsError(f"run {record.label} has no saved state to cast yet")
    spec = runs.load_run_spec(run_id)
    strategy = spec.load_strategy()
    environment = spec.environment
    market, _ = load_market(list(environment.data), strategy.instruments, bar_frequency=strategy.bar_frequency,
                            start=environment.start, end=environment.end)
    prices = {symbol: (bars.close_time_ns // 1_000_000, bars.close) for symbol, bars in market.bars.items()}
    last_ms = state.valuations.timestamp[-1]
    last_bars = {symbol: int(np.searchsorted(times, last_ms, side="right")) - 1 for symbol, (times, _) in prices.items()}
    feed = ChartFeed(prices)
    feed.update(state, last_bars)
    source = {"name": record.name, "run": record.label, "mode": record.mode, "status": record.status}
    return feed.data(record.name, source)

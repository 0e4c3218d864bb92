"""Start and stop runs: a backtest runs in this process to completion; a replay or paper run is its own detached executor.

A replay or paper (or live) run is started as a small supervisor process in a new session
(``tradeexecutor runs supervise RUN_ID``, stdout and stderr to ``<run>/executor.log``). The
supervisor starts the executor — ``tradeexecutor start --spec <run>/run_spec.yaml --state-dir
<run>/state --port PORT`` — records ``started`` once its webhook answers, forwards SIGTERM to it,
and records how it ended (complete, stopped or error) when it exits, so the outcome is known even
though the command that started the run has long returned. ``stop`` sends SIGTERM to the
supervisor and waits (bounded) for the executor's graceful exit; past the bound the whole process
group is killed and the run is recorded stopped all the same.

The executor gets the environment without the ``TRADEEXECUTOR_*`` variables that override spec
values: the run's config was pinned when it was created.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from types import FrameType
from typing import TYPE_CHECKING, Any

import yaml

from tradeexecutor.atomic import remove_temp_files
from tradeexecutor.cast import CastConfig
from tradeexecutor.errors import ConfigError
from tradeexecutor.layout import RunFiles, RunPaths
from tradeexecutor.ledger import load_state
from tradeexecutor.runs.cast import cast_final
from tradeexecutor.runs.registry import RunRecord, RunsError
from tradeexecutor.runs.run import ACTIVE_STATUSES, Runs, process_alive
from tradeexecutor.runs.spec import ENV_PREFIX, RunSpec, env_overrides
from tradeexecutor.stats import write_trades_csv
from tradeexecutor.strategy.failure import strategy_failure

if TYPE_CHECKING:
    from tradeexecutor.state import State

__all__ = ["StartResult", "executor_command", "free_port", "start_run", "stop_run", "supervise", "write_artifacts"]

logger = logging.getLogger("tradeexecutor.runs")

#: Seconds ``start`` waits for a replay or paper run's webhook before returning (the run keeps starting after).
START_WAIT_SECONDS = 60.0
#: Seconds ``stop`` waits for a graceful exit before killing the process group.
STOP_WAIT_SECONDS = 30.0
#: Variables never passed to a run's executor (besides those that override spec values).
_PINNED_VARIABLES = ("MODE", "STRATEGY_FILE", "STATE_DIR", "PORT", "HOST", "SPEC")


@dataclass(frozen=True)
class StartResult:
    """How a start ended, for the command to report."""

    record: RunRecord
    #: Notes to show (an edited original strategy file, artifacts that failed).
    notes: tuple[str, ...] = ()
    #: The webhook of a replay or paper run.
    url: str | None = None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    bind = "127.0.0.1" if host in ("", "0.0.0.0") else host
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((bind, 0))
        return int(sock.getsockname()[1])


def executor_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that would change a pinned run's config."""
    blocked = set(env_overrides({name: "x" for name in env if name.startswith(ENV_PREFIX)}))
    blocked.update(ENV_PREFIX + name for name in _PINNED_VARIABLES)
    return {name: value for name, value in env.items() if name not in blocked}


def executor_command(paths: RunPaths, port: int) -> list[str]:
    """The ``tradeexecutor start`` command of a replay or paper run."""
    return [sys.executable, "-m", "tradeexecutor.cli.main", "start", "--spec", str(paths.spec),
            "--state-dir", str(paths.state), "--port", str(port)]


def write_artifacts(runs: Runs, run_id: str, ending: Mapping[str, Any] | None = None, *,
                    charts: bool = True, orders: bool = True, state: State | None = None) -> str | None:
    """Write the run's metrics, reports, charts and orders (runs.artifacts); a failure is a note, not an error.

    ``charts=False``: no charts now; the reports say how to draw them on demand. ``orders=False``:
    orders.csv stays as the backtest wrote it. ``state``: the final state this process just saved
    to the run's ledger (a backtest), so the reports need not read it back.
    """
    from tradeexecutor.runs.artifacts import write_artifacts as writer

    try:
        writer(runs.paths(run_id).root, ending=ending, charts=charts, orders=orders, state=state)
    except Exception as exc:  # noqa: BLE001 - the run's result stands; its reports are secondary
        message = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        runs.journal(run_id, "artifacts_failed", {"error": message}, level="error")
        return f"warning: the reports of run {run_id} could not be written: {message}"
    return None


# ---------------------------------------------------------------------------------------------
# start


def start_run(runs: Runs, ref_or_id: str, *, port: int | None = None,
              env: Mapping[str, str] = os.environ, charts: bool = True, detach: bool = False) -> StartResult:
    """Start a run: a backtest to completion here; a replay or paper run as a detached executor (returns once it answers).

    ``charts=False`` (a sweep's full runs) leaves a backtest's charts to ``tradeexecutor report``.
    ``detach=True`` (the runner API, which must neither hold a request for a whole backtest nor run one
    in the server's process, where ``stop`` would signal the server) runs a backtest as ``tradeexecutor
    runs start RUN_ID`` in a process of its own, and returns once that process has taken the run.
    """
    record = runs.resolve(ref_or_id)
    _check_startable(record)
    notes = runs.check_pinned(record)
    spec = runs.load_run_spec(record.id)
    paths = runs.paths(record.id)
    if record.mode == "live":
        _check_credentials(record, spec, env)  # against ``env``, which the executor gets; the rest checked as paper
    spec.daemon_config(paths.state, **({"mode": "paper"} if record.mode == "live" else {}))  # refused settings stop here
    if record.mode == "backtest" and detach:
        return _start_backtest_detached(runs, record, env, tuple(notes))
    if record.mode == "backtest":
        return _run_backtest(runs, record, spec, tuple(notes), CastConfig.from_env(env), charts=charts)
    return _start_detached(runs, record, port or free_port(spec.core.host), env, tuple(notes))


def _check_credentials(record: RunRecord, spec: RunSpec, env: Mapping[str, str]) -> None:
    """A live run starts only when the variables its spec names hold its API key and secret (names in the line,
    never values): the executor gets them from this environment, and would refuse to start without them."""
    from tradeexecutor.runs.readiness import assess_readiness

    readiness = assess_readiness("live", env, exchange_variables=(spec.core.exchange_key_variable,
                                                                  spec.core.exchange_secret_variable))
    if readiness.missing:
        raise ConfigError(f"run {record.label} is a live run and {' and '.join(readiness.missing)} "
                          f"{'is' if len(readiness.missing) == 1 else 'are'} not set: export the exchange's API key "
                          "and secret in the variables its spec names (core.exchange_key_variable, "
                          "core.exchange_secret_variable), then start it again")


def _check_startable(record: RunRecord) -> None:
    label = record.label
    if record.status in ACTIVE_STATUSES:
        raise RunsError(f"run {label} is already {record.status}")
    if record.status == "new":
        return
    if record.mode == "backtest":
        raise RunsError(f"backtest run {label} is {record.status}; reset it (runs reset {label}) to run it again, "
                        f"or copy it (runs copy {label})")


def _remove_temp_files(paths: RunPaths) -> None:
    """Clear what an interrupted write left in the run's folders; called under the registry lock, run not active."""
    removed = remove_temp_files(paths.root, paths.charts, paths.state, RunFiles(paths.state).public)
    if removed:
        logger.info("removed %d temporary file(s) an interrupted write left: %s", len(removed),
                    ", ".join(str(path) for path in removed))


class _StopSignal(BaseException):
    """SIGTERM arrived while a backtest ran in this process."""


def _run_backtest(runs: Runs, record: RunRecord, spec: RunSpec, notes: tuple[str, ...], cast: CastConfig, *,
                  charts: bool = True) -> StartResult:
    """Run a backtest in this process: started, executed, recorded complete, then its reports.

    ``spec`` is the run's pinned spec as :func:`start_run` loaded it; it is loaded again only
    when the run changed before the lock was taken (``runs set`` may edit a new run's spec).
    The start is one registry transaction and one write of each file, though the timeline and
    the journal still show both steps (start_requested, then started): in this process nothing
    happens between them.
    """
    run_id = record.id
    with runs.locked(run_id) as fresh:
        _check_startable(fresh)
        _remove_temp_files(runs.paths(run_id))
        if fresh.updated_at != record.updated_at:
            spec = runs.load_run_spec(run_id)
        runs.record(run_id, "started", status="running", pid=os.getpid(), preceded_by=(("start_requested", "starting"),))
    return _backtest_started(runs, record, spec, notes, cast, charts=charts)


def _backtest_started(runs: Runs, record: RunRecord, spec: RunSpec, notes: tuple[str, ...],
                      cast: CastConfig, *, charts: bool) -> StartResult:
    """Backtest a run recorded ``running`` by this process: complete (then its reports), stopped, or error."""
    run_id = record.id
    restore = _raise_on_sigterm()
    try:
        from tradeexecutor.runs.executor import execute_backtest

        outcome = execute_backtest(spec, runs.paths(run_id), run_id)
    except (_StopSignal, KeyboardInterrupt):
        restore()
        runs.record(run_id, "stopped", status="stopped", pid=None, detail="stopped before the backtest finished")
        return StartResult(runs.registry.get(run_id) or record, notes)
    except BaseException as exc:
        restore()
        failure = strategy_failure(exc)
        message = failure.summary if failure else (" ".join(str(exc).split()) or type(exc).__name__)
        runs.record(run_id, "error", status="error", level="error", pid=None, detail=message)
        raise
    restore()
    meta = runs.metadata(run_id)
    fingerprints = {**meta.get("fingerprints", {}), "data": outcome.data}
    runs.record(run_id, "complete", status="complete", pid=None, summary=outcome.summary, fingerprints=fingerprints,
                backtest={"bars": outcome.bars, "cycles": outcome.cycles, "seconds": round(outcome.seconds, 3)})
    # execute_backtest wrote orders.csv and saved this state: the reports use it as it is, not read back
    note = write_artifacts(runs, run_id, charts=charts, orders=False, state=outcome.state)
    failed = cast_final(runs, run_id, cast)  # when cast.json names a chart: the final data, once
    cast_note = f"warning: casting the final data failed: {failed}" if failed else None
    return StartResult(runs.registry.get(run_id) or record, notes + tuple(n for n in (note, cast_note) if n))


def _start_backtest_detached(runs: Runs, record: RunRecord, env: Mapping[str, str],
                             notes: tuple[str, ...]) -> StartResult:
    """``runs start RUN_ID`` in its own session (output to executor.log); returns once the run left ``new``."""
    paths = runs.paths(record.id)
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "runs", "--runs-dir", str(runs.runs_dir), "start",
               record.id]
    with open(paths.executor_log, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(env), cwd=paths.root, start_new_session=True)
    deadline = time.monotonic() + START_WAIT_SECONDS
    current = record
    while time.monotonic() < deadline:
        current = runs.registry.get(record.id) or record
        if current.status != record.status or process.poll() is not None:
            break
        time.sleep(0.05)
    current = runs.registry.get(record.id) or current
    if current.status == record.status and process.poll() is not None:
        reason = _last_error(paths) or f"its process exited with code {process.returncode}"
        raise RunsError(f"run {record.label} failed to start: {reason} (see {paths.executor_log})")
    return StartResult(current, notes)


def _raise_on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into _StopSignal in the main thread; returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        raise _StopSignal()

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def _start_detached(runs: Runs, record: RunRecord, port: int, env: Mapping[str, str],
                    notes: tuple[str, ...]) -> StartResult:
    run_id = record.id
    paths = runs.paths(run_id)
    with runs.locked(run_id) as fresh:
        _check_startable(fresh)
        _remove_temp_files(paths)
        runs.record(run_id, "start_requested", status="starting", pid=None, port=port, error=None)
        command = [sys.executable, "-m", "tradeexecutor.cli.main", "runs", "--runs-dir", str(runs.runs_dir),
                   "supervise", run_id, "--port", str(port)]
        with open(paths.executor_log, "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=executor_env(env), cwd=paths.root, start_new_session=True)
        runs.registry.update(run_id, pid=process.pid)
    deadline = time.monotonic() + START_WAIT_SECONDS
    current = runs.registry.get(run_id) or record
    while time.monotonic() < deadline:
        current = runs.registry.get(run_id) or record
        if current.status != "starting":
            break
        if process.poll() is not None:
            current = _supervisor_ended(runs, run_id, process.returncode, paths) or current
            break
        time.sleep(0.1)
    if current.status == "error":
        raise RunsError(f"run {record.label} failed to start: {runs.metadata(run_id).get('error')} "
                        f"(see {paths.executor_log})")
    url = runs.metadata(run_id).get("executor", {}).get("url")
    return StartResult(current, notes, url)


def _supervisor_ended(runs: Runs, run_id: str, code: int, paths: RunPaths) -> RunRecord | None:
    """The supervisor exited while the run was still starting: record the error it could not (its log says why)."""
    with runs.locked(run_id) as fresh:
        if fresh.status != "starting":
            return fresh  # it recorded the outcome just before exiting
        detail = _last_error(paths) or f"its supervisor exited with code {code} before the executor answered"
        runs.record(run_id, "error", status="error", level="error", pid=None, detail=detail)
    return runs.registry.get(run_id)


# ---------------------------------------------------------------------------------------------
# supervise (runs in the detached process)


def supervise(runs: Runs, run_id: str, port: int) -> int:
    """Run the executor of a replay or paper run, record started when its webhook answers and how it ended; exit code."""
    paths = runs.paths(run_id)
    host = spec_host(paths)
    url = f"http://{host}:{port}"
    runs.registry.update(run_id, pid=os.getpid())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        child = subprocess.Popen(executor_command(paths, port), stdin=subprocess.DEVNULL, env=executor_env(os.environ),
                                 cwd=paths.root)
    except OSError as exc:
        runs.record(run_id, "error", status="error", level="error", pid=None, detail=f"cannot start the executor: {exc}")
        return 1
    started = False
    forwarded = False
    while child.poll() is None:
        if stop.is_set() and not forwarded:
            child.send_signal(signal.SIGTERM)
            forwarded = True
        if not started and not stop.is_set() and _answers(url + "/status"):
            started = True
            runs.record(run_id, "started", status="running", executor={"pid": child.pid, "port": port, "url": url})
        time.sleep(0.05 if not started else 0.1)
    code = child.returncode
    _save_orders(paths)
    stop_requested = stop.is_set() or _stop_was_requested(runs, run_id)
    detail: str | None
    if stop_requested or (code == 0 and _log_says_stopped(paths)):
        status, level, detail = "stopped", "info", f"the executor exited with code {code}"
    elif code == 0:
        status, level, detail = "complete", "info", None
    else:
        status, level, detail = "error", "error", _last_error(paths) or f"the executor exited with code {code}"
    # Paper runs get the same metrics, reports and charts as backtests, written before the ending is
    # recorded: a script that waits for the final status finds them there.
    at = runs.clock()
    ending = {"status": status, "stopped_at": at.astimezone(UTC).isoformat(timespec="milliseconds"), **({"error": detail} if status == "error" else {})}
    note = write_artifacts(runs, run_id, ending)
    runs.record(run_id, status, status=status, level=level, pid=None, detail=detail, when=at)
    if note:
        logger.warning("%s", note)
    return 0 if code == 0 else 1


def spec_host(paths: RunPaths) -> str:
    """The webhook host of the pinned spec, as a client reaches it (read without loading the strategy)."""
    try:
        core = (yaml.safe_load(paths.spec.read_text(encoding="utf-8")) or {}).get("core") or {}
        host = str(core.get("host") or "127.0.0.1")
    except (OSError, yaml.YAMLError, AttributeError):
        host = "127.0.0.1"
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def _answers(url: str) -> bool:
    """True when something answers HTTP at ``url`` (any status: auth may be on)."""
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _stop_was_requested(runs: Runs, run_id: str) -> bool:
    """A stop_requested after the last start_requested in the timeline."""
    for entry in reversed(runs.metadata(run_id).get("timeline", [])):
        if entry.get("event") == "stop_requested":
            return True
        if entry.get("event") == "start_requested":
            return False
    return False


def _tail(path: Any, size: int = 16_384) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - size))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _log_says_stopped(paths: RunPaths) -> bool:
    return "executor_stopped" in _tail(paths.executor_log)


def _last_error(paths: RunPaths) -> str | None:
    """The executor's one-line ``error: ...`` (or the last traceback line) from its log."""
    lines = [line.strip() for line in _tail(paths.executor_log).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    for line in reversed(lines):
        if "Error" in line.split(":")[0]:
            return line
    return None


def _save_orders(paths: RunPaths) -> None:
    """orders.csv from the saved state, when there is one."""
    try:
        state = load_state(paths.state)
        if state is not None:
            write_trades_csv(state, paths.orders_csv)
    except Exception as exc:  # noqa: BLE001 - a state the executor could not leave readable is reported elsewhere
        logger.warning("orders.csv not written: %s", exc)


# ---------------------------------------------------------------------------------------------
# stop


def stop_run(runs: Runs, ref_or_id: str, *, timeout: float = STOP_WAIT_SECONDS) -> tuple[RunRecord, list[str]]:
    """SIGTERM the run's process and wait for a graceful exit (bounded); the run ends stopped. Returns notes too."""
    record = runs.resolve(ref_or_id)
    if record.status not in ACTIVE_STATUSES:
        raise RunsError(f"run {record.label} is {record.status}; only a starting or running run can be stopped")
    notes = []
    if record.mode == "live":
        notes.append(f"note: stopping live run {record.label} does not close its positions; they stay open")
    runs.record(record.id, "stop_requested")
    pid = (runs.registry.get(record.id) or record).pid
    forced = False
    if pid is not None and process_alive(pid):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            forced = True
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    kill()
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.1)
            process_alive(pid)  # reaps it when it is our child
    current = runs.registry.get(record.id) or record
    if current.status in ACTIVE_STATUSES:
        detail = f"killed after {timeout:g}s without a graceful exit" if forced else None
        runs.record(record.id, "stopped", status="stopped", pid=None, detail=detail)
        current = runs.registry.get(record.id) or current
    return current, notes

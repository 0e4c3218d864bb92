"""Polls every executor on a background thread, so a page request never waits for a slow one.

Each round asks every executor, at once (a small thread pool), for ``/status``, ``/summary``
and ``/healthz`` within ``timeout_seconds`` for all three; an executor that takes longer is
shown as ``unreachable`` this round, and is not asked again until its earlier request has
returned (so a hung executor holds one pool thread, not one per round). The round's rows are
serialised once into JSON bytes that ``GET /api/executors`` serves as they are.

Executors come from the configuration (fixed) and from ``fleet`` (called every round: the
runs folder's replay, paper and live runs, which come and go). A fleet source that fails is reported
in the document's ``sources``, and the fixed executors are still polled.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from http.client import HTTPException
from typing import Any

from tradeexecutor import __version__
from tradeexecutor.errors import network_reason
from tradeexecutor.wallboard.rows import Answers, executor_row
from tradeexecutor.wallboard.settings import Credentials, ExecutorTarget, WallboardConfig, credentials_for
from tradeexecutor.web import encode_json

__all__ = ["Fleet", "Poller", "poll_executor"]

logger = logging.getLogger("tradeexecutor.wallboard")

#: Returns the executors found now (the runs folder's runs); may raise.
Fleet = Callable[[], list[ExecutorTarget]]

#: Executors polled at the same time.
MAX_WORKERS = 16
#: Largest answer read from an executor.
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class _Unreachable(Exception):
    """The executor did not answer HTTP: refused, timed out, name unknown, not HTTP."""


def _get(url: str, credentials: Credentials | None, deadline: float) -> tuple[int, Any]:
    """GET ``url``: (status code, parsed JSON or None); _Unreachable when nothing HTTP answered in time."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Unreachable("timed out")
    headers = {"Accept": "application/json", "User-Agent": f"tradeexecutor-wallboard/{__version__}"}
    if credentials is not None:
        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=remaining) as response:
            code, body = response.status, response.read(MAX_ANSWER_BYTES)
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read(MAX_ANSWER_BYTES)
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        raise _Unreachable(network_reason(exc)) from None
    try:
        return code, json.loads(body)
    except ValueError:
        return code, None


def poll_executor(target: ExecutorTarget, credentials: Credentials | None, timeout: float) -> Answers:
    """Ask one executor for /status, /summary and /healthz within ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    try:
        code, status = _get(target.url + "/status", credentials, deadline)
    except _Unreachable as exc:
        if str(exc) == "timed out":
            return Answers(problem=f"no answer from {target.url} within {timeout:g} s")
        return Answers(problem=f"no answer from {target.url}: {exc}")
    if code in (401, 403):
        hint = "wrong credentials" if credentials else "set TRADEEXECUTOR_WALLBOARD_<NAME>_USERNAME and _PASSWORD"
        return Answers(problem=f"/status answered {code}: {hint}", problem_status="refused")
    if code != 200 or not isinstance(status, dict) or "status" not in status:
        return Answers(problem=f"/status answered {code} without a status: is this a tradeexecutor webhook?")
    summary = health = None
    try:
        code, body = _get(target.url + "/summary", credentials, deadline)
        summary = body if code == 200 and isinstance(body, dict) else None
        code, body = _get(target.url + "/healthz", credentials, deadline)
        health = body if code in (200, 503) and isinstance(body, dict) else None
    except _Unreachable:
        pass  # /status answered: the row stands, without what did not come in time
    return Answers(status=status, summary=summary, health=health)


class Poller:
    """The background poll of the fleet (see the module docstring)."""

    def __init__(self, config: WallboardConfig, fleet: Fleet | None = None, *,
                 poll: Callable[[ExecutorTarget, Credentials | None, float], Answers] = poll_executor,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.fleet = fleet
        self._poll = poll
        self._now = now
        self._pool = concurrent.futures.ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="wallboard-poll")
        self._in_flight: dict[str, concurrent.futures.Future[Answers]] = {}
        self._rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Rounds completed.
        self.rounds = 0
        #: Monotonic time the last round ended (None before the first).
        self.last_round: float | None = None
        self._body = self._document([], [], None)

    # -- serving ---------------------------------------------------------------------------------

    def body(self) -> bytes:
        """The JSON document of the last round, as served."""
        with self._lock:
            return self._body

    def healthy(self) -> bool:
        """True while rounds keep coming (the poll thread is alive and not stuck)."""
        if self._thread is None or not self._thread.is_alive():
            return False
        if self.last_round is None:
            return True
        return time.monotonic() - self.last_round < 3 * self.config.refresh_seconds + self.config.timeout_seconds

    # -- the thread --------------------------------------------------------------------------------

    def start(self) -> Poller:
        """Start polling on a daemon thread (the first round begins at once)."""
        self._thread = threading.Thread(target=self._run, name="wallboard-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current round (waiting at most ``timeout``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the board must keep polling; the bug is logged
                logger.exception("wallboard poll round failed")
            self._stop.wait(max(0.0, self.config.refresh_seconds - (time.monotonic() - started)))

    # -- one round ---------------------------------------------------------------------------------

    def targets(self) -> tuple[list[ExecutorTarget], list[dict[str, Any]]]:
        """Every executor to poll now, and how each source fared."""
        targets = list(self.config.executors)
        sources: list[dict[str, Any]] = [{"source": "option", "executors": len(targets), "error": None}]
        if self.fleet is not None:
            entry: dict[str, Any] = {"source": "runs", "runs_dir": str(self.config.runs_dir or ""), "error": None}
            try:
                found = self.fleet()
            except Exception as exc:  # noqa: BLE001 - a broken runs folder must not blank the board
                found = []
                entry["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            names, urls = {t.name for t in targets}, {t.url for t in targets}
            for target in found:
                if target.url in urls:
                    continue  # named on the command line too: the same executor
                name, n = target.name, 2
                while name in names:
                    name, n = f"{target.name}~{n}", n + 1
                names.add(name)
                targets.append(ExecutorTarget(name, target.url, target.source, target.run_status, target.run_error))
            entry["executors"] = len(found)
            sources.append(entry)
        return targets, sources

    def poll_once(self) -> bytes:
        """Poll every executor once, publish the rows and return the document."""
        targets, sources = self.targets()
        timeout = self.config.timeout_seconds
        environ = self.config.environ
        credentials = {t.name: credentials_for(t.name, environ) for t in targets}
        futures: dict[str, concurrent.futures.Future[Answers]] = {}
        for target in targets:
            earlier = self._in_flight.get(target.name)
            if earlier is not None and not earlier.done():
                futures[target.name] = earlier  # still waiting on the last round's request
                continue
            futures[target.name] = self._pool.submit(self._poll, target, credentials[target.name], timeout)
        self._in_flight = dict(futures)
        concurrent.futures.wait(futures.values(), timeout=timeout + 0.5)
        polled_at = self._now()
        rows = []
        for target in targets:
            future = futures[target.name]
            if future.done() and not future.cancelled() and future.exception() is None:
                answers = future.result()
            elif future.done() and future.exception() is not None:
                logger.error("polling %s failed", target.name, exc_info=future.exception())
                answers = Answers(problem=f"the wallboard failed to poll it: {future.exception()!r}")
            else:
                answers = Answers(problem=f"no answer from {target.url} within {timeout:g} s")
            found = credentials[target.name]
            row = executor_row(target, answers, polled_at, auth=found.variables if found else None,
                               previous=self._rows.get(target.name))
            rows.append(row)
        self._rows = {row["name"]: row for row in rows}
        body = self._document(rows, sources, polled_at)
        with self._lock:
            self._body = body
            self.rounds += 1
            self.last_round = time.monotonic()
        return body

    def _document(self, rows: list[dict[str, Any]], sources: list[dict[str, Any]], at: datetime | None) -> bytes:
        return encode_json({"generated_at": at, "round": self.rounds + (1 if at else 0),
                            "refresh_seconds": self.config.refresh_seconds,
                            "timeout_seconds": self.config.timeout_seconds, "sources": sources,
                            "executors": sorted(rows, key=lambda row: str(row["name"]).lower())})

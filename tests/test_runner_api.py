"""The runner API end to end: a real ``tradeexecutor wallboard --runs-dir`` process drives real runs over HTTP.

The wallboard is a subprocess, as an operator starts it, with the runner API's credentials and a
cast token; the runs it starts are real processes (a detached backtest, a replay run's supervisor
and executor). Nothing is mocked. The twin test compares the CLI's ``runs`` verbs with the API's
routes and its OpenAPI document without a server.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

from tradeexecutor.runs.runner import free_port

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "runner", "runner-pw-0123456789"
TOKEN = "runner-api-cast-token"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
#: Generous: the machine is shared; each wait polls and ends as soon as its condition holds.
DEADLINE = 120.0

BACKTEST = """\
strategy_file: sma.py
mode: backtest
name: API backtest
environment: {data: [stocks-daily], start: "2008-01-01", end: "2011-12-31"}
core: {fee: 0.001}
"""
REPLAY = """\
strategy_file: sma.py
mode: replay
name: API replay
environment: {data: [stocks-daily], start: "2010-01-01", end: "2013-12-31", replay_seconds: 0.2, replay_start: warm}
strategy: {fast: 5, slow: 15}
core: {cash: 10000, fee: 0.001, trigger_seconds: 10, revaluation_seconds: 60, crash_policy: exit}
"""


# ---------------------------------------------------------------------------------------------
# One code path: every CLI verb has its API twin


def test_every_cli_verb_has_an_api_twin_and_every_api_operation_a_cli_verb() -> None:
    """The click group's visible commands, runs.verbs.VERBS, the app's routes and the document's operations agree."""
    from tradeexecutor.cli.runs_cmd import runs_command
    from tradeexecutor.runs.verbs import VERBS
    from tradeexecutor.wallboard.runner_api import ROUTES, openapi_document

    cli = {name for name, command in runs_command.commands.items() if not command.hidden}
    hidden = {name for name, command in runs_command.commands.items() if command.hidden}
    assert hidden == {"supervise", "cast-send"}, "internal commands (started by the runner itself) are hidden"
    document = yaml.safe_load(openapi_document())
    operations = {operation["operationId"]: (method.upper(), path)
                  for path, item in document["paths"].items() for method, operation in item.items()}
    api = set(operations) - {"openapi"}
    assert cli == set(VERBS) == api, (sorted(cli), sorted(VERBS), sorted(api))
    # Each documented operation is a route the app registers, with that method, and the reverse.
    registered = {(method, pattern) for _, pattern, _, methods in ROUTES for method in methods}
    assert set(operations.values()) == registered


def test_the_cli_verbs_only_call_runs_verbs() -> None:
    """Each click command of a verb calls runs.verbs (the API's Runner calls the same functions)."""
    import inspect

    from tradeexecutor.cli import runs_cmd
    from tradeexecutor.runs import verbs

    source = inspect.getsource(runs_cmd)
    for verb in verbs.VERBS:
        function = "set_values" if verb == "set" else verb
        assert f"verbs.{function}(" in source, f"runs {verb} does not call runs.verbs.{function}"
        assert callable(getattr(verbs.RunVerbs, function)), f"RunVerbs has no {function}"


# ---------------------------------------------------------------------------------------------
# A live wallboard


@dataclass
class Board:
    url: str
    work: Path
    process: subprocess.Popen[bytes]

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             auth: bool = True, raw: bytes | None = None) -> tuple[int, Any, Message]:
        """One request; (status, parsed JSON or text, headers, which match names in any case)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={**(AUTH if auth else {}), **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=DEADLINE) as response:
                status, text, head = response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as exc:
            status, text, head = exc.code, exc.read().decode(), exc.headers
        if head.get("Content-Type", "").startswith("application/json") and text:
            return status, json.loads(text), head
        return status, text, head

    def ok(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        status, answer, _ = self.call(method, path, body)
        assert status == expect, (method, path, status, answer)
        return answer

    def wait(self, what: str, check: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def status(self, run: str) -> str:
        return str(self.ok("GET", f"/api/runs/{run}")["run"]["status"])


def _environment(work: Path, extra: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    return {**clean, "PYTHONUNBUFFERED": "1", **extra}


def _start_board(work: Path, env: dict[str, str], *args: str) -> Iterator[Board]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = _environment(work, {"TRADEEXECUTOR_WALLBOARD_URL": url, **env})
    log = open(work / "wallboard.log", "ab")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen([sys.executable, "-m", "tradeexecutor.cli.main", "wallboard", "--port", str(port),
                                *args], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    board = Board(url, work, process)
    try:
        def answers() -> bool:
            assert process.poll() is None, (work / "wallboard.log").read_text()
            try:
                with urllib.request.urlopen(url + "/ping", timeout=2):
                    return True
            except OSError:
                return False

        board.wait("the wallboard to answer", answers)
        yield board
    finally:
        if env.get("TRADEEXECUTOR_RUNNER_USERNAME") and (work / "runs").exists():
            for run in board.call("GET", "/api/runs")[1].get("runs", []):
                if run["status"] in ("starting", "running"):
                    board.call("POST", f"/api/runs/{run['id']}/stop", {"timeout": 30})
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "strategies" / "sma_crossover.py", tmp_path / "sma.py")
    (tmp_path / "bt.yaml").write_text(BACKTEST)
    (tmp_path / "replay.yaml").write_text(REPLAY)
    return tmp_path


@pytest.fixture
def board(work: Path) -> Iterator[Board]:
    yield from _start_board(work, {"TRADEEXECUTOR_RUNNER_USERNAME": USER, "TRADEEXECUTOR_RUNNER_PASSWORD": PASSWORD,
                                   "TRADEEXECUTOR_WALLBOARD_TOKEN": TOKEN}, "--runs-dir", str(work / "runs"))


def _runs_cli(work: Path, *args: str, expect: int = 0) -> str:
    """The CLI over the same runs folder: what the API did, the CLI sees (stdout, or stderr when it fails)."""
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "runs", "--runs-dir",
                             str(work / "runs"), *args], cwd=work, capture_output=True, text=True, timeout=DEADLINE,
                            env=_environment(work, {}))
    assert result.returncode == expect, result.stderr
    return result.stdout if expect == 0 else result.stderr


# ---------------------------------------------------------------------------------------------
# The verbs through the API


@pytest.mark.slow
@pytest.mark.timeout(280)
def test_a_backtest_run_created_started_copied_set_and_reset_through_the_api(board: Board) -> None:
    created = board.ok("POST", "/api/runs", {"spec": "bt.yaml", "ref": "bt"}, expect=201)
    assert created["created"] and created["run"]["status"] == "new" and created["run"]["label"] == "bt"
    again = board.ok("POST", "/api/runs", {"spec": "bt.yaml", "ref": "bt", "upsert": True})  # 200: updated
    assert again["created"] is False and again["run"]["id"] == created["run"]["id"]

    started = board.ok("POST", "/api/runs/bt/start", {})
    assert started["run"]["status"] in ("starting", "running", "complete")
    board.wait("the backtest to complete", lambda: board.status("bt") == "complete")
    shown = board.ok("GET", "/api/runs/bt")
    assert shown["metadata"]["summary"]["trade_count"] > 0
    assert [event["event"] for event in shown["metadata"]["timeline"]][-1] == "complete"
    listed = board.ok("GET", "/api/runs")["runs"]
    assert [(run["ref"], run["status"]) for run in listed] == [("bt", "complete")]
    assert "complete" in _runs_cli(board.work, "ls")  # the CLI sees what the API did

    status, orders, headers = board.call("GET", "/api/runs/bt/orders")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    lines = orders.splitlines()
    assert lines[0].startswith("trade_id,") and len(lines) > 2
    assert orders == _runs_cli(board.work, "orders", "bt")

    entries = board.ok("GET", "/api/runs/bt/logs?limit=1000")["entries"]
    assert {"created", "start_requested", "started", "complete"} <= {entry["event"] for entry in entries}
    later = board.ok("GET", "/api/runs/bt/logs?level=info&limit=2")
    assert later["count"] == 2 and later["entries"] == [e for e in entries if e["level"] != "debug"][-2:]
    since = entries[-3]["at"]
    recent = board.ok("GET", f"/api/runs/bt/logs?since={urllib.parse.quote(since)}")["entries"]
    assert recent and all(entry["at"] >= since for entry in recent) and recent[-1] == entries[-1]
    # The CLI's twin reads the same entries; a --since it cannot read is one line and exit 2.
    rows = _runs_cli(board.work, "logs", "bt", "--since", since, "--format", "csv").splitlines()
    assert len(rows) - 1 == len(recent)
    refused = _runs_cli(board.work, "logs", "bt", "--since", "yesterday", expect=2)
    assert refused.strip().splitlines() == [refused.strip()] and "--since must be" in refused

    copied = board.ok("POST", "/api/runs/bt/copy", {"ref": "bt-fast"}, expect=201)
    assert copied["run"]["status"] == "new" and copied["copied_from"] == "bt"
    changed = board.ok("POST", "/api/runs/bt-fast/set", {"assignments": ["strategy.fast=5", "core.fee=0.002"]})
    assert changed["run"]["label"] == "bt-fast"
    spec = yaml.safe_load(Path(copied["folder"], "run_spec.yaml").read_text())
    assert spec["strategy"]["fast"] == 5 and spec["core"]["fee"] == 0.002

    # A complete backtest cannot start again: 400 saying how (reset or copy); reset makes it new.
    status, refused, _ = board.call("POST", "/api/runs/bt/start", {})
    assert status == 400 and "reset it" in refused["error"]
    reset = board.ok("POST", "/api/runs/bt/reset")
    assert reset["run"]["status"] == "new"
    assert not Path(shown["folder"], "orders.csv").exists()


def _stream(board: Board, path: str) -> tuple[Any, Iterator[dict[str, Any]]]:
    request = urllib.request.Request(board.url + path, headers=AUTH)
    response = urllib.request.urlopen(request, timeout=DEADLINE)

    def lines() -> Iterator[dict[str, Any]]:
        for raw in response:
            if raw.strip():
                yield json.loads(raw)

    return response, lines()


@pytest.mark.slow
@pytest.mark.timeout(280)
def test_a_replay_run_streams_its_log_casts_and_stops_through_the_api(board: Board) -> None:
    created = board.ok("POST", "/api/runs", {"spec": "replay.yaml", "ref": "pp", "start": True}, expect=201)
    assert created["start"]["run"]["status"] == "running", created
    assert created["start"]["url"].startswith("http://127.0.0.1:")
    assert "running" in _runs_cli(board.work, "show", "pp")
    # The executor gets the wallboard's environment (its cast settings) but not the runner API's credentials.
    executor_pid = board.ok("GET", "/api/runs/pp")["metadata"]["executor"]["pid"]
    environment = Path(f"/proc/{executor_pid}/environ").read_bytes().split(b"\0")
    assert f"TRADEEXECUTOR_WALLBOARD_TOKEN={TOKEN}".encode() in environment
    assert not [item for item in environment if item.startswith(b"TRADEEXECUTOR_RUNNER_")]

    response, entries = _stream(board, "/api/runs/pp/logs?follow=true&limit=5")
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert response.headers.get("Transfer-Encoding") == "chunked"
    seen: list[dict[str, Any]] = []
    for entry in entries:  # new cycles arrive on the open stream as the executor completes them
        seen.append(entry)
        if sum(e["event"] == "cycle_completed" for e in seen) >= 3:
            break
    assert len({json.dumps(e, sort_keys=True) for e in seen}) == len(seen), "each entry once"

    # A stream holds a worker: at most half of the server's 4 threads stream at once; a client that
    # leaves frees its slot (the server notices at its next write).
    second, _ = _stream(board, "/api/runs/pp/logs?follow=true&limit=1")
    status, busy, _ = board.call("GET", "/api/runs/pp/logs?follow=true")
    assert status == 503 and busy["retry_after"] == 5 and "since=" in busy["error"]
    second.close()

    def another_stream() -> Any:
        try:
            return _stream(board, "/api/runs/pp/logs?follow=true&limit=1")[0]
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            return None

    board.wait("the slot of the stream whose client left", another_stream).close()
    for _ in range(3):  # a HEAD's body is never read, and still gives its slot back (one leak would block the rest)
        board.wait("a HEAD of a stream", lambda: board.call("HEAD", "/api/runs/pp/logs?follow=true")[0] == 200)
    board.wait("a stream after the HEADs", another_stream).close()

    # Cast to a chart of this very wallboard, then stop casting with "-".
    cast = board.ok("POST", "/api/runs/pp/cast", {"target": "/wallboard/page1/chart1"})
    assert cast["target"] == "/wallboard/page1/chart1"
    board.wait("the run's chart on the wallboard",
               lambda: board.call("GET", "/api/wallboard/page1/chart1", auth=False)[0] == 200)
    chart = board.call("GET", "/api/wallboard/page1/chart1", auth=False)[1]
    assert chart["source"]["name"] == "SMA crossover" and chart["source"]["mode"] == "replay"

    def cast_events() -> list[str]:
        return [e["event"] for e in board.ok("GET", "/api/runs/pp/logs?limit=1000")["entries"]
                if e["event"].startswith("cast")]

    # The executor journals the delivery once the wallboard's answer reaches it, which may be after the chart shows.
    board.wait("the run's journal says the chart was delivered", lambda: "cast_delivered" in cast_events())
    stopped_cast = board.ok("POST", "/api/runs/pp/cast", {"target": "-"})
    assert stopped_cast["target"] is None
    board.wait("the second cast request in the run's journal", lambda: cast_events().count("cast_requested") == 2)

    # Stop: the run ends stopped, and the open stream ends by itself after the last entries.
    stopped = board.ok("POST", "/api/runs/pp/stop", {"timeout": 60})
    assert stopped["run"]["status"] == "stopped"
    rest = list(entries)
    assert any(e["event"] == "stopped" and e["fields"].get("run_id") for e in rest), rest[-3:]
    response.close()
    assert "stopped" in _runs_cli(board.work, "show", "pp")
    status, orders, _ = board.call("GET", "/api/runs/pp/orders")
    assert status == 200 and orders.startswith("trade_id,")


# ---------------------------------------------------------------------------------------------
# Auth and bad input


@pytest.mark.slow
def test_every_route_needs_credentials_and_bad_input_is_a_400_saying_what_where_and_how(board: Board) -> None:
    from tradeexecutor.wallboard.runner_api import ROUTES

    board.ok("POST", "/api/runs", {"spec": "bt.yaml", "ref": "bt"}, expect=201)
    wrong = {"Authorization": "Basic " + base64.b64encode(f"{USER}:guess".encode()).decode()}
    for _, pattern, _, methods in ROUTES:
        path = pattern.replace("{run}", "bt")
        for method in methods:
            body: dict[str, Any] | None = {} if method == "POST" else None
            status, answer, headers = board.call(method, path, body, auth=False)
            if path.endswith("openapi.yaml"):
                assert status == 200 and "openapi: 3" in answer
                continue
            assert status == 401, (method, path, status)
            assert answer == {"error": "authentication required", "status": 401}
            assert headers["WWW-Authenticate"] == 'Basic realm="tradeexecutor-runner"'
            assert board.call(method, path, body, auth=False, headers=wrong)[0] == 401
    assert board.status("bt") == "new", "nothing ran without credentials"
    log = (board.work / "wallboard.log").read_text()
    assert "refused an unauthenticated" in log and PASSWORD not in log and "guess" not in log
    # A browser's cross-site POST is refused before auth, even with the credentials.
    status, answer, _ = board.call("POST", "/api/runs/bt/start", {}, headers={"Origin": "https://evil.example"})
    assert status == 403 and "cross-site" in answer["error"]

    def bad(method: str, path: str, body: Any = None, raw: bytes | None = None) -> dict[str, Any]:
        status, answer, _ = board.call(method, path, body, raw=raw)
        assert status == 400, (path, status, answer)
        assert set(answer) >= {"error", "status"} and "Traceback" not in json.dumps(answer)
        return answer  # type: ignore[no-any-return]

    assert bad("POST", "/api/runs", {"spec": 3})["where"] == "body.spec"
    assert bad("POST", "/api/runs", {})["where"] == "body.spec"
    assert bad("POST", "/api/runs", {"spec": "bt.yaml", "colour": "red"})["where"] == "body.colour"
    assert bad("POST", "/api/runs", raw=b"{not json")["where"] == "body"
    assert bad("POST", "/api/runs", [1, 2])["where"] == "body"
    missing = bad("POST", "/api/runs", {"spec": "nowhere.yaml"})
    assert "nowhere.yaml: run spec not found" in missing["error"]
    assert "taken" in bad("POST", "/api/runs", {"spec": "bt.yaml", "ref": "bt"})["error"]
    assert bad("POST", "/api/runs/bt/start", {"port": 0})["where"] == "body.port"
    assert bad("POST", "/api/runs/bt/stop", {"timeout": -1})["where"] == "body.timeout"
    assert "only a starting or running run" in bad("POST", "/api/runs/bt/stop", {})["error"]
    assert bad("POST", "/api/runs/bt/set", {"assignments": []})["where"] == "body.assignments"
    assert "unknown key" in bad("POST", "/api/runs/bt/set", {"assignments": ["nope.x=1"]})["error"]
    assert bad("POST", "/api/runs/bt/cast", {})["where"] == "body.target"
    assert bad("GET", "/api/runs/bt/logs?limit=0")["where"] == "query.limit"
    assert bad("GET", "/api/runs/bt/logs?since=yesterday")["where"] == "query.since"
    assert bad("GET", "/api/runs/bt/logs?follow=yes")["where"] == "query.follow"
    assert "no orders yet" in bad("GET", "/api/runs/bt/orders")["error"]
    for method, path in (("GET", "/api/runs/nope"), ("POST", "/api/runs/nope/start"),
                         ("GET", "/api/runs/nope/logs?follow=true")):
        status, answer, _ = board.call(method, path, {} if method == "POST" else None)
        assert status == 404 and answer["where"] == "path.run" and "runs ls" in answer["error"]
    assert board.status("bt") == "new"


@pytest.mark.slow
def test_without_credentials_configured_the_api_is_off_and_without_a_runs_folder_it_is_not_found(
        work: Path) -> None:
    for board in _start_board(work, {}, "--runs-dir", str(work / "runs")):
        status, answer, _ = board.call("GET", "/api/runs")
        assert status == 403 and "TRADEEXECUTOR_RUNNER_USERNAME" in answer["error"]
        status, answer, _ = board.call("POST", "/api/runs", {"spec": "bt.yaml"})
        assert status == 403
    assert not (work / "runs").exists() or not list((work / "runs").glob("r*")), "nothing was created"
    for board in _start_board(work, {"TRADEEXECUTOR_RUNNER_USERNAME": USER,
                                     "TRADEEXECUTOR_RUNNER_PASSWORD": PASSWORD}):
        status, answer, _ = board.call("GET", "/api/runs")
        assert status == 404 and "--runs-dir" in answer["error"]
        assert board.call("GET", "/api/runs", auth=False)[0] == 401

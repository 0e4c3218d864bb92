"""Operator actions against a real executor subprocess: over HTTP and through ``tradeexecutor control``.

One replay executor replays the bundled stocks slowly with tests/strategies/daemon_operator.py
(a position in GOOG and AAPL whenever entries are on) and basic auth configured. The test then
pauses it, closes one position over HTTP and the rest with the CLI, checks the refusals (no
credentials, a closed or unknown position, parameters the strategy refuses), reloads parameters
and proves the next cycles use them, and reads the journal for who did what.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from executor_process import Executor

pytestmark = pytest.mark.slow

USER, PASSWORD = "operator", "op-s3cret-pw-42"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
CREDENTIALS = {"TRADEEXECUTOR_WEBHOOK_USERNAME": USER, "TRADEEXECUTOR_WEBHOOK_PASSWORD": PASSWORD}


def http(executor: Executor, method: str, path: str, body: dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{executor.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **AUTH, **(headers or {})})
    if headers == {}:
        request.remove_header("Authorization")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cli(executor: Executor, *args: str, credentials: bool = True) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    if credentials:
        environment.update(CREDENTIALS)
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "control",
                           f"http://127.0.0.1:{executor.port}", *args],
                          capture_output=True, text=True, env=environment, timeout=120, check=False)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, details: tuple[str, ...] = ()) -> str:
    """The error line of a refusal, then exactly ``details`` (its answer's details, indented), and no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    first, *rest = result.stderr.strip("\n").splitlines()
    assert first.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert rest == list(details), result.stderr
    return first


def positions(executor: Executor, status: str) -> list[dict[str, Any]]:
    code, payload = http(executor, "GET", f"/positions?status={status}")
    return list(payload["positions"]) if code == 200 else []


def wait_for(executor: Executor, predicate: Any, what: str, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert executor.process.poll() is None, executor.output()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{executor.output()}")


def wait_status(executor: Executor, predicate: Any) -> dict[str, Any]:
    """The first authenticated /status that satisfies ``predicate`` (Executor.wait_status sends no credentials)."""
    found: list[dict[str, Any]] = []

    def check() -> bool:
        try:
            code, status = http(executor, "GET", "/status")
        except (urllib.error.URLError, ConnectionError):
            return False
        if code == 200 and predicate(status):
            found.append(status)
            return True
        return False

    wait_for(executor, check, "a /status")
    return found[0]


def test_operator_actions_over_http_and_the_cli(tmp_path: Path) -> None:
    log = tmp_path / "cycles.txt"
    executor = Executor(tmp_path, "--replay-seconds", "0.4", "--publish-seconds", "0.2", "-p", f"log_file={log}",
                        strategy="daemon_operator.py", env=CREDENTIALS)
    try:
        wait_status(executor, lambda s: s["status"] == "running")
        wait_for(executor, lambda: len([p for p in positions(executor, "open") if p["quantity"] > 0]) == 2,
                 "both entries to fill")

        # Authenticated only: no credentials is a 401 over HTTP and exit 1 from the CLI; nothing happens.
        assert http(executor, "POST", "/control/close-all", headers={})[0] == 401
        assert "401" in one_line_error(cli(executor, "close-all", credentials=False), 1)
        assert len(positions(executor, "open")) == 2

        # Stop entries, then close one position over HTTP.
        assert cli(executor, "pause").returncode == 0
        wait_status(executor, lambda s: s["paused"])
        first, second = sorted(p["id"] for p in positions(executor, "open"))
        code, answer = http(executor, "POST", "/control/close", {"position_id": first})
        assert code == 200 and answer["outcome"] == "done", answer
        [closed] = answer["details"]["closed"]
        assert closed["position_id"] == first and closed["quantity"] > 0 and closed["price"] > 0
        assert [p["id"] for p in positions(executor, "closed")] == [first]  # published at once
        assert [p["id"] for p in positions(executor, "open")] == [second]

        # Refusals: already closed (409), unknown (404) — from HTTP and, as exit 1 with the error line and the
        # answer's details, from the CLI.
        code, answer = http(executor, "POST", "/control/close", {"position_id": first})
        assert code == 409 and "already closed" in answer["error"]
        assert "409" in one_line_error(cli(executor, "close", str(first)), 1, (f"  position_id: {first}",))
        assert "no position 99" in one_line_error(cli(executor, "close", "99"), 1, ("  position_id: 99",))
        assert "not a whole number" in one_line_error(cli(executor, "close", "first"), 2)
        assert "unknown action" in one_line_error(cli(executor, "explode"), 2)

        # Close the rest with the CLI; nothing is left open, all cash.
        result = cli(executor, "close-all", "--json")
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert [c["position_id"] for c in answer["details"]["closed"]] == [second]
        assert answer["details"]["cash"] == pytest.approx(answer["details"]["equity"])
        closed_positions = positions(executor, "closed")
        assert sorted(p["id"] for p in closed_positions) == [first, second]
        assert answer["details"]["cash"] == pytest.approx(10_000 + sum(p["realised_pnl"] for p in closed_positions))
        assert "409" in one_line_error(cli(executor, "close-all"), 1)  # nothing left to close

        # Paused: cycles go on, entries stay shut.
        cycles = wait_status(executor, lambda s: True)["cycles"]
        wait_status(executor, lambda s: s["cycles"] >= cycles + 3)
        assert positions(executor, "open") == []

        # Parameters: refused with the reason (exit 2 / 400), nothing changed ...
        refused = one_line_error(cli(executor, "reload-params", "-p", "window=1"), 2, (
            "  parameters:", "    entries: true", "    fraction: 0.3", "    window: 3", f"    log_file: {log}"))
        assert "'window': 1 is below the minimum 2" in refused
        code, answer = http(executor, "POST", "/control/reload-params", {"parameters": {"speed": 3}})
        assert code == 400 and "'speed' is not a parameter" in answer["error"]
        assert wait_status(executor, lambda s: True)["strategy_parameters"]["window"] == 3
        # ... and accepted: shown in /status and used by the next cycles.
        result = cli(executor, "reload-params", "-p", "window=9", "-p", "entries=false")
        assert result.returncode == 0 and "window 3 -> 9" in result.stdout, (result.stdout, result.stderr)
        status = wait_status(executor, lambda s: s["strategy_parameters"]["window"] == 9)
        assert status["strategy_parameters"]["entries"] is False
        seen = len(log.read_text().splitlines())
        assert cli(executor, "resume").returncode == 0
        wait_status(executor, lambda s: not s["paused"] and s["cycles"] >= status["cycles"] + 3)
        after = log.read_text().splitlines()[seen:]
        assert after and all(line.startswith("window=9 entries=False") for line in after), after
        assert positions(executor, "open") == []  # entries=false: the resumed strategy opens nothing

        # The journal: who did what, and what came of it.
        code, payload = http(executor, "GET", "/logs?limit=1000")
        entries = payload["entries"]
        done = [(e["fields"]["action"], e["fields"]["by"]) for e in entries if e["event"] == "operator_action"]
        assert done == [("close", "operator"), ("close_all", "operator"), ("reload_params", "operator")], done
        refusals = [e["fields"]["outcome"] for e in entries if e["event"] == "operator_refused"]
        assert refusals == ["conflict", "conflict", "not_found", "conflict", "invalid", "invalid"], refusals
        assert {"paused", "resumed"} <= {e["event"] for e in entries}
        fills = [e for e in entries if e["event"] == "order_filled" and e["fields"].get("by") == "operator"]
        assert sorted(e["fields"]["position_id"] for e in fills) == [first, second]
    finally:
        executor.kill()

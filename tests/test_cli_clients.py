"""``tradeexecutor status`` and ``tradeexecutor logs`` as subprocesses against a real webhook on a free port.

The server serves a RunState and a journal file written here in the journal's line format
(``{"at": ISO UTC, "level": ..., "event": ..., ...fields}``), read by the real GET /logs.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tradeexecutor.cli.client_cmd import status_lines
from tradeexecutor.layout import RunFiles
from tradeexecutor.runstate import RunState
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.options import WebhookOptions

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
USER, PASSWORD = "cli-user", "cli-s3cret-pw-777"


def _clean_env(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    environment.setdefault("TZ", "UTC")
    environment.update(extra)
    return environment


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], capture_output=True, text=True,
                          env=env or _clean_env(), timeout=timeout, check=False)


def write_journal(path: Path, entries: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for entry in entries:
            handle.write(json.dumps(entry) + "\n")


def entry(minutes: int, event: str, level: str = "info", **fields: Any) -> dict[str, Any]:
    return {"at": (T0 + timedelta(minutes=minutes)).isoformat(), "level": level, "event": event, **fields}


JOURNAL = [
    entry(0, "started", mode="replay"),
    entry(1, "cycle_completed", duration=0.25, decisions=1),
    entry(2, "order_filled", trade_id=1, symbol="GOOG", price=101.5),
    entry(3, "order_rejected", level="warning", trade_id=2, reason="below minimum notional"),
    entry(4, "crashed", level="error", error="ValueError: bad | pipe <b>"),
]


@dataclass
class Executor:
    server: WebhookServer
    runstate: RunState
    files: RunFiles

    @property
    def url(self) -> str:
        return self.server.url


def _runstate() -> RunState:
    runstate = RunState.create("exec-cli", mode="replay", strategy_name="sma_crossover",
                               strategy_version="ab" * 32, version={"package": "0.1.0", "git_commit": None}, now=T0)
    runstate.update(status="running", executor_running=True, cycles=7, completed_cycle=T0 + timedelta(hours=1),
                    next_cycle_at=T0 + timedelta(hours=2))
    return runstate


def _serve(tmp_path: Path, **options: Any) -> Iterator[Executor]:
    files = RunFiles(tmp_path)
    write_journal(files.journal, JOURNAL)
    runstate = _runstate()
    app = create_app(runstate, options=WebhookOptions(files=files, **options))
    with WebhookServer(app, port=0) as server:
        yield Executor(server, runstate, files)


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[Executor]:
    yield from _serve(tmp_path)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Executor]:
    yield from _serve(tmp_path, auth_username=USER, auth_password=PASSWORD)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# ---------------------------------------------------------------------------------------------
# status


def test_status_of_a_paper_executor_names_its_prices_and_exchange_figures() -> None:
    lines = status_lines({"status": "running", "mode": "paper", "prices": "binance live prices via http://127.0.0.1:8765",
                          "venue": {"exchange": "binance", "requests": 42, "clock_offset_ms": -12.0,
                                    "held_back_seconds": 30.0, "rate_share": 0.25, "rate_share_used": 0.4}}, UTC)
    shown = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines}
    assert shown["mode"] == "paper" and shown["prices"] == "binance live prices via http://127.0.0.1:8765"
    assert shown["exchange"] == ("42 requests, clock offset -12.0 ms, 40% of its 25% rate share used, held back 30 s "
                                 "more")
    assert "exchange" not in {line.split(":", 1)[0] for line in status_lines({"status": "running", "venue": {}}, UTC)}


def test_status_prints_a_readable_summary(executor: Executor) -> None:
    result = run_cli("status", executor.url, "--timezone", "Asia/Tokyo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "status:" in out and "running" in out
    assert "mode:" in out and "replay" in out
    assert "sma_crossover" in out and "abababababab" in out
    assert "cycles:" in out and " 7" in out
    assert "last cycle:" in out and "2024-05-01 22:00:00+09:00" in out
    assert "next cycle:" in out and "2024-05-01 23:00:00+09:00" in out
    assert "crash" not in out


def test_status_shows_the_crash(executor: Executor) -> None:
    try:
        raise ValueError("price feed returned nothing")
    except ValueError as exc:
        executor.runstate.set_fail(exc, now=T0 + timedelta(hours=3))
    result = run_cli("status", executor.url, "--timezone", "UTC")
    assert result.returncode == 0, result.stderr
    assert "error" in result.stdout
    assert "builtins.ValueError: price feed returned nothing" in result.stdout
    assert "2024-05-01 15:00:00+00:00" in result.stdout


def test_status_shows_a_risk_pause_and_its_reason(executor: Executor) -> None:
    reason = "risk limit max_daily_loss hit at 2005-03-01T00:00:00+00:00: 3.10 % (limit 3.00 %)"
    executor.runstate.update(risk_paused=True, risk_pause_reason=reason)
    result = run_cli("status", executor.url, "--timezone", "UTC")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split(":", 1)[1].strip() == "running (risk paused)"
    assert [line.split(":", 1)[1].strip() for line in lines if line.startswith("risk pause:")] == [reason]


def test_status_json_is_the_raw_payload(executor: Executor) -> None:
    result = run_cli("status", executor.url, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["executor_id"] == "exec-cli" and payload["cycles"] == 7


def test_status_accepts_host_port_without_scheme(executor: Executor) -> None:
    result = run_cli("status", f"127.0.0.1:{executor.server.effective_port}")
    assert result.returncode == 0, result.stderr


def test_times_default_to_the_local_zone(executor: Executor) -> None:
    result = run_cli("status", executor.url, env=_clean_env(TZ="Asia/Kolkata"))
    assert result.returncode == 0, result.stderr
    assert "2024-05-01 18:30:00+05:30" in result.stdout


def test_unreachable_url_is_one_line_exit_1() -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for command in ("status", "logs"):
        line = _assert_one_line_error(run_cli(command, f"http://127.0.0.1:{port}"), 1)
        assert "cannot reach" in line


def test_not_a_url_is_an_error() -> None:
    _assert_one_line_error(run_cli("status", "ftp://example.invalid/x"), 2)


def test_unknown_timezone_is_one_line_exit_2(executor: Executor) -> None:
    for command in ("status", "logs"):
        line = _assert_one_line_error(run_cli(command, executor.url, "--timezone", "Mars/Olympus_Mons"), 2)
        assert "Mars/Olympus_Mons" in line


def test_not_a_webhook_is_one_line_exit_1(executor: Executor) -> None:
    line = _assert_one_line_error(run_cli("status", executor.url + "/not-the-webhook"), 1)
    assert "404" in line


# ---------------------------------------------------------------------------------------------
# credentials


def test_credentials_come_from_the_environment(secured: Executor) -> None:
    line = _assert_one_line_error(run_cli("status", secured.url), 1)
    assert "401" in line and "TRADEEXECUTOR_WEBHOOK_USERNAME" in line

    good = _clean_env(TRADEEXECUTOR_WEBHOOK_USERNAME=USER, TRADEEXECUTOR_WEBHOOK_PASSWORD=PASSWORD)
    ok = run_cli("status", secured.url, env=good)
    assert ok.returncode == 0, ok.stderr
    logs = run_cli("logs", secured.url, env=good)
    assert logs.returncode == 0, logs.stderr
    assert PASSWORD not in ok.stdout + ok.stderr + logs.stdout + logs.stderr

    bad = _clean_env(TRADEEXECUTOR_WEBHOOK_USERNAME=USER, TRADEEXECUTOR_WEBHOOK_PASSWORD="nope-" + PASSWORD)
    wrong = run_cli("status", secured.url, env=bad)
    line = _assert_one_line_error(wrong, 1)
    assert "401" in line and "nope-" not in line


def test_credentials_in_the_url_are_used_and_never_printed(secured: Executor) -> None:
    port = secured.server.effective_port
    ok = run_cli("status", f"http://{USER}:{PASSWORD}@127.0.0.1:{port}")
    assert ok.returncode == 0, ok.stderr
    wrong = run_cli("status", f"http://{USER}:wrong-{PASSWORD}@127.0.0.1:{port}")
    line = _assert_one_line_error(wrong, 1)
    assert PASSWORD not in line


def test_password_is_not_shown_in_help() -> None:
    result = run_cli("logs", "--help", env=_clean_env(TRADEEXECUTOR_WEBHOOK_PASSWORD=PASSWORD))
    assert result.returncode == 0
    assert "TRADEEXECUTOR_WEBHOOK_PASSWORD" in result.stdout
    assert PASSWORD not in result.stdout


# ---------------------------------------------------------------------------------------------
# logs


def test_logs_table(executor: Executor) -> None:
    result = run_cli("logs", executor.url, "--timezone", "UTC")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TIME", "LEVEL", "EVENT", "DETAILS"]
    assert len(lines) == 1 + len(JOURNAL)
    assert lines[1].startswith("2024-05-01 12:00:00+00:00 info")
    assert "started" in lines[1] and "mode=replay" in lines[1]
    assert 'reason="below minimum notional"' in lines[4]


@pytest.mark.parametrize("fmt,delimiter", [("csv", ","), ("tsv", "\t")])
def test_logs_delimited(executor: Executor, fmt: str, delimiter: str) -> None:
    result = run_cli("logs", executor.url, "--format", fmt, "--timezone", "Europe/Helsinki")
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout), delimiter=delimiter))
    assert rows[0] == ["time", "level", "event", "details"]
    assert [row[2] for row in rows[1:]] == [e["event"] for e in JOURNAL]
    assert rows[1][0] == "2024-05-01 15:00:00+03:00"


def test_logs_html_is_escaped(executor: Executor) -> None:
    result = run_cli("logs", executor.url, "--format", "html")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("<table>") and out.rstrip().endswith("</table>")
    assert out.count("<tr>") == 1 + len(JOURNAL)
    assert "&lt;b&gt;" in out and "<b>" not in out


def test_logs_markdown_escapes_pipes(executor: Executor) -> None:
    result = run_cli("logs", executor.url, "--format", "markdown")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "| time | level | event | details |"
    assert lines[1].startswith("|---|")
    assert len(lines) == 2 + len(JOURNAL)
    assert "bad \\| pipe" in lines[-1]


def test_logs_filters_are_sent_to_the_server(executor: Executor) -> None:
    warn = run_cli("logs", executor.url, "--level", "warning", "--format", "csv")
    assert [row[2] for row in csv.reader(io.StringIO(warn.stdout))][1:] == ["order_rejected", "crashed"]
    last_two = run_cli("logs", executor.url, "--limit", "2", "--format", "csv")
    assert [row[2] for row in csv.reader(io.StringIO(last_two.stdout))][1:] == ["order_rejected", "crashed"]
    since = run_cli("logs", executor.url, "--since", (T0 + timedelta(minutes=2)).isoformat(), "--format", "csv")
    assert [row[2] for row in csv.reader(io.StringIO(since.stdout))][1:] == ["order_filled", "order_rejected",
                                                                             "crashed"]


def test_logs_bad_since_is_one_line_exit_2(executor: Executor) -> None:
    line = _assert_one_line_error(run_cli("logs", executor.url, "--since", "yesterday-ish"), 2)
    assert "since" in line


def test_logs_without_a_journal_is_an_error(tmp_path: Path) -> None:
    with WebhookServer(create_app(_runstate()), port=0) as server:
        line = _assert_one_line_error(run_cli("logs", server.url), 1)
    assert "404" in line


def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_tail_follows_until_the_run_ends(executor: Executor) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tradeexecutor.cli.main", "logs", executor.url, "--tail", "--interval", "0.1",
         "--format", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env())
    lines: list[str] = []  # what it has printed so far (rows are flushed as each poll prints them)
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        # Each write waits for the rows before it to be printed: the next one then comes in a later poll,
        # however slowly the machine starts the CLI or runs its polls.
        _wait_for(lambda: len(lines) >= 1 + len(JOURNAL), timeout=120)  # the header and the first page
        # two entries stamped with the same time as the last one seen, then later ones
        write_journal(executor.files.journal, [entry(4, "revalued"), entry(4, "trigger_fired")])
        _wait_for(lambda: len(lines) >= 3 + len(JOURNAL), timeout=60)
        write_journal(executor.files.journal, [entry(10, "cycle_completed", duration=0.5)])
        _wait_for(lambda: len(lines) >= 4 + len(JOURNAL), timeout=60)
        write_journal(executor.files.journal, [entry(11, "stopped", reason="complete")])
        executor.runstate.update(status="complete", executor_running=False)
        process.wait(60)
        reader.join(60)
        assert process.stderr is not None
        err = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    events = [row[2] for row in csv.reader(io.StringIO("".join(lines)))]
    assert events[0] == "event"
    assert events[1:] == [e["event"] for e in JOURNAL] + ["revalued", "trigger_fired", "cycle_completed", "stopped"]


def test_tail_stops_quietly_on_ctrl_c(executor: Executor) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tradeexecutor.cli.main", "logs", executor.url, "--tail", "--interval", "0.1",
         "--format", "html"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_clean_env())
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # the output has started: polling is under way
        assert first.strip() == "<table>"
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert out.rstrip().endswith("</table>")


def test_tail_of_a_finished_run_prints_once_and_exits(executor: Executor) -> None:
    executor.runstate.update(status="complete", executor_running=False)
    result = run_cli("logs", executor.url, "--tail", "--interval", "0.1", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1 + len(JOURNAL)

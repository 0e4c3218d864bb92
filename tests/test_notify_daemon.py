"""The executor's notifications end to end: the real daemon (in-process and as a subprocess) to a loopback endpoint.

In-process tests build the daemon with a FakeClock and the in-memory ticker (tests/test_daemon_loop's
``make``), with the notification URL in the environment they hand it; the notifier, its sender
threads, apprise and the HTTP endpoint are all real. The subprocess test starts
``tradeexecutor start`` with ``TRADEEXECUTOR_NOTIFY_WEBHOOK_URL`` set and reads /metrics.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from notify_endpoint import LoopbackEndpoint
from test_daemon_e2e import free_port
from test_daemon_loop import START, STRATEGIES, T0, make, run_ticks
from test_ledger_kill import journal_rows
from tradeexecutor.daemon import FakeClock
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import Ledger
from tradeexecutor.notify import NotifyConfig, parse_event_switches
from tradeexecutor.runstate import CrashFile, HealthLimits, RunStatus
from tradeexecutor.store.journal import Journal

VARIABLE = "TRADEEXECUTOR_NOTIFY_WEBHOOK_URL"


@pytest.fixture
def endpoint() -> Iterator[LoopbackEndpoint]:
    with LoopbackEndpoint(token="daemon-hook-token") as running:
        yield running


def notify(**settings: Any) -> NotifyConfig:
    """Every message counts in these tests: no cool-down unless asked."""
    return NotifyConfig(**{"cooldown_seconds": 0, "public_url": "http://te.example:3456", **settings})


def with_title(posts: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    return [post for post in posts if text in post["title"]]


def test_fills_and_completion_of_a_replay_reach_the_endpoint(tmp_path: Path, endpoint: LoopbackEndpoint) -> None:
    daemon, ticker, _ = make(tmp_path, start="2005-01-01", end="2005-06-30", environ={VARIABLE: endpoint.url},
                             notify=notify())
    try:
        run_ticks(daemon, ticker, 400)
        assert daemon.loop.outcome is not None and daemon.loop.outcome.status is RunStatus.complete
        posts = endpoint.wait_for(lambda posts: bool(with_title(posts, "run completed")), what="run completed")
    finally:
        daemon.close()
    fills = with_title(posts, "GOOG filled")
    state = daemon.engine.state
    trades = [t for p in state.portfolio.closed_positions + state.portfolio.open_positions for t in p.orders]
    assert len(fills) == len(trades) >= 2  # one message per fill, none lost
    first = min(trades, key=lambda t: t.id)
    assert fills[0]["title"] == f"daemon_sma: {first.purpose.value} GOOG filled"
    assert f"order {first.id}: bought {first.signed_filled_quantity:.6g} at {first.average_fill_price:.6g}" in fills[0]["message"]
    sale = min((t for t in trades if t.purpose == "close"), key=lambda t: t.id)
    assert any(f"order {sale.id}: sold {abs(sale.signed_filled_quantity):.6g} at {sale.average_fill_price:.6g}" in post["message"]
               for post in fills)
    (done,) = with_title(posts, "run completed")
    assert "the replay reached the end of the data" in done["message"] and done["type"] == "success"
    assert daemon.runstate.snapshot().extra["notifications"] == [f"{VARIABLE} (JSON)"]
    counts = daemon.notifier.counts() if daemon.notifier else {}
    assert counts[("webhook", "order_filled", "sent")] == len(fills)


def test_a_crash_says_what_where_and_links_to_status(tmp_path: Path, endpoint: LoopbackEndpoint) -> None:
    daemon, ticker, _ = make(tmp_path, "daemon_crash.py", params={"crash_on": "2"}, environ={VARIABLE: endpoint.url},
                             notify=notify())
    try:
        run_ticks(daemon, ticker, 30)
        assert daemon.loop.outcome is not None and daemon.loop.outcome.status is RunStatus.error
        (crash,) = endpoint.wait_for(lambda posts: len(posts) >= 1, what="the crash")
    finally:
        daemon.close()
    assert crash["title"] == "daemon_crash crashed: StrategyBoom"
    body = crash["message"]
    assert "StrategyBoom: cannot price GOOG-price: the lookup table has no entry" in body
    assert re.search(r"where: .*daemon_crash\.py:\d+ in _lookup", body), body
    assert "job: cycle" in body and "status: http://te.example:3456/status" in body
    assert crash["type"] == "failure"
    journal = Journal(RunFiles(tmp_path / "state").journal).read(limit=10)
    assert any(entry.get("event") == "crashed" and "daemon_crash.py" in str(entry["fields"].get("where")) for entry in journal)


def test_safe_mode_is_notified(tmp_path: Path, endpoint: LoopbackEndpoint) -> None:
    crash_file = CrashFile.for_state_dir(tmp_path / "state")
    for minutes in (1, 2, 3):
        crash_file.record(RuntimeError("boom"), T0 - timedelta(minutes=minutes))
    daemon, ticker, _ = make(tmp_path, environ={VARIABLE: endpoint.url}, crash_loop_count=3, notify=notify())
    try:
        run_ticks(daemon, ticker, 3)
        (post,) = endpoint.wait_for(lambda posts: len(posts) >= 1, what="safe mode")
    finally:
        daemon.close()
    assert post["title"] == "daemon_sma entered safe mode"
    assert "3 crashes within 10 minutes" in post["message"] and post["type"] == "warning"


def test_a_fired_trigger_is_notified(tmp_path: Path, endpoint: LoopbackEndpoint) -> None:
    daemon, ticker, _ = make(tmp_path, "daemon_stop.py", environ={VARIABLE: endpoint.url},
                             notify=notify(events=parse_event_switches("trigger_fired")))
    try:
        run_ticks(daemon, ticker, 40)
        endpoint.wait_for(lambda posts: len(posts) >= 1, what="a trigger")
        assert daemon.notifier is not None and daemon.notifier.wait_idle(30)
        posts = endpoint.received()  # all of them: the sender may still have been busy when the first arrived
    finally:
        daemon.close()
    assert all(post["title"] == "daemon_stop: trailing_stop fired on GOOG" for post in posts)
    exits = [t for p in daemon.engine.state.portfolio.closed_positions for t in p.orders if t.trigger]
    assert len(posts) == len(exits) >= 1
    assert f"sold {abs(exits[0].signed_filled_quantity):.6g} at {exits[0].average_fill_price:.6g}" in posts[0]["message"]


def test_two_hundred_health_flaps_send_one_message_and_one_digest(tmp_path: Path, endpoint: LoopbackEndpoint) -> None:
    """A flapping fault (the next cycle alternately overdue and on time) against the real health watch."""
    clock = FakeClock(T0)
    daemon, ticker, _ = make(tmp_path, clock=clock, environ={VARIABLE: endpoint.url},
                             notify=notify(cooldown_seconds=120), health=HealthLimits(grace_seconds=60))
    watch, notifier = daemon.health_watch, daemon.notifier
    assert watch is not None and notifier is not None
    try:
        run_ticks(daemon, ticker, 2)
        for flap in range(200):  # 200 changes in 4 seconds
            overdue = flap % 2 == 0
            daemon.runstate.update(next_cycle_at=clock.now() - timedelta(seconds=90 if overdue else -30))
            watch.check()
            clock.advance(0.02)
        assert notifier.wait_idle(30)
        assert endpoint.titles() == ["daemon_sma health degraded"]
        clock.advance(120)
        notifier.tick()
        posts = endpoint.wait_for(lambda posts: len(posts) >= 2, what="the digest")
        assert notifier.wait_idle(30)
    finally:
        daemon.close()
    assert len(endpoint.received()) == 2
    assert "next cycle is 90 s overdue (grace 60 s)" in posts[0]["message"]
    assert posts[1]["title"] == "daemon_sma health recovered (and 199 more similar)"
    assert "199 more similar events suppressed in the last 120 s" in posts[1]["message"]
    assert notifier.counts()[("", "health", "suppressed")] == 199


def test_safe_mode_and_a_risk_pause_are_not_also_sent_as_degraded_health(tmp_path: Path,
                                                                         endpoint: LoopbackEndpoint) -> None:
    """Each has its own message; the health watch adds one only when something else degrades health too."""
    clock = FakeClock(T0)
    daemon, ticker, _ = make(tmp_path, clock=clock, environ={VARIABLE: endpoint.url}, notify=notify(),
                             health=HealthLimits(grace_seconds=60))
    watch, notifier = daemon.health_watch, daemon.notifier
    assert watch is not None and notifier is not None
    try:
        run_ticks(daemon, ticker, 2)
        daemon.runstate.update(risk_paused=True, risk_pause_reason="max_drawdown 21.00 % over its limit 20.00 %")
        watch.check()
        daemon.runstate.update(safe_mode=True, safe_mode_reason="3 crashes within 10 minutes")
        watch.check()
        assert notifier.wait_idle(30)
        assert endpoint.titles() == [] and watch.healthy
        daemon.runstate.update(next_cycle_at=clock.now() - timedelta(seconds=90))
        watch.check()
        (post,) = endpoint.wait_for(lambda posts: len(posts) >= 1, what="health degraded")
        daemon.runstate.update(next_cycle_at=clock.now() + timedelta(seconds=30))
        watch.check()
        endpoint.wait_for(lambda posts: len(posts) >= 2, what="health recovered")
        assert notifier.wait_idle(30)
    finally:
        daemon.close()
    assert endpoint.titles() == ["daemon_sma health degraded", "daemon_sma health recovered"]
    for reason in ("next cycle is 90 s overdue (grace 60 s)", "max_drawdown 21.00 % over its limit 20.00 %",
                   "safe mode: 3 crashes within 10 minutes"):
        assert reason in post["message"]


def test_the_daily_summary_goes_out_once_after_its_utc_time(tmp_path: Path, endpoint: LoopbackEndpoint) -> None:
    clock = FakeClock(datetime(2024, 1, 1, 23, 58, tzinfo=UTC))
    daemon, ticker, _ = make(tmp_path, clock=clock, environ={VARIABLE: endpoint.url},
                             notify=notify(events=parse_event_switches("daily_summary")))
    try:
        run_ticks(daemon, ticker, 300)  # across midnight, one cycle a second
        posts = endpoint.wait_for(lambda posts: len(posts) >= 1, what="the daily summary")
        assert daemon.notifier is not None and daemon.notifier.wait_idle(30)
        figures = daemon.runstate.snapshot().portfolio
    finally:
        daemon.close()
    (summary,) = posts
    assert summary["title"] == "daemon_sma: daily summary 2024-01-02"
    body = summary["message"]
    for line in ("equity: ", "change: ", "since 2024-01-01T23:58", "trades: ", "open positions: "):
        assert line in body, body
    equity = float(re.search(r"equity: ([\d,.]+)", body).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 5_000 < equity < 20_000 and figures.portfolio_value > 0
    journal = Journal(RunFiles(tmp_path / "state").journal).read(limit=1000)
    assert [e["event"] for e in journal].count("daily_summary") == 1


def test_a_slow_channel_never_holds_up_the_loop(tmp_path: Path) -> None:
    """The endpoint does not answer at all while the loop runs: every job still completes, the messages wait."""
    with LoopbackEndpoint() as slow:
        slow.hold()
        daemon, ticker, _ = make(tmp_path, environ={VARIABLE: slow.url}, notify=notify(flush_seconds=0))
        notifier = daemon.notifier
        assert notifier is not None
        try:
            run_ticks(daemon, ticker, 150)
            cycles = daemon.runstate.snapshot().cycles
            waiting = sum(sender.pending() for sender in notifier.senders)
            answered = len(slow.received())
            fills = sum(1 for e in Journal(RunFiles(tmp_path / "state").journal).read(limit=1000)
                        if e.get("event") == "order_filled")
        finally:
            slow.release()
            daemon.close()
    assert cycles == 150  # every job ran ...
    assert answered == 0  # ... while the channel had not answered a single message ...
    assert fills >= 3 and waiting >= 2  # ... and the messages of its fills waited in the queue
    sent_or_not = sum(n for (_, kind, _), n in notifier.counts().items() if kind == "order_filled")
    assert sent_or_not == fills  # each one accounted for: sent, failed (timed out) or dropped at shutdown


# -- the real process ----------------------------------------------------------------------------


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


@pytest.mark.slow
def test_a_started_executor_notifies_its_trades_and_completion(tmp_path: Path, endpoint: LoopbackEndpoint) -> None:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    environment.update({"PYTHONUNBUFFERED": "1", VARIABLE: endpoint.url, "TRADEEXECUTOR_NOTIFY_COOLDOWN_SECONDS": "0"})
    log = tmp_path / "executor.log"
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGIES / "daemon_sma.py"),
               "--state-dir", str(tmp_path / "state"), "--port", str(port), "--start", START, "--end", "2005-04-30",
               "--replay-start", "first", "--replay-seconds", "0.05", "--chart-seconds", "0",
               "--complete-serve-seconds", "60", "--notify-events", "all,-daily_summary"]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
    try:
        posts = endpoint.wait_for(lambda posts: bool(with_title(posts, "run completed")), timeout=120,
                                  what="run completed")
        fills = with_title(posts, "GOOG filled")
        assert fills and all(post["title"].startswith("daemon_sma: ") for post in posts)
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = _metrics(port)
            if 'event="run_completed",outcome="sent"} 1.0' in text:
                break
            time.sleep(0.2)
        assert f'tradeexecutor_notifications_total{{channel="webhook",event="order_filled",outcome="sent"}} ' \
               f'{float(len(fills))}' in text
        assert 'tradeexecutor_notifications_total{channel="webhook",event="run_completed",outcome="sent"} 1.0' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
            status = json.loads(response.read())
        assert status["extra"]["notifications"] == [f"{VARIABLE} (JSON)"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    output = log.read_text(errors="replace")
    assert f"notifications to {VARIABLE} (JSON)" in output
    assert "daemon-hook-token" not in output
    journal = Journal(RunFiles(tmp_path / "state").journal).read(limit=10_000)
    assert len(fills) == sum(1 for entry in journal if entry.get("event") == "order_filled")


@pytest.mark.slow
def test_a_bad_notification_url_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    environment["TRADEEXECUTOR_NOTIFY_DISCORD_URL"] = "discrd://s3cret-webhook-token"
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "start",
                             str(STRATEGIES / "daemon_sma.py"), "--state-dir", str(tmp_path / "state"),
                             "--port", str(free_port())], capture_output=True, text=True, env=environment,
                            timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: TRADEEXECUTOR_NOTIFY_DISCORD_URL is not a Discord URL apprise understands; expected the "
                     "form discord://WEBHOOK_ID/WEBHOOK_TOKEN (the value is not shown: it holds a token)"], lines
    assert "s3cret-webhook-token" not in result.stdout + result.stderr
    assert not (tmp_path / "state").exists()  # nothing written


@pytest.mark.slow
def test_a_hung_job_is_journaled_in_the_ledger_and_notified_before_the_process_exits(
        tmp_path: Path, endpoint: LoopbackEndpoint) -> None:
    """The watchdog's crash line is committed on its own (the hung job never commits), so the journal says why
    the executor exited and the notifier hears it; the process then exits non-zero as before."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    environment.update({"PYTHONUNBUFFERED": "1", VARIABLE: endpoint.url, "TRADEEXECUTOR_NOTIFY_COOLDOWN_SECONDS": "0"})
    state_dir = tmp_path / "state"
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGIES / "daemon_hang.py"),
               "--state-dir", str(state_dir), "--port", str(free_port()), "--start", START, "--end", "2005-04-30",
               "--watchdog-seconds", "0.5", "-p", "hang_seconds=60", "--trade-immediately", "--chart-seconds", "0"]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300, check=False)
    assert result.returncode == 1, result.stderr[-3000:]
    assert Ledger(RunFiles(state_dir).ledger).load() is not None  # opens, integrity-checked
    committed = [json.loads(line) for _, line in journal_rows(RunFiles(state_dir).ledger)]
    (crash,) = [entry for entry in committed if entry["event"] == "crashed"]
    assert crash["fields"]["exception"].endswith("JobHangError") and "watchdog" in crash["fields"]["message"]
    mirrored = Journal(RunFiles(state_dir).journal).read(limit=10_000)
    assert [entry["event"] for entry in mirrored] == [entry["event"] for entry in committed]
    (post,) = endpoint.wait_for(lambda posts: bool(with_title(posts, "crashed")), timeout=60, what="the hang")
    assert "JobHangError" in post["title"]

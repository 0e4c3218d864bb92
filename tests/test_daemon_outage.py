"""Failure is not a crash: a real executor process whose feed (playing an exchange) goes down for a while.

The executor runs as a subprocess (tests/outage_launcher.py: the real CLI, with the feed raising
TemporaryError while a marker file exists) and is watched over real HTTP. While the exchange is
down the cycle job is retried with a capped backoff, the boundaries that pass are journaled as
missed, /status and /metrics show the outage (since when, retries, the last error's class and its
scrubbed message), /healthz turns 503 with the reason once the grace period has passed, and the
notifier reports health degraded; when it comes back the outage is journaled as over, health
recovers (notified) and the replay goes on. Nothing of it is a crash: no crash record, no crash
count, no safe mode.
"""

from __future__ import annotations

import itertools
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from executor_process import Executor
from notify_endpoint import LoopbackEndpoint
from tradeexecutor.runstate import RunStatus

LAUNCHER = Path(__file__).parent / "outage_launcher.py"


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def _journal(state_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state_dir / "journal.jsonl").read_text().splitlines() if line.strip()]


@pytest.mark.timeout(280)
def test_an_exchange_outage_is_retried_shown_and_recovered_never_a_crash(tmp_path: Path) -> None:
    marker = tmp_path / "exchange-down"
    with LoopbackEndpoint() as endpoint:
        executor = Executor(tmp_path, "--replay-seconds", "0.5", "--outage-grace-seconds", "2",
                            "--retry-max-seconds", "2", "--health-grace-seconds", "600", "--notify-cooldown-seconds", "0",
                            launcher=LAUNCHER,
                            env={"TE_TEST_OUTAGE_FILE": str(marker),
                                 "TRADEEXECUTOR_NOTIFY_WEBHOOK_URL": endpoint.url})
        try:
            executor.wait_status(lambda s: s["cycles"] >= 2)
            marker.touch()  # the exchange goes down
            down = executor.wait_status(lambda s: (s.get("outage") or {}).get("retries", 0) >= 2)
            outage = down["outage"]
            assert outage["job"] == "cycle" and outage["error_class"] == "TemporaryError"
            assert "503 Service Unavailable" in outage["error"] and "0badc0ffee" not in outage["error"]
            assert down["status"] == "running" and down["executor_running"] and not down["safe_mode"]

            def unhealthy() -> dict[str, Any] | None:
                status, body = _get(executor.port, "/healthz")
                return json.loads(body) if status == 503 else None

            answer = executor.wait_status(lambda _: unhealthy() is not None) and unhealthy()
            assert answer is not None
            assert any("temporary failure" in reason and "cycle job retried" in reason for reason in answer["reasons"])
            _, metrics = _get(executor.port, "/metrics")
            assert _metric(metrics, "tradeexecutor_outage") == 1
            assert _metric(metrics, "tradeexecutor_outage_seconds") > 0
            assert _metric(metrics, "tradeexecutor_outage_retries") >= 2
            assert _metric(metrics, "tradeexecutor_temporary_failures_total") >= 3
            assert _metric(metrics, "tradeexecutor_crashes_total") == 0
            assert "0badc0ffee" not in metrics
            endpoint.wait_for(lambda posts: any("health degraded" in p["title"] for p in posts), timeout=60,
                              what="health degraded")
            cycles_when_down = executor.status()["cycles"]  # type: ignore[index]

            marker.unlink()  # the exchange is back
            up = executor.wait_status(lambda s: s.get("outage") is None and s["cycles"] > cycles_when_down + 2)
            assert up["crash_count"] == 0 and up["exception"] is None and not up["safe_mode"]
            assert _get(executor.port, "/healthz")[0] == 200
            _, metrics = _get(executor.port, "/metrics")
            assert _metric(metrics, "tradeexecutor_outage") == 0
            endpoint.wait_for(lambda posts: any("health recovered" in p["title"] for p in posts), timeout=60,
                              what="health recovered")
            executor.process.send_signal(signal.SIGTERM)
            assert executor.wait() == 0
        finally:
            executor.kill()

    events = _journal(executor.state_dir)
    names = [e["event"] for e in events]
    assert "crashed" not in names and not (executor.state_dir / "crash.json").exists()
    started = [e for e in events if e["event"] == "outage_started"]
    ended = [e for e in events if e["event"] == "outage_ended"]
    assert len(started) == 1 and len(ended) == 1
    assert started[0]["level"] == "warning" and started[0]["fields"]["job"] == "cycle"
    assert "0badc0ffee" not in json.dumps(events)
    assert ended[0]["fields"]["retries"] >= 2 and ended[0]["fields"]["seconds"] > 2
    missed = [e for e in events if e["event"] == "cycle_missed"]
    assert missed, "a boundary passed during the outage and was not journaled as missed"
    first, last = names.index("outage_started"), names.index("outage_ended")
    missed_at = [i for i, name in enumerate(names) if name == "cycle_missed"]
    assert all(first < i < last for i in missed_at)
    # No cycle completed while the exchange was down (the job that recovered journals its cycle, then the end).
    assert "cycle_completed" not in names[first:max(missed_at)]


# -- the loop in-process: fake clock, the in-memory scheduler twin --------------------------------------------


class _Down:
    """A feed's ``advance`` that raises ``error`` while ``down`` is set, else delivers the next bar."""

    def __init__(self, advance: Any, error: Exception) -> None:
        self.advance, self.error, self.down, self.calls = advance, error, True, 0

    def __call__(self) -> int | None:
        self.calls += 1
        if self.down:
            raise self.error
        return self.advance()  # type: ignore[no-any-return]


def test_the_backoff_doubles_up_to_its_cap_and_a_retry_storm_never_makes_a_crash_loop(tmp_path: Path) -> None:
    from test_daemon_loop import make
    from tradeexecutor.errors import TemporaryError

    daemon, ticker, clock = make(tmp_path, retry_max_seconds=5.0, crash_loop_count=1)
    try:
        ticker.advance(1)
        daemon.loop.run_pending()
        assert daemon.runstate.cycles >= 0 and daemon.loop.outage.current is None
        down = _Down(daemon.feed.advance, TemporaryError("exchange: OnMaintenance: system maintenance"))
        daemon.feed.advance = down  # type: ignore[method-assign]
        waits: list[float] = []
        for _ in range(6):
            ticker.advance(1)  # a scheduled tick: the first fails, the next ones wait for the retry
            daemon.loop.run_pending()
            current = daemon.loop.outage.current
            assert current is not None
            waits.append((current.next_retry_at - clock.now()).total_seconds())
            clock.advance(max(0.0, (current.next_retry_at - clock.now()).total_seconds()))
            daemon.loop.run_pending()  # the retry is due: the loop tries on its own
        current = daemon.loop.outage.current
        assert current is not None and current.retries >= 5
        assert max(waits) <= 5.0 and waits[0] == 1.0
        snapshot = daemon.runstate.snapshot()
        assert snapshot.crash_count == 0 and not snapshot.safe_mode and snapshot.exception is None
        assert snapshot.status is RunStatus.running and daemon.loop.outcome is None
        assert snapshot.outage is not None and snapshot.outage["error_class"] == "TemporaryError"
        down.down = False
        clock.advance(6)
        daemon.loop.run_pending()
        assert daemon.loop.outage.current is None and daemon.runstate.snapshot().outage is None
        assert daemon.runstate.snapshot().temporary_failures == down.calls - 1
    finally:
        daemon.close()


def test_paper_and_live_journal_each_cycle_boundary_missed_once_not_each_wake(tmp_path: Path) -> None:
    """Paper and live wake the cycle job every quarter candle, at least every 15 s (``poll_period``): while the exchange is down only the
    cycle boundaries that pass are missed cycles, each journaled once at its own time (a 1 s cycle down for ~10 s
    misses about 10, not the 40 wakes) — from the cycle being retried when the outage began, each once a newer
    boundary has passed: the newest stays open (decided if the outage ends before the next). The replay's deferred
    ticks are bars not replayed, one missed cycle each."""
    from datetime import datetime, timedelta

    from test_daemon_loop import make
    from tradeexecutor.errors import TemporaryError

    daemon, ticker, clock = make(tmp_path, replay_seconds=0.25, retry_max_seconds=4.0)
    try:
        daemon.loop.wall_cycle = (timedelta(seconds=1), timedelta(0))  # what build_daemon gives paper and live
        ticker.advance(1)
        daemon.loop.run_pending()
        daemon.feed.advance = _Down(daemon.feed.advance,  # type: ignore[method-assign]
                                    TemporaryError("binance: OnMaintenance: binance System is under maintenance."))
        for _ in range(40):  # ten seconds of wakes, a quarter second apart
            ticker.advance(0.25)
            daemon.loop.run_pending()
        current = daemon.loop.outage.current
        assert current is not None
        since, last_wake = current.since, clock.now()
    finally:
        daemon.close()
    events = _journal(tmp_path / "state")
    missed = [datetime.fromisoformat(e["fields"]["boundary"]) for e in events if e["event"] == "cycle_missed"]
    expected = [since.replace(microsecond=0) + timedelta(seconds=n) for n in range(12)]
    newest = last_wake.replace(microsecond=0)  # the newest boundary passed: open, not journaled
    assert missed == [boundary for boundary in expected if boundary < newest], (since, last_wake, missed)
    assert 8 <= len(missed) <= 10


def test_a_bug_in_a_job_is_still_a_crash(tmp_path: Path) -> None:
    from test_daemon_loop import make

    daemon, ticker, _ = make(tmp_path)
    try:
        daemon.feed.advance = _Down(daemon.feed.advance, KeyError("a bug"))  # type: ignore[method-assign]
        ticker.advance(1)
        outcome = daemon.loop.run_pending()
        assert outcome is not None and outcome.status is RunStatus.error
        assert daemon.runstate.snapshot().crash_count == 1 and daemon.loop.outage.current is None
    finally:
        daemon.close()


def test_an_operator_job_that_fails_temporarily_is_answered_as_failed_and_is_no_crash(tmp_path: Path) -> None:
    from test_daemon_loop import make
    from tradeexecutor.control import ActionRequest, Outcome
    from tradeexecutor.errors import TemporaryError

    daemon, ticker, _ = make(tmp_path)
    try:
        ticker.advance(1)
        daemon.loop.run_pending()

        def exchange_down(request: ActionRequest) -> None:
            raise TemporaryError("binance: RequestTimeout: GET https://api.binance.com/api/v3/order?signature=f00d")

        daemon.loop._close = exchange_down  # type: ignore[assignment,method-assign]
        reply = daemon.commands.ask(ActionRequest(command="close_all", by="operator"))
        daemon.loop.run_pending()
        result = reply.wait(5)
        assert result is not None and result.outcome is Outcome.failed
        assert "failed temporarily" in result.message and "f00d" not in result.message
        assert daemon.loop.outcome is None and daemon.runstate.snapshot().crash_count == 0
        assert daemon.loop.outage.current is None  # nothing is retried on an operator's behalf
    finally:
        daemon.close()
    events = [json.loads(line) for line in (tmp_path / "state" / "journal.jsonl").read_text().splitlines()]
    (line,) = [e for e in events if e["event"] == "temporary_failure"]
    assert line["fields"]["job"] == "close_all" and "f00d" not in json.dumps(line)


def test_the_outage_books_backoff_retry_after_and_other_jobs_failing_meanwhile() -> None:
    from datetime import UTC, datetime

    from tradeexecutor.daemon.outage import Outage
    from tradeexecutor.errors import TemporaryError
    from tradeexecutor.runstate import RunState
    from tradeexecutor.venue.ccxt_errors import RateLimitedError

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    runstate = RunState.create("x", now=now[0], version={})
    outage = Outage(runstate, lambda: now[0], cap_seconds=8.0)
    delays = []
    for _ in range(6):
        record, _ = outage.failed("cycle", TemporaryError("503"))
        delays.append((record.next_retry_at - now[0]).total_seconds())
        now[0] = record.next_retry_at
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped
    record, began = outage.failed("cycle", RateLimitedError("418 banned", retry_after=120.0))
    assert not began and (record.next_retry_at - now[0]).total_seconds() == 120.0  # the ban is honoured
    due = record.next_retry_at
    record, _ = outage.failed("revaluation", TemporaryError("timed out"))
    assert record.job == "cycle" and record.next_retry_at == due and record.error == "timed out"
    assert outage.holds("cycle") and not outage.holds("revaluation") and outage.due() is None
    now[0] = due
    assert outage.due() == "cycle" and not outage.holds("cycle")
    assert outage.succeeded("revaluation") is None and outage.current is not None
    ended = outage.succeeded("cycle")
    assert ended is not None and ended.retries == 6
    snapshot = runstate.snapshot()
    assert snapshot.outage is None and snapshot.temporary_failures == 8


def test_a_cycle_job_failing_temporarily_after_its_bar_was_delivered_manages_that_bar_on_the_retry(
        tmp_path: Path) -> None:
    """The feed had delivered the bar when the job failed (live: an entry's cancel the exchange has not confirmed,
    before the bar's stop-loss may be sent). The retried job takes that bar again — its fills and triggers are
    not lost because the feed moved past it — and every bar is managed once, in order."""
    from test_daemon_loop import make
    from tradeexecutor.errors import TemporaryError

    daemon, ticker, clock = make(tmp_path)
    try:
        ticker.advance(1)
        daemon.loop.run_pending()
        engine = daemon.loop.engine
        real = engine.manage
        failures = [TemporaryError("the exchange has not confirmed the cancel of X")]
        managed: list[tuple[str, int]] = []

        def manage(step: int) -> None:
            if failures:
                managed.append(("failed", step))
                raise failures.pop()
            managed.append(("managed", step))
            real(step)

        engine.manage = manage  # type: ignore[method-assign]
        first = daemon.feed.cursor + 1
        ticker.advance(1)
        daemon.loop.run_pending()  # delivers bar ``first``, fails managing it
        current = daemon.loop.outage.current
        assert current is not None and daemon.loop.state.replay_cursor == first - 1
        clock.advance((current.next_retry_at - clock.now()).total_seconds())
        daemon.loop.run_pending()  # the retry
        for _ in range(3):
            ticker.advance(1)
            daemon.loop.run_pending()
        assert daemon.loop.outage.current is None
        assert managed == [("failed", first)] + [("managed", step) for step in range(first, first + len(managed) - 1)]
        assert len(managed) >= 4 and daemon.loop.state.replay_cursor == daemon.feed.cursor == managed[-1][1]
    finally:
        daemon.close()


def test_a_cycle_with_an_offset_misses_its_boundaries_at_the_offset(tmp_path: Path) -> None:
    """A paper or live cycle with an offset (``cycle_offset``) is due at the offset past each period: the boundaries an
    outage spans are journaled there, each once, not at whole periods nor at the wakes."""
    from datetime import datetime, timedelta

    from test_daemon_loop import make
    from tradeexecutor.errors import TemporaryError

    daemon, ticker, _ = make(tmp_path, replay_seconds=0.25, retry_max_seconds=4.0)
    try:
        assert daemon.loop.wall_cycle is None  # a replay: its deferred ticks are bars, not wakes
        daemon.loop.wall_cycle = (timedelta(seconds=1), timedelta(seconds=0.5))
        ticker.advance(1)
        daemon.loop.run_pending()
        daemon.feed.advance = _Down(daemon.feed.advance,  # type: ignore[method-assign]
                                    TemporaryError("binance: OnMaintenance: binance System is under maintenance."))
        for _ in range(40):
            ticker.advance(0.25)
            daemon.loop.run_pending()
    finally:
        daemon.close()
    missed = [datetime.fromisoformat(e["fields"]["boundary"]) for e in _journal(tmp_path / "state")
              if e["event"] == "cycle_missed"]
    assert 8 <= len(missed) <= 10
    assert all(boundary.microsecond == 500_000 for boundary in missed), missed
    assert all(later - earlier == timedelta(seconds=1) for earlier, later in itertools.pairwise(missed))



def test_a_restart_never_decides_a_cycle_an_outage_journaled_missed(tmp_path: Path) -> None:
    """The ``cycle_missed`` lines an earlier process journaled for an ordinary outage (``OUTAGE_MISSED``) are read
    back at start-up like the lag's (``ExecutorLoop.missed_before``; the runner does it in paper and live): that
    cycle is not decided when its bar comes after the restart, the later ones are. A line without a reason (the
    replay's ticks, older journals) is not read back. Fails before: only the lag's reason was read back."""
    from datetime import datetime

    from test_daemon_loop import make
    from tradeexecutor.daemon.loop import OUTAGE_MISSED

    def completed(state_dir: Path) -> list[datetime]:
        return [datetime.fromisoformat(e["fields"]["cycle_time"]) for e in _journal(state_dir)
                if e["event"] == "cycle_completed"]

    def ticks(count: int, directory: Path, missed: list[dict[str, Any]] | None = None) -> None:
        daemon, ticker, _ = make(directory)
        try:
            if missed is not None:
                daemon.loop.missed_before(missed)
            for _ in range(count):
                ticker.advance(1)
                daemon.loop.run_pending()
        finally:
            daemon.close()

    ticks(6, tmp_path / "scout")  # the replay's cycle times, on a state of its own
    times = completed(tmp_path / "scout" / "state")
    ticks(2, tmp_path)
    before = completed(tmp_path / "state")
    assert before and before == times[:len(before)], (before, times)
    skipped, unread = times[len(before)], times[len(before) + 1]
    ticks(3, tmp_path, [{"boundary": skipped.isoformat(), "reason": OUTAGE_MISSED},
                        {"boundary": unread.isoformat()}])
    after = completed(tmp_path / "state")[len(before):]
    assert skipped not in after and unread in after, (skipped, unread, after)

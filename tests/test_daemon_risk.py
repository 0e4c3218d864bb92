"""Risk limits in the executor loop, in-process: the real daemon on a fake clock, its ledger and journal on disk.

``risk_stop.py`` is always long when flat, with an 8 % stop-loss, on GOOG's 2005 bars: a 5 %
drawdown limit is hit while the first position is still open, and its stop-loss fires later.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from executor_process import Executor
from notify_endpoint import LoopbackEndpoint
from test_daemon_loop import make, run_ticks
from tradeexecutor.config import HealthLimits, RiskConfig
from tradeexecutor.daemon import Command, CommandKind, JobKind
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import load_state
from tradeexecutor.runstate import assess_health
from tradeexecutor.state import OrderSide, OrderStatus, State, TriggerKind
from tradeexecutor.store.journal import Journal

DRAWDOWN = RiskConfig(max_drawdown=0.05)


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    return Journal(RunFiles(tmp_path / "state").journal).read(limit=10_000)


def events(tmp_path: Path, *names: str) -> list[tuple[str, dict[str, Any]]]:
    return [(entry["event"], entry["fields"]) for entry in journal(tmp_path) if entry["event"] in names]


def opened_at(state: State) -> list[str]:
    positions = state.portfolio.closed_positions + state.portfolio.open_positions
    return sorted(str(p.opened_at) for p in positions)


def test_a_drawdown_hit_pauses_entries_while_the_stop_loss_still_fires_and_a_restart_keeps_it(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, "risk_stop.py", risk=DRAWDOWN)
    try:
        run_ticks(daemon, ticker, 60)
        state, snapshot = daemon.engine.state, daemon.runstate.snapshot()
        assert state.risk.limit == "max_drawdown" and state.risk.value is not None and state.risk.value >= 0.05
        assert snapshot.risk_paused and snapshot.risk_pause_reason == state.risk.reason
        assert snapshot.risk["drawdown"] > 0 and snapshot.executor_running and not snapshot.paused
        verdict = assess_health(snapshot, HealthLimits(grace_seconds=1e9))
        assert not verdict.healthy and not verdict.crashed and verdict.reasons == [state.risk.reason]
    finally:
        daemon.close()
    lines = events(tmp_path, "risk_limit_hit", "trigger_fired", "order_filled", "intent_ignored")
    names = [name for name, _ in lines]
    hit = names.index("risk_limit_hit")
    assert names[:hit] == ["order_filled"]  # one entry, then the limit, while it is still open
    fields = lines[hit][1]
    assert fields["limit"] == "max_drawdown" and fields["threshold"] == 0.05 and fields["value"] >= 0.05
    assert fields["action"] == "entries paused" and fields["bar_time"] == state.risk.hit_at
    after = lines[hit + 1:]
    assert after[0][0] == "trigger_fired" and after[0][1]["trigger"] == "stop_loss"  # still managed
    ignored = [f for name, f in after if name == "intent_ignored"]
    assert ignored and all(f["reason"] == "paused: no new positions" for f in ignored)
    assert "order_filled" not in [name for name, _ in after]  # no entry after the hit
    saved = load_state(tmp_path / "state")
    assert saved is not None and saved.risk == state.risk  # committed with the job

    daemon, ticker, _ = make(tmp_path, "risk_stop.py", risk=DRAWDOWN)  # a restart
    try:
        daemon.loop.run_pending()
        assert daemon.engine.paused and daemon.runstate.snapshot().risk_paused
        run_ticks(daemon, ticker, 10)
        assert not daemon.engine.state.portfolio.open_positions
        daemon.commands.put(Command(CommandKind.resume, reason="operator"))
        daemon.loop.run_pending()
        lifted = daemon.engine.state
        assert not lifted.risk.paused and not daemon.runstate.snapshot().risk_paused and not daemon.engine.paused
        assert lifted.risk.peak_equity == lifted.risk.day_start_equity == lifted.valuations.equity[-1]
        assert load_state(tmp_path / "state").risk == lifted.risk  # type: ignore[union-attr]
        run_ticks(daemon, ticker, 5)
        assert daemon.engine.state.portfolio.open_positions  # entries again
    finally:
        daemon.close()
    tail = [name for name, _ in events(tmp_path, "resumed", "risk_pause_lifted", "order_filled")]
    assert tail[-3:] == ["resumed", "risk_pause_lifted", "order_filled"]
    (_, lift), = events(tmp_path, "risk_pause_lifted")
    assert lift["limit"] == "max_drawdown" and lift["by"] == "operator"


def test_closing_everything_on_a_hit_goes_through_the_trigger_exit(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, "risk_stop.py", risk=RiskConfig(max_drawdown=0.05, risk_close_positions=True))
    try:
        run_ticks(daemon, ticker, 30)
        state = daemon.engine.state
        assert state.risk.paused and not state.portfolio.open_positions
    finally:
        daemon.close()
    names = [(name, f.get("trigger")) for name, f in events(tmp_path, "risk_limit_hit", "trigger_fired", "order_filled")]
    # the hit is journaled once its exits exist (a pause recorded before them could leave them never made)
    assert names == [("order_filled", None), ("trigger_fired", "risk_limit"), ("risk_limit_hit", None)]
    (position,) = state.portfolio.closed_positions
    exit_order = position.orders[-1]
    assert exit_order.trigger == TriggerKind.risk_limit and exit_order.status == OrderStatus.filled
    assert exit_order.side == OrderSide.sell and exit_order.filled_quantity == position.orders[0].filled_quantity
    assert state.valuations.exposure[-1] == 0.0  # the valuation after the sale


def test_a_losing_streak_pauses_entries(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, "risk_stop.py", params={"stop": "0.01"}, risk=RiskConfig(max_losing_streak=2))
    try:
        run_ticks(daemon, ticker, 120)
        state = daemon.engine.state
    finally:
        daemon.close()
    closed = state.portfolio.closed_positions
    assert state.risk.limit == "max_losing_streak" and state.risk.value == 2 and state.risk.losing_streak >= 2
    losses = [position.realised_pnl < 0 for position in closed]
    second = next(i for i in range(1, len(losses)) if losses[i - 1] and losses[i])
    assert second == len(closed) - 1 and not state.portfolio.open_positions  # nothing opened after the 2nd loss


def test_an_entry_worth_more_than_the_position_limit_is_refused_with_the_reason(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, "risk_stop.py", risk=RiskConfig(max_position_value=5_000))
    try:
        run_ticks(daemon, ticker, 10)
        state = daemon.engine.state
    finally:
        daemon.close()
    assert state.portfolio.next_position_id == 1  # 95 % of 10,000 is refused, not capped
    ignored = [f for _, f in events(tmp_path, "intent_ignored")]
    assert ignored and all(f["reason"] == "max_position_value: the position would be worth 9,500.00, above the "
                                          "limit of 5,000.00" for f in ignored)


def test_an_increase_is_refused_once_the_position_would_pass_the_limit(tmp_path: Path) -> None:
    strategy = tmp_path / "grower.py"
    strategy.write_text(
        '"""Buys 2,000 of GOOG every cycle."""\n'
        "from tradeexecutor.strategy.api import Symbol, increase, open_long\n"
        "name = 'Grower'\ncycle_duration = '1d'\n"
        "parameters = {'symbol': Symbol('GOOG', asset_type='equity', help='Stock')}\n"
        "def decide(ctx):\n"
        "    return [increase(value=2_000)] if ctx.has_position() else [open_long(value=2_000)]\n")
    daemon, ticker, _ = make(tmp_path, strategy_file=strategy, risk=RiskConfig(max_position_value=7_000))
    try:
        run_ticks(daemon, ticker, 12)
        state = daemon.engine.state
    finally:
        daemon.close()
    (position,) = state.portfolio.open_positions
    buys = [order for order in position.orders if order.status == OrderStatus.filled]
    assert len(buys) == 3  # 2,000 three times fits under 7,000; a fourth would not
    refusals = [f["reason"] for _, f in events(tmp_path, "intent_ignored")]
    assert refusals and all(r.startswith("max_position_value: the position would be worth ") for r in refusals)
    worth = [float(re.search(r"worth ([\d,.]+),", r).group(1).replace(",", "")) for r in refusals]  # type: ignore[union-attr]
    assert all(value > 7_000 for value in worth)


# -- the real process ----------------------------------------------------------------------------

USER, PASSWORD = "ops", "risk-control-pw"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
VARIABLE = "TRADEEXECUTOR_NOTIFY_WEBHOOK_URL"


def request(executor: Executor, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
            ) -> tuple[int, bytes]:
    call = urllib.request.Request(f"http://127.0.0.1:{executor.port}{path}", method=method, headers=headers or {},
                                  data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_journal(tmp_path: Path, predicate: Callable[[list[str]], bool], what: str, timeout: float = 120) -> list[str]:
    """The journal's event names once ``predicate`` holds of them (the process writes them as it goes)."""
    deadline = time.monotonic() + timeout
    names: list[str] = []
    while time.monotonic() < deadline:
        names = [entry["event"] for entry in journal(tmp_path)] if RunFiles(tmp_path / "state").journal.exists() else []
        if predicate(names):
            return names
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; journal: {names[-20:]}")


def after(names: list[str], first: str, then: str) -> bool:
    """True when ``then`` follows the last ``first``."""
    return first in names and then in names[len(names) - 1 - names[::-1].index(first):]


@pytest.mark.slow
def test_a_started_executor_pauses_at_the_limit_reports_it_keeps_it_over_a_restart_and_resumes(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    with LoopbackEndpoint(token="risk-hook") as endpoint:
        environment.update({VARIABLE: endpoint.url, "TRADEEXECUTOR_WEBHOOK_USERNAME": USER,
                            "TRADEEXECUTOR_WEBHOOK_PASSWORD": PASSWORD})
        options = ("--max-drawdown", "0.05", "--replay-seconds", "0.3", "--notify-cooldown-seconds", "0",
                   "--notify-events", "risk_limit_hit")
        first = Executor(tmp_path, *options, strategy="risk_stop.py", env=environment, headers=AUTH)
        try:
            status = first.wait_status(lambda s: s["risk_paused"])
            assert "risk limit max_drawdown hit at 2005-01-" in status["risk_pause_reason"]
            assert status["status"] == "running" and status["exception"] is None and not status["paused"]
            code, body = request(first, "/healthz")
            health = json.loads(body)
            assert code == 503 and health["risk_paused"] and health["reasons"] == [status["risk_pause_reason"]]
            (post,) = endpoint.wait_for(lambda posts: len(posts) >= 1, what="the risk notification")
            assert post["title"] == "risk_stop: max_drawdown hit" and post["type"] == "failure"
            assert "New entries are paused; open positions are still managed." in post["message"]
            assert "threshold: 0.05" in post["message"]
            names = wait_journal(tmp_path, lambda n: after(n, "risk_limit_hit", "trigger_fired"),
                                 "the stop-loss after the hit")
            assert names.count("order_filled") == 1  # the one entry, before the hit; none after
            code, body = request(first, "/metrics", headers=AUTH)
            assert code == 200 and "tradeexecutor_risk_paused 1.0" in body.decode()
            first.process.send_signal(signal.SIGTERM)
            assert first.wait() == 0
        finally:
            if first.process.poll() is None:
                first.process.kill()

        second = Executor(tmp_path, *options, strategy="risk_stop.py", env=environment, headers=AUTH)
        try:
            status = second.wait_status(lambda s: s["executor_running"])
            assert status["risk_paused"] and "max_drawdown" in status["risk_pause_reason"]  # kept by the ledger
            assert request(second, "/control/resume", method="POST")[0] == 401  # an operator's action only
            code, body = request(second, "/control/resume", method="POST", headers=AUTH)
            assert code == 202 and json.loads(body)["command"] == "resume"
            second.wait_status(lambda s: not s["risk_paused"] and s["risk_pause_reason"] is None)
            names = wait_journal(tmp_path, lambda n: after(n, "risk_pause_lifted", "order_filled"),
                                 "an entry after the resume")
            assert after(names, "resumed", "risk_pause_lifted")
            assert request(second, "/healthz")[0] == 200
            second.process.send_signal(signal.SIGTERM)
            assert second.wait() == 0
        finally:
            if second.process.poll() is None:
                second.process.kill()
        assert len(endpoint.received()) == 1  # one hit, one message
    output = first.output() + second.output()
    assert PASSWORD not in output and "risk-hook" not in output


def test_an_entry_planned_before_the_hit_is_cancelled_not_filled(tmp_path: Path) -> None:
    daemon, ticker, _ = make(tmp_path, "risk_stop.py", risk=RiskConfig(max_drawdown=0.5))
    try:
        while not daemon.engine.pending:  # the first cycle plans an entry that fills at the next bar's open
            run_ticks(daemon, ticker, 1)
        state = daemon.engine.state
        state.risk.peak_equity = 1e9  # as if equity had been far higher: the next check hits
        daemon.commands.put_tick(JobKind.revaluation)
        daemon.loop.run_pending()
        assert state.risk.limit == "max_drawdown" and not daemon.engine.pending
        run_ticks(daemon, ticker, 5)
        assert not state.portfolio.open_positions and not state.portfolio.closed_positions
        (failed,) = state.portfolio.failed_positions
        (entry,) = failed.orders
        assert entry.status == OrderStatus.cancelled and entry.status_reason == "cancelled: risk limit max_drawdown hit"
    finally:
        daemon.close()
    names = [name for name, _ in events(tmp_path, "risk_limit_hit", "order_cancelled", "order_filled")]
    assert names == ["order_cancelled", "risk_limit_hit"]  # the hit journaled once its cancels are done

"""A risk limit hit in a paper run on live prices: the executor and ``tradeexecutor exchange-sim`` as subprocesses.

The simulator prices EUR/USD with a seeded random walk of zero volatility: a flat 100.0 on
1-second candles, so nothing but the test moves it. The executor (``--mode paper --exchange
binance --exchange-url URL``) trades tests/strategies/paper_hold.py, which buys 95 % of equity
when flat and holds, with ``--max-drawdown 0.05 --risk-close-positions``. Once the entry has
filled, the test pins the simulator's price at 80.0 (``POST /_sim/price``): the next candles open
there, equity falls about 19 % below its peak, and the limit is hit — deterministically, after the
entry and because of the drop. What is checked: the hit in the journal (limit, threshold, value,
a bar at or after the pinned one), the position sold by the risk-limit trigger at the exchange's
pinned price, later entries refused while paused (counted, no fill), /status and /healthz (503, a
distinct reason, not crashed), /metrics, one notification at a loopback JSON endpoint; then
``tradeexecutor control URL resume`` (authenticated; refused without) lifts the pause and the
strategy enters again.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import http_json, simulator_process
from executor_process import Executor
from notify_endpoint import LoopbackEndpoint
from tradeexecutor.layout import RunFiles
from tradeexecutor.ledger import load_state
from tradeexecutor.state import OrderSide, OrderStatus, TriggerKind
from tradeexecutor.store.journal import Journal

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

#: The executor's and the simulator's environment: no stray settings, no exchange credentials (paper needs none).
CLEAN = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
USER, PASSWORD = "ops", "risk-paper-pw"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
START_PRICE, DROPPED = 100.0, 80.0
REFUSED = 3  # entries refused while paused, counted before the resume


@pytest.fixture
def simulator() -> Iterator[str]:
    """``tradeexecutor exchange-sim`` with a flat EUR/USD at 100.0 on 1-second candles; yields its URL."""
    with simulator_process("--random-walk", "7", "--volatility", "0", "--start-price", str(START_PRICE), "--symbols", "EUR/USD", "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                           env={**CLEAN, "SIM_KEY": "RiskSimKey0123456789", "SIM_SECRET": "risk-sim-secret-0123"}) as url:
        yield url


def request(executor: Executor, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
            ) -> tuple[int, bytes]:
    call = urllib.request.Request(f"http://127.0.0.1:{executor.port}{path}", method=method, headers=headers or {},
                                  data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(call, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    path = RunFiles(tmp_path / "state").journal
    return Journal(path).read(limit=100_000) if path.exists() else []


def wait_journal(tmp_path: Path, predicate: Callable[[list[dict[str, Any]]], bool], what: str,
                 timeout: float = 150) -> list[dict[str, Any]]:
    """The journal once ``predicate`` holds of its entries (the executor writes them as it goes)."""
    deadline = time.monotonic() + timeout
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        entries = journal(tmp_path)
        if predicate(entries):
            return entries
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; journal: {[e['event'] for e in entries][-20:]}")


def since(entries: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    """The entries after the last ``event`` (empty when there is none)."""
    names = [entry["event"] for entry in entries]
    return entries[len(names) - names[::-1].index(event):] if event in names else []


def refused(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in since(entries, "risk_limit_hit")
            if e["event"] == "intent_ignored" and e["fields"]["reason"] == "paused: no new positions"]


def epoch_ms(stamp: object) -> int:
    return int(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.timeout(290)
def test_a_price_drop_on_the_simulator_hits_the_drawdown_limit_of_a_paper_run_and_resume_lifts_it(
        tmp_path: Path, simulator: str) -> None:
    with LoopbackEndpoint(token="risk-paper-hook") as endpoint:
        environment = {**CLEAN, "TRADEEXECUTOR_NOTIFY_WEBHOOK_URL": endpoint.url,
                       "TRADEEXECUTOR_WEBHOOK_USERNAME": USER, "TRADEEXECUTOR_WEBHOOK_PASSWORD": PASSWORD}
        executor = Executor(tmp_path, "--mode", "paper", "--exchange", "binance", "--exchange-url", simulator,
                            "--max-drawdown", "0.05", "--risk-close-positions", "--notify-cooldown-seconds", "0",
                            "--notify-events", "risk_limit_hit", strategy="paper_hold.py", window=False,
                            env=environment, headers=AUTH)
        try:
            # The entry fills at the flat price; nothing is paused and the executor is healthy.
            status = executor.wait_status(lambda s: s.get("portfolio", {}).get("open_positions", 0) == 1, timeout=200)
            assert status["mode"] == "paper" and not status["risk_paused"] and status["risk_pause_reason"] is None
            assert request(executor, "/healthz")[0] == 200
            entries = wait_journal(tmp_path, lambda e: any(x["event"] == "order_filled" for x in e), "the entry")
            (entry,) = [e for e in entries if e["event"] == "order_filled"]
            assert entry["fields"]["price"] == START_PRICE

            code, pinned = http_json("POST", f"{simulator}/_sim/price",
                                     {"symbol": "EURUSD", "price": str(DROPPED), "seconds": 3600})
            assert code == 200, pinned

            # The limit is hit on a candle at the pinned price: the position is sold by the risk-limit trigger.
            status = executor.wait_status(lambda s: s["risk_paused"], timeout=150)
            reason = status["risk_pause_reason"]
            assert reason.startswith("risk limit max_drawdown hit at ")
            assert status["status"] == "running" and status["exception"] is None and not status["paused"]
            assert status["risk"]["drawdown"] >= 0.05
            code, body = request(executor, "/healthz")
            health = json.loads(body)
            assert code == 503 and health["risk_paused"] and health["reasons"] == [reason]
            assert not health.get("crashed")
            code, body = request(executor, "/metrics", headers=AUTH)
            text = body.decode()
            assert code == 200 and "\ntradeexecutor_risk_paused 1.0" in text
            (post,) = endpoint.wait_for(lambda posts: len(posts) >= 1, what="the risk notification")
            assert post["title"] == "paper_hold: max_drawdown hit" and post["type"] == "failure"
            assert "threshold: 0.05" in post["message"] and "entries paused, positions closed" in post["message"]

            # Entries pause: the flat strategy asks to buy on each cycle and is refused, and nothing fills.
            entries = wait_journal(tmp_path, lambda e: len(refused(e)) >= REFUSED, f"{REFUSED} refused entries")
            names = [e["event"] for e in entries]
            (hit,) = [e["fields"] for e in entries if e["event"] == "risk_limit_hit"]
            assert hit["limit"] == "max_drawdown" and hit["threshold"] == 0.05
            assert hit["action"] == "entries paused, positions closed"
            assert epoch_ms(hit["bar_time"]) >= pinned["from_ms"], "hit on a candle at the pinned price"
            assert [e["fields"] for e in entries if e["event"] == "order_filled"] == [entry["fields"]]  # none since
            assert names.index("order_filled") < names.index("risk_limit_hit")
            (fired,) = [e["fields"] for e in entries if e["event"] == "trigger_fired"]
            assert fired["trigger"] == TriggerKind.risk_limit.value and fired["price"] == DROPPED
            assert fired["quantity"] == entry["fields"]["quantity"]  # everything sold, at the exchange's price
            # The drawdown is what the drop did: the peak (the equity before the entry) less the equity at the hit
            # is the entry's fee and the held quantity times the fall of the price.
            peak = hit["equity"] / (1 - hit["value"])
            loss = entry["fields"]["fee"] + entry["fields"]["quantity"] * (START_PRICE - DROPPED)
            assert peak - hit["equity"] == pytest.approx(loss, abs=0.1) and hit["value"] > 0.05

            # An operator's action lifts it: refused without credentials, done with them, through the CLI.
            assert request(executor, "/control/resume", method="POST")[0] == 401
            url = f"http://127.0.0.1:{executor.port}"
            anonymous = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "control", url, "resume"],
                                       capture_output=True, text=True, timeout=120, env=CLEAN)
            assert anonymous.returncode == 1 and "answered 401" in anonymous.stderr, anonymous.stderr
            assert executor.wait_status(lambda s: True)["risk_paused"]
            resume = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "control", url, "resume"],
                                    capture_output=True, text=True, timeout=120,
                                    env={**CLEAN, "TRADEEXECUTOR_WEBHOOK_USERNAME": USER,
                                         "TRADEEXECUTOR_WEBHOOK_PASSWORD": PASSWORD})
            assert resume.returncode == 0, resume.stderr
            status = executor.wait_status(lambda s: not s["risk_paused"] and s["risk_pause_reason"] is None)
            entries = wait_journal(tmp_path, lambda e: any(x["event"] == "order_filled"
                                                           for x in since(e, "risk_pause_lifted")),
                                   "an entry after the resume")
            (lift,) = [e["fields"] for e in entries if e["event"] == "risk_pause_lifted"]
            assert lift["limit"] == "max_drawdown" and lift["by"] == "operator"
            assert "resumed" in [e["event"] for e in since(entries, "risk_limit_hit")]
            assert [e["fields"]["price"] for e in since(entries, "risk_pause_lifted")
                    if e["event"] == "order_filled"] == [DROPPED]  # entering again, at the exchange's price
            assert request(executor, "/healthz")[0] == 200
            code, body = request(executor, "/metrics", headers=AUTH)
            assert code == 200 and "\ntradeexecutor_risk_paused 0.0" in body.decode()
            executor.process.send_signal(signal.SIGTERM)
            assert executor.wait() == 0
        finally:
            executor.kill()
        assert len(endpoint.received()) == 1  # one hit, one message
        assert all(path == "/risk-paper-hook" for path in endpoint.paths)

    state = load_state(executor.state_dir)
    assert state is not None and not state.risk.paused
    (first,) = state.portfolio.closed_positions
    sold = first.orders[-1]
    assert sold.trigger == TriggerKind.risk_limit and sold.status == OrderStatus.filled
    assert sold.side == OrderSide.sell and sold.filled_quantity == first.orders[0].filled_quantity
    assert first.realised_pnl < 0
    output = executor.output()
    assert PASSWORD not in output and "risk-paper-hook" not in output and "paper mode on binance" in output


"""A live order the exchange says filled while its trade list never lists the trade: surfaced, followed, resolved.

Real processes: one ``tradeexecutor exchange-sim`` with a ``trades_lag`` fault that hides every trade until it is
deleted (the new order's reply lists none either), and a live executor (real ccxt) trading
tests/strategies/paper_hold.py, whose first cycle buys. The exchange fills the buy at once; the executor follows
it, never ends it short of its fill. With ``--exchange-fills-missing-seconds 1`` it reports the order once its
trades have been missing for three answers over a second: one ``order_fills_missing`` journal line with both
figures, the order in /status ``fills_missing``, a /healthz reason (503) and ``tradeexecutor_orders_fills_missing
1`` — and it still asks the exchange about it, sends nothing else for it. Once the fault is deleted the fill is
booked once, the order ends filled, ``order_fills_found`` is journaled and /status, /healthz and /metrics clear.
A restart in between shows the order again at once (start-up reads the journal's line) and never journals it twice.
It used to be followed for ever with nothing said anywhere.
"""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import simulator_process
from executor_process import Executor
from test_live_faults_e2e import events, healthz, journaled, until
from test_live_faults_lag import CLEAN, KEY, SECRET, sim
from tradeexecutor.cli.client_cmd import status_lines
from tradeexecutor.ledger import load_state
from tradeexecutor.state import OrderStatus

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow


def gauge(executor: Executor, name: str) -> float | None:
    """One sample of the executor's /metrics, None when it is not there."""
    with urllib.request.urlopen(f"http://127.0.0.1:{executor.port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return None


def live(tmp_path: Path, url: str, state_dir: Path) -> Executor:
    """A live executor trading paper_hold.py on the simulator, reporting missing trades after a second."""
    return Executor(tmp_path, "--cpu", "off", "--mode", "live", "--exchange", "binance", "--exchange-url", url,
                    "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                    "--exchange-fills-missing-seconds", "1", strategy="paper_hold.py", window=False,
                    state_dir=state_dir, env={**CLEAN, "MY_KEY": KEY, "MY_SECRET": SECRET})


def order_lookups(url: str) -> int:
    """GET /api/v3/order requests the simulator has served."""
    return len([r for r in sim(url, "GET", "requests?limit=10000") if (r["method"], r["path"]) == ("GET",
                                                                                                    "/api/v3/order")])


def surfaced(tmp_path: Path, url: str, state_dir: Path) -> str:
    """A first executor whose buy the exchange filled while its trade stays unlisted, until it says so everywhere
    (journal, /status, `tradeexecutor status`, /healthz, /metrics); then stopped. The order's client order id."""
    first = live(tmp_path / "first", url, state_dir)
    try:
        [line] = journaled(first, "order_fills_missing")
        fields = line["fields"]
        assert line["level"] == "warning"
        [taken] = sim(url, "GET", "orders")
        cid = taken["clientOrderId"]
        assert taken["status"] == "FILLED" and fields["client_order_id"] == cid
        assert fields["filled"] == pytest.approx(float(taken["executedQty"])) and fields["listed"] == 0
        status = first.wait_status(lambda s: bool(s.get("fills_missing")))
        [shown] = status["fills_missing"]
        assert shown["client_order_id"] == cid and shown["reason"] == fields["reason"]
        assert not status["safe_mode"]
        shown_lines = [line.split(":", 1)[1].strip() for line in status_lines(status, None)
                       if line.startswith("fills missing:")]  # `tradeexecutor status`
        assert shown_lines == [fields["reason"]]
        code, health = healthz(first)
        assert code == 503 and fields["reason"] in health["reasons"], health
        assert gauge(first, "tradeexecutor_orders_fills_missing") == 1
        first.process.send_signal(signal.SIGTERM)
        assert first.wait() == 0, first.output()
    finally:
        first.kill()
    return cid


def simulator() -> Any:
    return simulator_process("--speed", "3600", "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                             env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET})


def check_booked_once(url: str, state_dir: Path, cid: str) -> None:
    """The ledger's order is filled with the exchange's one trade, and the exchange holds that one order."""
    [trade] = sim(url, "GET", "trades")
    state = load_state(state_dir)
    assert state is not None
    [order] = [o for o in state.portfolio.all_orders() if o.client_order_id == cid]
    assert order.status is OrderStatus.filled and [f.venue_trade_id for f in order.fills] == [str(trade["id"])]
    assert [o["clientOrderId"] for o in sim(url, "GET", "orders")] == [cid]  # never resent


@pytest.mark.timeout(600)
def test_an_order_whose_trades_never_come_is_surfaced_kept_followed_and_cleared_once_they_come(
        tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with simulator() as url:
        lag = sim(url, "POST", "faults", {"kind": "trades_lag"})
        cid = surfaced(tmp_path, url, state_dir)
        # A restart: the order is shown again from the journal's line, and not journaled a second time although the
        # new process's venue meets the rule again (it asks about the order at each job: followed, nothing resent).
        second = live(tmp_path / "second", url, state_dir)
        try:
            status = second.wait_status(lambda s: bool(s.get("fills_missing")))
            assert [o["client_order_id"] for o in status["fills_missing"]] == [cid]
            asked = order_lookups(url)
            until(second, lambda: order_lookups(url) > asked + 4, "the restarted executor asking about the order")
            assert [o["clientOrderId"] for o in sim(url, "GET", "orders")] == [cid]
            assert len(events(second, "order_fills_missing")) == 1  # once per order, across restarts
            sim(url, "DELETE", f"faults/{lag['id']}")
            [found] = journaled(second, "order_fills_found")
            assert found["fields"]["client_order_id"] == cid and found["fields"]["status"] == "filled"
            second.wait_status(lambda s: s.get("fills_missing") == [])
            # The restart's reconciliation found the account holding what the fill not booked bought: no mismatch
            # (the order is unbooked, its balance bounded by exactly that part; tests/test_reconcile_unbooked.py).
            assert not second.status()["safe_mode"]  # type: ignore[index]
            assert not [r for r in healthz(second)[1]["reasons"] if cid in r]
            assert gauge(second, "tradeexecutor_orders_fills_missing") == 0
            assert len(events(second, "order_fills_missing")) == 1
        finally:
            second.kill()
        check_booked_once(url, state_dir, cid)


@pytest.mark.timeout(600)
def test_trades_listed_while_no_executor_ran_are_booked_at_the_restart_and_the_order_said_found(
        tmp_path: Path) -> None:
    """The trade is listed while the executor is stopped: the restart's reconciliation books it and ends the order;
    its first job journals ``order_fills_found`` for the order the earlier process reported, once, and nothing is
    shown missing."""
    state_dir = tmp_path / "state"
    with simulator() as url:
        lag = sim(url, "POST", "faults", {"kind": "trades_lag"})
        cid = surfaced(tmp_path, url, state_dir)
        sim(url, "DELETE", f"faults/{lag['id']}")
        second = live(tmp_path / "second", url, state_dir)
        try:
            [found] = journaled(second, "order_fills_found")
            assert found["fields"]["client_order_id"] == cid and found["fields"]["status"] == "filled"
            second.wait_status(lambda s: s.get("status") == "running" and s.get("fills_missing") == [])
            assert gauge(second, "tradeexecutor_orders_fills_missing") == 0
            until(second, lambda: len(events(second, "cycle_completed")) >= 3, "three more cycles")
            assert len(events(second, "order_fills_found")) == 1 and len(events(second, "order_fills_missing")) == 1
        finally:
            second.kill()
        check_booked_once(url, state_dir, cid)

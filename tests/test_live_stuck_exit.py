"""A live executor whose entry ended at the exchange with its trade not listed yet: that position's exits wait, the
others' go, and the wait ends when the trade is listed (issue 13, "never double-counts a trade").

Real processes: one ``tradeexecutor exchange-sim`` with a ``trades_lag`` fault on EURUSD only (its trade list omits
every EURUSD trade until the fault is deleted, while the order reads filled) and a live executor (real ccxt) trading
tests/strategies/live_two_hold.py, which buys EURUSD and GBPUSD at its first cycle. The exchange fills both; the
ledger books GBPUSD's and holds the EURUSD entry followed, its fill unbooked (the position holding nothing yet).

From the exchange's first such answer (long before the 5-minute ``fills_missing`` report) /status lists the EURUSD
position in ``exits_waiting``; an operator's close of it answers 409 with the reason; close-all closes GBPUSD and
leaves EURUSD in ``details.not_closed`` with that reason; ``exit_waiting`` is journaled once; no cancel is ever sent
to the exchange. Once the fault is deleted the fill is booked, the list clears and the close of EURUSD sells what
the entry bought, once. It used to answer the close as a failure (the cancel it sent to the filled entry never
confirmed) and close-all closed nothing.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import simulator_process
from executor_process import Executor
from test_live_faults_e2e import CLEAN, OPERATOR, events, positions, sim, until
from test_live_lag_jobs import AUTH, post
from tradeexecutor.cli.client_cmd import status_lines
from tradeexecutor.ledger import load_state
from tradeexecutor.state import OrderStatus

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow

KEY = "LiveStuckExitKey0123456789"
SECRET = "live-stuck-exit-secret-0123456789"


def executor(tmp_path: Path, url: str, state_dir: Path) -> Executor:
    return Executor(tmp_path, "--cpu", "off", "--mode", "live", "--exchange", "binance", "--exchange-url", url,
                    "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                    strategy="live_two_hold.py", window=False, state_dir=state_dir, headers=AUTH,
                    env={**CLEAN, **OPERATOR, "MY_KEY": KEY, "MY_SECRET": SECRET})


def booked(live: Executor, symbol: str) -> bool:
    """Whether the ledger (as committed now) holds an open ``symbol`` position with a quantity."""
    open_, _ = positions(live)
    state = load_state(live.state_dir)
    return state is not None and any(state.instrument(p.instrument_id).symbol == symbol and p.quantity > 0
                                     for p in open_)


def cancels(url: str) -> list[dict[str, Any]]:
    """Every cancel the simulator was sent."""
    return [r for r in sim(url, "GET", "requests?limit=10000") if (r["method"], r["path"]) == ("DELETE",
                                                                                              "/api/v3/order")]


def simulator() -> Any:
    return simulator_process("--random-walk", "7", "--volatility", "0", "--symbols", "EUR/USD,GBP/USD",
                             "--balance", "USD=10000", "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                             env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET})


def eur_waiting(live: Executor, url: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Once /status lists the EURUSD position in ``exits_waiting`` (its entry filled at the exchange, its trade not
    listed): that /status, its entry there, and the exchange's record of the entry."""
    status = live.wait_status(lambda s: bool(s.get("exits_waiting")))
    [waiting] = status["exits_waiting"]
    [entry] = [o for o in sim(url, "GET", "orders") if o["symbol"] == "EURUSD"]
    assert entry["status"] == "FILLED"
    assert (waiting["symbol"], waiting["client_order_id"], waiting["purpose"], waiting["listed"]) == (
        "EURUSD", entry["clientOrderId"], "open", 0), waiting
    assert waiting["filled"] == pytest.approx(float(entry["executedQty"]))
    assert status["fills_missing"] == [], status  # long before that report (5 minutes)
    return status, waiting, entry


def refused_close(live: Executor, waiting: dict[str, Any]) -> None:
    """An operator's close of the waiting position answers 409 with the reason in its details."""
    code, raw = post(live, "/control/close", json.dumps({"position_id": waiting["position_id"]}).encode())
    refused = json.loads(raw)
    assert code == 409 and refused["details"] == {
        "position_id": waiting["position_id"], "client_order_id": waiting["client_order_id"],
        "reason": waiting["reason"]}, raw
    assert "ended at the exchange" in refused["error"] and "its exits wait" in refused["error"], raw


def booked_once(state_dir: Path, cid: str) -> None:
    """The ledger's entry is filled with the exchange's one trade."""
    state = load_state(state_dir)
    assert state is not None
    [bought] = [o for o in state.portfolio.all_orders() if o.client_order_id == cid]
    assert bought.status is OrderStatus.filled and len(bought.fills) == 1


@pytest.mark.timeout(600)
def test_an_entry_ended_short_holds_its_positions_exits_until_its_trade_is_listed_and_the_others_go(
        tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    with simulator() as url:
        lag = sim(url, "POST", "faults", {"kind": "trades_lag", "symbol": "EURUSD"})
        live = executor(tmp_path / "run", url, state_dir)
        try:
            status, waiting, entry = eur_waiting(live, url)
            assert not status["safe_mode"], status
            assert [line.split(":", 1)[1].strip() for line in status_lines(status, None)
                    if line.startswith("exit waiting:")] == [  # `tradeexecutor status`
                f"position {waiting['position_id']} EURUSD: {waiting['reason']}"]
            until(live, lambda: booked(live, "GBPUSD"), "GBPUSD bought and booked")

            refused_close(live, waiting)

            code, raw = post(live, "/control/close-all")
            answer = json.loads(raw)
            assert code == 200 and answer["outcome"] == "done", raw
            assert [(c["symbol"], c["status"]) for c in answer["details"]["closed"]] == [("GBPUSD", "filled")]
            [left] = answer["details"]["not_closed"]
            assert (left["position_id"], left["client_order_id"], left["reason"]) == (
                waiting["position_id"], entry["clientOrderId"], waiting["reason"]), left
            [said] = events(live, "exit_waiting")  # once per order, however many exits waited
            assert (said["fields"]["client_order_id"], said["fields"]["exit"]) == (entry["clientOrderId"],
                                                                                 "operator close"), said
            assert said["level"] == "warning"
            assert cancels(url) == []  # never a cancel of an order the exchange ended

            sim(url, "DELETE", f"faults/{lag['id']}")  # the trade is listed: booked, the wait ends
            live.wait_status(lambda s: s.get("exits_waiting") == [])
            until(live, lambda: booked(live, "EURUSD"), "EURUSD's entry booked")
            code, raw = post(live, "/control/close", json.dumps({"position_id": waiting["position_id"]}).encode())
            assert code == 200, raw
            [sold] = json.loads(raw)["details"]["closed"]
            assert (sold["symbol"], sold["status"]) == ("EURUSD", "filled"), sold
            assert float(sim(url, "GET", "balances")["EUR"]["free"]) < 0.001  # what the entry bought, less its fee
            assert len(events(live, "exit_waiting")) == 1 and cancels(url) == []
            live.process.send_signal(signal.SIGTERM)
            assert live.wait() == 0, live.output()
        finally:
            live.kill()
        booked_once(state_dir, entry["clientOrderId"])
        eur = [(o["side"], o["status"]) for o in sim(url, "GET", "orders") if o["symbol"] == "EURUSD"]
        assert eur == [("BUY", "FILLED"), ("SELL", "FILLED")], eur


@pytest.mark.timeout(600)
def test_a_restart_while_an_entry_is_ended_short_shows_it_waiting_at_once_and_sends_nothing_for_it(
        tmp_path: Path) -> None:
    """The executor is stopped while the EURUSD entry waits for its trade, and started again: the start-up asks the
    exchange about the entry, which still says filled with no trade listed — it is not ended, it is back in
    ``exits_waiting`` from the first job, an operator's close of it is refused with the reason, and nothing is sent
    for it (no exit, no cancel, no second entry). The start-up's reconciliation is clean, not safe mode: it names the
    entry ``unbooked`` and compares the account's balances with the ledger's moved by the part not booked. Once the
    trade is listed it is booked once and the wait ends."""
    state_dir = tmp_path / "state"
    with simulator() as url:
        lag = sim(url, "POST", "faults", {"kind": "trades_lag", "symbol": "EURUSD"})
        first = executor(tmp_path / "first", url, state_dir)
        try:
            _, waiting, entry = eur_waiting(first, url)
            first.process.send_signal(signal.SIGTERM)
            assert first.wait() == 0, first.output()
        finally:
            first.kill()
        second = executor(tmp_path / "second", url, state_dir)
        try:
            restarted, again, _ = eur_waiting(second, url)
            assert not restarted["safe_mode"] and restarted["reconciliation"]["outcome"] == "clean", restarted
            assert restarted["reconciliation"]["unbooked"] == [entry["clientOrderId"]], restarted["reconciliation"]
            assert (again["position_id"], again["client_order_id"]) == (waiting["position_id"],
                                                                         waiting["client_order_id"])
            refused_close(second, again)
            checks = (second.status() or {}).get("position_trigger_checks") or 0
            until(second, lambda: ((second.status() or {}).get("position_trigger_checks") or 0) >= checks + 3,
                  "three more trigger checks of the restarted run")
            assert [(o["side"], o["status"]) for o in sim(url, "GET", "orders") if o["symbol"] == "EURUSD"] == [
                ("BUY", "FILLED")]  # nothing sent for it: no exit, no second entry
            assert cancels(url) == []
            sim(url, "DELETE", f"faults/{lag['id']}")
            second.wait_status(lambda s: s.get("exits_waiting") == [])
            until(second, lambda: booked(second, "EURUSD"), "EURUSD's entry booked")
            second.process.send_signal(signal.SIGTERM)
            assert second.wait() == 0, second.output()
        finally:
            second.kill()
        booked_once(state_dir, entry["clientOrderId"])

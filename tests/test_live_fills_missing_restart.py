"""A live executor stopped (or killed -9) while the exchange's trade list lags its order status, then restarted.

Real processes: one ``tradeexecutor exchange-sim`` with a ``trades_lag`` fault (every trade hidden from
``myTrades`` and from a new order's reply until the fault is deleted) and a live executor (real ccxt) trading
tests/strategies/paper_hold.py, whose first cycle buys EUR. The exchange fills the buy at once; its trade stays
unlisted. The restarted executor's reconciliation finds the account holding the EUR the ledger has not booked: it
used to call that a mismatch and start in safe mode. Now the order is *unbooked*: the balances are compared with the
ledger's moved by exactly the part not booked (clean), the order is followed, its fill booked once when the exchange
lists it, and only then does the strict re-check run (``balances_rechecked``, clean, bounded by nothing). A real
change of the balance in the same situation is still a mismatch: safe mode with the reason.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from exchange_sim_helpers import simulator_process
from executor_process import Executor
from test_live_faults_e2e import events, journaled, until
from test_live_faults_lag import CLEAN, KEY, SECRET, killed_at_submitted, sim
from test_live_fills_missing import check_booked_once as booked_once
from tradeexecutor.engine.crashpoint import KILL_AT_ENV

pytest.importorskip("ccxt")
pytestmark = pytest.mark.slow


def live(tmp_path: Path, url: str, state_dir: Path, env: dict[str, str] | None = None,
         strategy: str = "paper_hold.py") -> Executor:
    """A live executor on the simulator trading paper_hold.py (its first cycle buys EUR, then it holds), or
    ``strategy``."""
    return Executor(tmp_path, "--cpu", "off", "--mode", "live", "--exchange", "binance", "--exchange-url", url,
                    "--exchange-key-variable", "MY_KEY", "--exchange-secret-variable", "MY_SECRET",
                    strategy=strategy, window=False, state_dir=state_dir,
                    env={**CLEAN, "MY_KEY": KEY, "MY_SECRET": SECRET, **(env or {})})


def simulator() -> Any:
    return simulator_process("--speed", "3600", "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                             env={**CLEAN, "SIM_KEY": KEY, "SIM_SECRET": SECRET})


def taken(url: str) -> dict[str, Any]:
    """The exchange's one order: filled, its trade not listed."""
    [order] = sim(url, "GET", "orders")
    assert order["status"] == "FILLED", order
    return order  # type: ignore[no-any-return]


@pytest.mark.timeout(600)
def test_a_restart_while_an_orders_trades_lag_is_no_mismatch_and_the_strict_recheck_waits_for_its_fill(
        tmp_path: Path) -> None:
    """Killed -9 right after the exchange took (and filled) the buy, its trade unlisted: the restart is clean, the
    order ``unbooked`` (reconciliation.json, the ``reconciled`` line, /status); no re-check runs while its fill is
    missing; once the trade is listed it is booked once and the strict re-check passes (fails before: safe mode,
    "EUR: the venue holds ...")."""
    state_dir = tmp_path / "state"
    with simulator() as url:
        fault = sim(url, "POST", "faults", {"kind": "trades_lag"})
        killed = killed_at_submitted(live(tmp_path / "first", url, state_dir, {KILL_AT_ENV: "submitted:1"}),
                                     state_dir)
        cid = killed.client_order_id
        order = taken(url)
        assert order["clientOrderId"] == cid
        second = live(tmp_path / "second", url, state_dir)
        try:
            status = second.wait_status(lambda s: s.get("status") == "running")
            assert status["reconciliation"]["outcome"] == "clean" and not status["safe_mode"], status
            assert status["reconciliation"]["unbooked"] == [cid], status["reconciliation"]
            record = json.loads((state_dir / "reconciliation.json").read_text())
            assert [(o["client_order_id"], o["action"]) for o in record["orders"]] == [(cid, "unbooked")]
            [unbooked] = record["unbooked"]
            assert unbooked["missing"] == pytest.approx(float(order["executedQty"])) and unbooked["booked"] == 0
            [reconciled] = journaled(second, "reconciled", lambda e: e["fields"].get("unbooked"))  # the restart's
            assert reconciled["fields"]["bounded_by"] == [cid] and reconciled["fields"]["unbooked"] == [cid]
            until(second, lambda: len(events(second, "cycle_completed")) >= 3, "three cycles while the fill is missing")
            assert not events(second, "balances_rechecked")  # the strict re-check waits for the fill
            sim(url, "DELETE", f"faults/{fault['id']}")
            journaled(second, "order_filled", lambda e: e["fields"].get("client_order_id") == cid)
            [recheck] = journaled(second, "balances_rechecked")
            assert recheck["fields"]["outcome"] == "clean" and recheck["fields"]["bounded_by"] == [], recheck
            assert not second.status()["safe_mode"]  # type: ignore[index]
            second.process.send_signal(signal.SIGTERM)
            assert second.wait() == 0, second.output()
        finally:
            second.kill()
        assert not events(second, "safe_mode") and not events(second, "reconciliation_mismatch")
        assert len([e for e in events(second, "order_filled") if e["fields"].get("client_order_id") == cid]) == 1
        booked_once(url, state_dir, cid)


@pytest.mark.timeout(600)
def test_a_real_balance_change_while_an_orders_trades_lag_is_still_safe_mode_with_the_reason(
        tmp_path: Path) -> None:
    """Stopped while the buy's trade is unlisted; someone then takes the account's EUR (0 left: the ledger, which
    booked none, would agree strictly by accident). The EUR is short of the ledger's figure plus exactly the buy's
    part not booked: start-up's mismatch, safe mode with the reason naming it and the order (a bound loosened to "a
    buy only adds base" would have hidden it). The fill is still booked once when listed, and the re-check finds the
    same difference without entering safe mode a second time."""
    state_dir = tmp_path / "state"
    with simulator() as url:
        fault = sim(url, "POST", "faults", {"kind": "trades_lag"})
        first = live(tmp_path / "first", url, state_dir)
        try:
            until(first, lambda: [o for o in sim(url, "GET", "orders") if o["status"] == "FILLED"],
                  "the exchange filling the buy")
            until(first, lambda: len(events(first, "cycle_completed")) >= 2, "the buy's job committed")
            first.process.send_signal(signal.SIGTERM)
            assert first.wait() == 0, first.output()
        finally:
            first.kill()
        cid = taken(url)["clientOrderId"]
        sim(url, "POST", "balances", {"EUR": "0"})
        second = live(tmp_path / "second", url, state_dir)
        try:
            status = second.wait_status(lambda s: s.get("status") == "running")
            assert status["reconciliation"]["outcome"] == "mismatch" and status["safe_mode"], status
            assert status["reconciliation"]["unbooked"] == [cid], status["reconciliation"]
            [entered] = journaled(second, "safe_mode")
            reason = entered["fields"]["reason"]
            assert "EUR: the venue holds 0, the positions 0" in reason and cid in reason, reason
            [mismatch] = journaled(second, "reconciliation_mismatch")
            assert mismatch["fields"]["symbol"] == "EUR" and mismatch["fields"]["venue"] == 0
            sim(url, "DELETE", f"faults/{fault['id']}")
            journaled(second, "order_filled", lambda e: e["fields"].get("client_order_id") == cid)
            [recheck] = journaled(second, "balances_rechecked")
            assert recheck["fields"]["outcome"] == "mismatch", recheck
            assert second.wait_status(lambda s: s.get("safe_mode") is True)["safe_mode_reason"] == reason
            second.process.send_signal(signal.SIGTERM)
            assert second.wait() == 0, second.output()
        finally:
            second.kill()
        assert len(events(second, "safe_mode")) == 1, events(second, "safe_mode")
        assert float(sim(url, "GET", "balances")["EUR"]["free"]) == 0  # nothing "fixed"
        booked_once(url, state_dir, cid)


def orders_after(url: str, seen: set[str]) -> list[dict[str, Any]]:
    """The exchange's orders not in ``seen``, filled."""
    return [o for o in sim(url, "GET", "orders") if o["clientOrderId"] not in seen and o["status"] == "FILLED"]


@pytest.mark.timeout(600)
def test_a_later_order_whose_trades_lag_when_the_recheck_runs_bounds_it_instead_of_tripping_it(
        tmp_path: Path) -> None:
    """The review's second reproducer, in the daemon: start-up with an unbooked buy; the strategy (paper_add.py) adds
    to the position every second. A second ``trades_lag`` hides the trades of the orders sent from some moment on;
    the first is deleted, so the unbooked buy's fill (and the earlier adds') is listed and booked — and the re-check
    it armed runs while later adds are filled at the exchange and unlisted (exchange ids: not among the unconfirmed
    orders it used to bound). It bounds them as unbooked, names them, enters no safe mode, and stays armed; once their
    trades are listed and booked the strict re-check runs, clean (fails before: safe mode, "EUR: the venue holds")."""
    state_dir = tmp_path / "state"
    with simulator() as url:
        first_lag = sim(url, "POST", "faults", {"kind": "trades_lag"})
        killed = killed_at_submitted(live(tmp_path / "first", url, state_dir, {KILL_AT_ENV: "submitted:1"},
                                          strategy="paper_add.py"), state_dir)
        cid = killed.client_order_id
        second = live(tmp_path / "second", url, state_dir, strategy="paper_add.py")
        try:
            status = second.wait_status(lambda s: s.get("status") == "running")
            assert status["reconciliation"]["unbooked"] == [cid] and not status["safe_mode"], status
            until(second, lambda: orders_after(url, {cid}), "an add sent while the first lag holds")
            second_lag = sim(url, "POST", "faults", {"kind": "trades_lag"})
            # Every order the exchange holds once the second lag is on (the daemon keeps sending): one sent after
            # this is sure to trade under it, never before it.
            before = {o["clientOrderId"] for o in sim(url, "GET", "orders")}
            later = until(second, lambda: orders_after(url, before), "an add sent under the second lag")
            sim(url, "DELETE", f"faults/{first_lag['id']}")
            journaled(second, "order_filled", lambda e: e["fields"].get("client_order_id") == cid)
            [bounded] = journaled(second, "balances_rechecked")
            assert bounded["fields"]["outcome"] == "clean", bounded
            named = bounded["fields"]["unbooked"]
            assert later[0]["clientOrderId"] in named and cid not in named, bounded
            assert bounded["fields"]["bounded_by"] == named, bounded
            sim(url, "DELETE", f"faults/{second_lag['id']}")
            [strict] = journaled(second, "balances_rechecked", lambda e: not e["fields"]["bounded_by"])
            assert strict["fields"]["outcome"] == "clean" and strict["fields"]["unbooked"] == [], strict
            assert not second.status()["safe_mode"]  # type: ignore[index]
            second.process.send_signal(signal.SIGTERM)
            assert second.wait() == 0, second.output()
        finally:
            second.kill()
        assert not events(second, "safe_mode") and not events(second, "reconciliation_mismatch")
        assert all(e["fields"]["outcome"] == "clean" for e in events(second, "balances_rechecked"))

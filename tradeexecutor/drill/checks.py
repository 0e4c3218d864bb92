"""A drill's verdicts: each check named, passed or failed, with the reason in words.

A drill passes when every check passed. The checks every drill ends with (the executor stopped
cleanly, never crashed, and the simulator's orders equal the ledger's — exactly one order per
intent, nothing left unresolved) are here, beside the collector.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

__all__ = ["Checks", "order_checks"]

#: Ledger statuses that say the venue has, or may have, the order.
_SENT = ("submitting", "open", "partially_filled", "filled", "cancelled", "expired", "unknown")


class Checks:
    """The checks of one drill, in the order they were made."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def expect(self, name: str, passed: bool, reason: str) -> bool:
        """Record check ``name``; ``reason`` says what was seen (whether it passed or not)."""
        self.items.append({"check": name, "passed": bool(passed), "reason": reason})
        return bool(passed)

    @property
    def passed(self) -> bool:
        """Every check passed (and there was at least one)."""
        return bool(self.items) and all(item["passed"] for item in self.items)


def order_checks(checks: Checks, sim_orders: list[dict[str, Any]], ledger_orders: list[Any]) -> None:
    """The simulator's orders against the ledger's: one order per intent, the same fills, none left unresolved."""
    sim_ids = Counter(str(order["clientOrderId"]) for order in sim_orders)
    twice = sorted(cid for cid, count in sim_ids.items() if count > 1)
    checks.expect("exactly one order per intent", not twice,
                  f"client order ids sent more than once: {twice}" if twice else
                  f"{len(sim_ids)} orders on the simulator, each client order id once")
    ledger = {order.client_order_id: order for order in ledger_orders}
    strangers = sorted(cid for cid in sim_ids if cid not in ledger)
    checks.expect("every order on the simulator is in the ledger", not strangers,
                  f"orders the ledger does not know: {strangers}" if strangers else
                  "every simulator order has its ledger order (same client order id)")
    missing = sorted(cid for cid, order in ledger.items()
                     if order.status.value in _SENT and order.filled_quantity > 0 and cid not in sim_ids)
    checks.expect("every filled ledger order is on the simulator", not missing,
                  f"filled in the ledger, unknown to the simulator: {missing}" if missing else
                  "every ledger order with fills is on the simulator")
    unresolved = sorted(cid for cid, order in ledger.items() if order.status.value in ("submitting", "unknown"))
    checks.expect("no order left unresolved", not unresolved,
                  f"still submitting or unknown in the ledger: {unresolved}" if unresolved else
                  "no ledger order is left submitting or unknown")
    by_cid = {str(order["clientOrderId"]): order for order in sim_orders}
    differ = [f"{cid}: ledger {ledger[cid].filled_quantity:g}, simulator {by_cid[cid]['executedQty']}"
              for cid in by_cid if cid in ledger
              and abs(ledger[cid].filled_quantity - float(by_cid[cid]["executedQty"])) > 1e-9]
    checks.expect("filled quantities equal the simulator's", not differ,
                  "; ".join(differ) if differ else "each order's filled quantity equals the simulator's executedQty")


def order_rows(sim_orders: list[dict[str, Any]], ledger_orders: list[Any]) -> dict[str, Any]:
    """The orders as the report lists them: the simulator's and the ledger's, side by side by client order id."""
    return {
        "simulator": [{key: order.get(key) for key in ("clientOrderId", "orderId", "side", "type", "status",
                                                      "origQty", "executedQty")} for order in sim_orders],
        "ledger": [{"client_order_id": order.client_order_id, "side": order.side.value,
                    "status": order.status.value, "status_reason": order.status_reason,
                    "filled_quantity": order.filled_quantity, "venue_order_id": order.venue_order_id}
                   for order in ledger_orders],
    }

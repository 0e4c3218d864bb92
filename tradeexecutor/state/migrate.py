"""Schema 1 → 2 of a parsed state: each trade (an order fused with its fill) becomes an order with its fills.

Works on the plain JSON dict, before any object is built, so every store and the ledger's
``migrate`` command share it. Schema 1 kept one record per trade: planned → executed | rejected.
Schema 2 splits it: an executed trade becomes a filled order with one fill, a rejected trade a
rejected order (one the engine cancelled, whose reason starts with "cancelled", a cancelled
order), a planned trade a created order. Client order ids are derived the way the engine derives
them, from the run, the decision time and the order's place among that decision's orders.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from tradeexecutor.state.client_id import client_order_id, run_key
from tradeexecutor.state.order import OrderPurpose, RejectReason

__all__ = ["mark_old_fill", "migrate_state_dict", "reject_reason_of"]

#: Words of schema-1 rejection reasons and the machine reason they mean.
_REASONS = (
    ("rounds to zero", RejectReason.rounds_to_zero),
    ("not enough cash", RejectReason.insufficient_cash),
    ("below minimum notional", RejectReason.below_min_notional),
    ("not a finite number", RejectReason.not_finite),
    ("nothing to sell", RejectReason.nothing_to_sell),
)

_STATUS = {"executed": "filled", "rejected": "rejected", "planned": "created"}


def reject_reason_of(text: str) -> RejectReason:
    """The machine reason for a rejection described in words (schema 1 kept only the words)."""
    for words, reason in _REASONS:
        if words in text:
            return reason
    return RejectReason.venue


def _time(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def mark_old_fill(fill: dict[str, Any], quote_currency: str | None) -> dict[str, Any]:
    """Give a fill dict written before fills recorded ``fee_in_base`` that flag, in place; returns it.

    Accounting took a fee in the base asset when its currency was the venue's base asset; the ccxt venue values
    any other currency that is not the quote as a third asset (``fee_price`` set), and a live instrument's quote
    is the venue's. So an old fill's fee was in the base asset exactly when it has no ``fee_price`` and its
    currency is neither empty nor its instrument's quote currency (``quote_currency``; None when unknown: left
    false). A fill that has the key is left as it is.
    """
    if "fee_in_base" not in fill:
        currency = fill.get("fee_currency", "")
        fill["fee_in_base"] = (quote_currency is not None and fill.get("fee_price") is None
                               and currency not in ("", quote_currency))
    return fill


def _mark_old_fills(d: dict[str, Any]) -> None:
    """mark_old_fill for every fill of a schema-2 state dict written before fills recorded ``fee_in_base``: each fill
    on its own (a dict may mix new and old fills — a log replayed over an old snapshot — so one fill that has the
    field says nothing about the others)."""
    portfolio = d.get("portfolio")
    if type(portfolio) is not dict:
        return
    quotes = {i.get("id"): i.get("quote_currency", "USD") for i in d.get("instruments") or [] if type(i) is dict}
    for key in ("open_positions", "closed_positions", "failed_positions"):
        for position in portfolio.get(key) or []:
            for order in (position.get("orders") or []) if type(position) is dict else []:
                for fill in (order.get("fills") or []) if type(order) is dict else []:
                    if type(fill) is not dict:
                        continue
                    if "fee_in_base" in fill:
                        continue
                    mark_old_fill(fill, quotes.get(order.get("instrument_id")))


def migrate_state_dict(d: dict[str, Any]) -> dict[str, Any]:
    """Bring a schema-1 state dict to schema 2 in place and return it; a schema-2 dict is returned as it is, but for
    ``fee_in_base`` given to fills written before fills kept it (:func:`mark_old_fill`).

    Raises KeyError, TypeError or ValueError on a shape schema 1 never had; the caller names the file.
    """
    if d.get("schema_version") != 1:
        _mark_old_fills(d)
        return d
    created = d.get("created_at")
    run = run_key(str(d.get("name", "")), _time(created) if created is not None else None)
    portfolio = d.get("portfolio", {})
    positions = [p for key in ("open_positions", "closed_positions", "failed_positions")
                 for p in portfolio.get(key, [])]
    trades = sorted((t for p in positions for t in p.get("trades", [])), key=lambda t: t["id"])
    seq_at: dict[Any, int] = defaultdict(int)
    orders: dict[int, dict[str, Any]] = {}
    next_fill_id = 1
    for trade in trades:
        if trade.get("trigger"):
            seq, position_id = 0, trade["position_id"]
        else:
            seq, position_id = seq_at[trade["planned_at"]], None
            seq_at[trade["planned_at"]] += 1
        order, next_fill_id = _order(trade, run, seq, position_id, next_fill_id)
        orders[trade["id"]] = order
    for position in positions:
        position["orders"] = [orders[t["id"]] for t in position.pop("trades", [])]
    if "next_trade_id" in portfolio:
        portfolio["next_order_id"] = portfolio.pop("next_trade_id")
    portfolio["next_fill_id"] = next_fill_id
    d["schema_version"] = 2
    return d


def _order(trade: dict[str, Any], run: str, seq: int, position_id: int | None,
           next_fill_id: int) -> tuple[dict[str, Any], int]:
    """One schema-1 trade as a schema-2 order dict, and the next free fill id."""
    purpose = OrderPurpose(trade["kind"])
    status = _STATUS[trade["status"]]
    text = trade.get("reject_reason")
    reject: str | None = None
    if status == "rejected":
        if text and text.startswith("cancelled"):
            status = "cancelled"
        else:
            reject = reject_reason_of(text or "").value
    planned_quantity = trade.get("planned_quantity") or 0.0
    done_at = trade.get("executed_at") if status != "created" else None
    fills = []
    if status == "filled":
        fills.append({
            "id": next_fill_id,
            "order_id": trade["id"],
            "quantity": abs(trade["executed_quantity"]),
            "price": trade["executed_price"],
            "at": trade["executed_at"],
            "fee": trade.get("fee", 0.0),
            "fee_currency": "USD",  # schema 1 charged fees in the quote alone
            "fee_in_base": False,
            "venue_trade_id": None,
            "slippage": trade.get("slippage", 0.0),
            "realised_pnl": trade.get("realised_pnl", 0.0),
        })
        next_fill_id += 1
    order = {
        "id": trade["id"],
        "client_order_id": client_order_id(run, _time(trade["planned_at"]), seq, purpose, position_id=position_id),
        "position_id": trade["position_id"],
        "instrument_id": trade["instrument_id"],
        "purpose": purpose.value,
        "side": "buy" if purpose in (OrderPurpose.open, OrderPurpose.increase) else "sell",
        "created_at": trade["planned_at"],
        "status": status,
        "type": "market",
        "time_in_force": "gtc",
        "quantity": abs(planned_quantity) if planned_quantity else None,
        "value": trade.get("planned_value"),
        "limit_price": None,
        "stop_price": None,
        "reference_price": trade.get("planned_price"),
        "venue_order_id": None,
        "status_reason": text if status in ("rejected", "cancelled") else None,
        "reject_reason": reject,
        "trigger": trade.get("trigger"),
        "trigger_price": trade.get("trigger_price"),
        "note": trade.get("note"),
        "submitted_at": done_at if status in ("filled", "rejected") else None,
        "updated_at": done_at,
        "closed_at": done_at,
        "fills": fills,
    }
    return order, next_fill_id

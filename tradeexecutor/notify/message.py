"""From an executor event to a notification: its kind, its subject for rate limiting, and its words.

The journal's event names (``crashed``, ``order_filled``, ``complete`` ...) map onto the kinds a
person switches on or off (``notify.config.EVENT_KINDS``); events without a kind (cycles,
revaluations, plans) never notify. The *subject* is what makes two events "the same" for the
rate limit: the exception class of a crash, the symbol of a fill, the limit of a risk stop.
Fields are read defensively (``.get``): an event written by a newer or older loop with a field
missing still gives a readable message, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["HIGH_PRIORITY", "JOURNAL_EVENT_KINDS", "Message", "digest_message", "format_event"]

#: Journal event name → notification kind.
JOURNAL_EVENT_KINDS: dict[str, str] = {
    "crashed": "crash",
    "safe_mode": "safe_mode",
    "health_degraded": "health",
    "health_recovered": "health",
    "order_filled": "order_filled",
    "order_rejected": "order_rejected",
    "trigger_fired": "trigger_fired",
    "reconciliation_mismatch": "reconciliation_mismatch",
    "risk_limit_hit": "risk_limit_hit",
    "complete": "run_completed",
    "daily_summary": "daily_summary",
}

#: Kinds a full queue keeps longest: the ones that mean someone should act.
HIGH_PRIORITY: frozenset[str] = frozenset({"crash", "safe_mode", "health", "reconciliation_mismatch",
                                           "risk_limit_hit"})


@dataclass(frozen=True)
class Message:
    """One notification, ready for any channel."""

    #: Notification kind (EVENT_KINDS).
    kind: str
    #: What makes two messages of one kind "similar" for the rate limit ("" for once-per-executor kinds).
    subject: str
    #: Short headline, starting with the executor's name.
    title: str
    #: Plain-text details, one fact per line.
    body: str
    #: info, success, warning or failure (apprise's notification types).
    severity: str = "info"

    @property
    def high_priority(self) -> bool:
        """True for kinds that mean someone should act; a full queue drops the others first."""
        return self.kind in HIGH_PRIORITY


def _number(value: Any, digits: int = 2) -> str:
    """A figure as text (``1,234.57``); anything not a number as it is."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "?" if value is None else str(value)
    return f"{number:,.{digits}f}"


def _amount(value: Any) -> str:
    """A quantity or price with its significant digits (``0.01234``, ``152.3``)."""
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return "?" if value is None else str(value)


def _lines(*parts: str) -> str:
    return "\n".join(part for part in parts if part)


def _other_fields(fields: Mapping[str, Any], shown: set[str]) -> str:
    """``key: value`` lines for the fields a formatter did not place itself."""
    return "\n".join(f"{key}: {value}" for key, value in fields.items() if key not in shown)


def _crash(source: str, f: Mapping[str, Any], status_url: str) -> tuple[str, str, str, str]:
    cls = str(f.get("exception") or "unknown exception")
    body = _lines(f"{cls}: {f.get('message', '')}".rstrip(": "),
                  f"where: {f['where']}" if f.get("where") else "",
                  f"job: {f['job']}" if f.get("job") else "",
                  f"status: {status_url}" if status_url else "")
    return f"{source} crashed: {cls.rsplit('.', 1)[-1]}", body, "failure", cls


def _safe_mode(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    return (f"{source} entered safe mode", _lines("No new positions; open ones are still managed.",
                                                  f"reason: {f.get('reason') or 'not given'}"), "warning", "")


def _health_degraded(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    reasons = f.get("reasons") or []
    text = "\n".join(f"- {reason}" for reason in reasons) if isinstance(reasons, list) else str(reasons)
    return f"{source} health degraded", text or "unhealthy", "warning", ""


def _health_recovered(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    return f"{source} health recovered", "The health check passes again.", "success", ""


def _filled(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    symbol = str(f.get("symbol", "?"))
    quantity = f.get("quantity")
    side = "sold" if isinstance(quantity, (int, float)) and quantity < 0 else "bought"
    amount = abs(quantity) if isinstance(quantity, (int, float)) else quantity
    body = _lines(f"order {f.get('order_id', '?')}: {side} {_amount(amount)} at {_amount(f.get('price'))}",
                  _fee(f) if f.get("fee") is not None else "")
    return f"{source}: {f.get('purpose', 'order')} {symbol} filled", body, "info", symbol


def _fee(f: Mapping[str, Any]) -> str:
    """A fill line's fee with its currency (``fee: 0.25 USD``); one not in the quote with its worth in the quote
    (``fee: 0.01 AAA (1.00 USD)``). Lines written before fills named the currency: the figure alone."""
    text = f"fee: {_amount(f.get('fee'))}"
    if f.get("fee_currency"):
        text += f" {f['fee_currency']}"
    if f.get("fee_value") is not None:
        text += f" ({_number(f['fee_value'])}{' ' + str(f['fee_value_currency']) if f.get('fee_value_currency') else ''})"
    return text


def _rejected(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    symbol = str(f.get("symbol", "?"))
    body = _lines(f"order {f.get('order_id', '?')}", f"reason: {f.get('reason') or 'not given'}")
    return f"{source}: {f.get('purpose', 'order')} {symbol} rejected", body, "warning", symbol


def _trigger(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    symbol, trigger = str(f.get("symbol", "?")), str(f.get("trigger", "trigger"))
    level = f.get("trigger_price", f.get("level"))
    if f.get("price") is None and f.get("status"):
        # Live: the exit order was refused, filled in part or its outcome is unknown; say so, not "sold 0 at ?".
        done = f"position {f.get('position_id', '?')}: exit order {f.get('client_order_id', '?')} is {f['status']}, " \
               f"{_amount(f.get('quantity') or 0)} sold so far; the position stays protected"
    else:
        done = f"position {f.get('position_id', '?')}: sold {_amount(f.get('quantity'))} at {_amount(f.get('price'))}"
    body = _lines(done, f"trigger level: {_amount(level)}" if level is not None else "")
    return f"{source}: {trigger} fired on {symbol}", body, "warning", f"{symbol}/{trigger}"


def _mismatch(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    subject = str(f.get("symbol") or f.get("what") or "")
    body = _lines("The executor's books and the venue disagree; nothing was changed. Please check.",
                  _other_fields(f, set()))
    return f"{source}: reconciliation mismatch{' on ' + subject if subject else ''}", body, "failure", subject


def _risk_limit(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    limit = str(f.get("limit") or "risk limit")
    closed = "positions closed" in str(f.get("action", ""))  # --risk-close-positions sold everything at the hit
    first = ("New entries are paused; every open position was closed." if closed
             else "New entries are paused; open positions are still managed.")
    body = _lines(first, _other_fields(f, {"limit"}))
    return f"{source}: {limit} hit", body, "failure", limit


def _completed(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    body = _lines(str(f.get("reason") or ""), f"cycles this run: {f['cycles']}" if "cycles" in f else "")
    return f"{source}: run completed", body, "success", ""


def _daily(source: str, f: Mapping[str, Any], _: str) -> tuple[str, str, str, str]:
    change = f.get("change")
    pct = f.get("change_pct")
    sign = "+" if isinstance(change, (int, float)) and change >= 0 else ""
    change_text = f"{sign}{_number(change)}" + (f" ({sign}{_number(pct)} %)" if pct is not None else "")
    body = _lines(f"equity: {_number(f.get('equity'))}", f"change: {change_text} since {f.get('since', '?')}",
                  f"trades: {f.get('trades', '?')}", f"open positions: {f.get('open_positions', '?')}")
    day = str(f.get("date", ""))
    return f"{source}: daily summary {day}".rstrip(), body, "info", day


_FORMATTERS: dict[str, Callable[[str, Mapping[str, Any], str], tuple[str, str, str, str]]] = {
    "crashed": _crash,
    "safe_mode": _safe_mode,
    "health_degraded": _health_degraded,
    "health_recovered": _health_recovered,
    "order_filled": _filled,
    "order_rejected": _rejected,
    "trigger_fired": _trigger,
    "reconciliation_mismatch": _mismatch,
    "risk_limit_hit": _risk_limit,
    "complete": _completed,
    "daily_summary": _daily,
}


def format_event(event: str, fields: Mapping[str, Any], *, source: str, status_url: str = "") -> Message | None:
    """The notification for a journal event, or None when the event never notifies."""
    formatter = _FORMATTERS.get(event)
    if formatter is None:
        return None
    title, body, severity, subject = formatter(source, fields, status_url)
    return Message(JOURNAL_EVENT_KINDS[event], subject, title, body, severity)


def digest_message(last: Message, suppressed: int, window_seconds: float) -> Message:
    """The one message that ends a cool-down window: how many similar ones were held back, and the latest."""
    return Message(
        last.kind, last.subject,
        f"{last.title} (and {suppressed} more similar)",
        _lines(f"{suppressed} more similar event{'s' if suppressed != 1 else ''} suppressed in the last "
               f"{window_seconds:g} s. The latest:", last.title, last.body),
        last.severity,
    )

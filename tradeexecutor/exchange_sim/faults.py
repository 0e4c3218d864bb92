"""Injected faults: what goes wrong, for which requests, how many times or for how long.

A fault has a ``kind``, an optional scope (``path`` — exact, or a prefix ending in ``*`` —
``method`` and ``symbol``) and a life: ``count`` requests it applies to, ``seconds`` it lasts, or
both (whichever ends first), or neither (until cleared). Kinds:

``latency``       wait ``seconds_delay`` before answering (the request is then served normally)
``error``         answer ``status`` (default 503) with Binance's ``code``/``msg``; no ``code``: an
                  HTML body, as a proxy in front of the exchange sends
``maintenance``   503 with Binance's maintenance message; /sapi/v1/system/status says so too
``rate_limit``    429 -1003 with ``Retry-After: retry_after`` (default 10)
``ban``           418 -1003 with Retry-After until the fault ends (give ``seconds``)
``timeout``       serve the request (the order *is* placed), then never answer: ``mode`` ``drop``
                  closes the connection at once, ``hang`` (default) waits ``hang_seconds`` (default
                  30) first, so the client times out
``reject``        refuse the next order(s) with -2010 (or ``code``) and ``msg``
``partial_fill``  fill orders in ``parts`` (default 2, at most 2,000: more than a page of trades) at least
                  ``interval`` seconds (default 1) apart; a market order fills its first part and expires
``clock_skew``    move the exchange's clock by ``ms`` (timestamps, serverTime, recvWindow checks)
``lag``           Binance's query lag: a lookup of an order (``GET /api/v3/order``) placed less than
                  ``lag_seconds`` (default 10) ago answers -2013 "Order does not exist." although
                  the order was accepted; each such answer counts one use (``count``: N lookups)
``trades_lag``    the trade list lagging the order status: ``GET /api/v3/myTrades`` omits every trade made
                  after the fault was added (from ``from_trade_id``, the next trade id then), while the
                  order lookups already say the order filled; each answer that omits a trade counts one
                  use (``count``: N answers), ``seconds`` ends it on the clock, or it lasts until deleted; a new
                  order's FULL reply leaves those trades out of its ``fills`` too (not a use)

``timeout`` applies to ``POST /api/v3/order`` unless scoped otherwise; ``reject`` and
``partial_fill`` always to new orders; ``lag`` to ``GET /api/v3/order``; ``trades_lag`` to
``GET /api/v3/myTrades``; the others to every API path unless scoped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Faults answered instead of serving the request.
BLOCKING = ("error", "maintenance", "rate_limit", "ban")

#: Every kind and the parameters it takes (with their types and defaults).
KINDS: dict[str, dict[str, tuple[type, Any]]] = {
    "latency": {"seconds_delay": (float, 1.0)},
    "error": {"status": (int, 503), "code": (int, None), "msg": (str, None)},
    "maintenance": {},
    "rate_limit": {"retry_after": (int, 10)},
    "ban": {},
    "timeout": {"mode": (str, "hang"), "hang_seconds": (float, 30.0)},
    "reject": {"code": (int, -2010), "msg": (str, "Account has insufficient balance for requested action.")},
    "partial_fill": {"parts": (int, 2), "interval": (float, 1.0)},
    "clock_skew": {"ms": (int, 0)},
    "lag": {"lag_seconds": (float, 10.0)},
    "trades_lag": {},
}

#: Where a kind applies when no path is given: None means every API path.
_DEFAULT_SCOPE: dict[str, tuple[str | None, str | None]] = {
    "timeout": ("/api/v3/order", "POST"),
    "reject": ("/api/v3/order", "POST"),
    "partial_fill": ("/api/v3/order", "POST"),
    "lag": ("/api/v3/order", "GET"),
    "trades_lag": ("/api/v3/myTrades", "GET"),
}

_SCOPE_FIELDS = ("kind", "path", "method", "symbol", "count", "seconds")


class FaultError(ValueError):
    """A fault description that cannot be used; the message says which field and why."""


@dataclass
class Fault:
    """One active fault."""

    fault_id: int
    kind: str
    path: str | None
    method: str | None
    symbol: str | None
    #: Requests (or orders) it still applies to; None: no count limit.
    remaining: int | None
    #: Clock time (ms, unskewed) it ends at; None: no time limit.
    until_ms: int | None
    params: dict[str, Any] = field(default_factory=dict)
    #: ``trades_lag``: the first trade id it hides (the exchange's next trade id when it was added); None otherwise.
    from_trade_id: int | None = None

    def applies(self, method: str, path: str, symbol: str | None, now_ms: int) -> bool:
        """True when the fault is alive and its scope covers this request."""
        if not self.alive(now_ms):
            return False
        if self.method is not None and self.method != method:
            return False
        if self.path is not None and not (
            path == self.path or (self.path.endswith("*") and path.startswith(self.path[:-1]))
        ):
            return False
        return self.symbol is None or self.symbol == symbol

    def alive(self, now_ms: int) -> bool:
        """Neither used up nor past its end."""
        return (self.remaining is None or self.remaining > 0) and (self.until_ms is None or now_ms < self.until_ms)

    def as_json(self) -> dict[str, Any]:
        """The fault as the control API lists it."""
        since = {} if self.from_trade_id is None else {"from_trade_id": self.from_trade_id}
        return {"id": self.fault_id, "kind": self.kind, "path": self.path, "method": self.method,
                "symbol": self.symbol, "remaining": self.remaining, "until_ms": self.until_ms, **self.params, **since}


class FaultBook:
    """The active faults; not thread-safe (the simulator holds its lock)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, spec: Mapping[str, Any], now_ms: int, next_trade_id: int = 1) -> Fault:
        """Validate ``spec`` (the control API's JSON) and make it active; FaultError when it is wrong.

        ``next_trade_id``: the id the exchange's next trade will have, where a ``trades_lag`` starts hiding."""
        kind = spec.get("kind")
        if kind not in KINDS:
            raise FaultError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        unknown = set(spec) - set(_SCOPE_FIELDS) - set(KINDS[kind])
        if unknown:
            raise FaultError(f"{kind} fault does not take {', '.join(sorted(unknown))}; "
                             f"it takes {', '.join([*_SCOPE_FIELDS[1:], *KINDS[kind]])}")
        params = {name: _typed(spec.get(name, default), kind_, name) if spec.get(name) is not None else default
                  for name, (kind_, default) in KINDS[kind].items()}
        _check_params(kind, params)
        default_path, default_method = _DEFAULT_SCOPE.get(kind, (None, None))
        path = _optional_text(spec, "path") or default_path
        if path is not None and not path.startswith("/"):
            raise FaultError(f"path must start with /, got {path!r}")
        method = (_optional_text(spec, "method") or default_method or "").upper() or None
        count = spec.get("count")
        seconds = spec.get("seconds")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise FaultError(f"count must be a whole number of at least 1, got {count!r}")
        if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                                    or seconds <= 0):
            raise FaultError(f"seconds must be a positive number, got {seconds!r}")
        if kind == "ban" and seconds is None:
            raise FaultError("a ban needs seconds: how long the IP stays banned")
        fault = Fault(
            fault_id=self._next_id, kind=kind, path=path, method=method, symbol=_optional_text(spec, "symbol"),
            remaining=count, until_ms=None if seconds is None else now_ms + int(seconds * 1000), params=params,
            from_trade_id=next_trade_id if kind == "trades_lag" else None,
        )
        self._next_id += 1
        self._faults.append(fault)
        return fault

    def find(self, kinds: Iterable[str], method: str, path: str, now_ms: int,
             symbol: str | None = None) -> list[Fault]:
        """The live faults of ``kinds`` covering this request, oldest first, not yet counted as used."""
        wanted = set(kinds)
        return [f for f in self._faults if f.kind in wanted and f.applies(method, path, symbol, now_ms)]

    def use(self, fault: Fault, now_ms: int) -> None:
        """Count one use of ``fault`` (it ends when its count runs out)."""
        if fault.remaining is not None:
            fault.remaining -= 1
        self._prune(now_ms)

    def take(self, kinds: Iterable[str], method: str, path: str, now_ms: int,
             symbol: str | None = None) -> Fault | None:
        """The oldest live fault of ``kinds`` covering this request, counted as used; None when none."""
        found = self.find(kinds, method, path, now_ms, symbol)
        if not found:
            return None
        self.use(found[0], now_ms)
        return found[0]

    def skew_ms(self, now_ms: int) -> int:
        """The sum of the live clock skews."""
        return sum(int(f.params["ms"]) for f in self._faults if f.kind == "clock_skew" and f.alive(now_ms))

    def maintenance(self, now_ms: int) -> bool:
        """True while a maintenance fault is alive."""
        return any(f.kind == "maintenance" and f.alive(now_ms) for f in self._faults)

    def active(self, now_ms: int) -> list[Fault]:
        """Every live fault, oldest first."""
        self._prune(now_ms)
        return list(self._faults)

    def remove(self, fault_id: int) -> bool:
        """Drop one fault; False when there is none with that id."""
        before = len(self._faults)
        self._faults = [f for f in self._faults if f.fault_id != fault_id]
        return len(self._faults) != before

    def clear(self) -> None:
        """Drop every fault."""
        self._faults = []

    def _prune(self, now_ms: int) -> None:
        self._faults = [f for f in self._faults if f.alive(now_ms)]


def _optional_text(spec: Mapping[str, Any], name: str) -> str | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FaultError(f"{name} must be a non-empty string, got {value!r}")
    return value.strip()


def _typed(value: Any, kind: type, name: str) -> Any:
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise FaultError(f"{name} must be {'a number' if kind is float else 'an integer' if kind is int else 'text'}, "
                     f"got {value!r}")


def _check_params(kind: str, params: dict[str, Any]) -> None:
    if kind == "latency" and not 0 < params["seconds_delay"] <= 600:
        raise FaultError("seconds_delay must be between 0 and 600")
    if kind == "error" and not 400 <= params["status"] <= 599:
        raise FaultError(f"status must be an HTTP error status (400-599), got {params['status']}")
    if kind == "error" and (params["code"] is None) != (params["msg"] is None):
        raise FaultError("give code and msg together (a Binance JSON error), or neither (an HTML error page)")
    if kind == "rate_limit" and not 1 <= params["retry_after"] <= 86400:
        raise FaultError("retry_after must be between 1 and 86400 seconds")
    if kind == "timeout" and params["mode"] not in ("hang", "drop"):
        raise FaultError(f"mode must be hang or drop, got {params['mode']!r}")
    if kind == "timeout" and not 0 < params["hang_seconds"] <= 600:
        raise FaultError("hang_seconds must be between 0 and 600")
    if kind == "partial_fill" and not (2 <= params["parts"] <= 2000 and 0 <= params["interval"] <= 3600):
        raise FaultError("parts must be 2-2000 and interval 0-3600 seconds")
    if kind == "lag" and not 0 < params["lag_seconds"] <= 86400:
        raise FaultError("lag_seconds must be between 0 and 86400")
    if kind == "clock_skew" and not abs(params["ms"]) <= 86_400_000:
        raise FaultError("ms must be within a day either way")

"""The drills: one fault scenario each, with the behaviour issue 13 expects of the executor.

Each drill is a :class:`Drill` in :data:`DRILLS`: a summary, the expected behaviour in words
(copied into the report), the strategy it runs (``flip``: buy on one 1-second cycle, sell on the
next, so orders keep coming; ``hold``: buy once and keep it, so one intent makes one order), the
faults set before the executor starts, and ``play``: what it does to the running executor and
which checks it makes. Every drill then stops the executor with SIGTERM and checks the
simulator's orders against the ledger (:func:`checks.order_checks`).

The outage drills (exchange-down, rate-limit, ban) answer the fault to GET requests only — market data
and lookups, which every cycle starts with — so it always meets the executor between orders and a
drill is repeatable; the ban then holds *every* request (the executor's gate must not let an order
through either). An outage that meets an order's submit leaves that order's outcome unknown: that
is the timeout-after-accept drill's case.

Settings are short so a drill takes seconds: retries back off to at most 2 s, /healthz fails
after 2 s of outage, an exchange reply is waited for 3 s.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tradeexecutor.drill.checks import Checks
from tradeexecutor.drill.harness import DrillError, Stage, wait_until

__all__ = ["DRILLS", "EXECUTOR_OPTIONS", "STRATEGIES", "Drill"]

#: How long one step of a drill may wait on a busy machine (only a failure waits this long).
STEP_SECONDS = 90.0

#: engine/crashpoint.py's KILL_AT_ENV, spelled out: importing the engine would load pandas for `drill --list`
#: (tests/test_drill.py checks that the two agree).
KILL_AT_ENV = "TRADEEXECUTOR_TEST_KILL_AT"

#: How long a running executor may take to ask about an order whose reply timed out (several cycles, retries).
RESOLVE_SECONDS = 20.0

#: The executor's settings in every drill: short retries, grace periods and timeouts, no side jobs.
EXECUTOR_OPTIONS = ("--retry-max-seconds", "2", "--outage-grace-seconds", "2", "--health-grace-seconds", "5",
                    "--exchange-timeout-seconds", "3", "--trigger-seconds", "0", "--revaluation-seconds", "0",
                    "--publish-seconds", "0.5", "--crash-policy", "exit", "--notify-events", "none")

_HEADER = '''"""Written by tradeexecutor drill: {what}"""

from tradeexecutor.strategy.api import Decimal, Symbol, close, open_long

name = "Drill {name}"
description = "{what}"
cycle_duration = "1s"

parameters = {{
    "symbol": Symbol("EURUSD", asset_type="fx", help="The exchange simulator's EUR/USD market"),
    "allocation": Decimal(0.5, min=0.01, max=1.0, help="Fraction of equity per entry"),
}}

'''

#: The strategies a drill runs, by name: source code written into the run folder.
STRATEGIES = {
    "flip": _HEADER.format(name="flip", what="buys on one cycle and sells on the next, so orders keep coming.") + '''
def decide(ctx):
    if ctx.has_position():
        return [close(note="flip out")]
    return [open_long(fraction=ctx.parameters.allocation, note="flip in")]
''',
    "hold": _HEADER.format(name="hold", what="buys once and holds: one intent, one order.") + '''
def decide(ctx):
    if ctx.has_position():
        return []
    return [open_long(fraction=ctx.parameters.allocation, note="buy and hold")]
''',
}


@dataclass(frozen=True)
class Drill:
    """One fault scenario."""

    name: str
    summary: str
    #: What the executor must do, in words (the report's ``expected``).
    expected: tuple[str, ...]
    #: ``flip`` or ``hold`` (:data:`STRATEGIES`).
    strategy: str
    #: What the drill does to the running executor and what it checks; the executor runs when it is called.
    play: Callable[[Stage, Checks], None]
    #: Faults on the simulator before the executor starts (its first order meets them).
    faults: tuple[dict[str, Any], ...] = ()
    #: Extra environment of the first executor process (a crash point).
    env: dict[str, str] = field(default_factory=dict)


def _filled(status: dict[str, Any]) -> int:
    return int(status.get("portfolio", {}).get("orders_filled") or 0)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _alive(stage: Stage, checks: Checks) -> None:
    crashed = stage.events("crashed")
    checks.expect("no crash", stage.executor is not None and stage.executor.poll() is None and not crashed,
                  f"the executor crashed: {crashed[-1]['fields']}" if crashed else
                  "the executor kept running and journaled no crash")


def _recovers(stage: Stage, checks: Checks, what: str) -> None:
    """Orders fill again once the fault cleared: counted from when the outage began (the fault hit the executor),
    so a fill that landed between the drill's last look and the injection does not count as recovery."""
    try:
        wait_until(lambda: stage.events("outage_started"), STEP_SECONDS, "the fault never reached the executor")
        frozen = _filled(stage.status() or {})
        status = stage.wait_status(lambda s: _filled(s) > frozen and not s.get("outage"), STEP_SECONDS, what)
        checks.expect("recovery", True, f"orders filled {frozen} → {_filled(status)} after the fault cleared, "
                      "no outage shown")
    except DrillError as exc:  # the check records why it failed
        checks.expect("recovery", False, str(exc))


def _healthz_went(stage: Stage, checks: Checks, since: str) -> None:
    """/healthz turned 503 (with the outage as the reason) after ``since`` and back to 200 later."""
    after = [t for t in stage.health_transitions() if t["at"] >= since]
    bad = next((t for t in after if t["status"] == 503), None)
    checks.expect("/healthz 503 after the grace", bad is not None and "temporary failure" in bad["reason"],
                  f"503 at {bad['at']}: {bad['reason']}" if bad else f"/healthz never turned 503: {after}")
    try:  # the watch polls /healthz every 0.2 s: give it time to see the recovery the journal already shows
        good = bad is not None and wait_until(
            lambda: next((t for t in stage.health_transitions() if t["status"] == 200 and t["at"] > bad["at"]), None),
            STEP_SECONDS, "/healthz did not come back to 200")
    except DrillError:
        good = False
    checks.expect("/healthz 200 again", bool(good), f"back to 200 at {good['at']}" if good else
                  f"/healthz did not come back to 200: {stage.health_transitions()}")


def _outage_journaled(stage: Stage, checks: Checks, error_class: str) -> None:
    """outage_started (with the temporary error's class) and outage_ended in the journal."""
    try:  # outage_ended is committed with the job that ran again: a moment after /status stops showing the outage
        wait_until(lambda: stage.events("outage_ended"), STEP_SECONDS, "no outage_ended journaled")
    except DrillError:
        pass  # the check below says what is missing
    started = stage.events("outage_started")
    ended = stage.events("outage_ended")
    classes = sorted({str(e["fields"].get("error_class")) for e in started})
    checks.expect("outage journaled", bool(started) and bool(ended) and error_class in classes,
                  f"outage_started {len(started)}× ({', '.join(classes)}; expected {error_class}), "
                  f"outage_ended {len(ended)}×")


def _exchange_down(stage: Stage, checks: Checks) -> None:
    stage.wait_status(lambda s: _filled(s) >= 2, STEP_SECONDS, "the first orders did not fill")
    fault = stage.inject({"kind": "maintenance", "seconds": 6, "method": "GET"})
    since = stage.record["injected"][-1]["at"]
    wait_until(lambda: not stage.fault_alive(fault["id"]), STEP_SECONDS, "the maintenance did not end")
    _recovers(stage, checks, "orders did not fill again after the maintenance")
    _alive(stage, checks)
    _outage_journaled(stage, checks, "TemporaryError")
    missed = stage.events("cycle_missed")
    boundaries = [str(e["fields"].get("boundary")) for e in missed]
    seconds = sum(float(e["fields"].get("seconds") or 0.0) for e in stage.events("outage_ended"))
    # The cycle job wakes every quarter of a 1-second candle: each boundary the outage spans before a newer one is
    # missed once, not each wake (the newest stays open: decided late if the exchange is back before the next).
    checks.expect("missed cycles journaled", bool(missed) and len(set(boundaries)) == len(missed) <= seconds + 1
                  and not any("." in b for b in boundaries),  # whole seconds: the boundaries, not the wakes
                  f"{len(missed)} cycle boundaries journaled as missed over an outage of {seconds:.1f} s "
                  f"(1-second cycles): {', '.join(boundaries[:3])}{' ...' if len(boundaries) > 3 else ''}")
    decided = {str(e["fields"].get("cycle_time")) for e in stage.events("cycle_completed")}
    both = sorted(decided & set(boundaries))
    checks.expect("no missed cycle decided", not both, f"{len(both)} cycles journaled missed and decided: "
                  f"{', '.join(both[:3])}" if both else "none of the missed cycles was decided")
    _healthz_went(stage, checks, since)
    status = stage.status() or {}
    checks.expect("not counted as crashes", status.get("crash_count") == 0 and not status.get("safe_mode"),
                  f"crash_count {status.get('crash_count')}, safe mode {status.get('safe_mode')}")


def _next_after(requests: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    return requests[index + 1] if index + 1 < len(requests) else None


def _rate_limit(stage: Stage, checks: Checks) -> None:
    stage.wait_status(lambda s: _filled(s) >= 1, STEP_SECONDS, "the first order did not fill")
    stage.inject({"kind": "rate_limit", "retry_after": 3, "count": 1, "method": "GET"})
    _recovers(stage, checks, "orders did not fill again after the 429")
    _alive(stage, checks)
    _outage_journaled(stage, checks, "RateLimitedError")
    requests = stage.sim_requests()
    hit = next((i for i, r in enumerate(requests) if r["status"] == 429), None)
    following = _next_after(requests, hit) if hit is not None else None
    waited = (following["time"] - requests[hit]["time"]) / 1000 if hit is not None and following else None
    # The 429's time is stamped when it was answered, the next request's when it was; 0.2 s for the stamping.
    checks.expect("Retry-After honoured", waited is not None and waited >= 3 - 0.2,
                  f"next request {waited:.2f} s after the 429 (Retry-After: 3)" if waited is not None else
                  "no 429 answered, or no request after it")


def _ban(stage: Stage, checks: Checks) -> None:
    stage.wait_status(lambda s: _filled(s) >= 1, STEP_SECONDS, "the first order did not fill")
    fault = stage.inject({"kind": "ban", "seconds": 4, "method": "GET"})
    wait_until(lambda: not stage.fault_alive(fault["id"]), STEP_SECONDS, "the ban did not end")
    _recovers(stage, checks, "orders did not fill again after the ban")
    _alive(stage, checks)
    _outage_journaled(stage, checks, "RateLimitedError")
    requests = stage.sim_requests()
    banned = [r for r in requests if r["status"] == 418]
    checks.expect("one request met the ban", len(banned) == 1,
                  f"{len(banned)} requests answered 418 (the gate must hold every request after the first)")
    first = requests.index(banned[0]) if banned else None
    following = _next_after(requests, first) if first is not None else None
    until = int(fault["until_ms"])
    checks.expect("no request until the ban ended", following is not None and following["time"] >= until,
                  f"next request {(following['time'] - until) / 1000:+.2f} s from the ban's end"
                  if following is not None else "no request after the 418")


def _clock_skew(stage: Stage, checks: Checks) -> None:
    before = _filled(stage.wait_status(lambda s: _filled(s) >= 1, STEP_SECONDS, "the first order did not fill"))
    stage.inject({"kind": "clock_skew", "ms": 30_000})
    try:
        status = stage.wait_status(lambda s: _filled(s) >= before + 2, STEP_SECONDS,
                                   "orders did not fill with the exchange's clock 30 s ahead")
        checks.expect("orders go on", True, f"orders filled {before} → {_filled(status)} with the clock skewed")
    except DrillError as exc:  # the check records why it failed
        checks.expect("orders go on", False, str(exc))
        status = stage.status() or {}
    offset = status.get("venue", {}).get("clock_offset_ms")
    checks.expect("offset measured and shown in /status",
                  isinstance(offset, (int, float)) and abs(offset - 30_000) < 2_000,
                  f"/status venue.clock_offset_ms = {offset} (the exchange's clock is 30 000 ms ahead)")
    _alive(stage, checks)


def _one_order(stage: Stage, checks: Checks, what: str) -> dict[str, Any] | None:
    """Wait for the hold strategy's one order to end on the simulator and a few cycles to pass; that order."""
    try:
        order = wait_until(lambda: next((o for o in stage.sim_orders() if o["status"] in ("FILLED", "EXPIRED")),
                                        None), STEP_SECONDS, what)
    except DrillError as exc:  # the check records why it failed
        checks.expect("the order ended on the simulator", False, str(exc))
        return None
    cycles = len(stage.events("cycle_completed"))
    stage.wait_status(lambda s: len(stage.events("cycle_completed")) >= cycles + 3, STEP_SECONDS,
                      "the executor did not go on cycling after the order")
    return dict(order)


def _sim_count(stage: Stage, checks: Checks, expected: int) -> None:
    orders = stage.sim_orders()
    checks.expect(f"{expected} order(s) on the simulator", len(orders) == expected,
                  f"{len(orders)} orders on the simulator: {[o['clientOrderId'] for o in orders]}")


def _timeout_after_accept(stage: Stage, checks: Checks) -> None:
    order = _one_order(stage, checks, "the order taken before the timeout did not fill")
    if order is None:
        return
    _alive(stage, checks)
    _sim_count(stage, checks, 1)
    # Asked for by its client order id while the executor runs: its order ends as the exchange's did, within a
    # few cycles (read from the state it publishes after each change).
    cid = order["clientOrderId"]

    def settled() -> dict[str, Any] | None:
        mine = stage.published_orders().get(cid)
        return mine if mine is not None and mine["status"] not in ("submitting", "unknown") else None

    try:
        mine: dict[str, Any] | None = wait_until(settled, RESOLVE_SECONDS, "still unresolved")
    except DrillError:  # the check records what was seen
        mine = stage.published_orders().get(cid)
    status = mine["status"] if mine is not None else "missing"
    resolved = [entry["fields"] for entry in stage.events("order_resolved") if cid in str(entry["fields"])]
    checks.expect("resolved by client order id", status == "filled" and bool(resolved),
                  f"the executor's order {cid} is {status} after the simulator's order was {order['status']} (the "
                  f"reply timed out after 3 s); order_resolved: {resolved}")


def _partial_fill(stage: Stage, checks: Checks) -> None:
    order = _one_order(stage, checks, "the partly filled order did not end")
    if order is None:
        return
    _alive(stage, checks)
    _sim_count(stage, checks, 1)
    part = float(order["executedQty"])
    checks.expect("partly filled on the simulator", order["status"] == "EXPIRED" and 0 < part < float(order["origQty"]),
                  f"simulator: {order['status']}, {order['executedQty']} of {order['origQty']}")
    cid = order["clientOrderId"]
    filled = [entry["fields"] for entry in stage.events("order_filled") if entry["fields"].get("client_order_id") == cid]
    ended = [entry["fields"] for entry in stage.events("order_expired") if entry["fields"].get("client_order_id") == cid]
    checks.expect("the part journaled as filled, the rest as expired",
                  len(filled) == 1 and abs(float(filled[0].get("quantity", 0)) - part) < 1e-9 and len(ended) == 1
                  and abs(float(ended[0].get("filled_quantity") or 0) - part) < 1e-9,
                  f"order_filled {filled}; order_expired {ended}")


def _rejection(stage: Stage, checks: Checks) -> None:
    _one_order(stage, checks, "no order filled after the rejection")
    _alive(stage, checks)
    _sim_count(stage, checks, 1)
    rejected = stage.events("order_rejected")
    checks.expect("rejection journaled with the exchange's reason",
                  any("insufficient balance" in str(entry["fields"]) for entry in rejected),
                  f"order_rejected: {[entry['fields'] for entry in rejected]}")


def _restart_resolves(stage: Stage, checks: Checks) -> None:
    stage.start_executor(EXECUTOR_OPTIONS)
    try:
        status = stage.wait_status(lambda s: s.get("reconciliation") is not None, STEP_SECONDS,
                                   "the restarted executor did not reconcile")
    except DrillError as exc:  # the check records why it failed
        checks.expect("restart reconciles", False, str(exc))
        return
    outcome = status["reconciliation"].get("outcome")
    checks.expect("restart reconciles", outcome == "clean" and not status.get("safe_mode"),
                  f"reconciliation {outcome}, safe mode {status.get('safe_mode')}: {status['reconciliation']}")
    # The restart's reconciliation asked for the order by client order id and applied the exchange's fills.
    fields = status["reconciliation"]
    settled = int(fields.get("completed") or 0) + int(fields.get("adopted") or 0)
    checks.expect("the in-flight order resolved by client order id", settled >= 1 and fields.get("fills_applied", 0) >= 1,
                  f"the restart's reconciliation asked about {fields.get('orders')} order(s): completed "
                  f"{fields.get('completed')}, adopted {fields.get('adopted')}, fills applied {fields.get('fills_applied')}")
    cycles = len(stage.events("cycle_completed"))
    stage.wait_status(lambda s: len(stage.events("cycle_completed")) >= cycles + 3, STEP_SECONDS,
                      "the restarted executor did not go on cycling")
    _sim_count(stage, checks, 1)
    _alive(stage, checks)


def _kill_9_in_flight(stage: Stage, checks: Checks) -> None:
    assert stage.executor is not None
    code = stage.wait_exit(STEP_SECONDS, "the executor did not reach its crash point")
    checks.expect("killed with the order in flight", code == -signal.SIGKILL,
                  f"the executor ended with {code} at its crash point (after the send, before the answer "
                  "was committed)")
    stage.record["injected"].append({"at": stage.record["processes"][-1]["at"], "signal": "SIGKILL",
                                     "by": "the executor's crash point submitted:1"})
    _restart_resolves(stage, checks)


def _fills_while_down(stage: Stage, checks: Checks) -> None:
    fault_id = stage.record["injected"][0]["fault"]["id"]
    # The simulator counts the latency fault as used when the order request arrives; it then holds it 4 s.
    wait_until(lambda: not stage.fault_alive(fault_id), STEP_SECONDS, "the order request did not arrive")
    stage.signal_executor(signal.SIGKILL)
    code = stage.wait_exit(30, "the killed executor did not end")
    checks.expect("killed with the order in flight", code == -signal.SIGKILL, f"the executor ended with {code}")
    try:
        order = wait_until(lambda: next((o for o in stage.sim_orders() if o["status"] == "FILLED"), None),
                           STEP_SECONDS, "the order did not fill on the simulator")
        killed = _ms(stage.record["injected"][-1]["at"])
        when = int(order.get("updateTime") or order.get("time") or 0)
        checks.expect("filled while the executor was down", when >= killed,
                      f"{order['clientOrderId']} filled ({order['executedQty']}) {(when - killed) / 1000:+.2f} s "
                      "from the SIGKILL, before the restart")
    except DrillError as exc:  # the check records why it failed
        checks.expect("filled while the executor was down", False, str(exc))
    _restart_resolves(stage, checks)


_NO_CRASH = "no crash: the executor keeps running, and no crash is journaled"
_ONE = "exactly one order on the simulator per intent, and the ledger agrees with it"

#: Every drill by name, in the order ``--list`` shows them.
DRILLS: dict[str, Drill] = {drill.name: drill for drill in (
    Drill("exchange-down", "the exchange is in maintenance (503 to GET requests) for 6 s, across several cycles",
          (_NO_CRASH, "the outage is journaled (outage_started, outage_ended) and the cycles it passed before a "
           "newer boundary as cycle_missed, none of them decided",
           "/healthz turns 503 with the reason after the 2 s grace and 200 when it clears",
           "no crash counted (crash_count 0, no safe mode)", "orders fill again after the maintenance", _ONE),
          "flip", _exchange_down),
    Drill("rate-limit", "one GET request answered 429 with Retry-After: 3",
          (_NO_CRASH, "no request to the exchange until Retry-After has passed", "the outage is journaled",
           "orders fill again", _ONE), "flip", _rate_limit),
    Drill("ban", "the address is banned (418, first met by a GET request) for 4 s",
          (_NO_CRASH, "after the first 418 no request leaves until the ban ends", "the outage is journaled",
           "orders fill again", _ONE), "flip", _ban),
    Drill("clock-skew", "the exchange's clock jumps 30 s ahead (outside recvWindow)",
          (_NO_CRASH, "the offset is measured again and corrected: orders go on",
           "/status shows venue.clock_offset_ms near 30000", _ONE), "flip", _clock_skew),
    Drill("timeout-after-accept", "the exchange takes the first order, then never answers (the client times out)",
          (_NO_CRASH, "the order's outcome is asked for by client order id (order_resolved), never resent blind",
           "one order on the simulator", _ONE), "hold", _timeout_after_accept,
          faults=({"kind": "timeout", "mode": "hang", "hang_seconds": 6, "count": 1},)),
    Drill("partial-fill", "the first market order fills half, then expires",
          (_NO_CRASH, "the ledger books the part that filled, as the simulator did (order_filled, then order_expired)",
           "the remainder is not sent again: one order on the simulator", _ONE), "hold", _partial_fill,
          faults=({"kind": "partial_fill", "parts": 2, "interval": 1, "count": 1},)),
    Drill("rejection", "the exchange refuses the first order (-2010 insufficient balance)",
          (_NO_CRASH, "the order is rejected in the ledger and journaled with the exchange's reason",
           "the next cycle's order fills: one order on the simulator", _ONE), "hold", _rejection,
          faults=({"kind": "reject", "count": 1},)),
    Drill("kill-9-in-flight", "SIGKILL right after the first order was sent, before its answer was committed "
          "(crash point submitted:1); then a restart",
          ("the executor dies with the order in flight", "the restart asks for it by client order id "
           "(order_resolved) and reconciles clean", "one order on the simulator", _ONE), "hold", _kill_9_in_flight,
          env={KILL_AT_ENV: "submitted:1"}),
    Drill("fills-while-down", "the first order is held 4 s by the exchange; the executor is SIGKILLed meanwhile and "
          "the order fills while it is down; then a restart",
          ("the order fills on the simulator with no executor running", "the restart resolves it by client order "
           "id and reconciles clean (balances included)", "one order on the simulator", _ONE), "hold",
          _fills_while_down,
          faults=({"kind": "latency", "seconds_delay": 4, "path": "/api/v3/order", "method": "POST", "count": 1},)),
)}

"""Reconciliation: the ledger's orders and positions against what the venue says, before the first decision.

Run at start-up (``daemon/runner.py``) and by hand (``tradeexecutor reconcile``). Four passes:

1. **Orders.** Every order the venue may know (``submitting``, ``unknown``, ``open``,
   ``partially_filled``) is looked up by its client order id (``OrderRouter.resolve_order``):
   found → *adopted* — its fills not yet applied are applied (fills that happened while the
   executor was down, or of an order whose answer never came) and it takes the venue's status
   (*completed* when that is terminal). Not found, two cases:

   - an order whose submit never got a reply (``submitting`` or ``unknown``, no exchange order id) is
     **never sent here**: one "does not exist" may be the exchange's lag (Binance answers -2013 for
     moments after it accepted an order), and a market order it filled is no longer open, so it would
     take the same client order id again — a second order after a kill -9 and a quick restart. At
     start-up it is left ``unknown`` (*pending*, no mismatch): the running executor's settle path asks
     again at every job under the lag rule (``NotFoundAnswers``: ``LOST_AFTER_ANSWERS`` answers over
     ``LOST_AFTER``) and sends it, under the same id, only once the rule says it never arrived — or adopts
     it if it shows up. By hand it is reported *unsent* and left as it is (the executor does the same).
   - an order the venue had accepted (it has the exchange's order id) → marked ``unknown`` for a person,
     a **mismatch**, on one look. The lag could explain a "does not exist" only for a restart within
     moments of the acceptance, and for such an order a false mismatch is not free: the order
     (an open limit order the lag hid, say) becomes ``unknown`` and is no longer followed — its fills are not
     booked and no stop is armed for them — until a person runs ``tradeexecutor reconcile``, which adopts it
     if the exchange shows it (``resolve_order`` takes any order it finds); the start is in safe mode
     meanwhile, which alerts. Nothing is ever sent again for it and no money changes by itself. Waiting
     here instead would hold up the start-up, and following an order the exchange may have lost for good
     is what the mismatch asks a person to decide.

   An order the venue reports having filled more than the fills it lists (its trade list trailing its status:
   filled, or cancelled with a part filled, while ``myTrades`` does not list every trade yet) is **unbooked**
   (``Unbooked``): the venue's report is handed to the router (``OrderRouter.resolve_report``), which books the
   fills listed and leaves it working (``partially_filled``, the exchange's words its reason), never ended short;
   the venue follows it and books the rest as the exchange lists them. Pass 3 bounds its assets by exactly the
   part not booked. An order found cancelled whose
   cancel an earlier process asked for (its ``order_cancel_requested`` line, ``cancels_asked``) is
   journaled ``order_cancelled`` with the request's reason, as the running executor would have.
2. **Open orders on the exchange.** Those carrying this run's client-id prefix (``te<run8>-``) are
   ours: already adopted by pass 1 when the ledger has them open. One the ledger does not hold at all
   is **adopted** (the ledger commits every order before sending it, so only a restored backup — or a
   second executor on the same run — can leave one it does not know): recorded as the exchange reports it
   (its client and exchange ids, side, type, quantity, limit price, status) with the purpose its id's last
   letter gives (``parse_client_order_id``), its fills booked (the exchange's record of what happened to our
   orders, as pass 1 books them: not fixing money), and followed from then on like any order the executor
   sent (the running executor journals its fills, arms its position's stops for them, and may cancel it; a
   position adoption opens has no stop-loss or take-profit of its own — the id does not carry the decision's
   levels — until the strategy sets them; a note, and the ``order_adopted`` line's ``note``, say so). Where
   it goes (``_placement``): an exit whose id names a position (``p<position>``, a trigger's or operator's)
   into that position when the ledger holds it open; an order that opens exposure into a new position for its
   instrument (an increase into the instrument's one open position when there is one); one that reduces
   or closes into the instrument's one open position. One that cannot be placed (no such position,
   several, one open already for an opening order, a side its purpose cannot have, an instrument the
   strategy does not trade, a type the venue does not map: never guessed) stays a **mismatch** with the
   reason; so does one the ledger holds *ended* while the exchange shows it open (the ledger contradicts the exchange). Each adoption is journaled
   ``order_adopted`` and committed with its fills and the ``reconciled`` line. Other orders on the
   account (a person's, another bot's) are listed and ignored. Passes 3 and 4 come after adoption, with the
   adopted orders' fills booked, and are as strict as ever: a ledger behind the account (a restored backup)
   still differs from it in the fills of the orders it does not hold that have *ended* — nothing adopts
   those — and that is a mismatch, safe mode.
3. **Balances.** For each asset the positions hold (by each instrument's base asset), the venue's
   balance (free plus locked) is compared with the open positions' quantity less the fees taken in
   that asset; a difference beyond one lot step (the dust a close leaves behind) is a **mismatch**.
   The quote currency is a mismatch only when the account holds less than the executor's cash
   (an account may hold more than the executor was given). The assets an order left *pending* (or
   *unsent*, by hand) may have moved — it may have filled at the exchange unseen (the lag hides it) —
   are compared within what it could have done at most, with a note (``_pending_bounds``): a buy may have
   lowered the quote by its value (or quantity at its limit or last price) plus ``_PENDING_SLACK`` and only
   added base; a sell may have lowered the base by its quantity plus ``_PENDING_SLACK`` (a venue may take its fee
   in the base) and only added quote. A shortfall beyond
   that is a mismatch whatever the order did. The assets an *unbooked* order moved are compared with the ledger's
   figures moved by **exactly** its part not booked (``missing`` = what the exchange says filled less the fills
   booked), one-sided by direction (``_unbooked_bounds``): for a buy the base must be at least ours +
   missing·(1 − ``_PENDING_SLACK``) (a fee taken in the base) and at most ours + missing, the quote at least the cash
   less the part's value (the exchange's average price; without one what the order's value left, limit or last price
   allows, with a note) plus the slack; for a sell the base must be at most ours − missing and down to
   ours − missing·(1 + ``_PENDING_SLACK``) (a fee taken in the base), the quote at least the cash plus the part's
   value less the slack — each within the usual tolerance. A difference beyond that is a mismatch: the
   bound is not loosened to hide one. The fee assets of pass 4 get no starting figure while an order is
   pending (it may already have paid a fee in one); one that has a figure is compared within what the pending
   orders' fees could have taken of it (``_fee_allowance``, pass 4).
4. **Fee assets.** An asset that pays fees but is neither traded nor the quote (Binance's BNB):
   the ledger keeps what the account should hold of it (``Portfolio.fee_asset_balances``: the
   venue's balance when reconciliation saw it before any fee was paid in it, less every fee booked
   in it since). Holding less than that (beyond 1e-8 and float slack) is a **mismatch** — fees
   charged that the ledger does not have; holding more is a note (a top-up). Until a fee is paid
   in it, each reconciliation takes the venue's balance of every such asset as the starting figure
   (recording a figure the venue gives is not fixing money; it changes no cash or position).
   While an order is pending (it may have filled unseen, paying a fee in the asset) the figure may be lower by
   what its fee could have taken (``_fee_allowance``): per quote currency, at most ``_PENDING_FEE_SHARE`` of the
   most the pending orders in that quote could have traded (their value bound of pass 3), in units of the asset at
   the lowest price the ledger booked a fee in it at *in that quote* (``Fill.fee_price``, the only price of it the
   ledger holds, is the asset's price in its fill's quote: the exchange's ASSET/QUOTE ticker), summed over the
   quotes. Binance's fee is 0.1 % of the trade (0.075 % in BNB): the bound holds unless the asset's price fell
   below a twentieth of that lowest price. A pending order whose value cannot be bounded (neither a value nor a
   price), or whose quote no fee in the asset was ever booked in (no price of it in that quote), leaves the fee
   asset uncompared, with a note. A fee only lowers the asset: more is a note, as without a pending order.

Once the orders pending at start-up have settled (adopted or sent by the running executor's settle path), the
executor compares passes 3 and 4 again, strictly (``recheck_balances``): what start-up loosened or skipped for
them is compared with the ledger that now holds their fills. An *unbooked* order settles once the ledger has booked
what the exchange said it filled. An order in flight at that moment (``unconfirmed_orders``: a stop-loss's exit sent
during the lag, say) bounds it as at start-up, and so does one the ledger holds working that the exchange says filled
more of than is booked (asked about, nothing changed: a later order whose trades lag, bounded exactly as above); the
result names them (``bounded_by``, and ``unbooked``): the executor keeps the re-check armed and runs it again once
those orders have settled, until one runs with nothing in flight or unbooked — the strict comparison. Every run is
journaled (``balances_rechecked``, with ``bounded_by`` and ``unbooked``); a mismatch in any of them is journaled and puts the executor in safe mode, as at start-up;
nothing is fixed.

Applying the venue's fills is not "fixing money": they are the exchange's record of what
happened to our orders. Nothing else is changed — a mismatch is reported (``Reconciliation``,
written to ``reconciliation.json`` and journaled as ``reconciliation_mismatch``) and the executor
starts in safe mode with the reason; a person decides.

With no venue outside the process (the replay's simulated fills) there is nothing to compare:
the result is clean, with a note saying so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tradeexecutor.atomic import atomic_write_text
from tradeexecutor.engine.engine import EventSink
from tradeexecutor.engine.router import OrderRouter
from tradeexecutor.state import Order, OrderPurpose, OrderSide, OrderStatus, OrderType, Position, State
from tradeexecutor.state.client_id import ClientOrderIdParts, parse_client_order_id, run_key
from tradeexecutor.venue.model import NotFoundAnswers, OrderReport, Venue

__all__ = ["BalanceCheck", "ExchangeOrder", "Mismatch", "OrderCheck", "Reconciliation", "Unbooked",
           "journal_reconciliation", "recheck_balances", "reconcile", "unconfirmed_orders", "write_reconciliation"]

#: Why an order whose submit never got a reply, and that the venue does not know at start-up, is left unknown.
_PENDING_REASON = ("the venue does not know it at start-up and its submit never got a reply (maybe the exchange's "
                   "lag): left unknown, asked again at every job, sent only once the exchange's answer has lasted")

#: Relative slack of the balance comparison on top of one lot step (float sums of many fills).
_RELATIVE = 1e-9


@dataclass(frozen=True)
class Mismatch:
    """One difference between the ledger and the venue, in words for a person, with what it concerns."""

    #: What differs, one line.
    what: str
    #: The symbol or asset concerned.
    symbol: str
    #: The ledger's figure and the venue's, for balances; the order's client id for orders.
    ours: float | None = None
    venue: float | None = None
    client_order_id: str | None = None


@dataclass(frozen=True)
class OrderCheck:
    """One ledger order asked about by client order id."""

    client_order_id: str
    symbol: str
    #: Its status in the ledger before, and after reconciliation.
    before: str
    after: str
    #: ``adopted`` (the venue has it, still working), ``completed`` (the venue ended it), ``pending`` (at start-up:
    #: the venue does not know it, its submit never got a reply; left ``unknown`` for the executor's settle path),
    #: ``unsent`` (the same, by hand: only reported), ``missing`` (a mismatch), ``unbooked`` (the venue says it
    #: filled more than its trades list yet: followed, the balances bounded by that part; ``Unbooked``).
    action: str
    #: Fills applied from the venue by this reconciliation.
    fills_applied: int = 0


@dataclass(frozen=True)
class ExchangeOrder:
    """An order open on the exchange that pass 1 did not cover."""

    client_order_id: str
    symbol: str
    side: str
    status: str
    #: ``ignored`` (not ours), ``adopted`` (ours, not in the ledger: recorded and followed from now on) or
    #: ``mismatch`` (ours, and the ledger has it ended, or it could not be placed in a position: ``reason``).
    action: str
    #: The position an order recorded by adoption went into: an adopted one, or one adopted and then not found by its
    #: lookup (a ``mismatch``, left unknown in the ledger); None for an order the ledger does not record.
    position_id: int | None = None
    #: Fills of an adopted order the exchange had made already, booked at adoption.
    fills_applied: int = 0
    #: Why an order of ours is a mismatch.
    reason: str | None = None

    @property
    def recorded(self) -> bool:
        """Whether adoption recorded it in the ledger (the state changed: committed with its ``order_adopted``)."""
        return self.position_id is not None


@dataclass(frozen=True)
class Unbooked:
    """An order the exchange says filled more of than the ledger has booked: the trades it lists trail its order
    status (Binance's trade list by moments; an exchange's bug for longer). The account already holds what the
    missing part moved, the ledger does not: the balances of its assets are compared with the ledger's figures moved
    by **exactly** that part (``_unbooked_bounds``), not loosened. Not a mismatch: the order stays followed, its fills
    are booked as the exchange lists them, and the executor then compares the balances again, strictly
    (``recheck_balances``)."""

    client_order_id: str
    symbol: str
    side: str
    #: The exchange's status of it: ``filled``, ``cancelled`` or ``expired`` when it ended it; working else.
    exchange_status: str
    #: What the exchange says it filled, what the ledger has booked of it, and the difference.
    filled: float
    booked: float
    missing: float
    #: The exchange's average price of all its fills; None when it gives none.
    average_price: float | None
    #: The quote value of the part not booked (what the exchange says it traded less the fills booked); None without
    #: an average price (then bounded by the order's value, limit or last price, with a note).
    missing_value: float | None


@dataclass(frozen=True)
class BalanceCheck:
    """One asset: what the ledger expects the account to hold and what the venue says."""

    asset: str
    ours: float
    venue: float
    #: How far apart they may be.
    tolerance: float
    #: ``position`` (a base asset the positions hold), ``quote`` (the executor's cash) or ``fee`` (an asset that
    #: pays fees, neither traded nor the quote: Binance's BNB).
    kind: str
    ok: bool
    #: The range the venue's figure had to be in, tolerance included, when an order's fills not yet booked
    #: (``Unbooked``) moved it: the ledger's figure moved by exactly that part. None: within ``tolerance`` of ``ours``
    #: (or of what a pending order could have moved).
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Reconciliation:
    """The outcome of one reconciliation; ``clean`` unless ``mismatches`` has a line."""

    at: datetime
    venue: str
    orders: tuple[OrderCheck, ...] = ()
    exchange_orders: tuple[ExchangeOrder, ...] = ()
    balances: tuple[BalanceCheck, ...] = ()
    #: Every difference found, for a person (nothing was changed because of them).
    mismatches: tuple[Mismatch, ...] = ()
    #: Facts that are no mismatch (nothing to compare with a simulated venue, orders left to send).
    notes: tuple[str, ...] = ()
    #: Whether it changed the state (fills applied, statuses taken, orders adopted): the caller commits then.
    changed: bool = False
    #: The client order ids of the orders that may have filled unseen (pending at start-up, in flight at a re-check)
    #: and of those whose fills the exchange has not all listed (``unbooked``): the balances they may have moved were
    #: compared within bounds. Empty: every balance was compared strictly.
    bounded_by: tuple[str, ...] = ()
    #: The orders the exchange says filled more of than the ledger has booked (its trade list lagging): the balances
    #: of their assets were compared with the ledger's figures moved by exactly the part not booked.
    unbooked: tuple[Unbooked, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.mismatches

    @property
    def outcome(self) -> str:
        """``clean`` or ``mismatch``."""
        return "clean" if self.clean else "mismatch"

    @property
    def reason(self) -> str:
        """The safe-mode reason: every mismatch in one line."""
        return ("reconciliation with the venue found a mismatch (nothing was changed): "
                + "; ".join(m.what for m in self.mismatches))

    def summary(self) -> dict[str, Any]:
        """What /status and the journal's ``reconciled`` line show: outcome, when, counts."""
        return {"outcome": self.outcome, "at": self.at.isoformat(), "venue": self.venue,
                "orders": len(self.orders), "adopted": sum(o.action == "adopted" for o in self.orders),
                "completed": sum(o.action == "completed" for o in self.orders),
                "pending": sum(o.action in ("pending", "unsent") for o in self.orders),
                "unbooked": [u.client_order_id for u in self.unbooked],
                "fills_applied": (sum(o.fills_applied for o in self.orders)
                                  + sum(o.fills_applied for o in self.exchange_orders)),
                "exchange_orders_adopted": sum(o.action == "adopted" for o in self.exchange_orders),
                "exchange_orders_ignored": sum(o.action == "ignored" for o in self.exchange_orders),
                "bounded_by": list(self.bounded_by), "mismatches": [m.what for m in self.mismatches]}

    def to_dict(self) -> dict[str, Any]:
        """The whole record, JSON-safe, as reconciliation.json holds it."""
        return {"outcome": self.outcome, "at": self.at.isoformat(), "venue": self.venue,
                "mismatches": [vars_of(m) for m in self.mismatches], "notes": list(self.notes),
                "bounded_by": list(self.bounded_by),
                "unbooked": [vars_of(u) for u in self.unbooked],
                "orders": [vars_of(o) for o in self.orders],
                "exchange_orders": [vars_of(o) for o in self.exchange_orders],
                "balances": [vars_of(b) for b in self.balances]}


def vars_of(record: Any) -> dict[str, Any]:
    """A frozen record's fields as a dict (the records hold only JSON-safe values)."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def reconcile(state: State, venue: Venue | None, *, commit: Callable[[], None], now: Callable[[], datetime],
              at_start: bool = True, symbols: Sequence[str] = (), journal: EventSink | None = None,
              cancels_asked: Iterable[Mapping[str, Any]] = ()) -> Reconciliation:
    """Reconcile ``state`` with ``venue`` (see the module docstring); ``commit`` makes the state durable.

    ``at_start``: the executor's start-up, which leaves an order the venue does not know and that never got a reply
    ``unknown`` for its settle path (``pending``); by hand (False) it is only reported (``unsent``). Neither sends
    anything. ``symbols`` are the strategy's instruments, whose base assets are compared
    too when the ledger has no position in them yet (a fresh state holds none: the account should not either), and the
    only instruments an order of ours found on the exchange is adopted in (none given, by hand: the ledger's). A venue
    that fails temporarily raises TemporaryError (nothing decided yet, nothing committed).
    ``journal`` (the job's) gets each ``order_adopted`` line and the outcome (``journal_reconciliation``) before the
    last commit, so a kill -9 never leaves fills applied here in the ledger without the lines that count them. ``cancels_asked``: the
    fields of the journal's ``order_cancel_requested`` lines (``Ledger.journaled``): an order found cancelled whose
    cancel was asked for is journaled ``order_cancelled`` with that request's reason.
    """
    at = now()
    if venue is None:
        return Reconciliation(at=at, venue="simulated", notes=(
            "fills are simulated inside the executor: there is no venue outside it to compare with",))
    router = OrderRouter(state, venue, commit, now, NotFoundAnswers.one_look())
    reasons = {str(f.get("client_order_id")): str(f.get("reason") or "") for f in cancels_asked}
    orders: list[OrderCheck] = []
    mismatches: list[Mismatch] = []
    notes: list[str] = []
    changed = False
    unbooked: list[tuple[Position, Order, Unbooked]] = []
    for position, order in router.pending():
        before, fills = order.status.value, len(order.fills)
        report = venue.fetch_order(order.client_order_id)  # one look: never sent from here
        # The report is kept: what the exchange says filled bounds the balances while its trades are not all listed.
        resolution = router.resolve_report(position, order, report, send=False)
        symbol = state.instrument(order.instrument_id).symbol
        missing = _unbooked(symbol, order, report)
        if resolution == "unsent" and at_start:
            if order.status is OrderStatus.submitting:  # asked about again by the running executor's settle path
                order.transition(OrderStatus.unknown, at, _PENDING_REASON)
            action = "pending"
        elif resolution in ("unsent", "missing"):
            action = resolution
        elif missing is not None:
            action = "unbooked"
            unbooked.append((position, order, missing))
            notes.append(f"order {order.client_order_id} ({symbol}): {_unbooked_words(missing)}")
        else:
            action = "completed" if order.is_terminal else "adopted"
        applied = len(order.fills) - fills
        changed = changed or action != "unsent"
        orders.append(OrderCheck(order.client_order_id, symbol, before, order.status.value, action, applied))
        if action == "missing":
            mismatches.append(Mismatch(f"order {order.client_order_id} ({symbol}) was {before} in the ledger but the "
                                       "venue does not know it; it is now unknown", symbol,
                                       client_order_id=order.client_order_id))
        elif order.status is OrderStatus.cancelled and before != "cancelled" and order.client_order_id in reasons:
            if journal is not None:  # the cancel an earlier process asked for, confirmed while it was down
                journal("order_cancelled", order_id=order.id, client_order_id=order.client_order_id,
                        position_id=position.id, symbol=symbol, purpose=order.purpose.value,
                        reason=reasons[order.client_order_id])
        elif action == "unsent":
            notes.append(f"order {order.client_order_id} ({symbol}) is not known to the venue, and its submit never "
                         "got a reply; nothing was sent: the executor asks again and sends it only once the "
                         "exchange's answer has lasted (its lag), or adopts it if it shows up")
        elif action == "pending":
            notes.append(f"order {order.client_order_id} ({symbol}): {_PENDING_REASON}")
    exchange_orders = _exchange_orders(state, router, mismatches, notes, symbols, journal)
    changed = changed or any(o.recorded for o in exchange_orders)  # adopted, or adopted then lost: in the ledger
    # A pending order may have filled at the exchange (the very case the lag hides): the balances it may have moved
    # are compared within what it could have done at most — the running executor books its fills once it finds it.
    waiting = {c.client_order_id for c in orders if c.action in ("pending", "unsent")}
    unsettled = [(p, o) for p, o in router.pending() if o.client_order_id in waiting]
    balances = _balances(state, venue, mismatches, symbols, unsettled, notes, unbooked)
    fee_checks, baselines = _fee_assets(state, venue, symbols, mismatches, notes,
                                        [*unsettled, *((p, o) for p, o, _ in unbooked)])
    balances += fee_checks
    changed = changed or bool(baselines)
    result = Reconciliation(at=at, venue=venue.name, orders=tuple(orders), exchange_orders=tuple(exchange_orders),
                            balances=tuple(balances), mismatches=tuple(mismatches), notes=tuple(notes),
                            changed=changed, bounded_by=_bounded_by(unsettled, unbooked),
                            unbooked=tuple(u for _, _, u in unbooked))
    if journal is not None:  # before the commit: the fills applied and the line that counts them, in one transaction
        journal_reconciliation(result, journal)
    if changed:
        commit()
    return result


#: The statuses of an order sent (or being sent) whose reply has not come: it may have filled unseen.
_IN_FLIGHT = frozenset({OrderStatus.submitting, OrderStatus.unknown})


def unconfirmed_orders(state: State) -> list[tuple[Position, Order]]:
    """The open positions' orders sent (or being sent) whose reply has not come — ``submitting`` or ``unknown``, no
    exchange id: they may have filled unseen, so the balances they may have moved can only be compared within bounds
    (a stop-loss's exit sent during the exchange's lag, say)."""
    return [(p, o) for p in state.portfolio.open_positions for o in p.orders
            if o.status in _IN_FLIGHT and not o.venue_order_id]


def recheck_balances(state: State, venue: Venue, *, now: Callable[[], datetime], symbols: Sequence[str] = ()
                     ) -> Reconciliation:
    """Passes 3 and 4 again, strictly, once the orders start-up left pending have settled (the running executor's
    settle path adopted or sent them): the balances they loosened or skipped are compared with the ledger that now
    holds their fills. A fee asset still without a figure takes the account's now (start-up could not). The orders
    the ledger holds working with an exchange id are asked about (``_unbooked_working``), nothing changed: one whose
    fills the exchange has not all listed bounds its assets by exactly that part and is named (``unbooked``,
    ``bounded_by``) — the caller compares again once it is booked. Nothing is changed but a fee asset's figure, and
    the caller commits when ``changed``. A venue that
    fails temporarily raises TemporaryError. An order in flight at this moment (``unconfirmed_orders``: a
    stop-loss's exit sent during the lag, say) may have filled unseen: the balances it may have moved are compared
    within the same bounds as at start-up, not strictly (a strict comparison then is a false safe mode), and the
    result names it (``bounded_by``): the caller compares again once it has settled."""
    mismatches: list[Mismatch] = []
    notes: list[str] = []
    unsettled = unconfirmed_orders(state)
    unbooked = _unbooked_working(state, venue, notes)
    balances = _balances(state, venue, mismatches, symbols, unsettled, notes, unbooked)
    fee_checks, baselines = _fee_assets(state, venue, symbols, mismatches, notes,
                                        [*unsettled, *((p, o) for p, o, _ in unbooked)])
    return Reconciliation(at=now(), venue=venue.name, balances=tuple(balances + fee_checks),
                          mismatches=tuple(mismatches), notes=tuple(notes), changed=baselines,
                          bounded_by=_bounded_by(unsettled, unbooked), unbooked=tuple(u for _, _, u in unbooked))


def _bounded_by(unsettled: Sequence[tuple[Position, Order]], unbooked: Sequence[tuple[Position, Order, Unbooked]]
                ) -> tuple[str, ...]:
    """The client order ids that bounded a comparison: the orders that may have filled unseen, then the unbooked."""
    return tuple(dict.fromkeys([*(o.client_order_id for _, o in unsettled),
                                *(u.client_order_id for _, _, u in unbooked)]))


def _unbooked(symbol: str, order: Order, report: OrderReport | None) -> Unbooked | None:
    """The part of ``order`` the exchange says filled (``report``) that the ledger has not booked, once the fills
    it lists are; None when the booked fills add up (or it does not know the order)."""
    if report is None or order.is_terminal:
        return None
    booked = order.filled_quantity
    if booked >= report.filled_quantity - 1e-9 * max(1.0, report.filled_quantity):
        return None
    value = None
    if report.average_price:  # the average of all its fills: what they traded, less what the fills booked did
        booked_value = sum(f.quantity * f.price for f in order.fills)
        value = max(0.0, report.filled_quantity * report.average_price - booked_value)
    return Unbooked(order.client_order_id, symbol, order.side.value, (report.ended or report.status).value,
                    report.filled_quantity, booked, report.filled_quantity - booked, report.average_price, value)


def _unbooked_words(unbooked: Unbooked) -> str:
    """A note for a person: what the exchange says of an unbooked order, and what happens now."""
    return (f"the exchange says it filled {unbooked.filled:g} ({unbooked.exchange_status} there), the ledger has "
            f"booked {unbooked.booked:g}: its trades are not all listed yet. Its balances are compared with the "
            f"ledger's moved by the {unbooked.missing:g} not booked; the executor follows it, books the fills as the "
            "exchange lists them, then compares again strictly")


#: Statuses of an order the venue holds and we hold as working: what a re-check asks the venue about.
_HELD = frozenset({OrderStatus.submitting, OrderStatus.unknown, OrderStatus.open, OrderStatus.partially_filled})


def _unbooked_working(state: State, venue: Venue, notes: list[str]) -> list[tuple[Position, Order, Unbooked]]:
    """At a re-check: each order the ledger holds working with an exchange id, asked about (``fetch_order``, nothing
    changed), whose fills the exchange has not all listed yet (a later order whose trades lag): its balances are
    bounded by exactly the part not booked, as at start-up, and the re-check stays armed until it is booked."""
    found = []
    for position in state.portfolio.open_positions:
        for order in position.orders:
            if order.status in _HELD and order.venue_order_id:
                symbol = state.instrument(order.instrument_id).symbol
                missing = _unbooked(symbol, order, venue.fetch_order(order.client_order_id))
                if missing is not None:
                    found.append((position, order, missing))
                    notes.append(f"order {order.client_order_id} ({symbol}): {_unbooked_words(missing)}")
    return found


def _exchange_orders(state: State, router: OrderRouter, mismatches: list[Mismatch], notes: list[str],
                     symbols: Sequence[str], journal: EventSink | None) -> list[ExchangeOrder]:
    """Pass 2: open orders on the exchange that are not ledger orders still working. Ours that the ledger does not
    hold at all are adopted (``_adopt``; a position one opens is a note); ours that it holds ended, or that cannot be
    placed, are mismatches; others' are listed."""
    state_key = run_key(state.name, state.created_at)
    prefix = f"te{state_key}-"
    working = {o.client_order_id for p in state.portfolio.open_positions for o in p.orders if not o.is_terminal}
    held: dict[str, Order] | None = None  # every ledger order by client id, read only when an order of ours needs it
    found = []
    # Exits naming a position first: a position adoption opens takes the ledger's next id, which the history the
    # ledger lost may have given another position — an exit of that one must not land in the new one.
    reports = [(r, parse_client_order_id(r.client_order_id)) for r in router.venue.open_orders()]
    for report, parts in sorted(reports, key=lambda pair: pair[1] is None or pair[1].position_id is None):
        cid = report.client_order_id
        if cid in working:
            continue
        if not cid.startswith(prefix):
            found.append(ExchangeOrder(cid, report.symbol, report.side.value, report.status.value, "ignored"))
            continue
        if held is None:
            held = {o.client_order_id: o for o in state.portfolio.all_orders()}
        ended = held.get(cid)
        if ended is not None:
            reason = f"the ledger has it {ended.status.value}"
        elif parts is None or parts.run != state_key:
            reason = "its id is not one this executor makes"
        else:
            placed = _placement(state, report, parts, symbols)
            if not isinstance(placed, str):
                adopted = _adopt(state, router, report, parts, placed, notes, journal)
                found.append(adopted)
                working.add(cid)
                if adopted.reason is not None:
                    mismatches.append(_ours_open(report, adopted.reason))
                continue
            reason = f"it could not be adopted: {placed}"
        found.append(ExchangeOrder(cid, report.symbol, report.side.value, report.status.value, "mismatch",
                                   reason=reason))
        mismatches.append(_ours_open(report, reason))
    return found


def _ours_open(report: OrderReport, reason: str) -> Mismatch:
    """The mismatch of an order of ours open on the exchange that the ledger does not follow, and why."""
    return Mismatch(f"order {report.client_order_id} ({report.symbol}) is open on the exchange with this run's "
                    f"client-id prefix, but {reason}", report.symbol, client_order_id=report.client_order_id)


#: Why an order is adopted, in its ``order_adopted`` line.
_ADOPTED = "open on the exchange with this run's prefix, not in the ledger"


def _placement(state: State, report: OrderReport, parts: ClientOrderIdParts, symbols: Sequence[str]
               ) -> Position | str | None:
    """Where an order of ours that the ledger does not hold goes: its position, None for a new one, or why it cannot
    be placed. A position's exit (``p<position>`` in its id) goes into that position; an order that opens exposure
    (open, increase) into a new position — an increase into the instrument's one open position when there is one —
    and one that reduces or closes into the instrument's one open position."""
    symbol = report.symbol
    instrument = state.instrument_by_symbol(symbol)
    if instrument is None or (symbols and symbol not in symbols):
        return f"the strategy does not trade {symbol}"
    if report.type is None:  # recorded as a guess (market), a stop order would lose what makes it one
        return "its type is not known: the exchange's type of it is not one the executor maps"
    if report.type in (OrderType.stop, OrderType.stop_limit) and report.stop_price is None:
        return "it is a stop order and the exchange does not say its stop price"
    buys = parts.purpose in (OrderPurpose.open, OrderPurpose.increase)
    if buys != (report.side is OrderSide.buy):
        return f"a {report.side.value} order cannot {parts.purpose.value} a long position (its id's last letter)"
    candidates = [p for p in state.portfolio.open_positions if p.instrument_id == instrument.id]
    if parts.position_id is not None:
        named = [p for p in candidates if p.id == parts.position_id]
        return named[0] if named else (f"its id names position {parts.position_id}, which the ledger does not hold "
                                       f"open in {symbol}")
    if len(candidates) > 1:
        return (f"the ledger holds {len(candidates)} open positions in {symbol} "
                f"({', '.join(str(p.id) for p in candidates)}): which one it belongs to is not known")
    if parts.purpose is OrderPurpose.open:
        return (f"it opens a position and the ledger holds position {candidates[0].id} open in {symbol} already"
                if candidates else None)
    if candidates:
        return candidates[0]
    if parts.purpose is OrderPurpose.increase:
        return None
    return f"it {parts.purpose.value}s a position and the ledger holds none open in {symbol}"


def _adopt(state: State, router: OrderRouter, report: OrderReport, parts: ClientOrderIdParts,
           position: Position | None, notes: list[str], journal: EventSink | None) -> ExchangeOrder:
    """Record an order of ours found open on the exchange in ``position`` (None: a new one for its instrument), as
    the exchange reports it, and bring it up to date as pass 1 does (``resolve_order``: its fills booked, its status
    taken; the venue follows it from here on); journaled ``order_adopted``.

    A new position has no stop-loss or take-profit: the order's id does not carry them and the decision that opened
    it is not taken again. That is a note (and the ``order_adopted`` line's ``note``), for a person to see."""
    portfolio = state.portfolio
    instrument = state.instrument_by_symbol(report.symbol)
    assert instrument is not None, "an order is placed only in an instrument the ledger holds"
    at = router.now()
    note: dict[str, str] = {}
    if position is None:
        position = Position(id=portfolio.next_position_id, instrument_id=instrument.id, opened_at=parts.at)
        portfolio.next_position_id += 1
        portfolio.open_positions.append(position)
        note["note"] = (f"position {position.id} ({report.symbol}) adopted without stops: the id of the order that "
                        "opened it does not carry its stop-loss or take-profit, and its decision is not taken again; "
                        f"close it by hand (tradeexecutor control URL close {position.id}) if it must not run "
                        "without them")
        notes.append(note["note"])
    assert report.type is not None, "an order of an unknown type is not placed (_placement)"
    order = Order(id=portfolio.next_order_id, client_order_id=report.client_order_id, position_id=position.id,
                  instrument_id=instrument.id, purpose=parts.purpose, side=report.side, created_at=parts.at,
                  type=report.type, quantity=report.quantity, limit_price=report.limit_price,
                  stop_price=report.stop_price,
                  venue_order_id=report.venue_order_id, updated_at=at)
    portfolio.next_order_id += 1
    position.orders.append(order)
    order.transition(OrderStatus.submitting, at, f"adopted: {_ADOPTED}")
    resolution = router.resolve_order(position, order, send=False)  # one look, nothing sent: fills and status taken
    lost = None
    if resolution in ("unsent", "missing"):  # gone between the two looks: left unknown for a person, as a lost order
        lost = "it was adopted, then its lookup by client order id did not find it: left unknown for a person"
        if order.status is OrderStatus.submitting:
            order.transition(OrderStatus.unknown, at, lost)
    if journal is not None:
        journal("order_adopted", order_id=order.id, client_order_id=order.client_order_id, position_id=position.id,
                symbol=report.symbol, purpose=order.purpose.value, side=order.side.value, status=order.status.value,
                fills_applied=len(order.fills), reason=_ADOPTED, **note)
    return ExchangeOrder(order.client_order_id, report.symbol, report.side.value, order.status.value,
                         "mismatch" if lost else "adopted", position_id=position.id, fills_applied=len(order.fills),
                         reason=lost)


def _balances(state: State, venue: Venue, mismatches: list[Mismatch], extra: Sequence[str],
              unsettled: Sequence[tuple[Position, Order]], notes: list[str],
              unbooked: Sequence[tuple[Position, Order, Unbooked]] = ()) -> list[BalanceCheck]:
    """Pass 3: each base asset the positions hold, and the quote currency, against the venue's balances. The assets
    an ``unsettled`` order (pending: it may have filled unseen) may have moved are compared within what it could have
    done at most (``_pending_bounds``), with a note; those an ``unbooked`` order moved, with the ledger's figure moved
    by exactly its part not booked (``_unbooked_bounds``)."""
    symbols = sorted({state.instrument(p.instrument_id).symbol for p in state.portfolio.open_positions}
                     | {i.symbol for i in state.instruments} | set(extra))
    specs = venue.instruments(symbols)
    held = venue.balances()
    expected: dict[str, float] = {}
    steps: dict[str, float] = {}
    for symbol in symbols:
        spec = specs.get(symbol)
        if spec is None:
            continue
        expected.setdefault(spec.base, 0.0)
        steps[spec.base] = max(steps.get(spec.base, 0.0), spec.lot_step)
    for position in state.portfolio.open_positions:
        spec = specs.get(state.instrument(position.instrument_id).symbol)
        if spec is None:
            symbol = state.instrument(position.instrument_id).symbol
            mismatches.append(Mismatch(f"position {position.id} trades {symbol}, which {venue.name} does not list",
                                       symbol))
            continue
        expected[spec.base] += position.quantity  # net of fees taken in the base asset (accounting.apply_fill)
    below, above, unbounded = _pending_bounds(state, specs, unsettled)
    for asset in sorted(set(below) | above | unbounded):
        notes.append(f"{asset}: compared within what a pending order in it could have moved unseen (it may have "
                     "filled at the exchange); the executor books its fills once the exchange shows it")
    shifts, loose = _unbooked_bounds(state, specs, unbooked, notes)
    unbounded |= loose
    named = ", ".join(u.client_order_id for _, _, u in unbooked)
    checks = []
    for asset, ours in sorted(expected.items()):
        if asset in unbounded:
            continue
        balance = held.get(asset)
        theirs = (balance.free + balance.locked) if balance is not None else 0.0
        tolerance = steps.get(asset, 0.0) + _RELATIVE * max(abs(ours), abs(theirs))
        if asset in shifts:  # exactly the part of an order the exchange filled that the ledger has not booked
            least, most = shifts[asset]
            low, high = ours + least - below.get(asset, 0.0) - tolerance, ours + most + tolerance
            ok = low <= theirs and (asset in above or theirs <= high)
            checks.append(BalanceCheck(asset, ours, theirs, tolerance, "position", ok, low,
                                       None if asset in above else high))
            if not ok:
                mismatches.append(Mismatch(
                    f"{asset}: the venue holds {theirs:g}, the positions {ours:g}, and {least:+g} to {most:+g} of "
                    f"it the exchange says order(s) {named} filled that the ledger has not booked yet: between "
                    f"{low:g} and {high if asset not in above else math.inf:g} expected", asset, ours, theirs))
            continue
        ok = ours - below.get(asset, 0.0) - tolerance <= theirs and (asset in above or theirs <= ours + tolerance)
        checks.append(BalanceCheck(asset, ours, theirs, tolerance, "position", ok))
        if not ok:
            mismatches.append(Mismatch(f"{asset}: the venue holds {theirs:g}, the positions {ours:g} "
                                       f"(tolerance {tolerance:g})", asset, ours, theirs))
    quotes = sorted({spec.quote for spec in specs.values()})
    if len(quotes) == 1 and quotes[0] not in unbounded:
        quote = quotes[0]
        balance = held.get(quote)
        theirs = (balance.free + balance.locked) if balance is not None else 0.0
        ours = state.portfolio.cash
        tolerance = 0.01 + _RELATIVE * max(abs(ours), abs(theirs))
        least = shifts.get(quote, (0.0, math.inf))[0]
        low = ours + least - below.get(quote, 0.0) - tolerance
        ok = theirs >= low
        checks.append(BalanceCheck(quote, ours, theirs, tolerance, "quote", ok,
                                   low if quote in shifts else None))
        if not ok and quote in shifts:
            mismatches.append(Mismatch(
                f"{quote}: the venue holds {theirs:g}, less than the executor's cash {ours:g} {least:+g} the exchange "
                f"says order(s) {named} traded that the ledger has not booked yet (at least {low:g} expected)",
                quote, ours, theirs))
        elif not ok:
            mismatches.append(Mismatch(f"{quote}: the venue holds {theirs:g}, less than the executor's cash {ours:g}",
                                       quote, ours, theirs))
    return checks


def _unbooked_bounds(state: State, specs: Mapping[str, Any], unbooked: Sequence[tuple[Position, Order, Unbooked]],
                     notes: list[str]) -> tuple[dict[str, tuple[float, float]], set[str]]:
    """How the part of each ``unbooked`` order not booked moved the account, one-sided by direction: per asset the
    least and the most it moved it by (the quote's most is unbounded: an account may hold more than the executor's
    cash), and the quote currencies no bound is known for (not compared, with a note).

    With ``missing`` the quantity not booked and ``value`` its quote value (the exchange's average price of all
    the fills less the fills booked), and slack ``_PENDING_SLACK`` (a fee): a buy added between
    ``missing·(1 − slack)`` (a fee taken in the base) and ``missing`` of the base, and took between ``value`` and
    ``value·(1 + slack)`` (a fee in the quote) of the quote — at most the order's value left, or ``missing`` at its
    limit or last price, plus the slack, when the exchange gives no average price (a note says so); a sell took
    between ``missing`` and ``missing·(1 + slack)`` (a fee taken in the base) of the base and added at least
    ``value·(1 − slack)`` of the quote (``missing`` at its limit price less the slack without an average price;
    nothing for a market sell then)."""
    shifts: dict[str, tuple[float, float]] = {}
    unbounded: set[str] = set()

    def add(asset: str, least: float, most: float) -> None:
        before = shifts.get(asset, (0.0, 0.0))
        shifts[asset] = (before[0] + least, before[1] + most)

    for _, order, unbooked_order in unbooked:
        spec = specs.get(state.instrument(order.instrument_id).symbol)
        if spec is None:
            continue
        missing, value = unbooked_order.missing, unbooked_order.missing_value
        cid = unbooked_order.client_order_id
        if order.side is OrderSide.buy:
            add(spec.base, missing * (1 - _PENDING_SLACK), missing)
            if value is None:
                value, basis = _unbooked_spend(order, missing)
                if value is None:
                    unbounded.add(spec.quote)
                    notes.append(f"{spec.quote}: not compared — order {cid}'s fills are not all booked and the "
                                 "exchange gives no average price, nor has the order a value, limit or last price")
                    continue
                notes.append(f"{spec.quote}: the exchange gives no average price of order {cid}: compared within what "
                             f"its {basis} allows for the {missing:g} not booked ({value:g} and the slack)")
            add(spec.quote, -value * (1 + _PENDING_SLACK), math.inf)
        else:
            add(spec.base, -missing * (1 + _PENDING_SLACK), -missing)  # a fee the venue took in the base
            if value is None:
                value = missing * order.limit_price if order.limit_price else 0.0
                notes.append(f"{spec.quote}: the exchange gives no average price of order {cid}: its proceeds are "
                             + (f"taken as at least its limit price's ({value:g}, less the slack)" if value else
                                "not counted (a market sell: no price is known to bound them)"))
            add(spec.quote, value * (1 - _PENDING_SLACK), math.inf)
    return shifts, unbounded


def _unbooked_spend(order: Order, missing: float) -> tuple[float | None, str]:
    """The most a buy's ``missing`` quantity not booked cost, before the slack, without the exchange's average price:
    what is left of its value, or the quantity at its limit or last price; with what bounded it (None: nothing)."""
    if order.value is not None:
        return max(0.0, order.value - sum(f.quantity * f.price for f in order.fills)), "value left"
    if order.limit_price:
        return missing * order.limit_price, "limit price"
    if order.reference_price:
        return missing * order.reference_price, "last price"
    return None, ""


#: What a pending buy may have spent beyond its notional at the last known price (its fee and a market order's move
#: past that price), and what a pending sell may have taken of the base beyond its quantity (its fee, when the venue
#: takes it in the base); Binance's taker fee is 0.1 %.
_PENDING_SLACK = 0.02


def _pending_bounds(state: State, specs: Mapping[str, Any], unsettled: Sequence[tuple[Position, Order]]
                    ) -> tuple[dict[str, float], set[str], set[str]]:
    """What the pending orders could have moved unseen, at most: per asset how far below the ledger's figure the
    venue may be, the assets that may be above it without bound (a buy only adds base), and the assets no bound is
    known for (a buy with neither a value nor a price: not compared). A buy lowers the quote by at most its value
    (or quantity at its limit or last known price) plus ``_PENDING_SLACK``; a sell lowers the base by at most its
    quantity (or the position's, when it has none) plus ``_PENDING_SLACK`` (its fee in the base) and only adds quote."""
    below: dict[str, float] = {}
    above: set[str] = set()
    unbounded: set[str] = set()
    for position, order in unsettled:
        symbol = state.instrument(order.instrument_id).symbol
        spec = specs.get(symbol)
        if spec is None:
            continue
        if order.side is OrderSide.buy:
            above.add(spec.base)
            spend = _order_value(position, order)
            if spend is None:
                unbounded.add(spec.quote)
            else:
                below[spec.quote] = below.get(spec.quote, 0.0) + spend * (1 + _PENDING_SLACK)
        else:
            quantity = order.quantity if order.quantity is not None else position.quantity
            below[spec.base] = below.get(spec.base, 0.0) + quantity * (1 + _PENDING_SLACK)
    return below, above, unbounded


def _order_value(position: Position, order: Order) -> float | None:
    """The quote value an order trades at most before ``_PENDING_SLACK``: its value, or its quantity (a sell's
    position's, when it has none) at its limit or last known price; None when it has neither."""
    price = order.limit_price or order.reference_price
    quantity = order.quantity
    if quantity is None and order.side is OrderSide.sell:
        quantity = position.quantity
    if order.value is not None:
        return order.value
    return quantity * price if quantity is not None and price else None


def _pending_values(state: State, specs: Mapping[str, Any], unsettled: Sequence[tuple[Position, Order]]
                    ) -> dict[str, float] | None:
    """The most value the pending orders could have traded unseen, ``_PENDING_SLACK`` included, per quote currency
    (each order's value is in its own instrument's quote: what a fee in a third asset is a share of); None when one
    of them has no bound (``_order_value``) or trades an instrument the venue does not list (its quote unknown)."""
    totals: dict[str, float] = {}
    for position, order in unsettled:
        spec = specs.get(state.instrument(order.instrument_id).symbol)
        value = _order_value(position, order)
        if spec is None or value is None:
            return None
        totals[spec.quote] = totals.get(spec.quote, 0.0) + value * (1 + _PENDING_SLACK)
    return totals


#: The share of a pending order's value its fee in a third asset (BNB) may have taken, at most: Binance's fee is
#: 0.1 % of the trade (0.075 % paid in BNB), so twenty times that leaves room for the asset's price to have fallen
#: to a twentieth of the lowest price the ledger booked a fee in it at.
_PENDING_FEE_SHARE = 0.02


#: Absolute slack of the fee-asset comparison: the exchange's 8 decimals.
_FEE_ASSET_SLACK = 1e-8


def _fee_assets(state: State, venue: Venue, symbols: Sequence[str], mismatches: list[Mismatch],
                notes: list[str], unsettled: Sequence[tuple[Position, Order]] = ()
                ) -> tuple[list[BalanceCheck], bool]:
    """Pass 4: assets that pay fees in a third asset (BNB) against the ledger's figure; starting figures taken
    for such assets in which no fee was paid yet. Returns the checks and whether a starting figure was taken.
    ``unsettled``: the orders pending (they may have filled unseen, paying a fee): no starting figure is taken, and
    a figure is compared within what their fees could have taken (``_fee_allowance``)."""
    held = venue.balances()
    specs = venue.instruments(sorted({i.symbol for i in state.instruments} | set(symbols)))
    traded = {spec.base for spec in specs.values()} | {spec.quote for spec in specs.values()}
    # A fill's fee_price is the fee asset's price in *that fill's* quote (the ccxt venue reads the exchange's
    # ASSET/QUOTE ticker of the fill's market): kept per quote, never compared across quotes.
    quote_of = {i.id: specs[i.symbol].quote for i in state.instruments if i.symbol in specs}
    paid: set[str] = set()
    lowest: dict[tuple[str, str], float] = {}  # per (fee asset, quote), the lowest price a fee in it was booked at
    for order in state.portfolio.all_orders():
        quote = quote_of.get(order.instrument_id)
        for fill in order.fills:
            if fill.fee_price is not None:
                paid.add(fill.fee_currency)
                if fill.fee_price > 0 and quote is not None:
                    key = (fill.fee_currency, quote)
                    lowest[key] = min(fill.fee_price, lowest.get(key, fill.fee_price))
    pending = _pending_values(state, specs, unsettled)
    expected = state.portfolio.fee_asset_balances
    checks: list[BalanceCheck] = []
    taken = False
    for asset in sorted((set(held) | paid) - traded):
        balance = held.get(asset)
        theirs = (balance.free + balance.locked) if balance is not None else 0.0
        if asset not in paid or asset not in expected:
            if unsettled:  # a pending order may already have paid a fee in it unseen: no figure is taken now
                notes.append(f"{asset}: no starting figure taken — an order is pending (it may have paid a fee in it "
                             "unseen); taken at a later reconciliation")
                continue
            if asset in paid:  # fees were paid in it before any figure was known (none held at the last start)
                notes.append(f"{asset}: fees were paid in it before its balance was known; {theirs:g} at the venue "
                             "is taken as its figure from here")
            if theirs > 0 and expected.get(asset) != theirs:
                expected[asset] = theirs
                taken = True
            continue
        allowance = 0.0  # what a pending order's fee could have taken of it unseen
        if unsettled:
            allowance, unknown = _fee_allowance(asset, pending, lowest)
            if unknown:
                notes.append(f"{asset}: not compared — an order is pending (it may have paid a fee in it unseen) "
                             f"and no bound is known ({unknown})")
                continue
            notes.append(f"{asset}: compared within the {allowance:g} a pending order's fee could have taken of it "
                         "unseen (it may have filled at the exchange)")
        ours = expected[asset]
        tolerance = _FEE_ASSET_SLACK + _RELATIVE * max(abs(ours), abs(theirs))
        ok = theirs >= ours - allowance - tolerance
        checks.append(BalanceCheck(asset, ours, theirs, tolerance, "fee", ok))
        if not ok:
            mismatches.append(Mismatch(f"{asset}: the venue holds {theirs:g}, less than the {ours:g} the ledger expects "
                                       "after the fees paid in it", asset, ours, theirs))
        elif theirs > ours + tolerance:
            notes.append(f"{asset}: the venue holds {theirs:g}, more than the {ours:g} the ledger expects after the "
                         "fees paid in it (a top-up?)")
    return checks, taken


def _fee_allowance(asset: str, pending: Mapping[str, float] | None, lowest: Mapping[tuple[str, str], float]
                   ) -> tuple[float, str]:
    """What the pending orders' fees could have taken of ``asset`` at most, in units of it: per quote currency,
    ``_PENDING_FEE_SHARE`` of the value they could have traded in it (``pending``, ``_pending_values``) at the lowest
    price of the asset in that quote a fee was booked at (``lowest``), summed. With the reason when there is no bound
    (an order with neither a value nor a price, or a quote in which no fee in the asset was ever booked): "" else."""
    if pending is None:
        return 0.0, "a pending order has neither a value nor a price"
    missing = sorted(quote for quote in pending if (asset, quote) not in lowest)
    if missing:
        return 0.0, (f"no fee in it was booked on a {' or '.join(missing)} market, so no price of it in "
                     f"{' or '.join(missing)} is known")
    return sum(value * _PENDING_FEE_SHARE / lowest[(asset, quote)] for quote, value in pending.items()), ""


def write_reconciliation(result: Reconciliation, path: Path) -> Path:
    """Write ``reconciliation.json`` crash-safely; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return path


def journal_reconciliation(result: Reconciliation, journal: EventSink, event: str = "reconciled") -> None:
    """Journal the outcome (``event``: ``reconciled``, or ``balances_rechecked`` for ``recheck_balances``) and each
    mismatch (``reconciliation_mismatch``, which notifies)."""
    journal(event, **result.summary())
    for mismatch in result.mismatches:
        journal("reconciliation_mismatch", **{k: v for k, v in vars_of(mismatch).items() if v is not None})

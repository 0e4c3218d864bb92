"""OrderRouter: sends orders to a venue write-ahead, applies the outcomes that come back, and resolves the unknown.

The rules of docs/orders.md, in one place:

- **Write-ahead.** An order is committed as ``submitting`` *before* it is sent. If the process
  dies after that commit, the order is found on restart and resolved; it is never created again.
- **A timeout is not a rejection.** When ``submit`` raises TemporaryError the order becomes
  ``unknown`` (committed), and only the venue's answer to ``fetch_order`` decides what it is.
- **Never resend blind.** On restart (``resolve``), every order that may have reached the venue
  is asked about by its client order id. The venue never saw it: it is sent now, with the same id
  (``send=False``: the caller sends it, or not). The venue has it: its status and any fills not yet
  applied are taken from the venue. Live, an exchange's "never saw" is believed only under the rule below,
  so reconciliation at start-up (one look) sends nothing: it leaves the order for the settle path.
- **Idempotent fills.** A fill is applied once: fills already on the order (same venue trade id)
  are skipped, so a replayed event or a fill seen both by ``poll`` and ``fetch_order`` moves money once.
- **Reconciliation never fixes money.** An order the venue says it never saw although we had it
  ``open`` is not resent or written off: it is left ``unknown`` with the reason, for a person.
- **"Not found" is believed only when it lasts.** An exchange may answer that it does not know an order it
  accepted a moment ago (Binance's -2013 lag): for an order held as working, and for one whose submit's
  reply never came (no exchange id: "never arrived" would send it again), until that answer has
  persisted (``NotFoundAnswers``: ``LOST_AFTER_ANSWERS`` answers over ``LOST_AFTER``) ``resolve_order``
  raises TemporaryError — an outage, asked again at the retry — and the order stays as it was.

``commit`` is the caller's (the loop's) way to make the state durable — the same job's commit
in the daemon, a no-op in a backtest. The router mutates the state on the caller's thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from tradeexecutor.engine import accounting, crashpoint
from tradeexecutor.errors import ExchangeLagError, TemporaryError
from tradeexecutor.state import Order, OrderPurpose, OrderStatus, Position, RejectReason, State
from tradeexecutor.venue.model import (
    ExecutionEvent,
    FillReport,
    NotFoundAnswers,
    OrderAccepted,
    OrderCancelled,
    OrderEndedShort,
    OrderExpired,
    OrderFilled,
    OrderFillsMissing,
    OrderLost,
    OrderRejected,
    OrderReport,
    OrderRequest,
    Venue,
)

__all__ = ["OrderRouter", "said"]

#: How ``resolve`` words a resolution that is not the venue's status of the order.
_SAID = {"sent": "never reached the venue; sent", "missing": "unknown to the venue; left unknown",
         "ended": "never reached the venue; its cancel was asked for: ended, never sent"}

def said(resolution: str) -> str:
    """How a journal line words one of ``OrderRouter.resolve_order``'s answers."""
    return _SAID.get(resolution, f"{resolution} at the venue")


def _reaches(booked: float, whole: float) -> bool:
    """Whether ``booked`` (the quantity of an order's fills) is all of ``whole``, to a float's rounding."""
    return booked >= whole - 1e-9 * max(1.0, whole)


def lost_reason(order: Order) -> str:
    """The status reason of an order the venue had and no longer knows (before it is made ``unknown``)."""
    return (f"the venue does not know order {order.client_order_id}, which was {order.status.value}; left for a "
            "person to reconcile")


#: Statuses in which the venue may know the order.
_SENT = frozenset({OrderStatus.submitting, OrderStatus.unknown, OrderStatus.open, OrderStatus.partially_filled})
#: Statuses of an order the venue accepted and we hold as working.
_WORKING = frozenset({OrderStatus.open, OrderStatus.partially_filled})
#: How an exchange ends an order that may have filled (in part).
_ENDS = frozenset({OrderStatus.filled, OrderStatus.cancelled, OrderStatus.expired})


class OrderRouter:
    """Moves orders between the state and one venue; see the module docstring for the rules it keeps."""

    def __init__(self, state: State, venue: Venue, commit: Callable[[], None],
                 now: Callable[[], datetime], not_found: NotFoundAnswers | None = None) -> None:
        self.state = state
        self.venue = venue
        self.commit = commit
        self.now = now
        #: Client order ids of the orders the venue had and answered it no longer knows (left ``unknown`` here, for
        #: a person); rare, kept for the process. An order ``unknown`` with the venue's id is not always one: its
        #: fills may only not have been read yet.
        self.lost: set[str] = set()
        #: Orders the venue says ended whose trades have not added up for long enough (``OrderFillsMissing``), by
        #: client order id: news for the engine to journal and show; the order stays as it is, followed. Rare;
        #: dropped by the engine once the order ends.
        self.fills_missing: dict[str, OrderFillsMissing] = {}
        #: Orders the venue says ended (filled, or cancelled or expired with a part filled) whose fills have not all
        #: come yet (``OrderEndedShort``, from its first such answer), by client order id. The ledger holds part of
        #: what such an order did, so the engine holds its position's exits and sends no cancel for it
        #: (``Engine.exit_waits``). Dropped as the order ends here (its fills add up) or is lost.
        self.ended_short: dict[str, OrderEndedShort] = {}
        #: The "does not exist" answers to ``resolve_order`` of orders the venue accepted: lost once they persist.
        self.not_found = not_found if not_found is not None else NotFoundAnswers()

    # -- sending --------------------------------------------------------------------------------

    def send(self, order: Order, at: datetime | None = None, reason: str | None = None) -> None:
        """Commit the order as submitting (at ``at``, default now; ``reason`` its status reason), then send it; a
        temporary failure leaves it unknown (committed)."""
        order.transition(OrderStatus.submitting, at or self.now(), reason)
        self.commit()  # write-ahead: from here on the order may be at the venue
        crashpoint.reached("submitting")
        self._submit(order)

    def send_unsent(self, order: Order) -> None:
        """Send an order the venue never saw (``resolve_order``'s ``unsent``) under its same client order id:
        committed as submitting first, as any send (write-ahead)."""
        if order.status is OrderStatus.unknown:
            order.transition(OrderStatus.submitting, self.now(), "the venue never saw it: sending")
        self.commit()
        self._submit(order)

    def _submit(self, order: Order) -> None:
        try:
            self.venue.submit(self.request(order))
        except TemporaryError as error:
            order.transition(OrderStatus.unknown, self.now(), f"outcome unknown: {error}")
            self.commit()
            return
        crashpoint.reached("submitted")

    def request(self, order: Order) -> OrderRequest:
        """The venue request for an order."""
        return OrderRequest(
            client_order_id=order.client_order_id, symbol=self.state.instrument(order.instrument_id).symbol,
            side=order.side, type=order.type, quantity=order.quantity, value=order.value,
            limit_price=order.limit_price, stop_price=order.stop_price, time_in_force=order.time_in_force,
            close_all=order.purpose is OrderPurpose.close,
        )

    # -- outcomes ---------------------------------------------------------------------------------

    def drain(self, *, commit: bool = True) -> int:
        """Apply every event the venue has for us; commit when any changed the state. Returns how many.

        ``commit=False`` leaves the commit to the caller, who journals what happened first (the
        journal line then commits with the change it describes).
        """
        events = self.venue.poll()
        for event in events:
            self.apply(event)
        if events and commit:
            self.commit()
        return len(events)

    def apply(self, event: ExecutionEvent) -> None:
        """Apply one execution event to its order (and its position, for a fill)."""
        found = self._find(event.client_order_id)
        if found is None:
            return  # not ours (another client of the same account), or an order already terminal
        position, order = found
        if not isinstance(event, OrderLost):  # the venue knows the order: a "does not exist" count starts over
            self.not_found.found(order.client_order_id)
        if isinstance(event, OrderAccepted):
            order.venue_order_id = event.venue_order_id
            if order.status in (OrderStatus.submitting, OrderStatus.unknown):
                order.transition(OrderStatus.open, event.at)
        elif isinstance(event, OrderFilled):
            self._apply_fill(position, order, event.fill, event.complete)
        elif isinstance(event, OrderRejected):
            if order.status in (OrderStatus.submitting, OrderStatus.unknown):
                accounting.reject(order, event.reason, event.text, event.at)
        elif isinstance(event, OrderCancelled):
            accounting.cancel(order, event.text, event.at)
        elif isinstance(event, OrderExpired):
            order.transition(OrderStatus.expired, event.at, "time in force ran out")
        elif isinstance(event, OrderFillsMissing):
            self.fills_missing[order.client_order_id] = event  # news only: nothing booked, ended or resent
        elif isinstance(event, OrderEndedShort):
            self.ended_short[order.client_order_id] = event  # its exits wait; nothing booked, ended or resent
        elif isinstance(event, OrderLost):
            self.lost.add(order.client_order_id)
            self.ended_short.pop(order.client_order_id, None)  # lost outranks it: unknown, for a person
            if order.status is not OrderStatus.unknown:
                order.transition(OrderStatus.unknown, event.at, lost_reason(order))
        self._forget_ended_short(order)
        accounting.retire_if_done(self.state.portfolio, position)

    def _forget_ended_short(self, order: Order) -> None:
        """Drop ``order`` from :attr:`ended_short` once it has ended here: its fills added up and were booked."""
        if order.is_terminal and self.ended_short:
            self.ended_short.pop(order.client_order_id, None)

    def _apply_fill(self, position: Position, order: Order, fill: FillReport, complete: bool) -> None:
        if self._booked(order, fill):
            if complete and order.status is OrderStatus.partially_filled and self._all_booked(order):
                # Booked as partial from a report read before this fill landed (``_take_report``); the venue now
                # says it was the last, and the fills booked are all of the order: it ended filled, its money
                # already moved.
                self._end_filled(position, order, fill.at)
            return  # already applied
        if order.is_buy and not position.is_open:
            # A late fill of an entry that still rested when a close sold everything: the account holds base
            # asset again, so the position does too (reopened, with what the fill bought), as the exchange says.
            position.closed_at = None
        accounting.apply_fill(self.state.portfolio, position, order, fill.quantity, fill.price, fill.fee, fill.at,
                              slippage=fill.slippage, fee_currency=fill.fee_currency,
                              venue_trade_id=fill.venue_trade_id, complete=complete,
                              base_asset=self._base_asset(position, fill.fee_currency),
                              fee_price=fill.fee_price, fee_price_source=fill.fee_price_source)
        if complete:
            self._write_off_dust(position, order, fill.at)

    def _end_filled(self, position: Position, order: Order, at: datetime) -> None:
        """End filled an order whose last fill was booked as partial (its money moved then)."""
        order.transition(OrderStatus.filled, at, "filled at the venue")
        self._write_off_dust(position, order, at)

    def _write_off_dust(self, position: Position, order: Order, at: datetime) -> None:
        """A close that ended filled: what it left (less than one lot, or below the minimum notional) is dust."""
        if order.purpose is OrderPurpose.close and position.quantity != 0.0 and (
                position.quantity < 0.0 or self._is_dust(position, order.fills[-1].price)):
            accounting.write_off_dust(position, at)

    def _all_booked(self, order: Order) -> bool:
        """Whether the fills booked are all of ``order``'s, counted — never read off a "complete" flag alone: an
        exchange's trade list may lag its order's status, and a fill missing when the order ends is never taken
        (an ended order is not asked about again). Counted against the order's quantity; where that is not its
        size (a close sells all the account holds; a buy by value has none), against what the venue's report says
        filled. A venue that cannot answer now: not yet — the order stays ``partially_filled`` for a later look
        (the next report, reconciliation), which is safe; ending it short is not."""
        if order.quantity is not None and order.purpose is not OrderPurpose.close:
            return _reaches(order.filled_quantity, order.quantity)
        try:
            report = self.venue.fetch_order(order.client_order_id)
        except TemporaryError:
            return False
        return (report is not None and report.status is OrderStatus.filled
                and _reaches(order.filled_quantity, report.filled_quantity))

    @staticmethod
    def _booked(order: Order, fill: FillReport) -> bool:
        return any(f.venue_trade_id == fill.venue_trade_id for f in order.fills)

    def _is_dust(self, position: Position, price: float) -> bool:
        """Whether what a close left is less than one lot, or worth less than the minimum notional, at the venue."""
        symbol = self.state.instrument(position.instrument_id).symbol
        spec = self.venue.instruments([symbol]).get(symbol)
        if spec is None:
            return False
        value = position.quantity * price
        return position.quantity < spec.lot_step * (1 - 1e-9) or value < spec.min_notional

    def _base_asset(self, position: Position, fee_currency: str) -> str | None:
        """The venue's base asset of the position's instrument when the fee is not in its quote currency
        (a fee in the base asset is taken from the quantity); asked of the venue only then."""
        instrument = self.state.instrument(position.instrument_id)
        if fee_currency == instrument.quote_currency:
            return None
        spec = self.venue.instruments([instrument.symbol]).get(instrument.symbol)
        return spec.base if spec is not None else None

    def _find(self, client_order_id: str) -> tuple[Position, Order] | None:
        for position in self.state.portfolio.open_positions:
            for order in position.orders:
                if order.client_order_id == client_order_id and not order.is_terminal:
                    return position, order
        return None

    # -- restart ------------------------------------------------------------------------------

    def resolve(self, *, commit: bool = True) -> list[str]:
        """Resolve every order that may be at the venue, before anything new is decided; returns what was done.

        Asks the venue about each order by client order id: unknown to the venue → sent now with
        the same id (it never left); known → its fills and status taken from the venue.
        ``commit=False`` leaves the commit to the caller, who journals what happened first. A
        TemporaryError on one order (``resolve_each``) is raised once every other order was asked about
        and, with ``commit``, the ones resolved committed.
        """
        resolved, error = self.resolve_each(self.pending())
        if resolved and commit:
            self.commit()
        if error is not None:
            raise error
        return [f"{order.client_order_id}: {said(resolution)}" for _, order, resolution in resolved]

    def resolve_each(self, orders: Sequence[tuple[Position, Order]], *, send: bool = True
                     ) -> tuple[list[tuple[Position, Order, str]], TemporaryError | None]:
        """``resolve_order`` for each of ``orders``; the ones resolved with what happened, and the first TemporaryError
        (the first that is not an ExchangeLagError, if any).

        An ExchangeLagError (one order's "does not exist" not yet lasted) leaves that order as it was and does not
        stop the others. Any other TemporaryError (the exchange unreachable, down, limiting us) ends the round there:
        the next order's request would fail the same way, and N orders would cost N failing requests at every retry
        of an outage. Either way the orders resolved before it are returned — an order found filled must still be
        journaled and have its triggers armed by the caller, who then raises the error (the others are asked again
        at the retry; the found ones are no longer pending then).
        """
        resolved: list[tuple[Position, Order, str]] = []
        error: TemporaryError | None = None
        for position, order in orders:
            try:
                resolved.append((position, order, self.resolve_order(position, order, send=send)))
            except ExchangeLagError as exc:
                error = error or exc
            except TemporaryError as exc:  # a real outage outranks a lag: the caller may let a lag pass, never it
                return resolved, exc
        return resolved, error

    def pending(self) -> list[tuple[Position, Order]]:
        """Every order the venue may know (submitting, unknown, open, partially filled), with its position."""
        return [(p, o) for p in list(self.state.portfolio.open_positions) for o in p.orders if o.status in _SENT]

    def resolve_order(self, position: Position, order: Order, *, send: bool = True) -> str:
        """Ask the venue about one order by client order id and bring it up to date; says what happened.

        ``sent``: the venue never saw it and it was sent now, with the same id (``unsent`` when
        ``send`` is False: left for the executor to send) — only once the venue has said so long enough
        (``not_found``). ``missing``: we had it open and the venue does not know it, and has said so long
        enough — left ``unknown`` for a person. Before either, TemporaryError (the order unchanged, asked
        again at the retry). Otherwise the venue's status of it (``open``, ``filled``, ...), whose fills
        not yet applied have been applied.
        """
        return self.resolve_report(position, order, self.venue.fetch_order(order.client_order_id), send=send)

    def resolve_report(self, position: Position, order: Order, report: OrderReport | None, *,
                       send: bool = True) -> str:
        """``resolve_order`` with the venue's answer its caller read itself (``Venue.fetch_order``, None: it does not
        know the order) — reconciliation keeps it, to bound the balances by what the exchange says filled
        (``engine/reconcile.py``, ``Unbooked``); says what happened, as ``resolve_order``.

        An order the exchange ended (``report.ended``, or a terminal status) whose trades it has not all listed yet is
        never ended short: the fills listed are booked and it is left ``partially_filled`` with the reason, followed
        from here (the venue polls it; its fills are booked as they come and it ends once they add up). Ending it at
        the exchange's status with a fill missing lost that fill for good: an ended order is not asked about again.
        When the fills listed add up it ends as the exchange says."""
        cid = order.client_order_id
        if report is None:
            # An order we hold as working may be the exchange's lag, and so may one whose submit's reply never came
            # (no exchange id): Binance answers -2013 for moments after it accepted an order, and a market order it
            # filled is no longer open, so a resend would be a second order, not a refused duplicate. Both wait for
            # the answer to last. One already unknown with the exchange's id was found lost before: one look.
            working = order.status in _WORKING
            unconfirmed = order.status in (OrderStatus.submitting, OrderStatus.unknown) and not order.venue_order_id
            if (working or unconfirmed) and not self.not_found.lost(cid, self.now()):
                raise ExchangeLagError(self.not_found.waiting(cid, "lost" if working else "taken as never arrived"))
            if order.status is OrderStatus.unknown and order.venue_order_id:
                self.lost.add(cid)
                return "missing"  # the venue accepted it once and lost it since: for a person, never resent
            if order.status in (OrderStatus.submitting, OrderStatus.unknown):
                if not send:
                    return "unsent"
                self.send_unsent(order)
                return "sent"
            order.transition(OrderStatus.unknown, self.now(), lost_reason(order))
            self.lost.add(cid)
            return "missing"
        self.not_found.found(cid)
        ended = report.ended or (report.status if report.status in _ENDS else None)
        # A cancel or expiry with a part filled is taken as working until its fills are counted (a filled one is
        # counted by ``_take_report`` itself).
        counted = ended is not None and ended is not OrderStatus.filled and report.filled_quantity > 0
        self._take_report(position, order, replace(report, status=OrderStatus.partially_filled) if counted else report)
        if ended is None or order.is_terminal:
            return report.status.value
        at = self.now()
        if _reaches(order.filled_quantity, report.filled_quantity):
            if ended is not OrderStatus.filled:
                order.transition(ended, at, f"{ended.value} at the venue" if report.ended else (
                    report.reason or f"{ended.value} at the venue"))
            elif order.fills:
                self._end_filled(position, order, at)
        elif order.status is not OrderStatus.partially_filled:
            order.transition(OrderStatus.partially_filled, at, (
                f"{ended.value} at the exchange having filled {report.filled_quantity:g}, {order.filled_quantity:g} "
                "of it booked: its trades not all listed yet; followed until they are"))
        accounting.retire_if_done(self.state.portfolio, position)
        return report.status.value

    def _take_report(self, position: Position, order: Order, report: OrderReport) -> None:
        """Bring one order up to what the venue reports: missing fills first, then the status.

        The report is read before the fills, so a report that says the order ended is never ahead of them; but a
        fill may land between the two reads, under a report that still says open. Whether a fill ends the order
        is therefore counted, not read off the status alone: the last fill ends it when the fills booked reach
        what a "filled" report says filled, or the whole quantity the venue has for the order (not a close's: it
        sells all the account holds, which may be more). A report that says filled ends an order whose fills were
        all booked before (one booked as partial that way); so does the venue's "complete" event of a fill
        booked (``_apply_fill``). Either way the money moved once, when the fill was booked."""
        at = self.now()
        order.venue_order_id = report.venue_order_id
        mine = self.venue.order_fills(order.client_order_id)  # its own trades: the cost of one order, not of history
        whole = report.filled_quantity if report.status is OrderStatus.filled else (
            None if order.purpose is OrderPurpose.close else report.quantity)  # a close sells all held: its own size
        for index, fill in enumerate(mine):
            booked = order.filled_quantity + (0.0 if self._booked(order, fill) else fill.quantity)
            complete = index == len(mine) - 1 and whole is not None and _reaches(booked, whole)
            self._apply_fill(position, order, fill, complete)
        status = report.status
        if status is OrderStatus.filled and order.fills and not order.is_terminal and _reaches(
                order.filled_quantity, report.filled_quantity):
            self._end_filled(position, order, at)
        if order.is_terminal or order.status is status:
            self._forget_ended_short(order)
            accounting.retire_if_done(self.state.portfolio, position)
            return
        if status is OrderStatus.open and order.status in (OrderStatus.submitting, OrderStatus.unknown):
            order.transition(OrderStatus.open, at, "resolved on restart")
        elif status is OrderStatus.rejected:
            accounting.reject(order, report.reject_reason or RejectReason.venue, report.reason or "rejected", at)
        elif status in (OrderStatus.cancelled, OrderStatus.expired):
            order.transition(status, at, report.reason or f"{status.value} at the venue")
        self._forget_ended_short(order)
        accounting.retire_if_done(self.state.portfolio, position)


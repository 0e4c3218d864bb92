"""CcxtVenue: the venue interface over any ccxt exchange's spot market, with the client order id the executor chose.

ccxt is called synchronously from the loop's one thread, every request through one
``CcxtConnection`` (ccxt_connection.py: the ban gate, ccxt's rate limiter, the error table, the
clock offset). A submit that times out raises TemporaryError and leaves the outcome unknown: the
venue remembers the client order id as sent and refuses to send it again (DuplicateOrderError)
until ``fetch_order`` has asked the exchange and heard that it never arrived — the router's
restart resolution does exactly that, so nothing is ever resent blind. Binance itself accepts a
reused client order id once the first order is closed, so this memory is the only guard against
a duplicate market order.

Outcomes come back through ``poll``: the reply to a submit gives the accepted event and any
fills at once (Binance's FULL reply); orders still open are asked about on each poll and their
new trades become fill events. The exchange keeps no record of an order it refused, so the venue
keeps the refusals it saw, for ``fetch_order``.

An order ends here only when its trades add up: an exchange's trade list may lag its order status (the
order reads filled, or cancelled with a part filled, before ``myTrades`` lists every trade). Until the
trades counted reach what the order says filled, its fills come without ``complete`` and without the
end, ``fetch_order`` reports it ``partially_filled``, and it stays followed (never forgotten), asked
again at each poll; then the last fill is ``complete`` or the end is queued, once (``_take``). The first answer that
says so queues ``OrderEndedShort`` (once per order: the engine then holds its position's exits and sends no cancel for
it, as it ended at the exchange), and ``cancel`` sends nothing for such an order. If the trades stay
missing (an exchange's bug, an order filled as its market was delisted), the order is still followed — ending it
short would lose the missing fill — and once that has lasted (``FILLS_MISSING_AFTER_ANSWERS`` answers over
``--exchange-fills-missing-seconds``) ``OrderFillsMissing`` is queued, once, for a person to see.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.state import TERMINAL_STATUSES, OrderSide, OrderStatus, OrderType, RejectReason
from tradeexecutor.venue.ccxt_connection import CcxtConnection
from tradeexecutor.venue.ccxt_errors import reject_reason
from tradeexecutor.venue.model import (
    FILLS_MISSING_AFTER_ANSWERS,
    Balance,
    DuplicateOrderError,
    ExecutionEvent,
    FillReport,
    InstrumentSpec,
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
)

__all__ = ["CcxtVenue"]

#: ccxt's unified order status → ours.
_STATUSES = {"open": OrderStatus.open, "closed": OrderStatus.filled, "canceled": OrderStatus.cancelled,
             "cancelled": OrderStatus.cancelled, "expired": OrderStatus.expired, "rejected": OrderStatus.rejected}
#: The exchange's order type (Binance's, lower-cased: ccxt's unified one folds a spot stop-loss into ``market`` or
#: ``limit``, so the raw one is read) → ours; another is reported without a type.
_TYPES = {"market": OrderType.market, "limit": OrderType.limit, "limit_maker": OrderType.limit,
          "stop_loss": OrderType.stop, "take_profit": OrderType.stop, "stop_loss_limit": OrderType.stop_limit,
          "take_profit_limit": OrderType.stop_limit}
#: Our types that carry a limit price, and those that carry a stop (trigger) price.
_PRICED = frozenset({OrderType.limit, OrderType.stop_limit})
_STOPS = frozenset({OrderType.stop, OrderType.stop_limit})


@dataclass(slots=True)
class _Tracked:
    """An order this venue sent (or found) and follows until it is terminal.

    Up to ``CcxtVenue.max_kept`` of them are kept after they end, so each is small: slots (no ``__dict__``), and an
    ended order's trade ids as a tuple (a set of one id is 216 B, a tuple 48 B; an ended order's ids are looked up
    only when its trades are read again, and a new one turns them back into a set). 574 B an ended order of one
    trade before, 344 B after (tracemalloc, ids as Binance's).
    """

    client_order_id: str
    market: str
    side: OrderSide
    venue_order_id: str = ""
    status: OrderStatus = OrderStatus.open
    filled: float = 0.0
    trade_ids: set[str] | tuple[str, ...] = field(default_factory=set)


@dataclass(slots=True)
class _Missing:
    """A followed order the exchange says ended while its trades do not add up: since when, answers in a row."""

    #: The first such answer, and the latest.
    first: datetime
    asked: datetime
    answers: int = 0
    #: Whether ``OrderFillsMissing`` was queued (once per order).
    told: bool = False


#: A reported order (``OrderFillsMissing``) is asked about this many times per ``--exchange-fills-missing-seconds``.
REPORTED_ASKED_PER_SPAN = 5


class CcxtVenue:
    """The venue interface over a ccxt exchange (spot)."""

    #: Trades asked for per request when paging by trade id (Binance's largest page).
    trade_page = 1000
    #: Ended orders and refusals remembered, newest kept: more than a job sends, so a fill read after its order
    #: ended still finds it here. One forgotten is asked about with a ``fetch_order`` if it is read
    #: again, never sent again (the ledger knows it ended). About 0.7 KB an ended order (1.4 KB a closed
    #: position's two): at 10,000 that was 7 MB, and each trade searched them all (docs/benchmarks.md, "The
    #: soak's executor RSS flat").
    max_kept = 256

    def __init__(self, config: CcxtVenueConfig, connection: CcxtConnection | None = None, *,
                 environ: Mapping[str, str] | None = None, now: Callable[[], datetime] | None = None):
        self.config = config
        self.name = config.exchange or "exchange"
        self.connection = connection if connection is not None else CcxtConnection(config, environ=environ)
        self.exchange = self.connection.exchange
        self._call = self.connection.call
        #: Our symbol → ccxt market symbol, as resolved.
        self._markets: dict[str, str] = {}
        #: Orders sent (and not since found missing: sending one again is a bug), oldest first.
        self._orders: dict[str, _Tracked] = {}
        #: Orders refused before or by the exchange (the exchange keeps no record of a refusal).
        self._refused: dict[str, OrderReport] = {}
        self._events: list[ExecutionEvent] = []
        #: The span over which "does not exist" must last to be believed (``--exchange-not-found-seconds``).
        self.not_found_after = timedelta(seconds=config.not_found_seconds)
        #: Followed orders the exchange has lately answered it does not know: lost only once that persists.
        self._not_found = NotFoundAnswers(span=self.not_found_after)
        #: The span over which an ended order's trades must stay missing before it is reported (``OrderFillsMissing``).
        self.fills_missing_after = timedelta(seconds=config.fills_missing_seconds)
        #: Followed orders the exchange says ended while their trades do not add up (``_Missing``). Rare; dropped as
        #: the order ends here.
        self._missing: dict[str, _Missing] = {}
        #: The clock of events and of ``_not_found`` (tests drive it): the exchange's time by default.
        self._clock = now

    def __repr__(self) -> str:
        return f"CcxtVenue({self.config.exchange}, url={self.config.url!r})"

    def connect(self) -> None:
        """Load the markets and measure the clock offset (once; the first call does it anyway)."""
        self.connection.connect()

    @property
    def clock_offset_ms(self) -> float:
        """The exchange's clock minus ours, in ms, as last measured: for /status and /metrics."""
        return self.connection.clock_offset_ms

    def _market(self, symbol: str) -> str | None:
        """The ccxt market symbol for one of ours: itself, the exchange's market id, or BASE/quote."""
        if symbol in self._markets:
            return self._markets[symbol]
        found = self.connection.market(symbol, self.config.quote)
        if found is not None:
            self._markets[symbol] = found
        return found

    def _ours(self, market: str) -> str:
        for ours, theirs in self._markets.items():
            if theirs == market:
                return ours
        return market

    def _watched(self) -> list[str]:
        """Markets to look through for orders and trades: the configured symbols and every one used."""
        for symbol in self.config.symbols:
            self._market(symbol)
        return sorted(set(self._markets.values()) | {t.market for t in self._orders.values()})

    def instruments(self, symbols: Sequence[str]) -> dict[str, InstrumentSpec]:
        """Lot step and tick size (ccxt's precision, in either precision mode) and minimum notional of each market."""
        specs: dict[str, InstrumentSpec] = {}
        for symbol in symbols:
            market_symbol = self._market(symbol)
            if market_symbol is None:
                continue
            market = self.exchange.markets[market_symbol]
            amount, price = _step(self.exchange, market, "amount"), _step(self.exchange, market, "price")
            specs[symbol] = InstrumentSpec(
                symbol=symbol, lot_step=amount, tick_size=price,
                min_notional=float((market.get("limits", {}).get("cost") or {}).get("min") or 0.0),
                base=market["base"], quote=market["quote"],
            )
        return specs

    # -- orders -------------------------------------------------------------------------------------

    def submit(self, request: OrderRequest) -> None:
        """Send the order with its client order id; the reply's outcome is queued for ``poll``.

        TemporaryError: the outcome is unknown (ask ``fetch_order``). DuplicateOrderError: this
        id was sent before and has not been found missing since.
        """
        cid = request.client_order_id
        if cid in self._orders or cid in self._refused:
            raise DuplicateOrderError(f"{self.name}: client order id {cid} was already submitted")
        at = self._now()
        market = self._market(request.symbol)
        if market is None:
            self._refuse(request, RejectReason.venue, f"{self.name} does not list {request.symbol}", at)
            return
        arguments = self._order_arguments(request, market)
        if isinstance(arguments, str):
            self._refuse(request, RejectReason.nothing_to_sell, arguments, at)
            return
        kind, amount, price, params = arguments
        self._orders[cid] = _Tracked(cid, market, request.side, status=OrderStatus.unknown)  # it may be there now
        import ccxt

        try:
            order = self._call(self.exchange.create_order, market, kind, request.side.value, amount, price, params,
                               submitting=True)
        except ccxt.BaseError as error:  # a refusal (everything else was translated by _call)
            del self._orders[cid]
            if type(error).__name__ == "DuplicateOrderId" or "Duplicate order" in str(error):
                raise DuplicateOrderError(f"{self.name}: the exchange already has an open order {cid}") from None
            self._refuse(request, reject_reason(error, request.side),
                         f"{type(error).__name__}: {self.connection.scrub(str(error))}", at)
            return
        self._take(order, announce=True)

    def _order_arguments(self, request: OrderRequest,
                         market: str) -> tuple[str, float | None, float | None, dict[str, Any]] | str:
        """ccxt's (type, amount, price, params) for a request, or why a sell has nothing to sell."""
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        kind = "limit" if request.type is OrderType.limit else "market"
        price = request.limit_price if kind == "limit" else None
        if kind == "limit" and request.time_in_force.value != "gtc":
            params["timeInForce"] = request.time_in_force.value.upper()
        amount: float | None = request.quantity
        if request.close_all or (request.side is OrderSide.sell and amount is None):
            base = self.exchange.markets[market]["base"]
            held = self.balances().get(base, Balance(base, 0.0)).free
            amount = _whole_lots(self.exchange, market, held)
            if amount <= 0:
                return f"nothing to sell: {held:g} {base} held, less than one lot"
        elif amount is None:
            assert request.value is not None, "an order request has a quantity or a value"
            params["cost"] = request.value  # a market buy of a quote value (Binance: quoteOrderQty)
        return kind, amount, price, params

    def _refuse(self, request: OrderRequest, reason: RejectReason, text: str, at: datetime) -> None:
        _bounded(self._refused, self.max_kept)
        self._refused[request.client_order_id] = OrderReport(
            client_order_id=request.client_order_id, venue_order_id="", symbol=request.symbol, side=request.side,
            status=OrderStatus.rejected, filled_quantity=0.0, average_price=None, reject_reason=reason, reason=text)
        self._events.append(OrderRejected(request.client_order_id, reason, text, at))

    def cancel(self, client_order_id: str) -> None:
        """Cancel an open order by client order id; a terminal or unknown one is left as it is."""
        import ccxt

        tracked = self._orders.get(client_order_id)
        if tracked is None or tracked.status in TERMINAL_STATUSES or client_order_id in self._missing:
            return  # (the last: the exchange said it ended, its trades not all listed yet — nothing to cancel)
        reply: dict[str, Any] | None
        try:
            reply = self._call(self.exchange.cancel_order, tracked.venue_order_id or None, tracked.market,
                               {} if tracked.venue_order_id else {"clientOrderId": client_order_id},
                               answers=(ccxt.OrderNotFound,))
        except ccxt.OrderNotFound:  # -2011: it ended first (filled, cancelled, expired), or never arrived
            reply = self._find(tracked.market, client_order_id)
        if reply is not None:
            self._take(reply, announce=False)

    def fetch_order(self, client_order_id: str) -> OrderReport | None:
        """What the exchange knows of the order; None when no watched market has it (it may then be sent again, unless
        the exchange had accepted it: that one stays followed).

        The rule of ``_take``: an order that ended with trades not yet listed (the trade list lagging the status) is
        reported ``partially_filled`` with what it says filled, so a reader (the router's restart resolution,
        reconciliation) never ends it short of a fill; it stays followed and a poll brings the fills and the end."""
        if client_order_id in self._refused:
            return self._refused[client_order_id]
        tracked = self._orders.get(client_order_id)
        markets = [tracked.market] if tracked is not None else self._watched()
        for market in markets:
            order = self._find(market, client_order_id)
            if order is not None:
                report = self._report(order)
                tracked = self._orders.setdefault(client_order_id, _Tracked(client_order_id, market, report.side))
                tracked.venue_order_id = report.venue_order_id
                if tracked.status is OrderStatus.unknown:
                    tracked.status = OrderStatus.open  # adopted: the next poll brings its fills and its end
                self._not_found.found(client_order_id)
                listed = self._trades_lag(tracked, order, report)
                if listed is not None:
                    # Followed as ended short from this answer on (a restart's resolution asks here first): its
                    # position's exits wait and no cancel is sent for it, before any poll has asked about it.
                    tracked.status = OrderStatus.partially_filled
                    self._still_short(client_order_id, report.filled_quantity, listed)
                    return replace(report, status=OrderStatus.partially_filled, ended=report.status,
                                   reason=f"{report.status.value} at the exchange; its trades not all listed yet")
                return report
        if tracked is None or not tracked.venue_order_id:
            self._orders.pop(client_order_id, None)  # the exchange never saw it: sending it now is not a resend
        # One it accepted stays followed: "does not exist" may be the exchange's lag (NotFoundAnswers), and the poll
        # goes on asking until the order is found or the answer persists (lost).
        return None

    def _trades_lag(self, tracked: _Tracked, order: dict[str, Any], report: OrderReport) -> float | None:
        """What the trades listed add up to, when an order the exchange says ended has fewer trades listed than it
        says filled; None otherwise (asked only when the trades this venue counted fall short)."""
        if report.status not in TERMINAL_STATUSES or not _short(tracked.filled, report.filled_quantity):
            return None
        trades = order.get("trades") or self._order_trades(report.venue_order_id, tracked.market)
        listed = sum(float(t["amount"]) for t in trades)
        return listed if _short(listed, report.filled_quantity) else None

    def _find(self, market: str, client_order_id: str) -> dict[str, Any] | None:
        import ccxt

        try:
            return self._call(self.exchange.fetch_order, None, market, {"clientOrderId": client_order_id},
                              answers=(ccxt.OrderNotFound,))
        except ccxt.OrderNotFound:
            return None

    def open_orders(self) -> list[OrderReport]:
        """Open orders on the watched markets (every market when none is watched), oldest first.

        The rule: asked market by market while that costs less of the rate budget than one request
        for every market, else in one request for every market, keeping the watched markets' orders
        (the same orders either way). The costs are ccxt's for the exchange where it gives both
        (Binance's spot ``openOrders``: request weight 6 a market, 80 for all, so up to 13 markets
        are asked one by one); an exchange without a known all-markets cost is asked market by market.
        """
        watched = self._watched()
        orders: list[dict[str, Any]] = []
        one, every = _open_orders_costs(self.exchange)
        if watched and len(watched) * one <= every:
            for market in watched:
                orders.extend(self._call(self.exchange.fetch_open_orders, market))
        else:
            kept = set(watched)
            orders = [order for order in self._call(self.exchange.fetch_open_orders, None)
                      if not kept or order.get("symbol") in kept]
        orders.sort(key=lambda o: (o.get("timestamp") or 0, str(o.get("id"))))
        return [self._report(order) for order in orders]

    def order_fills(self, client_order_id: str) -> list[FillReport]:
        """Every fill of one order, read from its own trades (``_order_trades``: page by page, that order only): the
        cost of one order, not of the account's history. Empty for an order the exchange refused or does not know."""
        tracked = self._orders.get(client_order_id)
        if tracked is None or not tracked.venue_order_id:
            self.fetch_order(client_order_id)  # follows it from now on, when the exchange has it
            tracked = self._orders.get(client_order_id)
            if tracked is None or not tracked.venue_order_id:  # refused, or never seen
                return []
        return [self._fill(trade, client_order_id, trade.get("timestamp"))
                for trade in self._order_trades(tracked.venue_order_id, tracked.market)]

    def _order_trades(self, venue_order_id: str, market: str) -> list[dict[str, Any]]:
        """Every trade of one order, oldest first. Binance lists at most ``trade_page`` a request (500 unless asked)
        and, without ``fromId``, the most recent ones: an order of more fills is read page by page from trade id 0,
        or its first fills would never be counted and the order never add up."""
        if not self.exchange.id.startswith("binance"):
            return list(self._call(self.exchange.fetch_order_trades, venue_order_id, market))
        trades: list[dict[str, Any]] = []
        after = -1
        while True:
            page = self._call(self.exchange.fetch_order_trades, venue_order_id, market, None, self.trade_page,
                              {"fromId": after + 1})
            trades.extend(page)
            if len(page) < self.trade_page:
                return trades
            after = max(int(t["id"]) for t in page)

    def balances(self) -> dict[str, Balance]:
        """Free and locked balance of every asset the exchange reports."""
        balance = self._call(self.exchange.fetch_balance)
        free, used = balance.get("free") or {}, balance.get("used") or {}
        return {asset: Balance(asset, float(free.get(asset) or 0.0), float(used.get(asset) or 0.0))
                for asset in sorted(set(free) | set(used))}

    def poll(self) -> list[ExecutionEvent]:
        """Events queued by submits and cancels, then what each followed open order did since the last poll."""
        for tracked in list(self._orders.values()):
            if tracked.status not in TERMINAL_STATUSES and tracked.venue_order_id and self._due(tracked.client_order_id):
                self._refresh(tracked)
        events, self._events = self._events, []
        self._forget_ended()
        return events

    def _forget_ended(self) -> None:
        """Keep at most ``max_kept`` followed orders, dropping the oldest that ended: months of orders must not
        pile up in memory. An ended order is never sent again (the ledger knows it ended); one open or of
        unknown outcome is always kept."""
        excess = len(self._orders) - self.max_kept
        for cid in [cid for cid, t in self._orders.items() if t.status in TERMINAL_STATUSES][:max(0, excess)]:
            del self._orders[cid]

    # -- reading the exchange's answers ---------------------------------------------------------------

    def _refresh(self, tracked: _Tracked) -> None:
        """Ask the exchange about a followed order and queue what changed.

        An order the exchange answers it does not know (-2013), by its id nor by our client order id, is lost only
        when that answer persists (``NotFoundAnswers``: ``LOST_AFTER_ANSWERS`` polls over ``LOST_AFTER``): Binance
        answers -2013 for an order it accepted a moment ago, and this poll follows right after the submit. Until then
        it stays followed and the poll says nothing of it; then ``OrderLost`` is queued once and the order is no
        longer followed (asking again would never learn more; ``fetch_order`` still asks, for a person's
        reconcile). It used to end the job as a crash, every job.
        """
        import ccxt

        try:
            order = self._call(self.exchange.fetch_order, tracked.venue_order_id, tracked.market,
                               answers=(ccxt.OrderNotFound,))
        except ccxt.OrderNotFound:
            order = self._find(tracked.market, tracked.client_order_id)
            if order is None:
                if self._not_found.lost(tracked.client_order_id, self._now()):
                    del self._orders[tracked.client_order_id]
                    self._missing.pop(tracked.client_order_id, None)
                    self._events.append(OrderLost(tracked.client_order_id, self._now()))
                return
        self._take(order, announce=False)

    def _take(self, order: dict[str, Any], *, announce: bool) -> None:
        """Queue the events an order's state brings that were not queued before: accepted, fills, the end.

        Counted, not read off the status: an exchange's trade list may lag its order status (the order reads
        filled — or cancelled, expired with a part filled — while ``fetch_order_trades`` does not list every trade
        yet). While the trades counted fall short of what the order says filled, the new ones are queued without
        ``complete`` and with no end, and the order stays followed (its status here not terminal, so each poll asks
        again and ``_forget_ended`` keeps it); once they add up, the last is ``complete`` (filled) or the end is
        queued (cancelled, expired) — once: the end only as the order turns terminal here. Ending it short lost the
        missing fill for good: an ended order is no longer asked about. The other way round — the trade list ahead
        of the status, every trade taken while the order still read open — the order reads filled with no new trade:
        its last trade is queued again, complete (the router books a trade once and ends the order on it)."""
        cid = self._client_id_of(order)
        tracked = self._orders.get(cid)
        if tracked is None:
            return
        self._not_found.found(cid)  # the exchange answered with it (a poll, a submit's or a cancel's reply): in a row
        at = _time(order.get("timestamp")) or self._now()
        tracked.venue_order_id = str(order["id"])
        report = self._report(order)
        if announce:
            self._events.append(OrderAccepted(cid, tracked.venue_order_id, at))
        trades = order.get("trades") or []
        known = tracked.filled + sum(float(t["amount"]) for t in trades if str(t.get("id")) not in tracked.trade_ids)
        if _short(known, report.filled_quantity):
            # The reply said it filled but not how (an ACK or RESULT reply, or an exchange that never says).
            trades = self._order_trades(tracked.venue_order_id, tracked.market)
        new = [t for t in trades if str(t.get("id")) not in tracked.trade_ids]
        ended = report.status in TERMINAL_STATUSES and not _short(
            tracked.filled + sum(float(t["amount"]) for t in new), report.filled_quantity)
        ids = tracked.trade_ids if isinstance(tracked.trade_ids, set) else set(tracked.trade_ids)
        tracked.trade_ids = ids  # each trade is seen as it is queued, even if a later one's fill fails (a fee's price)
        for index, trade in enumerate(new):
            # The fill first: valuing a fee in a third asset reads its ticker, which may fail for now (TemporaryError);
            # this trade and the later ones are then read again at the next poll — marked seen first, it was lost.
            fill = self._fill(trade, cid, trade.get("timestamp") or order.get("timestamp"))
            ids.add(str(trade["id"]))
            tracked.filled += float(trade["amount"])
            complete = ended and report.status is OrderStatus.filled and index == len(new) - 1
            self._events.append(OrderFilled(cid, fill, complete))
        if report.status in TERMINAL_STATUSES and not ended:
            tracked.status = OrderStatus.partially_filled  # its trades lag its status: followed until they add up
            self._still_short(cid, report.filled_quantity, tracked.filled)
            return
        self._missing.pop(cid, None)
        was_ended = tracked.status in TERMINAL_STATUSES
        if ended and not was_ended and report.status is OrderStatus.filled and not new and tracked.filled > 0:
            # The trade list ran ahead of the status: an earlier poll read the order partly filled, then its trades
            # with the last fill already in, queued without ``complete``. Its last trade again, complete: booked
            # already, so the router only ends the order — after counting its fills (``_all_booked``).
            listed = self._order_trades(tracked.venue_order_id, tracked.market)
            if listed:
                last = listed[-1]
                self._events.append(OrderFilled(cid, self._fill(last, cid, last.get("timestamp") or order.get(
                    "timestamp")), True))
        tracked.status = report.status
        tracked.trade_ids = tuple(ids) if ended else ids  # kept small once ended
        if was_ended or not ended:
            return
        if report.status is OrderStatus.cancelled:
            self._events.append(OrderCancelled(cid, _time(order.get("lastUpdateTimestamp")) or at))
        elif report.status is OrderStatus.expired:
            self._events.append(OrderExpired(cid, _time(order.get("lastUpdateTimestamp")) or at))
        elif report.status is OrderStatus.rejected:
            self._events.append(OrderRejected(cid, RejectReason.venue, "rejected by the exchange", at))

    def _still_short(self, cid: str, filled: float, listed: float) -> None:
        """One more answer that the order ended with trades missing: ``OrderEndedShort`` queued at the first (once per
        order), ``OrderFillsMissing`` once that has lasted (``FILLS_MISSING_AFTER_ANSWERS`` answers in a row over
        ``fills_missing_after``), once per order."""
        now = self._now()
        missing = self._missing.get(cid)
        if missing is None:
            missing = self._missing[cid] = _Missing(now, now)
            self._events.append(OrderEndedShort(cid, filled, listed, now))
        missing.answers += 1
        missing.asked = now
        if not missing.told and missing.answers >= FILLS_MISSING_AFTER_ANSWERS and (
                now - missing.first >= self.fills_missing_after):
            self._events.append(OrderFillsMissing(cid, filled, listed, missing.first, now))
            missing.told = True

    def _due(self, cid: str) -> bool:
        """Whether the poll asks about a followed order now: always, except one reported with its trades missing
        (``OrderFillsMissing``), asked once per ``fills_missing_after`` / ``REPORTED_ASKED_PER_SPAN`` (a minute by
        default) — two requests a poll for weeks (each job polls) bought nothing but load on the rate limit; its
        trades, once listed, are booked at most that much later."""
        missing = self._missing.get(cid)
        return missing is None or not missing.told or (
            self._now() - missing.asked >= self.fills_missing_after / REPORTED_ASKED_PER_SPAN)

    def _report(self, order: dict[str, Any]) -> OrderReport:
        status = _STATUSES.get(str(order.get("status")), OrderStatus.open)
        filled = float(order.get("filled") or 0.0)
        if status is OrderStatus.open and filled > 0:
            status = OrderStatus.partially_filled
        # Binance's own type tells a stop from a limit (ccxt's unified type maps STOP_LOSS_LIMIT to "limit"); another
        # exchange's raw type means something else (HTX "buy-limit", Bitstamp the side), so its unified one is read.
        raw = (order.get("info") or {}).get("type") if self.exchange.id.startswith("binance") else None
        kind = _TYPES.get(str(raw or order.get("type")).lower())
        stop = order.get("triggerPrice") or order.get("stopPrice")
        return OrderReport(
            client_order_id=self._client_id_of(order), venue_order_id=str(order["id"]),
            symbol=self._ours(str(order.get("symbol"))), side=OrderSide(str(order.get("side") or "buy")),
            status=status, filled_quantity=filled,
            average_price=float(order["average"]) if filled and order.get("average") else None,
            type=kind, quantity=float(order["amount"]) if order.get("amount") else None,
            limit_price=float(order["price"]) if kind in _PRICED and order.get("price") else None,
            stop_price=float(stop) if kind in _STOPS and stop else None,
        )

    def _client_id_of(self, order: dict[str, Any]) -> str:
        info = order.get("info") or {}
        # A cancel's reply names the cancel request's own id; the order's is origClientOrderId.
        return str(info.get("origClientOrderId") or order.get("clientOrderId") or "")

    def _fill(self, trade: dict[str, Any], client_order_id: str, timestamp: Any) -> FillReport:
        fee = trade.get("fee") or {}
        cost, currency = float(fee.get("cost") or 0.0), str(fee.get("currency") or "")
        base, _, quote = str(trade.get("symbol") or "").partition("/")
        fee_price, source = (None, None) if currency in ("", base, quote) else self._fee_price(currency, quote)
        return FillReport(
            client_order_id=client_order_id, venue_trade_id=str(trade["id"]), quantity=float(trade["amount"]),
            price=float(trade["price"]), fee=cost, fee_currency=currency, at=_time(timestamp) or self._now(),
            fee_price=fee_price, fee_price_source=source,
        )

    def _fee_price(self, asset: str, quote: str) -> tuple[float, str]:
        """A fee asset's price in ``quote`` (a fee in BNB on a EUR/USD fill): the last price of the exchange's
        ASSET/QUOTE ticker read now, as the fill is read (or 1 / QUOTE/ASSET); 0 with the reason when the
        exchange lists neither (the fee is then kept in its currency, but not valued)."""
        markets = self.exchange.markets or {}
        for pair, inverse in ((f"{asset}/{quote}", False), (f"{quote}/{asset}", True)):
            if pair in markets:
                ticker = self._call(self.exchange.fetch_ticker, pair)
                last = float(ticker.get("last") or ticker.get("close") or 0.0)
                if last > 0:
                    when = _time(ticker.get("timestamp")) or self._now()
                    return (1.0 / last if inverse else last,
                            f"{self.config.exchange} ticker {pair} last{' (inverted)' if inverse else ''} at "
                            f"{when.isoformat(timespec='milliseconds')}")
        return 0.0, f"not valued: {self.config.exchange} lists no {asset}/{quote} market"

    def _now(self) -> datetime:
        return self._clock() if self._clock is not None else self.connection.now()


def _open_orders_costs(exchange: Any) -> tuple[float, float]:
    """ccxt's rate-limit cost of asking one market's open orders, and every market's at once.

    Both where ccxt's description of the exchange gives them (Binance's spot ``openOrders``: ``cost``
    and ``noSymbol``); otherwise (1, infinity), so such an exchange is asked market by market, as many
    refuse a request for open orders without a symbol.
    """
    api = getattr(exchange, "api", None)
    entry = api.get("private", {}).get("get", {}).get("openOrders") if isinstance(api, dict) else None
    if exchange.id.startswith("binance") and isinstance(entry, dict) and "cost" in entry and "noSymbol" in entry:
        return float(entry["cost"]), float(entry["noSymbol"])
    return 1.0, math.inf


def _short(counted: float, filled: float) -> bool:
    """Whether the trades counted fall short of what the exchange says filled (beyond float rounding)."""
    return filled > counted + 1e-9 * max(1.0, filled)


def _bounded(memory: dict[str, Any], limit: int) -> None:
    """Make room for one more entry in ``memory``, dropping the oldest beyond ``limit``."""
    while len(memory) >= limit:
        del memory[next(iter(memory))]


def _time(milliseconds: Any) -> datetime | None:
    if milliseconds is None:
        return None
    return datetime.fromtimestamp(int(milliseconds) / 1000, UTC)


def _step(exchange: Any, market: Mapping[str, Any], kind: str) -> float:
    """A market's step for amounts or prices, whatever precision mode the exchange class uses."""
    value = (market.get("precision") or {}).get(kind)
    if value is None:
        return 0.0
    from ccxt.base.decimal_to_precision import TICK_SIZE

    return float(value) if exchange.precisionMode == TICK_SIZE else 10.0 ** -int(value)


def _whole_lots(exchange: Any, market: str, quantity: float) -> float:
    """``quantity`` rounded down to the market's lot step; 0 when that is less than one lot."""
    if quantity <= 0:
        return 0.0
    import ccxt

    try:
        return float(exchange.amount_to_precision(market, quantity))
    except ccxt.InvalidOrder:  # ccxt's way of saying it truncates to zero
        return 0.0

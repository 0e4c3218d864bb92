"""The matching engine: market orders fill at once at bid or ask, limit orders rest and fill when the path touches them.

There is no book of other traders: the price path (:mod:`prices`) is the market. A market buy
pays the ask (last price plus half the spread, rounded up to a tick), a sell gets the bid. A
limit order that is marketable when it arrives trades at once as a taker at the bid or ask; the
rest of it rests and fills, as a maker at its own price, at the first instant the path reaches
that price. Resting orders are matched lazily: :meth:`Engine.advance` walks the path from where
each order was last checked up to now, filling in time order, so fills that happened "while
nobody asked" get the times they happened at.

A partial-fill plan (from a fault) splits an order into parts, one part per touch and at most
one per interval; a market order (and an IOC remainder) fills its first part and EXPIRES, as on
Binance when the book is thin.

Stop orders (STOP_LOSS, TAKE_PROFIT and their _LIMIT forms) wait, not working, until the path reaches their stop
price — a stop-loss sell at or below it, a take-profit sell at or above it, a buy the other way round; one that
would trigger at once is refused (-2010), as Binance does. What they may spend is locked from the start. Triggered,
a STOP_LOSS or TAKE_PROFIT trades as a market order at that moment's bid or ask (what the free balance cannot pay
expires); a _LIMIT one arrives as a limit order: it trades at once as a taker at the bid or ask when that already
reaches its limit, and otherwise rests at its limit price, filling as a maker when the path reaches it.

Client order ids are unique among a symbol's *open* orders only: once an order is filled,
canceled or expired its id may be used again, and a lookup by id finds the newest order.
"""

from __future__ import annotations

import heapq
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from tradeexecutor.exchange_sim import errors
from tradeexecutor.exchange_sim.accounts import Accounts, Overdrawn
from tradeexecutor.exchange_sim.config import BNB, MarketSpec, SimConfig
from tradeexecutor.exchange_sim.filters import check_order
from tradeexecutor.exchange_sim.numbers import ZERO, commission, round_down, round_up, to_decimal
from tradeexecutor.exchange_sim.orders import CANCELED, EXPIRED, Order, Trade
from tradeexecutor.exchange_sim.prices import BarSeries

BUY = "BUY"
SELL = "SELL"
MARKET = "MARKET"
LIMIT = "LIMIT"
LIMIT_MAKER = "LIMIT_MAKER"
STOP_LOSS = "STOP_LOSS"
STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
TAKE_PROFIT = "TAKE_PROFIT"
TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"

#: Order types and times in force the exchange accepts.
ORDER_TYPES = (LIMIT, LIMIT_MAKER, MARKET, STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT)
TIMES_IN_FORCE = ("GTC", "IOC", "FOK")
#: The stop orders (they take ``stopPrice``), those that trade as a market order once triggered, and those that take
#: a limit price and a time in force.
STOP_TYPES = frozenset({STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT})
MARKET_ON_TRIGGER = frozenset({STOP_LOSS, TAKE_PROFIT})
LIMIT_TYPES = frozenset({LIMIT, STOP_LOSS_LIMIT, TAKE_PROFIT_LIMIT})


@dataclass(frozen=True)
class NewOrder:
    """A validated new-order request."""

    symbol: str
    side: str
    type: str
    client_order_id: str
    #: GTC, IOC or FOK for LIMIT and the _LIMIT stops; None for MARKET, LIMIT_MAKER, STOP_LOSS and TAKE_PROFIT.
    time_in_force: str | None = None
    quantity: Decimal | None = None
    #: A market order's size in the quote asset, instead of ``quantity``.
    quote_order_qty: Decimal | None = None
    price: Decimal | None = None
    #: A stop order's trigger price (``stopPrice``); None for the others.
    stop_price: Decimal | None = None


@dataclass(frozen=True)
class PartialPlan:
    """Fill an order in ``parts`` roughly equal parts, at least ``interval_ms`` apart."""

    parts: int
    interval_ms: int


class Engine:
    """Orders, trades and balances of the one account; not thread-safe (the simulator holds its lock)."""

    def __init__(self, config: SimConfig, series: Mapping[str, BarSeries], accounts: Accounts):
        self.config = config
        self.series = dict(series)
        self.accounts = accounts
        self.reset()

    def reset(self) -> None:
        """Forget every order and trade (balances are the account's business)."""
        self.orders: dict[int, Order] = {}
        #: The open ones, so that each request's work grows with the open orders, not the history.
        self._open: dict[int, Order] = {}
        self.trades: deque[Trade] = deque(maxlen=self.config.max_trades)
        self._by_client_id: dict[tuple[str, str], list[int]] = {}
        self._closed: deque[int] = deque()
        self._next_order_id = 1
        self._next_trade_id = 1

    # -- prices ----------------------------------------------------------------------------------

    def market(self, symbol: str) -> MarketSpec:
        """The market ``symbol``; -1121 when there is none."""
        market = self.config.market(symbol)
        if market is None or symbol not in self.series:
            raise errors.invalid_symbol()
        return market

    def last_price(self, symbol: str, now_ms: int) -> Decimal:
        """The last price, on the tick grid."""
        market = self.market(symbol)
        return to_decimal(self.series[symbol].price_at(now_ms), market.tick_size)

    def bid_ask(self, symbol: str, now_ms: int) -> tuple[Decimal, Decimal]:
        """Best bid and ask: the last price minus and plus half the spread, outward to the tick."""
        market = self.market(symbol)
        price = Decimal(self.series[symbol].price_at(now_ms))
        half = price * self.config.spread_bps / Decimal(20_000)
        bid = round_down(price - half, market.tick_size)
        ask = round_up(price + half, market.tick_size)
        return max(bid, market.tick_size), max(ask, market.tick_size)

    # -- placing and cancelling ------------------------------------------------------------------

    def place(self, request: NewOrder, now_ms: int, *, partial: PartialPlan | None = None,
              reject: errors.BinanceError | None = None) -> tuple[Order, list[Trade]]:
        """Accept ``request`` (or raise the Binance error that refuses it); the trades it made at once."""
        market = self.market(request.symbol)
        self.advance(now_ms)
        if self._open_by_client_id(request.symbol, request.client_order_id) is not None:
            raise errors.duplicate_order()
        bid, ask = self.bid_ask(request.symbol, now_ms)
        touch = ask if request.side == BUY else bid
        quantity = request.quantity
        if quantity is None:
            assert request.quote_order_qty is not None
            quantity = round_down(request.quote_order_qty / touch, market.step_size)
        open_count = sum(1 for order in self.open_orders(request.symbol))
        check_order(market, quantity=quantity, price=request.price, reference=touch, open_orders=open_count)
        stop = request.stop_price
        if stop is not None:
            check_order(market, quantity=quantity, price=stop, reference=touch, open_orders=open_count)
            if self._triggers(request.type, request.side, self.last_price(request.symbol, now_ms), stop):
                raise errors.new_order_rejected("Stop price would trigger immediately.")
        marketable = stop is None and (request.type == MARKET or (
            request.price is not None and (ask <= request.price if request.side == BUY else bid >= request.price)
        ))
        if request.type == LIMIT_MAKER and marketable:
            raise errors.would_take()
        if reject is not None:
            raise reject
        order = Order(
            order_id=self._next_order_id,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            time_in_force=request.time_in_force,
            price=request.price if request.price is not None else ZERO,
            orig_qty=quantity,
            time_ms=now_ms,
            orig_quote_order_qty=request.quote_order_qty or ZERO,
            update_time_ms=now_ms,
            checked_ms=now_ms,
            stop_price=stop if stop is not None else ZERO,
            waiting=stop is not None,
        )
        parts = partial.parts if partial is not None else 1
        order.part_qty = quantity if parts <= 1 else max(round_down(quantity / parts, market.step_size),
                                                         market.step_size)
        order.part_interval_ms = partial.interval_ms if partial is not None else 0
        self._reserve(order, market, touch)
        self._next_order_id += 1
        self.orders[order.order_id] = order
        self._open[order.order_id] = order
        self._by_client_id.setdefault((order.symbol, order.client_order_id), []).append(order.order_id)
        trades = self._execute_on_arrival(order, market, touch, marketable, now_ms)
        return order, trades

    def _reserve(self, order: Order, market: MarketSpec, touch: Decimal) -> None:
        """Lock (limit orders) or check (market orders) what the order may spend; -2010 when short."""
        pay_asset = market.quote if order.side == BUY else market.base
        price = touch if order.type == MARKET else (order.price or order.stop_price)  # a STOP_LOSS: at its stop
        needed = self._payment(order.side, market, order.orig_qty, price)
        try:
            if order.type == MARKET:
                if needed > self.accounts.free(pay_asset):
                    raise Overdrawn(pay_asset)
            else:
                self.accounts.lock(pay_asset, needed)
                order.locked_asset, order.locked = pay_asset, needed
        except Overdrawn:
            raise errors.new_order_rejected(errors.INSUFFICIENT_BALANCE) from None

    def _execute_on_arrival(self, order: Order, market: MarketSpec, touch: Decimal, marketable: bool,
                            now_ms: int) -> list[Trade]:
        """Trade what the order takes at once; expire what an IOC, FOK or market order cannot keep."""
        trades: list[Trade] = []
        if order.waiting:  # a stop order: nothing until it triggers
            return trades
        immediate = order.type == MARKET or order.time_in_force in ("IOC", "FOK")
        if marketable and not (order.time_in_force == "FOK" and order.part_qty < order.orig_qty):
            trades.append(self._fill(order, market, min(order.part_qty, order.remaining), touch, now_ms,
                                     maker=False))
            order.next_fill_ms = now_ms + order.part_interval_ms
        if order.is_open and immediate:
            self._close(order, EXPIRED, now_ms)
        return trades

    def cancel(self, symbol: str, order_id: int | None, client_order_id: str | None, now_ms: int) -> Order:
        """Cancel an open order; -2011 when it is unknown or no longer open."""
        self.market(symbol)
        self.advance(now_ms)
        try:
            order = self.find(symbol, order_id, client_order_id)
        except errors.BinanceError:
            raise errors.cancel_rejected() from None
        if not order.is_open:
            raise errors.cancel_rejected()
        self._close(order, CANCELED, now_ms)
        return order

    @staticmethod
    def cancel_client_id() -> str:
        """The id Binance gives a cancel request that brings none of its own."""
        return uuid.uuid4().hex[:22]

    def _close(self, order: Order, status: str, now_ms: int) -> None:
        """Move an open order to CANCELED or EXPIRED and unlock what it held."""
        order.move(status, now_ms)
        self._release(order)

    def _release(self, order: Order) -> None:
        """Unlock what a closed order still holds, and forget the oldest closed orders beyond the limit."""
        self._open.pop(order.order_id, None)
        if order.locked:
            self.accounts.unlock(order.locked_asset, order.locked)
            order.locked = ZERO
        self._closed.append(order.order_id)
        while len(self._closed) > self.config.max_closed_orders:
            self._forget(self._closed.popleft())

    def _forget(self, order_id: int) -> None:
        order = self.orders.pop(order_id, None)
        if order is None:
            return
        key = (order.symbol, order.client_order_id)
        ids = self._by_client_id.get(key, [])
        if order_id in ids:
            ids.remove(order_id)
        if not ids:
            self._by_client_id.pop(key, None)

    # -- fills -----------------------------------------------------------------------------------

    def _fee_asset(self, market: MarketSpec, side: str) -> str:
        mode = self.config.fee_asset
        if mode in ("received", "bnb"):
            return market.base if side == BUY else market.quote
        return market.quote if mode == "quote" else market.base

    def _bnb_fee(self, market: MarketSpec, cost: Decimal, time_ms: int) -> Decimal | None:
        """With ``--fee-asset bnb``: the fee on ``cost`` (quote) in BNB at the BNB/QUOTE market's last price, cut
        to 8 decimals, when the account's free BNB covers it (as Binance does); None: charged as ``received``."""
        if self.config.fee_asset != "bnb" or market.base == BNB or market.quote == BNB:
            return None
        price = self.last_price(f"{BNB}{market.quote}", time_ms)
        fee = commission(cost / price, self.config.fee_rate)
        return fee if ZERO < fee <= self.accounts.free(BNB) else None

    def _payment(self, side: str, market: MarketSpec, quantity: Decimal, price: Decimal) -> Decimal:
        """What a fill of ``quantity`` at ``price`` takes from the account, fee on top included."""
        fee_asset, rate = self._fee_asset(market, side), self.config.fee_rate
        if side == BUY:
            cost = quantity * price
            return cost + (commission(cost, rate) if fee_asset == market.quote else ZERO)
        return quantity + (commission(quantity, rate) if fee_asset == market.base else ZERO)

    def _fill(self, order: Order, market: MarketSpec, quantity: Decimal, price: Decimal, time_ms: int, *,
              maker: bool) -> Trade:
        """Trade ``quantity`` of ``order`` at ``price``: move the assets, charge the fee, record the trade."""
        fee_asset, rate = self._fee_asset(market, order.side), self.config.fee_rate
        cost = quantity * price
        fee = commission(quantity if fee_asset == market.base else cost, rate)
        pay = self._payment(order.side, market, quantity, price)
        bnb_fee = self._bnb_fee(market, cost, time_ms)
        if bnb_fee is not None:  # paid from the BNB balance: the trade's own assets move without a fee
            fee_asset, fee = BNB, bnb_fee
            pay = cost if order.side == BUY else quantity
            self.accounts.spend(BNB, bnb_fee)
        if order.side == BUY:
            receive_asset, receive = market.base, quantity - (fee if fee_asset == market.base else ZERO)
        else:
            receive_asset, receive = market.quote, cost - (fee if fee_asset == market.quote else ZERO)
        if not order.locked_asset:  # a market order, or a triggered STOP_LOSS / TAKE_PROFIT: from the free balance
            self.accounts.spend(market.quote if order.side == BUY else market.base, pay)
        else:
            final = quantity == order.remaining
            release = order.locked if final else min(
                order.locked, self._payment(order.side, market, quantity, order.price))
            self.accounts.spend_locked(order.locked_asset, release)
            self.accounts.credit(order.locked_asset, release - pay)
            order.locked -= release
        self.accounts.credit(receive_asset, receive)
        trade = Trade(
            trade_id=self._next_trade_id, order_id=order.order_id, symbol=order.symbol,
            is_buyer=order.side == BUY, price=price, qty=quantity, commission=fee,
            commission_asset=fee_asset, time_ms=time_ms, is_maker=maker,
        )
        self._next_trade_id += 1
        order.record_fill(trade)
        self.trades.append(trade)
        if not order.is_open:
            self._release(order)
        return trade

    def advance(self, now_ms: int) -> list[Trade]:
        """Grow the price paths to ``now_ms`` and fill resting orders the path touched, oldest touch first."""
        for series in self.series.values():
            series.extend_to(now_ms)
        events: list[tuple[int, int]] = []
        for order in self._open.values():
            if order.type != MARKET:
                touched = self._next_trigger(order, now_ms) if order.waiting else self._next_touch(order, now_ms)
                if touched is not None:
                    events.append((touched, order.order_id))
        heapq.heapify(events)
        trades: list[Trade] = []
        while events:
            time_ms, order_id = heapq.heappop(events)
            order = self.orders[order_id]
            market = self.market(order.symbol)
            if order.waiting:  # a stop order's trigger
                order.waiting, order.checked_ms, order.working_ms = False, time_ms, time_ms
                if order.type in MARKET_ON_TRIGGER:
                    trades += self._trigger_market(order, market, time_ms)
                    continue
                trades += self._trigger_limit(order, market, time_ms)
                if not order.is_open:
                    continue
                again = self._next_touch(order, now_ms)
                if again is not None:
                    heapq.heappush(events, (again, order_id))
                continue
            trades.append(self._fill(order, market, min(order.part_qty, order.remaining), order.price, time_ms,
                                     maker=True))
            order.checked_ms = time_ms
            order.next_fill_ms = time_ms + order.part_interval_ms
            if order.is_open:
                again = self._next_touch(order, now_ms)
                if again is not None:
                    heapq.heappush(events, (again, order_id))
        for order in self._open.values():
            order.checked_ms = max(order.checked_ms, now_ms)
        return trades

    @staticmethod
    def _triggers(kind: str, side: str, price: Decimal, stop: Decimal) -> bool:
        """Whether a stop order of ``kind`` and ``side`` triggers at ``price``: a stop-loss sell (a take-profit buy)
        at or below its stop, a stop-loss buy (a take-profit sell) at or above it."""
        below = (side == SELL) == (kind in (STOP_LOSS, STOP_LOSS_LIMIT))
        return price <= stop if below else price >= stop

    def _next_trigger(self, order: Order, now_ms: int) -> int | None:
        """When the path first reaches a waiting stop order's stop price after it was last checked."""
        below = (order.side == SELL) == (order.type in (STOP_LOSS, STOP_LOSS_LIMIT))
        return self.series[order.symbol].first_touch(order.checked_ms, now_ms, float(order.stop_price),
                                                     at_or_below=below)

    def _trigger_market(self, order: Order, market: MarketSpec, time_ms: int) -> list[Trade]:
        """A STOP_LOSS or TAKE_PROFIT that triggered at ``time_ms``: what it locked is freed and it trades as a market
        order at that moment's bid or ask, from the free balance; what that cannot pay, or a part plan leaves,
        expires."""
        if order.locked:
            self.accounts.unlock(order.locked_asset, order.locked)
        order.locked, order.locked_asset = ZERO, ""
        bid, ask = self.bid_ask(order.symbol, time_ms)
        touch = ask if order.side == BUY else bid
        pay_asset = market.quote if order.side == BUY else market.base
        quantity = min(order.part_qty, order.remaining)
        trades = []
        if self._payment(order.side, market, quantity, touch) <= self.accounts.free(pay_asset):
            trades.append(self._fill(order, market, quantity, touch, time_ms, maker=False))
        if order.is_open:
            self._close(order, EXPIRED, time_ms)
        return trades

    def _trigger_limit(self, order: Order, market: MarketSpec, time_ms: int) -> list[Trade]:
        """A STOP_LOSS_LIMIT or TAKE_PROFIT_LIMIT that triggered at ``time_ms`` arrives as a limit order: one whose
        limit the bid or ask at that moment already reaches trades at once as a taker at that price (as Binance
        places it on its book); otherwise, or for what a part plan leaves, it rests at its limit."""
        bid, ask = self.bid_ask(order.symbol, time_ms)
        touch = ask if order.side == BUY else bid
        if (touch > order.price) if order.side == BUY else (touch < order.price):
            return []
        trade = self._fill(order, market, min(order.part_qty, order.remaining), touch, time_ms, maker=False)
        order.next_fill_ms = time_ms + order.part_interval_ms
        return [trade]

    def _next_touch(self, order: Order, now_ms: int) -> int | None:
        """When the path next reaches the order's price after it was last checked (and its part wait)."""
        after = max(order.checked_ms, order.next_fill_ms - 1)
        if after >= now_ms:
            return None
        half_tick = float(self.market(order.symbol).tick_size) / 2.0
        buy = order.side == BUY
        level = float(order.price) + (half_tick if buy else -half_tick)
        return self.series[order.symbol].first_touch(after, now_ms, level, at_or_below=buy)

    # -- queries ---------------------------------------------------------------------------------

    def _open_by_client_id(self, symbol: str, client_order_id: str) -> Order | None:
        for order_id in reversed(self._by_client_id.get((symbol, client_order_id), [])):
            order = self.orders.get(order_id)
            if order is not None and order.is_open:
                return order
        return None

    def find(self, symbol: str, order_id: int | None, client_order_id: str | None) -> Order:
        """The order by id, or the newest with that client id; -2013 when none (or they disagree)."""
        self.market(symbol)
        order: Order | None = None
        if order_id is not None:
            order = self.orders.get(order_id)
            if order is not None and (order.symbol != symbol or (
                    client_order_id is not None and order.client_order_id != client_order_id)):
                order = None
        elif client_order_id is not None:
            ids = self._by_client_id.get((symbol, client_order_id), [])
            order = self.orders.get(ids[-1]) if ids else None
        if order is None:
            raise errors.no_such_order()
        return order

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        """Open orders, oldest first, of one symbol or all."""
        return [o for o in self._open.values() if symbol is None or o.symbol == symbol]

    def all_orders(self, symbol: str | None = None) -> list[Order]:
        """Every order still kept, oldest first."""
        return [o for o in self.orders.values() if symbol is None or o.symbol == symbol]

    @property
    def next_trade_id(self) -> int:
        """The id the next trade will have (a ``trades_lag`` fault hides it and every later one)."""
        return self._next_trade_id

    def trade_list(self, symbol: str | None = None) -> list[Trade]:
        """Every trade still kept, oldest first."""
        return [t for t in self.trades if symbol is None or t.symbol == symbol]

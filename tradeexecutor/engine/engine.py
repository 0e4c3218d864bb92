"""One engine for backtest, replay, paper and live: each timeline step fills, checks triggers, marks and decides.

A step of the timeline is one bar close time. Per step, in order:

1. ``fill_pending``   orders created by an earlier cycle fill at this bar's open (``next_open``);
2. ``check_triggers`` stop-loss, trailing stop and take-profit against this bar's range;
3. ``mark_to_market`` open positions take this bar's close;
4. ``run_cycle``      when a cycle is due: the strategy decides, orders are created for its intents,
                      sells then buys (and filled at once at this close when fill timing is ``close``);
5. the caller records the valuation.

Steps 1-3 (``manage``) never call the strategy, so the daemon can commit them before step 4
and keep managing positions while a strategy fails. Step 4 is two calls: ``ask_strategy`` runs
only the strategy's code and checks what it returned, changing nothing; ``plan`` then turns the
checked intents into orders. An exception from the first is the strategy's; from the second,
the engine's.

Orders go through the simulated venue in one of two ways. A backtest prices them synchronously
(``SimulatedVenue.buy``/``sell``), keeps them in memory and fills them within the step. The
daemon turns on *write-ahead* (``start_write_ahead``, engine/router.py): every order is committed
``submitting`` through the loop's commit hook before the venue sees it, submitted, priced by the
venue (``SimulatedVenue.advance``) and its outcome comes back as execution events, applied and
committed; on restart ``resolve_orders`` settles every order a crash left ``submitting`` before
anything is decided (docs/orders.md, "Write-ahead and restart"). Both ways price with the same
code and the same cash, so a paper run fills exactly as a backtest. Every fill changes the
portfolio only through engine/accounting.py. Each order gets its deterministic client order id when created
(state/client_id.py): the cycle time and the intent's place in the cycle's execution order, or
for a trigger exit the bar time and the position.

The engine never sleeps and never reads a clock: the backtest runner drives it over history,
the daemon drives it from a feed on wall-clock cycles.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any, Protocol

import pandas as pd

from tradeexecutor.config import EngineConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.engine import accounting, triggers
from tradeexecutor.engine.fills_missing import MissingFills
from tradeexecutor.engine.risk import position_value_refusal
from tradeexecutor.engine.router import OrderRouter, said
from tradeexecutor.errors import ExchangeLagError, InvariantError, TemporaryError
from tradeexecutor.state import (
    DEFAULT_QUANTITY_STEP,
    Fill,
    Order,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
    RejectReason,
    State,
    TriggerKind,
)
from tradeexecutor.state import run_key as make_run_key
from tradeexecutor.state.client_id import client_order_id_ms
from tradeexecutor.strategy.context import CycleContext
from tradeexecutor.strategy.failure import note_strategy_failure
from tradeexecutor.strategy.indicators import IndicatorStore, compute_indicators
from tradeexecutor.strategy.intents import KEEP, Intent
from tradeexecutor.strategy.loader import LoadedStrategy
from tradeexecutor.venue.model import LOST_AFTER, NotFoundAnswers, OrderEndedShort, Venue
from tradeexecutor.venue.simulated import SimulatedFill, SimulatedVenue


class EventSink(Protocol):
    """Receives what happened (order filled, trigger fired, ...) for the journal; must not raise.

    ``event`` is positional-only, so every keyword — ``event``, ``level`` and ``at`` included — is
    one of the event's own fields; the sink keeps them apart from its own (see store/journal.py).
    """

    def __call__(self, event: str, /, **fields: Any) -> None: ...


def _no_events(event: str, /, **fields: Any) -> None:
    return None


@dataclass
class CycleReport:
    """What one strategy cycle did, for the journal and RunState."""

    #: The cycle's time, epoch nanoseconds UTC (``cycle_time`` as a Timestamp: built only when read).
    cycle_time_ns: int
    #: Intents the strategy returned.
    decisions: int = 0
    #: Orders created this cycle.
    planned: int = 0
    #: Orders filled within the cycle: fill timing ``close`` fills at the cycle's close; with
    #: ``next_open`` they fill at the next step (``fill_pending``) and count there, not here.
    executed: int = 0
    #: Orders rejected within the cycle when filling at its close (cash, rounding, minimum notional).
    rejected: int = 0
    #: Intents that did nothing, with the reason (position already open, paused, ...).
    ignored: list[str] = field(default_factory=list)
    #: Wall-clock seconds spent in the strategy and execution.
    duration: float = 0.0

    @property
    def cycle_time(self) -> pd.Timestamp:
        """The cycle's time (UTC)."""
        return pd.Timestamp(self.cycle_time_ns, tz="UTC")


#: Intent actions the engine plans.
_ACTIONS = frozenset({"open", "increase", "reduce", "close", "set_triggers"})


def _intent_order(intent: Intent) -> int:
    """Sells free cash before buys use it; trigger changes apply to positions opened this cycle."""
    if intent.action == "set_triggers":
        return 2
    return 1 if intent.is_buy else 0


#: Enum members bound once: a member looked up on its class is a Python-level __getattr__ call,
#: and these are used for every order of a long backtest.
_BUY, _SELL = OrderSide.buy, OrderSide.sell
_MARKET = OrderType.market
#: Statuses of an order the exchange has acknowledged and holds open (a cancel can end it).
_RESTING = frozenset({OrderStatus.open, OrderStatus.partially_filled})
_OPEN, _INCREASE, _REDUCE, _CLOSE = OrderPurpose.open, OrderPurpose.increase, OrderPurpose.reduce, OrderPurpose.close
_SUBMITTING, _CREATED, _FILLED, _REJECTED, _UNKNOWN = (
    OrderStatus.submitting, OrderStatus.created, OrderStatus.filled, OrderStatus.rejected, OrderStatus.unknown)
#: Why an order of a position the strategy's close() sells whole is cancelled.
_CLOSED_BY_STRATEGY = "cancelled by close() before it filled"
#: The purpose of the order each order-making intent action creates.
_PURPOSE_OF = {"open": _OPEN, "increase": _INCREASE, "reduce": _REDUCE, "close": _CLOSE}


def _whole_ticks(value: float, tick: float) -> float:
    """``value`` rounded down to whole ``tick`` (exactly, then to the nearest float: what ccxt's truncation to the
    tick sends); itself when there is no tick. Its shortest decimal form is truncated, as ccxt truncates the string
    it makes of the float: the float's exact binary value of 6767.83 is a hair below it, and flooring that cut a
    value already on the tick by one tick about half the time."""
    if tick <= 0.0 or not math.isfinite(value):
        return value
    step = Fraction(str(tick))
    return float(math.floor(Fraction(repr(value)) / step) * step)


def _holds_entries(order: Order) -> bool:
    """Live mode: whether a sell the exchange has not ended yet holds back the buys decided with or after it (they
    spend what it brings). A market order does: the engine's own exits, which the exchange ends in moments. A limit
    sell resting at the exchange (one reconciliation adopted) does not: it may rest for days, and the buys go without
    it, sized to the cash there is."""
    return order.type is _MARKET


def _is_position_exit(order: Order) -> bool:
    """True for an exit of a whole position priced when it was created (a trigger's, an operator's close): its
    client order id names the position (``…-p<id><letter>``, state/client_id.py)."""
    return order.client_order_id.rsplit("-", 1)[-1].startswith("p")


def _waiting_reason(order: Order, short: OrderEndedShort) -> str:
    """Why the exits of ``order``'s position wait (``Engine.exit_waits``), in words for a person."""
    return (f"its {order.purpose.value} order {order.client_order_id} ended at the exchange having filled "
            f"{short.filled:g} while the trades it lists add up to {short.listed:g} (since {short.at.isoformat()}); "
            "its exits wait until the trades are listed and booked: sized on the part booked, an exit would sell the "
            "wrong amount")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _to_datetime(ns: int) -> datetime:
    """Epoch nanoseconds as an aware UTC datetime (microseconds, as pandas' to_pydatetime gives).

    Plain datetime arithmetic: a pandas Timestamp per order cost ~9 µs, a third of a trade's time; a
    positional timedelta is built twice as fast as one from keywords.
    """
    return _EPOCH + timedelta(0, 0, ns // 1000)


def _ns(value: datetime) -> int:
    """A datetime (naive means UTC) as epoch nanoseconds, as ``pd.Timestamp(value).value`` gives."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND * 1000


#: The hot paths make their records as ``_new(Cls)`` then ``Cls.__init__(obj, **fields)``: the same object and
#: the same keyword checks as ``Cls(**fields)``, but a class called with keywords first gathers them into a dict,
#: which costs as much again as the dataclass's ``__init__`` itself.
_new = object.__new__
_init_order = Order.__init__



#: Live orders as they stood before the venue was asked about them: position, order, fill count, position quantity.
_Followed = list[tuple[Position, Order, int, float]]


def _followed(orders: Iterable[tuple[Position, Order]]) -> _Followed:
    return [(p, o, len(o.fills), p.quantity) for p, o in orders]

class Engine:
    """Runs a strategy against market data, changing only the state it was given."""

    def __init__(
        self,
        strategy: LoadedStrategy,
        market: MarketData,
        state: State,
        *,
        config: EngineConfig | None = None,
        venue: SimulatedVenue | None = None,
        indicators: IndicatorStore | None = None,
        asset_types: dict[str, str] | None = None,
        trigger_market: MarketData | None = None,
        events: EventSink | None = None,
        run_key: str | None = None,
    ):
        self.strategy = strategy
        self.market = market
        self.state = state
        self.config = config or EngineConfig()
        self.venue = venue or SimulatedVenue(self.config.execution)
        self.fill_at_close = self.config.execution.fill_timing == "close"
        self.trigger_market = trigger_market
        self.events: EventSink = events or _no_events
        #: False when nobody listens: the hot order path then builds no event fields at all.
        self._journal = events is not None
        self.symbols = tuple(strategy.instruments)
        types = asset_types or {}
        self.instrument_ids: dict[str, int] = {}
        for symbol in self.symbols:
            asset_type = types.get(symbol) or strategy.asset_types.get(symbol) or "equity"
            instrument = state.add_instrument(
                symbol, asset_type, DEFAULT_QUANTITY_STEP.get(asset_type, 1.0), self.config.execution.min_notional
            )
            self.instrument_ids[symbol] = instrument.id
        self.symbol_of = {iid: symbol for symbol, iid in self.instrument_ids.items()}
        self.indicators = indicators if indicators is not None else compute_indicators(
            strategy.indicators, market, strategy.parameters, check_causality=self.config.check_indicator_lookahead,
            where=str(strategy.path),
        )
        self.context = CycleContext(market, self.indicators, state, strategy.parameters, self.symbols)
        self.context._set_instrument_ids(self.instrument_ids)
        self.context._set_marker(self.mark_to_market)
        #: True while no new positions may be opened (operator pause, safe mode). The strategy
        #: sees it through the read-only ``ctx.paused`` and cannot change it.
        self.paused = False
        #: Largest value one position may reach through entries (quote currency; 0: no limit): an entry or
        #: increase that would pass it is refused (``RiskConfig.max_position_value``).
        self.max_position_value = 0.0
        self._decide = strategy.decide
        self._bars = [market.bars[s] for s in self.symbols]
        self._closing_at = [market.closing_at[s] for s in self.symbols]
        self._last_closed = [market.last_closed[s] for s in self.symbols]
        self._slot = {self.instrument_ids[s]: i for i, s in enumerate(self.symbols)}
        #: Fills so far (entries, exits and trigger exits): the backtest records holdings when it moves.
        self.fills = 0
        #: False until a position has had a protective order (it is never reset): while False,
        #: there is nothing for check_triggers to check and the backtest skips it.
        self.triggers_armed = any(triggers.has_triggers(p) for p in state.portfolio.open_positions)
        self._generation = market.generation  # appends to the market already taken in (follow_market)
        #: The run's part of every client order id (state/client_id.py): the state's identity unless given.
        self.run_key = run_key if run_key is not None else make_run_key(state.name, state.created_at)
        #: Orders waiting for a fill, sells before buys.
        self.pending: list[tuple[Position, Order]] = [
            (p, o) for p in state.portfolio.open_positions for o in p.orders if not o.is_terminal
        ]
        #: Write-ahead (the daemon): sends every order through the venue, committing first; None in a backtest.
        self.router: OrderRouter | None = None
        #: Live mode: the venue outside the process (an exchange) the router sends every order to instead of a
        #: simulated mirror; set before ``start_write_ahead``. The exchange decides price, quantity and fee.
        self.live_venue: Venue | None = None
        #: Live mode: the span over which the exchange's "does not exist" must last to be believed (``NotFoundAnswers``;
        #: the exchange's ``--exchange-not-found-seconds``); set with :attr:`live_venue`.
        self.not_found_after = LOST_AFTER
        #: With write-ahead, the orders of decisions that may be taken again (the cycle a crash interrupted, and
        #: later ones) by client order id: the same decision finds its order instead of making a second one.
        self._by_cid: dict[str, tuple[Position, Order]] | None = None
        #: Live mode: the reason of each cancel asked of the exchange and not yet confirmed, by client order id
        #: (journaled ``order_cancelled`` with it once the exchange has cancelled the order).
        self._cancelling: dict[str, str] = {}
        #: Live mode: orders this process found lost — accepted by the exchange once, unknown to it (for long enough:
        #: ``NotFoundAnswers``) when their cancel was asked about or the poll followed them — by client order id, with
        #: the words for a person (``_lost``).
        self.lost: dict[str, str] = {}
        #: Live mode: orders the exchange says ended while their trades have not added up for long enough (still
        #: followed), with the words for /status, /healthz and /metrics (``MissingFills``).
        self.missing_fills = MissingFills()
        #: Live mode: the orders whose held-back exit was journaled ``exit_waiting`` (once per order; ``exit_waits``).
        self._exit_waiting_told: set[str] = set()
        #: Live mode: the ExchangeLagError the last ``settle_unknown(hold=False)`` let pass (an order still waiting out
        #: the exchange's "does not exist" lag), None when no order waits; the cycle manages its bar, then raises it.
        self.lag: ExchangeLagError | None = None

    def cancels_asked_before(self, requests: Iterable[Mapping[str, Any]]) -> None:
        """Live mode, at start-up: the cancels an earlier process asked for (the fields of its journaled
        ``order_cancel_requested`` lines, ``Ledger.journaled``) of orders not yet ended, taken as asked for here
        too: the retried exit asks the exchange again without a second ``order_cancel_requested`` line (once per
        order across restarts), and the order's end, when the exchange confirms it, is journaled
        ``order_cancelled`` with the request's reason."""
        waiting = {o.client_order_id for p in self.state.portfolio.open_positions for o in p.orders
                   if not o.is_terminal}
        for fields in requests:
            cid = fields.get("client_order_id")
            if cid in waiting:
                self._cancelling[cid] = str(fields.get("reason") or "")

    def lost_before(self, lines: Iterable[Mapping[str, Any]]) -> None:
        """Live mode, at start-up: the orders an earlier process found lost (the fields of its journaled ``order_lost``
        lines, ``Ledger.journaled``) and still ``unknown``, taken as found lost here too: ``order_lost`` is journaled
        once per order across restarts, and the loop enters safe mode with their words again (:attr:`lost`)."""
        unknown = {o.client_order_id for p in self.state.portfolio.open_positions for o in p.orders
                   if o.status is _UNKNOWN}
        for fields in lines:
            cid = fields.get("client_order_id")
            if cid in unknown:
                self.lost[cid] = str(fields.get("reason") or "")

    def start_write_ahead(self, commit: Callable[[], None], now: Callable[[], datetime]) -> None:
        """Send every order from now on through a venue, write-ahead (the daemon's way).

        ``commit`` makes the state durable (the loop's running job commits); it is called with the
        order ``submitting`` before the venue sees it and again with the outcome. ``now`` is the
        wall clock the router stamps resolutions with. The venue is :attr:`live_venue` when set
        (live mode: the exchange prices and fills the order), otherwise a simulated venue built
        from the state as it stands — cash and every symbol's quantity — so it sizes orders
        exactly as the backtest does.
        """
        portfolio = self.state.portfolio
        if self.live_venue is not None:
            self.router = OrderRouter(self.state, self.live_venue, commit, now, NotFoundAnswers(span=self.not_found_after))
            self._remember_decisions()
            return
        held: dict[str, float] = {}
        for position in portfolio.open_positions:
            symbol = self.symbol_of[position.instrument_id]
            held[symbol] = held.get(symbol, 0.0) + position.quantity
        instruments = [self.state.instrument(iid) for iid in self.instrument_ids.values()]
        self.venue = SimulatedVenue.mirroring(self.config.execution, instruments, portfolio.cash, held)
        # The simulated venue answers from this process's memory, with no lag: its "never seen" is believed at once.
        self.router = OrderRouter(self.state, self.venue, commit, now, NotFoundAnswers.one_look())
        self._remember_decisions()

    def _remember_decisions(self) -> None:
        """The orders of decisions that may be taken again, by client order id (``_by_cid``)."""
        portfolio = self.state.portfolio
        done = self.state.last_completed_cycle
        self._by_cid = {
            order.client_order_id: (position, order)
            for position in portfolio.all_positions() for order in position.orders
            if done is None or order.created_at > done
        }

    def drain(self) -> int:
        """Apply the outcomes the venue reported since the last call (committed when any); how many (0 without
        write-ahead). The loop calls it at the start of each job; the engine after each order it sends.

        Live mode: an order still open at the exchange when its job ended (resting, filled in part,
        or accepted and not yet filled) is followed, and what it did meanwhile arrives here. Each new
        fill is journaled ``order_filled`` in the transaction that books it, as a fill in its own job
        is, and an opening order's first fill arms the position's triggers; an order that ended is
        journaled (``order_expired``, ``order_rejected``). Without this the ledger would hold fills
        the journal never mentions, and a position opened by a late fill would have no stop-loss.
        """
        router = self.router
        if router is None:
            return 0
        if self.live_venue is None:
            return router.drain()
        count = self._drain_journaled()
        self.pending = [(p, o) for p, o in self.pending if not o.is_terminal]
        if count:
            router.commit()
        return count

    def resolve_orders(self, now: datetime) -> list[str]:
        """On restart, before anything is decided: settle every order the ledger holds as possibly sent.

        Each is asked about by client order id (``OrderRouter.resolve``); the simulated venue, new
        in this process, has never seen one, so it is sent again under the same id and waits on the
        venue's book for the price it was sent for: the next bar's open (``fill_pending``), or for an
        exit of a whole position (a trigger's, an operator's close) the price its order records,
        which is filled here. Returns one line per order, for the journal. Live mode: an order whose submit
        never got a reply and that reconciliation did not find (``unknown``, no exchange id: maybe the exchange's
        lag) is not asked about here — the start does not wait the lag out; every job's ``settle_unknown`` does.
        """
        router = self.router
        if router is None:
            return []
        if self.live_venue is not None:  # the exchange knows every order it was sent: its answer settles it
            # What the exchange did while we were down is journaled as its own job would have (order_filled with
            # ``resolved``; an opening fill arms the triggers), in the caller's commit with the order_resolved lines.
            # An order whose submit reply never came and that reconciliation did not find (maybe the exchange's lag)
            # is unknown: settle_unknown asks about it at every job under the lag rule, and this start does not wait.
            pending = [(p, o) for p, o in router.pending() if not (o.status is _UNKNOWN and not o.venue_order_id)]
            followed = _followed(pending)
            resolved, error = router.resolve_each(pending, send=False)  # asked first, nothing sent yet
            self._drain_journaled(followed, resolved=True)
            # An order reconciliation adopted after this engine was built (open on the exchange with this run's
            # prefix, not in the ledger) is followed from here on as any open order: its fills journaled, stops armed.
            self.pending += [(p, o) for p, o, _ in resolved if all(o is not q for _, q in self.pending)]
            self.pending = [(p, o) for p, o in self.pending if not o.is_terminal]
            return self._settled(resolved, error)
        self.venue.advance({}, now)  # the venue's clock, for what it reports
        done = router.resolve()
        for position, order in self.pending:
            if not order.is_terminal and _is_position_exit(order) and order.reference_price is not None:
                fill = self._exit_through_venue(position, order, order.reference_price, order.created_at,
                                                apply_slippage=order.trigger is not TriggerKind.take_profit)
                assert fill is not None, "the simulated venue fills an exit or raises"
                symbol = self.symbol_of[order.instrument_id]
                if order.trigger is not None:  # journaled as the trigger's exit would have been, once
                    self.events("trigger_fired", position_id=position.id, symbol=symbol, trigger=order.trigger.value,
                                trigger_price=order.trigger_price, price=fill.price, quantity=fill.quantity,
                                resolved=True)
                else:
                    self._filled_event(position, order, symbol, fill, resolved=True)
                done.append(f"{order.client_order_id}: the exit filled at {fill.price:.10g}")
        router.drain(commit=False)  # the caller journals ``done`` and commits it with these outcomes
        self.pending = [(p, o) for p, o in self.pending if not o.is_terminal]
        return done

    def settle_unknown(self, *, hold: bool = True) -> list[str]:
        """Live mode, at every job boundary: ask the exchange about each order whose outcome is unknown.

        A reply that timed out left the order ``unknown`` (committed); it is never sent again
        blind. Here each is asked about by its client order id (``OrderRouter.resolve_order``):
        the exchange has it — its fills and status are taken (journaled ``order_filled`` with
        ``resolved``, and an opening fill arms the position's triggers); it never arrived — it is
        sent now under the same id, once the exchange's "does not exist" has lasted (``NotFoundAnswers``:
        its -2013 right after accepting an order is a lag, and a resend then a second order). A
        TemporaryError (the exchange still unreachable, or not finding the order for too short a while)
        escapes to the loop boundary, which retries the job with backoff; nothing new is decided meanwhile.
        ``hold=False`` (the jobs that protect: trigger checks, revaluation and the risk check, an operator's close,
        the cycle's management of its bar): an order only waiting out the exchange's lag (``ExchangeLagError``, kept
        in :attr:`lag`) does not fail the job — the other positions' stops and closes must not wait a minute on it;
        the order's own position stays out of every exit meanwhile (``in_flight``). A real outage still fails the
        job; the cycle raises :attr:`lag` once its bar is managed, before anything is decided.
        An order whose cancel was asked for while the exchange did not know it (``_cancel_unconfirmed``) is asked
        about under the same rule but is never sent, and its wait fails no job (``_settle_cancelled``); an outage met
        asking about the others ends the round before it (its lookup would fail the same way, at every retry).
        Returns one line per order, for the journal (``order_resolved``); the caller commits.
        """
        router = self.router
        self.lag = None
        if router is None or self.live_venue is None:
            return []
        # An order the exchange accepted once (it has an exchange id) and later did not know is left for a person.
        unknown = [(p, o) for p, o in router.pending() if o.status is _UNKNOWN and not o.venue_order_id]
        if not unknown:
            return []
        before = {o.client_order_id: (len(o.fills), p.quantity) for p, o in unknown}
        # One order's TemporaryError does not skip the others' outcome; nothing is sent until every outcome is saved.
        # An order whose cancel was asked for is no longer wanted: its lag (or an outage) does not fail the job.
        unwanted = [(p, o) for p, o in unknown if o.client_order_id in self._cancelling]
        resolved, error = router.resolve_each([(p, o) for p, o in unknown if o.client_order_id not in self._cancelling],
                                              send=False)
        if error is None or isinstance(error, ExchangeLagError):  # an outage ends the round: theirs would fail too
            resolved += router.resolve_each(unwanted, send=False)[0]
        self.lag = error if isinstance(error, ExchangeLagError) else None
        if not hold and self.lag is not None:
            error = None  # asked again at the next job; its position is in flight meanwhile
        self._drain_journaled(own=[o for _, o in unknown])  # the asked orders are journaled below, from ``before``
        for position, order, resolution in resolved:
            if resolution == "unsent":
                continue  # not sent yet: _settled sends it once the others' outcomes are saved
            count, held = before[order.client_order_id]
            self._after_send(position, order, count, opening=order.side is _BUY and held == 0, resolved=True)
        for position, order, resolution in resolved:
            if resolution != "unsent" and not order.is_terminal and all(o is not order for _, o in self.pending):
                self.pending.append((position, order))  # still open at the exchange: followed as any open order
        resolved = [self._settle_cancelled(p, o, r) for p, o, r in resolved]
        self.pending = [(p, o) for p, o in self.pending if not o.is_terminal]
        return self._settled(resolved, error)

    def _settle_cancelled(self, position: Position, order: Order, resolution: str) -> tuple[Position, Order, str]:
        """Live mode, in ``settle_unknown``: an order whose submit reply never came and whose cancel was asked for
        before the exchange knew it (``_cancel_unconfirmed``), once the exchange has answered about it. The rule met
        ("does not exist" has lasted: ``unsent``) — it ends here, journaled ``order_cancelled``, never sent (its
        resolution ``ended``); found and still working — cancelled at the exchange now (``order_cancelled`` when it
        confirms); found ended — taken as it is (a fill booked, its stop armed, by the caller). Any other order, or
        one the exchange still does not know, is returned as it was."""
        cid = order.client_order_id
        text = self._cancelling.get(cid)
        router = self.router
        if text is None or router is None or order.is_terminal:
            return position, order, resolution
        if resolution == "unsent":
            accounting.cancel(order, text, router.now())
            self._after_send(position, order, len(order.fills), opening=False, resolved=True)  # order_cancelled
            accounting.retire_if_done(self.state.portfolio, position)
            return position, order, "ended"
        if order.venue_order_id:  # found working at the exchange: the cancel asked for is sent now
            router.venue.cancel(cid)
            self._drain_journaled()
            accounting.retire_if_done(self.state.portfolio, position)
        return position, order, resolution

    def _settled(self, resolved: list[tuple[Position, Order, str]], error: TemporaryError | None) -> list[str]:
        """The second and third phases of settling orders asked about with nothing sent (``resolve_each``,
        ``send=False``); the lines for the caller to journal and commit.

        When nothing is left to send and nothing failed, every line is the caller's. Otherwise the outcomes found
        are journaled ``order_resolved`` and committed here first, with their ``order_filled`` lines and armed
        stops: a send's write-ahead commit would otherwise save an order found filled without them (a kill -9
        during that send: the order is terminal at the restart, never asked again), and a failed job's uncommitted
        lines are dropped (``error``). Only then are the orders that never reached the venue sent
        (``_send_unsent``), each one's line journaled before the next send (whose write-ahead commit carries it);
        the last one's line is the caller's, or, with ``error``, journaled and committed here before the error is
        raised.
        """
        found = [f"{o.client_order_id}: {said(r)}" for _, o, r in resolved if r != "unsent"]
        unsent = [(p, o) for p, o, r in resolved if r == "unsent"]
        if error is None and not unsent:
            return found
        for line in found:
            self.events("order_resolved", detail=line)
        if found:
            self._commit_outcome()
        sent: list[str] = []
        for position, order in unsent:
            if sent:  # the previous send's line is journaled before this send, so its write-ahead commit carries it
                self.events("order_resolved", detail=sent[-1])  # (a kill -9 during this send would lose it)
            sent.append(self._send_unsent(position, order))
        last = sent[-1:]  # the only line not journaled yet
        if error is None:
            return last
        for line in last:
            self.events("order_resolved", detail=line)
        if sent:
            self._commit_outcome()
        raise error

    def _send_unsent(self, position: Position, order: Order) -> str:
        """Send one order the exchange never saw, under its same client order id (committed as submitting first),
        and journal what the exchange did with it (``_after_send``); its ``order_resolved`` line."""
        router = self.router
        assert router is not None, "only orders a router asked about are unsent"
        opening = order.side is _BUY and position.quantity == 0
        count = len(order.fills)
        router.send_unsent(order)
        self._drain_journaled(own=[order])
        self._after_send(position, order, count, opening=opening, resolved=True)
        if not order.is_terminal and all(o is not order for _, o in self.pending):
            self.pending.append((position, order))  # open at the exchange: followed as any open order
        self.pending = [(p, o) for p, o in self.pending if not o.is_terminal]
        return f"{order.client_order_id}: {said('sent')}"

    def in_flight(self, position: Position) -> Order | None:
        """Live mode: the position's order that is at (or may be at) the exchange and not yet ended, if any.

        While one is, no trigger fires and no operator close is sent for the position: a second
        exit for the same intent must never be sent while the first one's outcome is unknown. An entry
        increase or reduce the exchange holds open (resting, perhaps filled in part) is not in flight: the
        exit's pass cancels it first (``end_orders_before_exits``), so a position bought in part, or with a limit
        reduce resting, is still protected. A resting close is: it already sells the position whole. So is an order
        the exchange says ended while its trades are not all listed yet (``exit_waits``), whatever its purpose:
        nothing is left to cancel, and an exit sized on the part booked would sell the wrong amount.
        """
        if self.live_venue is None:
            return None
        short = self._ended_short(position)
        if short is not None:
            return short[0]
        for order in position.orders:
            if not order.is_terminal and order.status is not _CREATED and not (
                    order.status in _RESTING and order.purpose is not _CLOSE):
                return order
        return None

    def _ended_short(self, position: Position) -> tuple[Order, OrderEndedShort] | None:
        """Live mode: the position's order, not yet ended here, that the exchange says ended while the trades it lists
        do not add up yet (``OrderRouter.ended_short``), with what the exchange said; None when it has none."""
        router = self.router
        if router is None or self.live_venue is None or not router.ended_short:
            return None
        for order in position.orders:
            said_short = router.ended_short.get(order.client_order_id)
            if said_short is not None and not order.is_terminal:
                return order, said_short
        return None

    def exit_waits(self, position: Position) -> str | None:
        """Live mode: why the position's exits wait, None when they do not.

        They wait while an order of the position has ended at the exchange (filled, or cancelled or expired with a
        part filled) and the trades the exchange lists do not add up to what it says filled yet: the ledger has
        booked only part of that order, so a close, stop-loss, take-profit or reduce sized on the quantity booked
        would sell the wrong amount (twice what was sold, or what was never bought), and its cancel would go to an
        order already ended. A strategy's close or reduce of it is ignored with this reason (``intent_ignored``), a
        trigger does not fire, an operator's close is refused with it and close-all leaves it open; each journals
        ``exit_waiting`` once per order. The trades arriving end the wait: they are booked, the order ends, and the
        next exit goes as usual. Other positions' exits are not held."""
        found = self._ended_short(position)
        return None if found is None else _waiting_reason(*found)

    def waiting_exits(self) -> list[dict[str, Any]]:
        """Live mode: each open position whose exits wait (``exit_waits``), with its order and why: for /status, from
        the exchange's first answer that the order ended short (``fills_missing`` says so only after its span)."""
        router = self.router
        if router is None or not router.ended_short:
            return []
        shown: list[dict[str, Any]] = []
        for position in self.state.portfolio.open_positions:
            found = self._ended_short(position)
            if found is not None:
                order, short = found
                shown.append({"position_id": position.id, "symbol": self.symbol_of[position.instrument_id],
                              "client_order_id": order.client_order_id, "purpose": order.purpose.value,
                              "filled": short.filled, "listed": short.listed, "since": short.at.isoformat(),
                              "reason": self.exit_waits(position)})
        return shown

    def note_exit_waiting(self, position: Position, exit_kind: str) -> str | None:
        """Live mode: an exit of ``position`` (``exit_kind``: ``close``, ``reduce``, a trigger's kind, ``operator
        close``, ...) held back because its exits wait (``exit_waits``); journaled ``exit_waiting`` once per order.
        The reason, None when its exits do not wait."""
        found = self._ended_short(position)
        if found is None:
            return None
        order, short = found
        reason = _waiting_reason(order, short)
        if order.client_order_id not in self._exit_waiting_told:
            self._exit_waiting_told.add(order.client_order_id)
            self.events("exit_waiting", position_id=position.id, symbol=self.symbol_of[position.instrument_id],
                        exit=exit_kind, order_id=order.id, client_order_id=order.client_order_id,
                        purpose=order.purpose.value, filled=short.filled, listed=short.listed,
                        since=short.at.isoformat(), reason=reason)
        return reason

    def follow_market(self) -> None:
        """Take in candles appended to the market since the last call (a growing feed).

        The new bars' indicator values are added (on a bounded tail of the history, see
        IndicatorStore.extend) and the columns the engine and the context keep are taken again.
        A replay or backtest, whose market never grows, finds nothing to do.
        """
        market = self.market
        if market.generation == self._generation:
            return
        self._generation = market.generation
        self.indicators.extend(self.strategy.indicators, market, self.strategy.parameters,
                               where=str(self.strategy.path))
        self._closing_at = [market.closing_at[s] for s in self.symbols]
        self._last_closed = [market.last_closed[s] for s in self.symbols]
        self.context._follow_market()

    # -- the step, as a recipe ------------------------------------------------------------

    def process_step(self, step: int, cycle_time_ns: int | None = None, *, report: bool = True) -> CycleReport | None:
        """Advance the portfolio through one timeline step; run a cycle when one is due.

        ``report=False`` skips building the CycleReport (the backtest's hot path).
        """
        self.manage(step)
        if cycle_time_ns is None:
            return None
        if not report:
            self.decide(step, cycle_time_ns)
            return None
        return self.run_cycle(step, cycle_time_ns)

    def manage(self, step: int) -> None:
        """Steps 1-3 for one bar: fill pending orders, check triggers, mark; never calls the strategy."""
        if self.pending:
            self.fill_pending(step)
        if self.state.portfolio.open_positions:
            self.check_triggers(step)
            self.mark_to_market(step)

    def use_strategy(self, strategy: LoadedStrategy) -> None:
        """Go on with ``strategy`` — the same code with other parameters (``with_parameters``) — from the next cycle.

        The indicators are computed again over the whole market with the new parameters before
        anything is replaced, so a strategy whose indicators fail with them leaves the engine as it was.
        """
        indicators = compute_indicators(strategy.indicators, self.market, strategy.parameters,
                                        check_causality=self.config.check_indicator_lookahead, where=str(strategy.path))
        context = CycleContext(self.market, indicators, self.state, strategy.parameters, self.symbols)
        context._set_instrument_ids(self.instrument_ids)
        context._set_marker(self.mark_to_market)
        context._set_paused(self.paused)
        self.strategy, self.indicators, self.context, self._decide = strategy, indicators, context, strategy.decide

    def set_paused(self, paused: bool) -> None:
        """Stop (or allow again) new positions; ``ctx.paused`` shows it to the strategy, read-only."""
        self.paused = paused
        self.context._set_paused(paused)

    def materialise(self) -> None:
        """Make the orders kept as records into Order objects: nothing here, the engine makes them as it goes
        (backtest.lean.BacktestEngine keeps its plain ones as records until the end of the run)."""

    def quantities(self) -> list[float]:
        """The quantity held of each instrument, in ``symbols`` order (what a backtest records at fills)."""
        held = [0.0] * len(self.symbols)
        slot = self._slot
        for position in self.state.portfolio.open_positions:
            held[slot[position.instrument_id]] += position.quantity
        return held

    def valuation(self) -> tuple[float, float, float]:
        """Equity, cash and exposure at the latest marks."""
        portfolio = self.state.portfolio
        cash = portfolio.cash
        if not portfolio.open_positions:
            return cash, cash, 0.0
        value = 0.0
        for position in portfolio.open_positions:
            if position.last_price is not None:
                value += position.quantity * position.last_price
        equity = cash + value
        return equity, cash, (value / equity if equity else 0.0)

    # -- 1. fills of waiting orders -------------------------------------------------------

    def fill_pending(self, step: int) -> None:
        """Fill orders created by an earlier cycle at the open of the first bar that starts after the decision.

        A buy waits while a sell decided with or before it has not filled: its bar has not come yet, or (live) the
        exchange has not ended it — resting, filled in part, or of unknown outcome — so a rotation's buy is sent only
        once what its sell brought is in the cash, and is sized to that cash (``_value_to_send``). It stays ``created``
        (never sent) and is tried again at the next bar (a sell filled on arrival holds nothing: the buy goes in the
        same pass). A limit sell resting at the exchange (one reconciliation adopted) may rest for days and holds
        nothing back (``_holds_entries``): the buy goes, sized to the cash there is without it. A sell of unknown
        outcome (its reply never came) holds the buys whatever its type until settle_unknown has its outcome: it may
        have filled, and what it brought is what they may spend.
        """
        still: list[tuple[Position, Order]] = []
        live = self.live_venue is not None
        waiting_sell_at: int | None = None  # earliest decision whose sells have not filled yet
        # In decision order, sells before buys: the list is built so when planned, but a restart rebuilds it position
        # by position, and a rebalance that sells a newer position and buys into an older one would send its buy first.
        for position, order in sorted(self.pending, key=lambda po: (_ns(po[1].created_at), po[1].side is _BUY)):
            if order.is_terminal:
                continue
            is_buy = order.side is _BUY
            if is_buy and waiting_sell_at is not None and waiting_sell_at <= _ns(order.created_at):
                still.append((position, order))  # sells decided with or before it come first
                continue
            slot = self._slot[order.instrument_id]
            index = int(self._closing_at[slot][step])
            bars = self._bars[slot]
            if index < 0 or int(bars.open_time_ns[index]) < _ns(order.created_at):
                still.append((position, order))
                if not is_buy:
                    created = _ns(order.created_at)
                    waiting_sell_at = created if waiting_sell_at is None else min(waiting_sell_at, created)
                continue
            if live and order.status is _UNKNOWN:
                # Its reply never came: it is never sent again blind, and a bar brings it nothing. settle_unknown asks
                # about it at every job (an order the exchange lost, the drain follows); passing it through _fill
                # journaled order_unknown again at every bar for as long as the exchange's lag lasted.
                still.append((position, order))
                if not is_buy:  # its outcome first: what it sold (or not) is what the entries after it may spend
                    created = _ns(order.created_at)
                    waiting_sell_at = created if waiting_sell_at is None else min(waiting_sell_at, created)
                continue
            self._fill(position, order, bars.open.item(index), _to_datetime(int(bars.open_time_ns[index])))
            if not order.is_terminal:  # live: still open at the exchange, or its outcome not known yet
                still.append((position, order))
                if not is_buy and _holds_entries(order):
                    created = _ns(order.created_at)
                    waiting_sell_at = created if waiting_sell_at is None else min(waiting_sell_at, created)
        self.pending = still

    # -- 2. triggers -------------------------------------------------------------------------

    def check_triggers(self, step: int) -> int:
        """Check every open position's protective orders against the bar closing at ``step``.

        Returns how many positions a trigger closed.
        """
        live = self.live_venue is not None
        hits: list[tuple[Position, str, float, float, int]] = []
        #: Each trailing position's high-water raised by this bar, and the newest bar it took in: applied only once
        #: the exits' pass succeeded (and then marked, ``high_water_at``), so a retried check, or one after a
        #: restart, sees the high-water from before the bar (a bar checked against a high-water that includes its
        #: own high could fire a stop the first check did not).
        raised: list[tuple[Position, float | None, int]] = []
        for position in list(self.state.portfolio.open_positions):
            if position.quantity <= 0 or not triggers.has_triggers(position):
                continue
            if live and self.in_flight(position):
                if self.exit_waits(position):  # its order ended short: a stop the bar crosses waits, said once
                    self._trigger_waits(position, step)
                continue  # (live) an order in flight: its outcome first, then the triggers again
            slot = self._slot[position.instrument_id]
            index = int(self._closing_at[slot][step])
            if index < 0:
                continue
            taken = position.high_water_at
            taken_ns = -1 if taken is None else _ns(taken)  # bars up to this one were checked already
            high_water, took = position.high_water, -1
            for open_, high, low, open_ns, close_ns in self._trigger_bars(slot, index):
                if open_ns <= taken_ns:
                    continue  # checked before (a retried job, a restart): its high is in the high-water already
                hit = triggers.check_bar(position, open_, high, low)
                if hit is not None:
                    kind, level, price = hit
                    at_ns = open_ns if price == open_ else close_ns  # at the open when it gapped there
                    hits.append((position, kind, level, price, at_ns))
                    break
                if position.trailing_stop_pct is not None:
                    before = position.high_water
                    triggers.update_high_water(position, high)  # the next fine bar is checked against it
                    if position.high_water != before:  # marked only when raised: a bar that raised nothing
                        took = open_ns  # checks the same way again (and a mark per bar cost a backtest ~15 %)
            if took >= 0:
                raised.append((position, position.high_water, took))
                position.high_water = high_water  # as it was, until the pass below succeeded (its commits too)
        if live and hits:  # every exit's resting orders ended before the first exit is sent (or none is)
            self.end_orders_before_exits((position, f"cancelled: position closed by {kind}", _to_datetime(at_ns))
                                       for position, kind, _, _, at_ns in hits)
        for position, high_water, took in raised:
            position.high_water, position.high_water_at = high_water, _to_datetime(took)
        for position, kind, level, price, at_ns in hits:
            self._exit_on_trigger(position, kind, level, price, at_ns)
        return len(hits)

    def _trigger_waits(self, position: Position, step: int) -> None:
        """Live mode: a position whose exits wait (``exit_waits``) is not checked; a trigger the bar at ``step`` crosses
        is journaled ``exit_waiting`` (once per order) and fires at a later bar if the price is still through it."""
        slot = self._slot[position.instrument_id]
        index = int(self._closing_at[slot][step])
        if index < 0:
            return
        for open_, high, low, _, _ in self._trigger_bars(slot, index):
            hit = triggers.check_bar(position, open_, high, low)
            if hit is not None:
                self.note_exit_waiting(position, hit[0])
                return

    def _trigger_bars(self, slot: int, index: int) -> Iterable[tuple[float, float, float, int, int]]:
        bars = self._bars[slot]
        if self.trigger_market is not None:
            symbol = self.symbols[slot]
            fine = self.trigger_market.bars.get(symbol)
            if fine is not None:
                start = int(bars.open_time_ns[index])
                end = int(bars.close_time_ns[index])
                lo = int(fine.open_time_ns.searchsorted(start, side="left"))
                hi = int(fine.open_time_ns.searchsorted(end, side="left"))
                if hi > lo:
                    return [
                        (fine.open.item(i), fine.high.item(i), fine.low.item(i),
                         int(fine.open_time_ns[i]), int(fine.close_time_ns[i]))
                        for i in range(lo, hi)
                    ]
        return [(bars.open.item(index), bars.high.item(index), bars.low.item(index),
                 int(bars.open_time_ns[index]), int(bars.close_time_ns[index]))]

    def _exit_on_trigger(self, position: Position, kind: str, level: float, price: float, at_ns: int) -> None:
        order, fill = self._exit_now(position, price, at_ns, trigger_price=level,
                                     cancelled=f"cancelled: position closed by {kind}",
                                     apply_slippage=kind != "take_profit", trigger=TriggerKind(kind))
        if self._journal and fill is not None:
            self.events("trigger_fired", position_id=position.id, symbol=self.symbol_of[position.instrument_id],
                        trigger=kind, trigger_price=level, price=fill.price, quantity=fill.quantity)
        elif self._journal:  # live: refused, filled in part or of unknown outcome (journaled by _after_send)
            self.events("trigger_fired", position_id=position.id, symbol=self.symbol_of[position.instrument_id],
                        trigger=kind, trigger_price=level, price=None, quantity=order.filled_quantity,
                        client_order_id=order.client_order_id, status=order.status.value)
        self._commit_outcome()

    def close_all_now(self, positions: list[Position], step: int, *, by: str) -> list[Order | None]:
        """Close each of ``positions`` at once (an operator's close or close-all): ``close_now`` for each, after one
        pass that ends the resting orders of all of them (``end_orders_before_exits``), so a temporary failure leaves
        none of them sold — the operator's retry closes them all, none twice."""
        at = _to_datetime(int(self.market.timeline_ns[step]))
        self.end_orders_before_exits((position, f"cancelled by {by} before it filled", at) for position in positions)
        return [self.close_now(position, step, by=by) for position in positions]

    def close_now(self, position: Position, step: int, *, by: str) -> Order | None:
        """Close ``position`` at once at the last close known at ``step`` (an operator's close).

        The same path a stop-loss takes — open orders of the position cancelled, one close order
        (its client order id names the position, as a trigger exit's does) filled by the venue
        with its fees and slippage, the position retired — priced at the current bar instead of a
        trigger level. Journals ``order_filled`` with ``by``. A position whose opening order has
        not filled yet holds nothing to sell: its order is cancelled and it is retired, as the
        strategy's ``close()`` does (None: no order).
        """
        at = _to_datetime(int(self.market.timeline_ns[step]))
        self.end_orders_before_exits([(position, f"cancelled by {by} before it filled", at)])
        if self._close_empty(position, f"cancelled by {by} before it filled", at):
            return None
        slot = self._slot[position.instrument_id]
        index = int(self._last_closed[slot][step])
        if index < 0:
            raise ValueError(f"no closed bar of {self.symbol_of[position.instrument_id]} yet to price the close")
        bars = self._bars[slot]
        price = bars.close.item(index)
        order, fill = self._exit_now(position, price, int(bars.close_time_ns[index]),
                                     cancelled=f"cancelled: position closed by {by}", note=f"closed by {by}")
        if fill is not None:  # live: otherwise journaled by _after_send (refused, in part, unknown)
            self._filled_event(position, order, self.symbol_of[position.instrument_id], fill, by=by)
        self._commit_outcome()
        return order

    def _exit_now(self, position: Position, price: float, at_ns: int, *, cancelled: str,
                  apply_slippage: bool = True, trigger: TriggerKind | None = None, trigger_price: float | None = None,
                  note: str | None = None) -> tuple[Order, SimulatedFill | Fill | None]:
        """Sell all of ``position`` at ``price`` now: the one exit path of triggers and operator closes.

        The order records ``price`` as its reference price (a trigger's level, or the open when the
        bar gapped through it) — all a restart needs to fill it exactly as it would have been.
        """
        at = _to_datetime(at_ns)
        self._orders_ended(position)  # live: ended by the caller's end_orders_before_exits; what they filled is sold too
        for _, other in self.pending:
            if other.position_id == position.id and not other.is_terminal:
                self._cancel(other, cancelled, at)
        order = self._new_order(position, _CLOSE, at, at_ns // 1_000_000, 0, quantity=position.quantity,
                                reference_price=price, trigger=trigger, trigger_price=trigger_price, note=note,
                                position_exit=True)
        if self.router is not None:
            return order, self._exit_through_venue(position, order, price, at, apply_slippage=apply_slippage)
        instrument = self.state.instrument(position.instrument_id)
        fill = self.venue.sell(instrument, price, quantity=position.quantity, held=position.quantity,
                               closing=True, apply_slippage=apply_slippage)
        order.transition(_SUBMITTING, at)
        accounting.apply_fill(self.state.portfolio, position, order, fill.quantity, fill.price, fill.fee, at,
                              slippage=fill.slippage, fee_currency=instrument.quote_currency)
        self.fills += 1
        if not position.is_open:
            accounting.retire_position(self.state.portfolio, position)
        return order, fill

    def cancel_entries(self, step: int, reason: str) -> int:
        """Cancel every entry or increase still waiting to fill (journaled as ``order_cancelled``); how many were
        (live: how many the exchange confirmed cancelled — one it has not yet stays followed, and is journaled
        when it confirms).

        A risk limit's pause stops new entries, and an entry a cycle planned before it would
        otherwise fill at the next bar's open, after the pause.
        """
        at = _to_datetime(int(self.market.timeline_ns[step]))
        cancelled = 0
        for position, order in self.pending:
            if not order.is_terminal and order.side is _BUY:
                self._cancel(order, reason, at)
                cancelled += order.status is OrderStatus.cancelled
                if self.live_venue is None:  # live: journaled by _cancel once the exchange has confirmed it
                    self._cancelled_event(position, order, reason)
                accounting.retire_if_done(self.state.portfolio, position)
        self.pending = [(p, o) for p, o in self.pending if not o.is_terminal]
        return cancelled

    def exit_all(self, step: int, kind: str) -> int:
        """Close every open position at the bar's close through the trigger exit; how many were sold.

        What a risk limit does with ``--risk-close-positions`` (``kind`` is ``risk_limit``): each sale
        is journaled as ``trigger_fired``, as a stop-loss's is, and cancels the position's waiting orders.
        """
        exits: list[tuple[Position, float, int]] = []
        for position in list(self.state.portfolio.open_positions):
            slot = self._slot[position.instrument_id]
            index = int(self._last_closed[slot][step])
            if position.quantity <= 0 or index < 0:
                continue
            if self.in_flight(position):
                self.note_exit_waiting(position, kind)  # (its order ended short: said once)
                continue  # (live) an order in flight: its outcome first
            bars = self._bars[slot]
            exits.append((position, bars.close.item(index), int(bars.close_time_ns[index])))
        self.end_orders_before_exits((position, f"cancelled: position closed by {kind}", _to_datetime(at_ns))
                                   for position, _, at_ns in exits)
        for position, price, at_ns in exits:
            self._exit_on_trigger(position, kind, price, price, at_ns)
        self.pending = [(p, o) for p, o in self.pending if not o.is_terminal]
        return len(exits)

    # -- 3. marks ----------------------------------------------------------------------------

    def mark_to_market(self, step: int) -> None:
        """Value open positions at the last close known at ``step``."""
        for position in self.state.portfolio.open_positions:
            slot = self._slot[position.instrument_id]
            index = self._last_closed[slot][step]
            if index >= 0:
                position.last_price = self._bars[slot].close.item(index)

    def revalue(self, step: int, now: datetime) -> float:
        """Mark to market and stamp the valuation time; returns equity (the daemon's revaluation job)."""
        self.mark_to_market(step)
        for position in self.state.portfolio.open_positions:
            position.last_valued_at = now
        return self.valuation()[0]

    def record_valuation(self, step: int) -> None:
        """Append this step's equity, cash and exposure to the state's series (replay, paper and live)."""
        equity, cash, exposure = self.valuation()
        self.state.valuations.append(int(self.market.timeline_ns[step]) // 1_000_000, equity, cash, exposure)

    # -- 4. the strategy cycle ------------------------------------------------------------

    def run_cycle(self, step: int, cycle_time_ns: int) -> CycleReport:
        """Let the strategy decide on data closed by the cycle time, then create (and maybe fill) its orders."""
        started = time.perf_counter()
        report = self.plan(self.ask_strategy(step, cycle_time_ns), step, cycle_time_ns)
        report.duration = time.perf_counter() - started
        return report

    def decide(self, step: int, cycle_time_ns: int) -> None:
        """ask_strategy then plan, with no report unless there are intents (the backtest's hot path, inlined)."""
        context = self.context  # _call_strategy inlined: one call less per cycle of a long backtest
        context._move_to(step, cycle_time_ns)
        try:
            intents = self._decide(context)
        except Exception as exc:
            note_strategy_failure(exc, self.strategy.path, _to_datetime(cycle_time_ns))
            raise
        if intents:
            self.take(intents, step, cycle_time_ns)

    def take(self, intents: Iterable[Intent], step: int, cycle_time_ns: int) -> None:
        """Plan what the strategy's decide() returned at a cycle (not empty; checked here)."""
        self.plan(self._checked(intents), step, cycle_time_ns)

    def ask_strategy(self, step: int, cycle_time_ns: int) -> list[Intent]:
        """The strategy's intents at this cycle, checked; only the strategy's code runs and nothing changes.

        Raises whatever decide() raises, and TypeError, KeyError or ValueError for what it
        returned (not intents, an unknown symbol) — always before any order is created.
        """
        if self._by_cid and self._decided_before_restart(cycle_time_ns):
            return []
        intents = self._call_strategy(step, cycle_time_ns)
        return self._checked(intents) if intents else []

    def _decided_before_restart(self, cycle_time_ns: int) -> bool:
        """True when this cycle's orders are in the state already: a process that was killed after committing one
        of them (write-ahead, with fill timing ``close``) had decided it. What it committed stands — the
        strategy, which would now see its own half-done cycle, is not asked again; ``plan`` fills those orders
        at this close, as they would have been."""
        at = _to_datetime(cycle_time_ns)
        assert self._by_cid is not None
        decided = [o for _, o in self._by_cid.values() if o.created_at == at and not _is_position_exit(o)]
        if decided:
            self.events("decision_resumed", cycle_time=at, orders=[o.client_order_id for o in decided])
        return bool(decided)

    def _call_strategy(self, step: int, cycle_time_ns: int) -> Iterable[Intent] | None:
        """The strategy's decide() at this cycle; what it raises carries a note of its file, line and the cycle."""
        context = self.context
        context._move_to(step, cycle_time_ns)
        try:
            return self._decide(context)
        except Exception as exc:
            note_strategy_failure(exc, self.strategy.path, _to_datetime(cycle_time_ns))  # file, line, cycle first
            raise

    def _checked(self, returned: Iterable[Intent]) -> list[Intent]:
        """What decide() returned as a list of intents on this strategy's instruments, or an error naming it."""
        intents = list(returned)
        context = self.context
        for intent in intents:
            if not isinstance(intent, Intent):
                raise TypeError(f"decide() must return a list of intents (open_long(), close(), ...), got {intent!r}")
            if intent.action not in _ACTIONS:
                raise ValueError(f"unknown intent action {intent.action!r}")
            context._symbol(intent.symbol)
        return intents

    def plan(self, intents: list[Intent], step: int, cycle_time_ns: int) -> CycleReport:
        """Turn checked intents (from ask_strategy) into orders, sells first; filled at once at ``close``."""
        report = CycleReport(cycle_time_ns, decisions=len(intents))
        if not intents:
            if self.fill_at_close and self.router is not None and self.pending:
                self._fill_at_close(step, report)  # a decision taken before a restart (_decided_before_restart)
                self.mark_to_market(step)
            return report
        at = _to_datetime(cycle_time_ns)
        ms = cycle_time_ns // 1_000_000
        if self._by_cid:  # decisions before this cycle are never taken again
            self._by_cid = {cid: found for cid, found in self._by_cid.items() if found[1].created_at >= at}
        ordered = sorted(intents, key=_intent_order)  # sells, then buys, then trigger changes
        ended: set[int] = set()  # instruments whose close the pass below finished: it held nothing, now retired
        if self.live_venue is not None:  # before the first order of the cycle is created: nothing to lose on a retry
            closes = self._closes(ordered, step, ms, at)
            self.end_orders_before_exits(closes)  # (what it books counts in the sizing)
            ended = {p.instrument_id for p, _, _ in closes if all(q is not p for q in self.state.portfolio.open_positions)}
        if self.state.portfolio.open_positions:
            self.mark_to_market(step)  # sizing reads the marks; a backtest does not mark every bar
        equity = self.valuation()[0]
        for seq, intent in enumerate(ordered):
            symbol = self.context._symbol(intent.symbol)
            instrument_id = self.instrument_ids[symbol]
            position = self.state.portfolio.open_position_for(instrument_id)
            if position is None and intent.action == "close" and instrument_id in ended:
                continue  # done by the pass: its entry's cancel confirmed, nothing bought, the position retired
            slot = self._slot[instrument_id]
            last = int(self._last_closed[slot][step])
            price = self._bars[slot].close.item(last) if last >= 0 else None
            reason = self._plan_one(intent, seq, instrument_id, position, price, equity, at, ms, report)
            if reason:
                report.ignored.append(f"{intent.action} {symbol}: {reason}")
                self.events("intent_ignored", symbol=symbol, action=intent.action, reason=reason)
        if self.fill_at_close:
            self._fill_at_close(step, report)
            self.mark_to_market(step)
        return report

    def _closes(self, ordered: list[Intent], step: int, ms: int, at: datetime) -> list[tuple[Position, str, datetime]]:
        """The positions the cycle's ``close()`` intents (``ordered``, as planned) will sell whole or retire: each
        with a closed bar to price it, no order of unknown outcome, no exit waiting (``exit_waits``), and not closed
        already by this cycle's decision taken before a restart (``_plan_one`` refuses or re-finds the others)."""
        found: list[tuple[Position, str, datetime]] = []
        for seq, intent in enumerate(ordered):
            if intent.action != "close":
                continue
            instrument_id = self.instrument_ids[self.context._symbol(intent.symbol)]
            position = self.state.portfolio.open_position_for(instrument_id)
            if position is None or self._last_closed[self._slot[instrument_id]][step] < 0 or any(
                    o.status is _UNKNOWN for o in position.orders) or self.exit_waits(position):
                continue
            if self._by_cid is not None and client_order_id_ms(self.run_key, ms, seq, _CLOSE) in self._by_cid:
                continue
            found.append((position, _CLOSED_BY_STRATEGY, at))
        return found

    def _plan_one(self, intent: Intent, seq: int, instrument_id: int, position: Position | None,
                  price: float | None, equity: float, at: datetime, ms: int, report: CycleReport) -> str | None:
        """Create the intent's order (or change the position's triggers); the reason when it does nothing."""
        action = intent.action
        if price is None:
            return "no closed bar yet"
        if self._by_cid is not None and action in _PURPOSE_OF:
            found = self._by_cid.get(client_order_id_ms(self.run_key, ms, seq, _PURPOSE_OF[action]))
            if found is not None:  # decided before a restart and committed: the same order, never a second
                report.planned += 1
                if not found[1].is_terminal and all(o is not found[1] for _, o in self.pending):
                    self.pending.append(found)
                return None
        if position is not None and action != "set_triggers":
            unknown = next((o for o in position.orders if o.status is _UNKNOWN), None)
            if unknown is not None:  # (live) never a second order while one's outcome is unknown
                lost = self.lost.get(unknown.client_order_id)
                return lost or (f"order {unknown.client_order_id} of this position has an unknown outcome; no new "
                                "order until the exchange has answered about it")
            if action in ("close", "reduce"):
                waits = self.note_exit_waiting(position, action)  # (live) an order of it ended short: sized wrong now
                if waits is not None:
                    return waits
        if action in ("open", "increase") and self.paused:
            return "paused: no new positions"
        if action == "open":
            if position is not None:
                return "a position is already open; use increase()"
            value = intent.value if intent.value is not None else equity * (intent.equity_fraction or 0.0)
            refusal = position_value_refusal(0.0, value, self.max_position_value)
            if refusal:
                return refusal
            position = self._new_position(instrument_id, at, intent)
            self._queue(position, self._new_order(position, _OPEN, at, ms, seq, value=value,
                                                  reference_price=price, note=intent.note), report)
            return None
        if position is None:
            return "no open position"
        if action == "increase" or action == "reduce":
            closing = next((o for o in position.orders if o.purpose is _CLOSE and not o.is_terminal), None)
            if closing is not None:  # every mode alike: never a buy into, nor a second sell of, a position sold whole
                return (f"the position is being closed (order {closing.client_order_id}); " + (
                    "open_long() a new one once the close has filled" if action == "increase"
                    else "the close sells all of it"))
        if action == "increase":
            value = intent.value if intent.value is not None else equity * (intent.equity_fraction or 0.0)
            refusal = position_value_refusal(self._value_held(position), value, self.max_position_value)
            if refusal:
                return refusal
            self._queue(position, self._new_order(position, _INCREASE, at, ms, seq, value=value,
                                                  reference_price=price, note=intent.note), report)
        elif action == "close":
            if self._close_empty(position, _CLOSED_BY_STRATEGY, at):
                return None
            self._orders_ended(position)  # live: ended by plan's end_orders_before_exits
            self._queue(position, self._new_order(position, _CLOSE, at, ms, seq,
                                                  quantity=position.quantity, reference_price=price,
                                                  note=intent.note), report)
        elif action == "reduce":
            if intent.quantity is not None:
                quantity = intent.quantity
            elif intent.position_fraction is not None:
                quantity = position.quantity * intent.position_fraction
            else:
                quantity = (intent.value or 0.0) / price
            self._queue(position, self._new_order(position, _REDUCE, at, ms, seq, quantity=quantity,
                                                  reference_price=price, note=intent.note), report)
        elif action == "set_triggers":
            self.triggers_armed = True
            if intent.stop_loss is not KEEP:
                position.stop_loss = intent.stop_loss
            if intent.take_profit is not KEEP:
                position.take_profit = intent.take_profit
            if intent.trailing_stop_pct is not KEEP:
                position.trailing_stop_pct = intent.trailing_stop_pct
                if intent.trailing_stop_pct is not None and position.high_water is None:
                    position.high_water = position.last_price
        return None

    def _value_held(self, position: Position) -> float:
        """The position's value at its last price plus its entries still waiting to fill (max_position_value)."""
        waiting = sum(order.value or 0.0 for pending, order in self.pending
                      if pending is position and not order.is_terminal and order.side is _BUY)
        return position.market_value + waiting

    def _new_position(self, instrument_id: int, at: datetime, intent: Intent) -> Position:
        portfolio = self.state.portfolio
        position = Position(id=portfolio.next_position_id, instrument_id=instrument_id, opened_at=at)
        portfolio.next_position_id += 1
        position.stop_loss = None if intent.stop_loss is KEEP else intent.stop_loss
        position.take_profit = None if intent.take_profit is KEEP else intent.take_profit
        position.stop_loss_pct = None if intent.stop_loss_pct is KEEP else intent.stop_loss_pct
        position.take_profit_pct = None if intent.take_profit_pct is KEEP else intent.take_profit_pct
        position.trailing_stop_pct = None if intent.trailing_stop_pct is KEEP else intent.trailing_stop_pct
        if triggers.has_triggers(position) or position.stop_loss_pct is not None or position.take_profit_pct is not None:
            self.triggers_armed = True
        portfolio.open_positions.append(position)
        return position

    def _new_order(self, position: Position, purpose: OrderPurpose, at: datetime, ms: int, seq: int, *,
                   quantity: float | None = None, value: float | None = None,
                   reference_price: float | None = None, note: str | None = None,
                   trigger: TriggerKind | None = None, trigger_price: float | None = None,
                   position_exit: bool = False) -> Order:
        """A created market order decided at ``at`` (``ms``, epoch milliseconds) with its client order id
        (an exit of the whole position — a trigger's or an operator's — has an id naming the position)."""
        portfolio = self.state.portfolio
        side = _BUY if purpose is _OPEN or purpose is _INCREASE else _SELL
        cid = client_order_id_ms(self.run_key, ms, seq, purpose,
                                 position_id=position.id if position_exit else None)
        index = self._by_cid
        if index is not None:
            found = index.get(cid)
            if found is not None:
                return found[1]  # the same decision, taken again after a restart: its order, not a second one
        order = _new(Order)  # Order(...) without the class call's keyword dict: ~1.3 µs less, one per order
        _init_order(
            order, id=portfolio.next_order_id, client_order_id=cid, position_id=position.id,
            instrument_id=position.instrument_id, purpose=purpose, side=side, created_at=at, quantity=quantity,
            value=value, reference_price=reference_price, note=note, trigger=trigger,
            trigger_price=trigger_price, updated_at=at,
        )
        portfolio.next_order_id += 1
        position.orders.append(order)
        if index is not None:
            index[cid] = (position, order)
        return order

    def _queue(self, position: Position, order: Order, report: CycleReport) -> None:
        report.planned += 1
        self.pending.append((position, order))
        if not self._journal:
            return
        self.events("order_planned", order_id=order.id, client_order_id=order.client_order_id,
                    position_id=position.id, symbol=self.symbol_of[order.instrument_id], purpose=order.purpose.value,
                    side=order.side.value, value=order.value, quantity=order.quantity)

    def _fill_at_close(self, step: int, report: CycleReport) -> None:
        """Fill the cycle's orders at its close, sells first; (live) a buy after a sell the exchange has not ended
        waits for a later bar (``fill_pending``), as it does there."""
        pending, self.pending = self.pending, []
        waiting = False
        for position, order in pending:
            if order.is_terminal:
                continue
            if waiting and order.side is _BUY:
                self.pending.append((position, order))
                continue
            slot = self._slot[order.instrument_id]
            index = int(self._last_closed[slot][step])
            bars = self._bars[slot]
            if self._fill(position, order, bars.close.item(index), _to_datetime(int(bars.close_time_ns[index]))):
                report.executed += 1
            elif order.is_terminal:
                report.rejected += 1
            else:  # live: still open at the exchange, or its outcome not known yet
                self.pending.append((position, order))
                waiting = waiting or (order.side is _SELL and _holds_entries(order))

    # -- fills --------------------------------------------------------------------------

    def _fill(self, position: Position, order: Order, price: float, at: datetime) -> bool:
        """Send the order to the simulated venue at ``price`` and apply what comes back; False when rejected."""
        if self.router is not None:
            return self._fill_through_venue(position, order, price, at)
        portfolio = self.state.portfolio
        instrument = self.state.instrument(order.instrument_id)
        fill: SimulatedFill
        if order.side is _BUY:
            fill = self.venue.buy(instrument, price, value=order.value, quantity=order.quantity,
                                  cash_available=portfolio.cash)
            order.transition(_SUBMITTING, at)
            if fill.reject_reason is not None:
                self._reject(position, order, fill.reject_reason, fill.reason or "", at)
                return False
            opening = position.quantity == 0
            accounting.apply_fill(portfolio, position, order, fill.quantity, fill.price, fill.fee, at,
                                  slippage=fill.slippage, fee_currency=instrument.quote_currency)
            if opening:
                self._arm_triggers(position, fill.price)
        else:
            if position.quantity <= 0:
                self._reject(position, order, RejectReason.nothing_to_sell,
                             "nothing to sell: the position holds no quantity", at)
                return False
            fill = self.venue.sell(instrument, price, quantity=order.quantity or 0.0, held=position.quantity,
                                   closing=order.purpose is _CLOSE)
            order.transition(_SUBMITTING, at)
            if fill.reject_reason is not None:
                self._reject(position, order, fill.reject_reason, fill.reason or "", at)
                return False
            accounting.apply_fill(portfolio, position, order, fill.quantity, fill.price, fill.fee, at,
                                  slippage=fill.slippage, fee_currency=instrument.quote_currency)
            if not position.is_open:
                accounting.retire_position(portfolio, position)
        self.fills += 1
        if self._journal:
            self._filled_event(position, order, instrument.symbol, fill)
        return True

    # -- write-ahead (the daemon) --------------------------------------------------------------

    def _send(self, order: Order, price: float, at: datetime, *, apply_slippage: bool = True,
              reason: str | None = None) -> None:
        """Write-ahead: commit the order submitting (with ``reason``, when given) and submit it (unless a restart found
        it sent already), let the venue price it at ``price``, apply and commit the outcome it reports
        (engine/router.py)."""
        router = self.router
        assert router is not None
        if self.live_venue is not None:  # the exchange prices and fills it; its reply is drained at once
            if order.status is _CREATED:
                router.send(order, at, reason)
            self._drain_journaled(own=[order])  # this order's outcome is the caller's (_after_send)
            return
        venue = self.venue
        venue.advance({}, at)  # the venue's clock: what it reports is stamped with the bar's time
        if order.status is _CREATED:
            router.send(order, at)
        venue.advance({self.symbol_of[order.instrument_id]: price}, at, apply_slippage=apply_slippage)
        router.drain(commit=False)  # committed by the caller with its journal line (_commit_outcome)
        if order.is_terminal:
            venue.forget(order.client_order_id)  # the venue keeps only what may still change

    def _fill_through_venue(self, position: Position, order: Order, price: float, at: datetime) -> bool:
        """``_fill`` write-ahead: the order (created, or sent before a restart) filled or rejected by the venue."""
        if order.side is _SELL and position.quantity <= 0 and order.status is _CREATED:
            self._reject(position, order, RejectReason.nothing_to_sell,
                         "nothing to sell: the position holds no quantity", at)
            return False
        reason = None
        if self.live_venue is not None and order.status is _CREATED and order.side is _BUY and order.value is not None:
            reason = self._value_to_send(position, order, at)
            if order.is_terminal:  # the cash there is buys less than the exchange's minimum: refused here, never sent
                self._commit_outcome()
                return False
        opening = order.side is _BUY and position.quantity == 0
        count = len(order.fills)
        self._send(order, price, at, reason=reason)
        if self.live_venue is not None:  # filled, in part, refused, open, or of unknown outcome: as the exchange said
            self._after_send(position, order, count, opening=opening)
            self._commit_outcome()
            return order.is_terminal and order.filled_quantity > 0
        if order.status is _REJECTED:
            self._rejected_event(position, order)
            self._commit_outcome()
            return False
        if order.status is not _FILLED:
            raise InvariantError(f"order {order.client_order_id} is {order.status.value} after the simulated venue "
                                 "priced it; a simulated market order fills or is rejected at once")
        fill = order.fills[-1]
        if opening:
            self._arm_triggers(position, fill.price)
        self.fills += 1
        if self._journal:
            self._filled_event(position, order, self.symbol_of[order.instrument_id], fill)
        self._commit_outcome()
        return True

    def _value_to_send(self, position: Position, order: Order, at: datetime) -> str | None:
        """Live mode, as a value-sized entry (``created``) is about to be sent: the quote value it is sent for — capped
        at what the account can pay now, less a reserve for a fee charged in the quote (the exchange's taker fee, the
        engine's ``execution.fee``), and in whole ticks of the market's price (ccxt truncates a market buy's quote
        amount to them) — made the order's value; the status reason to commit with it when capped, None otherwise.

        The decision sized it at the cycle's prices (equity × fraction), before the sells of its job had filled;
        what they brought (their fill prices, spread and fees) may be less, and an exchange refuses a market buy
        of a quote value the balance cannot pay (Binance's -2010). What the account can pay is the lesser of the
        ledger's cash (the strategy's own money, what this job's sells brought booked in it) and the exchange's free
        balance of the quote (what it will accept: less while another order locks some). The value is set before
        the order is committed ``submitting`` (write-ahead), so the ledger holds exactly what is sent and a restart
        sends, or asks about, exactly that; a cap is journaled ``order_capped`` in the same commit (what the decision
        asked, what is sent, why). Capped below the instrument's minimum notional: refused here, never sent
        (``order_rejected``, insufficient cash)."""
        router = self.router
        asked = order.value
        assert router is not None and asked is not None
        instrument = self.state.instrument(order.instrument_id)
        symbol, quote = instrument.symbol, instrument.quote_currency
        cash = self.state.portfolio.cash
        balance = router.venue.balances().get(quote)
        free = balance.free if balance is not None else 0.0
        available = max(0.0, min(cash, free))
        fee = self.config.execution.fee
        most = available / (1.0 + fee)
        spec = router.venue.instruments([symbol]).get(symbol)
        value = _whole_ticks(min(asked, most), spec.tick_size if spec is not None else 0.0)
        order.value = value
        if asked <= most:
            return None
        if value <= 0.0 or value < instrument.min_notional:
            order.value = asked  # refused as decided: never sent
            self._reject(position, order, RejectReason.insufficient_cash,
                         f"not enough cash: {available:.2f} {quote} (the ledger's {cash:.2f}, the exchange's free "
                         f"{free:.2f}) less a {fee:g} fee reserve is below the minimum order of "
                         f"{instrument.min_notional:.2f}; {asked:.2f} was decided", at)
            return None
        reason = (f"value capped at {value:.2f} {quote} from the {asked:.2f} decided: the cash there is as it is sent, "
                  f"{available:.2f} (the ledger's {cash:.2f}, the exchange's free {free:.2f}), less a {fee:g} fee "
                  "reserve")
        if self._journal:
            self.events("order_capped", order_id=order.id, client_order_id=order.client_order_id,
                        position_id=position.id, symbol=symbol, purpose=order.purpose.value, asked=asked,
                        value=value, cash=cash, exchange_free=free, fee_rate=fee, reason=reason)
        return reason

    def _after_send(self, position: Position, order: Order, count: int, *, opening: bool, resolved: bool = False,
                    journal_fills: bool = True) -> bool:
        """Live mode: journal what the exchange did with an order that had ``count`` fills before; True when it
        filled, in whole or in part.

        Each new fill is ``order_filled`` (``partial`` when the order did not fill completely:
        Binance expires the rest of a market order it could fill only in part), unless the
        caller journals a complete fill itself (``journal_fills`` False: an exit's journal line
        names its trigger or operator). The first fill of an opening order arms the position's
        triggers. A refusal is ``order_rejected``; an order the exchange ended with nothing (more)
        filled is ``order_expired`` (``order_cancelled`` with its reason when we asked for the cancel:
        ``_cancel``); a reply that never came is ``order_unknown``, asked about at
        the next job (``settle_unknown``).
        """
        new = order.fills[count:]
        if new:
            self.fills += 1
            if opening:
                self._arm_triggers(position, new[0].price)
        cancelled = self._cancelling.pop(order.client_order_id, None) if order.is_terminal else None
        if self._newly_lost(order):
            self._lost(position, order)
            return bool(new)
        if not self._journal:
            return bool(new)
        symbol = self.symbol_of[order.instrument_id]
        extra: dict[str, Any] = {"resolved": True} if resolved else {}
        if order.status is not _FILLED:
            extra["partial"] = True
        if journal_fills or order.status is not _FILLED:
            for fill in new:
                self._filled_event(position, order, symbol, fill, **extra)
        ids = {"order_id": order.id, "client_order_id": order.client_order_id, "position_id": position.id,
               "symbol": symbol, "purpose": order.purpose.value}
        if order.status is _FILLED and not new:
            # Its last fill was booked (and journaled) as partial — read before the exchange said it was the last (a
            # value-sized buy or a close: no size of their own to count against) — and it ended filled now: the end
            # is journaled, or the journal would leave it half filled.
            self.events("order_completed", **ids, filled_quantity=order.filled_quantity,
                        average_price=order.average_fill_price, fees=order.fees)
        elif order.status is _REJECTED:
            self._rejected_event(position, order)
        elif order.status is _UNKNOWN:
            self.events("order_unknown", **ids, reason=order.status_reason or "",
                        next_step="asked about by client order id at the next job; never sent again blind")
        elif cancelled is not None and order.status is OrderStatus.cancelled:
            self._cancelled_event(position, order, cancelled)
        elif order.status in (OrderStatus.expired, OrderStatus.cancelled):
            self.events("order_expired", **ids, status=order.status.value, quantity=order.quantity,
                        filled_quantity=order.filled_quantity, reason=order.status_reason or "")
        return bool(new)

    def _drain_journaled(self, taken: Sequence[tuple[Position, Order, int, float]] = (), *, own: Iterable[Order] = (),
                         resolved: bool = False) -> int:
        """Live mode: the one way to drain the router — apply what the venue reports and journal every followed
        order's news it brings; how many events (the caller commits).

        The venue's poll brings the news of every order it follows (the ccxt venue asks again about each), not only of
        the order the caller just sent, cancelled or asked about: a resting entry the exchange filled meanwhile is
        booked by whichever drain comes first. So each drain journals it there — ``order_filled``, its end, and an
        entry's first fill arms its stop (``_journal_changes``) — as ``Engine.drain`` would have; afterwards it is no
        news to any other drain. Journaling only the caller's own order would leave such a fill in the ledger with no
        ``order_filled`` line and its position with no stop-loss.

        Every order the router may hear of (``OrderRouter.pending``: sent, not ended, of an open position) is taken as
        it stands now, except those in ``taken`` — the caller's own earlier snapshot, from before it asked the exchange
        about them (their news since then is journaled here) — and those in ``own``, whose outcome the caller journals
        itself from its own count (``_after_send``).
        """
        router = self.router
        assert router is not None and self.live_venue is not None, "live mode drains through the router"
        skip = {id(o) for o in own} | {id(f[1]) for f in taken}
        followed = [*taken, *_followed((p, o) for p, o in router.pending() if id(o) not in skip)]
        count = router.drain(commit=False)
        self._journal_changes(followed, resolved=resolved)
        if router.fills_missing or self.missing_fills.orders:
            self.missing_fills.news(router, self.state, self.events, self.symbol_of)
        return count

    def _journal_changes(self, followed: _Followed, *, resolved: bool = False) -> None:
        """Live mode: journal what the exchange did with each followed order since ``followed`` was taken — its new
        fills, or its end — as the order's own job would have (``_after_send``); orders with no news say nothing."""
        for position, order, fills, held in followed:
            if len(order.fills) > fills or order.is_terminal or self._newly_lost(order):  # news, or lost
                self._after_send(position, order, fills, opening=order.side is _BUY and held == 0, resolved=resolved)

    def _commit_outcome(self) -> None:
        """Write-ahead: commit an order's outcome together with its journal line (nothing to do in a backtest)."""
        if self.router is not None:
            self.router.commit()

    def _exit_through_venue(self, position: Position, order: Order, price: float, at: datetime, *,
                            apply_slippage: bool) -> Fill | None:
        """``_exit_now`` write-ahead: sell the whole position at ``price``; the fill (the caller journals it, then
        commits: ``_commit_outcome``).

        Live mode: None when the exchange did not fill it completely — it refused it, filled part
        (the position keeps the rest), or its reply never came (``unknown``: the order waits in
        ``pending`` and is asked about at the next job). The position stays protected: while the
        order is in flight no second exit is sent, and once it has ended unfilled the triggers
        are checked again at the next bar.
        """
        count = len(order.fills)
        self._send(order, price, at, apply_slippage=apply_slippage)
        if self.live_venue is not None:
            self._after_send(position, order, count, opening=False, journal_fills=False)
            if not order.is_terminal and all(o is not order for _, o in self.pending):
                self.pending.append((position, order))
            return order.fills[-1] if order.status is _FILLED else None
        if order.status is not _FILLED:
            raise InvariantError(f"the exit {order.client_order_id} of position {position.id} is "
                                 f"{order.status.value}: {order.status_reason}; the venue's holding and the "
                                 "position's disagree")
        self.fills += 1
        return order.fills[-1]

    def _cancel(self, order: Order, text: str, at: datetime) -> None:
        """Cancel an order not yet filled; one the venue may hold (sent before a restart) is cancelled there too.

        Live mode: the exchange decides. The cancel is asked for and its answer applied at once
        (``OrderRouter.drain``): fills it made before the cancel reached it are booked and journaled
        ``order_filled`` (partial), the cancel is journaled ``order_cancelled`` with ``text``, and an
        order it had filled completely first stays filled. An order it has not confirmed ended stays
        followed as any open order (and its position open: the router retires none with an order
        that may still change); its cancel or fill arrives with a later drain. A TemporaryError (the
        exchange unreachable) escapes to the loop boundary, which retries the job. The request is on
        record before the exchange sees it (``order_cancel_requested``, committed): after a kill -9 the
        restart asks the exchange about the order (still open, or cancelled: reconciliation adopts it).
        An order never sent (``created``) is cancelled here alone, journaled ``order_cancelled`` at once.
        One whose submit reply never came (no exchange id) is asked about first: found, it is cancelled at the
        exchange as above; never arrived (the exchange's "does not exist" has lasted: ``NotFoundAnswers``), it is
        cancelled here and never sent; not known yet (maybe the exchange's lag, during which it may fill) or not
        askable, it stays followed with its cancel asked for (``_cancel_unconfirmed``) — never ended on one answer.
        One the exchange says ended while its trades are not all listed (``OrderRouter.ended_short``) is left alone:
        nothing is sent or journaled — it ended there, and its trades, once listed, end it here.
        """
        router = self.router
        live = self.live_venue is not None
        if router is None or order.status is _CREATED:
            accounting.cancel(order, text, at)
            if live and router is not None:
                self._cancelled_event(self._open_position_of(order), order, text)
            return
        if live and order.client_order_id in router.ended_short:
            return
        if not live:  # the simulated venue in this process: the cancel is certain
            router.venue.cancel(order.client_order_id)
            accounting.cancel(order, text, at)
            return
        position = self._open_position_of(order)
        followed = _followed((p, o) for p, o in self.pending if not o.is_terminal)
        if all(f[1] is not order for f in followed):
            followed += _followed([(position, order)])
        asked = order.client_order_id in self._cancelling  # a retried job asks again: journaled once
        text = self._cancelling.get(order.client_order_id, text)
        if order.status in (_UNKNOWN, _SUBMITTING) and not order.venue_order_id:
            # Its reply never came: asked about first. Never arrived (the exchange's "does not exist" has lasted:
            # NotFoundAnswers) — it ends here, and is never sent (the next job's settle_unknown would send it: an entry
            # bought after all); arrived — taken as the exchange has it, and cancelled there below.
            try:
                unsent = router.resolve_order(position, order, send=False) == "unsent"
            except TemporaryError:
                if order.venue_order_id:  # the exchange has it (its fills not yet read): cancelled there, retried
                    raise
                # The exchange cannot be asked (the outage that lost the reply), or does not know the order yet (maybe
                # its lag, during which it may fill): it stays followed, its cancel asked for, and is never sent;
                # settle_unknown asks again at every job under the same rule (_settle_cancelled).
                self._cancel_unconfirmed(position, order, text, asked)
                return
            if unsent and not order.is_terminal:
                accounting.cancel(order, text, at)
            if order.is_terminal:
                self._cancelling[order.client_order_id] = text  # journaled order_cancelled by _after_send
                self._journal_changes(followed)
                router.commit()
                return
        if self._journal and not asked:
            self.events("order_cancel_requested", order_id=order.id, client_order_id=order.client_order_id,
                        position_id=position.id, symbol=self.symbol_of[order.instrument_id],
                        purpose=order.purpose.value, reason=text)
        router.commit()  # the request on record before the exchange sees it
        self._cancelling[order.client_order_id] = text  # only now asked: a retry after a failure above journals it
        router.venue.cancel(order.client_order_id)
        self._drain_journaled(followed)
        if not order.is_terminal:
            self._ask_after_cancel(position, order)
        router.commit()  # the cancel's outcome with its journal lines, now: a later failure in this job keeps them

    def _cancel_unconfirmed(self, position: Position, order: Order, text: str, asked: bool) -> None:
        """Live mode: the cancel of an order whose submit reply never came (no exchange id) and that the exchange does
        not know yet — maybe its lag — or cannot be asked about now. Nothing is sent to the exchange: the request is
        journaled ``order_cancel_requested`` (once, across restarts too) and committed, and the order stays
        ``unknown`` and followed. The next jobs' ``settle_unknown`` asks about it again under the one rule
        (``NotFoundAnswers``) without failing the job for it (``_settle_cancelled``): found, it is taken as the
        exchange has it and cancelled there (what it filled is booked, and held or sold as any late fill); the rule
        met, it ends here as never sent (``order_cancelled``). Its position is left alone meanwhile (an order of
        unknown outcome: ``in_flight``), the others are not."""
        router = self.router
        assert router is not None
        if order.status is _SUBMITTING:  # (a start-up's order not yet resolved) asked about at each job from here
            order.transition(_UNKNOWN, router.now(), "the exchange does not know it yet; its cancel is asked for")
        if self._journal and not asked:
            self.events("order_cancel_requested", order_id=order.id, client_order_id=order.client_order_id,
                        position_id=position.id, symbol=self.symbol_of[order.instrument_id],
                        purpose=order.purpose.value, reason=text)
        self._cancelling[order.client_order_id] = text
        router.commit()

    def _ask_after_cancel(self, position: Position, order: Order) -> None:
        """Live mode: the exchange did not confirm a cancel; ask it about the order by client order id.

        Still open (the cancel taken, not yet applied), or the exchange unreachable: the order stays followed and
        the caller waits (an exit's pass fails temporarily: an outage, retried). Ended after all (its news lost on
        the way): taken as the exchange has it. Unknown to the exchange although it had accepted the order: an
        outage too while that may be the exchange's lag (``OrderRouter.resolve_order`` raises TemporaryError until
        the answer has persisted: ``NotFoundAnswers``), then lost (``_lost``) — no retry would ever confirm its
        cancel.
        """
        router = self.router
        assert router is not None
        before = _followed([(position, order)])
        try:
            report = router.venue.fetch_order(order.client_order_id)  # one request (two while its trades lag its status): this runs at every retry
            if report is not None:
                router.not_found.found(order.client_order_id)  # "does not exist" counts in a row: it starts over
            if report is not None and report.status in _RESTING:
                return  # the cancel taken, not yet applied: asked again at the retry
            router.resolve_order(position, order, send=False)  # its end and fills, or lost (rare: read it all)
        except TemporaryError:
            return  # the exchange cannot be asked now: the cancel stays unconfirmed, asked again at the retry
        self._journal_changes(before)

    def _newly_lost(self, order: Order) -> bool:
        """Live mode: the exchange had ``order`` and has just answered that it no longer knows it (the router says
        which), and this engine has not said so yet."""
        router = self.router
        cid = order.client_order_id
        return router is not None and cid in router.lost and cid not in self.lost and order.status is _UNKNOWN

    def _lost(self, position: Position, order: Order) -> None:
        """Live mode: an order the exchange accepted once answers that it does not know it (not a network failure).

        It is left ``unknown`` for a person (``OrderRouter``: nothing resent, no money fixed), journaled
        ``order_lost`` once per order (across restarts: ``lost_before``) with what to do, and named in :attr:`lost`,
        which the daemon turns into
        safe mode ("needs an operator", in /status and /healthz). This process never exits the position meanwhile: its
        order of unknown outcome keeps every exit away (``in_flight``, ``_closes``), so a retried job goes on
        with the other positions instead of asking the exchange about it for ever.
        """
        cid = order.client_order_id
        self._cancelling.pop(cid, None)
        message = f"needs an operator: order {cid} unknown to the exchange; run `tradeexecutor reconcile`"
        self.lost[cid] = message
        self.events("order_lost", order_id=order.id, client_order_id=cid, position_id=position.id,
                    symbol=self.symbol_of[order.instrument_id], purpose=order.purpose.value,
                    venue_order_id=order.venue_order_id, reason=message)

    def _open_position_of(self, order: Order) -> Position:
        """The open position ``order`` belongs to (an order not yet ended keeps its position open)."""
        return next(p for p in self.state.portfolio.open_positions if p.id == order.position_id)

    def end_orders_before_exits(self, exits: Iterable[tuple[Position, str, datetime]]) -> None:
        """Live mode, before any order of a job is planned or sent: the one pass that cancels, at the exchange, every
        order not yet ended of each position the job is about to sell whole (``exits``: the position, the cancel's
        reason, its time) — entries and increases, and sells (a ``reduce`` resting at the exchange) — then requires
        the exchange to have confirmed that each ended.

        All the cancels come first, all the checks after: a TemporaryError (an order the exchange still answers
        "open") leaves nothing of the job created or sent — only the cancels, updates of orders that exist,
        committed — so the retried job (a cycle asks the strategy again, a trigger check sees the bar again)
        plans every exit once. Selling before the exchange says a buy ended could leave a later fill unsold,
        or sell more than the position turns out to hold; selling while an earlier sell still rests could sell
        twice (both fill, or the exchange's balance check refuses one). Backtest, replay and paper: nothing to do
        (their waiting orders fill after the close, as they always have; a position holding nothing has its
        entry cancelled).
        """
        if self.live_venue is None:
            return
        exits = list(exits)
        for position, text, at in exits:
            for order in list(position.orders):
                if not order.is_terminal:
                    self._cancel(order, text, at)
        waiting = [o.client_order_id for position, _, _ in exits for o in position.orders if not o.is_terminal]
        lost = [self.lost[cid] for cid in waiting if cid in self.lost]
        if lost:  # the retry leaves their positions alone (an order of unknown outcome) and exits the others
            raise TemporaryError(f"{'; '.join(lost)}; nothing of this job was sent: it is taken again without "
                                 "that position")
        if waiting:
            raise TemporaryError(
                f"the exchange has not confirmed the cancel of {', '.join(dict.fromkeys(waiting))}; nothing of this "
                "job was sent: it is taken again at the next try, once the exchange says the order ended")

    def _orders_ended(self, position: Position) -> None:
        """Live mode, as an exit of ``position`` is made: ``end_orders_before_exits`` has ended its orders (a bug if
        not: a TemporaryError here, half-way through a job, would lose the job's other orders). Orders this job
        created and has not sent yet (``[reduce(X), close(X)]``: the reduce) are the job's own."""
        if self.live_venue is None:
            return
        waiting = [o.client_order_id for o in position.orders if not o.is_terminal and o.status is not _CREATED]
        if waiting:
            raise InvariantError(f"position {position.id}: an exit made while its orders {', '.join(waiting)} may "
                                 "still fill; end_orders_before_exits must run first")

    def _close_empty(self, position: Position, text: str, at: datetime) -> bool:
        """A position closed whole that holds nothing (its entry not filled): every order of it not yet ended is
        cancelled, and it is retired once all have ended (True: nothing to sell). False: it holds something to sell
        — live, perhaps what the exchange filled before the cancel reached it."""
        if position.quantity > 0:
            return False
        for order in list(position.orders):
            if not order.is_terminal:
                self._cancel(order, text, at)
        accounting.retire_if_done(self.state.portfolio, position)
        return True

    def _cancelled_event(self, position: Position, order: Order, reason: str) -> None:
        self.events("order_cancelled", order_id=order.id, client_order_id=order.client_order_id,
                    position_id=position.id, symbol=self.symbol_of[order.instrument_id],
                    purpose=order.purpose.value, reason=reason)

    def _filled_event(self, position: Position, order: Order, symbol: str, fill: SimulatedFill | Fill,
                      **extra: Any) -> None:
        # The fee as charged, with its currency; one not in the quote currency (the base asset, or a third one such
        # as BNB) also with what it is worth in the quote (Fill.quote_fee) and that currency, never a bare number.
        quote = self.state.instrument(order.instrument_id).quote_currency
        if isinstance(fill, Fill):
            extra.update(fee_currency=fill.fee_currency)
            if fill.fee_in_base or fill.fee_price is not None:
                extra.update(fee_value=fill.quote_fee, fee_value_currency=quote)
        else:
            extra.update(fee_currency=quote)
        self.events("order_filled", order_id=order.id, client_order_id=order.client_order_id,
                    position_id=position.id, symbol=symbol, purpose=order.purpose.value,
                    side=order.side.value, quantity=fill.quantity if order.is_buy else -fill.quantity,
                    price=fill.price, fee=fill.fee, **extra)
        if position.dust_quantity and not position.is_open:  # the close left less than one lot: written off
            self.events("dust_written_off", position_id=position.id, symbol=symbol, quantity=position.dust_quantity)

    def _reject(self, position: Position, order: Order, reason: RejectReason, text: str, at: datetime) -> None:
        accounting.reject(order, reason, text, at)
        self._rejected_event(position, order)
        accounting.retire_if_done(self.state.portfolio, position)

    def _rejected_event(self, position: Position, order: Order) -> None:
        if self._journal:
            self.events("order_rejected", order_id=order.id, client_order_id=order.client_order_id,
                        position_id=position.id, symbol=self.symbol_of[order.instrument_id],
                        purpose=order.purpose.value, reason=order.status_reason or "",
                        reject_reason=order.reject_reason.value if order.reject_reason else None)

    def _arm_triggers(self, position: Position, entry: float) -> None:
        if position.stop_loss_pct is not None:
            position.stop_loss = entry * (1.0 - position.stop_loss_pct)
        if position.take_profit_pct is not None:
            position.take_profit = entry * (1.0 + position.take_profit_pct)
        if position.trailing_stop_pct is not None:
            position.high_water = entry

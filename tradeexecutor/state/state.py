"""The whole persisted state of one run: instruments, portfolio, valuations and cycle progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from dataclasses_json import dataclass_json

from tradeexecutor.state.instrument import Instrument
from tradeexecutor.state.portfolio import Portfolio
from tradeexecutor.state.risk import RiskState
from tradeexecutor.state.timestamps import datetime_field
from tradeexecutor.state.valuation import ValuationSeries

#: Bumped whenever the persisted shape changes; files from a newer schema are refused, older ones migrated
#: (state/migrate.py; 2 = orders with fills instead of trades).
SCHEMA_VERSION = 2


@dataclass_json
@dataclass(slots=True)
class State:
    """Everything a run must remember across restarts."""

    #: Shape version of this file; see SCHEMA_VERSION.
    schema_version: int = SCHEMA_VERSION
    #: Strategy name, for people reading the file.
    name: str = ""
    #: sha256 of the strategy source that produced this state.
    strategy_version: str = ""
    #: When the state was created.
    created_at: datetime | None = datetime_field()
    #: Every instrument the run has seen, referenced by id from positions and orders.
    instruments: list[Instrument] = field(default_factory=list)
    #: Cash and positions.
    portfolio: Portfolio = field(default_factory=Portfolio)
    #: Equity, cash and exposure over time.
    valuations: ValuationSeries = field(default_factory=ValuationSeries)
    #: Timestamp of the last cycle that completed; a cycle at or before it never runs again.
    last_completed_cycle: datetime | None = datetime_field()
    #: Number of strategy cycles completed over the life of the state.
    cycles_completed: int = 0
    #: Where a replay feed stands (index of the last bar delivered in the data as loaded), for display and for
    #: states written before ``last_bar_at`` existed.
    replay_cursor: int = -1
    #: Starting cash, for returns.
    initial_cash: float = 0.0
    #: Close time of the last bar processed: the feed's progress, so restarts continue after it
    #: whatever history the data holds by then (None: none yet, or a state from before this field).
    last_bar_at: datetime | None = datetime_field()
    #: The risk limits' running figures and the risk pause (default: nothing seen, not paused).
    risk: RiskState = field(default_factory=RiskState)

    def instrument(self, instrument_id: int) -> Instrument:
        """Look an instrument up by id."""
        for instrument in self.instruments:
            if instrument.id == instrument_id:
                return instrument
        raise KeyError(f"no instrument with id {instrument_id}")

    def quote_currency(self) -> str | None:
        """The currency the state's money figures are in, fees included (``fees_paid``, ``Order.fees``): its
        instruments' quote currency; several, sorted and joined with ``/``; None without instruments."""
        quotes = sorted({instrument.quote_currency for instrument in self.instruments})
        return "/".join(quotes) if quotes else None

    def instrument_by_symbol(self, symbol: str) -> Instrument | None:
        """Look an instrument up by symbol."""
        for instrument in self.instruments:
            if instrument.symbol == symbol:
                return instrument
        return None

    def add_instrument(self, symbol: str, asset_type: str, quantity_step: float, min_notional: float = 0.0) -> Instrument:
        """Register an instrument once; later calls return the existing record."""
        existing = self.instrument_by_symbol(symbol)
        if existing is not None:
            return existing
        instrument = Instrument(
            id=len(self.instruments) + 1,
            symbol=symbol,
            asset_type=asset_type,
            quantity_step=quantity_step,
            min_notional=min_notional,
        )
        self.instruments.append(instrument)
        return instrument

"""What a strategy's decide() sees at one cycle: candles closed by then, indicators, the portfolio.

Every accessor stops at the last bar closed by the cycle's time; later bars are out of reach
(asking for them raises LookaheadError), and history comes back as copies, never views.

The strategy can read but never change what the engine decides with: ``paused`` is a read-only
property (an operator pause or safe mode cannot be lifted from decide()), and ``position()``
returns a frozen :class:`~tradeexecutor.strategy.views.PositionView`, never the live position.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import LookaheadError
from tradeexecutor.strategy.indicators import IndicatorStore
from tradeexecutor.strategy.parameters import Parameters
from tradeexecutor.strategy.views import PositionView

if TYPE_CHECKING:
    from tradeexecutor.state import Position, State


def _view(column: np.ndarray) -> memoryview:
    """A read-only memoryview of a 1-D column: ``view[i]`` is a Python float or int."""
    view = memoryview(np.ascontiguousarray(column))  # type: ignore[arg-type]  # numpy arrays are buffers
    return view.toreadonly()


class CycleContext:
    """The strategy's window onto the world at one cycle; one object reused across cycles."""

    __slots__ = (
        "_closed",
        "_default",
        "_default_close",
        "_default_closed",
        "_default_id",
        "_default_last",
        "_default_values",
        "_indicators",
        "_instrument_ids",
        "_known",
        "_marker",
        "_market",
        "_parameters",
        "_paused",
        "_state",
        "_step",
        "_symbols",
        "_timestamp_ns",
    )

    def __init__(self, market: MarketData, indicators: IndicatorStore, state: State, parameters: Parameters,
                 symbols: tuple[str, ...]):
        self._market = market
        self._indicators = indicators.values
        self._state = state
        self._parameters = parameters
        self._symbols = symbols
        self._default = symbols[0] if len(symbols) == 1 else None
        self._step = -1
        self._known = frozenset(symbols)
        #: Symbol → the index of its last closed bar at each step; read per symbol on demand, so a
        #: cycle costs the same whether the strategy trades one instrument or fifty.
        self._closed = {s: market.last_closed[s] for s in symbols}
        self._timestamp_ns = 0
        self._instrument_ids: dict[str, int] = {}
        self._default_id = -1
        # Single-instrument fast path: most strategies trade one symbol and read it every cycle.
        # Memoryviews of the read-only columns: indexing one gives a Python number directly,
        # several times cheaper than ndarray.item, and copies nothing.
        self._default_last = -1
        default_values = indicators.values.get(self._default, {}) if self._default else {}
        self._default_values = {name: _view(values) for name, values in default_values.items()
                                if values.ndim == 1 and values.dtype.kind in "fiub"}  # others: the general path
        self._default_close = _view(market.bars[self._default].close) if self._default else None
        self._default_closed = _view(market.last_closed[self._default]) if self._default else None
        self._paused = False
        #: Brings positions' marks up to a step (the engine's mark_to_market): a backtest marks only
        #: when something reads them, and position() and equity read them.
        self._marker: Callable[[int], None] | None = None

    # -- set by the engine --------------------------------------------------------------

    def _move_to(self, step: int, timestamp_ns: int) -> None:
        # backtest.lean.BacktestEngine.run_steps does the same inline: change both together.
        self._step = step
        self._timestamp_ns = timestamp_ns
        if self._default_closed is not None:
            self._default_last = self._default_closed[step]

    def _set_marker(self, marker: Callable[[int], None]) -> None:
        self._marker = marker

    def _marks(self) -> None:
        if self._marker is not None and self._step >= 0:
            self._marker(self._step)

    def _last(self, symbol: str) -> int:
        """Index of ``symbol``'s last bar closed at this cycle (-1 before its first)."""
        return self._closed[symbol].item(self._step)  # type: ignore[no-any-return]

    def _follow_market(self) -> None:
        """Take the market's and the indicators' columns again after candles were appended (each append makes
        new column views; the ones kept here would stop at the old length)."""
        market = self._market
        self._closed = {s: market.last_closed[s] for s in self._symbols}
        if self._default is not None:
            values = self._indicators.get(self._default, {})
            self._default_values = {name: _view(column) for name, column in values.items()
                                    if column.ndim == 1 and column.dtype.kind in "fiub"}
            self._default_close = _view(market.bars[self._default].close)
            self._default_closed = _view(market.last_closed[self._default])

    def _set_instrument_ids(self, ids: dict[str, int]) -> None:
        self._instrument_ids = ids
        if self._default is not None:
            self._default_id = ids.get(self._default, -1)

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused

    def _symbol(self, symbol: str | None) -> str:
        if symbol is None:
            if self._default is None:
                raise ValueError(f"this strategy trades {len(self._symbols)} instruments: name the symbol")
            return self._default
        if symbol not in self._known:
            raise KeyError(f"{symbol!r} is not one of this strategy's instruments: {', '.join(self._symbols)}")
        return symbol

    # -- time, parameters, universe -----------------------------------------------------

    @property
    def timestamp(self) -> pd.Timestamp:
        """The cycle's time (UTC); every bar visible closed at or before it."""
        return pd.Timestamp(self._timestamp_ns, tz="UTC")

    @property
    def parameters(self) -> Parameters:
        """Resolved parameter values: ``ctx.parameters.fast``."""
        return self._parameters

    @property
    def symbols(self) -> tuple[str, ...]:
        """The instruments this strategy trades."""
        return self._symbols

    @property
    def paused(self) -> bool:
        """True while new positions are paused (by an operator or safe mode): open intents are dropped. Read-only."""
        return self._paused

    # -- prices ---------------------------------------------------------------------------

    def bars_available(self, symbol: str | None = None) -> int:
        """How many closed bars of ``symbol`` exist at this cycle."""
        return self._last(self._symbol(symbol)) + 1

    def close(self, symbol: str | None = None, ago: int = 0) -> float:
        """Close of the last closed bar (``ago`` bars earlier); NaN before the data starts."""
        if ago < 0:
            raise LookaheadError(f"close(ago={ago}) asks for a bar after the cycle time {self.timestamp}")
        if symbol is None and self._default_close is not None:
            index = self._default_last - ago
            return math.nan if index < 0 else self._default_close[index]
        sym = self._symbol(symbol)
        index = self._last(sym) - ago
        if index < 0:
            return math.nan
        return self._market.bars[sym].close.item(index)

    def bar(self, symbol: str | None = None, ago: int = 0) -> dict[str, Any]:
        """The last closed bar as a dict: time (open time), open, high, low, close, volume."""
        sym = self._symbol(symbol)
        if ago < 0:
            raise LookaheadError(f"bar(ago={ago}) asks for a bar after the cycle time {self.timestamp}")
        index = self._last(sym) - ago
        if index < 0:
            raise IndexError(f"no closed bar of {sym} {ago} bars before {self.timestamp}")
        bars = self._market.bars[sym]
        return {
            "time": pd.Timestamp(int(bars.open_time_ns[index]), tz="UTC"),
            "open": bars.open.item(index),
            "high": bars.high.item(index),
            "low": bars.low.item(index),
            "close": bars.close.item(index),
            "volume": bars.volume.item(index),
        }

    def candles(self, symbol: str | None = None, bars: int | None = None) -> pd.DataFrame:
        """A copy of the closed candles, the last ``bars`` of them (all when None)."""
        sym = self._symbol(symbol)
        end = self._last(sym) + 1
        return self._market.bars[sym].tail_frame(end if bars is None else bars, end)

    # -- indicators -------------------------------------------------------------------

    def indicator(self, name: str, symbol: str | None = None, ago: int = 0) -> float:
        """An indicator's value at the last closed bar (``ago`` bars earlier); NaN before it exists."""
        if symbol is None and ago >= 0:  # the one-instrument fast path
            # A subscript, not .get(): a method call per read costs a third of this path (4M reads in the
            # 1M-bar benchmark); a name the fast path lacks falls through to the general path below.
            try:
                default = self._default_values[name]
            except KeyError:
                pass
            else:
                index = self._default_last - ago
                return default[index] if index >= 0 else math.nan  # type: ignore[no-any-return]
        if ago < 0:
            raise LookaheadError(f"indicator({name!r}, ago={ago}) asks for a value after the cycle time {self.timestamp}")
        if symbol is None and self._default is not None:
            index = self._default_last - ago
            sym = self._default
        else:
            sym = self._symbol(symbol)
            index = self._last(sym) - ago
        if index < 0:
            return math.nan
        try:
            values = self._indicators[sym][name]
        except KeyError:
            raise KeyError(f"no indicator {name!r} for {sym}; indicators() returned "
                           f"{', '.join(self._indicators.get(sym, {})) or 'nothing'}") from None
        return values.item(index)

    def indicator_history(self, name: str, symbol: str | None = None, bars: int | None = None) -> np.ndarray:
        """A copy of the indicator's values up to the last closed bar (the last ``bars`` of them)."""
        sym = self._symbol(symbol)
        end = self._last(sym) + 1
        start = 0 if bars is None else max(0, end - bars)
        return np.array(self._indicators[sym][name][start:end], copy=True)

    # -- portfolio --------------------------------------------------------------------

    def position(self, symbol: str | None = None) -> PositionView | None:
        """The open position in ``symbol`` as a frozen view (a copy: assigning to it raises), or None."""
        sym = self._symbol(symbol)
        position = self._open_position(sym)
        if position is None:
            return None
        self._marks()
        return PositionView.of(position, sym)

    def has_position(self, symbol: str | None = None) -> bool:
        """True when an open position in ``symbol`` exists (its entry may still be pending)."""
        if symbol is None and self._default is not None:  # the one-instrument fast path
            default_id = self._default_id
            for position in self._state.portfolio.open_positions:  # noqa: SIM110 - a loop: no generator per call
                if position.instrument_id == default_id:
                    return True
            return False
        return self._open_position(self._symbol(symbol)) is not None

    def _open_position(self, symbol: str) -> Position | None:
        instrument_id = self._instrument_ids.get(symbol)
        if instrument_id is None:
            return None
        for position in self._state.portfolio.open_positions:
            if position.instrument_id == instrument_id:
                return position
        return None

    @property
    def cash(self) -> float:
        """Cash available now."""
        return self._state.portfolio.cash

    @property
    def equity(self) -> float:
        """Cash plus open positions at the latest close."""
        self._marks()
        return self._state.portfolio.equity()

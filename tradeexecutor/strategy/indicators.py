"""Run a strategy's vectorised indicator step once per data load, and prove it does not peek ahead."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import LookaheadError, StrategyLoadError

IndicatorFunction = Callable[[pd.DataFrame, Any], Mapping[str, Any]]

#: Fractions of the data at which the indicator step is recomputed to detect lookahead.
_CAUSALITY_CUTS = (0.5, 0.8)


class IndicatorStore:
    """Indicator values per symbol and name, as read-only float arrays aligned with the bars."""

    def __init__(self, values: dict[str, dict[str, np.ndarray]] | None = None):
        self.values: dict[str, dict[str, np.ndarray]] = values or {}

    def names(self, symbol: str) -> list[str]:
        """Indicator names computed for ``symbol``."""
        return list(self.values.get(symbol, {}))


def _to_array(name: str, symbol: str, result: Any, frame: pd.DataFrame) -> np.ndarray:
    if isinstance(result, pd.Series):
        if len(result) != len(frame) or not result.index.equals(frame.index):
            raise StrategyLoadError(
                f"indicator {name!r} for {symbol}: the series must have the candles' index ({len(frame)} rows), "
                f"got {len(result)} rows"
            )
        array = result.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        array = np.asarray(result, dtype=np.float64)
        if array.shape != (len(frame),):
            raise StrategyLoadError(
                f"indicator {name!r} for {symbol}: expected {len(frame)} values, got shape {array.shape}"
            )
    array = np.ascontiguousarray(array)
    array.flags.writeable = False
    return array


def _compute_one(function: IndicatorFunction, frame: pd.DataFrame, parameters: Any, symbol: str) -> dict[str, np.ndarray]:
    result = function(frame.copy(), parameters)
    if not isinstance(result, Mapping):
        raise StrategyLoadError(
            f"indicators() must return a dict of name to series, got {type(result).__name__} for {symbol}"
        )
    return {str(name): _to_array(str(name), symbol, value, frame) for name, value in result.items()}


def compute_indicators(
    function: IndicatorFunction | None,
    market: MarketData,
    parameters: Any,
    *,
    check_causality: bool = True,
) -> IndicatorStore:
    """Compute indicators for every symbol; with ``check_causality`` recompute them on prefixes of
    the data and raise LookaheadError when a value changes once later bars are added."""
    store = IndicatorStore()
    if function is None:
        return store
    for symbol, bars in market.bars.items():
        full = _compute_one(function, bars.frame, parameters, symbol)
        if check_causality and len(bars) >= 4:
            for cut in _CAUSALITY_CUTS:
                k = max(2, int(len(bars) * cut))
                prefix = _compute_one(function, bars.frame.iloc[:k], parameters, symbol)
                for name, values in full.items():
                    early = prefix.get(name)
                    if early is None:
                        continue
                    same = np.isclose(values[:k], early, rtol=1e-9, atol=1e-12, equal_nan=True)
                    if not same.all():
                        first = int(np.flatnonzero(~same)[0])
                        when = bars.frame.index[first]
                        raise LookaheadError(
                            f"indicator {name!r} for {symbol} looks ahead: its value at {when} changes when "
                            f"later candles are added; compute it only from past rows (no shift(-n), no "
                            f"whole-series normalisation)"
                        )
        store.values[symbol] = full
    return store

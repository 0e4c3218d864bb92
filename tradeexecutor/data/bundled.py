"""Name and load the real sample candles shipped in the package, so defaults work offline.

Two datasets live in ``tradeexecutor/data/sample/`` (see its README.md for sources and licences):

``stocks-daily``
    Daily unadjusted candles of AAPL, GOOG, IBM, MSFT (2000–2013) and FB (2012–2013).
``eurusd-hourly``
    Hourly EURUSD candles for 2017; the file has no symbol column.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pandas as pd

from tradeexecutor.data.candles import load_candles
from tradeexecutor.errors import DataError

__all__ = [
    "BUNDLED_DATASETS",
    "SAMPLE_DIR",
    "BundledDataset",
    "asset_type_of",
    "bundled_for_symbols",
    "load_bundled",
]

#: Directory of the sample files inside the installed package.
SAMPLE_DIR: Path = Path(__file__).resolve().parent / "sample"


@dataclass(frozen=True)
class BundledDataset:
    """One shipped candle file and what is in it."""

    #: Name used with :func:`load_bundled`, such as ``"stocks-daily"``.
    name: str
    #: Path of the file inside the package.
    path: Path
    #: Bar size as a duration string for :func:`tradeexecutor.timeframe.parse_duration`.
    frequency: str
    #: Asset type of every symbol in the file: ``"equity"`` or ``"fx"``.
    asset_types: Mapping[str, str]
    #: Symbol to give a file without a symbol column; None when the file has one.
    symbol: str | None = None
    #: One line for listings.
    description: str = field(default="", compare=False)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols in the file, sorted."""
        return tuple(sorted(self.asset_types))


#: Shipped datasets by name.
BUNDLED_DATASETS: Mapping[str, BundledDataset] = MappingProxyType(
    {
        "stocks-daily": BundledDataset(
            name="stocks-daily",
            path=SAMPLE_DIR / "stocks-daily-wiki.csv.gz",
            frequency="1d",
            asset_types=MappingProxyType(
                dict.fromkeys(("AAPL", "FB", "GOOG", "IBM", "MSFT"), "equity")
            ),
            description="daily unadjusted US stock candles 2000-2013 (Quandl WIKI)",
        ),
        "eurusd-hourly": BundledDataset(
            name="eurusd-hourly",
            path=SAMPLE_DIR / "eurusd-1h-2017.csv",
            frequency="1h",
            asset_types=MappingProxyType({"EURUSD": "fx"}),
            symbol="EURUSD",
            description="hourly EURUSD candles for 2017",
        ),
    }
)


def load_bundled(name: str) -> pd.DataFrame:
    """The long candle frame of a shipped dataset, so examples and tests need no downloads.

    Parsed once per process: a sweep's full runs and a test session load the same package file
    again and again (a file that never changes). Each caller gets its own frame object over the
    parsed data — pandas >= 3 copies on write, so what one caller writes no other sees; with
    pandas 2 each caller gets a deep copy.
    """
    dataset = BUNDLED_DATASETS.get(name)
    if dataset is None:
        known = ", ".join(BUNDLED_DATASETS)
        raise DataError(f"unknown bundled dataset {name!r}; known datasets are {known}")
    frame = _parsed(name)
    return frame.copy(deep=not _COPY_ON_WRITE)


#: pandas >= 3 always copies on write, so a shallow copy of the cached frame is the caller's own.
_COPY_ON_WRITE = int(pd.__version__.split(".", 1)[0]) >= 3


@functools.lru_cache(maxsize=len(BUNDLED_DATASETS))
def _parsed(name: str) -> pd.DataFrame:
    dataset = BUNDLED_DATASETS[name]
    return load_candles(dataset.path, symbol=dataset.symbol)


def asset_type_of(symbol: str) -> str | None:
    """``"equity"`` or ``"fx"`` for a bundled symbol (case-insensitive), None for any other."""
    wanted = symbol.strip().upper()
    for dataset in BUNDLED_DATASETS.values():
        if wanted in dataset.asset_types:
            return dataset.asset_types[wanted]
    return None


def bundled_for_symbols(symbols: str | Iterable[str]) -> str | None:
    """The name of the shipped dataset holding all ``symbols``, to pick a strategy's default data.

    None when no single dataset holds them all, or when no symbols are given.
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    wanted = {symbol.strip().upper() for symbol in symbols}
    if not wanted:
        return None
    for dataset in BUNDLED_DATASETS.values():
        if wanted <= dataset.asset_types.keys():
            return dataset.name
    return None

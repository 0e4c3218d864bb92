"""Turn a data option (a bundled dataset name, or candle files) into MarketData for a set of symbols."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from tradeexecutor.data.bundled import BUNDLED_DATASETS, bundled_for_symbols, load_bundled
from tradeexecutor.data.candles import load_candles
from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import DataError
from tradeexecutor.timeframe import parse_time


@dataclass(frozen=True)
class DataSelection:
    """What the market data was made from, for run metadata and fingerprints."""

    #: Bundled dataset name, or None for user files.
    dataset: str | None
    #: Files read.
    files: tuple[Path, ...]
    #: Every symbol the sources hold, with its asset type when known, for check_universe.
    available: dict[str, str | None]


def file_stamps(sources: Sequence[str]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of each data file, so a cached market is never used for a file that changed.

    Bundled dataset names are skipped: package data, which never changes.
    """
    stamps = []
    for source in sources:
        try:
            info = os.stat(source)
        except OSError:
            continue
        stamps.append((source, info.st_mtime_ns, info.st_size))
    return tuple(stamps)


def load_market(
    sources: Sequence[str],
    symbols: Sequence[str],
    *,
    bar_frequency: timedelta | None = None,
    start: str | None = None,
    end: str | None = None,
) -> tuple[MarketData, DataSelection]:
    """Load candles for ``symbols`` from ``sources`` and cut them to ``[start, end]``.

    ``sources`` holds bundled dataset names (``stocks-daily``, ``eurusd-hourly``) or paths of
    CSV, CSV.gz or Parquet files; empty means the bundled dataset that holds every symbol.
    """
    frames: list[pd.DataFrame] = []
    asset_types: dict[str, str | None] = {}
    files: list[Path] = []
    dataset_name: str | None = None
    if not sources:
        dataset_name = bundled_for_symbols(list(symbols))
        if dataset_name is None:
            known = "; ".join(f"{name}: {', '.join(ds.symbols)}" for name, ds in BUNDLED_DATASETS.items())
            raise DataError(
                f"no bundled dataset holds {', '.join(symbols)}; pass --data with candle files (bundled: {known})"
            )
        sources = [dataset_name]
    for source in sources:
        if source in BUNDLED_DATASETS:
            dataset = BUNDLED_DATASETS[source]
            frames.append(load_bundled(source))
            asset_types.update(dataset.asset_types)
            files.append(dataset.path)
            dataset_name = dataset_name or source
        else:
            path = Path(source)
            if not path.exists() and not any(ch in source for ch in "/\\."):
                names = ", ".join(BUNDLED_DATASETS)
                raise DataError(f"{source!r} is neither a bundled dataset ({names}) nor an existing file")
            single = symbols[0] if len(symbols) == 1 else None
            try:
                frame = load_candles(path)
            except DataError as exc:
                if single is not None and "no symbol column" in str(exc):
                    frame = load_candles(path, symbol=single)
                else:
                    raise
            frames.append(frame)
            files.append(path)
            for symbol in frame["symbol"].unique():
                asset_types.setdefault(str(symbol), None)
    combined = pd.concat(frames) if len(frames) > 1 else frames[0]
    available = {str(s): asset_types.get(str(s)) for s in combined["symbol"].unique()}
    wanted = [s for s in symbols if s in available]
    if not wanted:
        return _empty_market_error(symbols, available)
    start_ts = parse_time(start, "start") if start else None
    end_ts = parse_time(end, "end") if end else None
    if start_ts is not None and end_ts is not None and start_ts >= end_ts:
        raise DataError(f"start {start} is not before end {end}")
    market = MarketData.from_long_frame(combined, bar_frequency, asset_types, symbols=wanted or None)
    if start_ts is not None or end_ts is not None:
        market = market.between(start_ts, end_ts)
    return market, DataSelection(dataset=dataset_name, files=tuple(files), available=available)


def _empty_market_error(symbols: Sequence[str], available: dict[str, str | None]) -> tuple[MarketData, DataSelection]:
    raise DataError(
        f"the data holds none of the strategy's symbols {', '.join(symbols)} (it has: {', '.join(sorted(available))})"
    )

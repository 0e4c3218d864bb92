"""Market data: load and validate candle files, ship sample data, generate synthetic candles."""

from __future__ import annotations

from tradeexecutor.data.bundled import (
    BUNDLED_DATASETS,
    SAMPLE_DIR,
    BundledDataset,
    asset_type_of,
    bundled_for_symbols,
    load_bundled,
)
from tradeexecutor.data.candles import CANDLE_COLUMNS, candles_by_symbol, infer_frequency, load_candles
from tradeexecutor.data.synthetic import generate_candles

__all__ = [
    "BUNDLED_DATASETS",
    "CANDLE_COLUMNS",
    "SAMPLE_DIR",
    "BundledDataset",
    "asset_type_of",
    "bundled_for_symbols",
    "candles_by_symbol",
    "generate_candles",
    "infer_frequency",
    "load_bundled",
    "load_candles",
]

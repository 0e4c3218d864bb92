"""Tests for tradeexecutor.data.bundled: the real sample data shipped in the package."""

from __future__ import annotations

import pandas as pd
import pytest

from tradeexecutor.data import (
    BUNDLED_DATASETS,
    SAMPLE_DIR,
    asset_type_of,
    bundled_for_symbols,
    infer_frequency,
    load_bundled,
)
from tradeexecutor.errors import DataError
from tradeexecutor.timeframe import parse_duration

STOCK_ROWS = {"AAPL": 3270, "FB": 196, "GOOG": 2148, "IBM": 3270, "MSFT": 3270}


@pytest.fixture(scope="module")
def stocks() -> pd.DataFrame:
    return load_bundled("stocks-daily")


@pytest.fixture(scope="module")
def eurusd() -> pd.DataFrame:
    return load_bundled("eurusd-hourly")


def test_sample_files_exist() -> None:
    assert SAMPLE_DIR.is_dir()
    assert set(BUNDLED_DATASETS) == {"stocks-daily", "eurusd-hourly"}
    for dataset in BUNDLED_DATASETS.values():
        assert dataset.path.is_file()
        assert dataset.path.parent == SAMPLE_DIR


def test_dataset_descriptions() -> None:
    stocks, fx = BUNDLED_DATASETS["stocks-daily"], BUNDLED_DATASETS["eurusd-hourly"]
    assert stocks.frequency == "1d" and fx.frequency == "1h"
    assert stocks.symbols == tuple(sorted(STOCK_ROWS))
    assert set(stocks.asset_types.values()) == {"equity"}
    assert stocks.symbol is None
    assert fx.symbol == "EURUSD" and dict(fx.asset_types) == {"EURUSD": "fx"}


def test_stocks_load_with_documented_rows(stocks: pd.DataFrame) -> None:
    assert stocks["symbol"].value_counts().to_dict() == STOCK_ROWS
    assert len(stocks) == 12154
    assert list(stocks.columns) == ["symbol", "open", "high", "low", "close", "volume"]
    assert str(stocks.index.tz) == "UTC"
    assert stocks["symbol"].is_monotonic_increasing
    first_aapl = stocks[stocks["symbol"] == "AAPL"].iloc[0]
    assert first_aapl.name == pd.Timestamp("2000-03-01", tz="UTC")
    assert first_aapl["close"] == 130.31
    goog = stocks[stocks["symbol"] == "GOOG"]
    assert goog.index[0] == pd.Timestamp("2004-08-19", tz="UTC")
    assert goog.index.is_monotonic_increasing


def test_eurusd_loads(eurusd: pd.DataFrame) -> None:
    assert len(eurusd) == 6225
    assert set(eurusd["symbol"]) == {"EURUSD"}
    assert eurusd.index[0] == pd.Timestamp("2017-01-01 22:00", tz="UTC")
    assert eurusd.index[-1] == pd.Timestamp("2017-12-29 21:00", tz="UTC")


def test_infer_frequency_of_bundled(stocks: pd.DataFrame, eurusd: pd.DataFrame) -> None:
    assert infer_frequency(stocks) == pd.Timedelta(days=1)
    assert infer_frequency(eurusd) == pd.Timedelta(hours=1)
    for name, frame in (("stocks-daily", stocks), ("eurusd-hourly", eurusd)):
        assert infer_frequency(frame) == parse_duration(BUNDLED_DATASETS[name].frequency)


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DataError) as info:
        load_bundled("crypto")
    assert "crypto" in str(info.value)
    assert "stocks-daily" in str(info.value) and "eurusd-hourly" in str(info.value)


def test_asset_type_of() -> None:
    assert asset_type_of("AAPL") == "equity"
    assert asset_type_of("msft") == "equity"
    assert asset_type_of("EURUSD") == "fx"
    assert asset_type_of("BTCUSD") is None


def test_bundled_for_symbols() -> None:
    assert bundled_for_symbols(["AAPL", "GOOG"]) == "stocks-daily"
    assert bundled_for_symbols(("FB",)) == "stocks-daily"
    assert bundled_for_symbols("EURUSD") == "eurusd-hourly"
    assert bundled_for_symbols(["AAPL", "EURUSD"]) is None
    assert bundled_for_symbols(["TSLA"]) is None
    assert bundled_for_symbols([]) is None


def test_load_bundled_returns_fresh_frames() -> None:
    first = load_bundled("eurusd-hourly")
    first["close"] = 0.0
    assert (load_bundled("eurusd-hourly")["close"] > 0).all()


def test_a_bundled_dataset_is_parsed_once_and_each_caller_gets_its_own_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep's full runs load the same package file again and again: it is parsed once per process, and
    what one caller writes into its frame no other caller sees."""
    from tradeexecutor.data import bundled

    parsed: list[object] = []
    real = bundled.load_candles

    def counting(*args: object, **kwargs: object) -> object:
        parsed.append(args)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(bundled, "load_candles", counting)
    bundled._parsed.cache_clear()
    first = load_bundled("stocks-daily")
    second = load_bundled("stocks-daily")
    assert len(parsed) == 1 and first is not second
    close = second["close"].iloc[0]
    first.loc[first.index[0], "close"] = -1.0
    first["volume"] = 0.0
    assert second["close"].iloc[0] == close and (second["volume"] > 0).any()
    assert load_bundled("stocks-daily")["close"].iloc[0] == close
    bundled._parsed.cache_clear()

"""Tests for tradeexecutor.data.candles: loading, the long-frame shape, and every validation error."""

from __future__ import annotations

import ast
import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tradeexecutor.data
from tradeexecutor.data import candles_by_symbol, generate_candles, infer_frequency, load_candles
from tradeexecutor.errors import DataError, UserInputError

HEADER = "timestamp,symbol,open,high,low,close,volume"
GOOD_ROWS = [
    "2020-01-01,AAA,10,11,9,10.5,100",
    "2020-01-02,AAA,10.5,12,10,11,200",
    "2020-01-03,AAA,11,11.5,10.5,11.2,150",
    "2020-01-06,AAA,11.2,11.8,11,11.5,120",
]


def write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    """Write ``lines`` as a text file (gzip when the name ends in .gz) and return its path."""
    path = tmp_path / name
    text = "\n".join(lines) + "\n"
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def load_error(path: Path | list[Path], **kwargs: str) -> str:
    """The message of the DataError that loading ``path`` raises; asserts it is one line."""
    with pytest.raises(DataError) as info:
        load_candles(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------
# Happy path


def test_long_frame_shape_and_types(tmp_path: Path) -> None:
    frame = load_candles(write(tmp_path, "good.csv", [HEADER, *GOOD_ROWS]))
    assert list(frame.columns) == ["symbol", "open", "high", "low", "close", "volume"]
    assert frame.index.name == "timestamp"
    assert isinstance(frame.index, pd.DatetimeIndex)
    assert str(frame.index.tz) == "UTC"
    assert frame.index.dtype == "datetime64[ns, UTC]"
    assert pd.api.types.is_string_dtype(frame["symbol"])
    for name in ("open", "high", "low", "close", "volume"):
        assert frame[name].dtype == np.float64
    assert frame.index[0] == pd.Timestamp("2020-01-01", tz="UTC")
    assert frame["close"].tolist() == [10.5, 11.0, 11.2, 11.5]


def test_naive_is_utc_and_offsets_are_converted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tz.csv",
        [
            HEADER,
            "2020-01-01 00:00,AAA,1,1,1,1,1",
            "2020-01-01T03:00:00+02:00,AAA,1,1,1,1,1",  # 01:00 UTC
            "2020-01-01T02:00:00Z,AAA,1,1,1,1,1",
            "2020-01-01T01:00:00-02:00,AAA,1,1,1,1,1",  # 03:00 UTC
        ],
    )
    frame = load_candles(path)
    assert list(frame.index) == [pd.Timestamp(f"2020-01-01 0{h}:00", tz="UTC") for h in range(4)]


def test_aliases_case_insensitive_and_extra_columns_dropped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "wiki.csv",
        [
            "Ticker,Date,OPEN,High,Low,Close,Volume,Adj Close,Comment",
            "AAA,2020-01-01,10,11,9,10.5,100,1.2,x",
            "AAA,2020-01-02,10.5,12,10,11,200,1.3,y",
        ],
    )
    frame = load_candles(path)
    assert list(frame.columns) == ["symbol", "open", "high", "low", "close", "volume"]
    assert frame["symbol"].tolist() == ["AAA", "AAA"]


@pytest.mark.parametrize("name", ["datetime", "time", "Timestamp"])
@pytest.mark.parametrize("symbol_name", ["instrument", "SYMBOL"])
def test_other_aliases(tmp_path: Path, name: str, symbol_name: str) -> None:
    path = write(tmp_path, "a.csv", [f"{name},{symbol_name},open,high,low,close,volume", GOOD_ROWS[0]])
    assert load_candles(path)["symbol"].iloc[0] == "AAA"


def test_gzip_plain_and_parquet_load_the_same_frame(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    plain = load_candles(write(tmp_path, "c.csv", [HEADER, *GOOD_ROWS]))
    zipped = load_candles(write(tmp_path, "c.csv.gz", [HEADER, *GOOD_ROWS]))
    raw = pd.read_csv(tmp_path / "c.csv")
    raw.to_parquet(tmp_path / "c.parquet")
    raw.to_parquet(tmp_path / "c.pq")
    parquet = load_candles(tmp_path / "c.parquet")
    pq = load_candles(tmp_path / "c.pq")
    pd.testing.assert_frame_equal(plain, zipped)
    pd.testing.assert_frame_equal(plain, parquet)
    pd.testing.assert_frame_equal(plain, pq)


def test_parquet_with_datetime_column_or_index(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    expected = load_candles(write(tmp_path, "c.csv", [HEADER, *GOOD_ROWS]))
    expected.to_parquet(tmp_path / "indexed.parquet")  # tz-aware index
    pd.testing.assert_frame_equal(load_candles(tmp_path / "indexed.parquet"), expected)
    naive = expected.reset_index()
    naive["timestamp"] = naive["timestamp"].dt.tz_localize(None)
    naive.to_parquet(tmp_path / "naive.parquet")
    pd.testing.assert_frame_equal(load_candles(tmp_path / "naive.parquet"), expected)


def test_multi_file_multi_symbol_sorted_by_symbol_then_time(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        "one.csv",
        [HEADER, "2020-01-01,ZZZ,1,2,1,2,1", "2020-01-01,BBB,5,6,4,5,1", "2020-01-02,ZZZ,2,3,2,3,1"],
    )
    second = write(
        tmp_path,
        "two.csv.gz",
        [HEADER, "2019-12-31,ZZZ,1,1,1,1,1", "2020-01-02,AAA,7,8,6,7,1", "2020-01-03,AAA,7,8,6,7,1"],
    )
    frame = load_candles([first, str(second)])
    assert frame["symbol"].tolist() == ["AAA", "AAA", "BBB", "ZZZ", "ZZZ", "ZZZ"]
    zzz = frame[frame["symbol"] == "ZZZ"]
    assert zzz.index.is_monotonic_increasing
    assert zzz.index[0] == pd.Timestamp("2019-12-31", tz="UTC")
    per_symbol = candles_by_symbol(frame)
    assert sorted(per_symbol) == ["AAA", "BBB", "ZZZ"]
    assert list(per_symbol["AAA"].columns) == ["open", "high", "low", "close", "volume"]
    assert len(per_symbol["ZZZ"]) == 3
    assert str(per_symbol["BBB"].index.tz) == "UTC"


def test_interleaved_symbols_in_one_file_are_fine(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mixed.csv",
        [
            HEADER,
            "2020-01-01,BBB,1,1,1,1,1",
            "2020-01-01,AAA,2,2,2,2,1",
            "2020-01-02,BBB,1,1,1,1,1",
            "2020-01-02,AAA,2,2,2,2,1",
        ],
    )
    frame = load_candles(path)
    assert frame["symbol"].tolist() == ["AAA", "AAA", "BBB", "BBB"]
    assert frame["open"].tolist() == [2, 2, 1, 1]


def test_file_without_symbol_column(tmp_path: Path) -> None:
    rows = [row.replace(",AAA", "") for row in GOOD_ROWS]
    path = write(tmp_path, "fx.csv", ["timestamp,open,high,low,close,volume", *rows])
    frame = load_candles(path, symbol="EURUSD")
    assert set(frame["symbol"]) == {"EURUSD"}
    assert len(frame) == 4
    message = load_error(path)
    assert "fx.csv" in message and "no symbol column" in message and "symbol=" in message


def test_symbol_argument_selects_rows_of_a_multi_symbol_file(tmp_path: Path) -> None:
    path = write(tmp_path, "m.csv", [HEADER, *GOOD_ROWS, "2020-01-01,BBB,1,1,1,1,1"])
    assert set(load_candles(path, symbol="BBB")["symbol"]) == {"BBB"}
    message = load_error(path, symbol="CCC")
    assert "m.csv" in message and "CCC" in message and "AAA, BBB" in message


def test_missing_volume_becomes_zero(tmp_path: Path) -> None:
    path = write(tmp_path, "v.csv", [HEADER, GOOD_ROWS[0], "2020-01-02,AAA,10.5,12,10,11,"])
    assert load_candles(path)["volume"].tolist() == [100.0, 0.0]


def test_blank_lines_are_skipped_without_shifting_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path, "blank.csv", [HEADER, GOOD_ROWS[0], "", GOOD_ROWS[1], "2020-01-09,AAA,0,1,1,1,1", ""]
    )
    message = load_error(path)
    assert "blank.csv, line 5:" in message
    ok = write(tmp_path, "ok.csv", [HEADER, GOOD_ROWS[0], "", GOOD_ROWS[1]])
    assert len(load_candles(ok)) == 2


def test_thousands_of_rows_are_validated_fast(tmp_path: Path) -> None:
    frame = generate_candles(200_000, frequency="1m")
    frame.to_csv(tmp_path / "big.csv")
    loaded = load_candles(tmp_path / "big.csv")
    assert len(loaded) == 200_000


# ---------------------------------------------------------------------------------------------
# Validation errors: file, exact line, symbol, timestamp, what and how to fix


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope.csv")
    assert "nope.csv" in message and "not found" in message


def test_directory_is_refused(tmp_path: Path) -> None:
    assert "directory" in load_error(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    message = load_error(tmp_path / "empty.csv")
    assert "empty.csv, line 1:" in message and "empty" in message


def test_empty_gzip_file(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "empty.csv.gz", "wt"):
        pass
    assert "empty.csv.gz, line 1:" in load_error(tmp_path / "empty.csv.gz")


def test_header_without_rows(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "head.csv", [HEADER]))
    assert "head.csv" in message and "no data rows" in message


def test_missing_columns_lists_missing_and_found(tmp_path: Path) -> None:
    path = write(tmp_path, "cols.csv", ["Date,Ticker,Open,High,Price", "2020-01-01,AAA,1,1,1"])
    message = load_error(path)
    assert "cols.csv, line 1:" in message
    assert "missing required column(s) low, close, volume" in message
    assert "found columns: Date, Ticker, Open, High, Price" in message


def test_ambiguous_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "amb.csv", ["Date,Time,symbol,open,high,low,close,volume"])
    message = load_error(path)
    assert "amb.csv, line 1:" in message and "'Date'" in message and "'Time'" in message


def test_ragged_line(tmp_path: Path) -> None:
    path = write(tmp_path, "ragged.csv", [HEADER, GOOD_ROWS[0], GOOD_ROWS[1] + ",99,100"])
    message = load_error(path)
    assert "ragged.csv" in message and "line 3" in message


ERROR_CASES = [
    # (bad row placed as data row 3, i.e. line 4; expected words in the message)
    ("2020-13-45,AAA,1,1,1,1,1", ["cannot parse timestamp '2020-13-45'", "ISO 8601", "symbol AAA"]),
    ("yesterday,AAA,1,1,1,1,1", ["cannot parse timestamp 'yesterday'"]),
    (",AAA,1,1,1,1,1", ["timestamp is missing"]),
    ("2020-01-03,,1,1,1,1,1", ["symbol is empty"]),
    ("2020-01-03,AAA,abc,1,1,1,1", ["open 'abc' is not a number", "symbol AAA", "2020-01-03T00:00:00+00:00"]),
    ("2020-01-03,AAA,1,1,1,,1", ["close is missing", "symbol AAA", "timestamp 2020-01-03T00:00:00+00:00"]),
    ("2020-01-03,AAA,1,1,1,nan,1", ["close is missing"]),
    ("2020-01-03,AAA,0,1,1,1,1", ["open is 0.0", "positive"]),
    ("2020-01-03,AAA,1,1,-2,1,1", ["low is -2.0", "positive"]),
    ("2020-01-03,AAA,1,inf,1,1,1", ["high is inf"]),
    ("2020-01-03,AAA,1,1,1,1,-5", ["volume is -5.0", "zero or positive"]),
    ("2020-01-03,AAA,1,1,2,1.5,1", ["high 1.0 is below low 2.0", "symbol AAA", "2020-01-03"]),
    ("2020-01-02,AAA,1,1,1,1,1", ["duplicate timestamp", "already on line 3", "symbol AAA"]),
    ("2020-01-02T00:00:00+00:00,AAA,1,1,1,1,1", ["duplicate timestamp", "already on line 3"]),
    (
        "2020-01-01T12:00,AAA,1,1,1,1,1",
        ["timestamp 2020-01-01T12:00:00+00:00 of symbol AAA is earlier than", "on line 3", "sort the file"],
    ),
]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize(("bad_row", "words"), ERROR_CASES)
def test_validation_error_names_file_and_exact_line(
    tmp_path: Path, suffix: str, bad_row: str, words: list[str]
) -> None:
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], bad_row, "2020-01-10,AAA,1,1,1,1,1"]
    path = write(tmp_path, "bad" + suffix, [HEADER, *rows])
    message = load_error(path)
    assert f"bad{suffix}, line 4:" in message, message
    for word in words:
        assert word in message, message
    assert issubclass(DataError, UserInputError)


def test_first_offending_row_is_reported(tmp_path: Path) -> None:
    rows = [f"2020-01-{day:02d},AAA,1,1,1,1,1" for day in range(1, 29)]
    rows[9] = rows[9].replace(",1,1,1,1,1", ",1,1,1,0,1")
    rows[20] = rows[20].replace(",1,1,1,1,1", ",1,1,1,0,1")
    assert "line 11:" in load_error(write(tmp_path, "f.csv", [HEADER, *rows]))


def test_unsorted_is_checked_per_symbol(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "per.csv",
        [
            HEADER,
            "2020-01-05,AAA,1,1,1,1,1",
            "2020-01-01,BBB,1,1,1,1,1",  # earlier than AAA's row, but another symbol: fine
            "2020-01-06,AAA,1,1,1,1,1",
            "2020-01-02,BBB,1,1,1,1,1",
            "2020-01-04,AAA,1,1,1,1,1",  # line 6: earlier than AAA's line 4
        ],
    )
    message = load_error(path)
    assert "per.csv, line 6:" in message and "line 4" in message and "symbol AAA" in message


def test_duplicate_far_apart_reports_the_later_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dup.csv",
        [HEADER, "2020-01-01,AAA,1,1,1,1,1", "2020-01-02,AAA,1,1,1,1,1", "2020-01-01,AAA,1,1,1,1,1"],
    )
    message = load_error(path)
    assert "dup.csv, line 4:" in message and "already on line 2" in message


def test_duplicate_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.csv", [HEADER, GOOD_ROWS[0], GOOD_ROWS[1]])
    second = write(tmp_path, "b.csv", [HEADER, "2019-12-31,AAA,1,1,1,1,1", GOOD_ROWS[1]])
    message = load_error([first, second])
    assert "b.csv, line 3:" in message and "a.csv, line 3" in message and "symbol AAA" in message


def test_no_files(tmp_path: Path) -> None:
    assert "no candle files" in load_error([])


def test_parquet_errors_say_row(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    raw = pd.read_csv(write(tmp_path, "c.csv", [HEADER, *GOOD_ROWS]))
    raw.loc[2, "high"] = 1.0  # below low on the third row
    raw.to_parquet(tmp_path / "bad.parquet")
    message = load_error(tmp_path / "bad.parquet")
    assert "bad.parquet, row 3:" in message and "below low" in message


def test_parquet_without_pyarrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    message = load_error(tmp_path / "x.parquet")
    assert "x.parquet" in message and "pip install tradeexecutor[parquet]" in message


def test_corrupt_parquet(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    assert "junk.parquet" in load_error(tmp_path / "junk.parquet")


# ---------------------------------------------------------------------------------------------
# infer_frequency and candles_by_symbol


def test_infer_frequency_uses_the_mode(tmp_path: Path) -> None:
    # Weekdays only: gaps of 1 day (x4) and 3 days (x1).
    rows = ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08", "2020-01-09"]
    frame = load_candles(write(tmp_path, "d.csv", [HEADER] + [f"{r},AAA,1,1,1,1,1" for r in rows]))
    assert infer_frequency(frame) == pd.Timedelta(days=1)
    # Gaps 1, 1, 1, 5, 7, 9, 11 days: the median is 5 days, the mode (the bar size) is 1 day.
    days = np.cumsum([0, 1, 1, 1, 5, 7, 9, 11])
    sparse = pd.DataFrame(index=pd.Timestamp("2020-01-01", tz="UTC") + pd.to_timedelta(days, unit="D"))
    assert infer_frequency(sparse) == pd.Timedelta(days=1)


def test_infer_frequency_ignores_gaps_between_symbols() -> None:
    frame = pd.concat(
        [generate_candles(10, frequency="1h", symbol="A"), generate_candles(5, frequency="1h", symbol="B")]
    )
    assert infer_frequency(frame) == pd.Timedelta(hours=1)
    assert infer_frequency(candles_by_symbol(frame)["B"]) == pd.Timedelta(hours=1)


def test_infer_frequency_needs_two_bars() -> None:
    with pytest.raises(DataError):
        infer_frequency(generate_candles(1))


def test_candles_by_symbol_needs_long_frame() -> None:
    with pytest.raises(DataError, match="missing column"):
        candles_by_symbol(pd.DataFrame({"open": [1.0]}))


# ---------------------------------------------------------------------------------------------
# Round trip and package rules


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bars=st.integers(min_value=1, max_value=300),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    frequency=st.sampled_from(["1s", "1m", "15m", "1h", "4h", "1d", "7d"]),
    start=st.sampled_from(["2020-01-01", "1999-12-31T23:59:00", "2024-02-29 12:00"]),
    start_price=st.floats(min_value=1e-4, max_value=1e6),
    volatility=st.floats(min_value=0.0, max_value=0.05),
    symbol=st.sampled_from(["SYN", "BTC-USD", "0700"]),
)
def test_synthetic_round_trips_through_csv(
    tmp_path_factory: pytest.TempPathFactory,
    bars: int,
    seed: int,
    frequency: str,
    start: str,
    start_price: float,
    volatility: float,
    symbol: str,
) -> None:
    frame = generate_candles(
        bars,
        frequency=frequency,
        start=start,
        seed=seed,
        symbol=symbol,
        start_price=start_price,
        volatility=volatility,
    )
    path = tmp_path_factory.mktemp("roundtrip") / "candles.csv"
    frame.to_csv(path)
    loaded = load_candles(path)
    pd.testing.assert_frame_equal(loaded, frame, check_exact=False, rtol=1e-12)


def test_data_package_imports_only_allowed_layers() -> None:
    allowed = {"tradeexecutor.errors", "tradeexecutor.timeframe", "tradeexecutor.data"}
    package_dir = Path(tradeexecutor.data.__file__).parent
    for source in package_dir.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("tradeexecutor"):
                    assert any(name == a or name.startswith(a + ".") for a in allowed), (source, name)

"""Load OHLCV candle files into one validated long frame, so strategies never see bad bars.

The long frame is the package's one shape for market data::

    index    DatetimeIndex named ``timestamp``, tz-aware UTC (datetime64[ns, UTC])
    symbol   str
    open, high, low, close, volume   float64

sorted by symbol, then timestamp. Every problem found in a file is a :class:`DataError` whose
one-line message names the file, the line (CSV; the header is line 1) or row (Parquet), the
symbol and timestamp, what is wrong and how to fix it. Validation is vectorised: each check
finds the first offending row with numpy, so millions of rows are checked in milliseconds.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tradeexecutor.errors import DataError

__all__ = ["CANDLE_COLUMNS", "candles_by_symbol", "infer_frequency", "load_candles", "read_appended_candles"]

#: Columns of the long frame, in order.
CANDLE_COLUMNS = ("symbol", "open", "high", "low", "close", "volume")

#: Price and volume columns, in order.
_VALUES = ("open", "high", "low", "close", "volume")
_PRICES = ("open", "high", "low", "close")

#: Lower-case header names accepted for each canonical column.
_ALIASES: dict[str, str] = {
    "timestamp": "timestamp",
    "date": "timestamp",
    "datetime": "timestamp",
    "time": "timestamp",
    "ticker": "symbol",
    "symbol": "symbol",
    "instrument": "symbol",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "volume": "volume",
}
_REQUIRED = ("timestamp", "open", "high", "low", "close", "volume")
_PARQUET_SUFFIXES = (".parquet", ".pq")

#: Safe bounds inside datetime64[ns]'s range (1677-09-21 .. 2262-04-11); others cannot be stored.
_EARLIEST = np.datetime64("1678-01-01T00:00:00")
_LATEST = np.datetime64("2262-01-01T00:00:00")

_COLUMN_HINT = (
    "name the columns timestamp, open, high, low, close, volume and optionally symbol "
    "(case-insensitive; date/datetime/time and ticker/instrument are accepted too)"
)


@dataclass
class _Rows:
    """The validated contents of one file, as numpy arrays in file order."""

    #: The file these rows came from.
    path: Path
    #: ``"line"`` for CSV (header is line 1), ``"row"`` for Parquet (first row is row 1).
    label: str
    #: Line or row number of each row, for messages.
    numbers: np.ndarray
    #: Symbol of each row (pandas str Series, default RangeIndex).
    symbols: pd.Series
    #: UTC timestamps as int64 nanoseconds.
    ns: np.ndarray
    #: float64 arrays for open, high, low, close, volume.
    values: dict[str, np.ndarray]

    def where(self, i: int) -> str:
        """``"prices.csv, line 7"`` for row ``i``."""
        return f"{self.path}, {self.label} {int(self.numbers[i])}"


def load_candles(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    symbol: str | None = None,
) -> pd.DataFrame:
    """Read one or more OHLCV files (CSV, gzip CSV, Parquet) into one validated long frame.

    ``symbol`` names the instrument of files that have no symbol column; for files that have
    one it selects only that instrument's rows. Files must be sorted by timestamp within each
    symbol; nothing is silently re-ordered, repaired or dropped, except that a missing volume
    becomes 0.0 and columns other than the OHLCV ones (such as ``Adj Close``) are ignored.

    >>> frame = load_candles("eurusd.csv", symbol="EURUSD")  # doctest: +SKIP
    """
    paths = _as_paths(source)
    if symbol is not None and (not isinstance(symbol, str) or not symbol.strip()):
        raise DataError(f"symbol= must be a non-empty string, got {symbol!r}")
    parts = [_load_file(path, symbol.strip() if symbol else None) for path in paths]
    return _combine(parts)


def candles_by_symbol(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Split a long frame into one OHLCV frame per symbol, because indicators work per instrument."""
    missing = [name for name in CANDLE_COLUMNS if name not in frame.columns]
    if missing:
        raise DataError(
            f"candle frame is missing column(s) {', '.join(missing)}; "
            "pass the long frame returned by load_candles"
        )
    result: dict[str, pd.DataFrame] = {}
    for name, group in frame.groupby("symbol", sort=True):
        result[str(name)] = group.loc[:, list(_VALUES)]
    return result


def infer_frequency(frame: pd.DataFrame) -> pd.Timedelta:
    """The most common positive gap between consecutive bars of a symbol: the bar size.

    The mode rather than the median, because daily stock data has weekend and holiday gaps
    and FX data has weekend gaps. Works on a long frame (gaps are taken within each symbol)
    or on a single-symbol frame without a symbol column.
    """
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError("cannot infer a bar frequency: the frame's index is not a DatetimeIndex")
    stamps = index.as_unit("ns").asi8
    gaps = np.diff(stamps)
    if "symbol" in frame.columns and len(frame) > 1:
        codes, _ = pd.factorize(frame["symbol"])
        gaps = gaps[codes[1:] == codes[:-1]]
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        raise DataError(
            "cannot infer a bar frequency: need at least two bars of one symbol at different times"
        )
    values, counts = np.unique(gaps, return_counts=True)
    return pd.Timedelta(int(values[int(np.argmax(counts))]), unit="ns")


# ---------------------------------------------------------------------------------------------
# Reading


def _as_paths(source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """One path or a sequence of paths, as a non-empty list of Paths."""
    if isinstance(source, (str, os.PathLike)):
        return [Path(source)]
    paths = [Path(item) for item in source]
    if not paths:
        raise DataError("no candle files given; pass a path or a list of paths")
    return paths


def _load_file(path: Path, symbol: str | None) -> _Rows:
    """Read and validate one file."""
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path (current directory is {Path.cwd()})")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; pass the candle files inside it instead")
    if path.suffix.lower() in _PARQUET_SUFFIXES:
        raw, label, first = _read_parquet(path), "row", 1
    else:
        raw, label, first = _read_csv(path), "line", 2
    return _rows_of(path, raw, label, first, symbol)


def _rows_of(path: Path, raw: pd.DataFrame, label: str, first: int, symbol: str | None) -> _Rows:
    """Validate a file's rows (``first``: the line or row number of the first), blank CSV lines dropped."""
    numbers = np.arange(first, first + len(raw), dtype=np.int64)
    if label == "line" and len(raw):
        # Blank lines were kept (as all-missing rows) so that line numbers stay exact; drop them now.
        no_time = raw["timestamp"].isna().to_numpy()
        if no_time.any():
            keep = ~no_time
            keep[no_time] = raw.loc[no_time].notna().to_numpy().any(axis=1)
            raw, numbers = raw.loc[keep], numbers[keep]
    if len(raw) == 0:
        place = "data rows after the header line" if label == "line" else "rows"
        raise DataError(f"{path}: has no {place}; add candles or remove the file from the list")
    raw = raw.reset_index(drop=True)
    rows = _validate(path, label, numbers, raw, symbol)
    if symbol is not None and "symbol" in raw.columns:
        rows = _select_symbol(rows, symbol)
    return rows


def read_appended_candles(path: Path, header: str, lines: str, first_line: int,
                          symbol: str | None = None) -> pd.DataFrame:
    """Candles from complete lines appended to a CSV file since the last read, validated like load_candles.

    ``header`` is the file's first line and ``first_line`` the line number of the first of
    ``lines``, so a bad row is reported at its line in the file. Rows of other symbols than
    ``symbol`` (when given) are left out; the result may be empty.
    """
    mapping = _map_columns(path, next(csv.reader([header])), "line 1")
    text_columns = {orig: "str" for orig, canon in mapping.items() if canon == "symbol"}
    try:
        raw = pd.read_csv(io.StringIO(header + lines), dtype=text_columns, skip_blank_lines=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: the lines from line {first_line} on cannot be parsed as CSV ({_one_line(exc)}); "
                        "every line needs the same number of comma-separated fields as the header") from exc
    raw = raw.loc[:, list(mapping)].rename(columns=mapping)
    rows = _rows_of(path, raw.reset_index(drop=True), "line", first_line, None if "symbol" in raw.columns else symbol)
    if symbol is not None and "symbol" in raw.columns:
        mask = (rows.symbols == symbol).to_numpy()
        rows = _Rows(rows.path, rows.label, rows.numbers[mask], rows.symbols[mask].reset_index(drop=True),
                     rows.ns[mask], {name: column[mask] for name, column in rows.values.items()})
    return _combine([rows])


def _read_csv(path: Path) -> pd.DataFrame:
    """The file's known columns with canonical names; timestamp and symbol as text."""
    compression = "gzip" if path.suffix.lower() == ".gz" else None
    try:
        header = pd.read_csv(path, nrows=0, compression=compression)
    except pd.errors.EmptyDataError:
        raise DataError(
            f"{path}, line 1: file is empty; expected a header such as "
            "timestamp,open,high,low,close,volume followed by one candle per line"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read as CSV ({_one_line(exc)}); check the file format") from exc
    mapping = _map_columns(path, [str(name) for name in header.columns], "line 1")
    # Symbols are read as text so that tickers such as 0700 keep their zeros. Timestamps are not
    # forced to text here: pandas infers text anyway, and forcing it is several times slower.
    # usecols is not used either: selecting afterwards is faster.
    text_columns = {orig: "str" for orig, canon in mapping.items() if canon == "symbol"}
    try:
        raw = pd.read_csv(path, compression=compression, dtype=text_columns, skip_blank_lines=False)
    except (OSError, UnicodeDecodeError, ValueError, gzip.BadGzipFile) as exc:
        # pandas numbers lines from 1 with the header as line 1, as we do.
        raise DataError(
            f"{path}: cannot be parsed as CSV ({_one_line(exc)}); every line needs the same number "
            "of comma-separated fields as the header"
        ) from exc
    return raw.loc[:, list(mapping)].rename(columns=mapping)


def _read_parquet(path: Path) -> pd.DataFrame:
    """The file's known columns with canonical names; fails clearly when pyarrow is missing."""
    try:
        import pyarrow  # noqa: F401  (only to learn whether the optional dependency is there)
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow, which is not installed; "
            "run pip install tradeexecutor[parquet] or convert the file to CSV"
        ) from None
    try:
        raw = pd.read_parquet(path, engine="pyarrow")
    except Exception as exc:  # pyarrow raises its own types; we only re-word them
        raise DataError(f"{path}: cannot be read as Parquet ({_one_line(exc)}); check the file") from exc
    if not isinstance(raw.index, pd.RangeIndex) or raw.index.name is not None:
        raw = raw.reset_index()  # a frame written with its timestamp as the index
    mapping = _map_columns(path, [str(name) for name in raw.columns], "schema")
    raw.columns = [str(name) for name in raw.columns]
    return raw.loc[:, list(mapping)].rename(columns=mapping)


def _map_columns(path: Path, names: list[str], where: str) -> dict[str, str]:
    """Original header name → canonical name for the columns we use; DataError if some are missing."""
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        canon = _ALIASES.get(name.strip().lower())
        if canon is None:
            continue  # Adj Close and any other extra column
        if canon in seen:
            raise DataError(
                f"{path}, {where}: columns {seen[canon]!r} and {name!r} both mean {canon}; "
                "keep only one of them"
            )
        seen[canon] = name
        mapping[name] = canon
    missing = [canon for canon in _REQUIRED if canon not in seen]
    if missing:
        found = ", ".join(names) if names else "none"
        raise DataError(
            f"{path}, {where}: missing required column(s) {', '.join(missing)}; "
            f"found columns: {found}; {_COLUMN_HINT}"
        )
    return mapping


# ---------------------------------------------------------------------------------------------
# Validation


def _validate(path: Path, label: str, numbers: np.ndarray, raw: pd.DataFrame, symbol: str | None) -> _Rows:
    """Check every rule on one file's rows; the first offending row of each rule is reported."""
    count = len(raw)
    rows = _Rows(path, label, numbers, pd.Series(dtype="str"), np.empty(0, np.int64), {})

    # Symbols.
    if "symbol" in raw.columns:
        symbols = raw["symbol"].astype("str").str.strip()
        bad = _first(symbols.isna().to_numpy() | (symbols == "").to_numpy())
        if bad is not None:
            raise DataError(
                f"{rows.where(bad)}: symbol is empty; fill in the symbol of this candle or remove the line"
            )
    elif symbol is not None:
        symbols = pd.Series(symbol, index=pd.RangeIndex(count), dtype="str")
    else:
        raise DataError(
            f"{path}: the file has no symbol column (ticker, symbol or instrument); "
            f"pass symbol= to name its instrument, e.g. load_candles({str(path)!r}, symbol='EURUSD')"
        )
    rows.symbols = symbols

    # Timestamps.
    rows.ns = _parse_timestamps(rows, raw["timestamp"])

    # Prices and volume.
    values: dict[str, np.ndarray] = {}
    for name in _VALUES:
        values[name] = _parse_number(rows, raw[name], name)
    for name in _PRICES:
        column = values[name]
        bad = _first(~(np.isfinite(column) & (column > 0)))
        if bad is not None:
            value = column[bad]
            problem = f"{name} is missing" if np.isnan(value) else f"{name} is {float(value)!r}"
            raise DataError(
                f"{rows.where(bad)}: {problem}{_context(rows, bad)}; prices must be positive "
                "numbers: fix the value or remove the line"
            )
    volume = values["volume"]
    volume[np.isnan(volume)] = 0.0
    bad = _first(~np.isfinite(volume) | (volume < 0))
    if bad is not None:
        raise DataError(
            f"{rows.where(bad)}: volume is {float(volume[bad])!r}{_context(rows, bad)}; volume must be zero "
            "or positive: fix the value or leave it empty for 0"
        )
    bad = _first(values["high"] < values["low"])
    if bad is not None:
        raise DataError(
            f"{rows.where(bad)}: high {float(values['high'][bad])!r} is below low {float(values['low'][bad])!r}"
            f"{_context(rows, bad)}; check whether the columns are swapped or fix the line"
        )
    rows.values = values

    _check_order(rows)
    return rows


def _parse_timestamps(rows: _Rows, column: pd.Series) -> np.ndarray:
    """ISO 8601 text → int64 UTC nanoseconds; naive means UTC, offsets are converted."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        parsed = column
        if getattr(column.dtype, "tz", None) is None:
            parsed = column.dt.tz_localize("UTC")
        else:
            parsed = column.dt.tz_convert("UTC")
    else:
        text = column.astype("str")
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    index = pd.DatetimeIndex(parsed)
    missing = index.isna()
    stamps = index.asi8
    if index.unit != "ns":  # only other units can hold timestamps that nanoseconds cannot
        low = int(_EARLIEST.astype(f"M8[{index.unit}]").view("i8"))
        high = int(_LATEST.astype(f"M8[{index.unit}]").view("i8"))
        bad = _first(missing | (stamps < low) | (stamps > high))
    else:
        bad = _first(missing)
    if bad is not None:
        shown = column.iloc[bad]
        problem = "timestamp is missing" if pd.isna(shown) else f"cannot parse timestamp {str(shown)[:60]!r}"
        if not pd.isna(shown) and not missing[bad]:
            problem = f"timestamp {str(shown)[:60]!r} is outside the years 1678..2261"
        raise DataError(
            f"{rows.where(bad)}: {problem} (symbol {rows.symbols.iloc[bad]}); use ISO 8601 such as "
            "2020-01-31, 2020-01-31 14:00 or 2020-01-31T14:00:00Z (no offset means UTC)"
        )
    return np.asarray(index.as_unit("ns").asi8, dtype=np.int64)


def _parse_number(rows: _Rows, column: pd.Series, name: str) -> np.ndarray:
    """A column as float64; text that is not a number is a DataError, empty cells become NaN."""
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    numbers = pd.to_numeric(column, errors="coerce")
    bad = _first(numbers.isna().to_numpy() & column.notna().to_numpy())
    if bad is not None:
        raise DataError(
            f"{rows.where(bad)}: {name} {str(column.iloc[bad])[:40]!r} is not a number"
            f"{_context(rows, bad)}; write plain decimal numbers such as 123.45"
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)


def _check_order(rows: _Rows) -> None:
    """No duplicate timestamps and strictly ascending timestamps within each symbol, in file order."""
    codes, uniques = pd.factorize(rows.symbols)
    ns = rows.ns
    # Group rows by symbol keeping file order; each must be later than the previous one.
    order = np.arange(len(codes)) if len(uniques) == 1 else np.argsort(codes, kind="stable")
    grouped_codes, grouped_ns = codes[order], ns[order]
    not_later = (grouped_codes[1:] == grouped_codes[:-1]) & (grouped_ns[1:] <= grouped_ns[:-1])
    if not not_later.any():
        return  # the common case: one pass, no further sorting

    # Duplicates first: sort by (symbol, timestamp, position); equal neighbours are duplicates
    # and the later of each pair (in file order) is the one to report.
    dup_order = np.lexsort((np.arange(len(codes)), ns, codes))
    same = (codes[dup_order][1:] == codes[dup_order][:-1]) & (ns[dup_order][1:] == ns[dup_order][:-1])
    if same.any():
        later, earlier = dup_order[1:][same], dup_order[:-1][same]
        pick = int(np.argmin(later))
        i, j = int(later[pick]), int(earlier[pick])
        raise DataError(
            f"{rows.where(i)}: duplicate timestamp{_context(rows, i)}, already on {rows.label} "
            f"{int(rows.numbers[j])}; keep one candle per symbol and timestamp"
        )

    later, previous = order[1:][not_later], order[:-1][not_later]
    pick = int(np.argmin(later))
    i, j = int(later[pick]), int(previous[pick])
    raise DataError(
        f"{rows.where(i)}: timestamp {_iso(ns[i])} of symbol {rows.symbols.iloc[i]} is earlier than "
        f"the previous candle of this symbol ({_iso(ns[j])} on {rows.label} {int(rows.numbers[j])}); "
        "candles must be in ascending time order: sort the file by symbol and timestamp"
    )


def _select_symbol(rows: _Rows, symbol: str) -> _Rows:
    """Only the rows of ``symbol``; DataError listing the file's symbols if there are none."""
    mask = (rows.symbols == symbol).to_numpy()
    if not mask.any():
        found = ", ".join(sorted(rows.symbols.unique().tolist())[:20])
        raise DataError(f"{rows.path}: has no rows for symbol {symbol!r}; its symbols are {found}")
    return _Rows(
        rows.path,
        rows.label,
        rows.numbers[mask],
        rows.symbols[mask].reset_index(drop=True),
        rows.ns[mask],
        {name: column[mask] for name, column in rows.values.items()},
    )


# ---------------------------------------------------------------------------------------------
# Combining


def _combine(parts: list[_Rows]) -> pd.DataFrame:
    """Concatenate validated files, refuse duplicates across files, sort by symbol and time."""
    if len(parts) == 1:
        symbols = parts[0].symbols
    else:
        symbols = pd.concat([part.symbols for part in parts], ignore_index=True)
    ns = np.concatenate([part.ns for part in parts])
    values = {name: np.concatenate([part.values[name] for part in parts]) for name in _VALUES}
    codes, uniques = pd.factorize(symbols, sort=True)
    already_sorted = bool(np.all((codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (ns[1:] > ns[:-1]))))
    order = np.arange(len(ns)) if already_sorted else np.lexsort((ns, codes))
    if not already_sorted:
        ns, codes = ns[order], codes[order]
        values = {name: column[order] for name, column in values.items()}

    if len(parts) > 1:
        dup = (codes[1:] == codes[:-1]) & (ns[1:] == ns[:-1])
        if dup.any():
            k = int(np.argmax(dup))
            origin = np.concatenate([np.full(len(part.ns), n) for n, part in enumerate(parts)])[order]
            offset = np.cumsum([0] + [len(part.ns) for part in parts])
            a, b = (int(order[k]), int(order[k + 1]))
            pa, pb = parts[origin[k]], parts[origin[k + 1]]
            raise DataError(
                f"{pb.where(b - offset[origin[k + 1]])}: duplicate timestamp (symbol {uniques[codes[k]]}, "
                f"timestamp {_iso(ns[k])}), already in {pa.where(a - offset[origin[k]])}; "
                "the files overlap: load each candle only once"
            )

    index = pd.DatetimeIndex(ns.view("M8[ns]"), name="timestamp").tz_localize("UTC")
    if len(uniques) == 1:
        symbol_column = pd.Series(uniques[0], index=index, dtype="str")
    else:
        symbol_column = pd.Series(pd.Categorical.from_codes(codes, categories=uniques), index=index).astype(
            "str"
        )
    return pd.DataFrame({"symbol": symbol_column, **values}, index=index, copy=False)


# ---------------------------------------------------------------------------------------------
# Small helpers


def _first(mask: np.ndarray) -> int | None:
    """Index of the first True in ``mask``, or None."""
    if mask.size == 0 or not mask.any():
        return None
    return int(np.argmax(mask))


def _iso(ns: np.int64 | int) -> str:
    """Nanoseconds since the epoch as an ISO 8601 UTC string."""
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat()


def _context(rows: _Rows, i: int) -> str:
    """`` (symbol X, timestamp T)`` for row ``i``, as far as it is known yet."""
    parts = []
    if len(rows.symbols):
        parts.append(f"symbol {rows.symbols.iloc[i]}")
    if len(rows.ns):
        parts.append(f"timestamp {_iso(rows.ns[i])}")
    return f" ({', '.join(parts)})" if parts else ""


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line, shortened."""
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__

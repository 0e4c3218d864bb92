"""FollowFeed: a price feed whose candles grow, read from lines appended to a candle file as bars close.

The daemon loads the file's candles at start-up as usual; from then on every ``advance()``
delivers the next bar it has not processed, and when it has processed them all it reads the
lines appended to the file since the last read (:class:`CandleFileTail`) and appends them to
the market as new steps (``MarketData.append``). A bar is appended once every instrument has
a candle at its time, or a later candle shows that one will not come. The feed never finishes:
candles keep arriving until the executor is stopped.

With a ``window`` (the exchange's feed in paper and live mode: ``daemon/paper.py``) the market
holds a bounded number of bars: once it holds twice the window, the oldest are dropped down to
the window, as a restart would load them (``MarketData.drop_before``).

The writer appends whole lines in time order (a partial last line waits for its newline); a
line that is bad, out of order or repeated is a DataError naming the file and line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from tradeexecutor.data.candles import read_appended_candles
from tradeexecutor.data.feed import ReplayFeed
from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import DataError

__all__ = ["WINDOW_SLACK", "CandleFileTail", "CandleTail", "FollowFeed"]

#: Rows a windowed market reserves beyond twice its window: the candles of the read that reaches the top.
WINDOW_SLACK = 16


class CandleTail(Protocol):
    """Where a FollowFeed's new candles come from: a growing file here, an exchange's klines in paper mode."""

    @property
    def path(self) -> object:
        """Named in errors about the candles it gave."""
        ...

    def read(self) -> pd.DataFrame | None:
        """The candles that closed since the last read (a long frame indexed by open time), or None."""
        ...


class CandleFileTail:
    """Reads the complete lines appended to a CSV candle file since the last read, in O(new lines)."""

    def __init__(self, path: Path, symbol: str | None = None) -> None:
        if path.suffix.lower() != ".csv":
            raise DataError(f"{path}: only plain .csv candle files can be followed (not gzip or Parquet); "
                            "append the new candles to a .csv file")
        self.path = path
        self.symbol = symbol
        self._offset = 0
        self._header: str | None = None
        self._next_line = 1  # number of the next line to read

    def read(self) -> pd.DataFrame | None:
        """The candles of the lines completed since the last read (a long frame), or None when there are none."""
        try:
            size = self.path.stat().st_size
            if size < self._offset:
                raise DataError(f"{self.path}: the file shrank from {self._offset} to {size} bytes while followed; "
                                "only append candles to it")
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(size - self._offset)
        except OSError as error:
            raise DataError(f"{self.path}: cannot be read ({error.strerror}); keep the followed file in place") from None
        complete = data[: data.rfind(b"\n") + 1]
        if not complete:
            return None
        self._offset += len(complete)
        text = complete.decode("utf-8", errors="replace")
        first_line = self._next_line
        self._next_line += text.count("\n")
        if self._header is None:
            self._header, _, text = text.partition("\n")
            self._header += "\n"
            first_line += 1
        if not text.strip():
            return None
        return read_appended_candles(self.path, self._header, text, first_line, self.symbol)


class FollowFeed(ReplayFeed):
    """Replays the loaded candles, then delivers each candle appended to the followed file (see the module docstring)."""

    def __init__(self, market: MarketData, tails: Sequence[CandleTail], *, start: int = 0,
                 monotonic: Callable[[], float] = time.monotonic, window: int | None = None) -> None:
        super().__init__(market, start=start, monotonic=monotonic)
        self.tails = list(tails)
        if window is not None and window < 1:
            raise ValueError(f"a candle window of {window} bars keeps nothing")
        #: Steps kept in memory (None: all): once the market holds twice as many, the oldest are dropped down to
        #: this many, ending at the last delivered step (``MarketData.drop_before``).
        self.window = window
        if window is not None:
            # The market's top: twice the window, plus the candles of the read that reaches it (a few at most
            # when the executor keeps up). Its columns take that room at start, not while it runs.
            market.reserve(2 * window + WINDOW_SLACK)
        self._held = pd.DataFrame()  # candles of the newest time, waiting for the other instruments'
        self._loaded_until: int | None = int(market.timeline_ns[-1])  # the first read repeats what was loaded

    def __repr__(self) -> str:
        return f"FollowFeed(cursor={self._cursor}, bars={len(self.market)})"

    @property
    def finished(self) -> bool:
        """Never: more candles may be appended."""
        return False

    def advance(self) -> int | None:
        """The next bar not yet processed, reading the appended lines when every loaded bar was; None: no new bar."""
        if self._cursor >= len(self.market) - 1:
            self._pull()
            self._keep_window()
        return super().advance() if self._cursor < len(self.market) - 1 else None

    def _keep_window(self) -> None:
        """Drop the oldest steps once the market holds twice the window: the window's steps up to the last delivered
        one stay, and the candles just read.

        Called only when every step was delivered and the read of new candles returned (a read that
        failed drops nothing: the loop's other jobs must not find the market moved under columns
        the cycle job has not taken again), in the cycle job that asks for the next step: the cursor
        (and ``start``) are rebased here, the loop rebases what it holds by the market's
        ``dropped`` at once, and everything keeping columns takes them again by ``generation``.
        """
        window = self.window
        if window is None or len(self.market) < 2 * window:
            return
        dropped = self.market.drop_before(self._cursor + 1 - window)
        self._cursor -= dropped
        self.start = max(0, self.start - dropped)

    def _pull(self) -> None:
        """Append the complete new times of the candles read since the last pull to the market."""
        frames = [frame for frame in (tail.read() for tail in self.tails) if frame is not None and len(frame)]
        if not frames:
            return
        market = self.market
        fresh = pd.concat([self._held, *frames]) if len(self._held) else pd.concat(frames)
        fresh = fresh[fresh["symbol"].isin(market.symbols)]
        close_ns = fresh.index.asi8 + int(market.frequency.value)
        if self._loaded_until is not None:
            new = close_ns > self._loaded_until
            fresh, close_ns, self._loaded_until = fresh[new], close_ns[new], None
        times = np.unique(close_ns)
        wanted = set(market.symbols)
        for time_ns in times:
            group = fresh[close_ns == time_ns]
            if time_ns == times[-1] and set(group["symbol"]) != wanted:
                self._held = group  # the other instruments' candles of this time may still come
                break
            if len(set(group["symbol"])) != len(group):
                raise DataError(f"{self.tails[0].path}: two candles of one instrument close at "
                                f"{pd.Timestamp(int(time_ns), tz='UTC')}; append each candle once")
            candles = {str(row.symbol): (float(row.open), float(row.high), float(row.low), float(row.close),
                                         float(row.volume)) for row in group.itertuples()}
            market.append(int(time_ns), candles)
        else:
            self._held = pd.DataFrame()

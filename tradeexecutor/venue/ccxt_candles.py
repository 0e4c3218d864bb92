"""CcxtCandleSource: closed candles polled from an exchange's public OHLCV endpoint, with the feed lag measured.

An exchange's klines end with the candle still forming; a strategy must never see it, so only
candles whose close time has passed *by the exchange's clock* (ours corrected with the measured
offset) are delivered, each once. The lag — how long after a candle closed we had it — is the
number an operator watches: a feed that falls behind decides on old prices. The source passes the
same connection as the venue (one ban gate, one rate budget); turning its frames into the
daemon's feed is the daemon's business (daemon/paper.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from tradeexecutor.errors import ConfigError
from tradeexecutor.venue.ccxt_connection import CcxtConnection

__all__ = ["CcxtCandleSource"]


class CcxtCandleSource:
    """Closed candles of some symbols at one timeframe, polled; each candle is delivered once, in time order."""

    def __init__(self, connection: CcxtConnection, symbols: Sequence[str], timeframe: str = "1m", *,
                 quote: str | None = None, limit: int = 500):
        self.connection = connection
        self.symbols = tuple(symbols)
        self.timeframe = timeframe
        self.quote = quote
        self.limit = limit
        #: Open time (ms) of the newest candle delivered, per symbol.
        self._last: dict[str, int] = {}
        self._markets: dict[str, str] = {}
        #: Seconds between the newest candle's close and the moment it was received (exchange clock), or None.
        self.lag_seconds: float | None = None

    @property
    def timeframe_ms(self) -> int:
        return int(self.connection.exchange.parse_timeframe(self.timeframe) * 1000)

    def _market(self, symbol: str) -> str:
        if symbol not in self._markets:
            found = self.connection.market(symbol, self.quote)
            several = self.connection.markets_of(symbol) if found is None and self.quote is None else []
            if len(several) > 1:
                raise ConfigError(f"{symbol} is no market of {self.connection.name}'s, and several trade it "
                                  f"({', '.join(several)}); name one in full, such as {several[0]}")
            if found is None:
                raise ConfigError(f"{self.connection.name} does not list {symbol}; name a market it lists, such as "
                                  f"{next(iter(self.connection.exchange.markets or {'BTC/USDT': 0}))}")
            self._markets[symbol] = found
        return self._markets[symbol]

    def due(self) -> bool:
        """True when a candle not yet delivered should have closed by the exchange's clock (always before the first
        poll): a poll before then would only cost a request."""
        if len(self._last) < len(self.symbols):
            return True
        return self.connection.now_ms() >= min(self._last.values()) + 2 * self.timeframe_ms

    def poll(self) -> pd.DataFrame | None:
        """The candles that closed since the last poll (the long frame: ``timestamp`` = open time, UTC), or None.

        TemporaryError when the exchange cannot be reached; the candles of the symbols asked before
        the failure are asked for again at the next poll, so none is lost.
        """
        self.connection.connect()
        step = self.timeframe_ms
        rows: list[tuple[int, str, float, float, float, float, float]] = []
        newest_close: int | None = None
        reached: dict[str, int] = {}  # taken over only once every symbol answered: a failure loses no candle
        for symbol in self.symbols:
            market = self._market(symbol)
            last = self._last.get(symbol)
            candles = self.connection.call(self.connection.exchange.fetch_ohlcv, market, self.timeframe,
                                           None if last is None else last + step, self.limit)
            now = self.connection.now_ms()
            for open_ms, open_, high, low, close, volume in candles:
                if (last is not None and open_ms <= last) or open_ms + step > now:
                    continue  # delivered before, or still forming
                rows.append((int(open_ms), symbol, float(open_), float(high), float(low), float(close),
                             float(volume or 0.0)))
                reached[symbol] = last = int(open_ms)
                newest_close = max(newest_close or 0, int(open_ms) + step)
        self._last.update(reached)
        if not rows:
            return None
        assert newest_close is not None
        self.lag_seconds = (self.connection.now_ms() - newest_close) / 1000
        frame = pd.DataFrame(rows, columns=["timestamp", "symbol", "open", "high", "low", "close", "volume"])
        # In nanoseconds, as every other candle frame: readers take the index's integers as ns.
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True).astype("datetime64[ns, UTC]")
        return frame.sort_values(["symbol", "timestamp"]).set_index("timestamp")

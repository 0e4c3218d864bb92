"""ExchangeSimulator: the one object holding the simulated exchange's state, behind one lock.

waitress serves requests on several threads; every handler takes :attr:`ExchangeSimulator.lock`
for the whole of its work on the state (prices, orders, balances, faults, the weight limiter and
the request log), and never while it waits (latency and hang faults), so one slow request does
not hold up the others. Time comes from the injected ``clock`` (seconds since the epoch), so
tests move it by hand; a clock-skew fault shifts what the exchange believes the time is.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from tradeexecutor.errors import ConfigError
from tradeexecutor.exchange_sim.accounts import Accounts
from tradeexecutor.exchange_sim.config import SimConfig
from tradeexecutor.exchange_sim.faults import FaultBook
from tradeexecutor.exchange_sim.matching import Engine
from tradeexecutor.exchange_sim.prices import BarSeries
from tradeexecutor.exchange_sim.ratelimit import WeightLimiter

#: Where the simulator reads the time: seconds since the epoch, like time.time.
Clock = Callable[[], float]


class ExchangeSimulator:
    """A simulated Binance spot exchange for one account."""

    def __init__(self, config: SimConfig, series: Mapping[str, BarSeries], *, clock: Clock = time.time):
        missing = [market.symbol for market in config.markets if market.symbol not in series]
        if missing:
            raise ConfigError(f"no prices for market(s) {', '.join(missing)}")
        #: The settings it was built with.
        self.config = config
        #: Held for every read or change of the state below.
        self.lock = threading.RLock()
        self._clock = clock
        #: Balances of the one account.
        self.accounts = Accounts(config.balances, config.assets)
        #: Orders, trades and the price paths.
        self.engine = Engine(config, series, self.accounts)
        #: Injected faults.
        self.faults = FaultBook()
        #: Request weight per IP.
        self.limiter = WeightLimiter(config.weight_limit, config.ban_after, config.ban_seconds)
        #: The latest API requests, newest last (method, path, status, code; never parameters).
        self.requests: deque[dict[str, Any]] = deque(maxlen=config.request_log_size)
        self._closing = threading.Event()

    def clock_ms(self) -> int:
        """The injected clock in ms, without skew (fault lifetimes run on it)."""
        return int(self._clock() * 1000)

    def now_ms(self) -> int:
        """What the exchange believes the time is (ms): the clock plus any skew fault."""
        clock = self.clock_ms()
        with self.lock:
            return clock + self.faults.skew_ms(clock)

    def reset(self) -> None:
        """Forget orders, trades, faults, bans and requests, and restore the starting balances (prices go on)."""
        with self.lock:
            self.accounts.reset(self.config.balances, self.config.assets)
            self.engine.reset()
            self.faults.clear()
            self.limiter.reset()
            self.requests.clear()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (latency and hang faults); returns early, True, once the simulator closes."""
        return self._closing.wait(seconds)

    def close(self) -> None:
        """Wake every request still waiting in a fault, so the server can stop at once."""
        self._closing.set()

    @property
    def closing(self) -> bool:
        """True after close()."""
        return self._closing.is_set()

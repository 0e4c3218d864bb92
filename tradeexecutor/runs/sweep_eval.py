"""Evaluate one sweep point wherever it runs — here, in a pool process or on a Dask worker — from data sent there once.

A sweep ships one :class:`SweepData` to each worker: the pinned strategy *source* (a worker on
another machine needs no copy of the file), the base spec, the market data of every bar frequency
the points need, and the windows every point is summarised over. :func:`evaluate` then backtests
one point and returns its :class:`PointResult` — the row the sweep persists and ranks:

- ``summary``: the whole period's :class:`~tradeexecutor.stats.Summary`;
- ``windows``: the same figures for each in-sample / out-of-sample window (runs.walkforward);
- ``fingerprints``: ``config`` (the point's spec, as the run it would become records it),
  ``data`` (a hash of the market arrays *this worker* backtested on), ``code`` (the strategy's
  sha256), ``package_version`` and ``result`` (a hash of the equity curve and every trade) — equal
  fingerprints on two machines mean the same inputs gave the same outputs, bit for bit.

Every point is a fresh module load and a fresh engine, so a point's result never depends on
which worker ran it or what ran there before. A point that fails (a strategy exception, a
symbol missing from the data) is a row with status ``error``, never the sweep's end.

:data:`LOADS` counts, per process, how many times each sweep's data arrived here (it counts
unpickling), which is how the tests show that a cluster received the data once per worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tradeexecutor import __version__
from tradeexecutor.backtest.session import Session, run_session
from tradeexecutor.config import EngineConfig
from tradeexecutor.data.market import MarketData
from tradeexecutor.errors import TradeExecutorError
from tradeexecutor.runs.spec import RunSpec
from tradeexecutor.state import State
from tradeexecutor.stats import summarise_windows
from tradeexecutor.strategy.failure import strategy_failure
from tradeexecutor.strategy.loader import LoadedStrategy, load_strategy_source, strategy_version

__all__ = ["LOADS", "PointResult", "SweepData", "Window", "evaluate", "load_counts", "market_fingerprint",
           "result_fingerprint"]

#: Per process: sweep token → how many times that sweep's data was unpickled here.
LOADS: Counter[str] = Counter()

#: Statuses of a row: complete, error (the point itself failed) or lost (its worker died every time it ran it).
POINT_STATUSES = ("complete", "error", "lost")


@dataclass(frozen=True)
class Window:
    """A stretch of the backtest every point is also summarised over (inclusive bar close times, epoch ms)."""

    name: str
    first_ms: int
    last_ms: int


@dataclass(frozen=True)
class PointResult:
    """One evaluated point: its values, its figures for the whole period and each window, and its fingerprints."""

    #: Position of the point in the sweep (grid order, or trial number).
    index: int
    #: The swept parameter values.
    values: dict[str, Any]
    #: complete, error or lost (POINT_STATUSES).
    status: str
    #: Summary.to_dict() over the whole period (None unless complete).
    summary: dict[str, Any] | None
    #: Window name → Summary.to_dict() over that window.
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: config, data, code, package_version, result (module docstring).
    fingerprints: dict[str, str] = field(default_factory=dict)
    #: One-line error, when the status is not complete.
    error: str | None = None
    #: Seconds the point took where it ran.
    seconds: float = 0.0
    #: Which process ran it (host:pid).
    worker: str = ""
    #: The full run made for this point (reports for the best N), when there is one.
    run_id: str = ""

    def figures(self, window: str | None) -> dict[str, Any] | None:
        """The summary over ``window`` (None: the whole period)."""
        if window is None:
            return self.summary
        return self.windows.get(window)

    def to_json(self) -> dict[str, Any]:
        """The row as one JSON object (what points.jsonl holds)."""
        return {"index": self.index, "values": self.values, "status": self.status, "summary": self.summary,
                "windows": self.windows, "fingerprints": self.fingerprints, "error": self.error,
                "seconds": round(self.seconds, 6), "worker": self.worker}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PointResult:
        """Read a row written by :meth:`to_json`; KeyError or TypeError when it is not one."""
        status = str(data["status"])
        if status not in POINT_STATUSES or not isinstance(data["values"], dict):
            raise TypeError("not a point row")
        return cls(index=int(data["index"]), values=dict(data["values"]), status=status, summary=data["summary"],
                   windows=dict(data.get("windows") or {}), fingerprints=dict(data.get("fingerprints") or {}),
                   error=data.get("error"), seconds=float(data.get("seconds") or 0.0),
                   worker=str(data.get("worker") or ""))

    def with_run(self, run_id: str) -> PointResult:
        return replace(self, run_id=run_id)


class SweepData:
    """Everything a worker needs for every point of one sweep, sent to each worker once."""

    def __init__(self, *, token: str, spec: RunSpec, strategy_source: str, markets: Mapping[str, MarketData],
                 windows: tuple[Window, ...], available: Mapping[str, Mapping[str, str | None]] | None = None) -> None:
        #: Unique per sweep execution: what LOADS counts.
        self.token = token
        #: The sweep's spec (its strategy values are the base every point overrides).
        self.spec = spec
        self.strategy_source = strategy_source
        #: Bar frequency key (:func:`frequency_key`) → market data.
        self.markets = dict(markets)
        #: Bar frequency key → every symbol the data holds, with its asset type (``DataSelection.available``):
        #: what a full run checks its strategy against, as a fresh session would.
        self.available = {key: dict(symbols) for key, symbols in (available or {}).items()}
        self.windows = windows
        self.engine: EngineConfig = spec.engine_config()
        #: Strategy values (canonical_values of the whole strategy section) whose backtest in this sweep passed
        #: the indicators' lookahead check → that backtest's result_fingerprint: a full run of one of them need not
        #: check again, as long as it comes out the same (:meth:`lookahead_checked`).
        self.checked: dict[str, str] = {}
        self._prices: dict[str, dict[str, Any]] = {}
        self._fingerprint: str | None = None
        self._version: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_prices"] = {}  # rebuilt where needed, cheaper than sending
        state["_fingerprint"] = None  # computed where the data lands: that is the proof it arrived intact
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        LOADS[self.token] += 1

    def market_for(self, bar_frequency: Any) -> MarketData:
        """The market a strategy with this bar frequency reads."""
        key = frequency_key(bar_frequency)
        if key not in self.markets:
            raise TradeExecutorError(f"no market data prepared for bar frequency {key or 'native'}")
        return self.markets[key]

    def prices(self, key: str) -> dict[str, Any]:
        """Close prices per symbol of one market (the buy-and-hold benchmark), built once per process."""
        if key not in self._prices:
            market = self.markets[key]
            self._prices[key] = {symbol: market.close_series(symbol) for symbol in market.symbols}
        return self._prices[key]

    def session(self, strategy: LoadedStrategy) -> Session:
        """A point's session: its strategy on the market of its bar frequency, opened once for the whole sweep."""
        key = frequency_key(strategy.bar_frequency)
        return Session(strategy=strategy, market=self.market_for(strategy.bar_frequency), prices=self.prices(key))

    def note_checked(self, values: Mapping[str, Any], result: str) -> None:
        """The point ``values`` completed in this sweep with the result fingerprint ``result``, so its backtest passed
        the lookahead check (when the sweep's engine makes it): remember its strategy values and that result."""
        if self.engine.check_indicator_lookahead and result:
            self.checked[canonical_values({**self.spec.strategy, **values})] = result

    def lookahead_checked(self, strategy: LoadedStrategy, values: Mapping[str, Any]) -> str | None:
        """The result fingerprint of the checked backtest when ``strategy``, loaded with the strategy ``values``, is a
        point of this sweep already checked for lookahead: the same code (its sha256) and the same values (so the
        same parameters, indicators and market: the check would find what it found then); else None.

        A backtest that skips the check must come out with that fingerprint: a strategy whose ``indicators()``
        keeps state between calls can trade differently when the check (which calls it again on shorter slices)
        does not run — such a backtest is made again with the check (:func:`checked_again`)."""
        if self._version is None:
            self._version = strategy_version(self.strategy_source)
        try:
            key = canonical_values(values)
        except (TypeError, ValueError):  # a value JSON cannot hold: not one of the sweep's
            return None
        return self.checked.get(key) if strategy.version == self._version else None

    def fingerprint(self) -> str:
        """:func:`market_fingerprint` of the markets as this process holds them (computed once here)."""
        if self._fingerprint is None:
            self._fingerprint = market_fingerprint(self.markets)
        return self._fingerprint


def frequency_key(bar_frequency: Any) -> str:
    """A bar frequency (timedelta or None) as a dictionary key: seconds as text, "" for the data's own."""
    if bar_frequency is None:
        return ""
    return f"{bar_frequency.total_seconds():g}s"


def market_fingerprint(markets: Mapping[str, MarketData]) -> str:
    """sha256 over every market's timeline and every symbol's OHLCV arrays, in a fixed order."""
    digest = hashlib.sha256()
    for key in sorted(markets):
        market = markets[key]
        digest.update(f"market {key} {market.frequency.value}\n".encode())
        digest.update(np.ascontiguousarray(market.timeline_ns).tobytes())
        for symbol in sorted(market.symbols):
            bars = market.bars[symbol]
            digest.update(f"symbol {symbol} {bars.asset_type}\n".encode())
            for column in (bars.open_time_ns, bars.open, bars.high, bars.low, bars.close, bars.volume):
                digest.update(np.ascontiguousarray(column).tobytes())
    return digest.hexdigest()


def result_fingerprint(state: State) -> str:
    """sha256 over the equity curve (times and values) and every order's outcome, in order id order."""
    digest = hashlib.sha256()
    valuations = state.valuations
    digest.update(np.asarray(valuations.timestamp, dtype=np.int64).tobytes())
    digest.update(np.asarray(valuations.equity, dtype=np.float64).tobytes())
    orders = sorted(state.portfolio.all_orders(), key=lambda o: o.id)
    numbers = [(o.id, o.position_id, o.quantity or 0.0, o.closed_at.timestamp() if o.closed_at else -1.0,
                o.signed_filled_quantity, o.average_fill_price if o.fills else -1.0, o.fees)
               for o in orders]
    digest.update(np.asarray(numbers, dtype=np.float64).tobytes())
    digest.update("\n".join(f"{o.status.value}|{o.purpose.value}|{o.status_reason}" for o in orders).encode())
    return digest.hexdigest()


def worker_name() -> str:
    """host:pid of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def evaluate(data: SweepData, index: int, values: Mapping[str, Any]) -> PointResult:
    """Backtest one point and summarise it over the whole period and every window; never raises for the point's own failure."""
    started = time.perf_counter()
    point = dict(values)
    try:
        strategy = load_strategy_source(data.strategy_source, data.spec.strategy_file, {**data.spec.strategy, **point})
        session = data.session(strategy)
        bounds = [(w.first_ms, w.last_ms) for w in data.windows]
        outcome = run_session(session, data.engine, summarise=lambda state, run: summarise_windows(
            state, bounds, benchmark_prices=dict(run.close_prices())))
        result, (summary, parts) = outcome.backtest, outcome.summary
        windows = {window.name: part.to_dict() for window, part in zip(data.windows, parts, strict=True)}
        fingerprints = {
            "config": data.spec.with_parameters(point).config_fingerprint(),
            "data": data.fingerprint(),
            "code": strategy.version,
            "package_version": __version__,
            "result": result_fingerprint(result.state),
        }
        return PointResult(index, point, "complete", summary.to_dict(), windows, fingerprints,
                           seconds=time.perf_counter() - started, worker=worker_name())
    except Exception as exc:  # noqa: BLE001 - one failed point must not stop the sweep
        return PointResult(index, point, "error", None, error=one_line(exc), seconds=time.perf_counter() - started,
                           worker=worker_name())


def checked_again(state: State, expected: str | None) -> bool:
    """True when a backtest that skipped the lookahead check, expected to come out as its checked point did
    (``expected``: that result fingerprint; None when the check was not skipped), came out otherwise — and must
    be made again with the check, so it is what ``runs create`` + ``start`` makes."""
    return expected is not None and result_fingerprint(state) != expected


def equity_curve(data: SweepData, point: PointResult) -> tuple[np.ndarray, np.ndarray]:
    """The point's valuation times (epoch ms) and equity, backtested again (for the walk-forward curve).

    ``point`` completed in this sweep — its backtest passed the lookahead check on this code and
    market — so the check is not made again (it only refuses), unless the backtest does not come out
    as the point's (an ``indicators()`` with state: :meth:`SweepData.lookahead_checked`): then it is.
    """
    values = {**data.spec.strategy, **point.values}
    strategy = load_strategy_source(data.strategy_source, data.spec.strategy_file, values)
    expected = point.fingerprints.get("result") if data.engine.check_indicator_lookahead else None
    engine = replace(data.engine, check_indicator_lookahead=False) if expected else data.engine
    result = run_session(data.session(strategy), engine, summarise=lambda state, run: None).backtest
    if checked_again(result.state, expected):
        strategy = load_strategy_source(data.strategy_source, data.spec.strategy_file, values)
        result = run_session(data.session(strategy), data.engine, summarise=lambda state, run: None).backtest
    return valuation_curve(result.state)


def valuation_curve(state: State) -> tuple[np.ndarray, np.ndarray]:
    """A backtest's valuation times (epoch ms) and equity: what :func:`equity_curve` returns for its point."""
    valuations = state.valuations
    return np.asarray(valuations.timestamp, dtype=np.int64), np.asarray(valuations.equity, dtype=np.float64)


def one_line(exc: BaseException) -> str:
    """An exception as one short line: where the strategy failed when it did (file, line, cycle), else the
    exception (our errors without their class name)."""
    failure = strategy_failure(exc)
    if failure is not None:
        return failure.summary[:500]
    kind = "" if isinstance(exc, TradeExecutorError) else f"{type(exc).__name__}: "
    return " ".join(f"{kind}{exc}".split())[:500]


def load_counts() -> dict[str, int]:
    """LOADS of this process, for a Dask ``client.run`` (how many times each sweep's data arrived)."""
    return dict(LOADS)


def canonical_values(values: Mapping[str, Any]) -> str:
    """A point's values as canonical JSON: the key that identifies a point across resumes."""
    return json.dumps(dict(values), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

"""A replay executor built in-process on a fake clock, whose ticks the test advances: the publication tests' factory.

The daemon replays ``data`` (a candles CSV) two minutes of replay a bar from its first bar, publishing
every job (``publish_seconds`` short, no watchdog, chart, trigger or revaluation jobs), so each
``tickers[0].advance(120.0)`` then ``daemon.loop.run_pending()`` is one cycle and one publication.
"""

from __future__ import annotations

from pathlib import Path

from tradeexecutor.daemon import CommandQueue, Daemon, FakeClock, InMemoryTicker, build_daemon
from tradeexecutor.settings import DaemonConfig, FeedConfig


def replay_daemon(strategy: Path, state_dir: Path, data: Path, clock: FakeClock, *, replay_seconds: float = 120.0,
                  publish_seconds: float = 0.5,
                  params: dict[str, str] | None = None) -> tuple[Daemon, list[InMemoryTicker]]:
    """The daemon (jobs not started) and the list its ticker lands in once :meth:`Daemon.start_jobs` made it."""
    tickers: list[InMemoryTicker] = []

    def factory(commands: CommandQueue) -> InMemoryTicker:
        tickers.append(InMemoryTicker(commands, clock))
        return tickers[-1]

    config = DaemonConfig(strategy_file=strategy, state_dir=state_dir, watchdog_seconds=0, chart_seconds=0,
                          publish_seconds=publish_seconds, trigger_seconds=0, revaluation_seconds=0,
                          params=params or {},
                          feed=FeedConfig(data=(str(data),), replay_seconds=replay_seconds, replay_start="first"))
    return build_daemon(config, clock=clock, ticker_factory=factory, environ={}), tickers

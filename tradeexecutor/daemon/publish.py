"""Keeps RunState current after each job: counters, summary statistics, charts, feed lag and next cycle.

Called only on the loop's worker thread. Work is done once per job, never per request: the
summary is updated after every cycle and the webhook serves stored bytes. A job's work does not
grow with the run's history: the summary statistics are a RunningSummary that folds in only the
new valuation rows and closed positions, buy-and-hold is two binary searches a symbol, and the
charts get deltas (below).

Charts are drawn by a :class:`~tradeexecutor.visual.renderer.ChartRenderer` in a process of its
own (drawing eight images costs about 0.6 s of Python, which on the loop's thread made 1-second
cycles start seconds late). After the first cycle, and then at most every ``chart_seconds``
while the renderer is idle, the loop sends it only what changed (a
:class:`~tradeexecutor.visual.series.ChartDelta`) and goes on; the renderer's thread stores
the images in RunState, which bumps ``visualisation_updated_at`` (the dashboard's cue to reload
the chart). A renderer that crashes or hangs marks the charts stale (``visualisation_stale``)
and never stops the loop. At the end of a run the loop waits, bounded, for the final charts.

Prices given to the summary and the charts stop at the bar being processed, so nothing after
the cycle time ever shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from tradeexecutor.daemon.clock import Clock
from tradeexecutor.data.feed import PriceFeed
from tradeexecutor.data.market import CloseColumns
from tradeexecutor.layout import RunFiles
from tradeexecutor.runstate import RunState, image_key
from tradeexecutor.runstate.figures import FigureCounter
from tradeexecutor.spill import Spill, SpillDamagedError
from tradeexecutor.state import State, valuation
from tradeexecutor.stats.formatting import key_figures
from tradeexecutor.stats.running import RunningSummary
from tradeexecutor.stats.trades_csv import TradesCsv
from tradeexecutor.store.publish import SPILL_FILES, PublicFile, PublishCache, public_files, write_public_files
from tradeexecutor.visual.renderer import ChartRenderer
from tradeexecutor.visual.series import DeltaFeed

__all__ = ["CHART_TIME_SHARE", "DISK_SECONDS", "PUBLISH_TIME_SHARE", "Publisher", "publication_due"]


logger = logging.getLogger("tradeexecutor.daemon")


class Publisher:
    """Writes what the loop did into RunState; the loop's only RunState writer besides crash records."""

    def __init__(self, runstate: RunState, feed: PriceFeed, clock: Clock, *,
                 chart_seconds: float, chart_timeout: float, publish_seconds: float,
                 next_cycle_at: Callable[[], datetime | None] = lambda: None,
                 wake: Callable[[], object] | None = None,
                 extra: dict[str, Any] | None = None, files: RunFiles | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        self.runstate = runstate
        self.feed = feed
        self.clock = clock
        self.chart_seconds = chart_seconds
        self.next_cycle_at = next_cycle_at
        #: Draws the charts in its own process (started by start()); None when chart_seconds is 0.
        self.renderer = ChartRenderer(self._images_drawn, on_failure=self._charts_stale, on_idle=self._renderer_idle,
                                      timeout=chart_timeout, restart_seconds=max(1.0, 3 * chart_seconds),
                                      ) if chart_seconds > 0 else None
        #: Asks the loop, from the renderer's thread, to run send_charts (queues a charts job).
        self.wake = wake
        #: Bar close times in epoch ms and closes for the charts, extended as the market grows (chart_prices).
        self._closes = CloseColumns(feed.market)
        self._charts = DeltaFeed(self._closes)
        self._generation = feed.market.generation
        self._dropped_bars = dict(feed.market.dropped_bars)  # as the chart feed knows them (a live feed's window)
        #: The summary statistics, updated with each job's new rows and positions only.
        self._summary = RunningSummary()
        self._last_chart: float | None = None
        self._charted: tuple[Any, ...] | None = None  # what the last delta covered (see _chart_mark)
        self._waiting = False  # charts were due while the renderer was busy
        self._extra = dict(extra or {})
        #: Where the public snapshot files go (None: not published, as in unit tests).
        self.files = files
        #: Least seconds between snapshot publications after cycles (each serialises the whole state).
        self.publish_seconds = publish_seconds
        self._metadata = dict(metadata or {})
        self._last_publish: float | None = None
        self._publish_cost = 0.0  # wall seconds the last publication took
        self._figures = FigureCounter()
        #: Kept parts of the public files (state.json and its gzip, positions.json), and orders.csv with the
        #: lines of finished positions kept between publications; closed history in spill files.
        self._published, self._orders_csv = publication_caches(files)
        #: Writes the public files to disk off the loop's thread (at most one write at a time).
        self._writer: threading.Thread | None = None
        self._last_write: float | None = None
        self._write_cost = 0.0  # wall seconds the last write to disk took
        #: Name -> ETag of each public file as last written to disk: a write skips the files that did not change.
        self._written: dict[str, str] = {}

    # -- after each job ---------------------------------------------------------------------

    def cycle_done(self, state: State, step: int, cycle_time: datetime | None, *,
                   duration: float | None = None, lag: float | None = None) -> None:
        """After the cycle job: cycle counter, timing, summary, figures, maybe charts and files, progress."""
        now = self.clock.now()
        if cycle_time is not None:
            self.runstate.update_complete_cycle(cycle_time, now)
        else:
            self.runstate.bump_refreshed(now)
        summary = _json_safe(self._summary.summary(state, self._benchmark(step)).to_dict())
        self.runstate.update(summary_statistics=summary, last_cycle_duration=duration, last_cycle_lag=lag)
        self.send_charts(state)
        self.progress(state)
        if self._publish_due():
            self.files_now(state, summary)

    def begin(self, state: State) -> None:
        """When the loop starts: the summary and the files of the state as loaded, so /state serves them from memory.

        A restarted executor publishes the state it committed before it stopped: the same bytes
        and, their pieces cut the same way, the same ETags, so clients' copies stay valid. It does
        not count against ``publish_seconds``: the first cycle's result is published at once.
        """
        self._history_pass(state)
        summary = _json_safe(self._summary.summary(state, self._benchmark(self.feed.cursor)).to_dict())
        self.runstate.update(summary_statistics=summary)
        self.files_now(state, summary)
        self._last_publish = None

    def _history_pass(self, state: State) -> None:
        """The start-up's one pass over the valuation history, a block at a time, each block to every reader.

        A restarted executor's summary, state.json and first chart delta each take every valuation row;
        a running executor's older rows are only in its ledger (``TailColumn``), so taken reader after
        reader they would be read back three times, and whole they would be held at once. Here each
        block goes to the summary's fold, state.json's column blocks and the chart delta's rows in turn:
        the ledger's ``OlderRows`` reads a block once for the three (it keeps a few blocks' columns) and
        nothing holds more than a few blocks but the delta's own rows. What each reader makes is what
        it makes taking them at its first call (the same blocks).
        """
        valuations = state.valuations
        columns = {name: getattr(valuations, name) for name in ("timestamp", "equity", "cash", "exposure")}
        block = valuation.ROWS_BLOCK
        rows = len(valuations)
        for upto in range(block, rows - 1 + block, block):
            self._summary.fold(state, upto)
            if self.files is not None:
                self._published.fragments.keep_blocks(columns, upto)
            if self.renderer is not None:
                self._charts.take(state, upto)

    def final(self, state: State) -> None:
        """At the end of a run: figures and files, written to disk now, whatever the throttles say."""
        self.progress(state)
        self.files_now(state, self.runstate.snapshot().summary_statistics or {}, write=True)

    def files_now(self, state: State, summary: dict[str, Any], *, write: bool = False) -> None:
        """Publish state.json(.gz), orders.csv, positions.json and metadata.json for the webhook.

        The files are published in memory (``RunState.public``), at the cost of what changed: the
        webhook serves them from there. They go to ``public/`` on disk off the loop's thread when a
        write is due (:data:`DISK_SECONDS`, stretched like publications by the write's cost), and
        at once, on this thread, with ``write`` (the end of a run).
        """
        if self.files is None:
            return
        self._last_publish = self.clock.monotonic()
        started = time.perf_counter()
        snapshot = self.runstate.snapshot()
        metadata = {
            **self._metadata,
            "status": str(snapshot.status),
            "started_at": snapshot.started_at,
            "cycles": snapshot.cycles,
            "completed_cycle": snapshot.completed_cycle,
            "key_figures": key_figures(summary),
        }
        documents = public_files(state, self.files, metadata=metadata, orders_csv=self._orders_csv.parts,
                                 now=self.clock.now(), cache=self._published)
        self.runstate.public.replace(documents)
        self._publish_cost = time.perf_counter() - started
        if write:
            self.wait_written()
            # A damaged spill: its owner now encodes afresh. Each failed write finds one damaged spill and gives it
            # up, so retrying once per spill file ends with every file of the final state written.
            for _ in range(len(SPILL_FILES)):
                if self._write(documents):
                    break
                documents = public_files(state, self.files, metadata=metadata, orders_csv=self._orders_csv.parts,
                                         now=self.clock.now(), cache=self._published)
                self.runstate.public.replace(documents)
            else:
                self._write(documents)
        elif self._write_due():
            self._writer = threading.Thread(target=self._write, args=(documents,), name="public-files", daemon=True)
            self._writer.start()

    def _write_due(self) -> bool:
        if self._writer is not None and self._writer.is_alive():
            return False
        return publication_due(self._last_write, self.clock.monotonic(), DISK_SECONDS, self._write_cost)

    def _write(self, documents: dict[str, PublicFile]) -> bool:
        """Write one publication's files to ``public/`` (the writer thread, or the loop's at the end); False when a
        spill range was found damaged (the owner encodes those rows afresh at the next publication)."""
        assert self.files is not None
        self._last_write = self.clock.monotonic()
        started = time.perf_counter()
        intact = True
        try:
            write_public_files(self.files, documents, self._written)
        except OSError as exc:  # the webhook still serves them from memory; the next write tries again
            logger.warning("writing the public files to %s failed: %s", self.files.public, exc)
        except SpillDamagedError as exc:  # the files on disk stay as they were; the owner encodes those rows afresh next time
            logger.warning("writing the public files to %s failed: %s", self.files.public, exc)
            intact = False
        self._write_cost = time.perf_counter() - started
        return intact

    def wait_written(self) -> None:
        """Wait for a write of the public files to disk in progress (bounded by the disk itself)."""
        writer = self._writer
        if writer is not None:
            writer.join()

    def _publish_due(self) -> bool:
        if self.files is None:
            return False
        return publication_due(self._last_publish, self.clock.monotonic(), self.publish_seconds, self._publish_cost)

    def trigger_check_done(self, state: State) -> None:
        """After a trigger check."""
        with self.runstate.lock:
            self.runstate.position_trigger_checks += 1
        self.runstate.bump_refreshed(self.clock.now())
        self.send_charts(state)
        self.progress(state)

    def revaluation_done(self, state: State) -> None:
        """After a revaluation."""
        with self.runstate.lock:
            self.runstate.position_revaluations += 1
        self.runstate.bump_refreshed(self.clock.now())
        self.send_charts(state)
        self.progress(state)

    def operator_done(self, state: State, parameters: dict[str, Any] | None = None) -> None:
        """After an operator's job (a close, new parameters): figures, charts and files at once, not when due.

        The operator is looking: the dashboard and ``/positions`` should show the closed position
        now. ``parameters``, when they changed, go into /status and the published metadata.
        """
        if parameters is not None:
            self._metadata["parameters"] = dict(parameters)
            self.runstate.update(strategy_parameters=dict(parameters))
        self.runstate.bump_refreshed(self.clock.now())
        self.send_charts(state)
        self.progress(state)
        self.files_now(state, self.runstate.snapshot().summary_statistics or {})

    def progress(self, state: State) -> None:
        """Next cycle time, feed lag and when the newest data came (its age at scrape time), replay position."""
        extra = {
            **self._extra,
            **self._renderer_facts(),
            "replay_cursor": state.replay_cursor,
            "replay_bars": len(self.feed.market),
            "replay_dropped": self.feed.market.dropped,  # steps a live feed's window dropped: replay_cursor counts them
            "cycles_completed_total": state.cycles_completed,
            "open_positions": len(state.portfolio.open_positions),
            "next_order_id": state.portfolio.next_order_id,
        }
        now = self.clock.now()
        lag = self.feed.lag_seconds(self.clock.monotonic())
        self.runstate.update(
            next_cycle_at=self.next_cycle_at(),
            market_data_feed_lag=lag,
            market_data_at=now - timedelta(seconds=lag) if lag is not None else None,
            portfolio=self._figures.figures(state, now=now),
            extra=extra,
        )

    # -- charts -----------------------------------------------------------------------------

    def send_charts(self, state: State) -> None:
        """After a job (or when the renderer asks): send what changed when charts are due and the renderer is idle.

        Due: something changed since the last delta, and ``chart_seconds`` (stretched by the
        renderer's cost) passed since it. A renderer still busy (or still starting) sets a flag;
        when it becomes idle its thread has the loop run this again (``wake``), so the first
        cycle's chart does not wait for the next job.
        """
        renderer = self.renderer
        self._charts.drop_outgrown(state)
        if renderer is None or self.feed.cursor < 0 or self._chart_mark(state) == self._charted:
            return
        if not publication_due(self._last_chart, self.clock.monotonic(), self.chart_seconds,
                               renderer.last_cost, share=CHART_TIME_SHARE):
            return
        self._waiting = not self._submit(state)

    def final_charts(self, state: State) -> None:
        """At the end of a run: wait for the render in flight, send the rest, wait for it (each bounded)."""
        renderer = self.renderer
        if renderer is None or self.feed.cursor < 0:
            return
        patience = renderer.timeout + renderer.start_timeout
        drawn = renderer.wait_idle(patience)  # the render in flight, or the renderer still starting
        if drawn and self._chart_mark(state) != self._charted and self._submit(state):
            drawn = renderer.wait_idle(patience)
        if not drawn:
            logger.warning("the final charts were not drawn within %.0f s", patience)

    def _submit(self, state: State) -> bool:
        """Cut the delta up to the newest bar and hand it to the renderer; False when it is not idle."""
        renderer = self.renderer
        if renderer is None or not renderer.idle:
            return False
        if renderer.needs_full:  # a new renderer process: it holds nothing yet
            self._charts.reset()
        step = self.feed.cursor
        self._chart_prices()
        newest = {symbol: int(self.feed.market.last_closed[symbol][step]) for symbol in self._closes}
        delta = self._charts.delta(state, newest)
        if not renderer.submit(delta):
            return False
        self._last_chart = self.clock.monotonic()
        self._charted = self._chart_mark(state)
        return True

    @staticmethod
    def _chart_mark(state: State) -> tuple[Any, ...]:
        """What a chart shows, in brief: unchanged means nothing to draw (a trigger check that fired nothing)."""
        valuations = state.valuations
        newest = valuations.equity[-1] if len(valuations) else None
        return len(valuations), newest, state.portfolio.next_fill_id, state.replay_cursor

    def _renderer_idle(self) -> None:
        """The renderer's thread, when it becomes idle: if charts were waiting, ask the loop to send them."""
        if self._waiting and self.wake is not None:
            self.wake()

    def start(self) -> None:
        """Start the chart renderer's process, so it is ready by the first cycle."""
        if self.renderer is not None:
            self.renderer.start()

    def close(self) -> None:
        """Stop the chart renderer's process; let a write of the public files in progress finish."""
        if self.renderer is not None:
            self.renderer.close()
        self.wait_written()

    def _renderer_facts(self) -> dict[str, Any]:
        """/status's ``extra`` about the renderer: its process (None while there is none) and its last cost."""
        renderer = self.renderer
        if renderer is None:
            return {}
        return {"chart_renderer_pid": renderer.pid, "chart_render_seconds": round(renderer.last_cost, 3)}

    def _images_drawn(self, images: dict[tuple[str, str, str], bytes], seconds: float) -> None:
        """The renderer's thread: store a new set of images (clears ``visualisation_stale``).

        The renderer's facts change with them, in the same update: a status showing new charts names
        the process that drew them. Left to the next job's ``progress``, /status showed the first
        cycle's charts with no renderer (or, after a restart, the dead one) until another job ran.
        """
        with self.runstate.lock:
            self.runstate.set_images({image_key(*key): data for key, data in images.items()}, self.clock.now())
            self.runstate.update(extra={**self.runstate.extra, **self._renderer_facts()})

    def _charts_stale(self, reason: str) -> None:
        """The renderer's thread: the renderer crashed or hung; the images shown are out of date (and it is gone)."""
        with self.runstate.lock:
            self.runstate.update(visualisation_stale=reason, extra={**self.runstate.extra, **self._renderer_facts()})


    def _benchmark(self, step: int) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
        """Each symbol's close times (ns), closes and newest bar closed at ``step``, for buy-and-hold."""
        market = self.feed.market
        return {symbol: (bars.close_time_ns, bars.close, int(market.last_closed[symbol][step]) if step >= 0 else -1)
                for symbol, bars in market.bars.items()}

    def _chart_prices(self) -> None:
        """Give the chart feed the bars appended to the market since the last call (a growing feed)."""
        market = self.feed.market
        if market.generation == self._generation:
            return
        self._generation = market.generation
        self._charts.prices.update(self._closes)
        for symbol, dropped in market.dropped_bars.items():
            if dropped != self._dropped_bars[symbol]:
                self._charts.drop_bars(symbol, dropped - self._dropped_bars[symbol])
                self._dropped_bars[symbol] = dropped


#: Publishing files may take at most this share of the loop's time: the interval stretches as the state grows.
PUBLISH_TIME_SHARE = 0.1
#: Least seconds between writes of the public files to disk while running (the webhook serves them from memory);
#: a run's end always writes them.
DISK_SECONDS = 60.0
#: The chart renderer may keep at most this share of one CPU busy (it runs beside the loop, not on it).
CHART_TIME_SHARE = 0.25


def publication_caches(files: RunFiles | None) -> tuple[PublishCache, TradesCsv]:
    """The publisher's caches: closed history in spill files under ``files.spill`` (in memory without files).

    Spill files are a cache of the ledger: when they cannot be opened (``spill`` is a regular file, a
    directory the service user cannot write) the caches keep those rows in memory, as before spill files,
    with one warning naming the path; no reason not to trade.
    """
    if files is None:
        return PublishCache(), TradesCsv()
    cache: PublishCache | None = None
    try:
        cache = PublishCache.spilled(files.spill)
        return cache, TradesCsv(Spill(files.spill / SPILL_FILES["orders"]))
    except OSError as exc:
        for spill in cache.spills() if cache is not None else []:
            spill.close()
        logger.warning("the spill files under %s cannot be opened (%s): keeping closed history's rows in memory "
                       "(make it a directory the executor can write, then restart)", files.spill, exc)
        return PublishCache(), TradesCsv()


def publication_due(last: float | None, now: float, interval: float, cost: float,
                    share: float = PUBLISH_TIME_SHARE) -> bool:
    """True when the public files (in memory, or their copy on disk) or the charts should be produced again.

    What may grow with the run's history is bounded this way: the public files that changed are
    written whole by the writer thread (about 12-15 ms of its CPU at 100k cycles), and the charts prepare
    every valuation before downsampling (about 0.6 s for eight images of a long run); an in-memory
    publication re-encodes only what changed. Waiting at least ``cost / share`` keeps each under that
    share of the time however large the state gets (of a thread's or one CPU's time), while small
    states still refresh every ``interval``.
    """
    if last is None:
        return True
    return now - last >= max(interval, cost / share)


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    """Summary values as plain Python numbers (numpy scalars become float/int)."""
    safe: dict[str, Any] = {}
    for key, value in values.items():
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()
        safe[key] = value
    return safe

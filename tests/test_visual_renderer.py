"""The chart renderer's real child process: it draws, it is killed or stopped, and the caller never waits.

Crashes and hangs are real: the child gets SIGKILL or SIGSTOP from the test.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tradeexecutor.state import State
from tradeexecutor.visual.renderer import ChartRenderer, Images
from tradeexecutor.visual.series import ChartDelta, DeltaFeed, price_columns

PNG = b"\x89PNG\r\n\x1a\n"
DEADLINE = 120.0  # a child imports matplotlib first: seconds on a busy machine


class Sink:
    """What the renderer reports, from its own thread."""

    def __init__(self) -> None:
        self.images: list[Images] = []
        self.failures: list[str] = []
        self.threads: set[str] = set()
        self.changed = threading.Condition()

    def on_images(self, images: Images, seconds: float) -> None:
        with self.changed:
            self.images.append(images)
            self.threads.add(threading.current_thread().name)
            self.changed.notify_all()

    def on_failure(self, reason: str) -> None:
        with self.changed:
            self.failures.append(reason)
            self.changed.notify_all()

    def wait(self, what: str, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(getattr(self, what)) >= count, DEADLINE), (what, count)


def delta() -> ChartDelta:
    """A whole small state as one delta (what a new renderer gets first)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_visual_charts import traded_state

    state, prices = traded_state()
    market_prices = price_columns(prices)
    feed = DeltaFeed(market_prices)
    return feed.delta(state, {symbol: len(times) - 1 for symbol, (times, _) in market_prices.items()})


def wait_until(condition, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def renderer(sink: Sink) -> Iterator[ChartRenderer]:
    made = ChartRenderer(sink.on_images, on_failure=sink.on_failure, timeout=DEADLINE, restart_seconds=1.0).start()
    try:
        yield made
    finally:
        made.close()


def test_charts_are_drawn_in_a_child_process(renderer: ChartRenderer, sink: Sink) -> None:
    wait_until(lambda: renderer.idle)
    pid = renderer.pid
    assert pid is not None and pid != os.getpid() and alive(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert b"tradeexecutor.visual.worker" in cmdline.read()
    assert renderer.submit(delta())
    assert not renderer.submit(delta())  # one render at a time: the caller tries again later
    sink.wait("images", 1)
    images = sink.images[0]
    assert len(images) == 8 and images[("large", "light", "png")].startswith(PNG)
    assert images[("small", "dark", "svg")].lstrip().startswith(b"<?xml")
    assert sink.threads == {"chart-renderer"} and renderer.last_cost > 0 and not sink.failures


def test_a_killed_renderer_is_reported_and_replaced(renderer: ChartRenderer, sink: Sink) -> None:
    wait_until(lambda: renderer.idle)
    first = renderer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert renderer.submit(delta())  # the caller does not know yet; it never waits
    sink.wait("failures", 1)
    assert "gone" in sink.failures[0] and renderer.needs_full and renderer.failure
    wait_until(lambda: renderer.idle)  # after restart_seconds
    assert renderer.submit(delta())  # a complete delta, as needs_full asked
    sink.wait("images", 1)
    assert renderer.pid not in (None, first) and renderer.failure is None and not renderer.needs_full


def test_a_hung_renderer_is_killed_after_the_timeout(renderer: ChartRenderer, sink: Sink) -> None:
    wait_until(lambda: renderer.idle)
    hung = renderer.pid
    assert hung is not None
    renderer.timeout = 5.0  # only for the hang: a render on a busy machine may take longer than that
    os.kill(hung, signal.SIGSTOP)
    try:
        assert renderer.submit(delta())
        sink.wait("failures", 1)
        assert "did not answer within 5 s" in sink.failures[0]
        wait_until(lambda: not alive(hung))
    finally:
        renderer.timeout = DEADLINE
        if alive(hung):
            os.kill(hung, signal.SIGKILL)
    wait_until(lambda: renderer.idle)
    assert renderer.submit(delta())
    sink.wait("images", 1)


def test_a_failing_render_is_reported_in_one_line(renderer: ChartRenderer, sink: Sink) -> None:
    wait_until(lambda: renderer.idle)
    import numpy as np

    bad = ChartDelta("broken", 0, np.array(["not a time"]), np.array([1.0]), (), {})
    assert renderer.submit(bad)
    sink.wait("failures", 1)
    assert sink.failures[0].startswith("the chart renderer failed: ") and "\n" not in sink.failures[0]


def test_close_ends_the_child(sink: Sink) -> None:
    renderer = ChartRenderer(sink.on_images, on_failure=sink.on_failure).start()
    wait_until(lambda: renderer.idle)
    pid = renderer.pid
    assert pid is not None
    renderer.close()
    wait_until(lambda: not alive(pid), 30)
    assert not renderer.idle and not renderer.submit(delta()) and not sink.failures


def test_an_empty_state_still_renders(renderer: ChartRenderer, sink: Sink) -> None:
    wait_until(lambda: renderer.idle)
    assert renderer.submit(DeltaFeed({}).delta(State(), {}))
    sink.wait("images", 1)
    assert len(sink.images[0]) == 8

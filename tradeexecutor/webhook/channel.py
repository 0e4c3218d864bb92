"""waitress's connection, error response and worker pool, adapted: JSON errors, joinable workers, a quiet queue.

- :class:`Channel` is waitress's HTTP connection that ``WebhookServer.stop()`` can tell to read
  no further requests, and whose errors (a request waitress itself refuses: bad request line,
  oversized header or body) leave as :class:`JsonErrorTask` responses.
- :class:`JsonErrorTask` writes those errors in the webhook's one error shape
  (``{"error": ..., "status": ...}``, as ``app.json_error``), never waitress's plain text.
- :class:`Dispatcher` is waitress's worker pool keeping each worker's Thread so stop() can join
  them, and reporting a queue that outgrew its idle workers to a :class:`QueueBacklog` instead
  of logging waitress's "Task queue depth" warning for every such request (about 9 MB of stderr
  a minute under 50 pollers, which also pushed every other record out of /logs/technical).
- :class:`QueueBacklog` counts those moments and logs one summary line per interval.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask, ThreadedTaskDispatcher

__all__ = ["Channel", "Dispatcher", "JsonErrorTask", "Tally"]

#: Where load summaries go: a logger of their own, so a deployment can route or silence them.
load_logger = logging.getLogger("tradeexecutor.webhook.load")


class JsonErrorTask(ErrorTask):
    """waitress's response to a request it cannot read, as the webhook's JSON error."""

    def execute(self) -> None:
        error = self.request.error
        message = f"{error.reason}: {error.body}" if error.body else str(error.reason)
        body = json.dumps({"error": message, "status": error.code}).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([
            ("Content-Type", "application/json; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
        ])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):
    """waitress's HTTP connection, which stop() can tell to read no further requests."""

    error_task_class = JsonErrorTask
    #: Set by the loop thread when the server drains.
    draining = False

    def readable(self) -> bool:
        return not self.draining and bool(super().readable())

    @property
    def idle(self) -> bool:
        """No request being served and nothing left to send (a half-sent request counts as idle)."""
        return not self.requests and not self.total_outbufs_len


class Tally:
    """Events counted with their largest value, and logged as one summary line per ``interval`` seconds.

    For what can happen thousands of times a second (a request waiting for a worker, an idle
    connection closed to make room): one line a minute says how often and how bad, where a line
    per event would flood stderr and push everything else out of /logs/technical. ``note`` may be
    called from any thread; the server loop calls ``flush`` between polls (at least once a second)
    and once more when the server stops.
    """

    def __init__(self, message: str, interval: float = 60.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        #: %-format with ``count``, ``seconds`` and ``largest``, logged at WARNING.
        self.message = message
        #: Seconds each summary covers.
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._largest = 0
        self._since = clock()

    def note(self, value: int, count: int = 1) -> None:
        """``count`` events, the largest of them ``value``."""
        with self._lock:
            self._count += count
            self._largest = max(self._largest, value)

    def flush(self, *, force: bool = False) -> None:
        """Log the summary when the interval is over (or ``force``) and something happened; start a new interval."""
        now = self._clock()
        with self._lock:
            if not force and now - self._since < self.interval:
                return
            count, largest, since = self._count, self._largest, self._since
            self._count = self._largest = 0
            self._since = now
        if count:
            load_logger.warning(self.message, {"count": count, "seconds": now - since, "largest": largest})


class Dispatcher(ThreadedTaskDispatcher):
    """waitress's worker pool, keeping each worker's Thread so stop() can join them."""

    def __init__(self, name: str = "webhook-worker", backlog: Tally | None = None) -> None:
        super().__init__()
        #: Prefix of the worker threads' names.
        self.name = name
        #: Where a queue deeper than the idle workers is counted, with its depth (None: not counted).
        self.backlog = backlog
        #: Every worker thread started.
        self.workers: list[threading.Thread] = []

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        thread = threading.Thread(target=target, name=f"{self.name}-{thread_no}", args=(thread_no,), daemon=True)
        self.workers.append(thread)
        thread.start()

    def add_task(self, task: Any) -> None:
        """Queue ``task`` for a worker; ThreadedTaskDispatcher.add_task without its per-request warning."""
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            depth = len(self.queue) - (len(self.threads) - self.stop_count - self.active_count)
        if depth > 0 and self.backlog is not None:
            self.backlog.note(depth)

    def join(self, deadline: float) -> list[threading.Thread]:
        """Join every worker until ``deadline`` (monotonic); the ones still alive."""
        for thread in self.workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread for thread in self.workers if thread.is_alive()]
        self.workers = alive
        return alive

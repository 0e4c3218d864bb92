"""WebhookServer: runs the webhook's WSGI app on waitress in a background thread, and stops it cleanly.

``start()`` binds the socket in the calling thread (so a port in use fails there, as a
ConfigError) and returns once it is listening; port 0 picks a free port, reported by
``effective_port``.

``stop()`` shuts down in an order that never lets two threads race over a descriptor:

1. *Stop accepting*: the loop thread closes the listening sockets (their wake-up trigger stays).
2. *Drain* (bounded by the timeout): no connection reads another request; the loop thread keeps
   flushing the responses of requests already in flight and closes each connection as soon as
   it has nothing in progress and nothing left to send.
3. *Stop the workers*: the task dispatcher is shut down and each of its threads joined, so no
   worker can touch a connection or pull the trigger any more.
4. *Close the rest*: the loop thread closes any connection left (only after a timeout), the
   triggers and empties the socket map, which ends its loop; stop() joins it.

waitress's asyncore loop is not thread-safe, so every close in steps 1, 2 and 4 is scheduled
through the trigger (``pull_trigger(thunk)``) or done between two polls by the loop thread
itself, never from the caller's thread. A trigger is a pipe whose raw descriptors a worker
writes to; closing it while a worker may still pull it would write into (or later close) a
descriptor number the process has since reused, hence step 3 before step 4. If a worker is still
stuck in the application after the timeout, its connection is closed but the trigger pipes are
only taken out of the loop: a daemon thread closes them once every stuck worker has returned.
"""

from __future__ import annotations

import functools
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.trigger import trigger as Trigger

from tradeexecutor.errors import ConfigError

logger = logging.getLogger("tradeexecutor.webhook")

#: Least seconds each later step of stop() gets, even when draining used up the timeout.
_MIN_STEP_SECONDS = 0.5


class _Channel(HTTPChannel):
    """waitress's HTTP connection, which stop() can tell to read no further requests."""

    #: Set by the loop thread when the server drains.
    draining = False

    def readable(self) -> bool:
        return not self.draining and bool(super().readable())


class _Dispatcher(ThreadedTaskDispatcher):
    """waitress's worker pool, keeping each worker's Thread so stop() can join them."""

    def __init__(self, name: str = "webhook") -> None:
        super().__init__()
        #: Every worker thread started.
        self.workers: list[threading.Thread] = []
        self._slug = name.replace(" ", "-")

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        thread = threading.Thread(
            target=target, name=f"{self._slug}-worker-{thread_no}", args=(thread_no,), daemon=True
        )
        self.workers.append(thread)
        thread.start()

    def join(self, deadline: float) -> list[threading.Thread]:
        """Join every worker until ``deadline`` (monotonic); the ones still alive."""
        for thread in self.workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread for thread in self.workers if thread.is_alive()]
        self.workers = alive
        return alive


def _close_after(workers: list[threading.Thread], triggers: list[Trigger]) -> None:
    """Wait for ``workers`` to return, then close the wake-up pipes they could have written to."""
    for worker in workers:
        worker.join()
    for trigger in triggers:
        try:
            trigger.close()
        except OSError:
            pass


def check_port_free(host: str, port: int, name: str = "webhook") -> None:
    """Raise the ConfigError ``start()`` would raise when ``host:port`` is taken, before anything is written.

    The executor calls this before it locks or creates its state directory, so a port already in
    use (say, by another executor) leaves nothing behind. ``start()`` still binds for real later
    and reports the same error if the port was taken in between. Port 0 is always free.
    """
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in addresses:
            with socket.socket(family, kind, proto) as sock:
                if os.name == "posix":  # as waitress binds: a port in TIME_WAIT is free, a listening one is not
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
    except OSError as exc:  # gaierror included; also a family this system cannot open
        raise _cannot_listen(name, host, port, exc) from None


def _cannot_listen(name: str, host: str, port: int, exc: BaseException) -> ConfigError:
    """The one error for a server address that cannot be used, from the probe and from start()."""
    reason = getattr(exc, "strerror", None) or str(exc)
    return ConfigError(f"{name} cannot listen on {host}:{port}: {reason}")


class WebhookServer:
    """The executor's HTTP server: waitress serving one WSGI app from a daemon thread."""

    def __init__(
        self,
        app: Callable[..., Any],
        host: str = "127.0.0.1",
        port: int = 3456,
        threads: int = 4,
        *,
        stop_timeout: float = 5.0,
        name: str = "webhook",
    ) -> None:
        #: The WSGI application served.
        self.app = app
        #: Interface to listen on.
        self.host = host
        #: Requested port; 0 lets the OS choose (see effective_port).
        self.port = port
        #: Worker threads serving requests.
        self.threads = threads
        #: Seconds stop() lets requests in flight finish (each later step gets at least 0.5 s more).
        self.stop_timeout = stop_timeout
        #: What the server is called in its thread names, log lines and errors (the exchange simulator
        #: runs on this class too).
        self.name = name
        self._map: dict[int, Any] = {}
        self._server: Any = None
        self._dispatcher: _Dispatcher | None = None
        self._listeners: list[BaseWSGIServer] = []
        self._thread: threading.Thread | None = None
        self._effective: tuple[str, int] | None = None
        self._stop_lock = threading.Lock()
        # Loop-thread state, written by the loop thread (in thunks or between polls).
        self._draining = False
        self._busy = 0
        self._drained = threading.Event()
        #: Triggers taken out of the loop but left open for workers still running (see stop()).
        self._orphans: list[Trigger] = []

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind, start serving in a background thread, and return once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("webhook server already started")
        self._map = {}
        self._draining = False
        self._busy = 0
        self._drained.clear()
        dispatcher = _Dispatcher(self.name)
        try:
            server = waitress.create_server(
                self.app,
                map=self._map,
                _dispatcher=dispatcher,  # ours, so stop() can join its threads
                host=self.host,
                port=self.port,
                threads=self.threads,
                ident="tradeexecutor",
                expose_tracebacks=False,
            )
        except (OSError, ValueError) as exc:
            self._close_everything()  # the triggers and sockets made before bind failed
            raise _cannot_listen(self.name, self.host, self.port, exc) from exc
        self._listeners = [obj for obj in self._map.values() if isinstance(obj, BaseWSGIServer)]
        for listener in self._listeners:
            listener.channel_class = _Channel
        dispatcher.set_thread_count(self.threads)  # workers start only once the server exists
        self._server = server
        self._dispatcher = dispatcher
        listen = getattr(server, "effective_listen", None)
        if listen:  # several sockets (e.g. "localhost" as IPv4 and IPv6): report the first
            self._effective = (str(listen[0][0]), int(listen[0][1]))
        else:
            self._effective = (str(server.effective_host), int(server.effective_port))
        self._thread = threading.Thread(target=self._run, name=f"{self._slug}-server", daemon=True)
        self._thread.start()
        logger.info("%s listening on %s", self.name, self.url)
        return self

    def _run(self) -> None:
        """The event loop thread: waitress's asyncore loop, plus the drain step between polls."""
        adj = self._server.adj
        use_poll = adj.asyncore_use_poll and hasattr(select, "poll")
        poll = wasyncore.poll2 if use_poll else wasyncore.poll
        try:
            while self._map:
                poll(adj.asyncore_loop_timeout, self._map)
                if self._draining and not self._drained.is_set() and self._close_idle_channels():
                    self._drained.set()
        except Exception:  # keep the loop thread's death visible in the log
            logger.exception("webhook server loop failed")

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, let requests in flight finish, stop the workers, then close everything.

        Waits up to ``timeout`` (default ``stop_timeout``) seconds for requests in flight; after
        that their connections are closed anyway. Must not be called from the server's own threads.
        """
        with self._stop_lock:
            server, thread, dispatcher = self._server, self._thread, self._dispatcher
            if server is None or thread is None or dispatcher is None:
                return
            current = threading.current_thread()
            if current is thread or current in dispatcher.workers:
                raise RuntimeError("WebhookServer.stop() cannot run in the server's own threads")
            timeout = self.stop_timeout if timeout is None else timeout
            deadline = time.monotonic() + timeout

            def step_deadline() -> float:
                return max(deadline, time.monotonic() + _MIN_STEP_SECONDS)

            # 1 + 2. Stop accepting and drain, in the loop thread.
            loop_alive = thread.is_alive() and self._pull(self._begin_drain)
            if loop_alive and not self._drained.wait(max(0.0, deadline - time.monotonic())):
                logger.warning(
                    "webhook: %d connection(s) still busy after %.1f s; closing them", self._busy, timeout
                )
                loop_alive = self._pull(self._close_channels)
            # 3. Stop the workers and join them: from here on nothing but the loop uses a descriptor.
            dispatcher.shutdown(cancel_pending=True, timeout=max(0.0, step_deadline() - time.monotonic()))
            stuck = dispatcher.join(step_deadline())
            if stuck:
                logger.warning(
                    "webhook: %d worker thread(s) still running; their wake-up pipe closes when they return",
                    len(stuck),
                )
            # 4. Close what is left and let the loop end.
            close = functools.partial(self._close_everything, keep_triggers=bool(stuck))
            if loop_alive and thread.is_alive() and self._pull(close):
                thread.join(max(0.0, step_deadline() - time.monotonic()))
            if thread.is_alive():
                logger.warning("webhook server loop did not stop within %.1f s", timeout)
            else:
                close()  # a no-op after a clean stop; closes everything if the loop had died
            if self._orphans:
                orphans, self._orphans = self._orphans, []
                threading.Thread(
                    target=_close_after, args=(stuck, orphans), name="webhook-trigger-closer", daemon=True
                ).start()
            self._server = None
            self._thread = None
            self._dispatcher = None
            self._listeners = []
            logger.info("webhook stopped")

    # -- work done in the loop thread -------------------------------------------------------------

    def _pull(self, thunk: Callable[[], None]) -> bool:
        """Have the loop thread run ``thunk`` between two polls; False when there is no trigger to pull."""
        for listener in self._listeners:
            trigger = listener.trigger
            if not getattr(trigger, "_closed", False):
                try:
                    trigger.pull_trigger(thunk)
                except OSError:
                    continue
                return True
        return False

    def _begin_drain(self) -> None:
        """Loop thread: close the listening sockets (not their triggers) and stop reading requests."""
        for listener in self._listeners:
            wasyncore.dispatcher.close(listener)  # BaseWSGIServer.close would close the trigger too
        for obj in list(self._map.values()):
            if isinstance(obj, _Channel):
                obj.draining = True
        self._draining = True

    def _close_idle_channels(self) -> bool:
        """Loop thread: close each connection with no request in progress and nothing to send; True when none is left."""
        busy = 0
        for obj in list(self._map.values()):
            if not isinstance(obj, HTTPChannel):
                continue
            with obj.requests_lock:  # a worker changes requests under this lock, then only pulls the trigger
                idle = not obj.requests and not obj.total_outbufs_len
                if idle:
                    obj.handle_close()
            busy += not idle
        self._busy = busy
        return not busy

    def _close_channels(self) -> None:
        """Loop thread (after the drain timed out): close every connection, busy or not."""
        for obj in list(self._map.values()):
            if isinstance(obj, HTTPChannel):
                try:
                    obj.handle_close()
                except OSError:
                    pass

    def _close_everything(self, keep_triggers: bool = False) -> None:
        """Close every connection, the listening sockets and the triggers, leaving the map empty.

        Runs in the loop thread (scheduled by stop()), or in the caller's thread when no loop runs.
        With ``keep_triggers`` the trigger pipes are only taken out of the map, not closed, for
        worker threads that might still pull them; stop() closes them once those threads return.
        """
        self._close_channels()
        for obj in list(self._map.values()):
            try:
                if isinstance(obj, BaseWSGIServer):
                    wasyncore.dispatcher.close(obj)  # its socket; its trigger is a map entry of its own
                elif isinstance(obj, Trigger) and keep_triggers:
                    obj.del_channel()
                    self._orphans.append(obj)
                else:
                    obj.close()
            except OSError:
                pass
        self._map.clear()

    # -- information --------------------------------------------------------------------------------

    @property
    def _slug(self) -> str:
        return self.name.replace(" ", "-")

    @property
    def effective_port(self) -> int:
        """The port actually bound (useful with port 0); only valid after start()."""
        if self._effective is None:
            raise RuntimeError("webhook server not started")
        return self._effective[1]

    @property
    def effective_host(self) -> str:
        """The address actually bound; only valid after start()."""
        if self._effective is None:
            raise RuntimeError("webhook server not started")
        return self._effective[0]

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:3456``."""
        host = self.effective_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.effective_port}"

    @property
    def running(self) -> bool:
        """True while the loop thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    # -- context manager ------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

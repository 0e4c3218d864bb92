"""WebhookServer: runs the webhook's WSGI app on waitress in a background thread, and stops it cleanly.

``start()`` binds the socket in the calling thread (so a port in use fails there, as a
ConfigError) and returns once it is listening; port 0 picks a free port, reported by
``effective_port``.

The probes always answer, because an orchestrator restarts an executor whose liveness probe
times out, and anyone who can reach the port must not be able to cause that (with waitress's
defaults, 98 idle connections did: it stops accepting at 100 and closes idle ones after 120 s):

- *Connections.* When ``ServerLimits.max_connections`` connections are open, the loop thread
  closes the least recently active idle ones (no request being served, nothing to send; a
  half-sent request counts as idle) to make room, so a new connection is always accepted.
  Connections idle for ``channel_timeout`` seconds are closed as well.
- *Workers.* A request for ``/ping`` or ``/healthz`` goes to a worker of its own
  (``webhook-probe-0``), never behind other requests in the main pool's queue, so slow or stuck
  requests elsewhere cannot delay it.
- *Errors.* A request waitress refuses itself (bad request line, headers over
  ``max_request_header_size``, a body over ``max_request_body_size``) gets the JSON error shape
  (``channel.JsonErrorTask``). waitress's per-request queue-depth warnings, and the idle
  connections closed, become one summary line each per ``queue_log_seconds`` (``channel.Tally``).

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
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import waitress
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.trigger import trigger as Trigger

from tradeexecutor.errors import ConfigError
from tradeexecutor.webhook.channel import Channel, Dispatcher, Tally

__all__ = ["PROBE_PATHS", "ServerLimits", "WebhookServer", "check_port_free"]

logger = logging.getLogger("tradeexecutor.webhook")

#: Least seconds each later step of stop() gets, even when draining used up the timeout.
_MIN_STEP_SECONDS = 0.5
#: Paths served by the probe worker.
PROBE_PATHS = frozenset({"/ping", "/healthz"})
#: File descriptors kept free for everything else the process opens (state, journal, pipes).
_SPARE_FDS = 64


@dataclass(frozen=True)
class ServerLimits:
    """How much of the server clients may hold: connections, idle time, request sizes, log volume."""

    #: Connections open at once; at this many, the least recently active idle ones are closed for new ones.
    #: Lowered at start to fit the process's open-file limit.
    max_connections: int = 500
    #: Seconds a connection may stay idle before it is closed (waitress's default is 120).
    channel_timeout: float = 60.0
    #: Seconds between sweeps for connections idle past ``channel_timeout``.
    cleanup_interval: float = 10.0
    #: Largest request body in bytes (the control routes take none); larger is a JSON 413.
    max_request_body_size: int = 1 << 20
    #: Largest request line plus headers in bytes; larger is a JSON 431.
    max_request_header_size: int = 64 << 10
    #: Seconds between summaries of requests that waited for a busy worker.
    queue_log_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_connections < 2:
            raise ValueError("max_connections must be at least 2")

    def connections_allowed(self) -> int:
        """``max_connections``, lowered to fit the open-file limit (RLIMIT_NOFILE) where there is one."""
        try:
            import resource

            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ImportError, OSError, ValueError):
            return self.max_connections
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(2, min(self.max_connections, soft - _SPARE_FDS))


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
        port: int = 0,
        threads: int = 4,
        *,
        stop_timeout: float = 5.0,
        name: str = "webhook",
        limits: ServerLimits | None = None,
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
        #: Connections, idle time and request sizes clients may use.
        self.limits = limits or ServerLimits()
        self._map: dict[int, Any] = {}
        self._server: Any = None
        self._dispatcher: Dispatcher | None = None
        self._probe_dispatcher: Dispatcher | None = None
        self._backlog = Tally(f"{name}: %(count)d request(s) waited for a busy worker in the last %(seconds).1f s "
                              "(deepest queue %(largest)d); more --webhook-threads or fewer pollers shortens the wait",
                              self.limits.queue_log_seconds)
        self._evictions = Tally(f"{name}: closed %(count)d idle connection(s) in the last %(seconds).1f s to make "
                                "room for new ones (%(largest)d open, the limit)", self.limits.queue_log_seconds)
        #: Connections allowed at once (``limits.max_connections`` fitted to the open-file limit), set by start().
        self.max_connections = self.limits.max_connections
        #: Idle connections closed to make room for new ones, for tests and logs.
        self.evicted = 0
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
        self.max_connections = self.limits.connections_allowed()
        dispatcher = Dispatcher(f"{self._slug}-worker", self._backlog)
        probe_dispatcher = Dispatcher(f"{self._slug}-probe")
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
                asyncore_use_poll=True,  # select() fails on descriptors past 1023
                # waitress's own limit counts listeners and triggers too; ours (evicting idle
                # connections between polls) keeps the channels below it, so it never stops accepting.
                connection_limit=self.max_connections + 16,
                channel_timeout=self.limits.channel_timeout,
                cleanup_interval=self.limits.cleanup_interval,
                max_request_body_size=self.limits.max_request_body_size,
                max_request_header_size=self.limits.max_request_header_size,
            )
        except (OSError, ValueError) as exc:
            self._close_everything()  # the triggers and sockets made before bind failed
            raise _cannot_listen(self.name, self.host, self.port, exc) from exc
        self._listeners = [obj for obj in self._map.values() if isinstance(obj, BaseWSGIServer)]
        for listener in self._listeners:
            listener.channel_class = Channel
            listener.add_task = self._route  # probes to their own worker
        dispatcher.set_thread_count(self.threads)  # workers start only once the server exists
        probe_dispatcher.set_thread_count(1)
        self._server = server
        self._dispatcher = dispatcher
        self._probe_dispatcher = probe_dispatcher
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
        # Beyond this many map entries (channels plus listeners and triggers) idle channels are closed.
        crowded = self.max_connections + len(self._map)
        try:
            while self._map:
                poll(adj.asyncore_loop_timeout, self._map)
                if len(self._map) >= crowded and not self._draining:
                    self._make_room()
                if self._draining and not self._drained.is_set() and self._close_idle_channels():
                    self._drained.set()
                self._backlog.flush()
                self._evictions.flush()
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
            probe_workers = self._probe_dispatcher.workers if self._probe_dispatcher is not None else []
            if current is thread or current in dispatcher.workers or current in probe_workers:
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
            stuck: list[threading.Thread] = []
            for pool in (dispatcher, self._probe_dispatcher):
                if pool is not None:
                    pool.shutdown(cancel_pending=True, timeout=max(0.0, step_deadline() - time.monotonic()))
                    stuck += pool.join(step_deadline())
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
            self._probe_dispatcher = None
            self._listeners = []
            self._backlog.flush(force=True)
            self._evictions.flush(force=True)
            logger.info("webhook stopped")

    # -- work done in the loop thread -------------------------------------------------------------

    def _route(self, channel: HTTPChannel) -> None:
        """Queue ``channel``'s next request: a probe for the probe worker, anything else for the pool.

        waitress calls this with the channel's ``requests_lock`` held, from the loop thread (a new
        request) or a worker (the next pipelined one), so ``requests[0]`` is the request to serve.
        """
        request = channel.requests[0] if channel.requests else None
        probe = request is not None and not request.error and request.path in PROBE_PATHS
        pool = self._probe_dispatcher if probe else self._dispatcher
        if pool is None:  # stopped meanwhile: the channel is closed with the rest
            return
        pool.add_task(channel)

    def _make_room(self) -> None:
        """Loop thread: close the least recently active idle connections, down to 90 % of the limit.

        Closing a batch, not one, keeps the scan (one pass over the connections) rare under a flood.
        """
        channels = [obj for obj in self._map.values() if isinstance(obj, Channel)]
        excess = len(channels) - int(self.max_connections * 0.9)
        if excess <= 0:
            return
        idle = sorted((c for c in channels if c.idle), key=lambda c: c.last_activity)[:excess]
        for channel in idle:
            try:
                channel.handle_close()
            except OSError:
                pass
        if idle:
            self.evicted += len(idle)
            self._evictions.note(len(channels), len(idle))

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
            if isinstance(obj, Channel):
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
        _exc_type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

"""WebhookServer: runs the webhook's WSGI app on waitress in a background thread, and stops it cleanly.

``start()`` binds the socket in the calling thread (so a port in use fails there, as a
ConfigError) and returns once it is listening; port 0 picks a free port, reported by
``effective_port``. ``stop()`` closes the listening socket and every open connection from
inside waitress's own event-loop thread, joins it, then stops the worker threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import waitress
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer

from tradeexecutor.errors import ConfigError

logger = logging.getLogger("tradeexecutor.webhook")


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
    ) -> None:
        #: The WSGI application served.
        self.app = app
        #: Interface to listen on.
        self.host = host
        #: Requested port; 0 lets the OS choose (see effective_port).
        self.port = port
        #: Worker threads serving requests.
        self.threads = threads
        #: Seconds stop() waits for the loop thread and the workers.
        self.stop_timeout = stop_timeout
        self._map: dict[int, Any] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._effective: tuple[str, int] | None = None

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind, start serving in a background thread, and return once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("webhook server already started")
        try:
            server = waitress.create_server(
                self.app,
                map=self._map,
                host=self.host,
                port=self.port,
                threads=self.threads,
                ident="tradeexecutor",
                expose_tracebacks=False,
            )
        except OSError as exc:
            self._close_all()  # the trigger and socket made before bind failed
            reason = exc.strerror or str(exc)
            raise ConfigError(f"webhook cannot listen on {self.host}:{self.port}: {reason}") from exc
        except ValueError as exc:
            self._close_all()
            raise ConfigError(f"webhook cannot listen on {self.host}:{self.port}: {exc}") from exc
        self._server = server
        listen = getattr(server, "effective_listen", None)
        if listen:  # several sockets (e.g. "localhost" as IPv4 and IPv6): report the first
            self._effective = (str(listen[0][0]), int(listen[0][1]))
        else:
            self._effective = (str(server.effective_host), int(server.effective_port))
        self._thread = threading.Thread(target=self._run, name="webhook-server", daemon=True)
        self._thread.start()
        logger.info("webhook listening on %s", self.url)
        return self

    def _run(self) -> None:
        """The event loop thread: serve until stop() empties the socket map."""
        try:
            self._server.run()
        except Exception:  # keep the loop thread's death visible in the log
            logger.exception("webhook server loop failed")

    def stop(self, timeout: float | None = None) -> None:
        """Close the listening socket and all connections, join the loop thread and stop the workers."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        timeout = self.stop_timeout if timeout is None else timeout
        trigger_owner = next(
            (obj for obj in list(self._map.values()) if isinstance(obj, BaseWSGIServer)), None
        )
        if thread.is_alive() and trigger_owner is not None:
            # Sockets belong to the loop thread: close them there, between two polls.
            trigger_owner.trigger.pull_trigger(self._close_all)
            thread.join(timeout)
        if thread.is_alive():
            logger.warning("webhook server loop did not stop within %.1f s", timeout)
        else:
            self._close_all()  # no-op after a clean stop; closes sockets if the loop had died
        server.task_dispatcher.shutdown(timeout=timeout)
        self._server = None
        self._thread = None
        logger.info("webhook stopped")

    def _close_all(self) -> None:
        """Close every connection, then the listening sockets and their triggers, leaving the map empty."""
        objects = list(self._map.values())
        channels = [obj for obj in objects if isinstance(obj, HTTPChannel)]
        others = [obj for obj in objects if not isinstance(obj, HTTPChannel)]
        for obj in channels:
            try:
                obj.handle_close()
            except OSError:
                pass
        for obj in others:
            try:
                obj.close()
            except OSError:
                pass
        self._map.clear()

    # -- information --------------------------------------------------------------------------------

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

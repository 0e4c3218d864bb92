"""A loopback JSON endpoint that records what apprise's ``json://`` channel posts to it.

Real HTTP on 127.0.0.1 (http.server on its own thread): the notifier's real apprise channel sends
to it exactly as it would to a chat service's webhook. The endpoint can answer slowly, hang until
released (``hold``), or answer with an error status, to play a slow or broken service. Each received body is kept, parsed::

    with LoopbackEndpoint() as endpoint:
        env = {"TRADEEXECUTOR_NOTIFY_WEBHOOK_URL": endpoint.url}
        ...
        endpoint.wait_for(lambda posts: any("crashed" in p["title"] for p in posts))
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackEndpoint"]


class LoopbackEndpoint:
    """A JSON sink on 127.0.0.1; ``url`` is the apprise URL of it (the path plays a secret token)."""

    def __init__(self, *, status: int = 200, delay: float = 0.0, token: str = "hook") -> None:
        self.status = status
        self.delay = delay
        #: Cleared by hold(): requests wait (unanswered, unrecorded) until release().
        self._open = threading.Event()
        self._open.set()
        self.posts: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if endpoint.delay:
                    time.sleep(endpoint.delay)
                endpoint._open.wait(120)
                with endpoint._arrived:
                    endpoint.posts.append(json.loads(body))
                    endpoint.paths.append(self.path)
                    endpoint._arrived.notify_all()
                self.send_response(endpoint.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"json://127.0.0.1:{self.port}/{token}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="loopback-endpoint", daemon=True)

    def __enter__(self) -> LoopbackEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def hold(self) -> None:
        """Keep every request waiting from now on, unanswered and unrecorded, until release()."""
        self._open.clear()

    def release(self) -> None:
        """Let held requests (and later ones) through."""
        self._open.set()

    def received(self) -> list[dict[str, Any]]:
        """A copy of every body received so far, oldest first."""
        with self._lock:
            return list(self.posts)

    def titles(self) -> list[str]:
        return [post["title"] for post in self.received()]

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0,
                 what: str = "notifications") -> list[dict[str, Any]]:
        """Wait until ``predicate(received)`` holds; AssertionError with what arrived when it never does."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(list(self.posts)):
                left = deadline - time.monotonic()
                if left <= 0:
                    titles = [post.get("title") for post in self.posts]
                    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; received: {titles}")
                self._arrived.wait(min(left, 0.5))
            return list(self.posts)

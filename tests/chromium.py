"""Headless Chromium driven over the DevTools protocol on a pipe, for tests of pages in a real browser.

The browser is Debian's ``chromium`` started with ``--remote-debugging-pipe`` (JSON messages
ending in a NUL byte on file descriptors 3 and 4), so no driver binary, websocket library or
browser download is needed. ``Chromium`` is the browser, ``Page`` one tab; the ``browser``
fixture (import it, with ``chromium_path``, into a test module) gives one browser per module.

Without chromium the fixture skips, unless the environment variable CI is set: then it fails,
since CI must prove pages in a browser (``.ci/run`` installs the Debian package). Set
DASHBOARD_SCREENSHOTS=<dir> to keep the screenshots ``keep_screenshot`` writes.

Used by tests/test_dashboard_browser.py (the executor's dashboard), tests/test_wallboard_browser.py
(the fleet wallboard) and bench/bench_dashboard.py.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class CDPError(RuntimeError):
    """A DevTools command failed, or the browser did not answer in time."""


def find_chromium() -> str | None:
    """The Chromium to drive: $CHROMIUM, else the first of the usual names on PATH."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else shutil.which(explicit)
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


#: Run as ``python -c`` with argv ``[read_fd, write_fd, executable, *args]``: move the fds to 3 and 4, exec.
_PIPE_TRAMPOLINE = """
import os, sys
read_fd, write_fd = int(sys.argv[1]), int(sys.argv[2])
read_copy, write_copy = os.dup(read_fd), os.dup(write_fd)
os.dup2(read_copy, 3)
os.dup2(write_copy, 4)
for fd in {read_fd, write_fd, read_copy, write_copy} - {3, 4}:
    os.close(fd)
os.set_inheritable(3, True)
os.set_inheritable(4, True)
os.execv(sys.argv[3], sys.argv[3:])
"""


class Chromium:
    """One headless Chromium process, spoken to over ``--remote-debugging-pipe``."""

    ARGS = (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
        "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
        "--lang=en-US", "--hide-scrollbars", "--remote-debugging-pipe",
    )

    def __init__(self, executable: str, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="dashboard-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        # A tiny Python trampoline puts our pipe ends on fds 3 and 4 and becomes the browser: no
        # preexec_fn (unsafe while the test server's threads run), no shell (dash handles fds 0-9 only).
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _PIPE_TRAMPOLINE, str(to_browser_r), str(from_browser_w),
             executable, *self.ARGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(to_browser_r, from_browser_w),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        #: Every event received, in order (``{"method", "params", "sessionId"}``).
        self.events: list[dict[str, Any]] = []
        #: Event method → callback run as the event arrives (it may send commands).
        self.handlers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.version = self.send("Browser.getVersion")["product"]

    # -- messages --------------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError("the browser did not answer in time")
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise CDPError(f"the browser closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(raw)

    def _pump(self, deadline: float) -> None:
        """Read one message: keep an answer, record and dispatch an event."""
        message = self._read_message(deadline)
        if "id" in message:
            self._answers[message["id"]] = message
            return
        self.events.append(message)
        handler = self.handlers.get(message.get("method", ""))
        if handler is not None:
            handler(message)

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command and return its result; raise CDPError on an error answer."""
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode("utf-8") + b"\0")
        deadline = time.monotonic() + (timeout or self.timeout)
        while ident not in self._answers:
            self._pump(deadline)
        answer = self._answers.pop(ident)
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def wait_event(self, method: str, *, session: str | None = None, after: int = 0,
                   timeout: float | None = None) -> dict[str, Any]:
        """The first event ``method`` (of ``session``) received at index ``after`` or later."""
        deadline = time.monotonic() + (timeout or self.timeout)
        index = after
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event.get("method") == method and (session is None or event.get("sessionId") == session):
                    return event
            self._pump(deadline)

    # -- pages -----------------------------------------------------------------------------------

    def new_page(self, width: int = 1280, height: int = 900, *, dark: bool = False) -> Page:
        """A fresh tab with its own session, page and runtime events on, at ``width``×``height``."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        page.call("Emulation.setEmulatedMedia",
                  {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]})
        return page

    def close(self) -> None:
        """Close the browser (politely, then by force) and remove its profile."""
        try:
            if self.process.poll() is None:
                self.send("Browser.close", timeout=5)
        except (CDPError, OSError):
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab: navigate, evaluate JavaScript, wait for conditions, take screenshots."""

    def __init__(self, browser: Chromium, session: str, target: str) -> None:
        self.browser = browser
        self.session = session
        self.target = target

    def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def goto(self, url: str, timeout: float = 20.0) -> None:
        """Navigate and wait for the load event."""
        mark = len(self.browser.events)
        result = self.call("Page.navigate", {"url": url}, timeout=timeout)
        if result.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", session=self.session, after=mark, timeout=timeout)

    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """The JSON value of a JavaScript expression (promises awaited); a thrown error raises CDPError."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(f"{expression!r} threw: {details.get('exception', {}).get('description') or details}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15.0) -> Any:
        """Poll until the expression is truthy; return its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression!r} (last value {value!r})")

    def wait_chart(self, timeout: float = 15.0) -> None:
        """Wait until the dashboard's chart is shown: its figure visible and its image loaded."""
        self.wait_for("(() => { const i = document.querySelector('[data-field=chart]');"
                      " return !document.querySelector('.chart').hidden && i.complete && i.naturalWidth > 0; })()",
                      timeout)

    def wait_refreshes(self, count: int = 1, timeout: float = 15.0) -> None:
        """Wait until the dashboard finished ``count`` refreshes since it loaded."""
        self.wait_for(f"Number(document.body.dataset.refreshes || 0) >= {count}", timeout)

    def screenshot(self) -> bytes:
        """A PNG of the whole page, not only the viewport."""
        import base64

        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        return base64.b64decode(data["data"])

    def errors(self) -> list[str]:
        """Uncaught exceptions and console.error calls of this page (not failed network loads: 404s are expected)."""
        found: list[str] = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                found.append(details.get("exception", {}).get("description") or details.get("text", "?"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params.get("args", [])))
            elif method == "Log.entryAdded":
                entry = params.get("entry", {})
                if entry.get("level") == "error" and entry.get("source") not in ("network",):
                    found.append(entry.get("text", "?"))
        return found

    def field(self, name: str) -> dict[str, Any]:
        """The element with ``data-field=name``: its text, data-value, hidden state and class."""
        script = f"""(() => {{
            const node = document.querySelector('[data-field="{name}"]');
            if (!node) return null;
            return {{text: node.textContent.trim(), value: node.dataset.value ?? null,
                     hidden: node.closest('[hidden]') !== null, className: node.className}};
        }})()"""
        value = self.evaluate(script)
        if value is None:
            raise AssertionError(f"no element with data-field={name!r}")
        result: dict[str, Any] = value
        return result

    def note(self, name: str) -> str | None:
        """The text of a section's "not available" note, None while it is hidden."""
        return self.evaluate(f"""(() => {{
            const node = document.querySelector('[data-note="{name}"]');
            return node && !node.hidden ? node.textContent.trim() : null;
        }})()""")


# =============================================================================================
# Fixtures and checks


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed but CI is set: the dashboard must be tested in a real "
                        "browser (.ci/run installs the Debian package 'chromium')")
        pytest.skip("chromium is not installed (apt-get install chromium); with CI set this fails instead")
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Chromium]:
    with Chromium(chromium_path) as chromium:
        yield chromium


def keep_screenshot(png: bytes, name: str, tmp_path: Path) -> Path:
    """Write the screenshot to tmp_path (and to $DASHBOARD_SCREENSHOTS when set)."""
    path = tmp_path / name
    path.write_bytes(png)
    extra = os.environ.get("DASHBOARD_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / name)
    return path


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert png.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", png[16:24])
    return int(width), int(height)


def assert_nontrivial_png(png: bytes, min_width: int = 1000) -> None:
    """A real picture of the page: a PNG of at least ``min_width`` px, many colours, not one flat fill."""
    import io

    import numpy as np
    from matplotlib.image import imread

    width, height = png_size(png)
    assert width >= min_width and height >= 600, (width, height)
    assert len(png) > 20_000, len(png)
    pixels = imread(io.BytesIO(png), format="png")[..., :3]
    assert float(pixels.std()) > 0.05
    colours = np.unique((pixels.reshape(-1, 3)[::7] * 255).astype(np.uint8), axis=0)
    assert len(colours) > 50, len(colours)

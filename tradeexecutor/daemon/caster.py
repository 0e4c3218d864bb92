"""Casting: the executor sends its equity and prices to a wallboard chart after jobs, never waiting for it.

Where to cast is recorded in ``<state dir>/cast.json`` (``store.cast_target``): ``runs cast``
writes it, ``POST /control/cast`` reaches the loop as a command that writes it, and the
:class:`Caster` reads it at start-up and again whenever it changed (one stat per job), so a
target survives restarts and is taken up even when the control route could not be used.

After each job the Caster updates its :class:`~tradeexecutor.cast.feed.ChartFeed` (only
what is new) and, at most every ``CastConfig.min_seconds`` and only when something changed,
hands the chart data to the :class:`CastSender`: one daemon thread with a one-slot mailbox
(the newest data replaces data not yet sent), so a slow or dead wallboard never delays a cycle.
The end of a run sends its final data at once and waits a bounded time for it.

What happens is journalled (and logged): ``cast_set`` / ``cast_stopped`` when the target
changes, ``cast_delivered`` when data first reaches a target (or again after failures),
``cast_failed`` with the reason — a path the wallboard does not know (404), a refused token
(401/403), a wallboard that does not answer, no wallboard URL — once per distinct reason, not
once per cycle. The token is sent as a header and never journalled or logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from tradeexecutor.cast import CastConfig, parse_target, target_url
from tradeexecutor.cast.client import put_chart
from tradeexecutor.cast.feed import ChartFeed
from tradeexecutor.errors import ConfigError, StateCorruptError
from tradeexecutor.state import State
from tradeexecutor.store.cast_target import CastTargetFile

__all__ = ["CastSender", "Caster"]

logger = logging.getLogger("tradeexecutor.cast")

#: Receives journal events (the loop's JournalSink): event name and fields.
Journal = Callable[..., None]


class CastSender:
    """The non-blocking sender: one daemon thread, a one-slot mailbox, outcomes journalled once each."""

    def __init__(self, config: CastConfig, journal: Journal,
                 put: Callable[[str, str | None, Mapping[str, Any], float], str | None] = put_chart) -> None:
        self.config = config
        self.journal = journal
        self._put = put
        self._cond = threading.Condition()
        self._mail: tuple[str, str, dict[str, Any]] | None = None  # (target, url, data)
        self._busy = False
        self._closing = False
        self._target: str | None = None  # the current target; sends to another are dropped
        self._last_reason: str | None = None
        self._delivered_to: str | None = None
        #: Sends that reached the wallboard, and that failed.
        self.delivered = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="cast-sender", daemon=True)
        self._thread.start()

    def retarget(self, target: str | None) -> None:
        """From now on only data for ``target`` is sent; anything waiting for another is dropped."""
        with self._cond:
            self._target = target
            if self._mail is not None and self._mail[0] != target:
                self._mail = None
            self._last_reason = None
            self._delivered_to = None

    def send(self, target: str, url: str, data: dict[str, Any]) -> None:
        """Queue ``data`` for ``url`` (replacing data not sent yet) and return at once."""
        with self._cond:
            if self._closing or target != self._target:
                return
            self._mail = (target, url, data)
            self._cond.notify()

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is waiting or being sent (at most ``timeout``); True when done."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._mail is not None or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float) -> None:
        """Send what is waiting (bounded by ``timeout``), then stop the thread."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._mail = None
            self._cond.notify_all()
        self._thread.join(1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._mail is None and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                mail, self._mail = self._mail, None
                self._busy = True
            assert mail is not None
            target, url, data = mail
            try:
                reason = self._put(url, self.config.token, data, self.config.timeout_seconds)
            except Exception as exc:  # noqa: BLE001 - the sender must outlive any failure to send
                logger.exception("cast to %s failed", target)
                reason = f"{type(exc).__name__}: {exc}"
            self._report(target, url, reason)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _report(self, target: str, url: str, reason: str | None) -> None:
        """Journal the first delivery and each new reason for failing (not every repeat)."""
        with self._cond:
            if target != self._target:
                return
            if reason is None:
                self.delivered += 1
                first = self._delivered_to != target
                self._delivered_to, self._last_reason = target, None
            else:
                self.failed += 1
                first = reason != self._last_reason
                self._last_reason, self._delivered_to = reason, None
        if not first:
            logger.debug("cast to %s: %s", target, reason or "delivered")
            return
        if reason is None:
            self.journal("cast_delivered", target=target, url=url)
        else:
            self.journal("cast_failed", target=target, url=url, reason=reason)


class Caster:
    """The executor's cast target and when to send (see the module docstring); used on the loop's thread."""

    def __init__(self, config: CastConfig, target_file: CastTargetFile, journal: Journal, feed: ChartFeed, *,
                 title: str, source: Mapping[str, Any], last_bars: Callable[[int], dict[str, int]],
                 monotonic: Callable[[], float] = time.monotonic, now: Callable[[], datetime] | None = None,
                 sender: CastSender | None = None) -> None:
        self.config = config
        self.file = target_file
        self.journal = journal
        self.feed = feed
        self.title = title
        self.source = dict(source)
        self._last_bars = last_bars
        self._monotonic = monotonic
        self._now = now
        self.sender = sender or CastSender(config, journal)
        #: The current target (None: not casting).
        self.target: str | None = None
        self._url: str | None = None
        self._signature: tuple[int, int, int] | None = None
        self._sent_key: tuple[Any, ...] | None = None
        self._last_send: float | None = None

    # -- the target ------------------------------------------------------------------------------

    def load(self) -> None:
        """Read cast.json at start-up (a damaged one is journalled and left alone: not casting)."""
        self._signature = self.file.signature()
        try:
            record = self.file.read()
        except StateCorruptError as exc:
            self.journal("cast_failed", target=None, reason=str(exc))
            return
        if record is not None and record.target is not None:
            self._apply(record.target, by=record.by or self.file.path.name, announce=True)

    def check_file(self) -> None:
        """Take up a target written to cast.json since it was last read (by ``runs cast``)."""
        signature = self.file.signature()
        if signature == self._signature:
            return
        self._signature = signature
        try:
            record = self.file.read()
        except StateCorruptError as exc:
            self.journal("cast_failed", target=self.target, reason=str(exc))
            return
        target = record.target if record is not None else None
        if target != self.target:
            self._apply(target, by=(record.by if record else "") or self.file.path.name, announce=True)

    def set_target(self, text: str | None, by: str = "control") -> None:
        """Cast to ``text`` from now on (None, "" or "-": stop), recorded in cast.json; from a control command."""
        try:
            target = parse_target(text)
        except ConfigError as exc:
            self.journal("cast_failed", target=text, reason=str(exc))
            return
        try:
            current = self.file.read()
            if current is None or current.target != target:
                self.file.write(target, by, self._now() if self._now else None)
            self._signature = self.file.signature()
        except (StateCorruptError, OSError) as exc:
            self.journal("cast_failed", target=target, reason=f"cannot record the target: {exc}")
        self._apply(target, by=by, announce=target != self.target)

    def _apply(self, target: str | None, *, by: str, announce: bool) -> None:
        self.target = target
        self._sent_key = None
        self._last_send = None
        self.sender.retarget(target)
        self._url = None
        if target is None:
            if announce:
                self.journal("cast_stopped", by=by)
            return
        try:
            self._url = target_url(target, self.config.wallboard_url)
        except ValueError as exc:
            self.journal("cast_failed", target=target, reason=str(exc))
            return
        if announce:
            self.journal("cast_set", target=target, url=self._url, by=by)

    # -- sending ---------------------------------------------------------------------------------

    def after_job(self, state: State, step: int, *, final: bool = False, status: str | None = None) -> None:
        """Take up a changed cast.json; send new chart data when due (always at the end of a run)."""
        self.check_file()
        if self.target is None or self._url is None or step < 0:
            return
        if not final and self._last_send is not None and \
                self._monotonic() - self._last_send < self.config.min_seconds:
            return
        key = self.feed.update(state, self._last_bars(step))
        if self.feed.empty or (key == self._sent_key and not final):
            return
        source = {**self.source, **({"status": status} if status else {})}
        self.sender.send(self.target, self._url, self.feed.data(self.title, source))
        self._sent_key = key
        self._last_send = self._monotonic()

    def close(self, timeout: float | None = None) -> None:
        """Let the last data go (bounded), then stop the sender."""
        self.sender.close(self.config.timeout_seconds if timeout is None else timeout)

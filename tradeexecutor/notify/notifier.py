"""Notifier: takes executor events (name, level, fields) and hands notifications to every channel's sender.

Called after the journal wrote an event (and by the daemon's health watch). Each call formats the
event (``message``), asks the policy (``policy``: switches, rate limit) and puts the message on
each channel's queue (``sender``); it never waits for the network and never raises — a bug in
formatting is logged, not allowed to stop a trading loop. A small ticker thread turns ended
cool-down windows into digests. ``close`` flushes: digests of everything still held back, then
what the queues hold, within ``NotifyConfig.flush_seconds``.

Example::

    notifier = Notifier(NotifyConfig(), channels_from_env(os.environ), source="sma_crossover")
    notifier.start()
    notifier("order_filled", "info", {"symbol": "GOOG", "quantity": 10, "price": 101.5})
    notifier.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tradeexecutor.notify.channels import channels_from_env
from tradeexecutor.notify.config import NotifyConfig
from tradeexecutor.notify.counters import NotifyCounters
from tradeexecutor.notify.message import Message, format_event
from tradeexecutor.notify.policy import Decision, Policy
from tradeexecutor.notify.sender import ChannelSender, Transport

__all__ = ["Notifier"]

logger = logging.getLogger("tradeexecutor.notify")


class Notifier:
    """Fans executor events out to channels through the policy; see the module docstring."""

    def __init__(self, config: NotifyConfig, channels: Sequence[Transport], *, source: str,
                 monotonic: Callable[[], float] = time.monotonic, tick_seconds: float = 1.0) -> None:
        self.config = config
        self.source = source
        self.counters = NotifyCounters()
        self.policy = Policy(config.events, config.cooldown_seconds, monotonic)
        self.senders = [ChannelSender(channel, self.counters, config.queue_size) for channel in channels]
        self._tick_seconds = tick_seconds
        self._stopped = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="notify-digests", daemon=True)
        self._started = False
        self._closed = False

    @classmethod
    def from_env(cls, config: NotifyConfig, env: Mapping[str, str], *, source: str,
                 monotonic: Callable[[], float] = time.monotonic) -> Notifier | None:
        """A notifier for the channels configured in ``env``, None when there are none; ConfigError on a bad URL."""
        channels = channels_from_env(env)
        return cls(config, channels, source=source, monotonic=monotonic) if channels else None

    def describe(self) -> list[str]:
        """``VARIABLE (Service)`` of each channel: how logs and /status name channels (never by URL)."""
        return [f"{sender.transport.variable} ({sender.transport.service})" for sender in self.senders]

    def start(self) -> None:
        """Start the senders and the digest ticker."""
        if self._started:
            return
        self._started = True
        for sender in self.senders:
            sender.start()
        self._ticker.start()
        logger.info("notifications to %s; events: %s; cool-down %gs", ", ".join(self.describe()) or "no channel",
                    ", ".join(sorted(self.config.events)) or "none", self.config.cooldown_seconds)

    def __call__(self, event: str, level: str, fields: Mapping[str, Any]) -> None:
        """Notify about one executor event if its kind is switched on and not rate limited; never raises."""
        try:
            message = format_event(event, fields, source=self.source, status_url=self.config.status_url)
            if message is not None:
                self.submit(message)
        except Exception:  # noqa: BLE001 - a notification bug must never stop trading; it is logged in full
            logger.exception("notification for event %r failed before sending", event)

    def submit(self, message: Message) -> None:
        """Send a formatted message through the policy (also for messages that are not journal events)."""
        decision = self.policy.decide(message)
        if decision is Decision.send:
            self._fan_out(message)
        elif decision is Decision.suppressed:
            self.counters.add("", message.kind, "suppressed")

    def tick(self) -> None:
        """Send the digests of cool-down windows that have ended."""
        for digest in self.policy.due():
            self._fan_out(digest)

    def counts(self) -> dict[tuple[str, str, str], int]:
        """``(channel, kind, outcome) → count`` (channel ``""`` for suppressed); for /metrics."""
        return self.counters.snapshot()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every channel has sent what is queued (tests, and nothing else needs it)."""
        deadline = time.monotonic() + timeout
        return all(sender.wait_idle(max(0.0, deadline - time.monotonic())) for sender in self.senders)

    def close(self) -> None:
        """Flush digests and queues within ``flush_seconds``, then stop; what is left is counted as dropped."""
        if self._closed:
            return
        self._closed = True
        self._stopped.set()
        for digest in self.policy.drain():
            self._fan_out(digest)
        deadline = time.monotonic() + self.config.flush_seconds
        left = sum(sender.close(max(0.0, deadline - time.monotonic())) for sender in self.senders)
        if left:
            logger.warning("%d notification(s) not sent within --notify-flush-seconds %g", left,
                           self.config.flush_seconds)

    def _fan_out(self, message: Message) -> None:
        for sender in self.senders:
            sender.put(message)

    def _tick_loop(self) -> None:
        while not self._stopped.wait(self._tick_seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the digest ticker must outlive a bug in one digest
                logger.exception("notification digest failed")

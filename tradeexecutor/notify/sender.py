"""The non-blocking sender: one bounded queue and one daemon thread per channel, so no channel delays a cycle.

:meth:`ChannelSender.put` only appends to a queue and returns; the channel's own thread does the
network call. A slow or dead channel therefore holds up nothing but its own queue — not the
loop, not the other channels. A full queue drops the oldest *low-priority* message (fills,
triggers, summaries) to make room, and only when every queued message matters (crash, safe
mode, health, risk, reconciliation) the oldest of those; each drop is counted. A failed send is
logged by variable name and service, never the URL, and counted; it never raises.

Shutdown (:meth:`ChannelSender.close`) stops taking messages and lets the thread send what is
queued until a deadline; what is left then is counted as dropped — and so is a message still being
sent at the deadline (its outcome is unknown to the notifier, which gives up waiting for it). Each
message is counted exactly once: whichever of the delivery thread and ``close`` settles a message
first counts it, under the queue's lock, so a send that ends after the deadline adds nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Protocol

from tradeexecutor.notify.counters import NotifyCounters
from tradeexecutor.notify.message import Message

__all__ = ["ChannelSender", "Transport"]

logger = logging.getLogger("tradeexecutor.notify")


class Transport(Protocol):
    """What a sender needs of a channel (notify.channels.Channel is one)."""

    @property
    def name(self) -> str: ...

    @property
    def variable(self) -> str: ...

    @property
    def service(self) -> str: ...

    def send(self, message: Message) -> str | None:
        """Deliver; None on success, else the reason (with no secret in it). Must not raise."""
        ...


class ChannelSender:
    """A bounded queue and a daemon thread delivering to one channel."""

    def __init__(self, transport: Transport, counters: NotifyCounters, capacity: int) -> None:
        self.transport = transport
        self.counters = counters
        self.capacity = capacity
        self._queue: deque[Message] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._sending = False
        #: The message the thread is sending, until it or close() has counted it (guarded by _cond).
        self._in_flight: Message | None = None
        self._thread = threading.Thread(target=self._run, name=f"notify-{transport.name}", daemon=True)

    def start(self) -> None:
        """Start the delivery thread."""
        self._thread.start()

    def put(self, message: Message) -> None:
        """Queue a message without waiting; makes room by dropping (and counting) one when full."""
        with self._cond:
            if self._closing:
                self._drop(message, "the notifier is shutting down")
                return
            if len(self._queue) >= self.capacity:
                victim = self._victim(message)
                self._drop(victim, f"the queue is full ({self.capacity})")
                if victim is message:
                    return
                self._queue.remove(victim)
            self._queue.append(message)
            self._cond.notify()

    def queued(self) -> int:
        """Messages waiting (not counting one being sent)."""
        with self._cond:
            return len(self._queue)

    def pending(self) -> int:
        """Messages queued or being sent."""
        with self._cond:
            return len(self._queue) + (1 if self._sending else 0)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent; False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float) -> int:
        """Stop taking messages, send what is queued for up to ``timeout`` seconds; returns how many were left."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            abandoned, self._in_flight = self._in_flight, None
        for message in left:
            self._drop(message, "still queued when the shutdown deadline passed")
        if abandoned is not None:
            self._drop(abandoned, "still being sent when the shutdown deadline passed (its outcome is unknown)")
        return len(left) + (1 if abandoned is not None else 0)

    def _victim(self, incoming: Message) -> Message:
        """What a full queue gives up: its oldest low-priority message, else the newcomer if low, else the oldest."""
        for queued in self._queue:
            if not queued.high_priority:
                return queued
        return incoming if not incoming.high_priority else self._queue[0]

    def _drop(self, message: Message, why: str) -> None:
        self.counters.add(self.transport.name, message.kind, "dropped")
        logger.warning("notification %r via %s (%s) dropped: %s", message.kind, self.transport.variable,
                       self.transport.service, why)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                message = self._queue.popleft()
                self._sending = True
                self._in_flight = message
            reason: str | None = "the delivery thread stopped"
            try:
                reason = self._send(message)
            finally:
                with self._cond:
                    mine = self._in_flight is message  # else close() gave up on it and counted it already
                    self._in_flight = None
                    if mine:
                        self._count(message, reason)
                    self._sending = False
                    self._cond.notify_all()

    def _send(self, message: Message) -> str | None:
        try:
            return self.transport.send(message)
        except Exception as error:  # noqa: BLE001 - a transport that breaks its promise still must not kill the thread
            return f"{type(error).__name__}"

    def _count(self, message: Message, reason: str | None) -> None:
        if reason is None:
            self.counters.add(self.transport.name, message.kind, "sent")
            logger.debug("notification %r sent via %s (%s)", message.kind, self.transport.variable,
                         self.transport.service)
        else:
            self.counters.add(self.transport.name, message.kind, "failed")
            logger.warning("notification %r via %s (%s) failed: %s", message.kind, self.transport.variable,
                           self.transport.service, reason)

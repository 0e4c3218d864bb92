"""NotifyConfig: which events notify, how often, and how long shutdown waits; frozen and validated once.

The channel URLs are *not* here: they carry tokens, so they come only from environment variables
(``notify.channels``) and never sit in a settings object that could be printed or serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time

from tradeexecutor.config import check_finite_fields
from tradeexecutor.errors import ConfigError

__all__ = ["EVENT_KINDS", "NotifyConfig", "parse_event_switches", "parse_summary_time"]

#: Every kind of notification, in the order the docs list them. One switch each.
EVENT_KINDS: tuple[str, ...] = (
    "crash",
    "safe_mode",
    "health",
    "order_filled",
    "order_rejected",
    "trigger_fired",
    "reconciliation_mismatch",
    "risk_limit_hit",
    "run_completed",
    "daily_summary",
)


def parse_event_switches(text: str) -> frozenset[str]:
    """``"all"``, ``"none"``, ``"crash,health"`` or ``"all,-order_filled"`` → the enabled kinds.

    Names are separated by commas or spaces; ``-name`` switches one off again, so turning off
    one noisy kind does not mean listing the nine others.
    """
    enabled: set[str] = set()
    for word in text.replace(",", " ").split():
        off = word.startswith("-")
        name = word[1:] if off else word
        names = set(EVENT_KINDS) if name == "all" else set() if name == "none" else {name}
        unknown = names - set(EVENT_KINDS)
        if unknown:
            raise ConfigError(f"--notify-events: unknown event {name!r}; use all, none or any of "
                              f"{', '.join(EVENT_KINDS)} (a leading - switches one off)")
        enabled = enabled - names if off else enabled | names
    return frozenset(enabled)


def parse_summary_time(text: str) -> time:
    """``"HH:MM"`` (UTC) → a time; raises ConfigError naming the option."""
    try:
        hours, minutes = (int(part) for part in text.strip().split(":"))
        return time(hours, minutes)
    except ValueError:
        raise ConfigError(f"--notify-summary-time {text!r} must be a UTC time of day as HH:MM, e.g. 07:30") from None


@dataclass(frozen=True)
class NotifyConfig:
    """Settings of the notifier (every field has a ``start`` option and a ``TRADEEXECUTOR_NOTIFY_*`` variable)."""

    #: The kinds of event that send a notification (EVENT_KINDS); default all.
    events: frozenset[str] = field(default_factory=lambda: frozenset(EVENT_KINDS))
    #: After a notification, similar ones (same kind and subject) within this many seconds are held back
    #: and counted; when the window ends one digest says how many were suppressed. 0 sends every one.
    cooldown_seconds: float = 300.0
    #: Messages waiting per channel; when full the oldest low-priority message is dropped (and counted).
    queue_size: int = 100
    #: UTC time of day of the daily summary.
    summary_time: time = time(0, 0)
    #: At shutdown, how long to keep sending what is still queued.
    flush_seconds: float = 5.0
    #: Address operators reach the webhook at, for the /status link in crash messages; empty: no link.
    public_url: str = ""

    def __post_init__(self) -> None:
        check_finite_fields(self, {"cooldown_seconds": "--notify-cooldown-seconds",
                                   "flush_seconds": "--notify-flush-seconds"})
        unknown = set(self.events) - set(EVENT_KINDS)
        if unknown:
            raise ConfigError(f"unknown notification events {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(EVENT_KINDS)}")
        object.__setattr__(self, "events", frozenset(self.events))
        if self.cooldown_seconds < 0:
            raise ConfigError(f"--notify-cooldown-seconds {self.cooldown_seconds} must not be negative (0: no limit)")
        if self.queue_size < 1:
            raise ConfigError(f"--notify-queue-size {self.queue_size} must be at least 1")
        if self.flush_seconds < 0:
            raise ConfigError(f"--notify-flush-seconds {self.flush_seconds} must not be negative")
        object.__setattr__(self, "public_url", self.public_url.strip().rstrip("/"))

    @property
    def status_url(self) -> str:
        """The /status link of crash messages, empty without a public URL."""
        return f"{self.public_url}/status" if self.public_url else ""

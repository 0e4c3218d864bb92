"""NotifyConfig: which events notify, how often, and how long shutdown waits; frozen and validated once.

The channel URLs are *not* here: they carry tokens, so they come only from environment variables
(``notify.channels``) and never sit in a settings object that could be printed or serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from tradeexecutor.config import check_settings, setting
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

    events: frozenset[str] = setting(
        factory=lambda: frozenset(EVENT_KINDS), flag="--notify-events", parse=parse_event_switches, text_default="all",
        help=f"Events that send a notification: all, none, or names ({', '.join(EVENT_KINDS)}) "
             "separated by commas; -name switches one off (all,-order_filled). Channels come from the "
             "TRADEEXECUTOR_NOTIFY_*_URL variables (docs/notifications.md).")
    cooldown_seconds: float = setting(
        300.0, flag="--notify-cooldown-seconds", unit="seconds", minimum=0, hint="0: no limit",
        help="After a notification, similar ones (same event and subject) are held back this long and then summed "
             "up in one digest; 0 sends every one.")
    queue_size: int = setting(100, flag="--notify-queue-size", minimum=1,
                              help="Notifications waiting per channel; when full the oldest low-priority one is "
                                   "dropped (and counted in /metrics).")
    summary_time: time = setting(time(0, 0), flag="--notify-summary-time", parse=parse_summary_time,
                                 text_default="00:00", help="UTC time of day (HH:MM) of the daily summary "
                                                            "notification.")
    flush_seconds: float = setting(5.0, flag="--notify-flush-seconds", unit="seconds", minimum=0,
                                   help="At shutdown, how long to keep sending queued notifications.")
    public_url: str = setting("", flag="--public-url", computed_default=True,
                              help="Address operators reach the webhook at, for links in notifications (crash → "
                                   "/status). Default: http://HOST:PORT.")

    def __post_init__(self) -> None:
        check_settings(self)
        unknown = set(self.events) - set(EVENT_KINDS)
        if unknown:
            raise ConfigError(f"unknown notification events {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(EVENT_KINDS)}")
        object.__setattr__(self, "events", frozenset(self.events))
        object.__setattr__(self, "public_url", self.public_url.strip().rstrip("/"))

    @property
    def status_url(self) -> str:
        """The /status link of crash messages, empty without a public URL."""
        return f"{self.public_url}/status" if self.public_url else ""

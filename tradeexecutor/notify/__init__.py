"""Notifications: tell an operator what the executor did, through apprise, without ever slowing a cycle.

Modules, one job each:

- ``config``    NotifyConfig (events switched on, cool-down, queue size, summary time, flush deadline);
- ``message``   executor event → notification kind, subject and text;
- ``policy``    per-event switches, and one message per kind and subject per cool-down window plus a digest;
- ``channels``  channel URLs from environment variables, checked with apprise (the only module importing it);
- ``sender``    a bounded queue and a daemon thread per channel; drops and failures counted, never raised;
- ``counters``  sent / failed / dropped / suppressed counts for /metrics;
- ``notifier``  Notifier, the one object the daemon calls with (event, level, fields).

Layer 6: imports only config, errors, timeframe and state below it; the daemon feeds it, the CLI
wires its counts into the webhook's /metrics.
"""

from __future__ import annotations

from tradeexecutor.notify.channels import CHANNEL_KINDS, Channel, ChannelKind, channels_from_env
from tradeexecutor.notify.config import EVENT_KINDS, NotifyConfig, parse_event_switches, parse_summary_time
from tradeexecutor.notify.counters import OUTCOMES, NotifyCounters
from tradeexecutor.notify.message import JOURNAL_EVENT_KINDS, Message, format_event
from tradeexecutor.notify.notifier import Notifier
from tradeexecutor.notify.policy import Decision, Policy
from tradeexecutor.notify.sender import ChannelSender, Transport

__all__ = [
    "CHANNEL_KINDS",
    "EVENT_KINDS",
    "JOURNAL_EVENT_KINDS",
    "OUTCOMES",
    "Channel",
    "ChannelKind",
    "ChannelSender",
    "Decision",
    "Message",
    "Notifier",
    "NotifyConfig",
    "NotifyCounters",
    "Policy",
    "Transport",
    "channels_from_env",
    "format_event",
    "parse_event_switches",
    "parse_summary_time",
]

"""Settings of the webhook app, built once by the CLI and read by every route module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tradeexecutor.control import ActionReply, ActionRequest
from tradeexecutor.layout import RunFiles
from tradeexecutor.runstate.health import HealthLimits
from tradeexecutor.runstate.logbuffer import RingBufferHandler

#: Receives a control command name (stop, pause, resume, cycle_now) for the loop's queue; False when refused.
CommandSink = Callable[[str], bool]
#: Receives an operator job (close, close_all, reload_params) for the loop's queue; the loop answers through the reply.
ActionSink = Callable[[ActionRequest], ActionReply]
#: Receives a new cast target (a wallboard path or URL, None to stop) for the loop's queue; False when refused.
CastSink = Callable[[str | None], bool]

#: Counts of the executor's notifications, ``(channel, event, outcome) → n`` (channel "" for suppressed).
NotificationCounts = Callable[[], Mapping[tuple[str, str, str], int]]


@dataclass(frozen=True)
class WebhookOptions:
    """What the routes need beyond RunState; values, not environment lookups, so tests set them directly."""

    #: Serve the strategy source at /source.
    source_enabled: bool = True
    #: The executor's state directory, for files the loop publishes (journal, state snapshot, orders).
    files: RunFiles | None = None
    #: Basic-auth username; auth is on when both username and password are set.
    auth_username: str | None = field(default=None, repr=False)
    #: Basic-auth password (read from the environment by the CLI; never logged or shown).
    auth_password: str | None = field(default=None, repr=False)
    #: Origins allowed by CORS; empty means no CORS headers at all.
    cors_origins: tuple[str, ...] = ()
    #: Where control requests go; None when the app runs without a loop (tests, `metrics serve`).
    command_sink: CommandSink | None = None
    #: Where ``POST /control/close|close-all|reload-params`` go; None when the app runs without a loop.
    action_sink: ActionSink | None = None
    #: Seconds a job action waits for the loop's answer before answering 202 (the journal tells the rest).
    action_wait_seconds: float = 10.0
    #: Where ``POST /control/cast`` sends the new target; None when the app runs without a loop.
    cast_sink: CastSink | None = None
    #: When /healthz fails: the next cycle this late, market data this old (the settings' own defaults).
    health_limits: HealthLimits = field(default_factory=HealthLimits)
    #: Recent technical log records served by /logs/technical; None disables that route (404).
    log_buffer: RingBufferHandler | None = field(default=None, repr=False, compare=False)
    #: The notifier's counts for /metrics; None when no notification channel is configured.
    notification_counts: NotificationCounts | None = field(default=None, repr=False, compare=False)

    @property
    def auth_enabled(self) -> bool:
        """Auth is on only when both halves of the credentials are present."""
        return bool(self.auth_username) and bool(self.auth_password)

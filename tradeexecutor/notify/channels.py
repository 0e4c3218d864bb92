"""Notification channels from environment variables, checked with apprise; the only module that imports apprise.

One variable per channel, each holding one apprise URL (``CHANNEL_KINDS``)::

    TRADEEXECUTOR_NOTIFY_TELEGRAM_URL   tgram://BOT_TOKEN/CHAT_ID
    TRADEEXECUTOR_NOTIFY_DISCORD_URL    discord://WEBHOOK_ID/WEBHOOK_TOKEN
    TRADEEXECUTOR_NOTIFY_SLACK_URL      slack://TOKEN_A/TOKEN_B/TOKEN_C/#channel
    TRADEEXECUTOR_NOTIFY_EMAIL_URL      mailtos://user:password@smtp.example.com?to=ops@example.com
    TRADEEXECUTOR_NOTIFY_WEBHOOK_URL    json://host:port/path (jsons:// for https): a generic JSON POST

The URLs carry tokens, so they are read only from the environment (never an option: the
command line shows in ``ps``), checked at start-up — a URL apprise cannot parse, or one of the
wrong service for its variable, is refused naming the *variable*, never echoing the value — and
afterwards known only to the :class:`Channel` holding it. Everything the process says about a
channel uses its variable name and apprise's service name.

apprise logs through the ``apprise`` logger, and some of its lines (debug ones, and errors that
quote a request) contain the URL or the token; so do urllib3's debug lines (the request path).
Those records never reach the process's handlers: the ``apprise`` logger does not propagate, and
records the HTTP libraries make inside a channel call are held back. Their warnings and errors
become the failure reason, with every piece of the URL blanked out.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tradeexecutor.errors import ConfigError
from tradeexecutor.notify.message import Message

__all__ = ["CHANNEL_KINDS", "Channel", "ChannelKind", "channels_from_env"]

#: How a failure reason shows a blanked-out piece of a channel's URL.
_HIDDEN = "***"

#: Pieces of a URL shorter than this are not worth hiding (and would blank ordinary words).
_MIN_SECRET_PIECE = 4


@dataclass(frozen=True)
class ChannelKind:
    """A channel a person can configure: its name, its variable and the apprise service it must be."""

    #: Short name, the ``channel`` label in /metrics.
    name: str
    #: Environment variable holding the URL.
    variable: str
    #: apprise's service name for URLs of this channel.
    service: str
    #: The URL's form, for error messages and docs.
    example: str


#: Every channel, in the order the docs list them.
CHANNEL_KINDS: tuple[ChannelKind, ...] = (
    ChannelKind("telegram", "TRADEEXECUTOR_NOTIFY_TELEGRAM_URL", "Telegram", "tgram://BOT_TOKEN/CHAT_ID"),
    ChannelKind("discord", "TRADEEXECUTOR_NOTIFY_DISCORD_URL", "Discord", "discord://WEBHOOK_ID/WEBHOOK_TOKEN"),
    ChannelKind("slack", "TRADEEXECUTOR_NOTIFY_SLACK_URL", "Slack", "slack://TOKEN_A/TOKEN_B/TOKEN_C/#channel"),
    ChannelKind("email", "TRADEEXECUTOR_NOTIFY_EMAIL_URL", "E-Mail",
                "mailtos://user:password@smtp.example.com?to=ops@example.com"),
    ChannelKind("webhook", "TRADEEXECUTOR_NOTIFY_WEBHOOK_URL", "JSON", "json://host:port/path"),
)

#: apprise's notification type per message severity.
_NOTIFY_TYPES = {"info": "info", "success": "success", "warning": "warning", "failure": "failure"}


class _SendLog(logging.Filter):
    """Keeps the log records made inside a channel call away from the process's handlers.

    While :meth:`capture` is open on a thread, records of that thread reaching the ``apprise``
    logger (through :class:`_Collector`) or the HTTP libraries' loggers (this filter is attached
    to each) are not passed on; their warnings and errors are collected for the failure reason.
    Records of other threads, and outside a channel call, go on as usual.
    """

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        lines: list[str] | None = getattr(self._local, "lines", None)
        if lines is None:
            return True
        if record.levelno >= logging.WARNING:
            try:
                lines.append(record.getMessage())
            except Exception:  # noqa: BLE001 - a bad log call inside a library must not break a send
                lines.append(record.levelname)
        return False

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        """The warnings and errors logged inside the ``with`` block on this thread."""
        self._local.lines = []
        try:
            yield self._local.lines
        finally:
            self._local.lines = None


class _Collector(logging.Handler):
    """The ``apprise`` logger's only handler: hands its records to the capture, drops them otherwise."""

    def __init__(self, send_log: _SendLog) -> None:
        super().__init__(logging.WARNING)
        self.send_log = send_log

    def emit(self, record: logging.LogRecord) -> None:
        self.send_log.filter(record)


_SEND_LOG = _SendLog()
#: Loggers of the libraries apprise sends through; their debug lines show request paths (tokens).
_HTTP_LOGGER_PREFIXES = ("urllib3", "requests")
_setup_lock = threading.Lock()
_apprise_module: Any = None


def _apprise() -> Any:
    """The apprise module, imported on first use, with its and its HTTP libraries' logging kept in check."""
    global _apprise_module
    with _setup_lock:
        if _apprise_module is None:
            try:
                import apprise
                import requests  # noqa: F401 - apprise sends through it; its loggers must exist to be filtered
            except ImportError:
                raise ConfigError("notification channels are configured but apprise is not installed: "
                                  "pip install apprise (or unset the TRADEEXECUTOR_NOTIFY_*_URL variables)") from None
            log = logging.getLogger("apprise")  # apprise.logger.LOGGER_NAME
            log.propagate = False
            log.setLevel(logging.WARNING)
            log.addHandler(_Collector(_SEND_LOG))
            # A logger's filters see only records made on it, so each module's logger gets one (all exist
            # once requests is imported).
            for name in list(logging.Logger.manager.loggerDict):
                if name.split(".")[0] in _HTTP_LOGGER_PREFIXES:
                    logging.getLogger(name).addFilter(_SEND_LOG)
            _apprise_module = apprise
        return _apprise_module


def _secret_pieces(url: str) -> list[str]:
    """Every part of a URL that may be a secret, raw and (un)quoted, longest first."""
    rest = url.split("://", 1)[-1]
    pieces = {url, rest, *(piece for piece in re.split(r"[/:@?&=#,;+\s]+", rest) if len(piece) >= _MIN_SECRET_PIECE)}
    variants = set(pieces)
    for piece in pieces:
        variants.add(urllib.parse.unquote(piece))
        variants.add(urllib.parse.quote(piece, safe=""))
    return sorted((p for p in variants if len(p) >= _MIN_SECRET_PIECE), key=len, reverse=True)


class Channel:
    """One configured channel. It holds the URL and sends; it never shows the URL (repr, errors, reasons)."""

    def __init__(self, kind: ChannelKind, plugin: Any, url: str) -> None:
        self.kind = kind
        self._plugin = plugin
        self._secrets = _secret_pieces(url)

    @property
    def name(self) -> str:
        """The channel's short name (telegram, discord, slack, email, webhook)."""
        return self.kind.name

    @property
    def variable(self) -> str:
        """The environment variable the URL came from."""
        return self.kind.variable

    @property
    def service(self) -> str:
        """apprise's name for the service (Telegram, JSON, ...)."""
        return self.kind.service

    def __repr__(self) -> str:
        return f"Channel({self.variable}, {self.service})"

    def redact(self, text: str) -> str:
        """``text`` with every piece of this channel's URL blanked out."""
        for secret in self._secrets:
            text = text.replace(secret, _HIDDEN)
        return text

    def send(self, message: Message) -> str | None:
        """Deliver one message; None when the service accepted it, else why not (never the URL). Never raises."""
        apprise = _apprise()
        with _SEND_LOG.capture() as lines:
            try:
                accepted = bool(self._plugin.notify(
                    body=message.body or message.title, title=message.title,
                    notify_type=apprise.NotifyType(_NOTIFY_TYPES.get(message.severity, "info"))))
            except Exception as error:  # noqa: BLE001 - a broken channel is counted and logged, never a crash
                return self.redact(f"{type(error).__name__}: {error}")[:500]
        if accepted:
            return None
        reason = "; ".join(line.strip() for line in lines if line.strip()) or "the service did not accept it"
        return self.redact(reason)[:500]


def _make_channel(kind: ChannelKind, url: str) -> Channel:
    """Parse and check one URL; refuse it naming the variable, never showing the value."""
    apprise = _apprise()
    asset = apprise.AppriseAsset(app_id="tradeexecutor", storage_mode="memory")
    with _SEND_LOG.capture():
        plugin = apprise.Apprise.instantiate(url, asset=asset, suppress_exceptions=True)
    if plugin is None:
        raise ConfigError(f"{kind.variable} is not a {kind.service} URL apprise understands; expected the form "
                          f"{kind.example} (the value is not shown: it holds a token)")
    service = str(plugin.service_name)
    if service != kind.service:
        raise ConfigError(f"{kind.variable} holds a {service} URL, not a {kind.service} one; expected the form "
                          f"{kind.example}")
    return Channel(kind, plugin, url)


def channels_from_env(env: Mapping[str, str]) -> list[Channel]:
    """The channels whose variable is set (empty ones are skipped); raises ConfigError on a bad URL."""
    return [_make_channel(kind, env[kind.variable].strip()) for kind in CHANNEL_KINDS
            if env.get(kind.variable, "").strip()]

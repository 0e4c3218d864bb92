"""Build a DaemonConfig from flat keyword settings, as the tests' daemon factories take them."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from tradeexecutor.settings import DaemonConfig, FeedConfig

#: The settings that belong to the feed part of the tree (data, start, end, replay_*, follow).
FEED_SETTINGS = frozenset(item.name for item in fields(FeedConfig))


def daemon_config(**settings: Any) -> DaemonConfig:
    """DaemonConfig from flat settings: the feed's own gathered into its FeedConfig, the rest as they are."""
    feed = {name: settings.pop(name) for name in list(settings) if name in FEED_SETTINGS}
    return DaemonConfig(feed=FeedConfig(**feed), **settings)

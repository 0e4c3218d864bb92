"""The fleet wallboard: one page over every executor it is told about, and the charts jobs cast to it.

``tradeexecutor wallboard`` serves it (the CLI wires the app onto the webhook's waitress server).
It talks to executors only over HTTP — their /status, /summary and /healthz — and never imports
the engine, strategies, venues, the daemon, the webhook or the runs package (the CLI hands it a
callable listing the runs folder's executors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradeexecutor import lazy_exports

if TYPE_CHECKING:
    from tradeexecutor.wallboard.app import create_app
    from tradeexecutor.wallboard.charts import ChartStore
    from tradeexecutor.wallboard.poller import Fleet, Poller
    from tradeexecutor.wallboard.settings import ExecutorTarget, WallboardConfig, parse_executors

#: Where each re-exported name lives, imported on first use: the CLI builds the wallboard's options
#: from ``settings`` when any command starts, and must not pay for pyramid then.
_EXPORTS = {"create_app": "app", "ChartStore": "charts", "Fleet": "poller", "Poller": "poller",
            "ExecutorTarget": "settings", "WallboardConfig": "settings", "parse_executors": "settings"}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["ChartStore", "ExecutorTarget", "Fleet", "Poller", "WallboardConfig", "create_app", "parse_executors"]

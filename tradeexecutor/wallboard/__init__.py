"""The fleet wallboard: one page over every executor it is told about, and the charts jobs cast to it.

``tradeexecutor wallboard`` serves it (the CLI wires the app onto the webhook's waitress server).
It talks to executors only over HTTP — their /status, /summary and /healthz — and never imports
the engine, strategies, venues, the daemon, the webhook or the runs package (the CLI hands it a
callable listing the runs folder's executors).
"""

from __future__ import annotations

from tradeexecutor.wallboard.app import create_app
from tradeexecutor.wallboard.charts import ChartStore
from tradeexecutor.wallboard.poller import Fleet, Poller
from tradeexecutor.wallboard.settings import ExecutorTarget, WallboardConfig, parse_executors

__all__ = ["ChartStore", "ExecutorTarget", "Fleet", "Poller", "WallboardConfig", "create_app", "parse_executors"]

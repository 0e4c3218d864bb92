"""The charts jobs cast to, by page and chart name, kept in memory and serialised once per cast.

``put`` checks the chart data (:func:`tradeexecutor.cast.check_chart_data`) and stores it with
its JSON bytes, so reads serve bytes and a page is a join of its charts' bytes. The store is
bounded (:data:`MAX_CHARTS`): a wallboard meant to run for months must not grow without end.
It is not persisted: a restarted wallboard shows each chart again when its job next casts
(a replay or paper executor does after its next cycle; see docs/wallboard.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tradeexecutor.cast import check_chart_data, check_name
from tradeexecutor.web import encode_json

__all__ = ["MAX_CHARTS", "ChartStore", "ChartsFull"]

#: Charts the store holds at most, over all pages.
MAX_CHARTS = 256


class ChartsFull(Exception):
    """A new chart would exceed MAX_CHARTS."""


@dataclass(frozen=True)
class _Chart:
    page: str
    chart: str
    updated_at: datetime
    #: Casts received for this chart since the wallboard started.
    updates: int
    title: str
    source: dict[str, Any]
    #: The chart's JSON as served.
    body: bytes


class ChartStore:
    """Charts by (page, chart); thread-safe, every value immutable once stored."""

    def __init__(self, max_charts: int = MAX_CHARTS) -> None:
        self.max_charts = max_charts
        self._charts: dict[tuple[str, str], _Chart] = {}
        self._lock = threading.Lock()

    def put(self, page: str, chart: str, data: Any, now: datetime | None = None) -> tuple[bool, int]:
        """Store a cast; (created, updates). ValueError for bad names or data, ChartsFull when full."""
        check_name("page", page)
        check_name("chart", chart)
        clean = check_chart_data(data)
        at = now or datetime.now(UTC)
        with self._lock:
            old = self._charts.get((page, chart))
            if old is None and len(self._charts) >= self.max_charts:
                raise ChartsFull(f"the wallboard holds {self.max_charts} charts already; delete one first")
            updates = (old.updates if old else 0) + 1
            body = encode_json({"page": page, "chart": chart, "path": f"/wallboard/{page}/{chart}",
                                "updated_at": at, "updates": updates, **clean})
            self._charts[(page, chart)] = _Chart(page, chart, at, updates, clean["title"], clean["source"], body)
        return old is None, updates

    def delete(self, page: str, chart: str) -> bool:
        """Forget a chart; False when there was none."""
        with self._lock:
            return self._charts.pop((page, chart), None) is not None

    def chart(self, page: str, chart: str) -> bytes | None:
        """One chart's JSON, None when nothing was cast to it."""
        with self._lock:
            found = self._charts.get((page, chart))
        return found.body if found else None

    def page(self, page: str, **extra: Any) -> bytes:
        """``{"page": name, **extra, "charts": [chart, ...]}``, charts in name order (none yet: an empty list)."""
        with self._lock:
            charts = sorted((c for c in self._charts.values() if c.page == page), key=lambda c: c.chart)
        head = encode_json({"page": page, **extra})[:-1]
        return head + b', "charts": [' + b", ".join(c.body for c in charts) + b"]}"

    def index(self) -> dict[str, Any]:
        """Every page with its charts' names, titles, sources and times (no data)."""
        with self._lock:
            charts = sorted(self._charts.values(), key=lambda c: (c.page, c.chart))
        pages: dict[str, list[dict[str, Any]]] = {}
        for c in charts:
            pages.setdefault(c.page, []).append({"chart": c.chart, "path": f"/wallboard/{c.page}/{c.chart}",
                                                 "title": c.title, "source": c.source, "updated_at": c.updated_at,
                                                 "updates": c.updates})
        return {"pages": [{"page": name, "path": f"/wallboard/{name}", "charts": items}
                          for name, items in pages.items()]}

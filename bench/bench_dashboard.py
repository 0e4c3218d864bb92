"""Dashboard page load in headless Chromium: navigation to load event, to data drawn, to chart shown.

Run from the repository root::

    PYTHONPATH=. python bench/bench_dashboard.py [--runs 5] [--chromium /usr/bin/chromium]

Setup (not timed): a real backtest of strategies/sma_crossover.py fills a RunState (summary,
portfolio figures, all eight chart images) the way the daemon does; its positions, orders and
a 200-entry journal are published into a temporary state directory; the webhook app
(``create_app``, every route module) is served by waitress on a free port.

Measured, per navigation, from the page's own Navigation Timing clock (``navigationStart`` = 0):

- **load**: ``loadEventEnd`` (HTML, CSS, JS and favicon loaded, load handlers done);
- **ready**: the dashboard's ``dashboard-ready`` mark (all four JSON endpoints answered and drawn);
- **chart**: the ``dashboard-chart`` mark (the large SVG chart decoded and shown);
- **full**: the latest of the three, the figure the goal applies to (< 1000 ms).

"cold" disables the browser cache (``Network.setCacheDisabled``); "warm" reloads with the cache
on (the versioned CSS/JS come from it, the page revalidates). Median of ``--runs`` navigations,
each from ``about:blank`` in the same tab. Chromium is driven over the DevTools protocol on a
pipe by the client in ``tests/chromium.py``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from chromium import Chromium, Page, find_chromium
from test_dashboard_browser import backtest_runstate
from tradeexecutor.backtest import run_backtest
from tradeexecutor.data.source import load_market
from tradeexecutor.layout import RunFiles
from tradeexecutor.stats import write_trades_csv
from tradeexecutor.store.journal import Journal
from tradeexecutor.store.publish import publish
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.app import ROUTE_MODULES
from tradeexecutor.webhook.options import WebhookOptions

GOAL_MS = 1000.0
STRATEGY = ROOT / "strategies" / "sma_crossover.py"

_TIMINGS = """(() => {
  const t = performance.timing;
  const mark = (name) => { const m = performance.getEntriesByName(name)[0]; return m ? m.startTime : null; };
  const resources = performance.getEntriesByType("resource");
  return {
    load: t.loadEventEnd - t.navigationStart,
    ready: mark("dashboard-ready"),
    chart: mark("dashboard-chart"),
    requests: resources.length + 1,
    bytes: resources.reduce((sum, r) => sum + (r.transferSize || 0), 0)
           + (performance.getEntriesByType("navigation")[0]?.transferSize || 0),
  };
})()"""


def serve_filled_app(directory: Path) -> WebhookServer:
    """A webhook over a backtest's RunState and published files, listening on a free port."""
    strategy = load_strategy(STRATEGY)
    market, _ = load_market([], strategy.instruments)
    state = run_backtest(strategy, market).state
    files = RunFiles(directory / "state")
    publish(state, files, metadata={"name": state.name}, orders_csv_writer=write_trades_csv)
    journal = Journal(files.journal)
    start = datetime.now(UTC) - timedelta(minutes=10)
    for index in range(200):
        journal.append("cycle_completed", at=start + timedelta(seconds=index), cycle=index, duration=0.002)
    runstate = backtest_runstate("bench")
    includes = [m for m in ("tradeexecutor.webhook.files", "tradeexecutor.webhook.logs") if m not in ROUTE_MODULES]
    app = create_app(runstate, options=WebhookOptions(files=files), extra_includes=includes)
    return WebhookServer(app, host="127.0.0.1", port=0).start()


def measure(page: Page, url: str) -> dict[str, Any]:
    """One navigation from about:blank; the timings once the data and the chart are shown."""
    page.goto("about:blank")
    page.goto(url)
    page.wait_for("performance.getEntriesByName('dashboard-ready').length > 0"
                  " && performance.getEntriesByName('dashboard-chart').length > 0", timeout=30)
    timings: dict[str, Any] = page.evaluate(_TIMINGS)
    timings["full"] = max(timings["load"], timings["ready"], timings["chart"])
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="navigations per mode (median reported)")
    parser.add_argument("--chromium", default=None, help="browser executable (default: chromium on PATH)")
    args = parser.parse_args()
    executable = args.chromium or find_chromium()
    if executable is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        server = serve_filled_app(Path(tmp))
        setup_seconds = time.perf_counter() - started
        url = server.url.rstrip("/") + "/"
        try:
            with Chromium(executable) as browser:
                page = browser.new_page()
                page.call("Network.enable")
                measure(page, url)  # first navigation warms the browser process itself, not measured
                results: dict[str, list[dict[str, Any]]] = {}
                for mode, disabled in (("cold", True), ("warm", False)):
                    page.call("Network.setCacheDisabled", {"cacheDisabled": disabled})
                    if not disabled:
                        measure(page, url)  # fill the cache
                    results[mode] = [measure(page, url) for _ in range(args.runs)]
                version = browser.version
        finally:
            server.stop()

    print(f"Dashboard page load, headless {version}, Python {platform.python_version()}, "
          f"{platform.machine()}; median of {args.runs} (min–max); setup {setup_seconds:.1f} s\n")
    print("| cache | load event (ms) | data drawn (ms) | chart shown (ms) | full load (ms) | requests | bytes | goal < 1000 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    ok = True
    def cell(runs: list[dict[str, Any]], key: str) -> str:
        values = [float(run[key]) for run in runs]
        return f"{statistics.median(values):.0f} ({min(values):.0f}–{max(values):.0f})"

    for mode, runs in results.items():

        full = statistics.median(float(run["full"]) for run in runs)
        ok = ok and full < GOAL_MS
        print(f"| {mode} | {cell(runs, 'load')} | {cell(runs, 'ready')} | {cell(runs, 'chart')} | {cell(runs, 'full')} | "
              f"{runs[-1]['requests']} | {runs[-1]['bytes']:,} | {'met' if full < GOAL_MS else 'MISSED'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The dashboard at ``/`` in real headless Chromium against a real server: figures, crash, missing endpoints.

The browser is Debian's ``chromium`` driven over the DevTools protocol on a pipe, by the
client in ``tests/chromium.py`` (shared with the wallboard's browser tests and
``bench/bench_dashboard.py``).

The servers are the real thing: waitress (``WebhookServer``, port 0) over ``create_app`` with
a RunState filled from a real backtest, and the ``tradeexecutor start`` daemon as a subprocess.

Without chromium these tests skip, unless the environment variable CI is set: then they fail,
since CI must prove the dashboard in a browser (``.ci/run`` installs the Debian package).
Set DASHBOARD_SCREENSHOTS=<dir> to keep the screenshots for a human to look at.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chromium import (  # noqa: F401 - browser and chromium_path are fixtures
    Chromium,
    Page,
    assert_nontrivial_png,
    browser,
    chromium_path,
    keep_screenshot,
)
from tradeexecutor.backtest import run_backtest
from tradeexecutor.data.source import load_market
from tradeexecutor.errors import DataError
from tradeexecutor.runstate import RunState, image_key
from tradeexecutor.stats import compute_summary
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.visual import render_all
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.dashboard import ASSETS, CACHE_IMMUTABLE, CACHE_REVALIDATE, load_assets
from tradeexecutor.webhook.options import WebhookOptions

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SMA_STRATEGY = REPO / "strategies" / "sma_crossover.py"
CRASH_STRATEGY = Path(__file__).resolve().parent / "strategies" / "daemon_crash.py"

#: Money figures on /status ``portfolio`` and the data-field showing each.
PORTFOLIO_FIELDS = ("portfolio_value", "cash", "unrealised_pnl", "fees_paid", "open_positions",
                    "orders_planned", "orders_filled", "orders_rejected")
#: /summary statistics the page shows.
SUMMARY_FIELDS = ("final_equity", "total_return", "cagr", "max_drawdown", "sharpe", "win_rate",
                  "trade_count", "buy_and_hold_return")
#: Data-field names the page must carry whatever it shows.
REQUIRED_FIELDS = ("status", "cycles", "portfolio_value", "cash", "unrealised_pnl", "crash-class",
                   "crash-message", "final_equity", "total_return", "positions", "journal", "timeline", "chart")


# =============================================================================================
# Servers and fixtures


def backtest_runstate(executor_id: str = "dashboard-test") -> RunState:
    """A RunState filled the way the daemon fills it, from a real backtest of strategies/sma_crossover.py."""
    strategy = load_strategy(SMA_STRATEGY)
    market, _ = load_market([], strategy.instruments)
    result = run_backtest(strategy, market)
    state = result.state
    closes = {symbol: market.close_series(symbol) for symbol in market.symbols}
    now = datetime.now(UTC)
    runstate = RunState.create(executor_id, mode="backtest", strategy_name=strategy.name,
                               strategy_version=strategy.version, source_code=strategy.source, now=now)
    summary = compute_summary(state, benchmark_prices=closes).to_dict()
    values: dict[str, Any] = {
        "status": "complete",
        "cycles": result.cycles,
        "completed_cycle": state.last_completed_cycle,
        "summary_statistics": summary,
        "executor_running": False,
    }
    if "portfolio" in {f.name for f in fields(RunState)}:
        from tradeexecutor.runstate.figures import figures_from_state

        values["portfolio"] = figures_from_state(state, now=now)
    runstate.update(**values)
    images = render_all(state, closes)
    runstate.set_images({image_key(*key): data for key, data in images.items()}, now)
    return runstate


class Blocker:
    """WSGI middleware answering chosen paths with a JSON error, to play endpoints that are missing or broken."""

    def __init__(self, app: Callable[..., Any], statuses: dict[str, int]) -> None:
        self.app = app
        #: Path → HTTP status to answer instead of the app.
        self.statuses = statuses

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        status = self.statuses.get(environ.get("PATH_INFO", ""))
        if status is None:
            return self.app(environ, start_response)
        reason = {404: "Not Found", 500: "Internal Server Error"}.get(status, "Error")
        body = json.dumps({"error": f"blocked by the test ({status})", "status": status}).encode()
        start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(body)))])
        return [body]


class Served:
    """A running WebhookServer over an app, with its base URL."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.server = WebhookServer(app, host="127.0.0.1", port=0).start()
        self.url = self.server.url.rstrip("/")

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> Any:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def filled_runstate() -> RunState:
    return backtest_runstate()


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """Start servers over apps; all are stopped after the test."""
    started: list[Served] = []

    def start(app: Callable[..., Any]) -> Served:
        served = Served(app)
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def assert_figure(page: Page, name: str, expected: Any) -> None:
    """The figure shows ``expected``: exactly in data-value, and readably in its text."""
    shown = page.field(name)
    if expected is None:
        assert shown["value"] == "" and "missing" in shown["className"], (name, shown)
        return
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        assert shown["value"] == str(expected), (name, shown, expected)
        return
    assert float(shown["value"]) == float(expected), (name, shown, expected)
    # The text is the same number, formatted: strip grouping, signs and units, compare roughly.
    number = re.search(r"-?[\d,]*\.?\d+", shown["text"].replace("\u2212", "-"))
    assert number, (name, shown)
    value = float(number.group().replace(",", ""))
    if "%" in shown["text"]:
        value /= 100
    assert value == pytest.approx(float(expected), abs=0.006, rel=1e-4), (name, shown, expected)


# =============================================================================================
# The routes (no browser needed)


@pytest.fixture
def testapp() -> Any:
    from webtest import TestApp

    return TestApp(create_app(RunState.create("routes", mode="replay")))


def test_page_is_html_with_safe_headers_and_every_field(testapp: Any) -> None:
    response = testapp.get("/")
    assert response.status_int == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == CACHE_REVALIDATE
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "connect-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["ETag"]
    html = response.text
    for name in REQUIRED_FIELDS:
        assert f'data-field="{name}"' in html, name
    assets = load_assets()
    for name in ("dashboard.css", "dashboard.js", "favicon.svg"):
        assert f"static/{name}?v={assets[name].version}" in html


def test_nothing_is_fetched_from_outside() -> None:
    """No absolute URL, protocol-relative URL or import in the page, its style or its script."""
    assets = load_assets()
    for name in ("dashboard.html", "dashboard.css", "dashboard.js"):
        text = assets[name].body.decode("utf-8")
        assert not re.search(r"(?i)\b(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text.replace("//www.w3.org", "")), name
        assert "@import" not in text and "import(" not in text, name
    # Requests go to relative URLs so basic auth and a proxy prefix apply.
    script = assets["dashboard.js"].body.decode("utf-8")
    for path in ('"status"', '"summary"', '"positions?status=open"', "`logs?limit="):
        assert path in script, path
    assert 'fetch("/' not in script


@pytest.mark.parametrize("name", sorted(set(ASSETS) - {"dashboard.html"}))
def test_assets_have_their_content_type_and_cache_headers(testapp: Any, name: str) -> None:
    asset = load_assets()[name]
    versioned = testapp.get(f"/static/{name}?v={asset.version}")
    assert versioned.body == asset.body
    assert versioned.headers["Content-Type"] == ASSETS[name]
    assert versioned.headers["Cache-Control"] == CACHE_IMMUTABLE
    assert versioned.headers["X-Content-Type-Options"] == "nosniff"
    plain = testapp.get(f"/static/{name}")
    assert plain.headers["Cache-Control"] == CACHE_REVALIDATE
    stale = testapp.get(f"/static/{name}?v=0000")
    assert stale.headers["Cache-Control"] == CACHE_REVALIDATE
    revalidated = testapp.get(f"/static/{name}", headers={"If-None-Match": plain.headers["ETag"]}, status=304)
    assert revalidated.body == b""


def test_head_and_wrong_methods(testapp: Any) -> None:
    head = testapp.head("/")
    assert head.status_int == 200 and head.body == b""
    assert testapp.post("/", status=405).json["status"] == 405
    assert testapp.post("/static/dashboard.js", status=405).json["status"] == 405


@pytest.mark.parametrize("path", [
    "/static/", "/static/app.py", "/static/__init__.py", "/static/dashboard.html", "/static/..",
    "/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e%2fapp.py", "/static/%2e%2e/dashboard.py",
    "/static/static/dashboard.js", "/static/dashboard.js/", "/static/DASHBOARD.JS", "/static/dashboard.js%00",
    "/static//etc/passwd", "/dashboard.js", "/index.html",
])
def test_only_known_files_are_served(testapp: Any, path: str) -> None:
    response = testapp.get(path, status="*", expect_errors=True)
    assert response.status_int in (404, 400), (path, response.status)
    assert response.content_type == "application/json"
    assert b"import" not in response.body  # no file content leaked


def test_raw_traversal_paths_over_http(serve: Callable[..., Served]) -> None:
    """Paths a client sends without normalising reach the server as they are, and still get nothing."""
    served = serve(create_app(RunState.create("traversal")))
    host, port = served.url.removeprefix("http://").split(":")
    for raw in ("/static/../webhook/app.py", "/static/..%2F..%2Fpyproject.toml", "/static/%2e%2e/app.py",
                "/static/....//app.py"):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(f"GET {raw} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status_line = answer.split(b"\r\n", 1)[0]
        assert b" 404 " in status_line or b" 400 " in status_line, (raw, status_line)
        assert b"from __future__" not in answer and b"[project]" not in answer


# =============================================================================================
# In the browser


def test_page_shows_what_status_and_summary_return(
    browser: Chromium, filled_runstate: RunState, serve: Callable[..., Served], tmp_path: Path
) -> None:
    served = serve(create_app(filled_runstate))
    page = browser.new_page()
    page.goto(served.url + "/")
    page.wait_refreshes(1)
    page.wait_chart()

    status = served.get_json("/status")
    summary = served.get_json("/summary")
    assert page.field("status")["value"] == status["status"] == "complete"
    assert page.field("strategy_name")["text"] == status["strategy_name"]
    assert_figure(page, "cycles", status["cycles"])
    assert status["cycles"] > 100
    assert_figure(page, "completed_cycle", status["completed_cycle"])
    for name in SUMMARY_FIELDS:
        assert_figure(page, name, summary[name])
    portfolio = status.get("portfolio")
    if portfolio and portfolio.get("updated_at"):
        for name in PORTFOLIO_FIELDS:
            assert_figure(page, name, portfolio[name])
        assert portfolio["portfolio_value"] == pytest.approx(summary["final_equity"])
        assert page.note("portfolio") is None
    else:  # RunState without portfolio figures yet
        assert page.note("portfolio") == "Not available yet."

    # No crash: the panel stays hidden.
    assert page.field("crash-class")["hidden"]
    # The chart is the light SVG, versioned by visualisation_updated_at.
    src = page.evaluate("document.querySelector('[data-field=chart]').currentSrc")
    assert "visualisation?type=large&theme=light&format=svg&v=" in src
    assert page.evaluate("document.querySelector('.chart').hidden") is False
    # The timeline starts with the start time /status reports.
    first = page.evaluate("document.querySelector('[data-field=timeline] li time').getAttribute('datetime')")
    assert first == status["started_at"]
    assert page.errors() == []
    assert page.evaluate("document.body.dataset.renderErrors || ''") == ""

    png = page.screenshot()
    assert_nontrivial_png(png)
    keep_screenshot(png, "dashboard-light.png", tmp_path)
    assert (tmp_path / "dashboard-light.png").stat().st_size == len(png)


def test_stale_charts_say_why_under_the_chart(browser: Chromium, serve: Callable[..., Served]) -> None:
    filled_runstate = backtest_runstate("stale")
    filled_runstate.update(visualisation_stale="the chart renderer (pid 42) is gone (exit code -9)")
    served = serve(create_app(filled_runstate))
    page = browser.new_page()
    page.goto(served.url + "/")
    page.wait_refreshes(1)
    page.wait_chart()
    stale = page.field("visualisation_stale")
    assert not stale["hidden"] and stale["text"] == "Out of date: the chart renderer (pid 42) is gone (exit code -9)."
    assert page.evaluate("document.querySelector('.chart').hidden") is False  # the last chart still shows
    filled_runstate.set_images({key: filled_runstate.get_image(key) or b"" for key in filled_runstate.image_keys()})
    page.evaluate("document.getElementById('refresh-now').click()")
    page.wait_for("document.querySelector('[data-field=visualisation_stale]').hidden")
    assert page.errors() == []


def test_a_risk_pause_shows_as_a_flag_with_its_reason(browser: Chromium, serve: Callable[..., Served]) -> None:
    filled_runstate = backtest_runstate("risk")
    reason = "risk limit max_drawdown hit at 2005-01-07T00:00:00+00:00: 5.20 % (limit 5.00 %); new entries are paused"
    filled_runstate.update(risk_paused=True, risk_pause_reason=reason)
    served = serve(create_app(filled_runstate))
    page = browser.new_page()
    page.goto(served.url + "/")
    page.wait_refreshes(1)
    flags = page.evaluate("[...document.querySelectorAll('[data-field=flags] .flag')].map(e => e.textContent)")
    assert flags == [f"Risk pause: {reason}"]
    filled_runstate.update(risk_paused=False, risk_pause_reason=None)
    page.evaluate("document.getElementById('refresh-now').click()")
    page.wait_for("document.querySelectorAll('[data-field=flags] .flag').length === 0")
    assert page.errors() == []


def test_page_shows_crash_class_message_frames_and_chain(
    browser: Chromium, serve: Callable[..., Served], tmp_path: Path
) -> None:
    runstate = backtest_runstate("crashing")
    runstate.update(status="running", executor_running=True)
    served = serve(create_app(runstate))
    page = browser.new_page()
    page.goto(served.url + "/?refresh=1")
    page.wait_refreshes(1)
    assert page.field("status")["value"] == "running"
    assert page.field("crash-class")["hidden"]

    def lookup_price(table: dict[str, float], key: str) -> float:
        return table[key]

    try:
        try:
            lookup_price({}, "GOOG")
        except KeyError as error:
            raise ValueError("no close price for GOOG at 2024-05-01") from error
    except ValueError:
        try:
            raise DataError("cycle 42 failed: the price feed has a gap")  # raised while handling
        except DataError as crash:
            runstate.set_fail(crash)

    # The running page picks the crash up on its own (refresh=1 s), without a reload.
    page.wait_for("!document.getElementById('crash').hidden", timeout=60)
    record = served.get_json("/status")["exception"]
    assert page.field("crash-class")["value"] == record["class"] == "tradeexecutor.errors.DataError"
    assert page.field("crash-message")["value"] == record["message"] == "cycle 42 failed: the price feed has a gap"
    assert page.field("status")["value"] == "error"
    frames = page.evaluate("document.querySelectorAll('[data-field=crash-frames] li:not(.omitted)').length")
    assert frames == len(record["frames"]) >= 1
    assert page.field("crash-frames")["text"].count(Path(__file__).name) >= 1
    chain = [link["class"] for link in record["chain"]]
    assert chain == ["builtins.ValueError", "builtins.KeyError"]
    for index, link in enumerate(record["chain"]):
        assert page.field(f"crash-chain-class-{index}")["value"] == link["class"]
        assert page.field(f"crash-chain-message-{index}")["value"] == link["message"]
    relations = page.evaluate("[...document.querySelectorAll('.chain-link')].map(n => n.dataset.relation)")
    assert relations == ["context", "cause"]
    assert page.evaluate("[...document.querySelectorAll('[data-field=timeline] li')].map(n => n.dataset.event)")[-1] == "crash"
    assert page.errors() == []

    png = page.screenshot()
    assert_nontrivial_png(png)
    keep_screenshot(png, "dashboard-crash.png", tmp_path)


def test_missing_endpoints_show_not_available_yet(
    browser: Chromium, serve: Callable[..., Served], tmp_path: Path
) -> None:
    """A fresh executor: no summary, chart, positions or journal yet. Every section says so; nothing breaks."""
    runstate = RunState.create("fresh", mode="paper", strategy_name="Fresh strategy")
    runstate.update(prices="binance live prices via http://127.0.0.1:8765")
    app = Blocker(create_app(runstate), {"/positions": 404, "/logs": 404})
    served = serve(app)
    page = browser.new_page()
    page.goto(served.url + "/")
    page.wait_refreshes(1)
    for path in ("/summary", "/visualisation", "/positions", "/logs"):
        with pytest.raises(urllib.error.HTTPError) as info:
            served.get_json(path)
        assert info.value.code == 404
    assert page.field("status")["value"] == "starting"
    assert page.field("strategy_name")["text"] == "Fresh strategy"
    assert page.field("mode")["text"] == "paper mode · binance live prices via http://127.0.0.1:8765"  # the header
    assert_figure(page, "cycles", 0)
    assert page.note("summary") == "Not available yet."
    assert page.note("portfolio") == "Not available yet."
    assert page.note("positions") == "Not available yet."
    assert page.note("journal") == "Not available yet."
    assert (page.note("chart") or "").startswith("Not available yet")
    for name in ("final_equity", "total_return", "portfolio_value", "cash"):
        assert_figure(page, name, None)
    assert page.evaluate("document.getElementById('banner').hidden") is True
    assert page.errors() == []
    assert page.evaluate("document.body.dataset.renderErrors || ''") == ""
    # It keeps refreshing.
    page.call("Runtime.evaluate", {"expression": "document.getElementById('refresh-now').click()"})
    page.wait_refreshes(2)
    assert_nontrivial_png(page.screenshot())


@pytest.mark.parametrize("status_code", [404, 500])
def test_page_survives_when_status_itself_fails(
    browser: Chromium, serve: Callable[..., Served], status_code: int
) -> None:
    blocked = dict.fromkeys(("/summary", "/positions", "/logs", "/visualisation"), 404)
    blocked["/status"] = status_code
    served = serve(Blocker(create_app(RunState.create("broken")), blocked))
    page = browser.new_page()
    page.goto(served.url + "/")
    page.wait_refreshes(1)
    banner = page.evaluate("(() => { const b = document.getElementById('banner'); return b.hidden ? null : b.textContent; })()")
    assert banner is not None
    assert ("not available yet" in banner.lower()) if status_code == 404 else ("HTTP 500" in banner)
    assert page.field("status")["value"] == "unknown"
    assert page.note("summary") == "Not available yet."
    assert page.errors() == []


def test_positions_journal_and_timeline_from_published_files(
    browser: Chromium, serve: Callable[..., Served], tmp_path: Path
) -> None:
    """With the loop's files (positions.json, journal.jsonl) the page shows open positions, the journal tail
    and the timeline's stop request and stop."""
    from tradeexecutor.layout import RunFiles
    from tradeexecutor.stats import write_trades_csv
    from tradeexecutor.store.journal import Journal
    from tradeexecutor.store.publish import publish
    from tradeexecutor.webhook.app import ROUTE_MODULES

    strategy = load_strategy(SMA_STRATEGY)
    market, _ = load_market([], strategy.instruments)
    state = run_backtest(strategy, market).state
    assert state.portfolio.open_positions, "the fixture run should end holding a position"
    files = RunFiles(tmp_path / "state")
    publish(state, files, metadata={"name": state.name}, orders_csv_writer=write_trades_csv)
    runstate = backtest_runstate("with-files")
    journal = Journal(files.journal)
    journal.append("started", at=datetime(2020, 1, 1, tzinfo=UTC))  # an earlier process: not on this run's timeline
    journal.append("stopped", {"reason": "earlier run"}, at=datetime(2020, 1, 2, tzinfo=UTC))
    for cycle in range(30):
        journal.append("cycle_completed", {"cycle": cycle, "duration": 0.001})
    journal.append("order_rejected", {"trade_id": 99, "reason": "below minimum notional"}, level="warning")
    journal.append("stop_requested", {"who": "operator", "what": "stop"})
    journal.append("stopped", {"reason": "operator request"})

    includes = [name for name in ("tradeexecutor.webhook.files", "tradeexecutor.webhook.logs") if name not in ROUTE_MODULES]
    served = serve(create_app(runstate, options=WebhookOptions(files=files), extra_includes=includes))
    page = browser.new_page()
    page.goto(served.url + "/")
    page.wait_refreshes(1)

    listed = served.get_json("/positions?status=open")["positions"]
    assert [row["id"] for row in listed] == [p.id for p in state.portfolio.open_positions]
    ids = page.evaluate("[...document.querySelectorAll('[data-field=positions] tbody tr')].map(r => Number(r.dataset.positionId))")
    assert ids == [row["id"] for row in listed]
    cells = page.evaluate("""Object.fromEntries([...document.querySelectorAll('[data-field=positions] tbody tr:first-child td')]
                             .map(td => [td.dataset.column, td.dataset.value]))""")
    position = state.portfolio.open_positions[0]
    assert cells["symbol"] == "GOOG"
    assert float(cells["quantity"]) == position.quantity
    assert float(cells["unrealised_pnl"]) == pytest.approx(position.unrealised_pnl, rel=1e-12)
    assert float(cells["average_price"]) == pytest.approx(position.average_price, rel=1e-12)

    tail = served.get_json("/logs?limit=20")
    tail = tail["entries"] if isinstance(tail, dict) else tail
    shown = page.evaluate("[...document.querySelectorAll('[data-field=journal] tbody tr')].map(r => r.dataset.event)")
    assert shown == [entry["event"] for entry in reversed(tail)]
    assert shown[:3] == ["stopped", "stop_requested", "order_rejected"]
    assert page.evaluate("document.querySelector('[data-field=journal] .level-warning').textContent") == "warning"
    timeline = page.evaluate("[...document.querySelectorAll('[data-field=timeline] li')].map(n => [n.dataset.event, n.textContent])")
    assert [event for event, _ in timeline] == ["started", "stop_requested", "stopped"]
    assert "operator request" in timeline[-1][1]
    assert page.errors() == []
    keep_screenshot(page.screenshot(), "dashboard-files.png", tmp_path)


def test_dark_mode_uses_dark_colours_and_chart(
    browser: Chromium, filled_runstate: RunState, serve: Callable[..., Served], tmp_path: Path
) -> None:
    served = serve(create_app(filled_runstate))
    page = browser.new_page(dark=True)
    page.goto(served.url + "/")
    page.wait_refreshes(1)
    page.wait_chart()
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
    assert sum(channels) / 3 < 60, background
    assert "theme=dark" in page.evaluate("document.querySelector('[data-field=chart]').currentSrc")
    png = page.screenshot()
    assert_nontrivial_png(png)
    keep_screenshot(png, "dashboard-dark.png", tmp_path)


def test_basic_auth_credentials_the_browser_holds_apply_to_every_request(
    browser: Chromium, filled_runstate: RunState, serve: Callable[..., Served]
) -> None:
    options = WebhookOptions(auth_username="alice", auth_password="correct horse")
    served = serve(create_app(filled_runstate, options=options))
    with pytest.raises(urllib.error.HTTPError) as info:
        served.get_json("/status")
    assert info.value.code == 401
    page = browser.new_page()
    challenges: list[str] = []

    def continue_request(event: dict[str, Any]) -> None:
        if event.get("sessionId") == page.session:
            page.call("Fetch.continueRequest", {"requestId": event["params"]["requestId"]})

    def answer_challenge(event: dict[str, Any]) -> None:  # what a user typing into the prompt does
        if event.get("sessionId") == page.session:
            challenges.append(event["params"]["request"]["url"])
            page.call("Fetch.continueWithAuth", {"requestId": event["params"]["requestId"], "authChallengeResponse": {
                "response": "ProvideCredentials", "username": "alice", "password": "correct horse"}})

    browser.handlers["Fetch.requestPaused"] = continue_request
    browser.handlers["Fetch.authRequired"] = answer_challenge
    try:
        page.call("Fetch.enable", {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]})
        page.goto(served.url + "/")
        page.wait_refreshes(1)
        auth = {"Authorization": "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ=="}
        status = served.get_json("/status", auth)
        assert page.field("status")["value"] == status["status"]
        assert_figure(page, "cycles", status["cycles"])
        assert_figure(page, "final_equity", served.get_json("/summary", auth)["final_equity"])
        assert page.evaluate("document.getElementById('banner').hidden") is True
        assert challenges and challenges[0].rstrip("/") == served.url  # asked once, for the page
        page.call("Fetch.disable")
    finally:
        browser.handlers.pop("Fetch.requestPaused", None)
        browser.handlers.pop("Fetch.authRequired", None)


# =============================================================================================
# Against the real daemon


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """``tradeexecutor start`` as a subprocess."""

    def __init__(self, tmp_path: Path, strategy: Path, *args: str, end: str = "2005-12-31") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"daemon-{self.port}.log"
        command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(strategy),
                   "--state-dir", str(tmp_path / "state"), "--port", str(self.port),
                   "--start", "2005-01-01", "--end", end, "--replay-start", "first",
                   "--trigger-seconds", "0", "--revaluation-seconds", "0", *args]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.get_json("/status")
                if predicate(last):
                    return last
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}:\n{self.output()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out; last /status {last}\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def test_dashboard_of_the_real_daemon_after_a_replay(browser: Chromium, tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(tmp_path, SMA_STRATEGY, "--replay-seconds", "0.01", "--chart-seconds", "5",
                    "--complete-serve-seconds", "120", end="2005-04-30")
    daemons.append(daemon)
    status = daemon.wait_status(lambda s: s["status"] == "complete" and s["visualisation_updated_at"])
    page = browser.new_page()
    page.goto(daemon.url + "/")
    page.wait_refreshes(1)
    page.wait_chart()
    status = daemon.get_json("/status")
    summary = daemon.get_json("/summary")
    assert page.field("status")["value"] == "complete"
    assert_figure(page, "cycles", status["cycles"])
    for name in SUMMARY_FIELDS:
        assert_figure(page, name, summary[name])
    portfolio = status.get("portfolio") or {}
    if portfolio.get("updated_at"):
        for name in PORTFOLIO_FIELDS:
            assert_figure(page, name, portfolio[name])
    try:
        logs = daemon.get_json("/logs?limit=20&level=info")
    except urllib.error.HTTPError:
        logs = None
    if logs is not None:  # the journal tail shows the newest entries that are not routine, newest first
        entries = logs["entries"] if isinstance(logs, dict) else logs
        shown = page.evaluate("[...document.querySelectorAll('[data-field=journal] tbody tr')].map(r => r.dataset.event)")
        assert shown[: len(entries)] == [entry["event"] for entry in reversed(entries)][: len(shown)]
    assert page.errors() == []


def test_dashboard_of_the_real_daemon_after_a_crash(browser: Chromium, tmp_path: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(tmp_path, CRASH_STRATEGY, "--replay-seconds", "0.02", "--chart-seconds", "0",
                    "--crash-policy", "serve", "--crash-serve-seconds", "120")
    daemons.append(daemon)
    status = daemon.wait_status(lambda s: s["status"] == "error")
    page = browser.new_page()
    page.goto(daemon.url + "/")
    page.wait_refreshes(1)
    record = status["exception"]
    assert record["class_name"] == "StrategyBoom"
    assert page.field("crash-class")["value"] == record["class"]
    assert page.field("crash-message")["value"] == record["message"]
    assert "cannot price GOOG-price" in page.field("crash-message")["text"]
    assert page.field("crash-chain-class-0")["value"] == "builtins.KeyError"
    assert page.field("status")["value"] == "error"
    assert (page.note("chart") or "").startswith("Not available yet")
    assert page.errors() == []


@pytest.mark.timeout(900)  # up to three starts and leads on a machine whose cores other work keeps busy
def test_dashboard_opened_before_the_first_cycle_shows_its_chart_without_a_refresh(
    browser: Chromium, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """One cycle an hour, the first about 20 s after start; the page refreshes once an hour (?refresh=3600).

    The chart must still appear once the first cycle's chart is drawn: the page watches /status for it.
    A machine whose cores other work keeps busy can take longer than the 20 s to start the executor; then
    its first cycle is an hour away (/status says when), and it is started again with three times the lead.
    """
    for first_cycle_in in (20.0, 60.0, 180.0):
        folder = tmp_path / f"lead-{first_cycle_in:.0f}"
        folder.mkdir()
        offset = int((time.time() + first_cycle_in) % 3600)
        daemon = Daemon(folder, SMA_STRATEGY, "--replay-seconds", "3600",
                        "--cycle-offset", str(offset),
                        "--chart-seconds", "10")  # the default interval (the harness's runs set their own)
        daemons.append(daemon)
        status = daemon.wait_status(lambda s: s["status"] == "running")
        next_cycle = datetime.fromisoformat(status["next_cycle_at"]).timestamp()
        if next_cycle - time.time() < first_cycle_in + 60:
            break
        daemon.stop()  # started after its first cycle's time: that cycle is an hour away
    else:
        raise AssertionError("the executor never started before its first cycle was due")
    page = browser.new_page()
    page.goto(daemon.url + "/?refresh=3600")
    page.wait_refreshes(1)
    assert daemon.get_json("/status")["cycles"] == 0, "the page must load before the first cycle"
    assert (page.note("chart") or "").startswith("Not available yet")
    page.wait_chart(timeout=first_cycle_in + 120)
    status = daemon.get_json("/status")
    assert status["cycles"] == 1 and status["visualisation_updated_at"]
    assert page.field("cycles")["value"] == "1"  # the figures were refreshed with the chart
    assert page.note("chart") is None and page.errors() == []

"""The wallboard end to end: real executors, a real wallboard process, headless Chromium, and a run casting to it.

Three executors are real ``tradeexecutor start`` subprocesses or their absence: one replaying and
trading, one crashed (``--crash-policy serve`` keeps its webhook up), one a URL nobody listens
on. The wallboard is ``tradeexecutor wallboard`` as a subprocess. Chromium (tests/chromium.py)
checks that the page shows each with the right status, the crash's reason, the unreachable one
as unreachable, that sorting works and that the page refreshes itself. Then a replay run made
with ``tradeexecutor runs`` casts to /wallboard/page1/chart1 and back to ``-``, and a misspelt or
unreachable target shows in the run's journal.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chromium import Chromium, Page, browser, chromium_path, keep_screenshot  # noqa: F401 - fixtures
from executor_process import Executor, free_port
from tradeexecutor.runstate import RunState, RunStatus
from tradeexecutor.webhook import WebhookServer
from tradeexecutor.webhook import create_app as executor_app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "wallboard-e2e-token"
#: The wallboard's polling: each executor's three requests get 5 s, as on main's tests/test_wallboard.py (a
#: 1.5 s timeout let a busy machine show a running executor as unreachable), and the timeout may not
#: exceed the refresh period.
POLLING = ("--refresh-seconds", "5", "--timeout-seconds", "5")
USER, PASSWORD = "fleet-ops", "fleet-ops-pw-123"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class Wallboard:
    """``tradeexecutor wallboard`` as a subprocess."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
        # A port picked free here may be bound by another process (another test worker) before the wallboard
        # binds it: the wallboard then exits at once with "cannot listen on", and starts again on another.
        for tries_left in (2, 1, 0):
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            self.log = tmp_path / f"wallboard-{self.port}.log"
            with open(self.log, "wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "tradeexecutor.cli.main", "wallboard", "--port", str(self.port), *args],
                    stdout=log, stderr=subprocess.STDOUT, env={**clean, "PYTHONUNBUFFERED": "1", **(env or {})})
            wait_for(lambda: self.process.poll() is not None or f"listening on {self.url}" in self.output(),
                     "the wallboard to listen or exit", timeout=60)
            if not (tries_left and self.process.poll() is not None and "cannot listen on" in self.output()):
                break
        try:
            wait_for(lambda: self.process.poll() is None and get_json(self.url + "/healthz")["healthy"],
                     "the wallboard to answer", timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def executors(self) -> dict[str, dict[str, Any]]:
        return {row["name"]: row for row in get_json(self.url + "/api/executors")["executors"]}

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    """Executors and wallboards started by a test; all stopped after it."""
    started: list[Any] = []
    yield started
    for process in reversed(started):
        if isinstance(process, Executor):
            process.kill()
        else:
            process.stop()


def rows_shown(page: Page) -> list[dict[str, Any]]:
    """Each table row as the page shows it: name, status and every cell's data-value and text."""
    return page.evaluate("""[...document.querySelectorAll('#executors tbody tr')].map(tr => ({
        name: tr.dataset.name, status: tr.dataset.status, stale: tr.classList.contains('stale'),
        link: tr.querySelector('td[data-column=name] a').href,
        cells: Object.fromEntries([...tr.querySelectorAll('td')].map(td => [td.dataset.column,
                                   {value: td.dataset.value, text: td.textContent.trim()}]))}))""")


def click_sort(page: Page, column: str) -> None:
    page.evaluate(f"document.querySelector('th[data-sort={column}] button').click()")


def order_by(rows: dict[str, dict[str, Any]], key: str, descending: bool = False) -> list[str]:
    """The order the page should show: by ``key`` (missing values last either way), then by name."""
    present = [name for name, row in rows.items() if row.get(key) not in (None, "")]
    missing = sorted((name for name, row in rows.items() if row.get(key) in (None, "")), key=str.lower)
    present.sort(key=str.lower)
    present.sort(key=lambda name: rows[name][key], reverse=descending)
    return present + missing


# -- the fleet in a browser ----------------------------------------------------------------------


def test_fleet_page_shows_running_crashed_and_unreachable_executors_sorts_and_refreshes(
        browser: Chromium, tmp_path: Path, processes: list[Any]) -> None:
    running = Executor(tmp_path / "running", "--replay-seconds", "0.3")
    crashed = Executor(tmp_path / "crashed", "--replay-seconds", "0.05", "--crash-policy", "serve",
                       "--crash-serve-seconds", "600", strategy="daemon_crash.py")
    processes.extend([running, crashed])
    nobody = f"http://127.0.0.1:{free_port()}"
    # A paper executor's exchange connection, as its /status reports it (issue 14 item 6: its share of the budget).
    on_exchange = RunState.create("delta-paper", mode="paper", strategy_name="Paper strategy")
    on_exchange.update(status=RunStatus.running, executor_running=True,
                       prices="binance live prices via http://127.0.0.1:8765",
                       venue={"exchange": "binance", "clock_offset_ms": -12.0, "requests": 42,
                              "held_back_seconds": 3.5, "held_back_total_seconds": 7.0, "rate_share": 0.25,
                              "rate_share_used": 0.4})
    paper = WebhookServer(executor_app(on_exchange), host="127.0.0.1", port=0)
    paper.start()
    processes.append(paper)
    running.wait_status(lambda s: s["cycles"] >= 3, timeout=60)
    crash = crashed.wait_status(lambda s: s["status"] == "error", timeout=60)
    board = Wallboard(tmp_path, "--executor", f"alpha-running=http://127.0.0.1:{running.port}",
                      "--executor", f"beta-crashed=http://127.0.0.1:{crashed.port},gamma-gone={nobody}",
                      "--executor", f"delta-paper={paper.url.rstrip('/')}",
                      *POLLING)
    processes.append(board)
    api = wait_for(lambda: (rows := board.executors()) and rows["alpha-running"]["status"] == "running" and rows,
                   "the first poll")
    assert api["beta-crashed"]["status"] == "error" and api["gamma-gone"]["status"] == "unreachable"

    page = browser.new_page(1400, 900)
    page.goto(board.url + "/")
    page.wait_refreshes(1)
    page.evaluate("window.loadedOnce = true")

    # What the page shows is what /api/executors said for the poll it shows.
    def shown_with_its_poll() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]] | None:
        document = page.evaluate("fetch('/api/executors').then(r => r.json())")
        count = page.evaluate("Number(document.body.dataset.refreshes)")
        page.evaluate("document.getElementById('refresh-now').click()")
        page.wait_refreshes(count + 1)
        if page.evaluate("document.body.dataset.generatedAt") != document["generated_at"]:
            return None  # a new poll came in between: try again
        return rows_shown(page), {row["name"]: row for row in document["executors"]}

    shown, api = wait_for(shown_with_its_poll, "a refresh showing the poll just read", timeout=60, every=0)
    by_name = {row["name"]: row for row in shown}
    assert [row["name"] for row in shown] == ["alpha-running", "beta-crashed", "delta-paper",
                                              "gamma-gone"]  # by name at first

    alpha = by_name["alpha-running"]
    assert alpha["status"] == "running" and alpha["link"] == f"http://127.0.0.1:{running.port}/"
    assert alpha["cells"]["healthy"]["text"] == "healthy" and alpha["cells"]["mode"]["value"] == "replay"
    assert api["alpha-running"]["prices"] == "historical candles (bundled data)"  # shown under the mode
    assert alpha["cells"]["mode"]["text"] == "replay" + api["alpha-running"]["prices"]
    assert alpha["cells"]["rate_share_used"]["text"] == "–"  # no exchange connection in a replay
    assert float(alpha["cells"]["equity"]["value"]) == api["alpha-running"]["equity"]
    assert float(alpha["cells"]["equity"]["text"].replace(",", "")) == pytest.approx(api["alpha-running"]["equity"],
                                                                                    abs=0.006)
    change = api["alpha-running"]["equity_change"]
    assert float(alpha["cells"]["equity_change"]["value"]) == change
    assert alpha["cells"]["equity_change"]["text"].endswith("%")
    assert alpha["cells"]["open_positions"]["value"] == str(api["alpha-running"]["open_positions"])
    assert alpha["cells"]["last_cycle_at"]["value"] == api["alpha-running"]["last_cycle_at"]
    assert alpha["cells"]["last_cycle_at"]["text"].endswith("ago")
    assert alpha["cells"]["next_cycle_at"]["value"] == api["alpha-running"]["next_cycle_at"]
    assert alpha["cells"]["crash_reason"]["text"] == ""

    beta = by_name["beta-crashed"]
    reason = f"StrategyBoom: {crash['exception']['message']}"
    assert beta["status"] == "error" and beta["cells"]["crash_reason"]["text"] == reason
    assert reason == "StrategyBoom: cannot price GOOG-price: the lookup table has no entry"
    assert beta["cells"]["healthy"]["text"] == "unhealthy"

    delta = by_name["delta-paper"]
    assert delta["cells"]["mode"]["text"] == "paperbinance live prices via http://127.0.0.1:8765"
    assert delta["cells"]["rate_share_used"]["value"] == "0.4"
    assert delta["cells"]["rate_share_used"]["text"] == "40 % of 25 % share42 requests · clock -12 ms · held back 4 s"

    gamma = by_name["gamma-gone"]
    assert gamma["status"] == "unreachable" and gamma["cells"]["status"]["text"].startswith("unreachable")
    assert "connection refused" in gamma["cells"]["status"]["text"]
    assert gamma["cells"]["equity"]["text"] == "–" and gamma["link"] == nobody + "/"

    # Sorting: by equity (missing last), again for descending, by status; the hash keeps it.
    for column, descending in (("equity", False), ("equity", True), ("status", False), ("name", False)):
        click_sort(page, column)
        shown = rows_shown(page)
        values = {row["name"]: api[row["name"]] for row in shown}
        assert [row["name"] for row in shown] == order_by(values, column, descending), (column, descending)
        header = page.evaluate(f"document.querySelector('th[data-sort={column}]').getAttribute('aria-sort')")
        assert header == ("descending" if descending else "ascending")
    click_sort(page, "equity_change")
    click_sort(page, "equity_change")
    assert page.evaluate("location.hash") == "#sort=equity_change&dir=desc"
    page.goto("about:blank")  # a new load, not a same-document hash change
    page.goto(board.url + "/#sort=equity_change&dir=desc")
    page.wait_refreshes(1)
    assert page.evaluate("document.querySelector('th[data-sort=equity_change]').getAttribute('aria-sort')") \
        == "descending"

    # The page refreshes on its own, in place, and shows the running executor's newer cycles.
    page.evaluate("window.loadedOnce = true")
    first = {row["name"]: row for row in rows_shown(page)}["alpha-running"]["cells"]["last_cycle_at"]["value"]
    refreshes = page.evaluate("Number(document.body.dataset.refreshes)")
    page.wait_refreshes(refreshes + 2, timeout=30)
    wait_for(lambda: {row["name"]: row for row in rows_shown(page)}["alpha-running"]["cells"]["last_cycle_at"]["value"]
             != first, "a newer last cycle on the page", timeout=30)
    assert page.evaluate("window.loadedOnce") is True, "refreshed in place, not reloaded"
    assert "refreshing every 5" in page.evaluate("document.getElementById('refresh-note').textContent")
    assert page.errors() == []
    keep_screenshot(page.screenshot(), "wallboard-fleet.png", tmp_path)

    # An executor that goes away becomes unreachable on the page, keeping its last figures.
    running.kill()
    wait_for(lambda: page.evaluate(
        "document.querySelector('tr[data-name=alpha-running]').dataset.status") == "unreachable",
        "the stopped executor shown as unreachable", timeout=30)
    row = {row["name"]: row for row in rows_shown(page)}["alpha-running"]
    assert row["stale"] and row["cells"]["equity"]["value"] != ""
    assert page.errors() == []


# -- casting -------------------------------------------------------------------------------------


PAPER = """\
strategy_file: sma.py
mode: replay
name: Cast replay
environment: {data: [stocks-daily], start: "2005-01-01", end: "2012-12-31", replay_seconds: 0.2}
strategy: {fast: 5, slow: 15}
core: {fee: 0.001, revaluation_seconds: 1, trigger_seconds: 1}
"""


def runs(work: Path, *args: str, env: dict[str, str], expect: int = 0) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", "runs", *args], cwd=work,
                            capture_output=True, text=True, timeout=120, env={**clean, **env})
    assert result.returncode == expect, f"runs {' '.join(args)}: {result.stdout}\n{result.stderr}"
    return result


def journal(work: Path, run: str, env: dict[str, str]) -> list[dict[str, str]]:
    text = runs(work, "logs", run, "--format", "csv", "--limit", "1000", "--timezone", "UTC", env=env).stdout
    return list(csv.DictReader(io.StringIO(text)))


def cast_events(work: Path, run: str, env: dict[str, str]) -> list[tuple[str, str]]:
    return [(row["event"], row["details"]) for row in journal(work, run, env) if row["event"].startswith("cast_")]


def test_a_paper_run_casts_to_a_chart_then_stops_and_bad_targets_show_in_its_journal(
        browser: Chromium, tmp_path: Path, processes: list[Any]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "strategies" / "sma_crossover.py", work / "sma.py")
    (work / "paper.yaml").write_text(PAPER)
    board = Wallboard(tmp_path, "--runs-dir", str(work / "runs"), *POLLING,
                      env={"TRADEEXECUTOR_WALLBOARD_TOKEN": TOKEN, "TRADEEXECUTOR_WEBHOOK_USERNAME": USER,
                           "TRADEEXECUTOR_WEBHOOK_PASSWORD": PASSWORD})
    processes.append(board)
    env = {"TRADEEXECUTOR_RUNS_DIR": str(work / "runs"), "TRADEEXECUTOR_WALLBOARD_URL": board.url,
           "TRADEEXECUTOR_WALLBOARD_TOKEN": TOKEN, "TRADEEXECUTOR_WEBHOOK_USERNAME": USER,
           "TRADEEXECUTOR_WEBHOOK_PASSWORD": PASSWORD}
    runs(work, "create", "paper.yaml", "--ref", "caster", "--start", env=env)
    try:
        # The run is on the fleet page (from the runs folder) before it casts anything.
        wait_for(lambda: board.executors()["caster"]["status"] == "running", "the run on the board")
        assert get_json(board.url + "/api/wallboard") == {"pages": []}

        cast = runs(work, "cast", "caster", "/wallboard/page1/chart1", env=env)
        assert cast.stdout.strip() == "run caster casts to /wallboard/page1/chart1: the executor took it"
        chart_url = board.url + "/api/wallboard/page1/chart1"
        chart = wait_for(lambda: (c := get_json(chart_url)) and c["updates"] >= 2 and c, "the chart to get data")
        equity, close = chart["series"]
        assert chart["title"] == "SMA crossover"  # the strategy's name
        assert chart["source"]["mode"] == "replay" and chart["source"]["status"] == "running"
        assert equity["name"] == "equity" and len(equity["t"]) >= 2 and close["name"] == "GOOG close"
        assert [event for event, _ in cast_events(work, "caster", env)][:2] == ["cast_requested", "cast_set"]
        wait_for(lambda: ("cast_delivered" in [e for e, _ in cast_events(work, "caster", env)]), "cast_delivered")

        page = browser.new_page(1280, 800)
        page.goto(board.url + "/wallboard/page1/chart1")
        page.wait_refreshes(1)
        points = page.wait_for("(() => { const p = document.querySelector("
                               "'figure[data-chart=chart1] path[data-series=equity]');"
                               " return p && Number(p.dataset.points); })()", timeout=30)
        assert points >= 2
        assert page.evaluate("document.querySelector('figure[data-chart=chart1] path[data-series=\"GOOG close\"]')"
                             ".getAttribute('d').startsWith('M')")
        assert page.evaluate("document.querySelector('[data-note=charts]').hidden") is True
        keep_screenshot(page.screenshot(), "wallboard-chart.png", tmp_path)
        grid = browser.new_page(1280, 800)
        grid.goto(board.url + "/wallboard/page1")
        grid.wait_for("document.querySelectorAll('figure.chart').length === 1")
        fleet = browser.new_page(1280, 800)
        fleet.goto(board.url + "/")
        fleet.wait_for("[...document.querySelectorAll('#pages a')].some(a => a.getAttribute('href') === "
                       "'/wallboard/page1/chart1')")
        assert fleet.evaluate("document.querySelector('tr[data-name=caster]').dataset.status") == "running"
        for tab in (page, grid, fleet):
            assert tab.errors() == []

        # Back to "-": no further updates while the run goes on.
        stopped = runs(work, "cast", "caster", "-", env=env)
        assert stopped.stdout.strip() == "run caster stops casting: the executor took it"
        wait_for(lambda: "cast_stopped" in [e for e, _ in cast_events(work, "caster", env)], "cast_stopped")
        # A send already under way when the target changed may still land, however late on a busy machine (the
        # sender has at most one); nothing after it.
        stopped_at = get_json(chart_url)["updates"]
        cycles = get_json(board.url + "/api/executors")["executors"][0]["cycles"]
        wait_for(lambda: board.executors()["caster"]["cycles"] >= cycles + 5, "five more cycles", timeout=60)
        assert get_json(chart_url)["updates"] <= stopped_at + 1, "casting stopped: the chart got no further updates"

        # A misspelt path, then an unreachable wallboard: each shows in the run's journal.
        runs(work, "cast", "caster", "/wallbord/page1/chart1", env=env)
        failure = wait_for(lambda: [d for e, d in cast_events(work, "caster", env) if e == "cast_failed"],
                           "the misspelt path in the journal")
        assert "/wallbord/page1/chart1" in failure[-1] and "404" in failure[-1]
        dead = f"http://127.0.0.1:{free_port()}/wallboard/page1/chart1"
        runs(work, "cast", "caster", dead, env=env)
        failure = wait_for(lambda: [d for e, d in cast_events(work, "caster", env) if e == "cast_failed"
                                    and dead in d], "the unreachable wallboard in the journal")
        assert "does not answer" in failure[-1]
        assert TOKEN not in json.dumps(journal(work, "caster", env))
        assert get_json(chart_url)["updates"] <= stopped_at + 1
        assert "cast_failed" in (work / "runs").joinpath(
            json.loads(runs(work, "show", "caster", "--json", env=env).stdout)["run_id"], "executor.log").read_text()
    finally:
        runs(work, "stop", "caster", env=env)

"""The wallboard over real HTTP: executors' rows from real webhooks, the runs folder, charts cast to it.

Every server is real waitress on loopback: the wallboard's app, and executor webhooks
(``create_app`` over a RunState) in every state the board must tell apart — running, crashed,
behind basic auth with and without the wallboard holding the credentials, gone, and hung.
The browser and real executor processes are in tests/test_wallboard_browser.py.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from executor_process import free_port
from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.registry import Registry, RunRecord
from tradeexecutor.runstate import RunState, RunStatus
from tradeexecutor.runstate.figures import PortfolioFigures
from tradeexecutor.wallboard import ChartStore, ExecutorTarget, Poller, WallboardConfig, create_app, parse_executors
from tradeexecutor.wallboard.settings import credentials_for
from tradeexecutor.webhook import WebhookServer
from tradeexecutor.webhook import create_app as executor_app
from tradeexecutor.webhook.options import WebhookOptions

TOKEN = "cast-token-0123456789"
NOW = datetime.now(UTC)


def request(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
            raw: bytes | None = None) -> tuple[int, Any, Any]:
    """(status, JSON or text, headers: case-insensitive) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            payload, code, got = response.read(), response.status, response.headers
    except urllib.error.HTTPError as exc:
        payload, code, got = exc.read(), exc.code, exc.headers
    try:
        return code, json.loads(payload), got
    except ValueError:
        return code, payload.decode("utf-8", "replace"), got


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[..., Any]], WebhookServer]]:
    servers: list[WebhookServer] = []

    def start(app: Callable[..., Any]) -> WebhookServer:
        server = WebhookServer(app, host="127.0.0.1", port=0).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(1.0)


def running_state(name: str, equity: float = 10_500.0) -> RunState:
    runstate = RunState.create(name, mode="replay", strategy_name=f"{name} strategy", now=NOW)
    runstate.update(status=RunStatus.running, executor_running=True, cycles=12, completed_cycle_at=NOW,
                    next_cycle_at=NOW + timedelta(hours=1),
                    summary_statistics={"final_equity": equity, "total_return": equity / 10_000 - 1},
                    portfolio=PortfolioFigures(portfolio_value=equity, cash=500.0, open_positions=2, updated_at=NOW))
    return runstate


def crashed_state(name: str) -> RunState:
    runstate = running_state(name)
    try:
        try:
            prices: dict[str, float] = {}
            prices["GOOG-price"]
        except KeyError as exc:
            raise RuntimeError("cannot price GOOG-price") from exc
    except RuntimeError as exc:
        runstate.set_fail(exc)
    return runstate


class Hung:
    """A WSGI app whose /status answers only once released: an executor that hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.asked.set()
        self.release.wait(30)
        start_response("503 Service Unavailable", [("Content-Type", "application/json")])
        return [b'{"error": "late"}']


def wallboard(serve: Callable[..., WebhookServer], targets: tuple[ExecutorTarget, ...] = (), *,
              environ: dict[str, str] | None = None, token: str | None = TOKEN, fleet: Any = None,
              timeout: float = 5.0, runs_dir: Path | None = None) -> tuple[str, Poller, ChartStore]:
    """A wallboard over ``targets``; ``timeout`` is generous so that every live executor answers
    /status, /summary and /healthz within it on a busy machine, and only a hung one runs it out."""
    config = WallboardConfig(executors=targets, refresh_seconds=max(1.0, timeout), timeout_seconds=timeout, token=token,
                             environ=environ or {}, runs_dir=runs_dir)
    poller, charts = Poller(config, fleet), ChartStore()
    server = serve(create_app(config, poller, charts))
    return server.url.rstrip("/"), poller, charts


def rows_of(body: bytes) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in json.loads(body)["executors"]}


# -- rows ----------------------------------------------------------------------------------------


def test_each_executor_shows_its_own_status_or_why_it_cannot_be_read(serve: Callable[..., WebhookServer]) -> None:
    running = serve(executor_app(running_state("alpha")))
    on_exchange = running_state("gamma", 9_000.0)  # a paper executor: its exchange connection's figures
    on_exchange.update(mode="paper", prices="binance live prices via http://127.0.0.1:8765",
                       venue={"exchange": "binance", "url": "http://127.0.0.1:8765", "clock_offset_ms": -12.0,
                              "requests": 42, "held_back_seconds": 3.5, "held_back_total_seconds": 7.0,
                              "rate_share": 0.25, "rate_share_used": 0.4})
    crashed = serve(executor_app(crashed_state("beta")))
    guarded = WebhookOptions(auth_username="ops", auth_password="pw-of-gamma")
    authed = serve(executor_app(on_exchange, options=guarded))
    locked = serve(executor_app(running_state("delta"), options=guarded))
    hung_app = Hung()
    hung = serve(hung_app)
    targets = parse_executors([f"alpha={running.url}", f"beta={crashed.url}", f"gamma={authed.url}",
                               f"delta={locked.url}", f"gone=http://127.0.0.1:{free_port()}", f"hung={hung.url}"])
    environ = {"TRADEEXECUTOR_WALLBOARD_GAMMA_USERNAME": "ops", "TRADEEXECUTOR_WALLBOARD_GAMMA_PASSWORD": "pw-of-gamma"}
    url, poller, _ = wallboard(serve, targets, environ=environ)
    try:
        body = poller.poll_once()
    finally:
        hung_app.release.set()
    rows = rows_of(body)
    assert list(rows) == ["alpha", "beta", "delta", "gamma", "gone", "hung"]

    alpha = rows["alpha"]
    assert alpha["status"] == "running" and alpha["reachable"] and alpha["healthy"] is True
    assert alpha["mode"] == "replay" and alpha["strategy_name"] == "alpha strategy"
    assert alpha["equity"] == 10_500.0 and alpha["equity_change"] == pytest.approx(0.05)
    assert alpha["open_positions"] == 2 and alpha["cycles"] == 12 and alpha["crash_reason"] is None
    assert alpha["next_cycle_at"] and alpha["last_cycle_at"] and alpha["dashboard"] == running.url.rstrip("/") + "/"
    assert alpha["rate_share"] is None and alpha["rate_share_used"] is None and alpha["exchange_requests"] is None

    gamma = rows["gamma"]  # its share of the fleet's rate budget and how much of it it used (issue 14 item 6)
    assert gamma["mode"] == "paper" and gamma["prices"] == "binance live prices via http://127.0.0.1:8765"
    assert (gamma["rate_share"], gamma["rate_share_used"], gamma["exchange_requests"], gamma["clock_offset_ms"],
            gamma["held_back_seconds"]) == (0.25, 0.4, 42, -12.0, 3.5)

    beta = rows["beta"]
    assert beta["status"] == "error" and beta["healthy"] is False
    assert beta["crash_reason"] == "RuntimeError: cannot price GOOG-price"
    assert any("crashed" in reason for reason in beta["health_reasons"])

    assert rows["gamma"]["status"] == "running" and rows["gamma"]["equity"] == 9_000.0
    assert rows["gamma"]["auth"] == "TRADEEXECUTOR_WALLBOARD_GAMMA_USERNAME/PASSWORD"
    assert rows["delta"]["status"] == "refused" and "401" in rows["delta"]["problem"]
    assert rows["gone"]["status"] == "unreachable" and "connection refused" in rows["gone"]["problem"]
    assert rows["hung"]["status"] == "unreachable" and "within 5 s" in rows["hung"]["problem"]
    for name in ("delta", "gone", "hung"):
        assert rows[name]["equity"] is None and rows[name]["stale"] is False
    assert b"pw-of-gamma" not in body  # credentials are names, never values

    served = request(url + "/api/executors")
    assert served[0] == 200 and served[1] == json.loads(body)


def test_a_page_request_never_waits_for_a_hung_executor(serve: Callable[..., WebhookServer]) -> None:
    hung_app = Hung()
    hung = serve(hung_app)
    alive = serve(executor_app(running_state("alive")))
    url, poller, _ = wallboard(serve, parse_executors([f"hung={hung.url}", f"alive={alive.url}"]))
    poller.start()
    try:
        assert hung_app.asked.wait(20), "the poller asked the hung executor"
        # While that request hangs, the board answers at once, and keeps polling the others.
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        rows: dict[str, dict[str, Any]] = {}
        while datetime.now(UTC) < deadline:
            code, document, _ = request(url + "/api/executors")
            assert code == 200
            rows = {row["name"]: row for row in document["executors"]}
            if document["round"] >= 2:
                break
        assert not hung_app.release.is_set()
        assert rows["hung"]["status"] == "unreachable" and rows["alive"]["status"] == "running"
        assert request(url + "/healthz")[0] == 200
    finally:
        hung_app.release.set()
        poller.stop()


def test_an_executor_that_stops_answering_keeps_its_last_figures_marked_stale(
        serve: Callable[..., WebhookServer]) -> None:
    server = serve(executor_app(running_state("alpha")))
    _, poller, _ = wallboard(serve, parse_executors([f"alpha={server.url}"]))
    first = rows_of(poller.poll_once())["alpha"]
    server.stop(1.0)
    row = rows_of(poller.poll_once())["alpha"]
    assert row["status"] == "unreachable" and row["stale"] is True and row["reachable"] is False
    assert row["equity"] == first["equity"] == 10_500.0 and row["last_seen_at"] == first["polled_at"]
    assert "no answer" in row["problem"]


# -- the runs folder -----------------------------------------------------------------------------


def _run(runs_dir: Path, run_id: str, ref: str | None, mode: str, status: str, *, port: int | None = None,
         url: str | None = None, error: str | None = None) -> None:
    with Registry(runs_dir) as registry, registry.transaction():
        registry.insert(RunRecord(id=run_id, ref=ref, name=f"{run_id} name", mode=mode, status=status,
                                  created_at=NOW.isoformat(), port=port))
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"run_id": run_id, "executor": {"url": url}, "error": error}))
    (folder / "spec.yaml").write_text("core: {host: 127.0.0.1}\n")


def test_paper_runs_of_a_runs_folder_are_shown_read_only(serve: Callable[..., WebhookServer], tmp_path: Path) -> None:
    from tradeexecutor.cli.wallboard_cmd import _fleet

    runs_dir = tmp_path / "runs"
    live = serve(executor_app(running_state("paper-a")))
    _run(runs_dir, "r20240101-000000-0001", "paper-a", "replay", "running", url=live.url.rstrip("/"))
    _run(runs_dir, "r20240101-000000-0002", None, "replay", "error", port=free_port(), error="StrategyBoom: no price")
    _run(runs_dir, "r20240101-000000-0003", "done", "replay", "stopped", port=free_port())
    _run(runs_dir, "r20240101-000000-0004", "bt", "backtest", "running")
    _run(runs_dir, "r20240101-000000-0005", "lost", "replay", "running", port=free_port())
    def contents() -> tuple[list[str], bytes, list[bytes]]:
        """The run folders, the registry's bytes and every run's files (SQLite's -wal/-shm of a reader aside)."""
        folders = sorted(p.name for p in runs_dir.iterdir() if not p.name.startswith("registry.sqlite"))
        files = [f.read_bytes() for f in sorted(runs_dir.glob("r*/*"))]
        return folders, (runs_dir / "registry.sqlite").read_bytes(), files

    before = contents()
    _, poller, _ = wallboard(serve, fleet=lambda: _fleet(runs_dir), runs_dir=runs_dir)
    document = json.loads(poller.poll_once())
    rows = {row["name"]: row for row in document["executors"]}
    assert set(rows) == {"paper-a", "r20240101-000000-0002", "lost"}
    assert rows["paper-a"]["status"] == "running" and rows["paper-a"]["source"] == "runs"
    crashed = rows["r20240101-000000-0002"]
    assert crashed["status"] == "error" and crashed["crash_reason"] == "StrategyBoom: no price"
    assert rows["lost"]["status"] == "unreachable"  # said to run, but nothing answers
    assert document["sources"][1] == {"source": "runs", "runs_dir": str(runs_dir), "error": None, "executors": 3}
    assert contents() == before


def test_a_broken_runs_folder_is_reported_and_named_executors_still_polled(
        serve: Callable[..., WebhookServer], tmp_path: Path) -> None:
    from tradeexecutor.cli.wallboard_cmd import _fleet

    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / "registry.sqlite").write_bytes(b"this is not a database" * 100)
    alive = serve(executor_app(running_state("alive")))
    _, poller, _ = wallboard(serve, parse_executors([f"alive={alive.url}"]), fleet=lambda: _fleet(runs_dir),
                             runs_dir=runs_dir)
    document = json.loads(poller.poll_once())
    assert [row["name"] for row in document["executors"]] == ["alive"]
    assert "registry.sqlite" in document["sources"][1]["error"]
    assert (runs_dir / "registry.sqlite").read_bytes() == b"this is not a database" * 100


# -- charts --------------------------------------------------------------------------------------


CHART = {"format": 1, "title": "SMA paper", "source": {"run": "sma"},
         "series": [{"name": "equity", "axis": "left", "t": [1000, 2000, 3000], "v": [1.0, 2.0, 1.5]}]}
BEARER = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def test_cast_charts_by_path_read_them_back_and_delete_them(serve: Callable[..., WebhookServer]) -> None:
    url, _, _ = wallboard(serve)
    code, answer, _ = request(url + "/wallboard/page1/chart1", "PUT", CHART, BEARER)
    assert code == 200 and answer == {"path": "/wallboard/page1/chart1", "created": True, "updates": 1}
    assert request(url + "/wallboard/page1/chart1", "PUT", CHART, BEARER)[1]["updates"] == 2
    request(url + "/wallboard/page1/chart0", "PUT", {**CHART, "title": "zero"}, BEARER)
    request(url + "/wallboard/page2/x", "PUT", CHART, BEARER)

    chart = request(url + "/api/wallboard/page1/chart1")[1]
    assert chart["series"] == CHART["series"] and chart["updates"] == 2 and chart["title"] == "SMA paper"
    page = request(url + "/api/wallboard/page1")[1]
    assert page["page"] == "page1" and page["refresh_seconds"] == 5
    assert [c["chart"] for c in page["charts"]] == ["chart0", "chart1"]
    assert request(url + "/api/wallboard/empty")[1]["charts"] == []
    index = request(url + "/api/wallboard")[1]
    assert [(p["page"], [c["chart"] for c in p["charts"]]) for p in index["pages"]] == \
        [("page1", ["chart0", "chart1"]), ("page2", ["x"])]

    for path in ("/wallboard/page1", "/wallboard/page1/chart1", "/wallboard/not-yet"):
        code, html, headers = request(url + path)
        assert code == 200 and "<!doctype html>" in html and "default-src 'none'" in headers["Content-Security-Policy"]
        assert "/static/charts.js?v=" in html and "/static/linechart.js?v=" in html

    assert request(url + "/wallboard/page1/chart1", "DELETE", headers=BEARER)[0] == 200
    assert request(url + "/api/wallboard/page1/chart1")[0] == 404
    assert request(url + "/wallboard/page1/chart1", "DELETE", headers=BEARER)[0] == 404


@pytest.mark.parametrize("path, body, headers, status, fragment", [
    ("/wallboard/page1/chart1", CHART, {}, 401, "Bearer"),
    ("/wallboard/page1/chart1", CHART, {"Authorization": "Bearer wrong"}, 401, "Bearer"),
    ("/wallboard/page1/chart1", CHART, {"Authorization": f"Basic {TOKEN}"}, 401, "Bearer"),
    ("/wallbord/page1/chart1", CHART, BEARER, 404, "not found: /wallbord/page1/chart1"),
    ("/wallboard/page1", CHART, BEARER, 405, "not allowed"),
    ("/wallboard/.bad/chart1", CHART, BEARER, 400, "page name"),
    ("/wallboard/page1/chart1", {**CHART, "format": 9}, BEARER, 400, "format must be 1"),
    ("/wallboard/page1/chart1", None, BEARER, 400, "not JSON"),
])
def test_casts_that_cannot_be_taken_say_why(serve: Callable[..., WebhookServer], path: str, body: Any,
                                           headers: dict[str, str], status: int, fragment: str) -> None:
    url, _, charts = wallboard(serve)
    raw = b"{not json" if body is None else None
    code, answer, got = request(url + path, "PUT", body, headers, raw=raw)
    assert code == status and fragment in answer["error"], answer
    assert charts.index() == {"pages": []}
    if status == 401:
        assert got["WWW-Authenticate"] == 'Bearer realm="wallboard"' and TOKEN not in json.dumps(answer)


def test_without_a_token_casting_is_off_and_large_casts_are_refused(serve: Callable[..., WebhookServer]) -> None:
    url, _, _ = wallboard(serve, token=None)
    code, answer, _ = request(url + "/wallboard/p/c", "PUT", CHART, BEARER)
    assert code == 403 and "TRADEEXECUTOR_WALLBOARD_TOKEN" in answer["error"]
    url, _, _ = wallboard(serve)
    code, answer, _ = request(url + "/wallboard/p/c", "PUT", headers=BEARER, raw=b" " * (600 * 1024))
    assert code == 413


def test_the_board_is_bounded(serve: Callable[..., WebhookServer]) -> None:
    charts = ChartStore(max_charts=2)
    charts.put("p", "a", CHART)
    charts.put("p", "b", CHART)
    charts.put("p", "a", CHART)  # replacing is fine
    from tradeexecutor.wallboard.charts import ChartsFull

    with pytest.raises(ChartsFull):
        charts.put("p", "c", CHART)


# -- pages and configuration ---------------------------------------------------------------------


def test_the_fleet_page_loads_nothing_from_elsewhere(serve: Callable[..., WebhookServer]) -> None:
    url, _, _ = wallboard(serve)
    code, html, headers = request(url + "/")
    assert code == 200 and headers["X-Frame-Options"] == "DENY"
    assert "http://" not in html and "https://" not in html
    for name in ("fleet.js", "wallboard.css", "favicon.svg"):
        assert f"/static/{name}?v=" in html
        assert request(url + f"/static/{name}")[0] == 200
    for name in ("fleet.js", "charts.js", "linechart.js"):
        script = request(url + f"/static/{name}")[1].replace('"http://www.w3.org/2000/svg"', "SVG namespace")
        assert "http://" not in script and "https://" not in script and "import " not in script
    assert request(url + "/static/fleet.html")[0] == 404
    assert request(url + "/static/..%2Fapp.py")[0] == 404


def test_executors_by_url_or_service_name() -> None:
    targets = parse_executors(["http://10.0.0.5:3456/", "sma-crossover", "eur=eurusd-breakout:3457, x=https://h/te"])
    assert [(t.name, t.url) for t in targets] == [
        ("10.0.0.5:3456", "http://10.0.0.5:3456"), ("sma-crossover", "http://sma-crossover:3456"),
        ("eur", "http://eurusd-breakout:3457"), ("x", "https://h/te")]
    for bad, fragment in (("http://u:p@h:1", "no credentials"), ("ftp://h", "use an http"), ("a=b=c", "service name"),
                          ("h:99999", "service name"), ("x=h, x=g", "two executors are named 'x'")):
        with pytest.raises(ConfigError, match=fragment):
            parse_executors([bad])
    with pytest.raises(ConfigError, match="timeout"):
        WallboardConfig(refresh_seconds=2, timeout_seconds=5)


def test_credentials_are_the_executors_own_else_the_fleets() -> None:
    environ = {"TRADEEXECUTOR_WEBHOOK_USERNAME": "fleet", "TRADEEXECUTOR_WEBHOOK_PASSWORD": "f",
               "TRADEEXECUTOR_WALLBOARD_SMA_CROSSOVER_USERNAME": "own", "TRADEEXECUTOR_WALLBOARD_SMA_CROSSOVER_PASSWORD": "o",
               "TRADEEXECUTOR_WALLBOARD_HALF_USERNAME": "only-half"}
    own = credentials_for("sma-crossover", environ)
    assert own is not None and own.username == "own" and "o" not in repr(own).replace("own", "")
    assert own.variables == "TRADEEXECUTOR_WALLBOARD_SMA_CROSSOVER_USERNAME/PASSWORD"
    fleet = credentials_for("half", environ)
    assert fleet is not None and fleet.username == "fleet"
    assert credentials_for("any", {}) is None

"""Secrets are names, not values: the real daemon never lets a credential out.

``tradeexecutor start`` runs as a subprocess with known secret values in its environment (the
webhook's basic-auth username and password, exchange-key-like variables, and a notification
channel URL whose path and password are tokens, pointing at a loopback endpoint that answers 500
so that failed sends are logged too). Every route is called with the right credentials, wrong
ones and none; the daemon is stopped with SIGTERM.
Then every response body (gzip undone) and header, the process's stdout and stderr, and every
file under the state directory (gzip undone) are searched for the secrets, raw and as the
base64 of the basic-auth header: none may appear anywhere.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from notify_endpoint import LoopbackEndpoint
from tradeexecutor.runs.registry import Registry

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "strategies" / "sma_crossover.py"
TOKEN = secrets.token_hex(6)
USERNAME = f"op3rator-{TOKEN}"
PASSWORD = f"s3cr3t-webhook-pw-{TOKEN}"
API_KEY = f"s3cr3t-exchange-key-{TOKEN}"
API_SECRET = f"s3cr3t-exchange-secret-{TOKEN}"
NOTIFY_PATH_TOKEN = f"s3cr3t-notify-path-{TOKEN}"
NOTIFY_PASSWORD = f"s3cr3t-notify-pw-{TOKEN}"
NOTIFY_VARIABLE = "TRADEEXECUTOR_NOTIFY_WEBHOOK_URL"
WALLBOARD_TOKEN = f"s3cr3t-wallboard-token-{TOKEN}"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


GOOD = _basic(USERNAME, PASSWORD)
WRONG = {
    "wrong password": _basic(USERNAME, "guess-" + PASSWORD),
    "wrong user": _basic("root", PASSWORD),
    "swapped": _basic(PASSWORD, USERNAME),
    "not basic": "Bearer " + API_KEY,
    "garbage": "Basic " + PASSWORD,
}

#: What may never show up: the raw values and the base64 of the right credentials.
FORBIDDEN: dict[str, bytes] = {
    "username": USERNAME.encode(),
    "password": PASSWORD.encode(),
    "exchange api key": API_KEY.encode(),
    "exchange api secret": API_SECRET.encode(),
    "basic auth token": GOOD.split()[1].encode(),
    "token of the password": base64.b64encode(PASSWORD.encode()),
    "notification url token": NOTIFY_PATH_TOKEN.encode(),
    "notification url password": NOTIFY_PASSWORD.encode(),
    "wallboard token": WALLBOARD_TOKEN.encode(),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Exchange:
    """One request and what came back."""

    label: str
    method: str
    path: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    port: int
    state_dir: Path
    stdout_path: Path
    stderr_path: Path
    exchanges: list[Exchange] = field(default_factory=list)

    def request(self, method: str, path: str, label: str, authorization: str | None,
                headers: dict[str, str] | None = None) -> Exchange:
        exchange = _request(self.port, method, path, label, authorization, headers)
        self.exchanges.append(exchange)
        return exchange

    def get_json(self, path: str) -> Any:
        exchange = self.request("GET", path, "good", GOOD)
        assert exchange.status == 200, (path, exchange.status, exchange.body[:500])
        return json.loads(exchange.body)


def _request(port: int, method: str, path: str, label: str, authorization: str | None,
             headers: dict[str, str] | None = None) -> Exchange:
    """One request to the webhook on ``port``, its body un-gzipped."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    all_headers = dict(headers or {})
    if authorization is not None:
        all_headers["Authorization"] = authorization
    try:
        connection.request(method, path, headers=all_headers)
        response = connection.getresponse()
        body = response.read()
        if response.getheader("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return Exchange(label, method, path, response.status, response.getheaders(), body)
    finally:
        connection.close()


def _wait(predicate: Any, what: str, daemon: Daemon, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise AssertionError(f"daemon exited with {daemon.process.returncode} while waiting for {what}:\n"
                                 + daemon.stderr_path.read_text(errors="replace")[-3000:])
        try:
            value = predicate()
        except (OSError, http.client.HTTPException, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def notify_endpoint() -> Iterator[LoopbackEndpoint]:
    """Where the daemon's notifications go; it answers 500, so every send fails and is logged."""
    with LoopbackEndpoint(status=500, token=NOTIFY_PATH_TOKEN) as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, notify_endpoint: LoopbackEndpoint) -> Iterator[Daemon]:
    tmp = tmp_path_factory.mktemp("secrets")
    port = free_port()
    state_dir = tmp / "state"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    environment.update({
        "PYTHONUNBUFFERED": "1",
        "TRADEEXECUTOR_WEBHOOK_USERNAME": USERNAME,
        "TRADEEXECUTOR_WEBHOOK_PASSWORD": PASSWORD,
        "TRADEEXECUTOR_EXCHANGE_API_KEY": API_KEY,
        "TRADEEXECUTOR_EXCHANGE_API_SECRET": API_SECRET,
        NOTIFY_VARIABLE: f"json://notifier:{NOTIFY_PASSWORD}@127.0.0.1:{notify_endpoint.port}/{NOTIFY_PATH_TOKEN}",
        "TRADEEXECUTOR_NOTIFY_COOLDOWN_SECONDS": "0",
        # Casting to a "wallboard" that refuses the PUT, so failed casts are journalled and logged too.
        "TRADEEXECUTOR_WALLBOARD_URL": f"http://127.0.0.1:{notify_endpoint.port}",
        "TRADEEXECUTOR_WALLBOARD_TOKEN": WALLBOARD_TOKEN,
    })
    state_dir.mkdir()
    (state_dir / "cast.json").write_text(json.dumps({"target": "/wallboard/secrets/chart"}))
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGY), "--port", str(port),
               "--state-dir", str(state_dir), "--replay-seconds", "0.05", "--chart-seconds", "0.5",
               "--trigger-seconds", "0.5", "--revaluation-seconds", "0.7", "--complete-serve-seconds", "60",
               "--log-level", "debug"]
    stdout_path, stderr_path = tmp / "stdout.txt", tmp / "stderr.txt"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=environment, cwd=tmp)
    running = Daemon(process, port, state_dir, stdout_path, stderr_path)
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _documented_requests() -> list[tuple[str, str]]:
    """(method, path) for every operation of the OpenAPI document, with path parameters and query variants."""
    from tradeexecutor.webhook.openapi import openapi_document

    document = yaml.safe_load(openapi_document())
    requests: list[tuple[str, str]] = []
    for path, item in document["paths"].items():
        for method in item:
            if method not in ("get", "post"):
                continue
            concrete = path.replace("{name}", "dashboard.css")
            requests.append((method.upper(), concrete))
    extra_queries = [
        "/visualisation?type=small&theme=dark&format=svg", "/visualisation?format=png",
        "/visualisation?type=huge", "/logs?limit=1000&level=debug", "/logs?since=0",
        "/logs/technical?limit=1000&level=debug", "/positions?status=all&limit=1000",
        "/positions?status=bogus", "/no-such-route", "/static/nothing.js",
    ]
    requests.extend(("GET", query) for query in extra_queries)
    return requests


def _secret_hits(data: bytes) -> list[str]:
    found = [name for name, secret in FORBIDDEN.items() if secret in data]
    # and percent-encoded, in case something echoes a query string or URL
    for name, secret in FORBIDDEN.items():
        quoted = urllib.parse.quote(secret.decode()).encode()
        if quoted != secret and quoted in data:
            found.append(name + " (url-encoded)")
    return found


def _file_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data += gzip.decompress(data)
        except (OSError, EOFError):
            pass
    return data


def test_no_secret_leaves_the_daemon(daemon: Daemon, notify_endpoint: LoopbackEndpoint) -> None:
    _wait(lambda: daemon.request("GET", "/ping", "probe", None).status == 200, "the webhook", daemon)
    # Auth is in force: the credentials in the environment reached the webhook.
    refused = daemon.request("GET", "/status", "none", None)
    assert refused.status == 401, "TRADEEXECUTOR_WEBHOOK_USERNAME/PASSWORD did not turn basic auth on"
    _wait(lambda: daemon.get_json("/status").get("cycles", 0) >= 3, "three cycles", daemon)
    _wait(lambda: daemon.request("GET", "/visualisation?format=svg", "good", GOOD).status == 200, "charts", daemon)
    # The notification channel is in use, shown by its variable's name only.
    assert daemon.get_json("/status")["extra"]["notifications"] == [f"{NOTIFY_VARIABLE} (JSON)"]
    _wait(lambda: notify_endpoint.received(), "a notification", daemon)
    assert notify_endpoint.paths[0] == f"/{NOTIFY_PATH_TOKEN}"  # the secret path really was the channel's

    for method, path in _documented_requests():
        if path == "/control/stop":
            continue  # stopped by SIGTERM below, as an operator's supervisor would
        good = daemon.request(method, path, "good", GOOD)
        assert good.status < 500, (method, path, good.status, good.body[:300])
        for label, authorization in {**WRONG, "none": None}.items():
            reply = daemon.request(method, path, label, authorization)
            if path in ("/ping", "/healthz"):
                assert reply.status < 500, (method, path, label, reply.status)
            else:
                assert reply.status == 401, (method, path, label, reply.status)
    # gzip-encoded state, and the journal after the control commands
    daemon.request("GET", "/state", "good gzip", GOOD, headers={"Accept-Encoding": "gzip"})
    daemon.request("POST", "/control/stop", "wrong password", WRONG["wrong password"])
    time.sleep(1.0)
    daemon.request("GET", "/logs?limit=1000&level=debug", "good", GOOD)
    daemon.request("GET", "/logs/technical?limit=1000&level=debug", "good", GOOD)

    daemon.process.send_signal(signal.SIGTERM)
    try:
        code = daemon.process.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("the daemon did not stop within 30 s of SIGTERM")
    assert code in (0, 1, -signal.SIGTERM, 128 + signal.SIGTERM), code

    leaks: list[str] = []
    for exchange in daemon.exchanges:
        where = f"{exchange.method} {exchange.path} ({exchange.label}, {exchange.status})"
        for name in _secret_hits(exchange.body):
            leaks.append(f"{name} in the body of {where}")
        header_text = "\n".join(f"{k}: {v}" for k, v in exchange.headers).encode()
        for name in _secret_hits(header_text):
            leaks.append(f"{name} in the headers of {where}")
    for label, output in (("stdout", daemon.stdout_path), ("stderr", daemon.stderr_path)):
        for name in _secret_hits(output.read_bytes()):
            leaks.append(f"{name} in the daemon's {label}")
    files = [p for p in daemon.state_dir.rglob("*") if p.is_file()]
    assert files, "the daemon wrote nothing to its state directory"
    for written in files:
        for name in _secret_hits(_file_bytes(written)):
            leaks.append(f"{name} in {written.relative_to(daemon.state_dir)}")
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)

    # the scan saw real traffic: the happy path answered, and the daemon logged something
    good_statuses = {e.path: e.status for e in daemon.exchanges if e.label == "good"}
    assert good_statuses.get("/status") == 200 and good_statuses.get("/api/openapi.yaml") == 200
    assert daemon.stderr_path.stat().st_size + daemon.stdout_path.stat().st_size > 0
    # failed sends were logged (by variable name), so the scan covered that path too
    assert f"via {NOTIFY_VARIABLE} (JSON) failed" in daemon.stderr_path.read_text(errors="replace")
    assert "cast_failed" in daemon.stderr_path.read_text(errors="replace")  # and failed casts


def test_help_never_shows_secret_values() -> None:
    environment = {**os.environ, "TRADEEXECUTOR_WEBHOOK_USERNAME": USERNAME,
                   "TRADEEXECUTOR_WEBHOOK_PASSWORD": PASSWORD, "TRADEEXECUTOR_EXCHANGE_API_KEY": API_KEY,
                   NOTIFY_VARIABLE: f"json://notifier:{NOTIFY_PASSWORD}@127.0.0.1:9/{NOTIFY_PATH_TOKEN}",
                   "TRADEEXECUTOR_WALLBOARD_TOKEN": WALLBOARD_TOKEN}
    for command in (["start", "--help"], ["status", "--help"], ["logs", "--help"], ["wallboard", "--help"],
                    ["runs", "cast", "--help"], ["--help"]):
        result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *command], capture_output=True,
                                env=environment, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert not _secret_hits(result.stdout + result.stderr), command


def test_the_scanner_can_fail() -> None:
    """The search itself finds each form it looks for."""
    assert _secret_hits(b"x" + PASSWORD.encode() + b"y") == ["password"]
    assert "basic auth token" in _secret_hits(GOOD.encode())
    assert "exchange api key" in _secret_hits(("key=" + API_KEY).encode())
    # compressed bytes hide a secret from a plain search, hence _file_bytes and the gzip-decoded bodies
    compressed = gzip.compress(PASSWORD.encode())
    assert _secret_hits(compressed) == [] and _secret_hits(gzip.decompress(compressed)) == ["password"]
    assert _secret_hits(b"nothing here") == []


#: An exchange key as Binance issues them (letters and digits), for the ccxt venue's scan.
EXCHANGE_KEY = f"s3cr3tExchangeKey{TOKEN}"
FORBIDDEN["exchange api key (venue)"] = EXCHANGE_KEY.encode()


def test_the_ccxt_venue_never_shows_its_credentials(caplog: pytest.LogCaptureFixture) -> None:
    """The ccxt venue against the exchange simulator, through successes and every kind of failure, with every
    logger at debug: no message, repr, traceback or log record carries the key or the secret."""
    import logging
    import traceback
    from decimal import Decimal

    from exchange_sim_helpers import serve
    from tradeexecutor.config import CcxtVenueConfig
    from tradeexecutor.errors import TemporaryError
    from tradeexecutor.exchange_sim import ExchangeSimulator, MarketSpec, SimConfig
    from tradeexecutor.exchange_sim.prices import random_walk_series
    from tradeexecutor.state import OrderSide
    from tradeexecutor.venue import OrderRequest
    from tradeexecutor.venue.ccxt_errors import VenueFailure
    from tradeexecutor.venue.ccxt_venue import CcxtVenue

    pytest.importorskip("ccxt")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("ccxt").setLevel(logging.DEBUG)
    config = SimConfig(markets=(MarketSpec.for_price("BTC/USDT", 30_000),), api_key=EXCHANGE_KEY,
                       api_secret=API_SECRET, balances={"USDT": Decimal(10_000)})
    simulator = ExchangeSimulator(config, {"BTCUSDT": random_walk_series(seed=3, now_ms=int(time.time() * 1000),
                                                                         start_price=30_000)})
    environ = {"TRADEEXECUTOR_EXCHANGE_API_KEY": EXCHANGE_KEY, "TRADEEXECUTOR_EXCHANGE_API_SECRET": API_SECRET}
    shown: list[str] = []
    with serve(simulator) as running:
        settings = CcxtVenueConfig(exchange="binance", url=running.url, symbols=("BTC/USDT",), timeout_seconds=4)
        venue = CcxtVenue(settings, environ=environ)
        shown += [repr(venue), repr(venue.connection), repr(settings), str(venue.balances())]
        venue.submit(OrderRequest("scan-1", "BTC/USDT", OrderSide.buy, value=100.0))
        shown += [repr(venue.poll()), repr(venue.fetch_order("scan-1")), repr(venue.order_fills("scan-1"))]
        faults = [{"kind": "error", "status": 503}, {"kind": "rate_limit", "retry_after": 1},
                  {"kind": "timeout", "hang_seconds": 10}]
        for number, spec in enumerate(faults):
            running.control("POST", "faults", {**spec, "count": 1})
            with pytest.raises(TemporaryError) as caught:
                venue.submit(OrderRequest(f"scan-f{number}", "BTC/USDT", OrderSide.buy, value=100.0))
            shown += traceback.format_exception(caught.value)
            time.sleep(1.1)
        wrong = CcxtVenue(settings, environ={**environ, "TRADEEXECUTOR_EXCHANGE_API_SECRET": "x" + API_SECRET})
        with pytest.raises(VenueFailure) as failed:
            wrong.balances()
        shown += traceback.format_exception(failed.value)
    shown += [record.getMessage() for record in caplog.records]
    assert len(shown) > 10
    hits = _secret_hits("\n".join(shown).encode())
    assert hits == [], hits


#: The variables a live run spec names for its exchange credentials (names in the spec, values only in the
#: environment of the command that starts the run).
SPEC_KEY_VARIABLE, SPEC_SECRET_VARIABLE = "SCAN_BINANCE_KEY", "SCAN_BINANCE_SECRET"


@pytest.mark.timeout(280)
def test_a_live_run_spec_keeps_its_credentials_out_of_the_run(tmp_path: Path) -> None:
    """A live run spec names its exchange and its credential variables; ``check`` reports them by name, ``runs create
    --start`` trades against the exchange simulator through the unmodified ccxt client, and neither the key nor
    the secret shows in the run folder (spec, registry, metadata, journal, ledger, executor.log, artifacts), the
    commands' output or any response of the run's webhook."""
    pytest.importorskip("ccxt")
    from exchange_sim_helpers import http_json, simulator_process

    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    credentials = {SPEC_KEY_VARIABLE: EXCHANGE_KEY, SPEC_SECRET_VARIABLE: API_SECRET}
    runs_dir = tmp_path / "runs"
    output: list[bytes] = []
    exchanges: list[Exchange] = []

    def cli(*args: str, env: dict[str, str], expect: int = 0) -> str:
        result = subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], capture_output=True,
                                env={**clean, "TRADEEXECUTOR_RUNS_DIR": str(runs_dir), **env}, timeout=150,
                                cwd=tmp_path, check=False)
        output.extend((result.stdout, result.stderr))
        assert result.returncode == expect, (args, result.stdout.decode(), result.stderr.decode()[-3000:])
        return result.stdout.decode() + result.stderr.decode()

    with simulator_process("--speed", "3600", "--api-key-env", "SIM_KEY", "--api-secret-env", "SIM_SECRET",
                           env={**clean, "SIM_KEY": EXCHANGE_KEY, "SIM_SECRET": API_SECRET}) as simulator:
        spec = tmp_path / "live.yaml"
        spec.write_text(f"strategy_file: {ROOT / 'tests' / 'strategies' / 'paper_flip.py'}\nmode: live\n"
                        f"environment:\n  exchange: binance\n  exchange_url: {simulator}\n"
                        f"core:\n  exchange_key_variable: {SPEC_KEY_VARIABLE}\n"
                        f"  exchange_secret_variable: {SPEC_SECRET_VARIABLE}\n")
        # Readiness by the spec's own variable names: set / not set, never the value.
        missing = cli("check", str(spec), env={SPEC_KEY_VARIABLE: EXCHANGE_KEY}, expect=1)
        assert f"{SPEC_KEY_VARIABLE}" in missing and f"problem: {SPEC_SECRET_VARIABLE} is not set" in missing
        ready = cli("check", str(spec), env=credentials)
        assert "mode live: configured" in ready and "TRADEEXECUTOR_EXCHANGE_API_KEY" not in ready
        # Starting without the secret is one line naming the variable; the run stays new.
        refused = cli("runs", "create", str(spec), "--ref", "live", "--start",
                      env={SPEC_KEY_VARIABLE: EXCHANGE_KEY}, expect=2)
        assert f"{SPEC_SECRET_VARIABLE} is not set" in refused and "Traceback" not in refused
        try:
            cli("runs", "start", "live", env=credentials)
            with Registry(runs_dir) as registry:
                record = registry.find("live")
            assert record is not None
            meta = json.loads((runs_dir / record.id / "metadata.json").read_text())
            url = meta["executor"]["url"]
            port = int(url.rsplit(":", 1)[1])
            deadline = time.monotonic() + 200
            status: dict[str, Any] = {}
            while time.monotonic() < deadline and status.get("portfolio", {}).get("orders_filled", 0) < 2:
                reply = _request(port, "GET", "/status", "poll", None)
                exchanges.append(reply)
                status = json.loads(reply.body) if reply.status == 200 else {}
                time.sleep(0.2)
            assert status["mode"] == "live" and status["portfolio"]["orders_filled"] >= 2, status
            assert status["reconciliation"]["outcome"] == "clean" and not status["safe_mode"]
            for path in ("/state", "/orders.csv", "/positions?status=all", "/logs?limit=1000&level=debug",
                         "/logs/technical?limit=1000&level=debug", "/metrics", "/healthz"):
                exchanges.append(_request(port, "GET", path, "good", None))
                assert exchanges[-1].status == 200, path
            cli("runs", "show", "live", env={})
            cli("runs", "logs", "live", "--limit", "1000", env={})
            cli("runs", "stop", "live", env={})
        finally:
            with Registry(runs_dir) as registry:
                found = registry.find("live")
            if found is not None and found.pid:
                try:
                    os.killpg(found.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        code, orders = http_json("GET", f"{simulator}/_sim/orders")
        assert code == 200 and len(orders) >= 2  # real orders reached the exchange, signed with the key
    exchanges.extend(_runner_api_answers(tmp_path, runs_dir, clean, ("/api/runs", "/api/runs/live",
                                                                     "/api/runs/live/logs?limit=1000",
                                                                     "/api/runs/live/orders")))
    folder = runs_dir / record.id
    for artifact in ("metrics.json", "report.md", "orders.csv", "executor.log", "run_spec.yaml"):
        assert (folder / artifact).stat().st_size > 0, artifact
    assert SPEC_KEY_VARIABLE in (folder / "run_spec.yaml").read_text()  # the name is pinned, the value is not
    leaks = [f"{name} in {path.relative_to(runs_dir)}" for path in runs_dir.rglob("*") if path.is_file()
             for name in _secret_hits(_file_bytes(path))]
    leaks += [f"{name} in a command's output" for name in _secret_hits(b"\n".join(output))]
    leaks += [f"{name} in {e.method} {e.path}" for e in exchanges for name in _secret_hits(e.body)]
    assert len(exchanges) > 7
    assert not leaks, "secrets leaked:\n" + "\n".join(leaks)


def _runner_api_answers(tmp_path: Path, runs_dir: Path, env: dict[str, str], paths: tuple[str, ...]) -> list[Exchange]:
    """GET each path of the runner API of a wallboard over ``runs_dir`` (its own credentials), all answered 200."""
    port = free_port()
    auth = _basic("runner", PASSWORD)
    process = subprocess.Popen([sys.executable, "-m", "tradeexecutor.cli.main", "wallboard", "--port", str(port)],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**env, "TRADEEXECUTOR_RUNS_DIR": str(runs_dir),
                                    "TRADEEXECUTOR_RUNNER_USERNAME": "runner", "TRADEEXECUTOR_RUNNER_PASSWORD": PASSWORD})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None and time.monotonic() < deadline, "the wallboard did not answer"
            try:
                if _request(port, "GET", "/ping", "probe", None).status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        answers = [_request(port, "GET", path, "runner", auth) for path in paths]
    finally:
        process.terminate()
        process.wait(30)
    assert [a.status for a in answers] == [200] * len(paths), [(a.path, a.status, a.body[:200]) for a in answers]
    return answers

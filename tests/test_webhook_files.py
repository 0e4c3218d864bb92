"""Published files (store.publish) and the routes serving them: /state, /positions, /orders.csv, /metadata.

Real backtest states, real files in tmp_path, a real waitress server. The last tests are the
evidence for "serialise once": serving /state never calls the codec and reads each file once
per change, for a 10-position state and a 10,000-position state alike.
"""

from __future__ import annotations

import csv
import gzip
import http.client
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import tradeexecutor.store.codec as codec
import tradeexecutor.store.publish as publish_module
import tradeexecutor.webhook.files as files_module
from state_builders import resized
from tradeexecutor.backtest.runner import run_backtest
from tradeexecutor.data.source import load_market
from tradeexecutor.layout import RunFiles
from tradeexecutor.runstate import RunState
from tradeexecutor.state import State
from tradeexecutor.stats.summary import TRADE_COLUMNS, write_trades_csv
from tradeexecutor.store.codec import dumps_state, loads_state
from tradeexecutor.store.publish import PublishedSnapshot, publish
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.files import accepts_gzip
from tradeexecutor.webhook.options import WebhookOptions

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
METADATA = {"name": "sma_crossover", "mode": "replay", "strategy_version": "abc", "started_at": T0}


# -- states ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backtest_state() -> State:
    strategy = load_strategy(ROOT / "strategies" / "sma_crossover.py")
    market, _ = load_market([], strategy.instruments)
    state = run_backtest(strategy, market).state
    assert state.portfolio.closed_positions and state.portfolio.open_positions
    return state




@pytest.fixture(scope="module")
def small_state(backtest_state: State) -> State:
    return resized(backtest_state, 10)


@pytest.fixture(scope="module")
def large_state(backtest_state: State) -> State:
    return resized(backtest_state, 10_000)


def do_publish(state: State, files: RunFiles) -> PublishedSnapshot:
    return publish(state, files, metadata=METADATA, orders_csv_writer=write_trades_csv, now=T0)


# -- HTTP ----------------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def get(server: WebhookServer, path: str, method: str = "GET", **headers: str) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=30)
    try:
        connection.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        response = connection.getresponse()
        body = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


@pytest.fixture
def files(tmp_path: Path) -> RunFiles:
    return RunFiles(tmp_path / "state")


@pytest.fixture
def server(files: RunFiles) -> Iterator[WebhookServer]:
    runstate = RunState.create("exec-files", version={"package": "0", "git_commit": None}, now=T0)
    with WebhookServer(create_app(runstate, options=WebhookOptions(files=files)), port=0) as running:
        yield running


# -- publish -------------------------------------------------------------------------------------------


def test_publish_writes_every_public_file(small_state: State, files: RunFiles) -> None:
    snapshot = do_publish(small_state, files)
    data = files.state_snapshot.read_bytes()
    assert data == dumps_state(small_state)
    assert loads_state(data, source="state.json") == small_state
    assert gzip.decompress(files.state_snapshot_gz.read_bytes()) == data
    assert snapshot.size == len(data) and snapshot.gzip_size == files.state_snapshot_gz.stat().st_size
    positions = json.loads(files.positions.read_bytes())
    assert [p["id"] for p in positions] == list(range(1, 11)) and snapshot.positions == 10
    assert {p["status"] for p in positions} == {"open", "closed"}
    assert {p["symbol"] for p in positions} == {"GOOG"}
    metadata = json.loads(files.metadata.read_bytes())
    assert metadata == {**METADATA, "started_at": T0.isoformat(), "published_at": T0.isoformat(), "etag": snapshot.etag}
    assert sorted(p.name for p in files.public.iterdir()) == [
        "metadata.json", "orders.csv", "positions.json", "state.json", "state.json.gz",
    ]  # no temporary files left behind


def test_publishing_the_same_state_twice_gives_the_same_bytes_and_etag(small_state: State, files: RunFiles) -> None:
    first = do_publish(small_state, files)
    gz = files.state_snapshot_gz.read_bytes()
    second = do_publish(small_state, files)
    assert first.etag == second.etag and files.state_snapshot_gz.read_bytes() == gz


# -- routes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/state", "/positions", "/orders.csv", "/metadata"])
def test_every_route_is_404_before_the_first_publish(server: WebhookServer, path: str) -> None:
    reply = get(server, path, Accept_Encoding="gzip")
    assert reply.status == 404
    assert "not published" in reply.json()["error"]


@pytest.mark.parametrize("path", ["/state", "/positions", "/orders.csv", "/metadata"])
def test_every_route_is_404_without_a_state_directory(path: str) -> None:
    runstate = RunState.create("no-files", version={"package": "0", "git_commit": None}, now=T0)
    with WebhookServer(create_app(runstate), port=0) as server:
        reply = get(server, path)
    assert reply.status == 404 and "state directory" in reply.json()["error"]


def test_state_plain_for_clients_without_gzip(server: WebhookServer, files: RunFiles, small_state: State) -> None:
    snapshot = do_publish(small_state, files)
    reply = get(server, "/state")
    assert reply.status == 200
    assert reply.body == files.state_snapshot.read_bytes()
    assert loads_state(reply.body, source="GET /state") == small_state
    assert reply.headers["content-type"] == "application/json"
    assert "content-encoding" not in reply.headers
    assert reply.headers["etag"] == snapshot.etag
    assert reply.headers["vary"] == "Accept-Encoding"
    assert reply.headers["content-length"] == str(snapshot.size)
    assert get(server, "/state", Accept_Encoding="gzip;q=0, identity").headers.get("content-encoding") is None


def test_state_gzip_when_accepted(server: WebhookServer, files: RunFiles, small_state: State) -> None:
    snapshot = do_publish(small_state, files)
    reply = get(server, "/state", Accept_Encoding="br, gzip, deflate")
    assert reply.status == 200
    assert reply.headers["content-encoding"] == "gzip"
    assert reply.body == files.state_snapshot_gz.read_bytes()
    assert gzip.decompress(reply.body) == files.state_snapshot.read_bytes()
    assert reply.headers["etag"] != snapshot.etag  # another representation, another strong tag
    assert reply.headers["vary"] == "Accept-Encoding"


def test_etag_and_if_none_match(server: WebhookServer, files: RunFiles, small_state: State, backtest_state: State) -> None:
    do_publish(small_state, files)
    for encoding in ("identity", "gzip"):
        first = get(server, "/state", Accept_Encoding=encoding)
        etag = first.headers["etag"]
        again = get(server, "/state", Accept_Encoding=encoding, If_None_Match=etag)
        assert again.status == 304 and again.body == b"" and again.headers["etag"] == etag
        weak = get(server, "/state", Accept_Encoding=encoding, If_None_Match=f'"other", W/{etag}')
        assert weak.status == 304
    old = get(server, "/state").headers["etag"]
    do_publish(resized(backtest_state, 12), files)  # the state changed
    changed = get(server, "/state", If_None_Match=old)
    assert changed.status == 200 and changed.headers["etag"] != old


def test_head_state_sends_headers_only(server: WebhookServer, files: RunFiles, small_state: State) -> None:
    snapshot = do_publish(small_state, files)
    reply = get(server, "/state", method="HEAD")
    assert reply.status == 200 and reply.body == b"" and reply.headers["etag"] == snapshot.etag


def test_positions_are_paged_by_status(server: WebhookServer, files: RunFiles, backtest_state: State) -> None:
    state = resized(backtest_state, 250)
    do_publish(state, files)
    open_ids = [p.id for p in state.portfolio.open_positions]

    page = get(server, "/positions").json()
    assert page["status"] == "all" and page["total"] == 250 and page["offset"] == 0 and page["limit"] == 100
    assert [p["id"] for p in page["positions"]] == list(range(1, 101))

    page = get(server, "/positions?status=closed&offset=240&limit=20").json()
    assert page["total"] == 250 - len(open_ids)
    assert [p["id"] for p in page["positions"]] == list(range(241, 251 - len(open_ids)))
    assert all(p["status"] == "closed" and p["closed_at"] for p in page["positions"])

    page = get(server, "/positions?status=open").json()
    assert [p["id"] for p in page["positions"]] == open_ids and page["total"] == len(open_ids)
    assert page["positions"][0]["orders"] and page["positions"][0]["closed_at"] is None

    assert get(server, "/positions?offset=1000").json()["positions"] == []


@pytest.mark.parametrize(
    ("query", "parameter"),
    [("status=pending", "status"), ("offset=-1", "offset"), ("limit=0", "limit"), ("limit=5000", "limit"),
     ("offset=x", "offset"),
     # As openapi.yaml declares them: an empty value is no value, the enum is exact, an integer is digits.
     ("status=", "status"), ("status=OPEN", "status"), ("limit=", "limit"), ("offset=%2B5", "offset"),
     ("offset=5_0", "offset"), ("limit=%D9%A3", "limit")],
)
def test_positions_bad_parameters_are_400(
    server: WebhookServer, files: RunFiles, small_state: State, query: str, parameter: str
) -> None:
    do_publish(small_state, files)
    reply = get(server, f"/positions?{query}")
    assert reply.status == 400 and reply.json()["parameter"] == parameter


def test_orders_csv_has_the_backtest_trade_columns(server: WebhookServer, files: RunFiles, small_state: State) -> None:
    do_publish(small_state, files)
    reply = get(server, "/orders.csv")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(reply.body.decode("utf-8"))))
    assert tuple(rows[0]) == TRADE_COLUMNS
    assert len(rows) - 1 == sum(1 for _ in small_state.portfolio.all_orders())
    assert reply.body == files.orders_csv.read_bytes()
    assert get(server, "/orders.csv", If_None_Match=reply.headers["etag"]).status == 304


def test_metadata_is_served_as_published(server: WebhookServer, files: RunFiles, small_state: State) -> None:
    snapshot = do_publish(small_state, files)
    data = get(server, "/metadata").json()
    assert data["name"] == "sma_crossover" and data["etag"] == snapshot.etag
    assert data["published_at"] == T0.isoformat()


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, False), ("", False), ("gzip", True), ("GZIP;q=0.5", True), ("gzip;q=0", False), ("x-gzip", True),
     ("*", True), ("*;q=0", False), ("br, *", True), ("*, gzip;q=0", False), ("deflate, br", False),
     ("gzip;q=bogus", False)],
)
def test_accepts_gzip(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


# -- serialise once ----------------------------------------------------------------------------------------


class _Counter:
    """Wraps functions and counts their calls."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return function(*args, **kwargs)

        return counted


@pytest.mark.parametrize("size", ["small", "large"])
def test_serving_state_never_serialises_and_reads_each_file_once_per_change(
    request: pytest.FixtureRequest, server: WebhookServer, files: RunFiles, monkeypatch: pytest.MonkeyPatch,
    size: str,
) -> None:
    state: State = request.getfixturevalue(f"{size}_state")
    expected = len(state.portfolio.open_positions) + len(state.portfolio.closed_positions)
    assert expected == (10 if size == "small" else 10_000)
    snapshot = do_publish(state, files)

    codec_calls = _Counter()
    for name in ("dumps_state", "state_to_dict", "state_head_to_dict", "position_to_dict", "dumps_json", "_state_to_dict"):
        monkeypatch.setattr(codec, name, codec_calls.wrap(name, getattr(codec, name)))
        if hasattr(publish_module, name):
            monkeypatch.setattr(publish_module, name, codec_calls.wrap(name, getattr(publish_module, name)))
    reads = _Counter()
    monkeypatch.setattr(files_module, "_read_file", reads.wrap("read", files_module._read_file))

    plain_bytes = files.state_snapshot.read_bytes()
    gzip_bytes = files.state_snapshot_gz.read_bytes()
    for _ in range(5):
        plain = get(server, "/state")
        zipped = get(server, "/state", Accept_Encoding="gzip")
        assert plain.status == 200 and plain.body == plain_bytes and plain.headers["etag"] == snapshot.etag
        assert zipped.status == 200 and zipped.body == gzip_bytes
        assert get(server, "/state", If_None_Match=snapshot.etag).status == 304
    assert codec_calls.calls == {}, f"the codec ran during requests: {codec_calls.calls}"
    assert reads.calls == {"read": 2}  # state.json and state.json.gz, once each

    monkeypatch.undo()  # publish a change with the real codec, then count again
    monkeypatch.setattr(files_module, "_read_file", reads.wrap("read", files_module._read_file))
    state.portfolio.cash += 1.0
    try:
        changed = do_publish(state, files)
    finally:
        state.portfolio.cash -= 1.0
    assert changed.etag != snapshot.etag
    for _ in range(3):
        assert get(server, "/state").headers["etag"] == changed.etag
        assert get(server, "/state", Accept_Encoding="gzip").status == 200
    assert reads.calls == {"read": 4}  # one more read per file for the one change


def test_positions_file_is_parsed_once_per_change(
    server: WebhookServer, files: RunFiles, small_state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    do_publish(small_state, files)
    parses = _Counter()
    monkeypatch.setattr(files_module, "_index_positions", parses.wrap("parse", files_module._index_positions))
    for offset in range(5):
        assert get(server, f"/positions?offset={offset}&limit=2").status == 200
    assert parses.calls == {"parse": 1}
    do_publish(small_state, files)  # rewritten (new inode and mtime): parsed again, once
    for offset in range(3):
        assert get(server, f"/positions?status=closed&offset={offset}").status == 200
    assert parses.calls == {"parse": 2}

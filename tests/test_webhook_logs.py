"""/logs and /logs/technical over real HTTP, and the RingBufferHandler behind the second."""

from __future__ import annotations

import gc
import http.client
import json
import logging
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tradeexecutor.layout import RunFiles
from tradeexecutor.runstate import RunState, logbuffer
from tradeexecutor.runstate.logbuffer import SLOT_BYTES, RingBufferHandler
from tradeexecutor.store.journal import Journal
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.options import WebhookOptions

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def get(server: WebhookServer, path: str, **params: Any) -> tuple[int, Any]:
    """GET over loopback; (status, parsed JSON body)."""
    if params:
        path += "?" + urlencode(params)
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(body)
    finally:
        connection.close()


@pytest.fixture
def runstate() -> RunState:
    return RunState.create("exec-logs", version={"package": "0.1.0", "git_commit": None}, now=T0)


@pytest.fixture
def files(tmp_path: Path) -> RunFiles:
    return RunFiles(tmp_path)


@pytest.fixture
def buffer() -> RingBufferHandler:
    return RingBufferHandler(capacity=50)


@pytest.fixture
def server(runstate: RunState, files: RunFiles, buffer: RingBufferHandler) -> Iterator[WebhookServer]:
    options = WebhookOptions(files=files, log_buffer=buffer)
    with WebhookServer(create_app(runstate, options=options), port=0) as running:
        yield running


@pytest.fixture
def bare_server(runstate: RunState) -> Iterator[WebhookServer]:
    with WebhookServer(create_app(runstate), port=0) as running:
        yield running


# -- /logs -------------------------------------------------------------------------------------------


def test_logs_serves_the_journal_tail_with_filters(server: WebhookServer, files: RunFiles) -> None:
    status, body = get(server, "/logs")
    assert (status, body) == (200, {"entries": [], "count": 0})  # no journal yet

    journal = Journal(files.journal)
    journal.append("started", at=T0)
    journal.append("order_rejected", {"reason": "no cash"}, level="warning", at=T0 + timedelta(minutes=1))
    journal.append("cycle_completed", {"duration": 0.25, "decisions": 1}, at=T0 + timedelta(minutes=2))
    journal.append("crashed", {"error": "boom"}, level="error", at=T0 + timedelta(minutes=3))

    status, body = get(server, "/logs")
    assert status == 200 and body["count"] == 4
    assert [e["event"] for e in body["entries"]] == ["started", "order_rejected", "cycle_completed", "crashed"]
    assert body["entries"][1] == {
        "at": "2024-05-01T12:01:00+00:00", "level": "warning", "event": "order_rejected", "fields": {"reason": "no cash"},
    }
    assert [e["event"] for e in get(server, "/logs", limit=2)[1]["entries"]] == ["cycle_completed", "crashed"]
    assert [e["event"] for e in get(server, "/logs", level="warning")[1]["entries"]] == ["order_rejected", "crashed"]
    since = (T0 + timedelta(minutes=2)).isoformat()
    assert [e["event"] for e in get(server, "/logs", since=since)[1]["entries"]] == ["cycle_completed", "crashed"]
    unix = (T0 + timedelta(minutes=3)).timestamp()
    assert [e["event"] for e in get(server, "/logs", since=unix)[1]["entries"]] == ["crashed"]
    # An unencoded "+" arrives as a space; the time is still understood.
    status, body = get(server, "/logs?since=2024-05-01T12:03:00+00:00")
    assert status == 200 and [e["event"] for e in body["entries"]] == ["crashed"]


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"since": "yesterday"}, "since"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"level": "loud"}, "level"),
        # What openapi.yaml declares, exactly: no empty values, enums as written, ASCII integers,
        # and a time is RFC 3339 with a zone, a date or Unix seconds.
        ({"level": ""}, "level"),
        ({"level": "WARNING"}, "level"),
        ({"limit": ""}, "limit"),
        ({"limit": " 5"}, "limit"),
        ({"since": ""}, "since"),
        ({"since": "2024-05-01T12:00:00"}, "since"),  # no zone
        ({"since": "2024-05-01T12:00Z"}, "since"),  # no seconds
        ({"since": "2024-02-30"}, "since"),
        ({"since": "2024-05-01T12:00:00+24:00"}, "since"),
        ({"since": "1e9"}, "since"),
        ({"since": "-5"}, "since"),
        ({"since": "123456789012"}, "since"),  # past year 5138: more digits than declared
    ],
)
def test_logs_bad_parameters_are_400_naming_the_parameter(
    server: WebhookServer, params: dict[str, str], parameter: str
) -> None:
    status, body = get(server, "/logs", **params)
    assert status == 400
    assert body["status"] == 400 and body["parameter"] == parameter and parameter in body["error"]


@pytest.mark.parametrize(
    ("since", "events"),
    [
        ("2024-05-01T12:02:00Z", ["cycle_completed", "crashed"]),
        ("2024-05-01t14:02:00.000001+02:00", ["crashed"]),  # lower-case t, fraction, offset
        ("2024-05-01T12:01:59.9999999-00:00", ["cycle_completed", "crashed"]),  # cut to µs
        ("2024-05-02", []),
        ("2024-05-01", ["started", "order_rejected", "cycle_completed", "crashed"]),
        (str(int((T0 + timedelta(minutes=3)).timestamp())), ["crashed"]),
        # Before year 1 once in UTC: still a valid time, clamped to the first instant.
        ("0001-01-01T00:00:00+01:00", ["started", "order_rejected", "cycle_completed", "crashed"]),
        ("9999-12-31T23:59:59-01:00", []),
    ],
)
def test_logs_since_accepts_every_declared_form(
    server: WebhookServer, files: RunFiles, since: str, events: list[str]
) -> None:
    journal = Journal(files.journal)
    journal.append("started", at=T0)
    journal.append("order_rejected", {"reason": "no cash"}, level="warning", at=T0 + timedelta(minutes=1))
    journal.append("cycle_completed", {"duration": 0.25, "decisions": 1}, at=T0 + timedelta(minutes=2))
    journal.append("crashed", {"error": "boom"}, level="error", at=T0 + timedelta(minutes=3))
    status, body = get(server, "/logs", since=since)
    assert status == 200, body
    assert [entry["event"] for entry in body["entries"]] == events


def test_logs_repeated_parameter_is_400(server: WebhookServer) -> None:
    status, body = get(server, "/logs?limit=1&limit=2")
    assert status == 400 and body["parameter"] == "limit"


def test_logs_without_state_directory_is_404_with_reason(bare_server: WebhookServer) -> None:
    status, body = get(bare_server, "/logs")
    assert status == 404 and "state directory" in body["error"]


# -- /logs/technical ---------------------------------------------------------------------------------


def test_technical_logs_serve_the_ring_buffer(server: WebhookServer, buffer: RingBufferHandler) -> None:
    logger = logging.getLogger("tradeexecutor.test.technical")
    logger.addHandler(buffer)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.debug("warming up %d", 1)
        logger.info("cycle done")
        try:
            raise RuntimeError("feed broke")
        except RuntimeError:
            logger.exception("cycle failed")
    finally:
        logger.removeHandler(buffer)
    status, body = get(server, "/logs/technical")
    assert status == 200 and body["count"] == 3
    first, _, last = body["entries"]
    assert first["message"] == "warming up 1" and first["level"] == "debug"
    assert first["logger"] == "tradeexecutor.test.technical"
    assert last["level"] == "error" and "RuntimeError: feed broke" in last["exception"]
    assert datetime.fromisoformat(last["at"]).tzinfo is not None
    assert [e["message"] for e in get(server, "/logs/technical", level="info")[1]["entries"]] == [
        "cycle done", "cycle failed",
    ]
    assert [e["message"] for e in get(server, "/logs/technical", limit=1)[1]["entries"]] == ["cycle failed"]
    for level in ("verbose", "", "Info"):
        status, body = get(server, "/logs/technical", level=level)
        assert status == 400 and body["parameter"] == "level", level


def test_technical_logs_without_buffer_is_404(bare_server: WebhookServer) -> None:
    status, body = get(bare_server, "/logs/technical")
    assert status == 404 and "technical logs" in body["error"]


# -- RingBufferHandler -------------------------------------------------------------------------------


def _record(level: int, message: str, *args: Any) -> logging.LogRecord:
    return logging.LogRecord("t", level, __file__, 1, message, args, None)


def test_ring_buffer_keeps_only_the_newest_records() -> None:
    handler = RingBufferHandler(capacity=3)
    for i in range(5):
        handler.handle(_record(logging.INFO, "n=%d", i))
    assert [r["message"] for r in handler.records()] == ["n=2", "n=3", "n=4"]
    assert [r["message"] for r in handler.records(limit=2)] == ["n=3", "n=4"]
    assert handler.records(limit=0) == []
    handler.clear()
    assert handler.records() == []
    with pytest.raises(ValueError):
        RingBufferHandler(capacity=0)


def test_ring_buffer_level_filter_and_copies() -> None:
    handler = RingBufferHandler()
    handler.handle(_record(logging.WARNING, "careful"))
    handler.handle(_record(logging.CRITICAL, "fire"))
    assert [r["level"] for r in handler.records(level="error")] == ["critical"]
    handler.records()[0]["message"] = "changed"
    assert handler.records()[0]["message"] == "careful"
    with pytest.raises(ValueError):
        handler.records(level="loud")


def test_ring_buffer_survives_a_bad_format_string(monkeypatch: pytest.MonkeyPatch) -> None:
    handler = RingBufferHandler()
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", errors.append)
    handler.handle(_record(logging.INFO, "%d items", "not a number"))
    assert handler.records() == [] and len(errors) == 1


def test_ring_buffer_is_thread_safe() -> None:
    handler = RingBufferHandler(capacity=10_000)

    def write(tag: int) -> None:
        for i in range(1000):
            handler.handle(_record(logging.INFO, "%d-%d", tag, i))

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        handler.records(limit=50)  # reading while writers run must not fail
    for thread in threads:
        thread.join()
    assert len(handler.records()) == 8000


def test_a_since_without_seconds_near_year_one_is_a_400_not_a_500(tmp_path) -> None:
    """0001-01-01T00:00+01:00 lacks the seconds RFC 3339 asks for; the parameter is named, nothing crashes."""
    import json as _json
    import urllib.error
    import urllib.request

    from tradeexecutor.layout import RunFiles
    from tradeexecutor.runstate import RunState
    from tradeexecutor.webhook import WebhookServer, create_app
    from tradeexecutor.webhook.options import WebhookOptions

    app = create_app(RunState.create("t", mode="replay"), options=WebhookOptions(files=RunFiles(tmp_path)))
    with WebhookServer(app, port=0) as server:
        url = f"http://127.0.0.1:{server.effective_port}/logs?since=0001-01-01T00:00%2B01:00"
        try:
            urllib.request.urlopen(url, timeout=5)
            raise AssertionError("expected a 400")
        except urllib.error.HTTPError as error:
            assert error.code == 400
            assert "since" in _json.loads(error.read())["error"]


def test_ring_buffer_takes_its_memory_at_start_and_keeps_nothing_more_per_record() -> None:
    """The ring's bytes are allocated (and written) when it is made: logging 3,000 records — three times round —
    leaves nothing allocated by the handler alive (a deque of dicts held one dict, its strings and a tuple a record
    until it was full), and it still answers the newest records."""
    handler = RingBufferHandler(capacity=1000)
    assert len(handler._ring) == 1000 * SLOT_BYTES
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(3000):
            handler.handle(_record(logging.INFO, "cycle %d done: equity %.2f, %s", i, 1000.0 + i, "x" * (i % 300)))
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [tracemalloc.Filter(True, logbuffer.__file__)]
    grown = sum(stat.size_diff for stat in after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename"))
    assert grown < 1024, f"{grown} bytes kept by the handler after 3,000 records"
    assert len(handler._ring) == 1000 * SLOT_BYTES
    newest = handler.records(limit=2)
    assert [r["message"][:15] for r in newest] == ["cycle 2998 done", "cycle 2999 done"]
    assert len(handler.records()) == 1000 and handler.records()[0]["message"].startswith("cycle 2000 done")


def test_a_record_longer_than_its_slot_keeps_its_start_and_end_with_a_marker() -> None:
    """A message or traceback too long for a slot is cut in its middle, visibly; short fields stay whole, characters
    of several bytes are never split into garbage, and a stack is kept as a field of its own."""
    handler = RingBufferHandler(capacity=2)
    long = "begin " + "é" * 3000 + " end"
    try:
        raise RuntimeError("the last line says what broke")
    except RuntimeError:
        record = logging.LogRecord("tradeexecutor.t", logging.ERROR, __file__, 1, "%s", (long,), sys.exc_info())
    record.stack_info = "Stack (most recent call last):\n" + "  frame\n" * 200
    handler.handle(record)
    handler.handle(_record(logging.INFO, "short and whole"))
    cut, whole = handler.records()
    assert whole["message"] == "short and whole" and "exception" not in whole and "stack" not in whole
    assert cut["logger"] == "tradeexecutor.t" and cut["level"] == "error"
    encoded = len(long.encode())
    assert cut["message"].startswith("begin éé") and cut["message"].endswith("éé end")
    assert f"…[cut from {encoded} bytes]…" in cut["message"] and "\ufffd" not in cut["message"]
    assert cut["exception"].startswith("Traceback") and cut["exception"].endswith("RuntimeError: the last line says what broke")
    assert cut["stack"].startswith("Stack (most recent call last)") and "…[cut from" in cut["stack"]
    assert sum(len(cut[name].encode()) for name in ("logger", "message", "exception", "stack")) <= SLOT_BYTES

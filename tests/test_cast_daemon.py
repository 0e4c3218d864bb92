"""The executor's side of casting: the caster and its sender against a real wallboard, and POST /control/cast.

The wallboard is the real app on waitress (loopback). The caster is driven as the loop drives
it (``after_job`` after each job), over a State that grows as a run's does, with an injected
monotonic clock for its throttle; what it journals is recorded. Casting from a real running
executor, through ``runs cast``, is tested in tests/test_wallboard_browser.py.
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from executor_process import free_port
from tradeexecutor.cast import CastConfig
from tradeexecutor.cast.feed import ChartFeed
from tradeexecutor.daemon.caster import Caster, CastSender
from tradeexecutor.daemon.commands import CommandKind, CommandQueue
from tradeexecutor.errors import ConfigError
from tradeexecutor.runstate import RunState
from tradeexecutor.state import State
from tradeexecutor.store.cast_target import CastTargetFile
from tradeexecutor.wallboard import ChartStore, Poller, WallboardConfig
from tradeexecutor.wallboard import create_app as wallboard_app
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.options import WebhookOptions

TOKEN = "wallboard-token-42"
TIMES = np.arange(0, 200_000, 1000, dtype=np.int64)
CLOSES = np.linspace(50.0, 60.0, len(TIMES))


class Journal:
    """The loop's journal sink, recorded."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        with self._lock:
            self.entries.append((event, fields))

    def events(self, prefix: str = "cast_") -> list[str]:
        with self._lock:
            return [event for event, _ in self.entries if event.startswith(prefix)]

    def last(self, event: str) -> dict[str, Any]:
        with self._lock:
            return [fields for name, fields in self.entries if name == event][-1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def board() -> Iterator[tuple[str, ChartStore]]:
    config = WallboardConfig(token=TOKEN)
    charts = ChartStore()
    with WebhookServer(wallboard_app(config, Poller(config), charts), port=0) as server:
        yield server.url.rstrip("/"), charts


class Run:
    """A growing state, a caster over it and what it journalled."""

    def __init__(self, tmp_path: Path, wallboard_url: str | None, token: str | None = TOKEN) -> None:
        self.state = State(name="cast test")
        self.step = -1
        self.journal = Journal()
        self.clock = Clock()
        self.file = CastTargetFile(tmp_path / "state" / "cast.json")
        # A generous reply timeout: every send here is answered (or refused) by a real server on loopback, and
        # a busy machine must not turn a slow answer into a failure; waits end as soon as the send does.
        self.caster = Caster(CastConfig(wallboard_url=wallboard_url, token=token, timeout_seconds=60), self.file,
                             self.journal, ChartFeed({"XYZ": (TIMES, CLOSES)}), title="Cast test",
                             source={"name": "Cast test"}, last_bars=lambda step: {"XYZ": step},
                             monotonic=self.clock)
        self.caster.load()

    def cycle(self, bars: int = 1) -> None:
        """``bars`` more bars valued, the clock past the throttle, then the loop's after_job."""
        for _ in range(bars):
            self.step += 1
            self.state.valuations.append(int(TIMES[self.step]), 10_000.0 + self.step, 10_000.0, 0.0)
        self.clock.now += 5
        self.caster.after_job(self.state, self.step)

    def settle(self) -> None:
        assert self.caster.sender.flush(120), "the sender finished"

    def close(self) -> None:
        self.caster.close(1)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    made: list[Run] = []

    def make(wallboard_url: str | None, token: str | None = TOKEN) -> Run:
        run = Run(tmp_path / str(len(made)), wallboard_url, token)
        made.append(run)
        return run

    yield make
    for run in made:
        run.close()


def test_a_target_in_cast_json_is_taken_up_and_only_changes_are_sent(
        board: tuple[str, ChartStore], runs: Callable[..., Run]) -> None:
    url, charts = board
    run = runs(url)
    run.cycle(3)
    assert charts.index() == {"pages": []} and run.journal.events() == []  # no target: nothing sent
    run.file.write("/wallboard/page1/chart1", "runs cast")
    run.cycle()
    run.settle()
    assert run.journal.events() == ["cast_set", "cast_delivered"]
    assert run.journal.last("cast_set") == {"target": "/wallboard/page1/chart1",
                                            "url": url + "/wallboard/page1/chart1", "by": "runs cast"}
    chart = json.loads(charts.chart("page1", "chart1") or b"{}")
    equity, close = chart["series"]
    assert chart["updates"] == 1 and chart["title"] == "Cast test"
    assert equity["v"] == [10_000.0, 10_001.0, 10_002.0, 10_003.0] and close["v"][-1] == CLOSES[3]
    # Within the throttle (the clock has not moved since that send): a new bar waits.
    run.step += 1
    run.state.valuations.append(int(TIMES[run.step]), 12_345.0, 10_000.0, 0.0)
    run.caster.after_job(run.state, run.step)
    run.settle()
    assert json.loads(charts.chart("page1", "chart1") or b"{}")["updates"] == 1
    run.clock.now += 5
    run.caster.after_job(run.state, run.step)
    run.settle()
    latest = json.loads(charts.chart("page1", "chart1") or b"{}")
    assert latest["updates"] == 2 and latest["series"][0]["v"][-1] == 12_345.0
    # Nothing new: nothing sent, however long it has been.
    run.clock.now += 60
    run.caster.after_job(run.state, run.step)
    run.settle()
    assert json.loads(charts.chart("page1", "chart1") or b"{}")["updates"] == 2
    assert run.journal.events() == ["cast_set", "cast_delivered"]  # delivered is journalled once


def test_a_misspelt_path_is_journalled_once_then_a_good_one_works_and_dash_stops(
        board: tuple[str, ChartStore], runs: Callable[..., Run]) -> None:
    url, charts = board
    run = runs(url)
    run.caster.set_target("/wallbord/page1/chart1")
    for _ in range(3):
        run.cycle()
        run.settle()
    assert run.journal.events() == ["cast_set", "cast_failed"]
    failure = run.journal.last("cast_failed")
    assert failure["target"] == "/wallbord/page1/chart1" and "404" in failure["reason"]
    assert "not found: /wallbord/page1/chart1" in failure["reason"] and "/wallboard/<page>/<chart>" in failure["reason"]
    assert run.caster.sender.failed == 3
    recorded = run.file.read()
    assert recorded is not None and recorded.target == "/wallbord/page1/chart1"

    run.caster.set_target("/wallboard/page1/chart1")
    run.cycle()
    run.settle()
    assert run.journal.events()[-2:] == ["cast_set", "cast_delivered"]
    updates = json.loads(charts.chart("page1", "chart1") or b"{}")["updates"]

    run.caster.set_target("-")
    assert run.journal.events()[-1] == "cast_stopped" and run.file.read().target is None  # type: ignore[union-attr]
    for _ in range(3):
        run.cycle()
        run.settle()
    assert json.loads(charts.chart("page1", "chart1") or b"{}")["updates"] == updates, "no further updates"


@pytest.mark.parametrize("wallboard, token, target, fragment", [
    ("unreachable", TOKEN, "/wallboard/p/c", "the wallboard does not answer: connection refused"),
    ("board", "wrong-token", "/wallboard/p/c", "answered 401"),
    (None, TOKEN, "/wallboard/p/c", "no wallboard URL"),
    ("board", TOKEN, "/wallboard/p/.c", "answered 400: chart name"),
])
def test_what_goes_wrong_is_journalled_with_the_reason_and_never_the_token(
        board: tuple[str, ChartStore], runs: Callable[..., Run], wallboard: str | None, token: str, target: str,
        fragment: str) -> None:
    url = {"board": board[0], "unreachable": f"http://127.0.0.1:{free_port()}", None: None}[wallboard]
    run = runs(url, token)
    run.caster.set_target(target)
    run.cycle()
    run.settle()
    failure = run.journal.last("cast_failed")
    assert fragment in failure["reason"], failure
    assert TOKEN not in json.dumps(run.journal.entries) and "wrong-token" not in json.dumps(run.journal.entries)
    assert board[1].index() == {"pages": []}


def test_a_target_that_is_no_path_or_url_is_journalled_and_changes_nothing(
        board: tuple[str, ChartStore], runs: Callable[..., Run]) -> None:
    run = runs(board[0])
    run.caster.set_target("/wallboard/p/c")
    run.caster.set_target("wallboard/p/c")
    assert run.journal.events() == ["cast_set", "cast_failed"]
    assert "neither a wallboard path" in run.journal.last("cast_failed")["reason"]
    assert run.caster.target == "/wallboard/p/c" and run.file.read().target == "/wallboard/p/c"  # type: ignore[union-attr]


def test_a_hung_wallboard_never_holds_up_the_loop(runs: Callable[..., Run]) -> None:
    """The sender is busy with a wallboard that does not answer; after_job still returns, newest data waits."""
    asked, release = threading.Event(), threading.Event()

    def hung(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        asked.set()
        release.wait(120)  # longer than the sender's 60 s timeout: the send stays hung until released
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    with WebhookServer(hung, port=0) as server:
        run = runs(server.url.rstrip("/"))
        run.caster.set_target("/wallboard/p/c")
        run.cycle()
        assert asked.wait(60)
        for _ in range(20):  # cycles go on while the send hangs; each replaces the data waiting
            run.cycle()
        assert not release.is_set() and run.caster.sender.delivered == 0
        release.set()
        run.settle()
        assert run.caster.sender.delivered == 2  # the hung send, then only the newest of the 20


def test_a_damaged_cast_json_is_journalled_left_alone_and_nothing_is_cast(
        board: tuple[str, ChartStore], tmp_path: Path) -> None:
    path = tmp_path / "state" / "cast.json"
    path.parent.mkdir(parents=True)
    path.write_text("{oops")
    journal = Journal()
    caster = Caster(CastConfig(wallboard_url=board[0], token=TOKEN), CastTargetFile(path), journal,
                    ChartFeed({}), title="t", source={}, last_bars=lambda step: {})
    try:
        caster.load()
        assert journal.events() == ["cast_failed"] and "cast.json" in journal.last("cast_failed")["reason"]
        caster.set_target("/wallboard/p/c")
        assert "cannot record the target" in journal.last("cast_failed")["reason"]
        assert path.read_text() == "{oops"
    finally:
        caster.close(0)


def test_the_wallboard_url_must_be_a_url() -> None:
    with pytest.raises(ConfigError, match="TRADEEXECUTOR_WALLBOARD_URL"):
        CastConfig(wallboard_url="/wallboard")
    with pytest.raises(ConfigError):
        CastConfig.from_env({"TRADEEXECUTOR_WALLBOARD_URL": "wallboard:8090"})
    assert CastConfig.from_env({"TRADEEXECUTOR_WALLBOARD_URL": "http://wb:8090",
                                "TRADEEXECUTOR_WALLBOARD_TOKEN": "t"}) == CastConfig("http://wb:8090", "t")
    assert "secret-token" not in repr(CastConfig("http://wb", "secret-token"))


def test_a_closed_sender_takes_nothing_more() -> None:
    sent: list[str] = []
    sender = CastSender(CastConfig(), lambda *a, **k: None, put=lambda url, *rest: sent.append(url))
    sender.retarget("/x")
    sender.close(1)
    sender.send("/x", "http://h/x", {})
    assert sent == []


# -- POST /control/cast --------------------------------------------------------------------------

USER, PASSWORD = "ops", "cast-control-pw"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "Content-Type": "application/json"}


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url + "/control/cast", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_control_cast_queues_the_target_for_the_loop_with_auth_only() -> None:
    commands = CommandQueue()
    options = WebhookOptions(auth_username=USER, auth_password=PASSWORD, cast_sink=commands.cast)
    with WebhookServer(create_app(RunState.create("cast"), options=options), port=0) as server:
        url = server.url.rstrip("/")
        assert post(url, b'{"target": "/wallboard/p/c"}', {"Content-Type": "application/json"})[0] == 401
        code, answer = post(url, b'{"target": " /wallboard/p/c "}', AUTH)
        assert code == 202 and answer == {"accepted": True, "command": "cast", "target": "/wallboard/p/c"}
        for stop in (b'{"target": null}', b'{"target": "-"}', b'{"target": ""}'):
            assert post(url, stop, AUTH) == (202, {"accepted": True, "command": "cast", "target": None})
        for bad, fragment in ((b"{", "must be JSON"), (b'{"x": 1}', "must be {"), (b'{"target": 5}', "must be {"),
                              (b'{"target": "page1/chart1"}', "neither a wallboard path"),
                              (b'{"target": "' + b"/a" * 5000 + b'"}', "larger than")):
            code, answer = post(url, bad, AUTH)
            assert code == 400 and fragment in answer["error"] and answer["command"] == "cast", (bad[:20], answer)
    queued = []
    while (command := commands.get_nowait()) is not None:
        queued.append((command.kind, command.target))
    assert queued == [(CommandKind.cast, "/wallboard/p/c")] + [(CommandKind.cast, None)] * 3


def test_control_cast_is_refused_without_auth_configured_or_without_a_loop() -> None:
    commands = CommandQueue()
    with WebhookServer(create_app(RunState.create("cast"), options=WebhookOptions(cast_sink=commands.cast)),
                       port=0) as server:
        code, answer = post(server.url.rstrip("/"), b'{"target": "/wallboard/p/c"}', {})
        assert code == 403 and "TRADEEXECUTOR_WEBHOOK_USERNAME" in answer["error"]
    options = WebhookOptions(auth_username=USER, auth_password=PASSWORD)
    with WebhookServer(create_app(RunState.create("cast"), options=options), port=0) as server:
        assert post(server.url.rstrip("/"), b'{"target": "/wallboard/p/c"}', AUTH)[0] == 503
    assert commands.empty()

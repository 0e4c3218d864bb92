"""The alert rules and the Grafana dashboard against a real Prometheus scraping a real executor.

Debian's Prometheus server (``/usr/bin/prometheus``, installed by .ci/run with promtool) runs on
loopback with a temporary config and data directory, a 1 s scrape and evaluation interval and
the rules of deploy/prometheus/alerts.yml **with the same expressions but every ``for:`` divided
by 60** (1m → 1s, 5m → 5s, 1h → 60s), generated from the real file, so the story below takes about
a minute instead of hours. It scrapes

- one real executor (the daemon as a subprocess on a fixed port, strategy
  tests/strategies/daemon_crash_on_demand.py) that the test starts and crashes three times under
  ``--crash-policy exit`` (the test acts as the restart policy: two processes exit, the third crash
  completes the loop and that process stays up in safe mode), stops with SIGTERM, lets finish its
  replay and stops again;
- a port where nothing ever listens (an executor that never started, or a wrong address);
- Prometheus itself, whose memory must not show on the executors' dashboard.

At each step it asserts through Prometheus's HTTP API which alerts fire and which clear
(/api/v1/alerts), and that every query of the dashboard, evaluated on that live data
(/api/v1/query, ``$instance`` = All), returns what its panel title says; when the run is complete
(nothing moves any more) the portfolio panels must equal the executor's own /status.

Thresholds inside the expressions (CycleOverdue's 120 s, MarketDataStale's two cycles and a
minute) are not shortened: a hung loop and stale data are covered by promtool's unit tests
(deploy/prometheus/alerts_test.yml) only.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from test_daemon_e2e import Executor, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "tradeexecutor.json"
#: Real `for:` durations are divided by this in the rules the test loads.
TIME_SCALE = 60
#: Generous: the machine may be busy with other work.
DEADLINE = 90.0
#: Alerts whose timer may or may not have run out during a step (safe mode's ExecutorPaused: 60 s here).
UNDECIDED = {"ExecutorPaused"}
STRATEGY = "daemon_crash_on_demand.py"


# ---------------------------------------------------------------------------------------------------
# Prometheus


def duration_seconds(text: str) -> float:
    """A Prometheus duration such as 1m, 5m, 1h or 1h30m, in seconds."""
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"unsupported duration {text!r}"
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(int(number) * units[unit] for number, unit in parts)


def short_rules(source: Path = ALERTS) -> dict[str, Any]:
    """The rule file with the same expressions and every ``for:`` divided by TIME_SCALE (whole milliseconds)."""
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{round(duration_seconds(str(rule['for'])) * 1000 / TIME_SCALE)}ms"
    return document


def test_short_rules_keep_every_expression_and_scale_every_timer() -> None:
    real = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    short = short_rules()["groups"]
    pairs = [pair for g1, g2 in zip(real, short, strict=True) for pair in zip(g1["rules"], g2["rules"], strict=True)]
    assert pairs and all(a["expr"] == b["expr"] and a.get("alert") == b.get("alert") for a, b in pairs)
    for real_rule, short_rule in pairs:
        if "for" in real_rule:
            assert duration_seconds(short_rule["for"]) == pytest.approx(
                duration_seconds(real_rule["for"]) / TIME_SCALE, abs=0.001)


class Prometheus:
    """A Prometheus server on loopback over a temporary directory, with the short rules."""

    def __init__(self, binary: str, workdir: Path, executor_targets: dict[str, str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        (workdir / "alerts.yml").write_text(yaml.safe_dump(short_rules(), sort_keys=False), encoding="utf-8")
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "tradeexecutor", "metrics_path": "/metrics",
                 "static_configs": [{"targets": [address], "labels": {"executor": name}}
                                    for name, address in executor_targets.items()]},
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]},
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        command = [binary, f"--config.file={config_file}", f"--storage.tsdb.path={workdir / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d"]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)

    def get(self, path: str, **params: str) -> Any:
        """GET a Prometheus URL; the decoded JSON ``data`` of an API call, or the body text."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}{query}", timeout=10) as response:
            body = response.read().decode("utf-8")
        if not path.startswith("/api/"):
            return body
        document = json.loads(body)
        assert document["status"] == "success", document
        return document["data"]

    def wait_ready(self) -> None:
        def ready() -> str | None:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.output()}")
            try:
                self.get("/-/ready")
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                return f"not ready: {error}"
            return None

        eventually("Prometheus is ready", ready)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [time, "text"]}, ...]``."""
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", f"{expr}: {data['resultType']}"
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/alerts")["alerts"])

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def eventually(what: str, complaint: Callable[[], str | None], timeout: float = DEADLINE) -> None:
    """Poll until ``complaint()`` has nothing to say; fail with its last word after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: str | None = "never checked"
    while time.monotonic() < deadline:
        last = complaint()
        if last is None:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting until {what}: {last}")


def prometheus_binary() -> str:
    """Debian's prometheus; skip without it locally, fail in CI (where .ci/run installs it)."""
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        message = "the prometheus server is not installed (apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    return found


# ---------------------------------------------------------------------------------------------------
# What each step expects


@dataclass
class Step:
    """What is true of the executor at one step of the story, and what the panels must show for it."""

    name: str
    #: Whether the executor's process answers (Prometheus's `up`).
    up: bool
    #: The run status it reports (when up).
    status: str | None = None
    #: /healthz's verdict (when up).
    healthy: bool = False
    #: Crashes recorded for its state directory.
    crashes: int = 0
    #: Safe mode after the crash loop.
    safe_mode: bool = False
    #: Whether this process has completed a strategy cycle (never in safe mode: the strategy is not called).
    decided: bool = True
    #: Paused by an operator (never, in this story).
    paused: bool = False
    #: New entries paused by a risk limit (no limit is set in this story).
    risk_paused: bool = False
    #: Seconds per replayed bar (its cycle interval).
    replay_seconds: float = 0.5
    #: The executor's /status when nothing moves any more (a complete run), to compare figures exactly.
    frozen: dict[str, Any] | None = None
    #: Alerts that must be firing, by instance; every other alert must not be (but UNDECIDED).
    firing: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class Scene:
    """The instances Prometheus scrapes."""

    executor: str  #: the executor's instance label
    dead: str  #: the instance where nothing listens


Vector = list[dict[str, Any]]


def values(vector: Vector, instance: str) -> list[float]:
    return [float(sample["value"][1]) for sample in vector if sample["metric"].get("instance") == instance]


def one(vector: Vector, instance: str, what: str) -> tuple[float | None, list[str]]:
    """The single value for ``instance`` (None when absent), and a complaint when there are several."""
    found = values(vector, instance)
    if len(found) > 1:
        return None, [f"{what}: {len(found)} series for {instance}"]
    return (found[0] if found else None), []


def expect_value(vector: Vector, instance: str, what: str, expected: float | None, rel: float = 1e-9) -> list[str]:
    value, problems = one(vector, instance, what)
    if problems:
        return problems
    if expected is None:
        return [] if value is None else [f"{what}: {instance} should have no value, has {value}"]
    if value is None or not math.isclose(value, expected, rel_tol=rel, abs_tol=1e-9):
        return [f"{what}: {instance} is {value}, expected {expected}"]
    return []


def expect_range(vector: Vector, instance: str, what: str, low: float, high: float, present: bool) -> list[str]:
    value, problems = one(vector, instance, what)
    if problems:
        return problems
    if not present:
        return [] if value is None else [f"{what}: {instance} is gone, yet shows {value}"]
    if value is None or not low <= value <= high:
        return [f"{what}: {instance} is {value}, expected between {low} and {high}"]
    return []


def only_executor_instances(vector: Vector, scene: Scene, what: str) -> list[str]:
    strangers = {s["metric"].get("instance") for s in vector} - {scene.executor, scene.dead}
    jobs = {s["metric"].get("job") for s in vector} - {"tradeexecutor", None}
    return [f"{what}: shows {sorted(strangers)} / jobs {sorted(jobs)}"] if strangers or jobs else []


def portfolio_figure(key: str, low: float, high: float) -> Callable[[list[Vector], Step, Scene], list[str]]:
    """A portfolio panel: the /status figure when frozen, else a plausible value while up, nothing when down."""

    def check(results: list[Vector], step: Step, scene: Scene) -> list[str]:
        (vector,) = results
        problems = only_executor_instances(vector, scene, key)
        if step.frozen is not None:
            return problems + expect_value(vector, scene.executor, key, step.frozen["portfolio"][key])
        return problems + expect_range(vector, scene.executor, key, low, high, step.up)

    return check


def check_up(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    return (only_executor_instances(vector, scene, "Up")
            + expect_value(vector, scene.executor, "Up", 1.0 if step.up else 0.0)
            + expect_value(vector, scene.dead, "Up", 0.0))


def check_healthy(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    return (only_executor_instances(vector, scene, "Healthy")
            + expect_value(vector, scene.executor, "Healthy", 1.0 if step.up and step.healthy else 0.0)
            + expect_value(vector, scene.dead, "Healthy", 0.0))


def check_run_status(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    shown = sorted(s["metric"].get("status", "?") for s in vector if s["metric"].get("instance") == scene.executor)
    expected = [step.status] if step.up else []
    problems = [] if shown == expected else [f"Run status: {scene.executor} shows {shown}, expected {expected}"]
    return problems + expect_value(vector, scene.dead, "Run status", None)


def check_crashed(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    # A crash recorded less than 15 minutes ago shows, also while the process is gone; none ever: 0 while up.
    expected = 1.0 if step.crashes else (0.0 if step.up else None)
    return expect_value(vector, scene.executor, "Crashed (15m)", expected) + expect_value(
        vector, scene.dead, "Crashed (15m)", None)


def flag(title: str, attribute: str) -> Callable[[list[Vector], Step, Scene], list[str]]:
    def check(results: list[Vector], step: Step, scene: Scene) -> list[str]:
        (vector,) = results
        expected = (1.0 if getattr(step, attribute) else 0.0) if step.up else None
        return expect_value(vector, scene.executor, title, expected) + expect_value(vector, scene.dead, title, None)

    return check


def check_crashes_24h(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    # Whole crashes, every one counted (last_over_time keeps the newest count for 15 minutes).
    return expect_value(vector, scene.executor, "Crashes (24h)", float(step.crashes)) + expect_value(
        vector, scene.dead, "Crashes (24h)", None)


def check_executors(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    rows = [s["metric"] for s in vector if s["metric"].get("instance") == scene.executor]
    if not step.up:
        return [f"Executors: {scene.executor} is gone, yet listed"] if rows else []
    wanted = {"strategy": "Daemon crash on demand", "mode": "replay", "executor_id": "daemon_crash_on_demand"}
    if len(rows) != 1 or any(rows[0].get(k) != v for k, v in wanted.items()):
        return [f"Executors: {rows}, expected one row with {wanted}"]
    return []


def check_orders(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    mine = {s["metric"]["state"]: float(s["value"][1])
            for s in vector if s["metric"].get("instance") == scene.executor}
    if step.frozen is not None:
        figures = step.frozen["portfolio"]
        expected = {state: float(figures[f"orders_{state}"]) for state in ("planned", "filled", "rejected")}
        return [] if mine == expected else [f"Orders by state: {mine}, expected {expected}"]
    if not step.up:
        return [f"Orders by state: {scene.executor} is gone, yet shows {mine}"] if mine else []
    if set(mine) != {"planned", "filled", "rejected"} or mine["filled"] < 1:
        return [f"Orders by state: {mine}, expected planned/filled/rejected with the one buy filled"]
    return []


def check_jobs(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    cycles, checks, revaluations = results
    problems: list[str] = []
    for vector, what in ((cycles, "cycles"), (checks, "trigger checks"), (revaluations, "revaluations")):
        problems += only_executor_instances(vector, scene, f"Jobs per hour ({what})")
        problems += [f"Jobs per hour: {what} {v} < 0" for v in values(vector, scene.executor) if v < 0]
    if step.up and step.status == "running" and not any(v > 0 for v in values(cycles, scene.executor)):
        problems.append(f"Jobs per hour: no cycles for a running executor: {values(cycles, scene.executor)}")
    return problems


def check_cycle_timing(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    duration, lag = results
    present = step.up and step.status == "running"
    if step.frozen is not None:
        return (expect_value(duration, scene.executor, "Cycle duration", step.frozen["last_cycle_duration"])
                + expect_value(lag, scene.executor, "Cycle lag", step.frozen["last_cycle_lag"]))
    return (expect_range(duration, scene.executor, "Cycle duration", 0, 30, present and step.decided)
            + expect_range(lag, scene.executor, "Cycle lag", 0, 30, present))


def check_since_last_cycle(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    # Wall time: seconds, never the years between a replayed bar and today.
    return expect_range(vector, scene.executor, "Since last cycle", 0, 120, step.up and step.decided)


def check_overdue(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    return expect_range(vector, scene.executor, "Next cycle overdue", 0, 60, step.up)


def check_feed_lag(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    lag, threshold = results
    stale_above = 2 * step.replay_seconds + 60 if step.up else None
    high = 300 if step.status == "complete" else 60  # a finished replay gets no new bar
    return (expect_range(lag, scene.executor, "Market data feed lag", 0, high, step.up)
            + expect_value(threshold, scene.executor, "MarketDataStale threshold", stale_above))


def check_memory(results: list[Vector], step: Step, scene: Scene) -> list[str]:
    (vector,) = results
    return (only_executor_instances(vector, scene, "Resident memory")
            + expect_range(vector, scene.executor, "Resident memory", 10e6, 8e9, step.up))


#: What every panel must show, by title. A panel without an entry fails the test.
CHECKS: dict[str, Callable[[list[Vector], Step, Scene], list[str]]] = {
    "Up": check_up,
    "Healthy": check_healthy,
    "Run status": check_run_status,
    "Crashed (15m)": check_crashed,
    "Safe mode": flag("Safe mode", "safe_mode"),
    "Paused": flag("Paused", "paused"),
    "Risk paused": flag("Risk paused", "risk_paused"),
    "Crashes (24h)": check_crashes_24h,
    "Executors": check_executors,
    "Portfolio value": portfolio_figure("portfolio_value", 1_000, 100_000),
    "Cash": portfolio_figure("cash", 0, 10_000),
    "Unrealised PnL": portfolio_figure("unrealised_pnl", -10_000, 10_000),
    "Open positions": portfolio_figure("open_positions", 1, 1),
    "Fees paid": portfolio_figure("fees_paid", 0, 1_000),
    "Orders by state": check_orders,
    "Jobs per hour": check_jobs,
    "Cycle duration and lag": check_cycle_timing,
    "Since last cycle": check_since_last_cycle,
    "Next cycle overdue": check_overdue,
    "Market data feed lag": check_feed_lag,
    "Resident memory": check_memory,
}


def dashboard_panels() -> list[tuple[str, list[str]]]:
    """(title, [expr per target]) of every panel with queries, ``$instance`` set to All."""
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = []
    for panel in document["panels"]:
        exprs = [target["expr"].replace("$instance", ".*") for target in panel.get("targets", [])]
        if exprs:
            panels.append((panel["title"], exprs))
    return panels


def test_every_dashboard_panel_has_a_check() -> None:
    titles = [title for title, _ in dashboard_panels()]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    assert set(titles) == set(CHECKS)


def dashboard_complaint(prometheus: Prometheus, step: Step, scene: Scene) -> str | None:
    problems: list[str] = []
    for title, exprs in dashboard_panels():
        results = [prometheus.query(expr) for expr in exprs]
        problems += CHECKS[title](results, step, scene)
    variable = {s["metric"]["instance"] for s in prometheus.query('up{job="tradeexecutor"}')}
    if variable != {scene.executor, scene.dead}:
        problems.append(f"the Executor variable lists {sorted(variable)}")
    return "; ".join(problems) or None


def alerts_complaint(prometheus: Prometheus, step: Step) -> str | None:
    firing: dict[str, set[str]] = {}
    for alert in prometheus.alerts():
        if alert["state"] == "firing":
            firing.setdefault(alert["labels"].get("instance", ""), set()).add(alert["labels"]["alertname"])
    problems = []
    for instance in set(firing) | set(step.firing):
        shown = firing.get(instance, set()) - UNDECIDED
        expected = step.firing.get(instance, set())
        if shown != expected:
            problems.append(f"{instance or '(no instance)'}: firing {sorted(shown)}, expected {sorted(expected)}")
    return "; ".join(problems) or None


def settle(prometheus: Prometheus, step: Step, scene: Scene) -> None:
    """Wait until the alerts and every dashboard panel show ``step``."""
    eventually(f"the alerts show '{step.name}'", lambda: alerts_complaint(prometheus, step))
    eventually(f"the dashboard shows '{step.name}'", lambda: dashboard_complaint(prometheus, step, scene))


def status_of(executor: Executor) -> dict[str, Any]:
    status = executor.status()
    assert status is not None, executor.output()
    return status


# ---------------------------------------------------------------------------------------------------
# The story


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Any]]:
    """Everything started, stopped at the end whatever happens."""
    started: list[Any] = []
    yield started
    for thing in reversed(started):
        if isinstance(thing, Executor):
            thing.kill()
        else:
            thing.stop()


def test_alerts_and_dashboard_tell_the_truth_on_a_live_prometheus(tmp_path: Path, running: list[Any]) -> None:
    binary = prometheus_binary()
    port = free_port()
    scene = Scene(executor=f"127.0.0.1:{port}", dead=f"127.0.0.1:{free_port()}")
    prometheus = Prometheus(binary, tmp_path / "prometheus", {"e2e": scene.executor, "never-started": scene.dead})
    running.append(prometheus)
    prometheus.wait_ready()
    down = "ExecutorDown"
    trigger = tmp_path / "crash-now"
    state_dir = tmp_path / "state"

    def start(*args: str) -> Executor:
        executor = Executor(tmp_path / "executor", "--crash-policy", "exit", "-p", f"crash_file={trigger}", *args,
                            strategy=STRATEGY, state_dir=state_dir, port=port)
        running.append(executor)
        return executor

    # Before the executor exists, and for the port where nothing ever listens: down from the start.
    eventually("both targets are down", lambda: alerts_complaint(prometheus, Step(
        "not started", up=False, firing={scene.executor: {down}, scene.dead: {down}})))

    # Running and healthy: nothing fires for it; the dead target stays down.
    first = start("--replay-seconds", "0.5")
    first.wait_status(lambda s: s["status"] == "running" and s["portfolio"]["open_positions"] == 1,
                      timeout=DEADLINE)
    settle(prometheus, Step("running", up=True, status="running", healthy=True,
                            firing={scene.dead: {down}}), scene)

    # A crash loop under the exit policy: the first two crashes end their processes at once; the
    # third completes the loop, and that process stays up in safe mode (its strategy no longer
    # called, its position still managed): running, but /healthz fails until an operator acts.
    # The test is the restart policy, and like Docker's or Kubernetes' it restarts after a back-off:
    # here, once Prometheus has seen the dead process down (without one, a restart on a quiet
    # machine can beat the scrapes and the outage is never seen — a race, not a finding).
    def down_seen() -> str | None:
        firing = [a for a in prometheus.alerts() if a["state"] == "firing" and a["labels"]["alertname"] == down
                  and a["labels"].get("instance") == scene.executor]
        return None if firing else f"{down} is not firing for {scene.executor}"

    loop_began = time.time()
    trigger.touch()
    assert first.wait(DEADLINE) == 1
    eventually("the first crashed process is seen down", down_seen)
    assert start("--replay-seconds", "0.5").wait(DEADLINE) == 1
    eventually("the second crashed process is seen down", down_seen)
    safe = start("--replay-seconds", "0.5")
    safe.wait_status(lambda s: s["status"] == "running" and s["safe_mode"] and s["crash_count"] == 3,
                     timeout=DEADLINE)
    trigger.unlink()
    crashed = {"ExecutorCrashed", "ExecutorCrashLooping"}
    settle(prometheus, Step("safe mode after a crash loop", up=True, status="running", healthy=False, crashes=3,
                            safe_mode=True, decided=False, firing={scene.executor: crashed | {"HealthFailing"},
                                                    scene.dead: {down}}), scene)
    looping = [a for a in prometheus.alerts() if a["labels"]["alertname"] == "ExecutorCrashLooping"]
    assert [float(a["value"]) for a in looping] == [3.0], looping
    # The executor was down between the processes, and that alert cleared once one kept running.
    window = f"{math.ceil(time.time() - loop_began) + 1}s"
    fired = prometheus.query(f'max_over_time(ALERTS{{alertname="{down}", alertstate="firing", '
                             f'instance="{scene.executor}"}}[{window}])')
    assert values(fired, scene.executor) == [1.0], f"ExecutorDown did not fire during the crash loop: {fired}"

    # Stopped with SIGTERM: the process is gone, so it is down (Prometheus cannot tell why).
    safe.process.send_signal(signal.SIGTERM)
    assert safe.wait(DEADLINE) == 0
    settle(prometheus, Step("stopped", up=False, crashes=3,
                            firing={scene.executor: crashed | {down}, scene.dead: {down}}), scene)

    # The run completes and the process keeps serving its results: not an outage, no failing health.
    finished = start("--replay-seconds", "0.01", "--complete-serve-seconds", "600")
    final = finished.wait_status(lambda s: s["status"] == "complete", timeout=DEADLINE)
    settle(prometheus, Step("complete", up=True, status="complete", crashes=3, safe_mode=True, replay_seconds=0.01,
                            decided=False, frozen=final,
                            firing={scene.executor: crashed | {"ExecutorRunFinished"}, scene.dead: {down}}), scene)
    assert status_of(finished)["portfolio"] == final["portfolio"], "a complete run's figures never move"

    # Stopped for good: down again; the finished-run notice clears with its series.
    finished.process.send_signal(signal.SIGTERM)
    assert finished.wait(DEADLINE) == 0
    settle(prometheus, Step("stopped after completing", up=False, crashes=3,
                            firing={scene.executor: crashed | {down}, scene.dead: {down}}), scene)

"""Schemathesis against a live webhook: every documented operation, generated requests, real HTTP.

The server is a real waitress WebhookServer on a free port serving a RunState filled by a real
backtest of strategies/sma_crossover.py (summary, every chart), with the files the loop
publishes (state, positions, orders, metadata), a journal and a technical log buffer, basic
auth configured and a command sink that records what it gets. The OpenAPI document is loaded
from the server itself (/api/openapi.yaml), so the test checks what is actually served.

Checks per response: no 5xx, the status code is documented, the body matches its schema
(JSON bodies), and the Content-Type is one the operation documents.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from tradeexecutor.backtest import run_backtest
from tradeexecutor.control import ActionReply, ActionRequest, ActionResult, Outcome
from tradeexecutor.data.source import load_market
from tradeexecutor.layout import RunFiles
from tradeexecutor.runstate import HealthLimits, RunState, image_key
from tradeexecutor.runstate.logbuffer import RingBufferHandler
from tradeexecutor.stats import compute_summary, write_trades_csv
from tradeexecutor.store.journal import Journal
from tradeexecutor.store.publish import publish
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.visual import render_all
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.options import WebhookOptions

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "schemathesis", "st-pw-0123456789"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
MAX_EXAMPLES = 30
#: Seconds one request may take: generous, for a machine busy with other work (each ends when answered).
REPLY_SECONDS = 60
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@dataclass
class Recorder:
    """The command sink: records every command and accepts it."""

    calls: list[str] = field(default_factory=list)
    #: Targets the cast sink got.
    casts: list[str | None] = field(default_factory=list)
    #: Operator jobs the action sink got.
    jobs: list[ActionRequest] = field(default_factory=list)

    def __call__(self, command: str) -> bool:
        self.calls.append(command)
        return True

    def ask(self, request: ActionRequest) -> ActionReply:
        """The action sink: every job is done at once (the loop's own answers are tested with a real loop)."""
        self.jobs.append(request)
        reply = ActionReply()
        reply.set(ActionResult(Outcome.done, f"{request.command} done", {"recorded": True}))
        return reply

    def cast(self, target: str | None) -> bool:
        self.casts.append(target)
        return True


@dataclass
class LiveExecutor:
    server: WebhookServer
    sink: Recorder
    runstate: RunState


def _fill_runstate(state_dir: Path) -> tuple[RunState, RunFiles]:
    """A real backtest published the way the loop does: RunState fields, charts and public files."""
    strategy = load_strategy(ROOT / "strategies" / "sma_crossover.py")
    market, _ = load_market([], strategy.instruments)
    result = run_backtest(strategy, market)
    prices = {symbol: market.close_series(symbol) for symbol in market.symbols}
    now = datetime.now(UTC)

    runstate = RunState.create(
        "schemathesis",
        mode="backtest",
        strategy_name=strategy.name,
        strategy_version=strategy.version,
        source_code=strategy.source,
        version={"package": "0.1.0", "git_commit": None},
        now=now,
    )
    runstate.update(
        status="running",
        executor_running=True,
        cycles=result.cycles,
        completed_cycle=result.state.last_completed_cycle,
        next_cycle_at=now + timedelta(hours=1),
        summary_statistics=compute_summary(result.state, benchmark_prices=prices).to_dict(),
    )
    runstate.set_images({image_key(*key): data for key, data in render_all(result.state, prices).items()})

    files = RunFiles(state_dir)
    publish(
        result.state,
        files,
        metadata={"name": strategy.name, "description": strategy.description, "mode": "backtest",
                  "strategy_version": strategy.version, "started_at": now},
        orders_csv_writer=write_trades_csv,
    )
    journal = Journal(files.journal)
    journal.append("started", {"mode": "backtest"})
    journal.append("cycle_completed", {"duration": 0.01, "decisions": 1})
    journal.append("order_rejected", {"trade_id": 3, "reason": "below minimum notional"}, level="warning")
    journal.append("stopped", {"reason": "complete"})
    return runstate, files


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveExecutor]:
    runstate, files = _fill_runstate(tmp_path_factory.mktemp("schemathesis-state"))
    log_buffer = RingBufferHandler(capacity=50)
    for level, message in ((logging.INFO, "cycle done"), (logging.WARNING, "slow cycle")):
        log_buffer.handle(logging.LogRecord("tradeexecutor.daemon", level, __file__, 1, message, None, None))
    try:
        raise RuntimeError("an earlier failure")
    except RuntimeError:
        import sys

        log_buffer.handle(logging.LogRecord("tradeexecutor.daemon", logging.ERROR, __file__, 1, "failed",
                                            None, sys.exc_info()))
    sink = Recorder()
    options = WebhookOptions(files=files, auth_username=USER, auth_password=PASSWORD, command_sink=sink,
                             cast_sink=sink.cast, action_sink=sink.ask, log_buffer=log_buffer,
                             health_limits=HealthLimits(grace_seconds=3600))
    with WebhookServer(create_app(runstate, options=options), port=0, threads=4) as server:
        yield LiveExecutor(server, sink, runstate)


@pytest.fixture(scope="module")
def api(live: LiveExecutor) -> Any:
    return schemathesis.openapi.from_url(f"{live.server.url}/api/openapi.yaml", headers=AUTH, timeout=REPLY_SECONDS)


def _operations(api: Any) -> list[Any]:
    return [result.ok() for result in api.get_all_operations()]


def _fuzz(operation: Any, base_url: str, statuses: set[int]) -> None:
    """Run MAX_EXAMPLES generated requests of one operation through every check; record the statuses seen."""

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call_and_validate(base_url=base_url, headers=AUTH, checks=CHECKS, timeout=REPLY_SECONDS)
        statuses.add(response.status_code)

    run()


def test_every_operation_conforms(live: LiveExecutor, api: Any) -> None:
    operations = _operations(api)
    labels = sorted(op.label for op in operations)
    assert "GET /status" in labels and "POST /control/stop" in labels and "GET /logs" in labels
    seen: dict[str, set[int]] = {}
    failures: list[str] = []

    for operation in operations:
        try:
            _fuzz(operation, live.server.url, seen.setdefault(operation.label, set()))
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - a FailureGroup per operation, all reported
            failures.append(f"{operation.label}: {exc}")

    assert not failures, "\n\n".join(failures)
    # Every operation was exercised, and the happy path was among the answers.
    assert all(seen[label] for label in labels), seen
    for label in ("GET /status", "GET /summary", "GET /visualisation", "GET /healthz", "GET /metrics",
                  "GET /logs", "GET /logs/technical", "GET /state", "GET /positions", "GET /orders.csv",
                  "GET /metadata", "GET /", "GET /api/openapi.yaml", "POST /control/stop", "POST /control/cast",
                  "GET /control", "POST /control/close", "POST /control/close-all", "POST /control/reload-params"):
        if label in seen:
            assert 200 in seen[label] or 202 in seen[label], (label, seen[label])
    assert {"stop", "pause", "resume", "cycle_now"} <= set(live.sink.calls)
    assert live.sink.casts, "generated cast targets reached the sink"
    assert {"close", "close_all", "reload_params"} <= {job.command for job in live.sink.jobs}


def test_without_credentials_everything_but_the_probes_is_401(live: LiveExecutor, api: Any) -> None:
    """The same operations without auth: a documented 401 (the probes stay open), never a 5xx."""
    calls_before, casts_before, jobs_before = list(live.sink.calls), list(live.sink.casts), list(live.sink.jobs)
    for operation in _operations(api):
        parameters = {"name": "dashboard.css"} if "{name}" in operation.path else {}
        case = operation.Case(path_parameters=parameters)
        response = case.call(base_url=live.server.url, timeout=REPLY_SECONDS)
        expected = 200 if operation.path in ("/ping", "/healthz") else 401
        assert response.status_code == expected, (operation.label, response.status_code)
        case.validate_response(response, checks=CHECKS)
    assert live.sink.calls == calls_before and live.sink.casts == casts_before and live.sink.jobs == jobs_before


#: GET operations whose query parameters are validated (the rest take none).
QUERY_OPERATIONS = ("GET /logs", "GET /logs/technical", "GET /positions", "GET /visualisation")
#: POST operations whose JSON bodies are validated against the document.
BODY_OPERATIONS = ("POST /control/close", "POST /control/close-all", "POST /control/reload-params")


def test_query_parameters_and_bodies_take_exactly_what_the_document_declares(live: LiveExecutor) -> None:
    """Values outside the declared schema (an empty ``level=``, a ``since`` of no declared form, a
    ``position_id`` of 0, a parameter given as a list) are refused with a 4xx, and every value the
    schema allows is accepted: code and document agree.

    Undeclared parameters are not generated: they are ignored by design (the dashboard adds ``v=``).
    """
    strict = schemathesis.openapi.from_url(f"{live.server.url}/api/openapi.yaml", headers=AUTH, timeout=REPLY_SECONDS)
    strict.config.generation.update(allow_extra_parameters=False)
    operations = [op for op in _operations(strict) if op.label in QUERY_OPERATIONS + BODY_OPERATIONS]
    assert sorted(op.label for op in operations) == sorted(QUERY_OPERATIONS + BODY_OPERATIONS)
    failures: list[str] = []
    for operation in operations:
        for mode, check in ((GenerationMode.NEGATIVE, negative_data_rejection),
                            (GenerationMode.POSITIVE, positive_data_acceptance)):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=2 * MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                case.call_and_validate(base_url=live.server.url, headers=AUTH, checks=[not_a_server_error, check],  # noqa: B023
                                       timeout=REPLY_SECONDS)

            try:
                run()
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation and mode reported
                failures.append(f"{operation.label} ({mode}): {exc}")
    assert not failures, "\n\n".join(failures)

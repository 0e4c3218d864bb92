"""Schemathesis against a live runner API: every documented operation, generated requests, real HTTP.

The server is the wallboard's app on a real waitress server on loopback, with the runner API's
credentials and a real runs folder (``runs.verbs.RunVerbs``, as ``tradeexecutor wallboard
--runs-dir`` wires it) holding a backtest run made from strategies/sma_crossover.py. The document
is loaded from the server itself (/api/runner/openapi.yaml), so the test checks what is served.

Checks per response: no 5xx, the status code is documented, the body matches its schema (JSON
bodies) and the Content-Type is one the operation documents; bodies and query parameters the
document does not allow are refused. Generated run names are random, so the verbs that change a
run are also called once each on the real run, their answers checked against the document too.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
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
    response_schema_conformance,
    status_code_conformance,
)

from tradeexecutor.runs.run import Runs
from tradeexecutor.runs.verbs import RunVerbs
from tradeexecutor.wallboard import ChartStore, Poller, WallboardConfig, create_app
from tradeexecutor.webhook import WebhookServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "schemathesis", "st-runner-pw-0123456789"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
SPEC = """\
strategy_file: sma.py
mode: backtest
name: Schemathesis backtest
environment: {data: [stocks-daily], start: "2009-01-01", end: "2010-12-31"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    work = tmp_path_factory.mktemp("runner-api")
    shutil.copy(ROOT / "strategies" / "sma_crossover.py", work / "sma.py")
    (work / "bt.yaml").write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEEXECUTOR_")}
    runs = Runs(work / "runs", env=env)
    runs.create(work / "bt.yaml", ref="bt")
    runs.close()
    config = WallboardConfig(runner_username=USER, runner_password=PASSWORD, threads=4)
    app = create_app(config, Poller(config), ChartStore(), RunVerbs(work / "runs", env))
    with WebhookServer(app, port=0, threads=4, name="wallboard") as web:
        yield web.url.rstrip("/"), work


@pytest.fixture(scope="module")
def api(server: tuple[str, Path]) -> Any:
    return schemathesis.openapi.from_url(f"{server[0]}/api/runner/openapi.yaml", headers=AUTH, timeout=30)


def _operations(api: Any) -> list[Any]:
    return [result.ok() for result in api.get_all_operations()]


def test_every_operation_conforms(server: tuple[str, Path], api: Any) -> None:
    url, _ = server
    operations = _operations(api)
    labels = sorted(op.label for op in operations)
    verbs = {"GET /api/runs", "POST /api/runs", "GET /api/runs/{run}", "GET /api/runs/{run}/logs",
             "GET /api/runs/{run}/orders"} | {f"POST /api/runs/{{run}}/{verb}" for verb in
                                              ("start", "stop", "reset", "copy", "set", "cast")}
    assert verbs <= set(labels), sorted(verbs - set(labels))
    seen: dict[str, set[int]] = {}
    failures: list[str] = []
    for operation in operations:
        statuses = seen.setdefault(operation.label, set())

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call_and_validate(base_url=url, headers=AUTH, checks=CHECKS, timeout=30)
            statuses.add(response.status_code)  # noqa: B023

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation's failures reported
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    assert all(seen[label] for label in labels), seen


def test_bodies_and_query_parameters_the_document_does_not_allow_are_refused(server: tuple[str, Path], api: Any) -> None:
    url, _ = server
    strict = schemathesis.openapi.from_url(f"{url}/api/runner/openapi.yaml", headers=AUTH, timeout=30)
    strict.config.generation.update(allow_extra_parameters=False)
    failures: list[str] = []
    operations = [op for op in _operations(strict) if op.method.upper() == "POST" or op.path.endswith("/logs")]
    assert len(operations) == 8  # seven POSTs and GET logs
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(base_url=url, headers=AUTH, checks=[not_a_server_error, negative_data_rejection],
                                   timeout=30)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every operation reported
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


#: The verbs on the real run, in an order that gives each its happy path: (method, path, body, status).
HAPPY: tuple[tuple[str, str, dict[str, Any] | None, int], ...] = (
    ("GET", "/api/runs", None, 200),
    ("GET", "/api/runs/{run}", None, 200),
    ("POST", "/api/runs/{run}/set", {"assignments": ["strategy.fast=8"]}, 200),
    ("POST", "/api/runs/{run}/cast", {"target": "-"}, 200),
    ("POST", "/api/runs/{run}/copy", {"ref": "bt-copy"}, 201),
    ("POST", "/api/runs", {"spec": "{work}/bt.yaml", "ref": "bt-2"}, 201),
    ("POST", "/api/runs/{run}/start", {}, 200),
    ("GET", "/api/runs/{run}/orders", None, 200),
    ("GET", "/api/runs/{run}/logs", None, 200),
    ("POST", "/api/runs/{run}/stop", {}, 400),
    ("POST", "/api/runs/{run}/reset", {}, 200),
)


def test_each_verb_on_a_real_run_answers_as_documented(server: tuple[str, Path], api: Any) -> None:
    url, work = server
    operations = {op.label: op for op in _operations(api)}
    for method, path, body, expected in HAPPY:
        operation = operations[f"{method} {path}"]
        if body is not None and "spec" in body:
            body = {**body, "spec": body["spec"].format(work=work)}
        kwargs: dict[str, Any] = {"path_parameters": {"run": "bt"}} if "{run}" in path else {}
        if body is not None:
            kwargs["body"] = body
        case = operation.Case(**kwargs)
        response = case.call(base_url=url, headers=AUTH, timeout=60)
        assert response.status_code == expected, (method, path, response.status_code, response.text)
        case.validate_response(response, checks=CHECKS)
        if path.endswith("/start"):  # the backtest runs detached: wait for it (its orders come next)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                status = operations["GET /api/runs/{run}"].Case(path_parameters={"run": "bt"}).call(
                    base_url=url, headers=AUTH, timeout=30).json()["run"]["status"]
                if status == "complete":
                    break
                time.sleep(0.2)
            assert status == "complete"

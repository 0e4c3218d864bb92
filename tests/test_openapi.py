"""The OpenAPI document stays in step with the app: every route documented with its methods, nothing invented.

It must also be a valid OpenAPI 3 document, be served at /api/openapi.yaml behind auth, and
describe the real response bodies (checked here for shapes a live run may not produce, such as
a crash record; tests/test_schemathesis.py checks the rest against a live executor).
"""

from __future__ import annotations

import base64
import http.client
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec
from pyramid.router import Router

from tradeexecutor.runstate import RunState
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.openapi import openapi_document
from tradeexecutor.webhook.options import WebhookOptions

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
T0 = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = yaml.safe_load(openapi_document())
    assert isinstance(loaded, dict)
    return loaded


def _app_routes() -> dict[str, set[str]]:
    """Pattern → methods served (HEAD dropped: it comes with every GET) for every route of the app."""
    app = create_app(RunState.create("openapi-test", version={"package": "0", "git_commit": None}))
    assert isinstance(app, Router)
    routes: dict[str, set[str]] = {}
    for entry in app.registry.introspector.get_category("routes"):
        route = entry["introspectable"]
        methods: set[str] = set()
        for related in entry["related"]:
            if related.category_name == "views" and related["request_methods"]:
                methods.update(m.lower() for m in related["request_methods"])
        methods.discard("head")
        routes[_openapi_path(route["pattern"])] = methods
    return routes


def _openapi_path(pattern: str) -> str:
    """Pyramid ``/x/{id:\\d+}`` → OpenAPI ``/x/{id}``."""
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", r"{\1}", pattern)


def _documented(document: dict[str, Any]) -> dict[str, set[str]]:
    return {
        path: {method for method in item if method in HTTP_METHODS}
        for path, item in document["paths"].items()
    }


def test_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    assert str(document["openapi"]).startswith("3.")
    validate_spec(document)


def test_every_app_route_is_documented_with_its_methods(document: dict[str, Any]) -> None:
    routes = _app_routes()
    documented = _documented(document)
    missing = sorted(set(routes) - set(documented))
    assert not missing, f"routes missing from openapi.yaml: {missing}"
    wrong = {path: (sorted(routes[path]), sorted(documented[path])) for path in routes if routes[path] != documented[path]}
    assert not wrong, f"methods differ (app, document): {wrong}"


def test_every_documented_path_exists_in_the_app(document: dict[str, Any]) -> None:
    invented = sorted(set(_documented(document)) - set(_app_routes()))
    assert not invented, f"openapi.yaml documents paths the app does not serve: {invented}"


def test_core_routes_are_all_there(document: dict[str, Any]) -> None:
    """The routes the brief names, whether or not their modules are loaded yet."""
    for path in ("/ping", "/status", "/source", "/visualisation", "/summary", "/api/openapi.yaml", "/",
                 "/control/stop", "/control/pause", "/control/resume", "/control/cycle-now"):
        assert path in document["paths"], path


def test_every_operation_documents_json_errors_and_auth(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            assert operation.get("operationId"), (path, method)
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (path, method)
            public = operation.get("security") == []
            assert public == (path in ("/ping", "/healthz")), f"{path}: only the probes are open"
            if not public:
                assert "401" in responses, f"{method.upper()} {path} must document 401"
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    response = _resolve(document, response)
                    schema = response["content"]["application/json"]["schema"]
                    assert _mentions_error(document, schema), f"{method.upper()} {path} {code}"


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _mentions_error(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    if schema.get("$ref") == "#/components/schemas/Error":
        return True
    schema = _resolve(document, schema)
    if set(schema.get("required", ())) >= {"error", "status"}:
        return True
    return any(_mentions_error(document, part) for part in schema.get("allOf", ()))


# ---------------------------------------------------------------------------------------------
# Response bodies a live run may not produce


def _validator(document: dict[str, Any], name: str) -> OAS30Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return OAS30Validator(schema)


def test_status_with_a_crash_record_matches_the_schema(document: dict[str, Any]) -> None:
    runstate = RunState.create("crashy", mode="replay", version={"package": "0", "git_commit": None}, now=T0)
    try:
        try:
            raise KeyError("inner")
        except KeyError as exc:
            raise ValueError("outer") from exc
    except ValueError as exc:
        runstate.set_fail(exc, now=T0)
    runstate.update(summary_statistics={"sharpe": None, "trade_count": 3}, market_data_feed_lag=1.5)
    payload = runstate.snapshot().to_dict()
    _validator(document, "RunStatus").validate(payload)
    fresh = RunState().snapshot().to_dict()
    _validator(document, "RunStatus").validate(fresh)


def test_error_schema_rejects_other_shapes(document: dict[str, Any]) -> None:
    validator = _validator(document, "Error")
    validator.validate({"error": "x", "status": 404, "available": []})
    assert not validator.is_valid({"message": "x"})


# ---------------------------------------------------------------------------------------------
# Served over HTTP


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    options = WebhookOptions(auth_username="ops", auth_password="pw-openapi")
    runstate = RunState.create("openapi", version={"package": "0", "git_commit": None})
    with WebhookServer(create_app(runstate, options=options), port=0) as running:
        yield running


def _get(server: WebhookServer, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_document_is_served_as_yaml_behind_auth(server: WebhookServer) -> None:
    assert _get(server, "/api/openapi.yaml").status == 401
    token = base64.b64encode(b"ops:pw-openapi").decode()
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    connection.request("GET", "/api/openapi.yaml", headers={"Authorization": f"Basic {token}"})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("application/yaml")
    assert yaml.safe_load(body) == yaml.safe_load(openapi_document())


def test_time_parameters_declare_the_forms_the_code_parses(document: dict[str, Any]) -> None:
    """``since`` is declared as tradeexecutor/times.py parses it: RFC 3339 date-time, date, or Unix seconds."""
    from tradeexecutor.times import UNIX_SECONDS_PATTERN

    since = next(p for p in document["paths"]["/logs"]["get"]["parameters"] if p.get("name") == "since")
    forms = since["schema"]["anyOf"]
    assert [form.get("format") for form in forms if "format" in form] == ["date-time", "date"]
    assert [form["pattern"] for form in forms if "pattern" in form] == [UNIX_SECONDS_PATTERN]

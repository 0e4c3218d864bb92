"""Basic auth and CORS of the webhook over real HTTP: who gets in, what a refusal looks like, what is never logged."""

from __future__ import annotations

import base64
import hmac
import http.client
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tradeexecutor.runstate import RunState
from tradeexecutor.web import auth
from tradeexecutor.webhook import WebhookServer, create_app
from tradeexecutor.webhook.options import WebhookOptions

USER = "operator"
PASSWORD = "pa55-auth-test-Ω"
PROTECTED = ["/status", "/source", "/visualisation", "/summary", "/api/openapi.yaml", "/no-such-route"]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user.encode() if isinstance(user, str) else user) + b":" + (
        password.encode() if isinstance(password, str) else password
    )
    return "Basic " + base64.b64encode(raw).decode("ascii")


GOOD = {"Authorization": basic(USER, PASSWORD)}


def request(server: WebhookServer, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", server.effective_port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def _runstate() -> RunState:
    return RunState.create("auth", mode="replay", source_code="x = 1\n", version={"package": "0", "git_commit": None})


def _serve(options: WebhookOptions) -> Iterator[WebhookServer]:
    with WebhookServer(create_app(_runstate(), options=options), port=0) as running:
        yield running


@pytest.fixture
def secured() -> Iterator[WebhookServer]:
    yield from _serve(WebhookOptions(auth_username=USER, auth_password=PASSWORD,
                                     cors_origins=("https://dash.example",)))


@pytest.fixture
def open_server() -> Iterator[WebhookServer]:
    yield from _serve(WebhookOptions())


# ---------------------------------------------------------------------------------------------
# Auth on


@pytest.mark.parametrize("path", PROTECTED)
def test_protected_routes_refuse_missing_credentials(secured: WebhookServer, path: str) -> None:
    reply = request(secured, path)
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Basic realm="tradeexecutor"'
    assert reply.json() == {"error": "authentication required", "status": 401}
    assert reply.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "header",
    [
        basic(USER, "wrong"),
        basic("wrong", PASSWORD),
        basic(USER, PASSWORD + "x"),
        basic(USER, ""),
        basic("", ""),
        "Basic " + base64.b64encode(USER.encode() + PASSWORD.encode()).decode(),  # no colon
        "Basic not-base64!!",
        "Bearer " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "Basic",
        "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode(),
    ],
)
def test_wrong_credentials_get_the_same_401(secured: WebhookServer, header: str) -> None:
    reply = request(secured, "/status", headers={"Authorization": header})
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Basic realm="tradeexecutor"'
    assert reply.json()["status"] == 401


@pytest.mark.parametrize("path", ["/status", "/source", "/api/openapi.yaml"])
def test_right_credentials_pass(secured: WebhookServer, path: str) -> None:
    reply = request(secured, path, headers=GOOD)
    assert reply.status == 200, reply.body


def test_right_credentials_on_an_unknown_path_get_404(secured: WebhookServer) -> None:
    assert request(secured, "/no-such-route", headers=GOOD).status == 404


def test_scheme_name_is_case_insensitive(secured: WebhookServer) -> None:
    token = GOOD["Authorization"].split(" ", 1)[1]
    assert request(secured, "/status", headers={"Authorization": f"basic {token}"}).status == 200


def test_probes_need_no_credentials(secured: WebhookServer) -> None:
    assert request(secured, "/ping").status == 200
    assert request(secured, "/ping", method="HEAD").status == 200
    # /healthz is open whether or not its module is loaded: without it, the answer is 404, not 401.
    assert request(secured, "/healthz").status != 401


def test_probe_lookalikes_are_protected(secured: WebhookServer) -> None:
    for path in ("/ping/", "/pingx", "/ping/../status", "/PING", "/healthz/x"):
        assert request(secured, path).status == 401, path


def test_bad_utf8_path_is_refused_not_crashed(secured: WebhookServer) -> None:
    assert request(secured, "/%ff%fe").status == 401
    assert request(secured, "/%ff%fe", headers=GOOD).status == 400


def test_wrong_method_needs_credentials_first(secured: WebhookServer) -> None:
    assert request(secured, "/status", method="POST").status == 401
    assert request(secured, "/status", method="POST", headers=GOOD).status == 405


def test_credentials_never_reach_the_log(secured: WebhookServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = basic(USER, "guess-" + PASSWORD)
    request(secured, "/status", headers={"Authorization": wrong})
    request(secured, "/status", headers=GOOD)
    text = caplog.text
    for secret in (PASSWORD, "guess-" + PASSWORD, GOOD["Authorization"], wrong, wrong.split()[1]):
        assert secret not in text


def test_both_halves_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """hmac.compare_digest runs on username and password, even when the username is already wrong."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert not auth.credentials_match(USER, PASSWORD, basic("nobody", PASSWORD))
    assert len(calls) == 2
    calls.clear()
    assert not auth.credentials_match(USER, PASSWORD, None)
    assert len(calls) == 2
    calls.clear()
    assert auth.credentials_match(USER, PASSWORD, basic(USER, PASSWORD))
    assert len(calls) == 2


def test_parse_basic_auth() -> None:
    assert auth.parse_basic_auth(basic("a", "b:c")) == (b"a", b"b:c")
    assert auth.parse_basic_auth(None) is None
    assert auth.parse_basic_auth("Digest abc") is None
    assert auth.parse_basic_auth("Basic ???") is None


# ---------------------------------------------------------------------------------------------
# Auth off


def test_auth_is_off_unless_both_halves_are_set() -> None:
    assert not WebhookOptions().auth_enabled
    assert not WebhookOptions(auth_username=USER).auth_enabled
    assert not WebhookOptions(auth_password=PASSWORD).auth_enabled
    assert WebhookOptions(auth_username=USER, auth_password=PASSWORD).auth_enabled


def test_without_auth_everything_is_open(open_server: WebhookServer) -> None:
    reply = request(open_server, "/status")
    assert reply.status == 200
    assert "www-authenticate" not in reply.headers
    # credentials sent to a server without auth are simply ignored
    assert request(open_server, "/status", headers=GOOD).status == 200


def test_default_host_is_loopback() -> None:
    import inspect

    assert inspect.signature(WebhookServer).parameters["host"].default == "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# CORS


def test_no_cors_headers_by_default(open_server: WebhookServer) -> None:
    reply = request(open_server, "/status", headers={"Origin": "https://dash.example"})
    assert reply.status == 200
    assert not any(name.startswith("access-control-") for name in reply.headers)
    preflight = request(open_server, "/status", method="OPTIONS",
                        headers={"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"})
    assert preflight.status == 405
    assert not any(name.startswith("access-control-") for name in preflight.headers)


def test_cors_allowed_origin_gets_the_header(secured: WebhookServer) -> None:
    reply = request(secured, "/status", headers={**GOOD, "Origin": "https://dash.example"})
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == "https://dash.example"
    assert "Origin" in reply.headers["vary"]
    # a refusal carries it too, so the page can read the 401
    refused = request(secured, "/status", headers={"Origin": "https://dash.example"})
    assert refused.status == 401
    assert refused.headers["access-control-allow-origin"] == "https://dash.example"


def test_cors_other_origin_gets_nothing(secured: WebhookServer) -> None:
    reply = request(secured, "/status", headers={**GOOD, "Origin": "https://evil.example"})
    assert reply.status == 200
    assert "access-control-allow-origin" not in reply.headers


def test_cors_preflight_for_allowed_origin(secured: WebhookServer) -> None:
    reply = request(secured, "/control/stop", method="OPTIONS", headers={
        "Origin": "https://dash.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    })
    assert reply.status == 204
    assert reply.headers["access-control-allow-origin"] == "https://dash.example"
    assert "POST" in reply.headers["access-control-allow-methods"]
    assert "Authorization" in reply.headers["access-control-allow-headers"]


def test_cors_preflight_for_other_origin_is_refused(secured: WebhookServer) -> None:
    reply = request(secured, "/status", method="OPTIONS", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert reply.status == 401
    assert "access-control-allow-origin" not in reply.headers


# ---------------------------------------------------------------------------------------------
# Cross-site requests that change something


def test_a_control_post_from_another_site_is_refused_even_with_cached_credentials(secured: WebhookServer) -> None:
    # What a form on another site makes a browser send: the origin of that site and the cached credentials.
    for headers in ({**GOOD, "Origin": "https://evil.example"},
                    {**GOOD, "Origin": "null"},
                    {**GOOD, "Sec-Fetch-Site": "cross-site"}):
        reply = request(secured, "/control/stop", method="POST", headers=headers)
        assert reply.status == 403, headers
        assert "cross-site request refused" in reply.json()["error"]


def test_own_origin_allowed_origins_and_non_browser_clients_may_post(secured: WebhookServer) -> None:
    own = f"http://127.0.0.1:{secured.effective_port}"
    for headers in ({**GOOD, "Origin": own, "Sec-Fetch-Site": "same-origin"},
                    {**GOOD, "Origin": "https://dash.example"},  # listed with --cors-origin
                    GOOD):  # the CLI, curl: no Origin at all
        reply = request(secured, "/control/stop", method="POST", headers=headers)
        assert reply.status != 403, (headers, reply.status, reply.body)
    # reading is never refused for its origin (CORS decides what the page may see)
    assert request(secured, "/status", headers={**GOOD, "Origin": "https://evil.example"}).status == 200

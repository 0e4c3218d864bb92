"""Basic-auth checking and the cross-site refusal, shared by the webhook and the runner API.

Both apps guard state-changing routes with HTTP basic auth and refuse a browser's cross-site
request before auth (a browser that cached the credentials would send them with a form another
site posts). The rules live here once; each app's tween decides which paths they cover:

- :func:`credentials_match`: username and password both compared with ``hmac.compare_digest``,
  both always, so the answer time does not tell which half was wrong; credentials never logged;
- :func:`cross_site`: a POST, PUT, PATCH or DELETE whose ``Origin`` is neither the server's own
  host nor an allowed origin, or whose ``Sec-Fetch-Site`` says ``cross-site``. Clients that are
  not browsers (the CLI, curl, scripts) send no ``Origin`` and are unaffected.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Collection

from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.web.responses import json_error

__all__ = ["UNSAFE_METHODS", "allowed_origin", "credentials_match", "cross_site", "parse_basic_auth", "unauthorized"]

#: Methods that change something, refused when a browser sends them from another site.
UNSAFE_METHODS: frozenset[str] = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def parse_basic_auth(header: str | None) -> tuple[bytes, bytes] | None:
    """``"Basic dXNlcjpwdw=="`` → ``(b"user", b"pw")``; None when the header is missing or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    username, colon, password = decoded.partition(b":")
    if not colon:
        return None
    return username, password


def credentials_match(username: str | None, password: str | None, header: str | None) -> bool:
    """True when the Authorization header carries ``username`` and ``password``.

    Both halves are compared with ``hmac.compare_digest`` every time, even when the username
    is already wrong, so timing reveals neither.
    """
    expected_user = (username or "").encode("utf-8")
    expected_password = (password or "").encode("utf-8")
    given = parse_basic_auth(header)
    # Compare against something of the right type even when nothing usable was sent.
    user, secret = given if given is not None else (b"", b"")
    user_ok = hmac.compare_digest(user, expected_user)
    password_ok = hmac.compare_digest(secret, expected_password)
    return given is not None and user_ok and password_ok


def unauthorized(realm: str) -> Response:
    """The 401 answer: the JSON error shape plus the basic-auth challenge."""
    response = json_error(401, "authentication required")
    response.headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
    return response


def allowed_origin(cors_origins: Collection[str], origin: str | None) -> str | None:
    """The origin to echo in ``Access-Control-Allow-Origin``, or None when CORS does not allow it."""
    if not origin or not cors_origins:
        return None
    if origin in cors_origins or "*" in cors_origins:
        return origin
    return None


def cross_site(request: Request, cors_origins: Collection[str] = ()) -> bool:
    """True for a state-changing request a browser sent from another site (see the module's docstring)."""
    if request.method not in UNSAFE_METHODS:
        return False
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False  # not a browser's cross-origin request: browsers send Origin with every cross-origin POST
    if allowed_origin(cors_origins, origin) is not None:
        return False
    # Same origin: the Origin's host[:port] is the Host the request was sent to (the scheme may differ
    # behind a proxy that ends TLS). "null" (a sandboxed page, a file) never matches.
    _, _, authority = origin.partition("://")
    return not authority or authority.lower() != request.host.lower()

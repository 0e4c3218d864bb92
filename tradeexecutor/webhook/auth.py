"""Optional HTTP basic auth and CORS for the webhook, as one Pyramid tween.

Auth is on when ``WebhookOptions.auth_enabled`` (both username and password set). Then every
route except the liveness probes (``/ping``, ``/healthz``) needs the credentials; a request
without them, or with wrong ones, gets a 401 JSON error with
``WWW-Authenticate: Basic realm="tradeexecutor"`` before any route runs (so unknown paths
answer 401 too, and reveal nothing). Username and password are both compared in constant time
with ``hmac.compare_digest``, both always, so the answer time does not tell which half was
wrong. Credentials are never logged.

Cross-site requests that change something are refused (403) before auth: a browser that has cached the
basic-auth credentials would otherwise send them with a form another site posts to ``/control/stop``
or ``/control/close-all`` (a body is optional there). A POST, PUT, PATCH or DELETE whose ``Origin``
is neither this server's own host nor a CORS-allowed origin, or whose ``Sec-Fetch-Site`` says
``cross-site``, is refused. Clients that are not browsers (the CLI, curl, scripts) send no ``Origin``
and are unaffected; the dashboard's own requests carry this server's origin.

CORS is off unless ``WebhookOptions.cors_origins`` lists origins: a response to a request whose
``Origin`` is listed (or any origin, when the list holds ``"*"``) carries
``Access-Control-Allow-Origin`` for that origin, and a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from it is answered with 204 before auth, since browsers
send preflights without credentials.

The credential check and the cross-site rule are :mod:`tradeexecutor.web.auth`'s, shared with
the runner API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.web.auth import allowed_origin, credentials_match, cross_site, unauthorized
from tradeexecutor.webhook.app import get_options, json_error

logger = logging.getLogger("tradeexecutor.webhook")

#: Paths served without credentials: probes for load balancers and orchestrators.
PUBLIC_PATHS: frozenset[str] = frozenset({"/ping", "/healthz"})

#: The realm named in the 401 challenge.
REALM = "tradeexecutor"

#: Methods and request headers a CORS preflight may ask for.
CORS_ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
CORS_ALLOW_HEADERS = "Authorization, Content-Type"
#: Seconds a browser may cache a preflight answer.
CORS_MAX_AGE = "600"

Handler = Callable[[Request], Response]


def _raw_path(request: Request) -> str:
    """PATH_INFO exactly as received (WSGI latin-1 text), never raising on bad UTF-8."""
    return str(request.environ.get("PATH_INFO", ""))


def _add_cors_headers(response: Response, origin: str) -> None:
    response.headers["Access-Control-Allow-Origin"] = origin
    vary = response.headers.get("Vary")
    if not vary:
        response.headers["Vary"] = "Origin"
    elif "origin" not in vary.lower():
        response.headers["Vary"] = f"{vary}, Origin"


def _preflight(origin: str) -> Response:
    """204 answer to an allowed CORS preflight."""
    response = Response(status=204)
    _add_cors_headers(response, origin)
    response.headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
    response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE
    response.headers["Cache-Control"] = "no-store"
    return response


def auth_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """The tween: answer CORS preflights, refuse unauthenticated requests, add CORS headers on the way out."""

    def auth_tween(request: Request) -> Response:
        options = get_options(request)
        origin = allowed_origin(options.cors_origins, request.headers.get("Origin"))
        if (
            origin is not None
            and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
        ):
            return _preflight(origin)
        if cross_site(request, options.cors_origins):
            logger.info("refused cross-site %s %s from %s", request.method, _raw_path(request)[:200],
                        request.client_addr)
            response = json_error(403, "cross-site request refused: an action comes from this executor's own "
                                       "dashboard or from a client that is not a browser; allow another dashboard's "
                                       "origin with --cors-origin (TRADEEXECUTOR_CORS_ORIGINS)")
        elif (
            options.auth_enabled
            and _raw_path(request) not in PUBLIC_PATHS
            and not credentials_match(options.auth_username, options.auth_password,
                                      request.headers.get("Authorization"))
        ):
            # Never log the header or what it decodes to.
            logger.info("refused unauthenticated %s request from %s", request.method, request.client_addr)
            response = unauthorized(REALM)
        else:
            response = handler(request)
        if origin is not None:
            _add_cors_headers(response, origin)
        return response

    return auth_tween


def includeme(config: Configurator) -> None:
    """Register the auth/CORS tween (above Pyramid's exception view tween, so errors get CORS headers too)."""
    config.add_tween("tradeexecutor.webhook.auth.auth_tween_factory")

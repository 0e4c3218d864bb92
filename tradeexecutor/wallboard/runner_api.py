"""The runner API: every ``tradeexecutor runs`` verb over HTTP, JSON in and out, on the wallboard's server.

Routes (described in ``runner-api.yaml``, served at ``GET /api/runner/openapi.yaml``)::

    GET  /api/runs                     ls        POST /api/runs                 create (ref, upsert, start)
    GET  /api/runs/{run}               show      POST /api/runs/{run}/start     start
    POST /api/runs/{run}/stop          stop      POST /api/runs/{run}/reset     reset
    POST /api/runs/{run}/copy          copy      POST /api/runs/{run}/set       set
    GET  /api/runs/{run}/logs          logs (since, limit, level; follow=true streams NDJSON)
    GET  /api/runs/{run}/orders        orders (CSV)
    POST /api/runs/{run}/cast          cast

The work is done by a :class:`Runner` the CLI hands in (``runs.verbs.RunVerbs``: the same
functions the CLI's verbs call); this module only checks the request and shapes the answer,
so the wallboard still imports nothing of the runs package.

Guards, in this order, on every route but the document: a browser's cross-site POST is refused
(403, the webhook's rule, ``web.auth``); the API is off (403) unless
``TRADEEXECUTOR_RUNNER_USERNAME`` and ``_PASSWORD`` are set; then basic auth (401, compared in
constant time, never logged); a wallboard without ``--runs-dir`` answers 404.

Errors are the one JSON shape ``{"error", "status", ...}``: bad input is a 400 whose message says
what is wrong and how to fix it and whose ``where`` names the place (``body.spec``,
``query.limit``, ``path.run``); an unknown run is a 404; anything unexpected is a 500 carrying
only an id (the traceback goes to the log).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.errors import NotFoundError, StateError, TradeExecutorError, UserInputError
from tradeexecutor.wallboard.settings import WallboardConfig
from tradeexecutor.web import add_json_route, encode_json, json_error, json_response
from tradeexecutor.web.auth import credentials_match, cross_site, unauthorized
from tradeexecutor.web.params import BadParameter, choice_param, datetime_param, int_param

__all__ = ["OPENAPI_PATH", "ROUTES", "Runner", "include_runner_api", "openapi_document"]

logger = logging.getLogger("tradeexecutor.wallboard.runner")

#: Where the API's OpenAPI document is served.
OPENAPI_PATH = "/api/runner/openapi.yaml"
#: The realm of the basic-auth challenge.
REALM = "tradeexecutor-runner"
#: Journal levels (``store.journal.LEVELS``; the document's enum).
LEVELS = ("debug", "info", "warning", "error")
#: Most entries one logs request returns.
MAX_LIMIT = 1000
#: Seconds between a log stream's reads, and how many empty reads pass before a heartbeat line.
STREAM_INTERVAL = 1.0
HEARTBEAT_READS = 15
#: Longest ``stop`` wait a request may ask for (seconds).
MAX_STOP_TIMEOUT = 300.0

_SETTINGS = "tradeexecutor.wallboard.runner"


class Runner(Protocol):
    """What the API needs of the runs folder: ``runs.verbs.RunVerbs`` (the CLI's verbs) is the one there is."""

    def create(self, spec: Path, *, ref: str | None, upsert: bool) -> dict[str, Any]: ...
    def ls(self) -> list[dict[str, Any]]: ...
    def show(self, run: str) -> dict[str, Any]: ...
    def start(self, run: str, *, port: int | None) -> dict[str, Any]: ...
    def stop(self, run: str, *, timeout: float) -> dict[str, Any]: ...
    def reset(self, run: str) -> dict[str, Any]: ...
    def copy(self, run: str, *, ref: str | None) -> dict[str, Any]: ...
    def set_values(self, run: str, assignments: list[str]) -> dict[str, Any]: ...
    def logs(self, run: str, *, since: datetime | None, limit: int, level: str | None) -> list[dict[str, Any]]: ...
    def check(self, run: str) -> None: ...
    def follow(self, run: str, *, since: datetime | None, limit: int, level: str | None,
               interval: float) -> Iterator[list[dict[str, Any]]]: ...
    def orders(self, run: str) -> str: ...
    def cast(self, run: str, target: str | None) -> dict[str, Any]: ...


class BadInput(ValueError):
    """A request value that cannot be used; ``where`` names it (``body.port``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where


class _Api:
    """What the views share: the config (credentials), the runner, and the log streams' slots."""

    def __init__(self, config: WallboardConfig, runner: Runner | None) -> None:
        self.config = config
        self.runner = runner
        #: Log streams allowed at once: each holds a worker thread, so at most half of them.
        self.max_streams = max(1, config.threads // 2)
        self.streams = threading.BoundedSemaphore(self.max_streams)


def _api(request: Request) -> _Api:
    api: _Api = request.registry.settings[_SETTINGS]
    return api


def openapi_document() -> bytes:
    """The runner API's OpenAPI document (``wallboard/runner-api.yaml``, package data)."""
    return resources.files("tradeexecutor.wallboard").joinpath("runner-api.yaml").read_bytes()


# ---------------------------------------------------------------------------------------------
# Guards and input


def _refusal(request: Request, api: _Api) -> Response | None:
    """The 403/401/404 a request gets before any verb runs, or None (see the module docstring)."""
    if cross_site(request):
        logger.info("refused cross-site %s %s from %s", request.method, request.path_info[:200], request.client_addr)
        return json_error(403, "cross-site request refused: the runner API takes requests from clients that are not "
                               "browsers (the CLI, curl, scripts)")
    config = api.config
    if not (config.runner_username and config.runner_password):
        return json_error(403, "the runner API is off: start the wallboard with TRADEEXECUTOR_RUNNER_USERNAME and "
                               "TRADEEXECUTOR_RUNNER_PASSWORD set (and --runs-dir)")
    if not credentials_match(config.runner_username, config.runner_password, request.headers.get("Authorization")):
        logger.info("refused an unauthenticated %s %s from %s", request.method, request.path_info[:200],
                    request.client_addr)
        return unauthorized(REALM)
    if api.runner is None:
        return json_error(404, "this wallboard serves no runs folder: start it with --runs-dir DIR "
                               "(TRADEEXECUTOR_RUNS_DIR)")
    return None


def _body(request: Request, allowed: dict[str, tuple[type, ...]], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object of the body (empty body: ``{}``) with only ``allowed`` keys of the allowed types."""
    raw = request.body
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadInput("body", "the body is not JSON: send a JSON object, such as {\"ref\": \"sma\"}") from None
    if not isinstance(data, dict):
        raise BadInput("body", f"the body must be a JSON object, not {type(data).__name__}")
    for key, value in data.items():
        if key not in allowed:
            raise BadInput(f"body.{key}", f"unknown field {key!r}; this request takes {', '.join(allowed) or 'none'}")
        kinds = allowed[key]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join("null" if kind is type(None) else _TYPE_NAMES.get(kind, kind.__name__)
                                for kind in kinds)
            raise BadInput(f"body.{key}", f"field {key!r} must be {names}, not {json.dumps(value)[:60]}")
    for key in required:
        if key not in data:
            raise BadInput(f"body.{key}", f"field {key!r} is required")
    return data


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list"}
_NULL = type(None)


def _port(data: dict[str, Any]) -> int | None:
    port = data.get("port")
    if port is not None and not 1 <= port <= 65535:
        raise BadInput("body.port", f"field 'port' must be between 1 and 65535, not {port}")
    return port  # type: ignore[no-any-return]


def _ref(data: dict[str, Any]) -> str | None:
    ref = data.get("ref")
    if ref == "":
        raise BadInput("body.ref", "field 'ref' is empty: give a name, or leave the field out")
    return ref  # type: ignore[no-any-return]


def _answer(request: Request, verb: Callable[[_Api], Response]) -> Response:
    """Run the guards, then the verb; the package's errors become the JSON error shape."""
    api = _api(request)
    refusal = _refusal(request, api)
    if refusal is not None:
        return refusal
    try:
        return verb(api)
    except BadInput as exc:
        return json_error(400, str(exc), where=exc.where)
    except BadParameter as exc:
        return json_error(400, str(exc), where=f"query.{exc.parameter}")
    except NotFoundError as exc:
        return json_error(404, str(exc), where="path.run")
    except UserInputError as exc:
        return json_error(400, str(exc))
    except StateError as exc:
        return json_error(409, str(exc))
    except TradeExecutorError as exc:  # the registry locked for too long: try again
        return json_error(503, str(exc))


def _run(request: Request) -> str:
    run: str = request.matchdict["run"]
    return run


# ---------------------------------------------------------------------------------------------
# Views, one a verb


def runs_collection(request: Request) -> Response:
    """GET /api/runs (ls) and POST /api/runs (create)."""
    if request.method == "POST":
        return _answer(request, lambda api: _create(request, api))
    return _answer(request, lambda api: json_response({"runs": _runner(api).ls()}))


def _runner(api: _Api) -> Runner:
    assert api.runner is not None  # _refusal answered 404 otherwise
    return api.runner


def _create(request: Request, api: _Api) -> Response:
    data = _body(request, {"spec": (str,), "ref": (str, _NULL), "upsert": (bool,), "start": (bool,),
                           "port": (int, _NULL)}, required=("spec",))
    if not data["spec"].strip():
        raise BadInput("body.spec", "field 'spec' is empty: give the path of a run spec on the runner's machine")
    if data.get("port") is not None and not data.get("start"):
        raise BadInput("body.port", "field 'port' is for a run started at once: add \"start\": true")
    runner = _runner(api)
    result = runner.create(Path(data["spec"]), ref=_ref(data), upsert=bool(data.get("upsert")))
    if data.get("start"):
        result["start"] = runner.start(result["run"]["id"], port=_port(data))
    return json_response(result, status=201 if result["created"] else 200)


def show(request: Request) -> Response:
    """GET /api/runs/{run}."""
    return _answer(request, lambda api: json_response(_runner(api).show(_run(request))))


def start(request: Request) -> Response:
    """POST /api/runs/{run}/start."""
    def verb(api: _Api) -> Response:
        data = _body(request, {"port": (int, _NULL)})
        return json_response(_runner(api).start(_run(request), port=_port(data)))
    return _answer(request, verb)


def stop(request: Request) -> Response:
    """POST /api/runs/{run}/stop."""
    def verb(api: _Api) -> Response:
        data = _body(request, {"timeout": (int, float)})
        timeout = float(data.get("timeout", 30.0))
        if not 0.1 <= timeout <= MAX_STOP_TIMEOUT:
            raise BadInput("body.timeout", f"field 'timeout' must be between 0.1 and {MAX_STOP_TIMEOUT:g} seconds, "
                                           f"not {timeout:g}")
        return json_response(_runner(api).stop(_run(request), timeout=timeout))
    return _answer(request, verb)


def reset(request: Request) -> Response:
    """POST /api/runs/{run}/reset."""
    def verb(api: _Api) -> Response:
        _body(request, {})
        return json_response(_runner(api).reset(_run(request)))
    return _answer(request, verb)


def copy(request: Request) -> Response:
    """POST /api/runs/{run}/copy."""
    def verb(api: _Api) -> Response:
        data = _body(request, {"ref": (str, _NULL)})
        return json_response(_runner(api).copy(_run(request), ref=_ref(data)), status=201)
    return _answer(request, verb)


def set_values(request: Request) -> Response:
    """POST /api/runs/{run}/set."""
    def verb(api: _Api) -> Response:
        data = _body(request, {"assignments": (list,)}, required=("assignments",))
        assignments = data["assignments"]
        if not assignments or not all(isinstance(item, str) and "=" in item for item in assignments):
            raise BadInput("body.assignments", "field 'assignments' must be a non-empty list of \"key=value\" "
                                               "strings, such as [\"core.fee=0.002\", \"strategy.fast=5\"]")
        return json_response(_runner(api).set_values(_run(request), list(assignments)))
    return _answer(request, verb)


def logs(request: Request) -> Response:
    """GET /api/runs/{run}/logs: the newest entries, or (``follow=true``) a stream of them as NDJSON."""
    def verb(api: _Api) -> Response:
        since = datetime_param(request, "since")
        limit = int_param(request, "limit", default=100, minimum=1, maximum=MAX_LIMIT)
        level = choice_param(request, "level", LEVELS, None)
        follow = choice_param(request, "follow", ("true", "false"), "false") == "true"
        runner = _runner(api)
        if not follow:
            entries = runner.logs(_run(request), since=since, limit=limit, level=level)
            return json_response({"entries": entries, "count": len(entries)})
        runner.check(_run(request))  # an unknown run is a 404, before the stream's headers go out
        if not api.streams.acquire(blocking=False):
            return json_error(503, f"{api.max_streams} log stream(s) are open, the most this server allows; close one "
                                   "or read with since= instead of follow=true", retry_after=5)
        batches = runner.follow(_run(request), since=since, limit=limit, level=level, interval=STREAM_INTERVAL)
        response = Response(app_iter=_Stream(_lines(batches), api.streams.release),
                            content_type="application/x-ndjson", charset="utf-8")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
    return _answer(request, verb)


class _Stream:
    """A log stream as a WSGI body: the server calls ``close()`` when it ends, however it ends, and that frees its slot.

    (A generator's own ``finally`` would not run for a body the server never started to read.)
    """

    def __init__(self, lines: Iterator[bytes], release: Callable[[], None]) -> None:
        self._lines = lines
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return self._lines

    def close(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            close = getattr(self._lines, "close", None)
            if close is not None:
                close()
            release()


def _lines(batches: Iterator[list[dict[str, Any]]]) -> Iterator[bytes]:
    """Each entry as one JSON line; an empty line now and then while nothing happens (so a gone client is noticed)."""
    quiet = 0
    try:
        for batch in batches:
            if batch:
                quiet = 0
                yield b"".join(encode_json(entry) + b"\n" for entry in batch)
            else:
                quiet += 1
                if quiet >= HEARTBEAT_READS:
                    quiet = 0
                    yield b"\n"
    except TradeExecutorError as exc:  # the run folder went away mid-stream: say so, as the last line
        yield encode_json({"error": str(exc)}) + b"\n"
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def orders(request: Request) -> Response:
    """GET /api/runs/{run}/orders: the run's orders CSV."""
    def verb(api: _Api) -> Response:
        text = _runner(api).orders(_run(request))
        response = Response(body=text.encode("utf-8"), content_type="text/csv", charset="utf-8")
        response.headers["Cache-Control"] = "no-store"
        return response
    return _answer(request, verb)


def cast(request: Request) -> Response:
    """POST /api/runs/{run}/cast: ``{"target": "/wallboard/page1/chart1"}``; ``"-"``, ``""`` or null stops."""
    def verb(api: _Api) -> Response:
        data = _body(request, {"target": (str, _NULL)}, required=("target",))
        return json_response(_runner(api).cast(_run(request), data["target"]))
    return _answer(request, verb)


def openapi(request: Request) -> Response:
    """GET /api/runner/openapi.yaml (no credentials needed: it describes, it holds nothing)."""
    response = Response(body=openapi_document(), content_type="application/yaml", charset="utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


#: (route name, pattern, view, methods): what ``include_runner_api`` registers, the OpenAPI document describes
#: and the twin test compares with the CLI's verbs.
ROUTES: tuple[tuple[str, str, Callable[[Request], Response], tuple[str, ...]], ...] = (
    ("runner_openapi", OPENAPI_PATH, openapi, ("GET",)),
    ("runs", "/api/runs", runs_collection, ("GET", "POST")),
    ("run", "/api/runs/{run}", show, ("GET",)),
    ("run_start", "/api/runs/{run}/start", start, ("POST",)),
    ("run_stop", "/api/runs/{run}/stop", stop, ("POST",)),
    ("run_reset", "/api/runs/{run}/reset", reset, ("POST",)),
    ("run_copy", "/api/runs/{run}/copy", copy, ("POST",)),
    ("run_set", "/api/runs/{run}/set", set_values, ("POST",)),
    ("run_logs", "/api/runs/{run}/logs", logs, ("GET",)),
    ("run_orders", "/api/runs/{run}/orders", orders, ("GET",)),
    ("run_cast", "/api/runs/{run}/cast", cast, ("POST",)),
)


def include_runner_api(configurator: Configurator, config: WallboardConfig, runner: Runner | None) -> None:
    """Register the runner API's routes on the wallboard's app."""
    configurator.add_settings({_SETTINGS: _Api(config, runner)})
    for name, pattern, view, methods in ROUTES:
        add_json_route(configurator, name, pattern, view, methods=methods)

"""GET /logs (the run's journal) and GET /logs/technical (recent log records of this process).

``/logs?since=&limit=&level=`` reads the journal the loop writes (``options.files.journal``)
from its end: ``since`` is an RFC 3339 time with its zone, a date or Unix seconds (entries at
or after it), ``limit`` 1–1000 (default 100, the most recent matches), ``level`` one of debug,
info, warning, error (that level and above). Values are checked as ``openapi.yaml`` declares
them (``web/params.py``). ``/logs/technical?limit=&level=`` does the same for the in-memory
``options.log_buffer`` (levels up to critical). Both answer ``{"entries": [...], "count": n}``,
oldest first; a bad parameter is a 400 naming it; a source that is not configured is a 404.
"""

from __future__ import annotations

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

from tradeexecutor.runstate.logbuffer import LOG_LEVELS
from tradeexecutor.store.journal import LEVELS, Journal
from tradeexecutor.web.params import BadParameter, choice_param, datetime_param, int_param
from tradeexecutor.webhook.app import add_json_route, get_options, json_error, json_response

__all__ = ["MAX_LIMIT", "includeme"]

#: Most entries one request may ask for.
MAX_LIMIT = 1000
#: Entries returned when no limit is given.
DEFAULT_LIMIT = 100


def journal_logs(request: Request) -> Response:
    """The newest journal entries matching the query, oldest first."""
    files = get_options(request).files
    if files is None:
        return json_error(404, "no journal: this executor has no state directory")
    try:
        since = datetime_param(request, "since")
        limit = int_param(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        level = choice_param(request, "level", LEVELS, None)
    except BadParameter as exc:
        return exc.response()
    entries = Journal(files.journal).read(since=since, limit=limit, level=level)
    return json_response({"entries": entries, "count": len(entries)})


def technical_logs(request: Request) -> Response:
    """The newest log records of this process matching the query, oldest first."""
    buffer = get_options(request).log_buffer
    if buffer is None:
        return json_error(404, "technical logs are not collected by this executor")
    try:
        limit = int_param(request, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
        level = choice_param(request, "level", LOG_LEVELS, None)
    except BadParameter as exc:
        return exc.response()
    entries = buffer.records(limit=limit, level=level)
    return json_response({"entries": entries, "count": len(entries)})


def includeme(config: Configurator) -> None:
    """Register /logs and /logs/technical."""
    add_json_route(config, "logs", "/logs", journal_logs)
    add_json_route(config, "logs_technical", "/logs/technical", technical_logs)

"""``tradeexecutor status URL`` and ``tradeexecutor logs URL``: read a running executor's webhook from a terminal.

Both speak plain HTTP with urllib (no extra dependency) and send basic-auth credentials when
``TRADEEXECUTOR_WEBHOOK_USERNAME`` / ``TRADEEXECUTOR_WEBHOOK_PASSWORD`` (or ``--username`` /
``--password``) are set. Any failure to talk to the executor is one line on stderr and exit 1;
a bad option (an unknown time zone, a ``--since`` the executor rejects) is exit 2. The password
is never printed, nor is a URL that carries one.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

import tradeexecutor
from tradeexecutor.cli.common import FloatRange, env, user_errors
from tradeexecutor.errors import UserInputError

if TYPE_CHECKING:
    from urllib.error import HTTPError

#: Output formats of ``logs``.
LOG_FORMATS = ("table", "csv", "tsv", "html", "markdown")
#: Journal levels ``--level`` accepts (that level and above are shown).
LOG_LEVELS = ("debug", "info", "warning", "error")
#: Run statuses during which ``logs --tail`` keeps polling.
LIVE_STATUSES = ("new", "starting", "running")
#: Most entries one /logs request may return (the webhook's limit).
MAX_LIMIT = 1000
#: Columns of the logs output.
LOG_COLUMNS = ("time", "level", "event", "details")


class ClientError(UserInputError):
    """The executor could not be reached or did not answer as expected: exit 1."""

    exit_code = 1


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass(frozen=True)
class Webhook:
    """Where an executor's webhook is and how to authenticate to it."""

    #: Base URL without credentials or trailing slash, e.g. ``http://127.0.0.1:3456``.
    base_url: str
    #: Basic-auth username, or None.
    username: str | None = None
    #: Basic-auth password, or None (never shown).
    password: str | None = None
    #: Seconds to wait for each answer.
    timeout: float = 10.0

    @classmethod
    def parse(cls, url: str, username: str | None, password: str | None, timeout: float) -> Webhook:
        """Check the URL (``host:port`` alone means http) and take any ``user:pass@`` out of it."""
        text = url.strip()
        if "://" not in text:
            text = "http://" + text
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserInputError(f"not an http(s) URL: {_redact(url)}")
        if parts.username is not None or parts.password is not None:
            username = username or urllib.parse.unquote(parts.username or "")
            password = password or urllib.parse.unquote(parts.password or "")
            netloc = parts.netloc.rpartition("@")[2]
            parts = parts._replace(netloc=netloc)
        base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        return cls(base, username or None, password or None, timeout)

    def get_json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        """GET ``path`` and parse the JSON answer; ClientError (or UserInputError for a 400) otherwise."""
        return self.request_json("GET", path, query=query)[1]

    def post_json(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """POST ``body`` as JSON to ``path``; the status (200, 202 ...) and the parsed answer, errors as for GET."""
        return self.request_json("POST", path, body=body)

    def request_json(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                     body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """One request: its status and JSON answer; every failure one line (ClientError, UserInputError for a 400)."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json", "User-Agent": f"tradeexecutor-cli/{tradeexecutor.__version__}"}
        if self.username and self.password:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        from http.client import HTTPException  # with urllib.request ~25 ms, paid only when a request is made
        from urllib.error import HTTPError, URLError
        from urllib.request import Request, urlopen

        request = Request(url, data=data, headers=headers, method=method)
        where = self.base_url + path
        try:
            with urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except HTTPError as exc:
            raise _http_error(exc, where, authenticated="Authorization" in headers) from None
        except URLError as exc:
            raise ClientError(f"cannot reach {where}: {_reason(exc.reason)}") from None
        except (OSError, HTTPException, ValueError) as exc:
            raise ClientError(f"cannot reach {where}: {_reason(exc)}") from None
        try:
            payload = json.loads(raw)
        except ValueError:
            raise ClientError(f"{where} did not answer JSON; is this a tradeexecutor webhook?") from None
        return status, payload


def _redact(url: str) -> str:
    """The URL without any password in it."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:
        return "<unparsable URL>"
    return url


def _reason(reason: object) -> str:
    """A short readable reason for a network error."""
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason) or type(reason).__name__
    return text.splitlines()[0] if text else type(reason).__name__


def _http_error(exc: HTTPError, where: str, *, authenticated: bool) -> UserInputError:
    """One line for an error answer, using the webhook's ``{"error": ...}`` message when there is one, followed by
    the answer's ``details`` when it has them: a control refusal names what the loop named there (close-all's
    ``not_closed``, the position and its order in flight, the parameters in use), which the message alone does not
    list."""
    details: Any = None
    try:
        answer = json.loads(exc.read())
        message = str(answer.get("error") or exc.reason)
        details = answer.get("details")
    except (ValueError, AttributeError, OSError):
        message = str(exc.reason)
    if details:
        message += "\n" + "\n".join(detail_lines(details))
    if exc.code == 401:
        hint = "wrong username or password" if authenticated else (
            f"set {env('WEBHOOK_USERNAME')} and {env('WEBHOOK_PASSWORD')}")
        return ClientError(f"{where} answered 401 {message}: {hint}")
    if exc.code == 400:
        return UserInputError(f"{where} answered 400: {message}")
    return ClientError(f"{where} answered {exc.code}: {message}")


def detail_lines(value: Any, indent: str = "  ") -> list[str]:
    """JSON ``details`` as indented ``name: value`` lines (lists as ``- `` items), for a person to read."""
    if isinstance(value, dict):
        lines: list[str] = []
        for name, item in value.items():
            if isinstance(item, dict | list) and item:
                lines += [f"{indent}{name}:", *detail_lines(item, indent + "  ")]
            else:
                lines.append(f"{indent}{name}: {_scalar(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            nested = detail_lines(item, indent + "  ")
            if isinstance(item, dict | list) and nested:
                lines += [f"{indent}- {nested[0].lstrip()}", *nested[1:]]
            else:
                lines.append(f"{indent}- {_scalar(item)}")
        return lines
    return [f"{indent}{_scalar(value)}"]


def _scalar(value: Any) -> str:
    """One JSON value as the operator reads it: strings bare, the rest (numbers, true, null, empty lists) as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


# ---------------------------------------------------------------------------------------------
# Time


def resolve_timezone(name: str | None) -> tzinfo | None:
    """The zone named (``Europe/Helsinki``, ``UTC``), or None for the local zone; UserInputError when unknown."""
    if name is None or name == "":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UserInputError(f"unknown time zone {name!r}; use an IANA name such as UTC or Europe/Helsinki") from None


def format_time(value: Any, zone: tzinfo | None) -> str:
    """An ISO time from the webhook shown in ``zone`` (local when None); other values as they are."""
    if not isinstance(value, str) or not value:
        return "-" if value in (None, "") else str(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo("UTC"))
    local = parsed.astimezone(zone) if zone is not None else parsed.astimezone()
    return local.isoformat(sep=" ", timespec="seconds")


# ---------------------------------------------------------------------------------------------
# status


def status_lines(payload: dict[str, Any], zone: tzinfo | None) -> list[str]:
    """The /status payload as readable ``label: value`` lines."""
    rows: list[tuple[str, str]] = []
    status = str(payload.get("status", "unknown"))
    flags = [flag for flag, on in (("paused", payload.get("paused")), ("safe mode", payload.get("safe_mode")),
                                   ("risk paused", payload.get("risk_paused"))) if on]
    rows.append(("status", status + (f" ({', '.join(flags)})" if flags else "")))
    if payload.get("safe_mode") and payload.get("safe_mode_reason"):
        rows.append(("safe mode reason", str(payload["safe_mode_reason"])))
    if payload.get("risk_paused") and payload.get("risk_pause_reason"):
        rows.append(("risk pause", str(payload["risk_pause_reason"])))
    rows += [("fills missing", str(order.get("reason"))) for order in payload.get("fills_missing") or []]
    rows += [("exit waiting", f"position {waiting.get('position_id')} {waiting.get('symbol')}: {waiting.get('reason')}")
             for waiting in payload.get("exits_waiting") or []]
    rows.append(("mode", str(payload.get("mode") or "-")))
    if payload.get("prices"):
        rows.append(("prices", str(payload["prices"])))
    venue = payload.get("venue")
    if isinstance(venue, dict) and venue:
        share, used = venue.get("rate_share"), venue.get("rate_share_used")
        rows.append(("exchange", f"{venue.get('requests', 0)} requests, clock offset {venue.get('clock_offset_ms')} ms"
                     + (f", {used:.0%} of its {share:.0%} rate share used" if isinstance(share, (int, float))
                        and isinstance(used, (int, float)) else "")
                     + (f", held back {venue['held_back_seconds']:.0f} s more" if venue.get("held_back_seconds")
                        else "")))
    strategy = str(payload.get("strategy_name") or "-")
    version = str(payload.get("strategy_version") or "")
    rows.append(("strategy", strategy + (f" (version {version[:12]})" if version else "")))
    rows.append(("executor", str(payload.get("executor_id") or "-")))
    rows.append(("running", "yes" if payload.get("executor_running") else "no"))
    rows.append(("started", format_time(payload.get("started_at"), zone)))
    rows.append(("cycles", str(payload.get("cycles", 0))))
    rows.append(("last cycle", format_time(payload.get("completed_cycle"), zone)))
    rows.append(("next cycle", format_time(payload.get("next_cycle_at"), zone)))
    rows.append(("last refreshed", format_time(payload.get("last_refreshed_at"), zone)))
    crash = payload.get("exception")
    if isinstance(crash, dict):
        rows.append(("crashed at", format_time(payload.get("crashed_at"), zone)))
        rows.append(("crash", f"{crash.get('class', '?')}: {crash.get('message', '')}"))
    if payload.get("crash_count"):
        rows.append(("crash count", str(payload["crash_count"])))
    width = max(len(label) for label, _ in rows) + 1
    return [f"{(label + ':').ljust(width)} {value}" for label, value in rows]


#: The webhook's credentials, for every client command.
AUTH_OPTIONS = [
    click.option("--username", envvar=env("WEBHOOK_USERNAME"), show_envvar=True, default=None,
                 help="Basic-auth username of the webhook."),
    click.option("--password", envvar=env("WEBHOOK_PASSWORD"), show_envvar=True, default=None,
                 show_default=False, help="Basic-auth password of the webhook (prefer the environment variable)."),
]

#: How long a client command waits for the executor's answer: one option and one default for every client
#: command (they share ``TRADEEXECUTOR_CLIENT_TIMEOUT``), long enough for ``control``, whose answer comes after
#: the executor's loop has done the action (the executor waits up to 10 s for its loop).
TIMEOUT_OPTION = click.option("--timeout", type=FloatRange(min=0.1), default=30.0, show_default=True,
                              envvar=env("CLIENT_TIMEOUT"), show_envvar=True,
                              help="Seconds to wait for each answer (control: the executor waits up to 10 s for "
                                   "its loop first).")

_COMMON_OPTIONS = [
    *AUTH_OPTIONS,
    click.option("--timezone", "timezone_name", envvar=env("TIMEZONE"), show_envvar=True, default=None,
                 help="Show times in this IANA time zone (e.g. UTC, Europe/Helsinki); default: the local zone."),
    TIMEOUT_OPTION,
]


def _common(function: Any) -> Any:
    for option in reversed(_COMMON_OPTIONS):
        function = option(function)
    return function


@click.command("status")
@click.argument("url", envvar=env("WEBHOOK_URL"))
@click.option("--json", "as_json", is_flag=True, help="Print the raw /status JSON.")
@_common
@user_errors
def status_command(url: str, as_json: bool, username: str | None, password: str | None,
                   timezone_name: str | None, timeout: float) -> None:
    """Show what the executor at URL is doing: status, mode, strategy, cycles and its last crash."""
    zone = resolve_timezone(timezone_name)
    webhook = Webhook.parse(url, username, password, timeout)
    payload = webhook.get_json("/status")
    if as_json:
        click.echo(json.dumps(payload, indent=2))
        return
    if not isinstance(payload, dict):
        raise ClientError(f"{webhook.base_url}/status did not answer a status object")
    click.echo("\n".join(status_lines(payload, zone)))


# ---------------------------------------------------------------------------------------------
# logs


def _details(entry: dict[str, Any]) -> str:
    """The event's fields as ``key=value`` (strings with spaces quoted)."""
    fields = entry.get("fields")
    parts = []
    for key, value in (fields.items() if isinstance(fields, dict) else ()):
        if isinstance(value, str) and value and not any(ch.isspace() or ch in "\"=" for ch in value):
            text = value
        else:
            text = json.dumps(value, ensure_ascii=False, default=str)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def log_row(entry: dict[str, Any], zone: tzinfo | None) -> tuple[str, str, str, str]:
    """One journal entry as the four output columns."""
    return (format_time(entry.get("at"), zone), str(entry.get("level", "")), str(entry.get("event", "")),
            _details(entry))


class LogWriter:
    """Writes log rows in one format, header once, so ``--tail`` can keep appending."""

    def __init__(self, fmt: str, out: TextIO) -> None:
        self.fmt = fmt
        self.out = out
        self._started = False

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")

    def _delimited(self, rows: Iterable[Sequence[str]], delimiter: str) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
        for row in rows:
            if delimiter == "\t":
                row = [cell.replace("\t", " ").replace("\n", " ") for cell in row]
            writer.writerow(row)
        self.out.write(buffer.getvalue())

    def header(self) -> None:
        """Start the output (column names, table opening)."""
        if self._started:
            return
        self._started = True
        if self.fmt == "table":
            self._line(self._table_row(("TIME", "LEVEL", "EVENT", "DETAILS")))
        elif self.fmt in ("csv", "tsv"):
            self._delimited([LOG_COLUMNS], "," if self.fmt == "csv" else "\t")
        elif self.fmt == "markdown":
            self._line("| " + " | ".join(LOG_COLUMNS) + " |")
            self._line("|" + "---|" * len(LOG_COLUMNS))
        elif self.fmt == "html":
            self._line("<table>")
            self._line("<thead><tr>" + "".join(f"<th>{name}</th>" for name in LOG_COLUMNS) + "</tr></thead>")
            self._line("<tbody>")

    @staticmethod
    def _table_row(row: Sequence[str]) -> str:
        time_text, level, event, details = row
        return f"{time_text:<25} {level:<7} {event:<18} {details}".rstrip()

    def rows(self, rows: Sequence[Sequence[str]]) -> None:
        """Write rows (after the header) and flush, so a tail shows them at once."""
        self.header()
        if self.fmt == "table":
            for row in rows:
                self._line(self._table_row(row))
        elif self.fmt in ("csv", "tsv"):
            self._delimited(rows, "," if self.fmt == "csv" else "\t")
        elif self.fmt == "markdown":
            for row in rows:
                cells = (cell.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ") for cell in row)
                self._line("| " + " | ".join(cells) + " |")
        elif self.fmt == "html":
            for row in rows:
                self._line("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
        self.out.flush()

    def close(self) -> None:
        """Finish the output (close the HTML table)."""
        self.header()
        if self.fmt == "html":
            self._line("</tbody>")
            self._line("</table>")
        self.out.flush()


def _entries(payload: Any, where: str) -> list[dict[str, Any]]:
    """The entries of a /logs answer (``{"entries": [...]}``, or a bare list)."""
    entries = payload.get("entries") if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        raise ClientError(f"{where} did not answer a list of log entries")
    return [entry for entry in entries if isinstance(entry, dict)]


def _run_is_live(webhook: Webhook) -> bool:
    payload = webhook.get_json("/status")
    return isinstance(payload, dict) and str(payload.get("status")) in LIVE_STATUSES


@click.command("logs")
@click.argument("url", envvar=env("WEBHOOK_URL"))
@click.option("--tail", "-f", "tail", is_flag=True,
              help="Keep polling for new entries until the run ends or Ctrl+C.")
@click.option("--format", "fmt", type=click.Choice(LOG_FORMATS), default="table", show_default=True,
              envvar=env("LOGS_FORMAT"), show_envvar=True, help="Output format.")
@click.option("--since", default=None, envvar=env("LOGS_SINCE"), show_envvar=True, help="Only entries at or after this time: RFC 3339 with a zone (2024-05-01T12:00:00Z), "
                   "a date (2024-05-01) or Unix seconds.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=100, show_default=True,
              envvar=env("LOGS_LIMIT"), show_envvar=True, help="How many of the most recent entries to show first.")
@click.option("--level", type=click.Choice(LOG_LEVELS), default=None, envvar=env("LOGS_LEVEL"),
              show_envvar=True, help="Only entries at this level or above.")
@click.option("--interval", type=FloatRange(min=0.05), default=2.0, show_default=True,
              envvar=env("TAIL_INTERVAL"), show_envvar=True, help="Seconds between polls with --tail.")
@_common
@user_errors
def logs_command(url: str, tail: bool, fmt: str, since: str | None, limit: int, level: str | None,
                 interval: float, username: str | None, password: str | None, timezone_name: str | None,
                 timeout: float) -> None:
    """Show the journal of the executor at URL: what happened to the job, oldest first."""
    from tradeexecutor.store.journal import Tail

    zone = resolve_timezone(timezone_name)
    webhook = Webhook.parse(url, username, password, timeout)
    writer = LogWriter(fmt, sys.stdout)
    where = webhook.base_url + "/logs"
    seen = Tail()
    try:
        entries = seen.new(_entries(webhook.get_json("/logs", {"since": since, "limit": limit, "level": level}),
                                    where))
        writer.rows([log_row(entry, zone) for entry in entries])
        if tail:
            live = _run_is_live(webhook)
            while live:
                time.sleep(interval)
                live = _run_is_live(webhook)  # read status first, so entries written before the end are fetched
                query = {"since": seen.last_at or since, "limit": MAX_LIMIT, "level": level}
                fresh = seen.new(_entries(webhook.get_json("/logs", query), where))
                if fresh:
                    writer.rows([log_row(entry, zone) for entry in fresh])
        writer.close()
    except KeyboardInterrupt:
        writer.close()
        sys.exit(0)
    except BrokenPipeError:  # `... | head`: the reader has gone; keep the exit-time flush from failing too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)

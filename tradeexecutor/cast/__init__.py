"""The cast contract between a job and the wallboard: chart addresses, targets and the chart data sent.

A job (a replay or paper executor, a finished backtest) *casts* its data to a chart of the shared
wallboard: it ``PUT``\\ s a small JSON document to ``<wallboard>/wallboard/<page>/<chart>`` with
``Authorization: Bearer <token>``. Pages and charts are named by their path; a page is the grid
of the charts cast to it. Both sides use this module: the sender to build what it sends, the
wallboard to check what it receives. Pure, no I/O.

Chart data (``format`` 1)::

    {"format": 1,
     "title": "SMA crossover GOOG replay",
     "source": {"name": "...", "run": "r20240501-120000-a1b2", "mode": "replay", "status": "running"},
     "series": [{"name": "equity", "axis": "left", "t": [1704067200000, ...], "v": [10000.0, ...]},
                {"name": "GOOG close", "axis": "right", "t": [...], "v": [...]}]}

``t`` are epoch milliseconds (UTC), increasing; ``v`` numbers (null for a gap). A series holds
at most :data:`MAX_POINTS` points: senders downsample long histories.

Targets, as ``tradeexecutor runs cast RUN TARGET`` takes them: a path on the wallboard named by
``TRADEEXECUTOR_WALLBOARD_URL`` (``/wallboard/page1/chart1``), or a whole http(s) URL of one;
``-`` or an empty target stops casting. Only the form is checked here: a path the wallboard does
not know (``/wallbord/page1/chart1``) is reported by the wallboard's answer, in the job's journal.
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from tradeexecutor.config import ENV_PREFIX, setting, setting_of
from tradeexecutor.errors import ConfigError

__all__ = [
    "FORMAT",
    "MAX_BODY_BYTES",
    "MAX_POINTS",
    "MAX_SERIES",
    "NAME_PATTERN",
    "WALLBOARD_TOKEN_ENV",
    "WALLBOARD_URL_ENV",
    "CastConfig",
    "chart_path",
    "check_chart_data",
    "check_name",
    "parse_target",
    "target_url",
]

#: The version of the chart data format.
FORMAT = 1
#: Series per chart.
MAX_SERIES = 8
#: Points per series.
MAX_POINTS = 2000
#: Largest chart data document the wallboard reads.
MAX_BODY_BYTES = 512 * 1024
#: Longest title, series name or source value.
MAX_TEXT = 200
#: Page and chart names: a letter or digit, then letters, digits, ``.``, ``_`` or ``-`` (at most 64).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: Where charts live on the wallboard.
PREFIX = "/wallboard/"
#: Targets that stop casting.
STOP = ("", "-")
#: Axis a series is drawn against.
AXES = ("left", "right")

_MAX_TARGET = 2000
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f?#]")


def check_name(kind: str, name: str) -> str:
    """A valid page or chart name, or ValueError saying what a name may look like."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValueError(f"{kind} name {name!r} is not valid: start with a letter or digit, then letters, digits, "
                         "'.', '_' or '-' (at most 64 characters)")
    return name


def chart_path(page: str, chart: str) -> str:
    """``/wallboard/<page>/<chart>`` of valid names."""
    return f"{PREFIX}{check_name('page', page)}/{check_name('chart', chart)}"


def parse_target(text: str | None) -> str | None:
    """A cast target as given (stripped), None for ``-`` or empty (stop); ConfigError when it cannot be one.

    A target is a path (``/wallboard/page1/chart1``) or an http(s) URL without credentials,
    query or fragment.
    """
    target = (text or "").strip()
    if target in STOP:
        return None
    if len(target) > _MAX_TARGET:
        raise ConfigError(f"cast target is longer than {_MAX_TARGET} characters")
    if target.startswith("/"):
        path = target
    else:
        parts = urllib.parse.urlsplit(target)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"cast target {target!r} is neither a wallboard path such as /wallboard/page1/chart1 "
                              "nor an http(s) URL; use - to stop casting")
        if parts.username is not None or parts.password is not None:
            raise ConfigError("cast target must not carry credentials; the token comes from "
                              f"{WALLBOARD_TOKEN_ENV}")
        path = parts.path or "/"
    if _UNSAFE.search(path):
        raise ConfigError(f"cast target {target!r} holds spaces, control characters, '?' or '#'")
    return target


def target_url(target: str, base_url: str | None) -> str:
    """The URL a target is sent to: itself when it is a URL, else the path on ``base_url``.

    ValueError when the target is a path and no wallboard URL is known.
    """
    if not target.startswith("/"):
        return target
    if not base_url:
        raise ValueError(f"no wallboard URL to cast {target} to: set {WALLBOARD_URL_ENV} "
                         "(or cast to a whole URL)")
    return base_url.rstrip("/") + target


# ---------------------------------------------------------------------------------------------
# Chart data


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"{where} must be text of at most {MAX_TEXT} characters")
    return value


def _series(item: Any, index: int) -> dict[str, Any]:
    where = f"series[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object with name, t and v")
    name = _text(item.get("name"), f"{where}.name")
    axis = item.get("axis", "left")
    if axis not in AXES:
        raise ValueError(f"{where}.axis must be one of {', '.join(AXES)}")
    times, values = item.get("t"), item.get("v")
    if not isinstance(times, list) or not isinstance(values, list) or len(times) != len(values):
        raise ValueError(f"{where}: t and v must be lists of the same length")
    if len(times) > MAX_POINTS:
        raise ValueError(f"{where} has {len(times)} points; at most {MAX_POINTS} (downsample it)")
    previous = None
    for time in times:
        if isinstance(time, bool) or not isinstance(time, int):
            raise ValueError(f"{where}.t must hold integer epoch milliseconds")
        if previous is not None and time <= previous:
            raise ValueError(f"{where}.t must increase")
        previous = time
    for value in values:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ValueError(f"{where}.v must hold finite numbers or null")
    return {"name": name, "axis": axis, "t": times, "v": values}


def check_chart_data(data: Any) -> dict[str, Any]:
    """The chart data a job sent, checked and reduced to the known keys; ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("chart data must be a JSON object")
    if data.get("format") != FORMAT:
        raise ValueError(f"chart data format must be {FORMAT}")
    title = _text(data.get("title", ""), "title")
    source = data.get("source") or {}
    if not isinstance(source, dict) or len(source) > 16:
        raise ValueError("source must be an object of at most 16 values")
    clean_source: dict[str, Any] = {}
    for key, value in source.items():
        _text(key, "a source key")
        if value is not None and not isinstance(value, (str, int, float)):
            raise ValueError(f"source.{key} must be text, a number or null")
        clean_source[key] = _text(value, f"source.{key}") if isinstance(value, str) else value
    series = data.get("series")
    if not isinstance(series, list) or len(series) > MAX_SERIES:
        raise ValueError(f"series must be a list of at most {MAX_SERIES}")
    return {"format": FORMAT, "title": title, "source": clean_source,
            "series": [_series(item, index) for index, item in enumerate(series)]}


@dataclass(frozen=True)
class CastConfig:
    """Where the wallboard is and how to cast to it."""

    wallboard_url: str | None = setting(
        None, flag="--wallboard-url",
        help="Base URL of the fleet wallboard that `runs cast` / POST /control/cast targets given as paths "
             "(/wallboard/page1/chart1) are sent to.")
    token: str | None = setting(None, flag="--wallboard-token", secret=True,
                                help="Bearer token the wallboard expects from casts; give it through the "
                                     "environment variable.")
    #: Least seconds between two sends after jobs.
    min_seconds: float = 2.0
    #: Seconds one send may take.
    timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "wallboard_url", self.wallboard_url or None)
        object.__setattr__(self, "token", self.token or None)
        if self.wallboard_url:
            parse_target(self.wallboard_url)  # a URL, or ConfigError saying what is wrong
            if self.wallboard_url.startswith("/"):
                raise ConfigError(f"{WALLBOARD_URL_ENV} {self.wallboard_url!r} must be an http(s) URL")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> CastConfig:
        """``TRADEEXECUTOR_WALLBOARD_URL`` and ``TRADEEXECUTOR_WALLBOARD_TOKEN`` (both optional)."""
        return cls(wallboard_url=environ.get(WALLBOARD_URL_ENV) or None, token=environ.get(WALLBOARD_TOKEN_ENV) or None)


def _variable(name: str) -> str:
    """The environment variable of CastConfig's setting ``name``, as the CLI derives it."""
    about = next(setting_of(item) for item in fields(CastConfig) if item.name == name)
    assert about is not None
    return ENV_PREFIX + about.variable(name)


#: Environment variable naming the wallboard's base URL (``http://wallboard:8090``): the setting's own.
WALLBOARD_URL_ENV = _variable("wallboard_url")
#: Environment variable holding the bearer token casts carry and the wallboard expects: the setting's own.
WALLBOARD_TOKEN_ENV = _variable("token")

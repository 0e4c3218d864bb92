"""The sending side of casting: one ``PUT`` of chart data to a wallboard, and why it failed if it did.

Shared by the executor's :class:`~tradeexecutor.daemon.caster.Caster`, which sends after jobs,
and ``runs cast``, which sends a finished run's data once. Talks plain HTTP through the standard
library, like any client of the wallboard: nothing here imports the wallboard.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.client import HTTPException
from typing import Any

from tradeexecutor import __version__
from tradeexecutor.cast import WALLBOARD_TOKEN_ENV
from tradeexecutor.errors import network_reason

__all__ = ["put_chart"]


def put_chart(url: str, token: str | None, data: Mapping[str, Any], timeout: float) -> str | None:
    """PUT chart data to ``url``; None when the wallboard took it, else why not (one line, no secret)."""
    body = json.dumps(data, allow_nan=False, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json", "User-Agent": f"tradeexecutor-cast/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            return None
    except urllib.error.HTTPError as exc:
        try:
            message = str(json.loads(exc.read(65536)).get("error") or exc.reason)
        except (ValueError, AttributeError, OSError):
            message = str(exc.reason)
        hint = {404: " (is the path right? charts are /wallboard/<page>/<chart>)",
                401: f" (set {WALLBOARD_TOKEN_ENV} to the wallboard's token)",
                403: ""}.get(exc.code, "")
        return f"the wallboard answered {exc.code}: {message}{hint}"
    except (urllib.error.URLError, OSError, HTTPException, ValueError) as exc:
        return f"the wallboard does not answer: {network_reason(exc)}"

"""Readiness, checked locally: are the credentials a run's mode needs present in the environment — by name, never by value.

Nothing here talks to an exchange or the network; it only looks at which environment variables
are set (non-empty). A value is read only to test it for emptiness and is never stored, returned,
logged or written: :class:`Readiness` holds variable *names* and booleans.

The verdict is one of a closed set of states (:class:`ReadinessState`):

=====================  ========================================================================
``disabled``           the mode uses no credentials at all (``backtest``: one-shot, nothing to
                       connect to)
``configured``         every credential the mode needs is present (``replay`` and ``paper`` need none, so they
                       is configured with an empty list; ``live`` needs the exchange key and secret)
``missing_credentials`` a credential the mode needs is not set
``invalid_config``     the spec cannot be used (it fails validation, or names an unknown mode), or
                       an optional pair is half set: the webhook's username without its password
                       or the other way round (``tradeexecutor start`` refuses that too)
=====================  ========================================================================

Credentials by mode (:data:`REQUIRED_BY_MODE`): backtest, replay and paper (public prices) none; live
the exchange's API key and secret, by default in ``TRADEEXECUTOR_EXCHANGE_API_KEY`` and
``TRADEEXECUTOR_EXCHANGE_API_SECRET``; a live spec naming other variables
(``core.exchange_key_variable`` / ``core.exchange_secret_variable``) is checked against those. The webhook's
``TRADEEXECUTOR_WEBHOOK_USERNAME`` / ``TRADEEXECUTOR_WEBHOOK_PASSWORD`` are optional in every mode
and always reported.

``check --probe`` adds a read-only connectivity probe of the exchange (``venue/probe.py``:
``probe_ok``, ``probe_http_error``, ``probe_timeout``, ``probe_unreachable``); a probe that did not
reach the exchange makes the exit code 1.

Example::

    readiness = assess_readiness("live", os.environ)
    readiness.state            # ReadinessState.missing_credentials
    readiness.missing          # ('TRADEEXECUTOR_EXCHANGE_API_SECRET',)
    write_readiness(readiness, run_dir / "readiness.json")
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeexecutor.atomic import atomic_write_text
from tradeexecutor.errors import UserInputError

if TYPE_CHECKING:
    from tradeexecutor.venue.probe import Probe

__all__ = [
    "CREDENTIALS",
    "OPTIONAL_PAIRS",
    "REQUIRED_BY_MODE",
    "CredentialStatus",
    "Readiness",
    "ReadinessState",
    "assess_readiness",
    "check_spec",
    "write_readiness",
]


class ReadinessState(str, Enum):
    """The closed set of readiness verdicts."""

    disabled = "disabled"
    missing_credentials = "missing_credentials"
    configured = "configured"
    invalid_config = "invalid_config"


#: Every credential the executor knows, by environment variable name, with what it is for.
CREDENTIALS: dict[str, str] = {
    "TRADEEXECUTOR_EXCHANGE_API_KEY": "exchange API key (live trading)",
    "TRADEEXECUTOR_EXCHANGE_API_SECRET": "exchange API secret (live trading)",
    "TRADEEXECUTOR_WEBHOOK_USERNAME": "webhook basic-auth username (optional)",
    "TRADEEXECUTOR_WEBHOOK_PASSWORD": "webhook basic-auth password (optional)",
}

#: Credentials each mode needs; a mode not listed here is invalid_config.
REQUIRED_BY_MODE: dict[str, tuple[str, ...]] = {
    "backtest": (),
    "replay": (),
    "paper": (),
    "live": ("TRADEEXECUTOR_EXCHANGE_API_KEY", "TRADEEXECUTOR_EXCHANGE_API_SECRET"),
}

#: Modes that use no credentials at all: their verdict is ``disabled`` (unless the config is invalid).
_DISABLED_MODES = frozenset({"backtest"})

#: Optional credentials that only work together: one without the other is invalid_config.
OPTIONAL_PAIRS: tuple[tuple[str, str], ...] = (
    ("TRADEEXECUTOR_WEBHOOK_USERNAME", "TRADEEXECUTOR_WEBHOOK_PASSWORD"),
)


@dataclass(frozen=True)
class CredentialStatus:
    """One credential: its variable name, whether the mode needs it, and whether it is set. Never its value."""

    #: Environment variable name.
    name: str
    #: What it is for.
    purpose: str
    #: True when the mode cannot run without it.
    required: bool
    #: True when the variable is set to a non-blank value.
    present: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"name": self.name, "purpose": self.purpose, "required": self.required, "present": self.present}


@dataclass(frozen=True)
class Readiness:
    """The verdict for one mode: a state, every credential's status, and one-line problems."""

    #: The mode checked (as the spec names it).
    mode: str
    state: ReadinessState
    credentials: tuple[CredentialStatus, ...]
    #: Why the state is not configured/disabled, one line each (names only).
    problems: tuple[str, ...] = ()
    #: The spec file checked, when there was one.
    spec: str | None = None
    #: When the check ran.
    checked_at: datetime | None = None
    #: The exchange's connectivity probe (``check --probe``), None when not asked for.
    probe: Probe | None = None

    @property
    def required(self) -> tuple[str, ...]:
        """Names of the credentials the mode needs."""
        return tuple(c.name for c in self.credentials if c.required)

    @property
    def missing(self) -> tuple[str, ...]:
        """Names of needed credentials that are not set."""
        return tuple(c.name for c in self.credentials if c.required and not c.present)

    @property
    def ok(self) -> bool:
        """True for disabled and configured: nothing stops the run from starting."""
        return self.state in (ReadinessState.disabled, ReadinessState.configured)

    @property
    def exit_code(self) -> int:
        """0 when ok (and the probe, when asked for, reached the exchange), 1 for missing credentials or a failed
        probe, 2 for an invalid config (like every user-input error)."""
        if self.ok:
            return 0 if self.probe is None or self.probe.ok else 1
        return 1 if self.state is ReadinessState.missing_credentials else 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, as readiness.json holds it."""
        return {
            "spec": self.spec,
            "mode": self.mode,
            "state": self.state.value,
            "ok": self.ok,
            "required": list(self.required),
            "missing": list(self.missing),
            "credentials": [c.to_dict() for c in self.credentials],
            "problems": list(self.problems),
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "probe": self.probe.to_dict() if self.probe is not None else None,
        }

    def lines(self) -> list[str]:
        """A short human report: the verdict, then one line per credential (names only)."""
        out = [f"mode {self.mode}: {self.state.value}" + (f" ({self.spec})" if self.spec else "")]
        width = max((len(c.name) for c in self.credentials), default=0)
        for c in self.credentials:
            need = "required" if c.required else "optional"
            out.append(f"  {c.name:<{width}}  {need:<8}  {'set' if c.present else 'not set'}")
        if not self.required:
            out.append(f"  mode {self.mode} needs no credentials")
        out.extend(f"  problem: {problem}" for problem in self.problems)
        if self.probe is not None:
            out.append(f"  {self.probe.line()}")
        return out


def _present(environ: Mapping[str, str], name: str) -> bool:
    """True when the variable is set to something other than blanks; the value goes no further."""
    value = environ.get(name)
    return bool(value and value.strip())


def assess_readiness(mode: str, environ: Mapping[str, str] = os.environ, *, spec: str | None = None,
                     now: datetime | None = None, exchange_variables: tuple[str, str] | None = None) -> Readiness:
    """The readiness of ``mode`` given the environment ``environ`` (names and presence only).

    ``exchange_variables`` are the names of the variables holding live mode's API key and secret when the config
    names its own (a live spec's ``core.exchange_key_variable`` and ``core.exchange_secret_variable``).
    """
    checked_at = now or datetime.now(UTC)
    required = REQUIRED_BY_MODE.get(mode)
    purposes = dict(CREDENTIALS)
    if mode == "live" and exchange_variables is not None:
        required = exchange_variables
        purposes.update(zip(exchange_variables, (CREDENTIALS[name] for name in REQUIRED_BY_MODE["live"]),
                            strict=True))
    problems: list[str] = []
    if required is None:
        problems.append(f"unknown mode {mode!r}; use one of {', '.join(REQUIRED_BY_MODE)}")
        required = ()
    optional = [name for pair in OPTIONAL_PAIRS for name in pair if name not in required]
    statuses = tuple(
        CredentialStatus(name=name, purpose=purposes.get(name, name), required=name in required,
                         present=_present(environ, name))
        for name in (*required, *optional)
    )
    present = {c.name for c in statuses if c.present}
    for first, second in OPTIONAL_PAIRS:
        if (first in present) != (second in present):
            have, lack = (first, second) if first in present else (second, first)
            problems.append(f"{have} is set but {lack} is not: set both or neither")
    missing = [c.name for c in statuses if c.required and not c.present]
    if problems:
        state = ReadinessState.invalid_config
    elif missing:
        state = ReadinessState.missing_credentials
        problems.extend(f"{name} is not set" for name in missing)
    elif mode in _DISABLED_MODES:
        state = ReadinessState.disabled
    else:
        state = ReadinessState.configured
    return Readiness(mode=mode, state=state, credentials=statuses, problems=tuple(problems), spec=spec,
                     checked_at=checked_at)


def check_spec(path: str | os.PathLike[str], environ: Mapping[str, str] = os.environ, *,
               now: datetime | None = None) -> Readiness:
    """Load the run spec at ``path`` and assess its mode; a spec that fails validation is invalid_config."""
    from tradeexecutor.runs.spec import load_spec

    spec_text = str(path)
    try:
        spec = load_spec(path, env=environ)
    except UserInputError as exc:
        mode = _declared_mode(Path(path))
        base = assess_readiness(mode if mode in REQUIRED_BY_MODE else "backtest", environ, spec=spec_text, now=now)
        return Readiness(mode=mode or "unknown", state=ReadinessState.invalid_config, credentials=base.credentials,
                         problems=(" ".join(str(exc).split()), *[p for p in base.problems
                                                                 if "is not set" not in p]),
                         spec=spec_text, checked_at=base.checked_at)
    return assess_readiness(spec.mode, environ, spec=spec_text, now=now,
                            exchange_variables=(spec.core.exchange_key_variable, spec.core.exchange_secret_variable))


def _declared_mode(path: Path) -> str | None:
    """The ``mode`` a spec file names, read leniently, for reporting a spec that fails validation."""
    try:
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - an unreadable spec simply has no mode to report
        return None
    mode = data.get("mode") if isinstance(data, dict) else None
    return mode if isinstance(mode, str) else None


def write_readiness(readiness: Readiness, path: str | os.PathLike[str]) -> Path:
    """Write readiness.json crash-safely (names and states only); returns the path written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(readiness.to_dict(), indent=2) + "\n")
    return target

"""WallboardConfig: which executors the wallboard watches, how often, and how it reaches them.

Executors are named on the command line or in ``TRADEEXECUTOR_WALLBOARD_EXECUTORS``, each as
``[NAME=]TARGET`` where TARGET is a URL (``http://10.0.0.5:3456``) or a Compose / Kubernetes
service name with an optional port (``sma-crossover``, ``sma-crossover:3457``; the port defaults
to the webhook's 3456). Paper and live runs of a runs folder are added at every poll by the CLI
(see ``runs.fleet``).

Credentials of executors with basic auth come from the environment, by name, never from a
flag: ``TRADEEXECUTOR_WALLBOARD_<NAME>_USERNAME`` and ``..._PASSWORD`` for one executor (NAME
upper-cased, other characters as ``_``), else the fleet's ``TRADEEXECUTOR_WEBHOOK_USERNAME`` and
``TRADEEXECUTOR_WEBHOOK_PASSWORD``. The wallboard shows which variables it used, never a value.

The runner API (``/api/runs``, ``wallboard/runner_api.py``) has credentials of its own,
``TRADEEXECUTOR_RUNNER_USERNAME`` and ``_PASSWORD``: who may start and stop runs is not who the
wallboard is to the executors it polls.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tradeexecutor.config import check_settings, setting
from tradeexecutor.errors import ConfigError
from tradeexecutor.settings import DEFAULT_PORT as EXECUTOR_DEFAULT_PORT

__all__ = ["DEFAULT_EXECUTOR_PORT", "Credentials", "ExecutorTarget", "WallboardConfig", "credentials_for",
           "parse_executor", "parse_executors"]

#: The wallboard's own port.
DEFAULT_PORT = 8090
#: The webhook's port when a service name comes without one: the executor's default.
DEFAULT_EXECUTOR_PORT = EXECUTOR_DEFAULT_PORT
#: Prefix of per-executor credential variables.
CREDENTIALS_PREFIX = "TRADEEXECUTOR_WALLBOARD_"
#: The fleet-wide credentials, the executors' own variables.
FLEET_CREDENTIALS = "TRADEEXECUTOR_WEBHOOK"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
_SERVICE = re.compile(r"^(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*)(?::(?P<port>\d{1,5}))?$")


@dataclass(frozen=True)
class Credentials:
    """Basic-auth credentials for one executor, and the variables they came from (shown; the values never are)."""

    username: str = field(repr=False)
    password: str = field(repr=False)
    #: ``TRADEEXECUTOR_WALLBOARD_SMA_USERNAME/PASSWORD`` or ``TRADEEXECUTOR_WEBHOOK_USERNAME/PASSWORD``.
    variables: str = ""


@dataclass(frozen=True)
class ExecutorTarget:
    """One executor the wallboard polls."""

    #: The label shown, unique on the board.
    name: str
    #: Base URL of its webhook, without a trailing slash.
    url: str
    #: Where it was named: ``option`` (command line or environment) or ``runs`` (the runs folder).
    source: str = "option"
    #: The run's status in the registry (runs only): shown when the executor does not answer.
    run_status: str | None = None
    #: The run's recorded error (runs only).
    run_error: str | None = None


def _variable_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def credentials_for(name: str, environ: Mapping[str, str]) -> Credentials | None:
    """The executor's own credentials, else the fleet's, else None (see the module docstring)."""
    own = f"{CREDENTIALS_PREFIX}{_variable_key(name)}"
    for prefix in (own, FLEET_CREDENTIALS):
        username, password = environ.get(f"{prefix}_USERNAME"), environ.get(f"{prefix}_PASSWORD")
        if username and password:
            return Credentials(username, password, f"{prefix}_USERNAME/PASSWORD")
    return None


def parse_executor(text: str) -> ExecutorTarget:
    """``[NAME=]URL`` or ``[NAME=]SERVICE[:PORT]`` → ExecutorTarget; ConfigError saying what is wrong."""
    raw = text.strip()
    name, equals, target = raw.partition("=")
    if not equals:
        name, target = "", raw
    name, target = name.strip(), target.strip()
    if "://" in target:
        try:
            parts = urllib.parse.urlsplit(target)
            port = parts.port
        except ValueError:
            raise ConfigError(f"--executor {text!r}: not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--executor {text!r}: use an http(s) URL such as http://127.0.0.1:3456")
        if parts.username is not None or parts.password is not None:
            raise ConfigError(f"--executor {parts.hostname}: put no credentials in the URL; set "
                              f"{CREDENTIALS_PREFIX}<NAME>_USERNAME and _PASSWORD instead")
        if parts.query or parts.fragment:
            raise ConfigError(f"--executor {text!r}: give the webhook's base URL, without ? or #")
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        default_name = parts.netloc if port is not None else str(parts.hostname)
    else:
        match = _SERVICE.match(target)
        if not match or not 0 < int(match.group("port") or DEFAULT_EXECUTOR_PORT) < 65536:
            raise ConfigError(f"--executor {text!r}: give a URL (http://host:3456) or a service name "
                              "(sma-crossover or sma-crossover:3457), optionally as NAME=...")
        host, port_text = match.group("host"), match.group("port")
        url = f"http://{host}:{port_text or DEFAULT_EXECUTOR_PORT}"
        default_name = host if port_text is None else f"{host}:{port_text}"
    name = name or default_name
    if not _NAME.match(name):
        raise ConfigError(f"--executor {text!r}: the name {name!r} must start with a letter or digit and hold "
                          "only letters, digits, '.', '_', ':' or '-'")
    return ExecutorTarget(name=name, url=url)


def parse_executors(values: tuple[str, ...] | list[str]) -> tuple[ExecutorTarget, ...]:
    """Every executor named (values may also be comma- or space-separated lists); names must be unique."""
    targets = [parse_executor(part) for value in values for part in re.split(r"[,\s]+", value) if part.strip()]
    seen: dict[str, str] = {}
    for target in targets:
        if target.name in seen:
            raise ConfigError(f"two executors are named {target.name!r} ({seen[target.name]} and {target.url}); "
                              "name them apart with NAME=URL")
        seen[target.name] = target.url
    return tuple(targets)


@dataclass(frozen=True)
class WallboardConfig:
    """Everything the wallboard needs, built once by the CLI."""

    host: str = setting("127.0.0.1", env="WALLBOARD_HOST", help="Interface the wallboard listens on.")
    port: int = setting(DEFAULT_PORT, env="WALLBOARD_PORT", minimum=0, maximum=65535,
                        help="Port (0: any free port, printed at start).")
    runs_dir: Path | None = setting(None, parse=Path,
                                    help="A runs folder: its replay, paper and live runs that run, start or crashed are "
                                         "shown (read-only).")
    executors: tuple[ExecutorTarget, ...] = setting(
        (), flag="--executor", env="WALLBOARD_EXECUTORS", multiple=True, parse=parse_executors,
        help="An executor to show: [NAME=]URL, or a Compose/Kubernetes service name [NAME=]SERVICE[:PORT] (port 3456 "
             "by default). Repeat, or separate with commas or spaces.")
    refresh_seconds: float = setting(10.0, env="WALLBOARD_REFRESH_SECONDS", unit="seconds",
                                     help="Seconds between polls of the executors, and between page refreshes.")
    timeout_seconds: float = setting(3.0, env="WALLBOARD_TIMEOUT_SECONDS", unit="seconds",
                                     help="Seconds each executor gets to answer a poll; slower ones show as "
                                          "unreachable.")
    token: str | None = setting(None, env="WALLBOARD_TOKEN", secret=True,
                                help="Bearer token jobs must send to cast charts; without it casting is refused "
                                     "(403). Give it through the environment variable, not the command line.")
    runner_username: str | None = setting(
        None, env="RUNNER_USERNAME", secret=True, help="Username of the runner API (/api/runs, basic auth); the API is off (403) "
                                          "unless both it and the password are set, and needs --runs-dir.")
    runner_password: str | None = setting(None, env="RUNNER_PASSWORD", secret=True,
                                          help="Password of the runner API. Give it through the environment "
                                               "variable, not the command line.")
    threads: int = setting(4, env="WALLBOARD_THREADS", minimum=1, maximum=64,
                           help="Worker threads of the web server (a runner API log stream holds one while it "
                                "lasts; at most half of them stream at once).")
    log_level: str = setting("info", choices=("debug", "info", "warning", "error"), help="Log verbosity on stderr.")
    #: Where credentials are looked up (os.environ in the CLI).
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_settings(self)
        object.__setattr__(self, "token", self.token or None)
        object.__setattr__(self, "runner_username", self.runner_username or None)
        object.__setattr__(self, "runner_password", self.runner_password or None)
        if (self.runner_username is None) != (self.runner_password is None):
            raise ConfigError("the runner API needs both TRADEEXECUTOR_RUNNER_USERNAME and TRADEEXECUTOR_RUNNER_PASSWORD "
                              "(or neither, to keep it off)")
        if not 1 <= self.refresh_seconds <= 3600:
            raise ConfigError(f"--refresh-seconds {self.refresh_seconds:g} must be between 1 and 3600")
        if not 0.1 <= self.timeout_seconds <= self.refresh_seconds:
            raise ConfigError(f"--timeout-seconds {self.timeout_seconds:g} must be at least 0.1 and at most "
                              f"--refresh-seconds ({self.refresh_seconds:g}), so a poll ends before the next")

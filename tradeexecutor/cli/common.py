"""Helpers shared by the commands: user-error handling, option parsing, output writing."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import click

from tradeexecutor.errors import TradeExecutorError, UserInputError

F = TypeVar("F", bound=Callable[..., Any])

#: Every environment variable the CLI reads starts with this.
ENV_PREFIX = "TRADEEXECUTOR_"


def env(name: str) -> str:
    """The environment variable for an option: ``env("CASH")`` → ``TRADEEXECUTOR_CASH``."""
    return ENV_PREFIX + name


def user_errors(function: F) -> F:
    """Turn our errors into one line on stderr and the error's exit code, never a traceback.

    A strategy whose ``decide()`` raised is shown the same way: the strategy file, line and cycle
    first, then only the strategy's own frames (exit 1); any other exception is a bug of ours and
    keeps its whole traceback.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except UserInputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except TradeExecutorError as exc:
            if not _show_strategy_failure(exc):
                click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))
        except Exception as exc:
            if not _show_strategy_failure(exc):
                raise
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _show_strategy_failure(exc: BaseException) -> bool:
    """Print where a strategy's code failed (``error: file, line, cycle: …`` and its frames); False if it did not."""
    from tradeexecutor.strategy.failure import strategy_failure

    failure = strategy_failure(exc)
    if failure is None:
        return False
    click.echo(f"error: {failure.text()}", err=True)
    return True


def parse_overrides(values: Sequence[str]) -> dict[str, str]:
    """``("fast=5", "slow=20")`` → ``{"fast": "5", "slow": "20"}``; env vars may join them with commas or spaces."""
    from tradeexecutor.strategy.parameters import parse_override  # imports pandas: only when a command runs

    result: dict[str, str] = {}
    for value in values:
        for part in value.replace(",", " ").split():
            name, text = parse_override(part)
            result[name] = text
    return result


def check_times(start: str | None, end: str | None) -> None:
    """Refuse a ``--start``/``--end`` that is not a date or time, or a start not before the end, in one line (exit 2).

    Checked before the strategy or the data load, so a typo costs no time and prints no pandas
    traceback.
    """
    from tradeexecutor.errors import ConfigError
    from tradeexecutor.timeframe import parse_time  # imports pandas: only when a command runs

    first = parse_time(start, "--start") if start else None
    last = parse_time(end, "--end") if end else None
    if first is not None and last is not None and first >= last:
        raise ConfigError(f"--start {start} is not before --end {end}")


def split_sources(values: Sequence[str]) -> list[str]:
    """Data options may repeat or be comma separated (handy in env files)."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def write_json(path: Path, payload: Any) -> None:
    """Write JSON crash-safely (temp file, fsync, rename)."""
    from tradeexecutor.store.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def option_default(param: click.Parameter) -> Any:
    """An option's default as a plain value to document, or None when it has none (unset, None, computed).

    One answer for the generated configuration page and env example, whatever click's version:
    click 8.5 reports an on/off flag's missing default as an UNSET sentinel where 8.4 said False,
    and the flag is off either way.
    """
    default = param.default
    if default is None or callable(default):
        return None  # no default (an explicit None: "decide at run time"), or a computed one
    if not isinstance(default, (str, int, float, bool, tuple, list)):  # click's UNSET sentinel
        return False if getattr(param, "is_bool_flag", False) else None
    if isinstance(default, (tuple, list)):
        return default if default else None
    return default

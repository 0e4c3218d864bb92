"""Helpers shared by the commands: user-error handling, option parsing, output writing."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tradeexecutor.config import ENV_PREFIX, finite_number
from tradeexecutor.errors import ConfigError, TradeExecutorError, UserInputError

F = TypeVar("F", bound=Callable[..., Any])


def env(name: str) -> str:
    """The environment variable for an option: ``env("CASH")`` → ``TRADEEXECUTOR_CASH``."""
    return ENV_PREFIX + name


def user_errors(function: F) -> F:
    """Turn our errors into one line on stderr and the error's exit code, never a traceback.

    Every number option is checked to be finite first (``--cash inf``, ``TRADEEXECUTOR_FEE=nan``),
    before the command runs, so no command can start on one. A strategy whose ``decide()`` raised
    is shown the same way: the strategy file, line and cycle first, then only the strategy's own
    frames (exit 1); any other exception is a bug of ours and keeps its whole traceback.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            check_finite_options(kwargs)
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


class FloatRange(click.FloatRange):
    """click's FloatRange, except that NaN and infinities get through to the one finiteness check of
    ``user_errors``: one line naming the option rather than click's usage text for ``-inf``, and a
    refusal for ``nan``, which compares False with every bound and so passed the range check."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            return number
        return super().convert(value, param, ctx)


def check_finite_options(values: dict[str, Any]) -> None:
    """ConfigError naming the option (or the environment variable that set it) whose number is NaN or infinite."""
    for name, value in values.items():
        if not isinstance(value, float):
            continue
        try:
            finite_number(value)
        except ValueError as exc:
            raise ConfigError(f"{_option_label(name)}{exc}") from None


def _option_label(name: str) -> str:
    """How the user gave the parameter ``name`` of the running command: ``--option `` or ``VARIABLE=``."""
    from click.core import ParameterSource

    context = click.get_current_context(silent=True)
    params = [] if context is None else [p for p in context.command.params if p.name == name]
    if context is None or not params:
        return f"{name} "
    param = params[0]
    if context.get_parameter_source(name) is ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
        return f"{param.envvar}="
    return f"{max(param.opts, key=len)} "


def _show_strategy_failure(exc: BaseException) -> bool:
    """Print where a strategy's code failed (``error: file, line, cycle: …`` and its frames); False if it did not."""
    from tradeexecutor.strategy.failure import strategy_failure

    failure = strategy_failure(exc)
    if failure is None:
        return False
    click.echo(f"error: {failure.text()}", err=True)
    return True


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


def write_json(path: Path, payload: Any) -> None:
    """Write JSON crash-safely (temp file, fsync, rename)."""
    from tradeexecutor.atomic import atomic_write_text

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

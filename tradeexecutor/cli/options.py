"""Click options generated from a config tree: one option and one ``TRADEEXECUTOR_*`` variable per setting.

The commands never declare a setting's option by hand: ``@config_options(DaemonConfig)`` adds one
option per :func:`~tradeexecutor.config.setting` of the tree (flag, type, default, choices, help
and variable all from the field's metadata), and :func:`config_values` turns what click parsed
back into values keyed by their place in the tree, ready for :func:`~tradeexecutor.config.build_config`.
The configuration reference and env.example read these options, so they follow too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from tradeexecutor.cli.common import env
from tradeexecutor.config import SettingPath, walk_settings

F = TypeVar("F", bound=Callable[..., Any])

#: Chooses which settings of a tree a command offers.
Selector = Callable[[SettingPath], bool]


def settings_of(config: type[Any], select: Selector | None = None) -> list[SettingPath]:
    """The settings of ``config``'s tree a command offers, in declaration order."""
    return [item for item in walk_settings(config) if select is None or select(item)]


def make_option(item: SettingPath) -> click.Option:
    """The click option of one setting."""
    about, default = item.about, item.default
    decls = [about.short] if about.short else []
    decls.append(f"{item.option}/{about.negation}" if about.negation else item.option)
    decls.append(item.param)
    kwargs: dict[str, Any] = {"help": about.help}
    if item.variable:
        kwargs.update(envvar=env(item.variable), show_envvar=True)
    if about.metavar:
        kwargs.update(metavar=about.metavar)
    if isinstance(default, bool) and about.parse is None:
        kwargs.update(is_flag=True, default=default, show_default=True)
        return click.Option(decls, **kwargs)
    if about.multiple:
        kwargs.update(multiple=True)
        return click.Option(decls, **kwargs)
    if about.computed_default:
        shown: Any = None
    elif about.parse is not None:
        shown = about.text_default
    else:
        shown = default
    if about.choices:
        kind: Any = click.Choice(about.choices)
    elif about.kind is not None:
        kind = about.kind
    elif about.parse is not None or default is None:
        kind = str
    elif isinstance(default, Path):
        kind = click.Path(path_type=Path)
    else:
        kind = type(default)
    kwargs.update(type=kind, default=shown, show_default=shown is not None and not about.secret)
    return click.Option(decls, **kwargs)


def config_options(config: type[Any], select: Selector | None = None) -> Callable[[F], F]:
    """Decorator: every (selected) setting of ``config``'s tree as an option of the command, in declaration order."""

    def decorate(command: F) -> F:
        params = getattr(command, "__click_params__", [])
        # click applies decorators bottom-up and reverses the list; append in reverse to keep declaration order.
        for item in reversed(settings_of(config, select)):
            params.append(make_option(item))
        command.__click_params__ = params  # type: ignore[attr-defined]
        return command

    return decorate


def config_values(config: type[Any], given: dict[str, Any], select: Selector | None = None) -> dict[tuple[str, ...], Any]:
    """Take the options of ``config``'s settings out of ``given`` (a command's keyword arguments) as tree values.

    Text is parsed by the setting's own parser; an option left at a run-time default (None) is
    left out, so the command decides it (``--state-dir``, ``--public-url``).
    """
    values: dict[tuple[str, ...], Any] = {}
    for item in settings_of(config, select):
        raw = given.pop(item.param)
        if raw is None and (item.about.computed_default or item.default is None):
            continue
        values[item.path] = item.about.parse(raw) if item.about.parse is not None else raw
    return values


def given_on_command_line(names: Iterable[str]) -> set[str]:
    """Which of the parameters ``names`` of the running command were typed on its command line."""
    from click.core import ParameterSource

    context = click.get_current_context()
    return {name for name in names if context.get_parameter_source(name) is ParameterSource.COMMANDLINE}

"""Sweep parameters: the ``--param`` syntax, typed and checked against the strategy, and the grid it spans.

Each ``--param`` gives one strategy parameter its values:

===================  ===========================================================
``fast=5..30:5``     an inclusive range with a step: 5, 10, 15, 20, 25, 30
``fast=5..8``        step 1 (integers only)
``slow=20,30,50``    a list
``allocation=0.5``   a single value
===================  ===========================================================

Ranges are for integer and decimal parameters; lists and single values work for every type and
are parsed by the parameter's own type (so ``fast=abc`` is refused like ``-p fast=abc``). Each
option becomes an :class:`Axis`; the grid is the cartesian product of the axes, less the points
that break a constraint (runs.constraints); parameters not swept keep the spec's values.
:func:`build_grid` checks everything — syntax, parameter names, types and bounds, each
combination loaded by the strategy — and raises a one-line :class:`~tradeexecutor.errors.ConfigError`
(exit 2) before anything runs or is written. Random and TPE search sample the same axes
(runs.search); running and ranking the points is runs.sweep's job.

Example::

    spec = load_spec("strategies/specs/sma_crossover_backtest.yaml")
    axes = build_axes(spec, ["fast=5..30:5", "slow=20,30,50"])
    grid = build_grid(spec, ["fast=5..30:5", "slow=20,30,50"], constraints=["fast < slow"])
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal as _Dec
from decimal import InvalidOperation
from typing import Any

from tradeexecutor.config import finite_number
from tradeexecutor.errors import ConfigError, UserInputError
from tradeexecutor.runs.constraints import Constraint, first_broken, parse_constraints
from tradeexecutor.runs.spec import RunSpec
from tradeexecutor.strategy.loader import load_strategy
from tradeexecutor.strategy.parameters import Decimal, Integer, Parameter

__all__ = [
    "MAX_GRID_POINTS",
    "Axis",
    "base_values",
    "build_axes",
    "build_grid",
    "expand_values",
    "grid_size",
    "iter_grid",
    "parse_param_option",
    "sweep_constraints",
]

#: A grid larger than this is refused (a typo such as ``1..100000`` should not start 100,000 runs).
MAX_GRID_POINTS = 10_000


# ---------------------------------------------------------------------------------------------
# The grid


def parse_param_option(text: str) -> tuple[str, str]:
    """``"fast=5..30:5"`` → ``("fast", "5..30:5")``; ConfigError for anything else."""
    name, sep, expression = str(text).partition("=")
    name, expression = name.strip(), expression.strip()
    if not sep or not name or not expression:
        raise ConfigError(f"--param {text!r}: expected NAME=VALUES, such as fast=5..30:5, slow=20,30,50 or fee=0.1")
    if not name.replace("_", "").isalnum():
        raise ConfigError(f"--param {text!r}: {name!r} is not a parameter name")
    return name, expression


def _decimal(text: str, name: str, what: str) -> _Dec:
    try:
        number = _Dec(text.strip())
    except InvalidOperation:
        raise ConfigError(f"--param {name}: {what} {text.strip()!r} is not a number") from None
    try:
        finite_number(number)  # 1e999 is a finite decimal but no float holds it
    except ValueError as exc:
        raise ConfigError(f"--param {name}: {what} {exc}") from None
    return number


def _range(name: str, expression: str, parameter: Parameter) -> list[Any]:
    """The values of ``a..b[:step]`` (inclusive), typed for an integer or decimal parameter."""
    bounds, _, step_text = expression.partition(":")
    low_text, _, high_text = bounds.partition("..")
    if not low_text.strip() or not high_text.strip():
        raise ConfigError(f"--param {name}={expression}: a range is FIRST..LAST or FIRST..LAST:STEP, such as 5..30:5")
    if not isinstance(parameter, (Integer, Decimal)):
        raise ConfigError(f"--param {name}={expression}: a range needs an integer or decimal parameter; "
                          f"{name} is {parameter.kind} (list its values: {name}=a,b,c)")
    low, high = _decimal(low_text, name, "first value"), _decimal(high_text, name, "last value")
    if step_text.strip():
        step = _decimal(step_text, name, "step")
    elif isinstance(parameter, Integer):
        step = _Dec(1)
    else:
        raise ConfigError(f"--param {name}={expression}: a decimal range needs a step, such as 0.1..0.5:0.1")
    if step <= 0:
        raise ConfigError(f"--param {name}={expression}: the step must be positive")
    if low > high:
        raise ConfigError(f"--param {name}={expression}: the first value is above the last")
    if isinstance(parameter, Integer) and any(v != v.to_integral_value() for v in (low, high, step)):
        raise ConfigError(f"--param {name}={expression}: {name} is an integer parameter; use whole numbers")
    count = int((high - low) / step) + 1
    if count > MAX_GRID_POINTS:
        raise ConfigError(f"--param {name}={expression}: {count:,} values; at most {MAX_GRID_POINTS:,}")
    values = [low + step * i for i in range(count)]
    if isinstance(parameter, Integer):
        return [int(v) for v in values]
    return [float(v) for v in values]


def expand_values(name: str, expression: str, parameter: Parameter) -> tuple[Any, ...]:
    """The typed, checked, de-duplicated values of one ``--param`` expression for ``parameter``."""
    if ".." in expression:
        if "," in expression:
            raise ConfigError(f"--param {name}={expression}: give a range or a list, not both")
        raw: list[Any] = _range(name, expression, parameter)
    else:
        parts = [part.strip() for part in expression.split(",")]
        if any(not part for part in parts):
            raise ConfigError(f"--param {name}={expression}: empty value in the list")
        raw = parts
    values: list[Any] = []
    for value in raw:
        try:
            typed = parameter.parse(value) if isinstance(value, str) else parameter.check(value)
        except ValueError as exc:
            raise ConfigError(f"--param {name}={expression}: {exc} (expected {parameter.kind})") from None
        if typed not in values:
            values.append(typed)
    return tuple(values)


@dataclass(frozen=True)
class Axis:
    """One swept parameter: its typed values, and how a sampler should see them."""

    name: str
    values: tuple[Any, ...]
    #: ``int``: an integer range (sampled as integers from low to high by ``step``); ``index``: a decimal range
    #: (sampled by position, so every value is one of the grid's exactly); ``choice``: a list (unordered).
    kind: str
    step: int = 1


def _axis(name: str, expression: str, parameter: Parameter) -> Axis:
    values = expand_values(name, expression, parameter)
    if ".." in expression and len(values) > 1:
        if isinstance(parameter, Integer):
            return Axis(name, values, "int", int(values[1]) - int(values[0]))
        return Axis(name, values, "index")
    return Axis(name, values, "choice")


def build_axes(spec: RunSpec, options: Sequence[str]) -> list[Axis]:
    """One checked :class:`Axis` per ``--param`` option, in the order given; ConfigError otherwise."""
    if not options:
        raise ConfigError("give at least one --param NAME=VALUES to sweep")
    strategy = load_strategy(spec.strategy_file, spec.strategy)
    specs = strategy.parameter_specs
    axes: dict[str, Axis] = {}
    for option in options:
        name, expression = parse_param_option(option)
        if name not in specs:
            close = difflib.get_close_matches(name, list(specs), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"--param {name}: unknown parameter of {strategy.name}{hint} "
                              f"(known: {', '.join(sorted(specs)) or 'none'})")
        if name in axes:
            raise ConfigError(f"--param {name}: given twice; list every value in one option")
        axes[name] = _axis(name, expression, specs[name])
    return list(axes.values())


def sweep_constraints(spec: RunSpec, extra: Sequence[str] = ()) -> tuple[Constraint, ...]:
    """The spec's ``optimize.constraints`` and ``extra`` (``--constraint``), parsed over the strategy's parameters."""
    names = list(load_strategy(spec.strategy_file, spec.strategy).parameter_specs)
    where = f"{spec.source or 'run spec'}: optimize.constraints"
    texts = [(text, f"{where}[{i}]") for i, text in enumerate(spec.constraints)]
    texts += [(text, "--constraint") for text in extra]
    return parse_constraints(texts, names)


def base_values(spec: RunSpec) -> dict[str, Any]:
    """Every parameter's value before a sweep changes any: the spec's, else the strategy's default."""
    return dict(load_strategy(spec.strategy_file, spec.strategy).parameters)


def grid_size(axes: Sequence[Axis]) -> int:
    return math.prod(len(axis.values) for axis in axes)


def iter_grid(axes: Sequence[Axis]) -> Iterator[dict[str, Any]]:
    """Every combination of the axes' values, in grid order (the last axis varies fastest)."""
    names = [axis.name for axis in axes]
    for combination in itertools.product(*(axis.values for axis in axes)):
        yield dict(zip(names, combination, strict=True))


def build_grid(spec: RunSpec, options: Sequence[str], *, constraints: Sequence[str] = (),
               check: bool = True) -> list[dict[str, Any]]:
    """Every combination of the swept values that satisfies the constraints, each checked by loading the strategy.

    ConfigError (before anything runs) for bad syntax, a grid over :data:`MAX_GRID_POINTS`, no point left
    by the constraints, or a point the strategy refuses.
    """
    axes = build_axes(spec, options)
    total = grid_size(axes)
    if total > MAX_GRID_POINTS:
        raise ConfigError(f"the grid has {total:,} points; at most {MAX_GRID_POINTS:,} "
                          "(sample a larger space with --search random or tpe)")
    rules = sweep_constraints(spec, constraints)
    base = base_values(spec)
    grid = [point for point in iter_grid(axes) if first_broken(rules, {**base, **point}) is None]
    if not grid:
        raise ConfigError(f"no grid point satisfies the constraints ({'; '.join(c.text for c in rules)}); "
                          "widen the --param values or relax a constraint")
    if check:
        for point in grid:
            try:
                load_strategy(spec.strategy_file, {**spec.strategy, **point})
            except UserInputError as exc:
                label = ", ".join(f"{k}={v}" for k, v in point.items())
                raise ConfigError(f"grid point {label}: {' '.join(str(exc).split())}") from None
    return grid

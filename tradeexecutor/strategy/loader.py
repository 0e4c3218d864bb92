"""Load a strategy module by path and validate everything it declares before anything runs."""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from tradeexecutor.errors import ConfigError, ParameterError, StrategyLoadError
from tradeexecutor.state.instrument import ASSET_TYPES
from tradeexecutor.strategy.guard import check_strategy_code
from tradeexecutor.strategy.intents import Intent
from tradeexecutor.strategy.parameters import (
    BarFrequency,
    Parameter,
    Parameters,
    Symbol,
    resolve_parameters,
    validate_specs,
)
from tradeexecutor.timeframe import format_duration, parse_duration


@dataclass(frozen=True)
class LoadedStrategy:
    """A validated strategy: its declarations, resolved parameters and callables."""

    path: Path
    source: str
    #: sha256 of the source text, the strategy's version.
    version: str
    name: str
    description: str
    cycle_duration: timedelta
    #: Symbols traded, in declaration order.
    instruments: tuple[str, ...]
    parameter_specs: Mapping[str, Parameter]
    parameters: Parameters
    decide: Callable[[Any], Iterable[Intent] | None]
    indicators: Callable[..., Mapping[str, Any]] | None
    #: True when the strategy defines signals() (strategy.signals) and ``decide`` is the one built from them.
    signals: bool = False
    #: Bar frequency the strategy reads, when it declares one (else the data's own).
    bar_frequency: timedelta | None = None
    #: Asset type expected per symbol, from Symbol parameters or the module's ``asset_types``.
    asset_types: Mapping[str, str] = field(default_factory=dict)
    #: The cycle duration the module declares when an operator runs it on shorter cycles (:func:`with_cycle_duration`),
    #: else None (``cycle_duration`` is the module's own).
    declared_cycle_duration: timedelta | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-safe summary for run metadata and the status page."""
        return {
            "name": self.name,
            "description": self.description,
            "version": self.version,
            "cycle_duration": str(self.cycle_duration),
            "instruments": list(self.instruments),
            "parameters": dict(self.parameters),
            **({"declared_cycle_duration": str(self.declared_cycle_duration)}
               if self.declared_cycle_duration is not None else {}),
        }


def strategy_version(source: str) -> str:
    """The sha256 of a strategy's source text."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _positional_count(function: Callable[..., Any]) -> tuple[int, int]:
    signature = inspect.signature(function)
    required = 0
    total = 0
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            total += 1
            if parameter.default is inspect.Parameter.empty:
                required += 1
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            total += 99
        elif parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.default is inspect.Parameter.empty:
            required += 99
    return required, total


@functools.lru_cache(maxsize=32)
def _compile(source: str, filename: str) -> types.CodeType:
    """The module's code object, compiled once per source: a sweep loads the same strategy for every point.

    Only compiling is shared; every load still executes the code into a fresh module, so no state
    leaks from one load (one sweep point) to the next. The code guard reads the syntax tree first,
    so code that reaches past the cycle context is refused before any of it runs (a refusal is not
    cached: it is raised again on every load).
    """
    tree = ast.parse(source, filename)
    check_strategy_code(tree, filename)
    return compile(tree, filename, "exec")


def _execute_module(path: Path, source: str) -> types.ModuleType:
    try:
        code = _compile(source, str(path))
    except SyntaxError as exc:
        raise StrategyLoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    module_name = f"tradeexecutor_strategy_{strategy_version(source)[:12]}"
    spec = importlib.util.spec_from_loader(module_name, loader=None, origin=str(path))
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # dataclasses and pickling inside strategies need it
    try:
        exec(code, module.__dict__)
    except Exception as exc:  # noqa: BLE001 - any failure of user code becomes a load error
        sys.modules.pop(module_name, None)
        line = _user_line(exc, str(path))
        where = f"{path}:{line}" if line else str(path)
        raise StrategyLoadError(f"{where}: failed to import: {type(exc).__name__}: {_one_line(exc)}") from None
    return module


def _one_line(exc: BaseException) -> str:
    """An exception message folded onto one line, so every load error stays one line."""
    return " ".join(str(exc).split())


def _user_line(exc: BaseException, filename: str) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def load_strategy(path: str | Path, overrides: Mapping[str, Any] | None = None) -> LoadedStrategy:
    """Read, compile, execute and validate the strategy at ``path``.

    Every problem is a one-line StrategyLoadError or ParameterError (exit code 2) raised before
    anything is written.
    """
    path = Path(path)
    if not path.exists():
        raise StrategyLoadError(f"{path}: strategy file not found")
    if not path.is_file():
        raise StrategyLoadError(f"{path}: not a file; give the path of a strategy .py file")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StrategyLoadError(f"{path}: cannot read strategy: {exc}") from None
    return load_strategy_source(source, path, overrides)


def load_strategy_source(source: str, path: str | Path, overrides: Mapping[str, Any] | None = None) -> LoadedStrategy:
    """Compile, execute and validate strategy ``source`` as if read from ``path`` (named in errors only).

    For a process that has the source but not the file: a sweep's worker on another machine.
    """
    path = Path(path)
    module = _execute_module(path, source)
    where = str(path)

    name = getattr(module, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise StrategyLoadError(f"{where}: missing `name = \"...\"`: every strategy declares a name")
    description = getattr(module, "description", None) or (module.__doc__ or "").strip()
    if not isinstance(description, str) or not description:
        raise StrategyLoadError(f"{where}: missing `description = \"...\"` (or a module docstring)")

    raw_cycle = getattr(module, "cycle_duration", None)
    if raw_cycle is None:
        raise StrategyLoadError(f"{where}: missing `cycle_duration`, such as \"1h\" or \"1d\"")
    try:
        cycle = parse_duration(raw_cycle)
    except Exception as exc:  # ConfigError from parse_duration
        raise StrategyLoadError(f"{where}: cycle_duration: {exc}") from None

    decide = getattr(module, "decide", None)
    signals = getattr(module, "signals", None)
    if signals is not None:
        if decide is not None:
            raise StrategyLoadError(f"{where}: define `decide(ctx)` or `signals(candles, parameters)`, not both")
        if not callable(signals) or _positional_count(signals)[0] > 2 or _positional_count(signals)[1] < 2:
            raise StrategyLoadError(f"{where}: `signals` must be a function `def signals(candles, parameters):` "
                                    "returning {\"entry\": series, \"exit\": series}")
    elif decide is None:
        raise StrategyLoadError(f"{where}: missing decision function: define `def decide(ctx): ...`")
    elif not callable(decide):
        raise StrategyLoadError(f"{where}: `decide` must be a function taking one argument (the cycle context)")
    required, total = _positional_count(decide) if decide is not None else (1, 1)
    if decide is not None and (required > 1 or total < 1):
        raise StrategyLoadError(
            f"{where}: decide{inspect.signature(decide)} has the wrong signature: it must take exactly one "
            "argument, the cycle context: `def decide(ctx):`"
        )

    indicators = getattr(module, "indicators", None)
    if indicators is not None:
        if not callable(indicators):
            raise StrategyLoadError(f"{where}: `indicators` must be a function `def indicators(candles, parameters):`")
        required, total = _positional_count(indicators)
        if required > 2 or total < 2:
            raise StrategyLoadError(
                f"{where}: indicators{inspect.signature(indicators)} has the wrong signature: it must be "
                "`def indicators(candles, parameters):` returning a dict of name to series"
            )

    specs = validate_specs(getattr(module, "parameters", None), where)
    parameters = resolve_parameters(specs, overrides or {}, where)

    asset_types: dict[str, str] = {}
    declared_types = getattr(module, "asset_types", None) or {}
    if not isinstance(declared_types, Mapping):
        raise StrategyLoadError(f"{where}: asset_types must be a dict of symbol to asset type")
    for symbol, asset_type in declared_types.items():
        if asset_type not in ASSET_TYPES:
            raise StrategyLoadError(f"{where}: asset_types[{symbol!r}] = {asset_type!r} is not one of {', '.join(ASSET_TYPES)}")
        asset_types[str(symbol)] = asset_type

    symbols: list[str] = []
    declared = getattr(module, "instruments", None)
    if callable(declared):
        try:
            declared = declared(parameters)
        except Exception as exc:  # noqa: BLE001 - user code
            line = _user_line(exc, str(path))
            at = f"{path}:{line}" if line else where
            raise StrategyLoadError(f"{at}: instruments(parameters) failed: {type(exc).__name__}: {_one_line(exc)}") from None
    if declared is not None:
        if isinstance(declared, str) or not all(isinstance(s, str) and s for s in declared):
            raise StrategyLoadError(f"{where}: instruments must be a list of symbols such as [\"GOOG\"]")
        symbols.extend(declared)
    for param_name, spec in specs.items():
        if isinstance(spec, Symbol):
            value = parameters[param_name]
            if value not in symbols:
                symbols.append(value)
            asset_types.setdefault(value, spec.asset_type)
    if not symbols:
        raise StrategyLoadError(f"{where}: no instruments: declare `instruments = [...]` or a Symbol parameter")

    bar_frequency = None
    for param_name, spec in specs.items():
        if isinstance(spec, BarFrequency):
            bar_frequency = parse_duration(parameters[param_name])
    if bar_frequency is None and getattr(module, "bar_frequency", None) is not None:
        try:
            bar_frequency = parse_duration(module.bar_frequency)
        except Exception as exc:  # ConfigError from parse_duration
            raise StrategyLoadError(f"{where}: bar_frequency: {exc}") from None

    if signals is not None:
        from tradeexecutor.strategy.signals import combined_indicators, signal_decide

        order = getattr(module, "signal_order", None) or {}
        try:
            if not isinstance(order, Mapping):
                raise TypeError("it must be a dict of open_long() arguments, such as {\"fraction\": 1.0}")
            decide = signal_decide(order, tuple(dict.fromkeys(symbols)))
        except (TypeError, ValueError) as exc:
            raise StrategyLoadError(f"{where}: signal_order: {_one_line(exc)}") from None
        indicators = combined_indicators(indicators, signals, where)
    assert decide is not None

    return LoadedStrategy(
        path=path,
        source=source,
        version=strategy_version(source),
        name=name.strip(),
        description=description.strip(),
        cycle_duration=cycle,
        instruments=tuple(dict.fromkeys(symbols)),
        parameter_specs=specs,
        parameters=parameters,
        decide=decide,
        indicators=indicators,
        signals=signals is not None,
        bar_frequency=bar_frequency,
        asset_types=asset_types,
    )


def with_parameters(strategy: LoadedStrategy, changes: Mapping[str, Any]) -> LoadedStrategy:
    """The same strategy with some parameters changed, checked exactly as at start-up; ParameterError says why not.

    For a running executor (``reload-params``): values may be typed (JSON) or text (``fast=10``),
    and the rest keep their running values. Symbol and bar-frequency parameters choose the data
    the executor loaded at start, so changing them is refused: that needs a restart.
    """
    where = "reload-params"
    if not changes:
        raise ParameterError(f"{where}: no parameters given; name at least one, such as fast=10")
    parameters = resolve_parameters(strategy.parameter_specs, {**strategy.parameters, **changes}, where)
    for name, spec in strategy.parameter_specs.items():
        if isinstance(spec, (Symbol, BarFrequency)) and parameters[name] != strategy.parameters[name]:
            raise ParameterError(f"{where}: parameter {name!r} ({spec.kind}) chooses the data the executor loaded at "
                                 f"start; restart it with -p {name}={parameters[name]} to change it")
    return replace(strategy, parameters=parameters)


def with_cycle_duration(strategy: LoadedStrategy, cycle: timedelta, *, option: str = "--cycle-duration") -> LoadedStrategy:
    """The strategy on cycles of ``cycle`` instead of its own, its bar frequency scaled by the same factor.

    An operator's rehearsal on faster bars (freqtrade's ``timeframe`` in a config overriding the
    strategy's): a strategy declaring 1h cycles on 1h bars runs on 1s cycles and 1s bars; one reading
    4h bars on 1h cycles reads 4s bars on 1s cycles. Scaling both keeps what the strategy counts in
    bars (lookbacks, windows) meaning the same number of its cycles, so it decides as it would, only
    sooner; the ``BarFrequency`` parameter keeps its text (the strategy's own vocabulary) while the
    bars it names are scaled. Refused with one line: a cycle longer than the declared one (this is a
    faster rehearsal; a slower strategy is another strategy, to be written as one), and bars that
    would not be a whole number of seconds (no exchange serves them). The result's
    ``declared_cycle_duration`` keeps the module's own cycle for /status and the journal.
    """
    declared = strategy.declared_cycle_duration or strategy.cycle_duration
    if cycle > declared:
        raise ConfigError(f"{option} {format_duration(cycle)} is longer than the {format_duration(declared)} cycle "
                          f"{strategy.path.name} declares: it runs a strategy on faster cycles to rehearse it, never "
                          f"slower; give at most {format_duration(declared)}")
    if cycle == strategy.cycle_duration:
        return strategy
    bars = strategy.bar_frequency
    if bars is not None:  # in the ratio it has to the cycle it runs on now (the declared one, or an earlier override)
        seconds = Fraction(_micros(bars) * _micros(cycle), _micros(strategy.cycle_duration) * 1_000_000)
        if seconds.denominator != 1:
            raise ConfigError(f"{option} {format_duration(cycle)} scales the strategy's {format_duration(bars)} bars "
                              f"(read on {format_duration(strategy.cycle_duration)} cycles) to {float(seconds):g} s, "
                              "not a whole number of seconds: choose a cycle that keeps them whole")
        bars = timedelta(seconds=int(seconds))
    return replace(strategy, cycle_duration=cycle, bar_frequency=bars,
                   declared_cycle_duration=None if cycle == declared else declared)


def _micros(duration: timedelta) -> int:
    """A duration in whole microseconds, for exact arithmetic."""
    return duration // timedelta(microseconds=1)


def check_universe(strategy: LoadedStrategy, available: Mapping[str, str | None]) -> dict[str, str]:
    """Check the strategy's symbols against the data; return each symbol's asset type.

    A symbol missing from the data, or present with another asset type than the strategy
    expects, is a one-line StrategyLoadError.
    """
    resolved: dict[str, str] = {}
    where = str(strategy.path)
    for symbol in strategy.instruments:
        if symbol not in available:
            names = ", ".join(sorted(available)) or "none"
            raise StrategyLoadError(f"{where}: symbol {symbol!r} is not in the data (the data has: {names})")
        expected = strategy.asset_types.get(symbol)
        actual = available[symbol]
        if expected and actual and expected != actual:
            raise StrategyLoadError(
                f"{where}: symbol {symbol!r} is {actual} in the data but the strategy expects {expected}"
            )
        resolved[symbol] = actual or expected or "equity"
    return resolved

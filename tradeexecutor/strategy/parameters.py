"""Typed strategy parameters: declared with defaults in the strategy, overridden by operators."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tradeexecutor.config import finite_number
from tradeexecutor.errors import ConfigError, ParameterError, StrategyLoadError
from tradeexecutor.state.instrument import ASSET_TYPES
from tradeexecutor.timeframe import parse_duration


@dataclass(frozen=True)
class Parameter:
    """Base of every parameter type; ``default`` is validated when the strategy loads."""

    default: Any
    help: str = ""
    #: Short type name shown in errors and docs.
    kind = "parameter"

    def check(self, value: Any) -> Any:
        """Return ``value`` in canonical form, or raise ValueError saying what is wrong."""
        raise NotImplementedError

    def parse(self, text: str) -> Any:
        """Turn command-line text into a value; typed values pass through check()."""
        return self.check(text)

    def describe(self) -> dict[str, Any]:
        """A JSON-safe description for --help, docs and the run metadata."""
        return {"type": self.kind, "default": self.default, "help": self.help}


@dataclass(frozen=True)
class Integer(Parameter):
    """A whole number, optionally bounded: ``Integer(20, min=2, max=500)``."""

    min: int | None = None
    max: int | None = None
    kind = "integer"

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        if self.min is not None and value < self.min:
            raise ValueError(f"{value} is below the minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ValueError(f"{value} is above the maximum {self.max}")
        return value

    def parse(self, text: str) -> int:
        if isinstance(text, str):
            try:
                return self.check(int(text.strip()))
            except ValueError as exc:
                if "integer" in str(exc) or "invalid literal" in str(exc):
                    raise ValueError(f"{text!r} is not an integer") from None
                raise
        return self.check(text)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "min": self.min, "max": self.max}


@dataclass(frozen=True)
class Decimal(Parameter):
    """A number with a fractional part, such as an allocation of ``0.95``; held as a float."""

    min: float | None = None
    max: float | None = None
    kind = "decimal"

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{value!r} is not a number")
        number = finite_number(value)
        if self.min is not None and number < self.min:
            raise ValueError(f"{number} is below the minimum {self.min}")
        if self.max is not None and number > self.max:
            raise ValueError(f"{number} is above the maximum {self.max}")
        return number

    def parse(self, text: str) -> float:
        if isinstance(text, str):
            try:
                number = float(text.strip())
            except ValueError:
                raise ValueError(f"{text!r} is not a number") from None
            return self.check(number)
        return self.check(text)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "min": self.min, "max": self.max}


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class Boolean(Parameter):
    """A switch: ``Boolean(False)``; overrides accept true/false, yes/no, 1/0, on/off."""

    kind = "boolean"

    def check(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean (true or false)")
        return value

    def parse(self, text: str) -> bool:
        if isinstance(text, str):
            lowered = text.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(f"{text!r} is not a boolean: use true or false")
        return self.check(text)


@dataclass(frozen=True)
class Choice(Parameter):
    """One of a fixed set of strings: ``Choice("fast", choices=("fast", "slow"))``."""

    choices: tuple[str, ...] = ()
    kind = "choice"

    def check(self, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "choices": list(self.choices)}


@dataclass(frozen=True)
class Text(Parameter):
    """Free text, such as a label."""

    kind = "text"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not text")
        return value


@dataclass(frozen=True)
class Symbol(Parameter):
    """An instrument symbol that must exist in the data with the given asset type."""

    asset_type: str = "equity"
    kind = "symbol"

    def __post_init__(self) -> None:
        if self.asset_type not in ASSET_TYPES:
            raise StrategyLoadError(
                f"Symbol parameter asset_type {self.asset_type!r} is not one of {', '.join(ASSET_TYPES)}"
            )

    def check(self, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{value!r} is not a symbol")
        return value.strip()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "asset_type": self.asset_type}


@dataclass(frozen=True)
class BarFrequency(Parameter):
    """The candle frequency the strategy reads: fixed (``BarFrequency("1h")``) or a choice the
    operator may pick (``BarFrequency("1h", choices=("1h", "4h"))``)."""

    choices: tuple[str, ...] = ()
    kind = "bar_frequency"

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a bar frequency such as 1h or 1d")
        try:
            parse_duration(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        allowed = self.choices or (self.default,)
        if value not in allowed:
            if not self.choices:
                raise ValueError(f"{value!r}: this strategy's bar frequency is fixed at {self.default}")
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        return value

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "choices": list(self.choices or (self.default,))}


#: Parameter types a strategy may declare, by the name used in its module.
PARAMETER_TYPES: tuple[type[Parameter], ...] = (Integer, Decimal, Boolean, Choice, Text, Symbol, BarFrequency)


@dataclass(frozen=True)
class Parameters(Mapping[str, Any]):
    """Resolved parameter values, read by name or attribute: ``p["fast"]`` or ``p.fast``.

    A read-only Mapping, so ``dict(p)``, ``p.items()`` and ``p.values()`` work as for a dict.
    """

    data: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["data"][name]
        except KeyError:
            raise AttributeError(f"strategy has no parameter {name!r}") from None


def validate_specs(specs: Any, where: str) -> dict[str, Parameter]:
    """Check the ``parameters`` a strategy declares: known types, defaults of the right type."""
    if specs is None:
        return {}
    if not isinstance(specs, Mapping):
        raise StrategyLoadError(f"{where}: parameters must be a dict of name to parameter, got {type(specs).__name__}")
    checked: dict[str, Parameter] = {}
    type_names = ", ".join(t.__name__ for t in PARAMETER_TYPES)
    for name, spec in specs.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise StrategyLoadError(f"{where}: parameter name {name!r} must be a Python identifier")
        if not isinstance(spec, PARAMETER_TYPES):
            raise StrategyLoadError(
                f"{where}: parameter {name!r} has unknown type {type(spec).__name__}; use one of {type_names}"
            )
        try:
            spec.check(spec.default)
        except ValueError as exc:
            raise StrategyLoadError(f"{where}: parameter {name!r} default is invalid for {spec.kind}: {exc}") from None
        checked[name] = spec
    return checked


def resolve_parameters(specs: Mapping[str, Parameter], overrides: Mapping[str, Any], where: str) -> Parameters:
    """Defaults with overrides applied; an override must name a declared parameter and fit its type."""
    values = {name: spec.default for name, spec in specs.items()}
    for name, raw in overrides.items():
        if name not in specs:
            known = ", ".join(sorted(specs)) or "none"
            raise ParameterError(f"{where}: {name!r} is not a parameter of this strategy (declared: {known})")
        try:
            values[name] = specs[name].parse(raw)
        except ValueError as exc:
            raise ParameterError(f"{where}: parameter {name!r}: {exc}") from None
    return Parameters(values)


def parse_override(text: str) -> tuple[str, str]:
    """Split ``fast=10`` into its name and value text."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ParameterError(f"parameter override {text!r} must look like name=value")
    return name.strip(), value.strip()

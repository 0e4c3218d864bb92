"""Run specs: a YAML file naming a strategy, a mode and its config, validated once into a frozen RunSpec.

A spec has five top-level keys (``name`` is optional)::

    strategy_file: ../sma_crossover.py     # relative to the spec file
    mode: backtest                          # replay, paper, backtest or live
    name: SMA crossover on GOOG             # a label for listings
    environment:                            # where the candles come from
      data: [stocks-daily]                  # bundled dataset names or candle files (relative to the spec)
      start: 2005-01-01
      end: 2012-12-31
      replay_seconds: 0.1                   # replay: wall-clock seconds per replayed bar
      replay_start: warm                    # replay: warm, first or an ISO time
      exchange: binance                     # paper and live: the exchange (its live prices; live: its orders)
      exchange_url: http://127.0.0.1:8765   # paper and live: a simulator, proxy or testnet instead
    strategy:                               # parameter values, checked against the strategy's typed parameters
      fast: 10
      slow: 30
    core:                                   # the executor: money, fills, schedule, webhook, crash policy
      cash: 10000
      fee: 0.001
      exchange_key_variable: BINANCE_KEY    # live: the NAMES of the variables holding the API key and secret;
      exchange_secret_variable: BINANCE_SECRET  # the values stay in the environment, never in the spec
      ...
    optimize:                               # optional: how sweeps of this spec may vary the parameters
      constraints: ["fast < slow"]          # every search (grid, random, TPE) honours them

The keys of ``environment`` and ``core`` are the settings of the executor's configuration tree
(``settings.DaemonConfig`` and the parts it composes) that declare a ``spec`` key: each has
the default, the checks and the environment variable of its ``tradeexecutor start`` option, and
that variable overrides it (``TRADEEXECUTOR_FEE`` sets
``core.fee``; ``TRADEEXECUTOR_PARAMS="fast=5,slow=20"`` sets strategy parameters; the mode and
the strategy file are not overridable). Unknown keys, wrong types and bad values are one-line
:class:`~tradeexecutor.errors.ConfigError` (exit 2) naming the file, the key path and what is
allowed; strategy parameters are checked by loading the strategy.

Example::

    spec = load_spec("strategies/specs/sma_crossover_backtest.yaml")
    config = spec.daemon_config(Path("state/sma"))   # what `tradeexecutor start --spec` runs
    spec.config_fingerprint()                          # sha256 of the canonical config JSON
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tradeexecutor.config import ENV_PREFIX, EngineConfig, SettingPath, build_config, finite_number, walk_settings
from tradeexecutor.data.bundled import BUNDLED_DATASETS
from tradeexecutor.errors import ConfigError, UserInputError
from tradeexecutor.strategy.loader import LoadedStrategy, load_strategy
from tradeexecutor.strategy.parameters import parse_override
from tradeexecutor.timeframe import utc_timestamp

if TYPE_CHECKING:  # the configuration tree imports every component's config; commands that only list runs skip it
    from tradeexecutor.settings import DaemonConfig

__all__ = [
    "ENV_PREFIX",
    "SPEC_MODES",
    "CoreSection",
    "EnvironmentSection",
    "RunSpec",
    "dump_spec",
    "env_overrides",
    "load_spec",
    "spec_from_dict",
]

#: Modes a spec may name. A ``live`` spec names its exchange and the variables holding its credentials, never their
#: values: whether they are set is checked when the run starts (and by ``tradeexecutor check``), not when it loads.
SPEC_MODES = ("replay", "paper", "backtest", "live")
#: The YAML loader for specs: safe, and libyaml's (several times faster) when PyYAML was built with it.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: The YAML dumper for specs written out (a run's pinned spec, a sweep's point specs): libyaml's when PyYAML has it
#: (a fifth of the pure-Python emitter's time; the same text, ``test_specs_are_dumped_as_the_python_emitter_would``).
SAFE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
#: The one line for a live spec without an exchange.
LIVE_SPEC_NEEDS_EXCHANGE = ("missing: mode live sends real orders to an exchange; name it (a ccxt id such as binance; "
                            "exchange_url for a simulator or testnet) and the variables holding its API key and secret "
                            "in core.exchange_key_variable and core.exchange_secret_variable")
#: Top-level keys of a spec.
TOP_KEYS = ("strategy_file", "mode", "name", "environment", "strategy", "core", "optimize")
#: Keys of the optional ``optimize`` section.
OPTIMIZE_KEYS = ("constraints",)
#: Environment variable (without the prefix) that overrides the strategy parameters.
PARAMS_ENV = "PARAMS"


class _Section:
    """The values of one spec section (``environment`` or ``core``), with every key's default.

    Its keys are the settings of the executor's config tree whose ``spec`` path names this
    section (``settings.DaemonConfig``), so a setting declared there is a spec key too.
    Values are read as attributes (``spec.core.fee``).
    """

    #: The section's name in a spec.
    name = ""

    def __init__(self, **values: Any) -> None:
        defaults = {key: item.default for key, item in _settings(self.name).items()}
        unknown = set(values) - set(defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no key {', '.join(sorted(unknown))}")
        object.__setattr__(self, "_values", {**defaults, **values})

    def __getattr__(self, key: str) -> Any:
        try:
            return self.__dict__["_values"][key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple(sorted((key, repr(value)) for key, value in self.to_dict().items())))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items())})"

    def to_dict(self) -> dict[str, Any]:
        """Every key and its value, in the tree's order."""
        return dict(self.__dict__["_values"])

    def replace(self, **values: Any) -> Any:
        """A copy with some values replaced."""
        return type(self)(**{**self.to_dict(), **values})


class EnvironmentSection(_Section):
    """Where the candles come from: data and how a replay plays it, or the exchange of a paper run."""

    name = "environment"


class CoreSection(_Section):
    """The executor's settings: money and fills, schedule, webhook and crash handling."""

    name = "core"


@dataclass(frozen=True)
class RunSpec:
    """A validated run spec: the strategy file, the mode and the three config sections."""

    #: The strategy module, absolute.
    strategy_file: Path
    #: replay, paper, backtest or live.
    mode: str
    environment: EnvironmentSection
    #: Strategy parameter values set by the spec (or TRADEEXECUTOR_PARAMS), in canonical typed form.
    strategy: dict[str, Any]
    core: CoreSection
    #: The spec file it was read from, None when built from a dict.
    source: Path | None
    #: Optional label; listings fall back to the strategy's name.
    name: str | None = None
    #: ``optimize.constraints``: conditions between parameters every sweep of this spec honours (runs.constraints).
    constraints: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (every key, defaults included); ``spec_from_dict`` reads it back."""
        result: dict[str, Any] = {"strategy_file": str(self.strategy_file), "mode": self.mode}
        if self.name is not None:
            result["name"] = self.name
        environment = self.environment.to_dict()
        environment["data"] = list(self.environment.data)
        result["environment"] = environment
        result["strategy"] = dict(self.strategy)
        result["core"] = self.core.to_dict()
        if self.constraints:
            result["optimize"] = {"constraints": list(self.constraints)}
        return result

    def canonical_json(self) -> bytes:
        """The config as canonical JSON: mode and the three sections, sorted keys, no whitespace.

        The strategy file's path and the name are left out: the code has its own fingerprint,
        and the same config run from another folder or under another label is the same config.
        So are sweep constraints: they choose which runs a sweep makes, not what a run does.
        """
        data = self.to_dict()
        data.pop("strategy_file")
        data.pop("name", None)
        data.pop("optimize", None)
        for section in ("environment", "core"):
            for key, item in _settings(section).items():
                if item.about.fingerprint_when_set and data[section].get(key) == item.default:
                    del data[section][key]  # unused: the fingerprints of runs made before it existed stay as they were
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def config_fingerprint(self) -> str:
        """sha256 of :meth:`canonical_json`."""
        return hashlib.sha256(self.canonical_json()).hexdigest()

    def parameter_overrides(self) -> dict[str, str]:
        """The strategy values as override text (name → text), as ``-p name=value`` would give them."""
        return {key: _override_text(value) for key, value in self.strategy.items()}

    def load_strategy(self) -> LoadedStrategy:
        """Load the strategy with the spec's parameter values."""
        return load_strategy(self.strategy_file, self.strategy)

    def config_values(self) -> dict[tuple[str, ...], Any]:
        """The ``environment`` and ``core`` values keyed by their place in the executor's config tree."""
        values: dict[tuple[str, ...], Any] = {}
        for section in (self.environment, self.core):
            for key, item in _settings(section.name).items():
                values[item.path] = getattr(section, key)
        return values

    def engine_config(self) -> EngineConfig:
        """Cash, fees, fills and the cycle offset as the engine's frozen config."""
        return build_config(EngineConfig, {path[1:]: value for path, value in self.config_values().items()
                                           if path[0] == "engine"})

    def daemon_config(self, state_dir: Path, **extra: Any) -> DaemonConfig:
        """The settings of ``tradeexecutor start`` for this spec; ``extra`` sets DaemonConfig fields the spec has not
        (``max_cycles``, ``chart_seconds``, ...) or overrides ``port``. Mode live reads its credential variables
        from the environment: one that is not set raises ConfigError naming it."""
        from tradeexecutor.settings import DaemonConfig

        values = {**self.config_values(), ("mode",): self.mode, ("params",): self.parameter_overrides(),
                  ("state_dir",): Path(state_dir)}
        given = {name: value for name, value in extra.items() if (name,) not in values and not _is_setting(name)}
        values.update({(name,): value for name, value in extra.items() if name not in given})
        return build_config(DaemonConfig, values, strategy_file=self.strategy_file, **given)  # type: ignore[no-any-return]

    def with_parameters(self, values: Mapping[str, Any]) -> RunSpec:
        """The same spec with some strategy values replaced (already typed, as a sweep's grid holds them)."""
        return replace(self, strategy={**self.strategy, **values})


# ---------------------------------------------------------------------------------------------
# Loading


def load_spec(path: str | os.PathLike[str], env: Mapping[str, str] = os.environ) -> RunSpec:
    """Read and validate the YAML run spec at ``path``; environment variables in ``env`` override it."""
    spec_path = Path(path)
    try:
        found, is_file = spec_path.exists(), spec_path.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise ConfigError(f"{str(spec_path)[:200]}: not a usable path for a run spec: {getattr(exc, 'strerror', None) or exc}") from None
    if not found:
        raise ConfigError(f"{spec_path}: run spec not found")
    if not is_file:
        raise ConfigError(f"{spec_path}: not a file; give the path of a run spec (.yaml)")
    try:
        text = spec_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{spec_path}: cannot read the run spec: {exc}") from None
    try:
        data = yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader, libyaml's when built with it
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{spec_path}:{mark.line + 1}" if mark is not None else str(spec_path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(problem).split())}") from None
    if data is None:
        raise ConfigError(f"{spec_path}: the run spec is empty; it needs at least strategy_file and mode")
    return spec_from_dict(data, base_dir=spec_path.resolve().parent, env=env, source=spec_path)


def spec_from_dict(d: Any, *, base_dir: str | os.PathLike[str], env: Mapping[str, str] = os.environ,
                   source: Path | None = None) -> RunSpec:
    """Validate a spec given as data; relative paths are taken from ``base_dir`` (the spec's folder)."""
    v = _Validator(str(source) if source is not None else "run spec", Path(base_dir))
    if not isinstance(d, Mapping):
        raise v.error("", f"a run spec is a mapping of {', '.join(TOP_KEYS)}; got {_type_name(d)}")
    v.check_keys(d, "", TOP_KEYS)

    if "strategy_file" not in d or d["strategy_file"] in (None, ""):
        raise v.error("strategy_file", "missing: give the strategy .py file (relative to the spec file)")
    raw_file = d["strategy_file"]
    if not isinstance(raw_file, (str, os.PathLike)):
        raise v.error("strategy_file", f"expected a file path, got {_type_name(raw_file)} {raw_file!r}")
    strategy_file = (v.base_dir / Path(raw_file)).resolve()
    if not strategy_file.is_file():
        raise v.error("strategy_file", f"{strategy_file} not found (paths are relative to the spec file)")

    mode = d.get("mode")
    if mode is None:
        raise v.error("mode", f"missing: one of {', '.join(SPEC_MODES)}")
    if mode not in SPEC_MODES:
        raise v.error("mode", f"{mode!r} is not a mode; use one of {', '.join(SPEC_MODES)}")

    name = d.get("name")
    if name is not None and not isinstance(name, str):
        raise v.error("name", f"expected a string, got {_type_name(name)} {name!r}")

    environment = EnvironmentSection(**v.section(d, "environment", _fields("environment"), env))
    core = CoreSection(**v.section(d, "core", _fields("core"), env))
    strategy = v.strategy(d, strategy_file, env)
    constraints = v.constraints(d, strategy_file)

    spec = RunSpec(strategy_file=strategy_file, mode=str(mode), environment=environment, strategy=strategy,
                   core=core, source=source, name=name.strip() if isinstance(name, str) and name.strip() else None,
                   constraints=constraints)
    _check_values(spec, v)
    return spec


def _check_values(spec: RunSpec, v: _Validator) -> None:
    """The range checks of the executor's own config objects, reported against the key that fails them.

    A live spec is checked as a paper one (the same exchange rules) without reading its credentials: the spec
    names the variables, and whether they are set is a question for the machine that starts the run.
    """
    mode = spec.mode
    if mode == "live":
        if spec.environment.exchange is None:
            raise v.error(v.label("environment.exchange"), LIVE_SPEC_NEEDS_EXCHANGE)
        mode = "paper"
    try:
        spec.daemon_config(Path("state"), mode=mode)
        return
    except ConfigError as exc:  # a live spec was checked as paper: its lines name the mode it has
        whole = str(exc).replace("--mode paper", "--mode live") if spec.mode == "live" else str(exc)
    # One key at a time, on a replay (paper's own rule, an exchange, is a whole-spec line: PAPER_NEEDS_EXCHANGE).
    plain = RunSpec(strategy_file=spec.strategy_file, mode="replay" if mode == "paper" else mode,
                    environment=EnvironmentSection(), strategy={}, core=CoreSection(), source=None)
    for section in ("environment", "core"):
        for key, item in _settings(section).items():
            value = getattr(getattr(spec, section), key)
            one = replace(plain, **{section: getattr(plain, section).replace(**{key: value})})
            try:
                one.daemon_config(Path("state"))
            except ConfigError as exc:
                message = str(exc).removeprefix(item.option + " ")
                raise v.error(v.label(f"{section}.{key}"), message) from None
    raise v.error("", whole)


def env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    """The environment variables in ``env`` that override spec values: name → spec key path."""
    names = {f"{ENV_PREFIX}{f.env}": f"{section}.{f.key}" for section in ("environment", "core")
             for f in _fields(section)}
    names[ENV_PREFIX + PARAMS_ENV] = "strategy"
    return {name: path for name, path in names.items() if env.get(name)}


# ---------------------------------------------------------------------------------------------
# Field table


@dataclass(frozen=True)
class _Field:
    """One key of a section: its type check for spec values and its parser for environment text."""

    key: str
    #: The environment variable without the prefix.
    env: str
    #: Spec value → canonical value; raises ValueError saying what was expected.
    check: Callable[[Any, _Validator], Any]
    #: Environment text → canonical value; raises ValueError.
    parse: Callable[[str, _Validator], Any]


def _number(value: Any, _: _Validator) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {_type_name(value)} {value!r}")
    return finite_number(value)


def _parse_number(text: str, v: _Validator) -> float:
    try:
        number = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    return _number(number, v)


def _integer(value: Any, _: _Validator) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {_type_name(value)} {value!r}")
    return value


def _parse_integer(text: str, v: _Validator) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def _boolean(value: Any, _: _Validator) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_type_name(value)} {value!r}")
    return value


def _parse_boolean(text: str, _: _Validator) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _string(value: Any, _: _Validator) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {_type_name(value)} {value!r}")
    return value.strip()


def _choice(choices: tuple[str, ...] | Callable[[], tuple[str, ...]]) -> Callable[[Any, _Validator], str]:
    def check(value: Any, v: _Validator) -> str:
        text = _string(value, v)
        allowed = choices() if callable(choices) else choices
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    return check


def _time(value: Any, _: _Validator) -> str | None:
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an ISO date or time, got {_type_name(value)} {value!r}")
    text = value.strip()
    try:
        utc_timestamp(text)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not an ISO date or time (such as 2012-01-31 or 2012-01-31T12:00)") from None
    return text


def _replay_start(value: Any, v: _Validator) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    text = _string(value, v)
    from tradeexecutor.settings import REPLAY_STARTS

    if text in REPLAY_STARTS:
        return text
    try:
        utc_timestamp(text)
    except (ValueError, TypeError):
        raise ValueError(f"{text!r} is not {', '.join(REPLAY_STARTS)} or an ISO date or time") from None
    return text


def _text_setting(item: SettingPath, typed: Callable[[Any, _Validator], Any]
                  ) -> tuple[Callable[[Any, _Validator], Any], Callable[[str, _Validator], Any]]:
    """Check and parse for a setting that also takes text (``cycle_offset_seconds: 8m``): its own parser reads text."""

    def parse(text: str, _: _Validator) -> Any:
        assert item.about.parse is not None
        try:
            return item.about.parse(text)
        except UserInputError as exc:
            raise ValueError(str(exc).removeprefix(item.option + " ")) from None

    def check(value: Any, v: _Validator) -> Any:
        return parse(value, v) if isinstance(value, str) else typed(value, v)

    return check, parse


def _sources(value: Any, v: _Validator) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) and item.strip() for item in items):
        raise ValueError(f"expected a list of bundled dataset names or candle files, got {_type_name(value)} "
                         f"{value!r}")
    return tuple(v.data_source(part.strip(), v.base_dir) for item in items for part in item.split(",")
                 if part.strip())


def _parse_sources(text: str, v: _Validator) -> tuple[str, ...]:
    """Comma- or space-separated, relative to the working directory like the ``--data`` option."""
    return tuple(v.data_source(part, Path.cwd()) for part in text.replace(",", " ").split())


def _optional_string(value: Any, v: _Validator) -> str | None:
    """A string, or nothing (null: the setting is unused, as ``exchange`` outside paper and live)."""
    return None if value is None else _string(value, v)


def _via_check(check: Callable[[Any, _Validator], Any]) -> Callable[[str, _Validator], Any]:
    return check


#: Keys whose values need more than their type's check: files relative to the spec, times.
_SPECIAL: dict[str, tuple[Callable[[Any, _Validator], Any], Callable[[str, _Validator], Any]]] = {
    "environment.data": (_sources, _parse_sources),
    "environment.start": (_time, _via_check(_time)),
    "environment.end": (_time, _via_check(_time)),
    "environment.replay_start": (_replay_start, _via_check(_replay_start)),
    "environment.exchange": (_optional_string, _via_check(_optional_string)),
    "environment.exchange_url": (_optional_string, _via_check(_optional_string)),
    "core.cycle_duration": (_optional_string, _via_check(_optional_string)),
}


def _settings(section: str) -> dict[str, SettingPath]:
    """The settings of the executor's config tree that are keys of ``section``, key → setting, in tree order."""
    from tradeexecutor.settings import DaemonConfig

    return dict(_section_settings(section, DaemonConfig))


@functools.cache
def _section_settings(section: str, tree: type) -> tuple[tuple[str, SettingPath], ...]:
    """:func:`_settings`, walked once per process and tree: the tree is declared in code and does not change while
    it runs, and a sweep fingerprints every point's config (walking it each time was a tenth of a point's cost)."""
    return tuple((item.about.spec.split(".", 1)[1], item) for item in walk_settings(tree)
                 if item.about.spec.startswith(section + "."))


def _is_setting(name: str) -> bool:
    from tradeexecutor.settings import DaemonConfig

    return (name,) in _setting_paths(DaemonConfig)


@functools.cache
def _setting_paths(tree: type) -> frozenset[tuple[str, ...]]:
    """Every setting's path in ``tree``, walked once per process and tree (each spec read asks of ``mode``)."""
    return frozenset(item.path for item in walk_settings(tree))


def _fields(section: str) -> tuple[_Field, ...]:
    """How each key of ``section`` is checked in a spec and parsed from its variable, from the setting's type."""
    from tradeexecutor.settings import DaemonConfig

    return _section_fields(section, DaemonConfig)


@functools.cache
def _section_fields(section: str, tree: type) -> tuple[_Field, ...]:
    """:func:`_fields`, once per process and tree, as :func:`_section_settings` (a sweep reads a spec per full run)."""
    table = []
    for key, item in _section_settings(section, tree):
        special = _SPECIAL.get(f"{section}.{key}")
        if special is not None:
            check, parse = special
        elif item.about.choices:
            check = parse = _choice(item.about.choices)
        elif isinstance(item.default, bool):
            check, parse = _boolean, _parse_boolean
        elif isinstance(item.default, int):
            check, parse = _integer, _parse_integer
        elif isinstance(item.default, float):
            check, parse = _text_setting(item, _number) if item.about.parse else (_number, _parse_number)
        else:
            check = parse = _string
        table.append(_Field(key, item.variable, check, parse))
    return tuple(table)


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass
class _Validator:
    """Builds one-line errors that name the spec, the key path and what is allowed."""

    where: str
    base_dir: Path
    #: Key paths whose value came from an environment variable → that variable.
    from_env: dict[str, str] = field(default_factory=dict)

    def label(self, path: str) -> str:
        """How to name a key in an error: the variable that set it, or its path."""
        variable = self.from_env.get(path)
        return f"{variable} (overrides {path})" if variable else path

    def error(self, path: str, message: str) -> ConfigError:
        if path.startswith(ENV_PREFIX):
            return ConfigError(f"{path}: {message}")
        return ConfigError(f"{self.where}: {path}: {message}" if path else f"{self.where}: {message}")

    def check_keys(self, mapping: Mapping[Any, Any], prefix: str, known: tuple[str, ...] | list[str],
                   what: str = "key") -> None:
        for key in mapping:
            if key in known:
                continue
            path = f"{prefix}.{key}" if prefix else str(key)
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise self.error(path, f"unknown {what}{hint} (known: {', '.join(known) or 'none'})")

    def section(self, d: Mapping[str, Any], name: str, table: tuple[_Field, ...],
                env: Mapping[str, str]) -> dict[str, Any]:
        raw = d.get(name)
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise self.error(name, f"expected a mapping of {', '.join(f.key for f in table)}; got {_type_name(raw)}")
        self.check_keys(raw, name, [f.key for f in table])
        values: dict[str, Any] = {}
        for item in table:
            path = f"{name}.{item.key}"
            if item.key in raw:
                try:
                    values[item.key] = item.check(raw[item.key], self)
                except ValueError as exc:
                    raise self.error(path, str(exc)) from None
            text = env.get(ENV_PREFIX + item.env)
            if text:
                self.from_env[path] = ENV_PREFIX + item.env
                try:
                    values[item.key] = item.parse(text, self)
                except ValueError as exc:
                    raise ConfigError(f"{self.label(path)}: {exc}") from None
        return values

    def data_source(self, source: str, base: Path) -> str:
        """A bundled dataset name as it is; a file made absolute and checked to exist."""
        if source in BUNDLED_DATASETS:
            return source
        path = (base / source).resolve()
        if not path.is_file():
            raise ValueError(f"{source!r} is neither a bundled dataset ({', '.join(BUNDLED_DATASETS)}) "
                             f"nor an existing file ({path})")
        return str(path)

    def strategy(self, d: Mapping[str, Any], strategy_file: Path, env: Mapping[str, str]) -> dict[str, Any]:
        raw = d.get("strategy")
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            hint = " (the strategy module goes in strategy_file)" if isinstance(raw, str) else ""
            raise self.error("strategy", f"expected a mapping of parameter values, got {_type_name(raw)}{hint}")
        loaded = load_strategy(strategy_file)  # a broken module is its own one-line error
        specs = loaded.parameter_specs
        label = f"parameter of {loaded.name}"
        values: dict[str, Any] = {}
        self.check_keys(raw, "strategy", sorted(specs), what=label)
        for key, value in raw.items():
            spec = specs[key]
            if isinstance(value, (date, datetime)):
                value = value.isoformat()
            if isinstance(value, (list, dict)) or value is None:
                raise self.error(f"strategy.{key}", f"expected {spec.kind}, got {_type_name(value)} {value!r}")
            try:
                values[key] = spec.parse(value)
            except ValueError as exc:
                raise self.error(f"strategy.{key}", f"{exc} (expected {spec.kind})") from None
        text = env.get(ENV_PREFIX + PARAMS_ENV)
        if text:
            variable = ENV_PREFIX + PARAMS_ENV
            for part in text.replace(",", " ").split():
                try:
                    key, value_text = parse_override(part)
                except UserInputError as exc:
                    raise ConfigError(f"{variable}: {exc}") from None
                if key not in specs:
                    close = difflib.get_close_matches(key, list(specs), n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]}?" if close else ""
                    raise ConfigError(f"{variable} (overrides strategy.{key}): unknown {label}{hint} "
                                      f"(known: {', '.join(sorted(specs)) or 'none'})")
                try:
                    values[key] = specs[key].parse(value_text)
                except ValueError as exc:
                    raise ConfigError(f"{variable} (overrides strategy.{key}): {exc} "
                                      f"(expected {specs[key].kind})") from None
        if values:
            load_strategy(strategy_file, values)  # instruments(parameters) and the like see the values
        return values


    def constraints(self, d: Mapping[str, Any], strategy_file: Path) -> tuple[str, ...]:
        """``optimize.constraints``: a list of conditions over the strategy's parameters, each checked here."""
        raw = d.get("optimize")
        if raw is None:
            return ()
        if not isinstance(raw, Mapping):
            raise self.error("optimize", f"expected a mapping with constraints; got {_type_name(raw)}")
        self.check_keys(raw, "optimize", OPTIMIZE_KEYS)
        items = raw.get("constraints")
        if items is None:
            return ()
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise self.error("optimize.constraints", "expected a list of conditions such as [\"fast < slow\"]")
        from tradeexecutor.runs.constraints import parse_constraint

        names = list(load_strategy(strategy_file).parameter_specs)
        return tuple(parse_constraint(item, names, f"{self.where}: optimize.constraints[{index}]").text
                     for index, item in enumerate(items))


def _type_name(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "mapping",
             type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _override_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def dump_spec(data: Mapping[str, Any]) -> str:
    """A spec's plain data (:meth:`RunSpec.to_dict`) as YAML text, keys in their order, unicode kept."""
    return yaml.dump(dict(data), Dumper=SAFE_DUMPER, sort_keys=False, allow_unicode=True, default_flow_style=False)

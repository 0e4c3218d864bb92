"""Tests for tradeexecutor.strategy.loader: every way a strategy file can be wrong is a one-line
StrategyLoadError or ParameterError (exit code 2) naming the file; the happy path resolves
parameters, version, instruments and bar frequency."""

from __future__ import annotations

import hashlib
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from tradeexecutor.errors import ParameterError, StrategyLoadError, UserInputError
from tradeexecutor.strategy.loader import check_universe, load_strategy
from tradeexecutor.strategy.parameters import parse_override

HEADER = '''\
from tradeexecutor.strategy.api import (
    BarFrequency, Boolean, Choice, Decimal, Integer, Symbol, Text, close, open_long,
)
'''

GOOD = HEADER + '''\
name = "Good"
description = "A valid strategy."
cycle_duration = "1d"
parameters = {
    "symbol": Symbol("GOOG", asset_type="equity"),
    "fast": Integer(10, min=2, max=500),
    "allocation": Decimal(1.0, min=0.01, max=1.0),
    "verbose": Boolean(False),
    "mode": Choice("fast", choices=("fast", "slow")),
    "label": Text("hello"),
    "bar": BarFrequency("1h", choices=("1h", "4h")),
}


def indicators(candles, parameters):
    return {"c": candles["close"]}


def decide(ctx):
    return []
'''


def write(tmp_path: Path, source: str, name: str = "strategy.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def body(decls: str = "", *, name: str | None = '"S"', cycle: str | None = '"1d"',
         decide: str | None = "def decide(ctx):\n    return []\n", instruments: str | None = '["GOOG"]') -> str:
    """A strategy source built from parts; None leaves that part out."""
    lines = [HEADER]
    if name is not None:
        lines.append(f"name = {name}")
    lines.append('description = "d"')
    if cycle is not None:
        lines.append(f"cycle_duration = {cycle}")
    if instruments is not None:
        lines.append(f"instruments = {instruments}")
    lines.append(decls)
    if decide is not None:
        lines.append(decide)
    return "\n".join(lines) + "\n"


def load_error(path: Path, overrides: dict | None = None, kind: type[UserInputError] = StrategyLoadError) -> str:
    """The one-line message of the load error; checks type, exit code and that it names the file."""
    with pytest.raises(UserInputError) as info:
        load_strategy(path, overrides)
    error = info.value
    assert type(error) is kind, f"{type(error).__name__}: {error}"
    assert error.exit_code == 2
    message = str(error)
    assert "\n" not in message, message
    assert str(path) in message, message
    return message


# ---------------------------------------------------------------------------------------------
# Files that cannot be loaded at all


def test_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path / "nope.py")
    assert "not found" in message


def test_directory_is_not_a_strategy(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    message = load_error(folder)
    assert "not a file" in message


def test_syntax_error_reports_line(tmp_path: Path) -> None:
    source = body() + "\n\ndef broken(:\n    pass\n"
    line = source.splitlines().index("def broken(:") + 1
    path = write(tmp_path, source)
    message = load_error(path)
    assert "syntax error" in message
    assert f"{path}:{line}:" in message


def test_exception_at_import_reports_line(tmp_path: Path) -> None:
    source = body() + "\nx = 1\ny = {}['missing']\n"
    line = source.splitlines().index("y = {}['missing']") + 1
    path = write(tmp_path, source)
    message = load_error(path)
    assert f"{path}:{line}:" in message
    assert "KeyError" in message
    assert "failed to import" in message


def test_exception_in_helper_reports_the_strategy_line(tmp_path: Path) -> None:
    # The failing line is inside a function of the strategy, called at import time.
    source = body() + "\ndef helper():\n    return 1 / 0\n\nVALUE = helper()\n"
    line = source.splitlines().index("    return 1 / 0") + 1
    path = write(tmp_path, source)
    message = load_error(path)
    assert f"{path}:{line}:" in message
    assert "ZeroDivisionError" in message


def test_exception_with_multiline_message_is_still_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, body() + '\nraise RuntimeError("first\\nsecond")\n')
    message = load_error(path)
    assert "RuntimeError" in message


def test_bad_symbol_asset_type_fails_at_import(tmp_path: Path) -> None:
    path = write(tmp_path, body('parameters = {"s": Symbol("X", asset_type="bond")}'))
    message = load_error(path)
    assert "bond" in message


# ---------------------------------------------------------------------------------------------
# Declarations


def test_missing_decide(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body(decide=None)))
    assert "decide" in message


def test_decide_not_callable(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body(decide="decide = 5")))
    assert "decide" in message


@pytest.mark.parametrize("signature", ["def decide():", "def decide(ctx, other):", "def decide(*, ctx):",
                                       "def decide(ctx, *, extra):"])
def test_decide_wrong_signature(tmp_path: Path, signature: str) -> None:
    path = write(tmp_path, body(decide=f"{signature}\n    return []\n"))
    message = load_error(path)
    assert "wrong signature" in message
    assert "def decide(ctx):" in message


@pytest.mark.parametrize("signature", ["def decide(ctx, other=1):", "def decide(*args):", "def decide(ctx, **kw):"])
def test_decide_acceptable_signatures(tmp_path: Path, signature: str) -> None:
    loaded = load_strategy(write(tmp_path, body(decide=f"{signature}\n    return []\n")))
    assert loaded.decide(None) == []


@pytest.mark.parametrize("signature", ["def indicators(candles):", "def indicators():",
                                       "def indicators(candles, parameters, extra):"])
def test_indicators_wrong_signature(tmp_path: Path, signature: str) -> None:
    path = write(tmp_path, body(f"{signature}\n    return {{}}\n"))
    message = load_error(path)
    assert "indicators" in message
    assert "wrong signature" in message


def test_indicators_not_callable(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body("indicators = {'a': 1}")))
    assert "indicators" in message


def test_missing_name(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body(name=None)))
    assert "name" in message


def test_blank_name(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body(name='"   "')))
    assert "name" in message


def test_missing_description_without_docstring(tmp_path: Path) -> None:
    source = body().replace('description = "d"\n', "")
    message = load_error(write(tmp_path, source))
    assert "description" in message


def test_docstring_serves_as_description(tmp_path: Path) -> None:
    source = '"""Docstring description."""\n' + body().replace('description = "d"\n', "")
    assert load_strategy(write(tmp_path, source)).description == "Docstring description."


def test_missing_cycle_duration(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body(cycle=None)))
    assert "cycle_duration" in message


@pytest.mark.parametrize("cycle", ['"1x"', '"hourly"', '"0h"', '"-1h"', "5", '""'])
def test_bad_cycle_duration(tmp_path: Path, cycle: str) -> None:
    message = load_error(write(tmp_path, body(cycle=cycle)))
    assert "cycle_duration" in message


def test_no_instruments(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body(instruments=None)))
    assert "no instruments" in message


def test_instruments_as_a_string(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body(instruments='"GOOG"')))
    assert "instruments" in message


def test_bad_declared_asset_type(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body('asset_types = {"GOOG": "stonks"}')))
    assert "stonks" in message


# ---------------------------------------------------------------------------------------------
# Parameters


def test_parameters_not_a_dict(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body("parameters = [1, 2]")))
    assert "parameters must be a dict" in message


def test_unknown_parameter_type(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body('parameters = {"fast": 10}')))
    assert "'fast'" in message
    assert "unknown type int" in message


def test_parameter_name_not_identifier(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body('parameters = {"not valid": Integer(1)}')))
    assert "identifier" in message


@pytest.mark.parametrize(
    "spec, kind",
    [
        ('Integer("10")', "integer"),
        ("Integer(1.5)", "integer"),
        ("Integer(True)", "integer"),
        ("Integer(1, min=2)", "integer"),
        ("Integer(9, max=5)", "integer"),
        ('Decimal("0.5")', "decimal"),
        ("Decimal(True)", "decimal"),
        ('Decimal(float("nan"))', "decimal"),
        ("Decimal(2.0, max=1.0)", "decimal"),
        ("Boolean(1)", "boolean"),
        ('Boolean("true")', "boolean"),
        ('Choice("medium", choices=("fast", "slow"))', "choice"),
        ("Text(5)", "text"),
        ("Symbol(5)", "symbol"),
        ("BarFrequency(60)", "bar_frequency"),
        ('BarFrequency("1h", choices=("4h", "1d"))', "bar_frequency"),
    ],
)
def test_default_of_wrong_type(tmp_path: Path, spec: str, kind: str) -> None:
    message = load_error(write(tmp_path, body(f'parameters = {{"p": {spec}}}')))
    assert "'p'" in message
    assert f"invalid for {kind}" in message


def test_bar_frequency_default_not_a_duration(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body('parameters = {"bar": BarFrequency("hourly")}')))
    assert "'bar'" in message


def test_module_bar_frequency_not_a_duration(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, body('bar_frequency = "hourly"')))
    assert "bar_frequency" in message


def test_override_not_declared(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    message = load_error(path, {"fastest": "3"}, kind=ParameterError)
    assert "'fastest'" in message
    assert "is not a parameter" in message
    assert "fast" in message  # lists the declared ones


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("fast=abc", "not an integer"),
        ("fast=1.5", "not an integer"),
        ("fast=1", "below the minimum"),
        ("fast=501", "above the maximum"),
        ("allocation=lots", "not a number"),
        ("allocation=1.5", "above the maximum"),
        ("allocation=nan", "not a finite number"),
        ("verbose=maybe", "not a boolean"),
        ("mode=medium", "not one of"),
        ("bar=1d", "not one of"),
        ("symbol=", "not a symbol"),
    ],
)
def test_override_of_wrong_type(tmp_path: Path, override: str, fragment: str) -> None:
    path = write(tmp_path, GOOD)
    name, value = parse_override(override)
    message = load_error(path, {name: value}, kind=ParameterError)
    assert f"'{name}'" in message
    assert fragment in message


def test_override_bar_frequency_not_a_duration(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    message = load_error(path, {"bar": "xyz"}, kind=ParameterError)
    assert "'bar'" in message


def test_fixed_bar_frequency_cannot_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, body('parameters = {"bar": BarFrequency("1h")}'))
    message = load_error(path, {"bar": "4h"}, kind=ParameterError)
    assert "fixed at 1h" in message


@pytest.mark.parametrize("text", ["fast", "=3", ""])
def test_parse_override_needs_name_and_value(text: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_override(text)
    assert info.value.exit_code == 2
    assert "name=value" in str(info.value)


# ---------------------------------------------------------------------------------------------
# Universe


def test_symbol_not_in_data(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    loaded = load_strategy(path)
    with pytest.raises(StrategyLoadError) as info:
        check_universe(loaded, {"AAPL": "equity", "EURUSD": "fx"})
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in message
    assert str(path) in message
    assert "'GOOG'" in message and "AAPL, EURUSD" in message


def test_symbol_of_another_asset_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    loaded = load_strategy(path, {"symbol": "EURUSD"})
    with pytest.raises(StrategyLoadError) as info:
        check_universe(loaded, {"GOOG": "equity", "EURUSD": "fx"})
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert "fx" in message and "equity" in message


def test_check_universe_resolves_asset_types(tmp_path: Path) -> None:
    path = write(tmp_path, body('parameters = {"pair": Symbol("EURUSD", asset_type="fx")}', instruments='["GOOG"]'))
    loaded = load_strategy(path)
    assert loaded.instruments == ("GOOG", "EURUSD")
    # Unknown data types fall back to the strategy's expectation, then to equity.
    assert check_universe(loaded, {"GOOG": None, "EURUSD": None}) == {"GOOG": "equity", "EURUSD": "fx"}
    assert check_universe(loaded, {"GOOG": "equity", "EURUSD": "fx"}) == {"GOOG": "equity", "EURUSD": "fx"}


# ---------------------------------------------------------------------------------------------
# Happy path


def test_happy_path_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    loaded = load_strategy(path)
    source = path.read_text()
    assert loaded.version == hashlib.sha256(source.encode("utf-8")).hexdigest()
    assert loaded.source == source
    assert loaded.name == "Good"
    assert loaded.description == "A valid strategy."
    assert loaded.cycle_duration == timedelta(days=1)
    assert loaded.instruments == ("GOOG",)
    assert loaded.asset_types == {"GOOG": "equity"}
    assert loaded.bar_frequency == timedelta(hours=1)
    assert dict(loaded.parameters) == {
        "symbol": "GOOG", "fast": 10, "allocation": 1.0, "verbose": False, "mode": "fast",
        "label": "hello", "bar": "1h",
    }
    assert loaded.parameters.fast == 10
    assert loaded.indicators is not None
    assert loaded.describe()["version"] == loaded.version
    with pytest.raises(AttributeError):
        _ = loaded.parameters.nope


def test_version_changes_with_source(tmp_path: Path) -> None:
    first = load_strategy(write(tmp_path, GOOD, "a.py"))
    second = load_strategy(write(tmp_path, GOOD + "\n# comment\n", "b.py"))
    assert first.version != second.version


def test_overrides_parsed_for_every_type(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    overrides = dict(parse_override(text) for text in [
        "symbol=MSFT", "fast= 12", "allocation=0.5", "verbose=true", "mode=slow", "label=hi there", "bar=4h",
    ])
    loaded = load_strategy(path, overrides)
    values = dict(loaded.parameters)
    assert values == {
        "symbol": "MSFT", "fast": 12, "allocation": 0.5, "verbose": True, "mode": "slow",
        "label": "hi there", "bar": "4h",
    }
    assert type(values["fast"]) is int
    assert type(values["allocation"]) is float
    assert values["verbose"] is True
    assert loaded.bar_frequency == timedelta(hours=4)
    assert loaded.instruments == ("MSFT",)
    assert loaded.asset_types == {"MSFT": "equity"}


@pytest.mark.parametrize("text, expected", [("true", True), ("YES", True), ("1", True), ("on", True),
                                            ("false", False), ("no", False), ("0", False), ("Off", False)])
def test_boolean_override_spellings(tmp_path: Path, text: str, expected: bool) -> None:
    loaded = load_strategy(write(tmp_path, GOOD), {"verbose": text})
    assert loaded.parameters.verbose is expected


def test_typed_overrides_pass_through_check(tmp_path: Path) -> None:
    loaded = load_strategy(write(tmp_path, GOOD), {"fast": 20, "allocation": 1, "verbose": True})
    assert loaded.parameters.fast == 20
    assert loaded.parameters.allocation == 1.0 and type(loaded.parameters.allocation) is float
    with pytest.raises(ParameterError):
        load_strategy(write(tmp_path, GOOD, "b.py"), {"fast": 2.5})


def test_instruments_from_symbol_parameters_and_list(tmp_path: Path) -> None:
    decls = ('parameters = {"a": Symbol("AAA"), "b": Symbol("EURUSD", asset_type="fx"), '
             '"c": Symbol("AAA")}\nasset_types = {"ZZZ": "crypto"}')
    loaded = load_strategy(write(tmp_path, body(decls, instruments='["ZZZ", "AAA"]')))
    # Declared list first, then Symbol parameters in order, without duplicates.
    assert loaded.instruments == ("ZZZ", "AAA", "EURUSD")
    assert loaded.asset_types == {"ZZZ": "crypto", "AAA": "equity", "EURUSD": "fx"}


def test_instruments_callable_gets_parameters(tmp_path: Path) -> None:
    decls = ('parameters = {"count": Integer(2)}\n'
             'def instruments(p):\n    return ["S%d" % i for i in range(p.count)]')
    loaded = load_strategy(write(tmp_path, body(decls, instruments=None)), {"count": "3"})
    assert loaded.instruments == ("S0", "S1", "S2")


def test_module_bar_frequency(tmp_path: Path) -> None:
    loaded = load_strategy(write(tmp_path, body('bar_frequency = "15m"')))
    assert loaded.bar_frequency == timedelta(minutes=15)
    assert load_strategy(write(tmp_path, body(), "plain.py")).bar_frequency is None


def test_sma_crossover_example_loads() -> None:
    path = Path(__file__).resolve().parents[1] / "strategies" / "sma_crossover.py"
    loaded = load_strategy(path, {"fast": "5", "slow": "20"})
    assert loaded.instruments == ("GOOG",)
    assert (loaded.parameters.fast, loaded.parameters.slow) == (5, 20)


def test_instruments_callable_that_raises(tmp_path: Path) -> None:
    decls = "def instruments(p):\n    return p.missing_parameter"
    message = load_error(write(tmp_path, body(decls, instruments=None)))
    assert "instruments" in message


def test_parameters_behave_as_a_read_only_mapping() -> None:
    from tradeexecutor.strategy.parameters import Parameters

    parameters = Parameters({"fast": 10, "slow": 30})
    assert dict(parameters) == {"fast": 10, "slow": 30}
    assert list(parameters.values()) == [10, 30] and parameters.fast == 10 and parameters["slow"] == 30


def test_source_loads_like_the_file_and_every_load_is_a_fresh_module(tmp_path: Path) -> None:
    """A sweep worker loads the source it was sent; compiling is shared, module state never is."""
    from tradeexecutor.strategy.loader import load_strategy_source

    path = tmp_path / "counter.py"
    path.write_text(textwrap.dedent('''
        """Counts its own cycles in a module global."""
        from tradeexecutor.strategy.api import Integer, Symbol
        name = "counter"
        cycle_duration = "1d"
        parameters = {"symbol": Symbol("GOOG"), "n": Integer(1)}
        seen = []
        def decide(ctx):
            seen.append(1)
            return []
    '''))
    from_file = load_strategy(path, {"n": 3})
    from_source = load_strategy_source(path.read_text(), "/elsewhere/counter.py", {"n": 3})
    assert from_source.version == from_file.version and from_source.parameters == from_file.parameters
    assert str(from_source.path) == "/elsewhere/counter.py"
    from_file.decide(None)
    assert from_file.decide.__globals__["seen"] == [1]
    assert from_source.decide.__globals__["seen"] == []  # the second load did not inherit the first's list
    with pytest.raises(StrategyLoadError, match=r"/elsewhere/bad.py:1: syntax error"):
        load_strategy_source("def (:\n", "/elsewhere/bad.py")

"""No NaN or infinity gets in: every number a person gives — options, environment variables, run specs,
strategy parameters, optimize grids, config objects — passes one finiteness check, and a non-finite
one is one line on stderr, exit 2 and nothing written. Huge finite cash still runs to the end."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tradeexecutor.cli.main import cli
from tradeexecutor.config import EngineConfig, ExecutionConfig
from tradeexecutor.errors import ConfigError
from tradeexecutor.notify.config import NotifyConfig
from tradeexecutor.runs.optimize import build_grid
from tradeexecutor.runs.spec import load_spec, spec_from_dict
from tradeexecutor.settings import DaemonConfig, FeedConfig

ROOT = Path(__file__).resolve().parent.parent
SMA = ROOT / "strategies" / "sma_crossover.py"
SPEC = ROOT / "strategies" / "specs" / "sma_crossover_backtest.yaml"
NON_FINITE = ("inf", "nan", "-inf")


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=180, env={**os.environ, **(env or {})})


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "not a finite number" in lines[0]
    for text in expected:
        assert text in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------
# Every float option of every command


def float_options() -> list[tuple[tuple[str, ...], click.Option]]:
    """(command path, option) for every option of the CLI that takes a float."""
    found: list[tuple[tuple[str, ...], click.Option]] = []

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
            return
        for param in command.params:
            if isinstance(param, click.Option) and isinstance(param.type, click.types.FloatParamType):
                found.append((path, param))

    walk(cli, ())
    return found


FLOAT_OPTIONS = float_options()


def test_the_sweep_sees_the_float_options() -> None:
    names = {(" ".join(path), max(option.opts, key=len)) for path, option in FLOAT_OPTIONS}
    assert len(names) >= 24
    for expected in [("backtest", "--cash"), ("backtest", "--min-notional"), ("start", "--trigger-seconds"),
                     ("start", "--health-grace-seconds"), ("status", "--timeout"), ("logs", "--interval"),
                     ("runs stop", "--timeout"), ("runs logs", "--interval")]:
        assert expected in names


def _arguments(path: tuple[str, ...]) -> list[str]:
    """The command path plus a placeholder for each required argument (the check comes before they are used)."""
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    required = [p for p in command.params if isinstance(p, click.Argument) and p.required]
    return [*path, *(["placeholder"] * len(required))]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize(("path", "option"), FLOAT_OPTIONS,
                         ids=[f"{' '.join(p)} {max(o.opts, key=len)}" for p, o in FLOAT_OPTIONS])
def test_every_float_option_refuses_non_finite_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       path: tuple[str, ...], option: click.Option,
                                                       value: str) -> None:
    monkeypatch.chdir(tmp_path)
    name = max(option.opts, key=len)
    args = _arguments(path)
    result = CliRunner().invoke(cli, [*args, f"{name}={value}"] if name.startswith("--") else [*args, name, value])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {name} {value} is not a finite number: give an ordinary number such as 0.5 or 10000"]
    assert list(tmp_path.iterdir()) == [], "nothing may be written"


@pytest.mark.parametrize(("path", "option"), [(p, o) for p, o in FLOAT_OPTIONS if isinstance(o.envvar, str)],
                         ids=[o.envvar for p, o in FLOAT_OPTIONS if isinstance(o.envvar, str)])
def test_every_float_environment_variable_refuses_non_finite_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     path: tuple[str, ...],
                                                                     option: click.Option) -> None:
    monkeypatch.chdir(tmp_path)
    assert isinstance(option.envvar, str)
    result = CliRunner().invoke(cli, _arguments(path), env={option.envvar: "nan"})
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: {option.envvar}=nan is not a finite number: give an ordinary number such as 0.5 or 10000"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# The entry points as a user runs them


def test_backtest_cash_inf_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("backtest", str(SMA), "--cash", "inf", "--output", str(out), cwd=tmp_path)
    assert_one_line_exit_2(result, "--cash inf")
    assert not out.exists()


def test_backtest_min_notional_from_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("backtest", str(SMA), "--output", str(out), cwd=tmp_path, env={"TRADEEXECUTOR_MIN_NOTIONAL": "inf"})
    assert_one_line_exit_2(result, "TRADEEXECUTOR_MIN_NOTIONAL=inf")
    assert not out.exists()


@pytest.mark.parametrize("args", [["--trigger-seconds", "nan"], ["--cycle-offset", "inf"],
                                  ["--replay-seconds", "inf"]],
                         ids=["trigger-seconds", "cycle-offset", "replay-seconds"])
def test_start_refuses_before_making_the_state_directory(tmp_path: Path, args: list[str]) -> None:
    state = tmp_path / "state"
    result = run("start", str(SMA), *args, "--port", "0", "--state-dir", str(state), "--max-cycles", "1",
                 cwd=tmp_path)
    assert_one_line_exit_2(result, f"{args[0]} {args[1]} is not a finite number")
    assert not state.exists()


def test_start_refuses_a_non_finite_strategy_parameter(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = run("start", str(SMA), "-p", "allocation=inf", "--port", "0", "--state-dir", str(state),
                 "--max-cycles", "1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    # The strategy loads after logging starts (its start-up lines come first); the error is one line.
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [result.stderr.strip().splitlines()[-1]]
    assert "parameter 'allocation': inf is not a finite number" in errors[0]
    assert "Traceback" not in result.stderr
    assert not state.exists()


def test_backtest_parameter_of_decimal_type(tmp_path: Path) -> None:
    result = run("backtest", str(SMA), "-p", "allocation=nan", "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_exit_2(result, "parameter 'allocation'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("body", "where"), [
    ("core: {cash: .inf}", "core.cash"),
    ("core: {min_notional: .nan}", "core.min_notional"),
    ("core: {cycle_offset_seconds: 'inf'}", "core.cycle_offset_seconds"),
    ("core: {watchdog_seconds: -.inf}", "core.watchdog_seconds"),
    ("environment: {replay_seconds: .inf}", "environment.replay_seconds"),
    ("strategy: {allocation: .nan}", "strategy.allocation"),
])
def test_run_spec_fields(tmp_path: Path, body: str, where: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"strategy_file: {SMA}\nmode: backtest\n{body}\n")
    result = run("backtest", "--spec", str(spec), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_exit_2(result, f"{spec}: {where}: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("variable", "value", "where"), [
    ("TRADEEXECUTOR_CYCLE_OFFSET", "inf", "core.cycle_offset_seconds"),
    ("TRADEEXECUTOR_TRIGGER_SECONDS", "nan", "core.trigger_seconds"),
    ("TRADEEXECUTOR_PARAMS", "allocation=inf", "strategy.allocation"),
])
def test_run_spec_environment_overrides(tmp_path: Path, variable: str, value: str, where: str) -> None:
    with pytest.raises(ConfigError, match=f"{variable} \\(overrides {where}\\): .*not a finite number"):
        load_spec(SPEC, env={variable: value})


def test_runs_create_refuses_a_spec_with_infinite_cash(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"strategy_file: {SMA}\nmode: backtest\ncore: {{cash: .inf}}\n")
    result = run("runs", "--runs-dir", str(tmp_path / "runs"), "create", str(spec), cwd=tmp_path)
    assert_one_line_exit_2(result, "core.cash")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("sweep", ["allocation=0.1..inf:0.1", "allocation=0.1,nan", "allocation=0.1..1:1e999",
                                   "fast=5..1e999:5"])
def test_optimize_grids(sweep: str) -> None:
    spec = load_spec(SPEC, env={})
    with pytest.raises(ConfigError, match="not a finite number"):
        build_grid(spec, [sweep])


def test_optimize_refuses_before_running(tmp_path: Path) -> None:
    result = run("optimize", str(SPEC), "--param", "allocation=0.5,inf", "--runs-dir", str(tmp_path / "runs"),
                 "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_exit_2(result, "--param allocation")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The config objects refuse them too, whoever builds them


def _float_fields(kind: type) -> list[str]:
    example = kind(strategy_file=SMA) if kind is DaemonConfig else kind()
    return [f.name for f in dataclasses.fields(kind) if isinstance(getattr(example, f.name), float)]


@pytest.mark.parametrize(("kind", "name"), [(kind, name)
                                            for kind in (ExecutionConfig, EngineConfig, FeedConfig, DaemonConfig, NotifyConfig)
                                            for name in _float_fields(kind)])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), float("-inf")])
def test_config_objects_refuse_non_finite_fields(kind: type, name: str, value: float) -> None:
    extra = {"strategy_file": SMA} if kind is DaemonConfig else {}
    with pytest.raises(ConfigError, match="not a finite number"):
        kind(**extra, **{name: value})


def test_spec_dict_with_a_non_finite_number_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("core.crash_loop_minutes: inf is not a finite number")):
        spec_from_dict({"strategy_file": str(SMA), "mode": "replay", "core": {"crash_loop_minutes": float("inf")}},
                       base_dir=tmp_path, env={})


# ---------------------------------------------------------------------------------------------
# Huge but finite cash runs to the end (the buy used to loop forever)


def test_backtest_with_cash_1e300_finishes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("backtest", str(SMA), "--cash", "1e300", "--fee", "0.001", "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["initial_cash"] == 1e300
    assert summary["summary"]["trade_count"] > 10

"""Run specs: every kind of mistake is one line naming the key, env overrides apply, --spec on start and backtest."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tradeexecutor.cli.main import cli
from tradeexecutor.config import RiskConfig
from tradeexecutor.errors import ConfigError, StrategyLoadError, UserInputError
from tradeexecutor.runs.spec import CoreSection, EnvironmentSection, RunSpec, load_spec, spec_from_dict
from tradeexecutor.settings import DaemonConfig, FeedConfig

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ROOT / "strategies"
SPECS = STRATEGIES / "specs"
SMA = STRATEGIES / "sma_crossover.py"


def spec(env: dict[str, str] | None = None, **sections: Any) -> RunSpec:
    data: dict[str, Any] = {"strategy_file": str(SMA), "mode": "backtest", **sections}
    return spec_from_dict(data, base_dir=ROOT, env=env or {})


def error_of(env: dict[str, str] | None = None, **sections: Any) -> str:
    with pytest.raises(UserInputError) as caught:
        spec(env, **sections)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_specs_load_and_round_trip(path: Path) -> None:
    loaded = load_spec(path, env={})
    assert loaded.strategy_file.is_file() and loaded.source == path
    again = spec_from_dict(loaded.to_dict(), base_dir=Path("/"), env={})
    assert again.to_dict() == loaded.to_dict()
    assert again.config_fingerprint() == loaded.config_fingerprint()
    assert loaded.daemon_config(Path("state")).mode == loaded.mode


def test_specs_are_dumped_as_the_python_emitter_would() -> None:
    """dump_spec (libyaml's emitter when PyYAML has it) writes the text PyYAML's own safe_dump writes, for every example
    spec and for values that test quoting, unicode and long lines; and it reads back to the same spec."""
    import yaml

    from tradeexecutor.runs.spec import dump_spec

    examples = [load_spec(path, env={}).to_dict() for path in sorted(SPECS.glob("*.yaml"))]
    examples.append({**examples[0], "name": "Ünïcode: 'quoted' \"and\" # not a comment, " + "long " * 30,
                     "strategy": {"fast": 5, "ratio": 0.1, "flag": True, "empty": None, "text": "yes", "num": "010"}})
    for data in examples:
        text = dump_spec(data)
        assert text == yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
        assert yaml.safe_load(text) == data


def test_example_specs_cover_every_shipped_strategy() -> None:
    names = {p.name for p in SPECS.glob("*.yaml")}
    assert {"sma_crossover_backtest.yaml", "sma_crossover_replay.yaml", "eurusd_breakout_backtest.yaml",
            "momentum_rotation_backtest.yaml"} <= names


def test_defaults_are_the_start_command_defaults() -> None:
    loaded = spec()
    assert loaded.environment == EnvironmentSection() and loaded.core == CoreSection() and loaded.strategy == {}
    assert loaded.daemon_config(Path("s")) == DaemonConfig(strategy_file=SMA, mode="backtest", state_dir=Path("s"))


def test_values_reach_the_daemon_and_engine_config() -> None:
    loaded = spec(environment={"data": ["stocks-daily"], "start": "2010-01-01", "replay_seconds": 0.5},
                  strategy={"fast": 5, "allocation": 0.5},
                  core={"fee": 0.002, "cash": 5000, "cycle_offset_seconds": "8m", "port": 0, "crash_policy": "serve"})
    config = loaded.daemon_config(Path("state"), max_cycles=3)
    assert config.params == {"fast": "5", "allocation": "0.5"} and config.max_cycles == 3
    assert config.feed == FeedConfig(data=("stocks-daily",), start="2010-01-01", replay_seconds=0.5)
    assert config.engine.execution.fee == 0.002 and config.engine.initial_cash == 5000.0
    assert config.engine.cycle_offset_seconds == 480.0 and config.crash_policy == "serve" and config.port == 0
    assert loaded.engine_config() == config.engine
    assert loaded.load_strategy().parameters["fast"] == 5


def test_risk_limits_are_core_keys_that_move_the_fingerprint_only_when_used() -> None:
    loaded = spec(core={"max_drawdown": 0.2, "max_daily_loss": 0.05, "max_losing_streak": 4,
                        "max_position_value": 5000, "risk_close_positions": True})
    assert loaded.daemon_config(Path("state")).risk == RiskConfig(
        max_drawdown=0.2, max_daily_loss=0.05, max_losing_streak=4, max_position_value=5000.0,
        risk_close_positions=True)
    unused = json.loads(spec().canonical_json())["core"]
    assert "max_drawdown" not in unused and "risk_close_positions" not in unused and "fee" in unused
    assert spec(core={"max_drawdown": 0.0}).config_fingerprint() == spec().config_fingerprint()
    assert spec(core={"max_drawdown": 0.1}).config_fingerprint() != spec().config_fingerprint()
    assert json.loads(loaded.canonical_json())["core"]["max_losing_streak"] == 4
    assert error_of(core={"max_drawdown": 2}) == "run spec: core.max_drawdown: 2.0 must be between 0 and 1 (0 disables)"
    assert "TRADEEXECUTOR_MAX_LOSING_STREAK" in error_of({"TRADEEXECUTOR_MAX_LOSING_STREAK": "many"})


@pytest.mark.parametrize(("sections", "expected"), [
    ({"strategi": {}}, "strategi: unknown key; did you mean strategy? (known: strategy_file, mode, name, "),
    ({"environment": {"dat": []}}, "environment.dat: unknown key; did you mean data? (known: data, start, end, "),
    ({"core": {"fe": 0.1}}, "core.fe: unknown key; did you mean fee? (known: host, port, fee, "),
    ({"strategy": {"fsat": 3}}, "strategy.fsat: unknown parameter of SMA crossover; did you mean fast? "
                                "(known: allocation, fast, slow, symbol)"),
    ({"core": {"zzz": 1}}, "core.zzz: unknown key (known: "),
])
def test_unknown_keys_name_the_full_path_and_the_known_keys(sections: dict[str, Any], expected: str) -> None:
    assert expected in error_of(**sections)


@pytest.mark.parametrize(("sections", "expected"), [
    ({"core": {"fee": "abc"}}, "core.fee: expected a number, got string 'abc'"),
    ({"core": {"port": 80.5}}, "core.port: expected an integer, got number 80.5"),
    ({"core": {"crash_loop_count": True}}, "core.crash_loop_count: expected an integer, got boolean True"),
    ({"core": {"fill_timing": "later"}}, "core.fill_timing: 'later' is not one of next_open, close"),
    ({"core": {"fee": None}}, "core.fee: expected a number, got nothing"),
    ({"core": [1, 2]}, "core: expected a mapping of host, port, fee, "),
    ({"environment": {"data": 5}}, "environment.data: expected a list of bundled dataset names or candle files"),
    ({"environment": {"data": ["nope.csv"]}}, "environment.data: 'nope.csv' is neither a bundled dataset"),
    ({"environment": {"start": "yesterday"}}, "environment.start: 'yesterday' is not an ISO date or time"),
    ({"environment": {"replay_start": "soon"}}, "environment.replay_start: 'soon' is not warm, first or an ISO"),
    ({"strategy": "sma_crossover.py"}, "strategy: expected a mapping of parameter values, got string "
                                       "(the strategy module goes in strategy_file)"),
    ({"strategy": {"fast": "abc"}}, "strategy.fast: 'abc' is not an integer (expected integer)"),
    ({"strategy": {"fast": 2.5}}, "strategy.fast: 2.5 is not an integer (expected integer)"),
    ({"strategy": {"fast": 1}}, "strategy.fast: 1 is below the minimum 2 (expected integer)"),
    ({"strategy": {"allocation": [1]}}, "strategy.allocation: expected decimal, got list [1]"),
    ({"core": {"fee": 0.5}}, "core.fee: fee 0.5 must be a fraction of traded value"),
    ({"core": {"port": 70000}}, "core.port: 70000 must be between 0 and 65535"),
    ({"environment": {"replay_seconds": 0}}, "environment.replay_seconds: 0.0 must be positive"),
    ({"mode": "sim"}, "mode: 'sim' is not a mode; use one of replay, paper, backtest, live"),
    ({"name": 5}, "name: expected a string, got integer 5"),
])
def test_wrong_types_and_values_name_the_key_and_what_is_expected(sections: dict[str, Any], expected: str) -> None:
    assert f"run spec: {expected}" in error_of(**sections)


def test_missing_or_broken_strategy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run spec: strategy_file: missing: give the strategy \.py file"):
        spec_from_dict({"mode": "backtest"}, base_dir=tmp_path, env={})
    with pytest.raises(ConfigError, match=r"strategy_file: .*nope\.py not found \(paths are relative to the spec"):
        spec_from_dict({"strategy_file": "nope.py", "mode": "backtest"}, base_dir=tmp_path, env={})
    with pytest.raises(ConfigError, match="mode: missing: one of replay, paper, backtest, live"):
        spec_from_dict({"strategy_file": str(SMA)}, base_dir=tmp_path, env={})
    broken = tmp_path / "broken.py"
    broken.write_text("name = 'x'\n")
    with pytest.raises(StrategyLoadError, match="missing `description"):
        spec_from_dict({"strategy_file": "broken.py", "mode": "backtest"}, base_dir=tmp_path, env={})


def test_paths_are_relative_to_the_spec_file(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "specs"
    folder.mkdir(parents=True)
    shutil.copy(SMA, tmp_path / "a" / "mine.py")
    candles = tmp_path / "a" / "goog.csv"
    candles.write_text("timestamp,open,high,low,close,volume\n2020-01-01,1,1,1,1,1\n")
    path = folder / "run.yaml"
    path.write_text("strategy_file: ../mine.py\nmode: replay\nenvironment:\n  data: [../goog.csv, stocks-daily]\n")
    loaded = load_spec(path, env={})
    assert loaded.strategy_file == (tmp_path / "a" / "mine.py").resolve()
    assert loaded.environment.data == (str(candles.resolve()), "stocks-daily")


def test_yaml_problems_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("strategy_file: x.py\nmode: [backtest\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_spec(path, env={})
    path.write_text("")
    with pytest.raises(ConfigError, match="the run spec is empty"):
        load_spec(path, env={})
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="a run spec is a mapping of strategy_file, mode"):
        load_spec(path, env={})
    with pytest.raises(ConfigError, match="run spec not found"):
        load_spec(tmp_path / "missing.yaml", env={})


def test_environment_variables_override_the_spec() -> None:
    loaded = spec({"TRADEEXECUTOR_FEE": "0.002", "TRADEEXECUTOR_PARAMS": "fast=5, slow=40",
                   "TRADEEXECUTOR_CYCLE_OFFSET": "8m", "TRADEEXECUTOR_DATA": "stocks-daily",
                   "TRADEEXECUTOR_START": "2011-01-01", "TRADEEXECUTOR_PORT": "4000", "TRADEEXECUTOR_CASH": "",
                   "TRADEEXECUTOR_MODE": "replay", "TRADEEXECUTOR_UNRELATED": "x"},
                  core={"fee": 0.001, "cash": 500}, strategy={"fast": 8, "allocation": 0.5})
    assert loaded.core.fee == 0.002 and loaded.core.cycle_offset_seconds == 480.0 and loaded.core.port == 4000
    assert loaded.core.cash == 500.0  # an empty variable is unset, as for the options
    assert loaded.strategy == {"fast": 5, "slow": 40, "allocation": 0.5}
    assert loaded.environment.data == ("stocks-daily",) and loaded.environment.start == "2011-01-01"
    assert loaded.mode == "backtest"  # the mode is the spec's


@pytest.mark.parametrize(("env", "expected"), [
    ({"TRADEEXECUTOR_FEE": "abc"}, "TRADEEXECUTOR_FEE (overrides core.fee): 'abc' is not a number"),
    ({"TRADEEXECUTOR_PORT": "http"}, "TRADEEXECUTOR_PORT (overrides core.port): 'http' is not an integer"),
    ({"TRADEEXECUTOR_FEE": "0.5"}, "TRADEEXECUTOR_FEE (overrides core.fee): fee 0.5 must be a fraction"),
    ({"TRADEEXECUTOR_FILL_TIMING": "x"}, "TRADEEXECUTOR_FILL_TIMING (overrides core.fill_timing): 'x' is not one"),
    ({"TRADEEXECUTOR_PARAMS": "fast=abc"}, "TRADEEXECUTOR_PARAMS (overrides strategy.fast): 'abc' is not an "
                                           "integer (expected integer)"),
    ({"TRADEEXECUTOR_PARAMS": "fsat=3"}, "TRADEEXECUTOR_PARAMS (overrides strategy.fsat): unknown parameter of "
                                         "SMA crossover; did you mean fast?"),
    ({"TRADEEXECUTOR_PARAMS": "fast"}, "TRADEEXECUTOR_PARAMS: parameter override 'fast' must look like name=value"),
    ({"TRADEEXECUTOR_START": "soon"}, "TRADEEXECUTOR_START (overrides environment.start): 'soon' is not an ISO"),
])
def test_environment_overrides_of_the_wrong_type_name_the_variable(env: dict[str, str], expected: str) -> None:
    message = error_of(env)
    assert message.startswith(expected), message


def test_a_live_spec_names_its_exchange_and_credential_variables_never_their_values() -> None:
    assert "environment.exchange: missing: mode live sends real orders to an exchange" in error_of(mode="live")
    named = {"exchange_key_variable": "SPEC_TEST_KEY", "exchange_secret_variable": "SPEC_TEST_SECRET"}
    loaded = spec(mode="live", environment={"exchange": "binance", "exchange_url": "http://127.0.0.1:9"},
                  core=named)  # loads without the credentials: they belong to the machine that starts the run
    assert loaded.core.exchange_key_variable == "SPEC_TEST_KEY"
    with pytest.raises(ConfigError, match="SPEC_TEST_KEY is not set"):  # ... which checks them by name
        loaded.daemon_config(Path("state"))
    assert "must be an environment variable name" in error_of(
        mode="live", environment={"exchange": "binance"}, core={"exchange_key_variable": "the key itself"})
    assert "--data does not apply to --mode paper" not in error_of(
        mode="live", environment={"exchange": "binance", "data": ["stocks-daily"]})


def test_the_config_fingerprint_follows_the_config_not_the_paths_or_name(tmp_path: Path) -> None:
    base = spec(core={"fee": 0.001})
    copy = tmp_path / "elsewhere.py"
    shutil.copy(SMA, copy)
    moved = spec_from_dict({"strategy_file": str(copy), "mode": "backtest", "name": "other", "core": {"fee": 0.001}},
                           base_dir=tmp_path, env={})
    assert moved.config_fingerprint() == base.config_fingerprint() == spec(core={"fee": 0.001}).config_fingerprint()
    assert spec(core={"fee": 0.002}).config_fingerprint() != base.config_fingerprint()
    assert spec(core={"fee": 0.001}, mode="replay").config_fingerprint() != base.config_fingerprint()
    assert json.loads(base.canonical_json())["core"]["fee"] == 0.001


# ---------------------------------------------------------------------------------------------
# --spec on the commands


def _spec_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(body).replace("SMA", str(SMA)))
    return path


def test_backtest_spec_runs_with_the_spec_config(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, """\
        strategy_file: SMA
        mode: backtest
        environment: {data: [stocks-daily], start: "2008-01-01", end: "2010-12-31"}
        strategy: {fast: 5}
        core: {fee: 0.001}
        """)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["backtest", "--spec", str(path), "--output", str(out)],
                                env={"TRADEEXECUTOR_CASH": "20000"})
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["fee"] == 0.001 and summary["config"]["initial_cash"] == 20000.0
    assert summary["strategy"]["parameters"]["fast"] == 5 and summary["data"]["start"].startswith("2008-01")


@pytest.mark.parametrize(("command", "args", "expected"), [
    ("backtest", ["SMA"], "give either STRATEGY_FILE or --spec, not both"),
    ("backtest", ["--fee", "0.01"], "--fee cannot be combined with --spec: set core.fee in "),
    ("backtest", ["-p", "fast=3"], "--param cannot be combined with --spec: set strategy.<parameter> in "),
    ("start", ["SMA"], "give either STRATEGY_FILE or --spec, not both"),
    ("start", ["--mode", "replay"], "--mode cannot be combined with --spec: set mode in "),
])
def test_spec_and_conflicting_arguments_are_refused(tmp_path: Path, command: str, args: list[str],
                                                    expected: str) -> None:
    path = _spec_file(tmp_path, "strategy_file: SMA\nmode: backtest\n")
    args = [str(SMA) if arg == "SMA" else arg for arg in args]
    result = CliRunner().invoke(cli, [command, "--spec", str(path), *args])
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not (tmp_path / "state").exists() and not (tmp_path / "output").exists()


def test_start_spec_errors_exit_2_before_writing(tmp_path: Path) -> None:
    path = _spec_file(tmp_path, "strategy_file: SMA\nmode: replay\ncore: {fe: 0.1}\n")
    state = tmp_path / "state"
    result = CliRunner().invoke(cli, ["start", "--spec", str(path), "--state-dir", str(state)])
    assert result.exit_code == 2
    assert "core.fe: unknown key; did you mean fee?" in result.output and not state.exists()
    result = CliRunner().invoke(cli, ["start"])
    assert result.exit_code == 2 and "give a STRATEGY_FILE, or --spec RUN_SPEC" in result.output

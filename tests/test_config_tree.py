"""The configuration tree: a setting declared once on a config class is an option, a variable, a spec key and a doc row.

``DaemonConfig`` composes one frozen config per component; every field declared with
``config.setting`` carries its help, flag, variable, spec key and bounds. These tests add a field
in a subclass (as the ledger and venue settings will be added) and find it everywhere, check
the real tree's settings against the real ``start`` command, the generated pages and the spec
schema, and check the one validation every setting gets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from test_docs import DOCS, ROOT, load_script
from tradeexecutor import settings as daemon_settings
from tradeexecutor.cli.main import cli
from tradeexecutor.cli.options import config_options, config_values
from tradeexecutor.config import (
    EngineConfig,
    ExecutionConfig,
    HealthLimits,
    WebhookConfig,
    build_config,
    check_settings,
    setting,
    walk_settings,
)
from tradeexecutor.errors import ConfigError
from tradeexecutor.runs import spec as run_spec
from tradeexecutor.settings import DaemonConfig, FeedConfig
from tradeexecutor.wallboard.settings import WallboardConfig

SMA = ROOT / "strategies" / "sma_crossover.py"


@dataclass(frozen=True)
class VenueConfig:
    """A component config as the issue-12 work will add one: one field, one edit."""

    order_timeout_seconds: float = setting(7.5, spec="core.order_timeout_seconds", unit="seconds", above=0,
                                           help="Seconds an order may wait for the venue's answer.")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class ExtendedConfig(DaemonConfig):
    """The executor's tree with one more part and one more top-level setting."""

    venue: VenueConfig = field(default_factory=VenueConfig)
    ledger_keep_days: int = setting(30, minimum=1, help="Days of journal lines the ledger keeps.")


def _command(config: type[Any]) -> click.Command:
    @click.command("probe")
    @config_options(config)
    def probe(**options: Any) -> None:
        """Build the config from its options and print three of its values."""
        values = config_values(config, options)
        values.setdefault(("state_dir",), Path("state"))
        built = build_config(config, values, strategy_file=SMA)
        click.echo(f"{built.venue.order_timeout_seconds} {built.ledger_keep_days} {built.engine.execution.fee}")

    return probe


def test_a_new_setting_is_an_option_a_variable_a_spec_key_and_a_doc_row(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    command = _command(ExtendedConfig)
    options = {param.name: param for param in command.params if isinstance(param, click.Option)}
    option = options["order_timeout_seconds"]
    assert option.opts == ["--order-timeout-seconds"] and option.default == 7.5
    assert option.envvar == "TRADEEXECUTOR_ORDER_TIMEOUT_SECONDS" and option.help
    assert options["ledger_keep_days"].type is click.INT or options["ledger_keep_days"].type.name == "integer"

    runner = CliRunner()
    assert runner.invoke(command, []).output.strip() == "7.5 30 0.0"
    assert runner.invoke(command, ["--order-timeout-seconds", "3", "--fee", "0.001"]).output.strip() == "3.0 30 0.001"
    by_env = runner.invoke(command, [], env={"TRADEEXECUTOR_LEDGER_KEEP_DAYS": "9"})
    assert by_env.output.strip() == "7.5 9 0.0"
    refused = runner.invoke(command, ["--order-timeout-seconds", "0"])
    assert isinstance(refused.exception, ConfigError)
    assert str(refused.exception) == "--order-timeout-seconds 0.0 must be positive"

    # The generated reference and env example read the options, so the new ones get a row and a line.
    reference = load_script(DOCS / "gen_config_reference.py")
    group = click.Group("tradeexecutor", commands={"probe": command})
    rows = "\n".join(reference.command_section("probe", command, group))
    assert "| `--order-timeout-seconds` | `TRADEEXECUTOR_ORDER_TIMEOUT_SECONDS` | `7.5` | Seconds an order" in rows
    env_example = load_script(ROOT / "deploy" / "generate_env_example.py")
    assert env_example.describe(option).startswith("--order-timeout-seconds: Seconds an order may wait")

    # A run spec takes its `core` key, and its variable overrides it, with key-path errors.
    monkeypatch.setattr(daemon_settings, "DaemonConfig", ExtendedConfig)
    loaded = run_spec.spec_from_dict({"strategy_file": str(SMA), "mode": "backtest",
                                      "core": {"order_timeout_seconds": 2}}, base_dir=tmp_path, env={})
    assert loaded.core.order_timeout_seconds == 2.0
    assert loaded.daemon_config(tmp_path).venue == VenueConfig(order_timeout_seconds=2.0)  # type: ignore[attr-defined]
    overridden = run_spec.spec_from_dict({"strategy_file": str(SMA), "mode": "backtest"}, base_dir=tmp_path,
                                         env={"TRADEEXECUTOR_ORDER_TIMEOUT_SECONDS": "4"})
    assert overridden.core.order_timeout_seconds == 4.0
    with pytest.raises(ConfigError, match=r"run spec: core.order_timeout_seconds: -1.0 must be positive"):
        run_spec.spec_from_dict({"strategy_file": str(SMA), "mode": "backtest",
                                 "core": {"order_timeout_seconds": -1}}, base_dir=tmp_path, env={})
    with pytest.raises(ConfigError, match=r"core.order_timeout_seconds: expected a number, got string 'x'"):
        run_spec.spec_from_dict({"strategy_file": str(SMA), "mode": "backtest",
                                 "core": {"order_timeout_seconds": "x"}}, base_dir=tmp_path, env={})


@pytest.mark.parametrize(("name", "config"), [("start", DaemonConfig), ("wallboard", WallboardConfig)])
def test_every_setting_of_the_tree_is_an_option_a_doc_row_and_an_env_example_line(name: str, config: type) -> None:
    command = cli.commands[name]  # type: ignore[attr-defined]
    options = {param.name: param for param in command.params if isinstance(param, click.Option)}
    reference = (DOCS / "configuration.md").read_text(encoding="utf-8")
    section = reference.split(f"## tradeexecutor {name}\n", 1)[1].split("\n## ", 1)[0]
    env_example = (ROOT / "deploy" / "compose" / "env.example").read_text(encoding="utf-8")
    items = list(walk_settings(config))
    assert len(items) >= 9
    for item in items:
        option = options[item.param]
        assert item.option in option.opts + option.secondary_opts and option.help == item.about.help
        assert option.envvar == f"TRADEEXECUTOR_{item.variable}"
        rows = [line for line in section.splitlines() if f"| `TRADEEXECUTOR_{item.variable}` |" in line]
        assert len(rows) == 1 and f"`{item.option}`" in rows[0].split(" | ")[0], item.option
        assert name != "start" or f"# TRADEEXECUTOR_{item.variable}=" in env_example
    names = [item.param for item in items]
    assert len(names) == len(set(names)), "two settings of the tree share an option"
    variables = [item.variable for item in items]
    assert len(variables) == len(set(variables)), "two settings of the tree share a variable"


def test_the_spec_sections_are_the_settings_with_a_spec_key() -> None:
    core = run_spec.CoreSection()
    environment = run_spec.EnvironmentSection()
    expected = {item.about.spec: item.default for item in walk_settings(DaemonConfig)
                if item.about.spec.startswith(("core.", "environment."))}
    found = {f"core.{key}": value for key, value in core.to_dict().items()}
    found.update({f"environment.{key}": value for key, value in environment.to_dict().items()})
    assert found == expected
    assert core.cash == DaemonConfig(strategy_file=SMA).engine.initial_cash  # one default, declared once
    assert core.crash_serve_seconds == DaemonConfig.__dataclass_fields__["crash_serve_seconds"].default


def test_the_old_flags_and_variables_keep_their_names() -> None:
    """Deployments, env files and the before-stop smoke test use these names."""
    start = cli.commands["start"]  # type: ignore[attr-defined]
    flags = {opt: param.envvar for param in start.params if isinstance(param, click.Option)
             for opt in param.opts + param.secondary_opts}
    for flag, variable in [("--state-dir", "STATE_DIR"), ("--port", "PORT"), ("--replay-seconds", "REPLAY_SECONDS"),
                           ("--max-cycles", "MAX_CYCLES"), ("--chart-seconds", "CHART_SECONDS"), ("--cpu", "CPU"),
                           ("--cash", "CASH"), ("--cycle-offset", "CYCLE_OFFSET"), ("--param", "PARAMS"),
                           ("-p", "PARAMS"), ("--cors-origin", "CORS_ORIGINS"), ("--source", "SOURCE"),
                           ("--no-source", "SOURCE"), ("--webhook-password", "WEBHOOK_PASSWORD"),
                           ("--wallboard-token", "WALLBOARD_TOKEN"), ("--notify-events", "NOTIFY_EVENTS"),
                           ("--log-level", "LOG_LEVEL"), ("--health-grace-seconds", "HEALTH_GRACE_SECONDS")]:
        assert flags[flag] == f"TRADEEXECUTOR_{variable}", flag


@pytest.mark.parametrize(("build", "message"), [
    (lambda: HealthLimits(grace_seconds=-1.0), "--health-grace-seconds -1.0 must not be negative"),
    (lambda: HealthLimits(data_stale_seconds=math.nan), "--data-stale-seconds nan is not a finite number"),
    (lambda: WebhookConfig(threads=65), "--webhook-threads 65 must be between 1 and 64"),
    (lambda: WebhookConfig(username="u"), "webhook auth needs both"),
    (lambda: EngineConfig(initial_cash=0.0), "--cash 0.0 must be positive"),
    (lambda: EngineConfig(cycle_offset_seconds=-5.0), "--cycle-offset -5.0 must not be negative"),
    (lambda: ExecutionConfig(fill_timing="later"), "--fill-timing 'later' is not one of next_open, close"),
    (lambda: DaemonConfig(strategy_file=SMA, port=70000), "--port 70000 must be between 0 and 65535"),
    (lambda: DaemonConfig(strategy_file=SMA, retry_max_seconds=7200.0), "--retry-max-seconds 7200.0 must be at most 3600"),
    (lambda: FeedConfig(replay_seconds=0.0),
     "--replay-seconds 0.0 must be positive (0.1 = ten bars a second)"),
    (lambda: DaemonConfig(strategy_file=SMA, chart_seconds=math.inf), "--chart-seconds inf is not a finite number"),
])
def test_each_setting_is_checked_once_against_its_declared_bounds(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    assert str(caught.value).startswith(message)


def test_secrets_never_show_in_a_repr() -> None:
    config = DaemonConfig(strategy_file=SMA, webhook=WebhookConfig(username="operator", password="hunter2"))
    secret = [item for item in walk_settings(DaemonConfig) if item.about.secret]
    assert {item.option for item in secret} >= {"--webhook-password", "--wallboard-token"}
    assert "hunter2" not in repr(config) and "operator" not in repr(config)


def test_the_spec_fingerprint_did_not_move_with_the_tree(tmp_path: Path) -> None:
    """Runs and sweeps are matched (and resumed) by config fingerprint: generating the spec sections from the tree
    must give the same canonical config as the hand-written sections did (this value was computed on them)."""
    loaded = run_spec.load_spec(ROOT / "strategies" / "specs" / "sma_crossover_backtest.yaml", env={})
    assert loaded.config_fingerprint() == "c286f44ae3a879c5e1b62cb605f6faa99b749b3d2d2c41e0b4b9ce06d9224e3d"


def test_a_config_class_is_read_once_and_still_checks_every_setting(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """Building configs and reading run specs walks each class's declarations once per process (a sweep reads a spec
    per full run); a second tree (a new class) is walked for itself, and every bound is still checked."""
    import tradeexecutor.config as config_module

    build_config(DaemonConfig, {("state_dir",): tmp_path}, strategy_file=SMA)  # each class of the tree read
    run_spec.spec_from_dict({"strategy_file": str(SMA), "mode": "backtest"}, base_dir=tmp_path, env={})
    calls: list[type] = []
    real_fields = config_module.fields

    def counting_fields(item: Any) -> Any:
        calls.append(item if isinstance(item, type) else type(item))
        return real_fields(item)

    monkeypatch.setattr(config_module, "fields", counting_fields)
    built = build_config(DaemonConfig, {("engine", "execution", "fee"): 0.002, ("state_dir",): tmp_path},
                         strategy_file=SMA)
    assert built.engine.execution.fee == 0.002
    spec = run_spec.spec_from_dict({"strategy_file": str(SMA), "mode": "backtest", "core": {"fee": 0.003}},
                                   base_dir=tmp_path, env={})
    assert spec.daemon_config(tmp_path).engine.execution.fee == 0.003
    assert calls == []
    with pytest.raises(ConfigError, match="--port 70000 must be between 0 and 65535"):
        DaemonConfig(strategy_file=SMA, port=70000)
    with pytest.raises(ConfigError, match="--chart-seconds inf is not a finite number"):
        DaemonConfig(strategy_file=SMA, chart_seconds=math.inf)

    @dataclass(frozen=True)
    class ProbeConfig:
        wait_seconds: float = setting(1.0, above=0, help="A class no test built before.")

        def __post_init__(self) -> None:
            check_settings(self)

    with pytest.raises(ConfigError, match=r"--wait-seconds 0\.0 must be positive"):
        ProbeConfig(wait_seconds=0.0)
    assert calls == [ProbeConfig]  # a class not read before, once
    ProbeConfig(wait_seconds=2.0)
    assert calls == [ProbeConfig]

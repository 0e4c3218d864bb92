"""Readiness, local only: each mode's credential states, by name; secret values never reach output or readiness.json."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tradeexecutor.runs.readiness import ReadinessState, assess_readiness, check_spec, write_readiness

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "strategies" / "sma_crossover.py"
KEY = "TRADEEXECUTOR_EXCHANGE_API_KEY"
SECRET = "TRADEEXECUTOR_EXCHANGE_API_SECRET"
USER = "TRADEEXECUTOR_WEBHOOK_USERNAME"
PASSWORD = "TRADEEXECUTOR_WEBHOOK_PASSWORD"
TOKEN = secrets.token_hex(6)
VALUES = {KEY: f"k3y-{TOKEN}", SECRET: f"s3cr3t-{TOKEN}", USER: f"op-{TOKEN}", PASSWORD: f"pw-{TOKEN}"}


def spec_file(folder: Path, mode: str) -> Path:
    path = folder / f"{mode}.yaml"
    source = "exchange: binance" if mode in ("paper", "live") else "data: [stocks-daily]"  # their prices: an exchange's
    path.write_text(f"strategy_file: {STRATEGY}\nmode: {mode}\nenvironment:\n  {source}\n")
    return path


@pytest.mark.parametrize(("mode", "env", "state", "missing"), [
    ("backtest", {}, ReadinessState.disabled, ()),
    ("backtest", {KEY: "x"}, ReadinessState.disabled, ()),
    ("replay", {}, ReadinessState.configured, ()),
    ("paper", {}, ReadinessState.configured, ()),
    ("paper", {USER: "u", PASSWORD: "p"}, ReadinessState.configured, ()),
    ("live", {}, ReadinessState.missing_credentials, (KEY, SECRET)),
    ("live", {KEY: "k"}, ReadinessState.missing_credentials, (SECRET,)),
    ("live", {KEY: "k", SECRET: "   "}, ReadinessState.missing_credentials, (SECRET,)),
    ("live", {KEY: "k", SECRET: "s"}, ReadinessState.configured, ()),
    ("live", {KEY: "k", SECRET: "s", USER: "u"}, ReadinessState.invalid_config, ()),
    ("paper", {PASSWORD: "p"}, ReadinessState.invalid_config, ()),
    ("backtest", {USER: "u"}, ReadinessState.invalid_config, ()),
    ("moon", {}, ReadinessState.invalid_config, ()),
])
def test_states_by_mode(mode: str, env: dict[str, str], state: ReadinessState, missing: tuple[str, ...]) -> None:
    readiness = assess_readiness(mode, env)
    assert readiness.state is state
    assert readiness.missing == missing
    assert readiness.ok == (state in (ReadinessState.disabled, ReadinessState.configured))
    names = [c.name for c in readiness.credentials]
    assert USER in names and PASSWORD in names  # the optional pair is always reported
    if mode == "live":
        assert readiness.required == (KEY, SECRET)
    else:
        assert readiness.required == ()


def test_exit_codes() -> None:
    assert assess_readiness("backtest", {}).exit_code == 0
    assert assess_readiness("live", {}).exit_code == 1
    assert assess_readiness("live", {USER: "u"}).exit_code == 2


def test_the_result_holds_names_never_values(tmp_path: Path) -> None:
    readiness = assess_readiness("live", VALUES)
    assert readiness.state is ReadinessState.configured
    written = write_readiness(readiness, tmp_path / "readiness.json").read_text()
    text = written + "\n".join(readiness.lines()) + repr(readiness)
    for name, value in VALUES.items():
        assert name in written
        assert value not in text
    data = json.loads(written)
    assert data["state"] == "configured" and data["mode"] == "live"
    assert all(set(c) == {"name", "purpose", "required", "present"} for c in data["credentials"])


def test_check_spec_reads_the_mode_and_refuses_a_broken_spec(tmp_path: Path) -> None:
    assert check_spec(spec_file(tmp_path, "live"), {}).state is ReadinessState.missing_credentials
    assert check_spec(spec_file(tmp_path, "paper"), {}).state is ReadinessState.configured
    assert check_spec(spec_file(tmp_path, "replay"), {}).state is ReadinessState.configured
    # A spec saved when paper meant a replay (candle data, no exchange) is told what to use now.
    old = tmp_path / "old.yaml"
    old.write_text(f"strategy_file: {STRATEGY}\nmode: paper\nenvironment:\n  data: [stocks-daily]\n")
    readiness = check_spec(old, {})
    assert readiness.state is ReadinessState.invalid_config
    assert [problem for problem in readiness.problems if "use --mode replay" in problem] == list(readiness.problems)
    broken = tmp_path / "broken.yaml"
    broken.write_text(f"strategy_file: {STRATEGY}\nmode: live\ncore:\n  feee: 0.1\n")
    readiness = check_spec(broken, VALUES)
    assert readiness.state is ReadinessState.invalid_config and readiness.mode == "live"
    assert any("feee" in problem for problem in readiness.problems)


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in VALUES}
    return subprocess.run([sys.executable, "-m", "tradeexecutor.cli.main", *args], check=False,
                          capture_output=True, text=True, timeout=120, env={**clean, **env})


def test_a_live_spec_is_checked_by_the_variable_names_it_gives(tmp_path: Path) -> None:
    path = tmp_path / "named.yaml"
    path.write_text(f"strategy_file: {STRATEGY}\nmode: live\nenvironment:\n  exchange: binance\n"
                    "core:\n  exchange_key_variable: BINANCE_KEY\n  exchange_secret_variable: BINANCE_SECRET\n")
    readiness = check_spec(path, {"BINANCE_KEY": VALUES[KEY], SECRET: VALUES[SECRET]})
    assert readiness.state is ReadinessState.missing_credentials
    assert readiness.required == ("BINANCE_KEY", "BINANCE_SECRET") and readiness.missing == ("BINANCE_SECRET",)
    assert {c.name: c.purpose for c in readiness.credentials if c.required} == {
        "BINANCE_KEY": "exchange API key (live trading)", "BINANCE_SECRET": "exchange API secret (live trading)"}
    assert check_spec(path, {"BINANCE_KEY": "k", "BINANCE_SECRET": "s"}).state is ReadinessState.configured
    # A live spec without an exchange is refused when it loads, naming the key to add.
    bare = tmp_path / "bare.yaml"
    bare.write_text(f"strategy_file: {STRATEGY}\nmode: live\n")
    refused = check_spec(bare, {KEY: "k", SECRET: "s"})
    assert refused.state is ReadinessState.invalid_config
    assert "environment.exchange: missing: mode live sends real orders" in refused.problems[0]


def test_cli_check_live_with_secrets_writes_readiness_without_values(tmp_path: Path) -> None:
    out = tmp_path / "out" / "readiness.json"
    result = _cli("check", str(spec_file(tmp_path, "live")), "--output", str(out), env=VALUES)
    assert result.returncode == 0, result.stderr
    assert "mode live: configured" in result.stdout
    assert KEY in result.stdout and SECRET in result.stdout
    data = json.loads(out.read_text())
    assert data["state"] == "configured" and data["missing"] == []
    for value in VALUES.values():
        assert value not in result.stdout + result.stderr
        assert value not in out.read_text()


def test_cli_check_exit_codes_and_json(tmp_path: Path) -> None:
    missing = _cli("check", str(spec_file(tmp_path, "live")), "--json", env={KEY: VALUES[KEY]})
    assert missing.returncode == 1
    data = json.loads(missing.stdout)
    assert data["state"] == "missing_credentials" and data["missing"] == [SECRET]
    assert VALUES[KEY] not in missing.stdout
    half = _cli("check", str(spec_file(tmp_path, "backtest")), env={USER: VALUES[USER]})
    assert half.returncode == 2 and "invalid_config" in half.stdout and VALUES[USER] not in half.stdout
    disabled = _cli("check", str(spec_file(tmp_path, "backtest")), env={})
    assert disabled.returncode == 0 and "mode backtest: disabled" in disabled.stdout


def test_cli_check_a_run_writes_its_readiness_json(tmp_path: Path) -> None:
    from tradeexecutor.runs.run import Runs

    runs_dir = tmp_path / "runs"
    runs = Runs(runs_dir, env={})
    try:
        record, _ = runs.create(spec_file(tmp_path, "paper"), ref="paper-run")
    finally:
        runs.close()
    result = _cli("check", "paper-run", "--runs-dir", str(runs_dir), env=VALUES)
    assert result.returncode == 0, result.stderr
    path = runs_dir / record.id / "readiness.json"
    data = json.loads(path.read_text())
    assert data["mode"] == "paper" and data["state"] == "configured" and data["required"] == []
    assert {c["name"]: c["present"] for c in data["credentials"]} == {USER: True, PASSWORD: True}
    for value in VALUES.values():
        assert value not in path.read_text() and value not in result.stdout

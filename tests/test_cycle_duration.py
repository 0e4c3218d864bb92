"""``--cycle-duration``: an operator runs a strategy on shorter cycles than it declares, its bars scaled alike.

The setting is one field of the configuration tree (option, variable, run-spec key ``core.cycle_duration``),
checked once: bad text, a mode whose candles have a fixed size (replay, backtest) and a cycle longer than the
strategy's own are one line each; the strategy's bar frequency keeps its ratio to the cycle
(``with_cycle_duration``), and bars that would not be whole seconds are refused. The end-to-end runs on the
exchange simulator are in tests/test_examples_live_e2e.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tradeexecutor.cli.main import cli
from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.daemon.paper import candles, cycles_description, rehearsal_warning
from tradeexecutor.daemon.startup import check_cycle_duration
from tradeexecutor.errors import ConfigError, StateError
from tradeexecutor.runs.spec import RunSpec, spec_from_dict
from tradeexecutor.settings import DaemonConfig
from tradeexecutor.strategy.loader import load_strategy, with_cycle_duration

ROOT = Path(__file__).resolve().parent.parent
BREAKOUT = ROOT / "strategies" / "eurusd_breakout.py"
SMA = ROOT / "strategies" / "sma_crossover.py"
ROTATION = ROOT / "strategies" / "momentum_rotation.py"


def paper(**values: object) -> DaemonConfig:
    return DaemonConfig(strategy_file=BREAKOUT, mode="paper", exchange=CcxtVenueConfig(exchange="binance"),
                        **values)  # type: ignore[arg-type]


def test_the_setting_is_normalised_and_read_as_a_duration() -> None:
    assert paper().cycle_duration is None and paper().cycle_override is None
    config = paper(cycle_duration=" 60s ")
    assert config.cycle_duration == "1m" and config.cycle_override == timedelta(minutes=1)
    assert paper(cycle_duration="1s").cycle_override == timedelta(seconds=1)


@pytest.mark.parametrize(("text", "fragment"), [
    ("fast", "--cycle-duration 'fast': invalid duration 'fast': use a number and a unit s, m, h, d or w"),
    ("0s", "--cycle-duration '0s': invalid duration '0s': must be greater than zero"),
    ("1.5s", "--cycle-duration '1.5s': invalid duration"),
])
def test_bad_text_is_one_line_naming_the_option(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        paper(cycle_duration=text)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("mode", ["replay", "backtest"])
def test_a_mode_of_candle_files_refuses_it(mode: str) -> None:
    """A replay's or backtest's bars are the data's: a shorter cycle would mean other bars, which the files do not
    have; refused, not ignored, with the way to speed a replay up."""
    with pytest.raises(ConfigError, match=f"--cycle-duration applies to --mode paper and live.*--mode {mode} replays "
                                          "candles of a fixed size: drop it.*--replay-seconds"):
        DaemonConfig(strategy_file=SMA, mode=mode, cycle_duration="1s")


def test_start_and_backtest_on_the_command_line() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["start", str(SMA), "--cycle-duration", "1s", "--port", "0"])
    assert result.exit_code == 2 and "--cycle-duration applies to --mode paper and live" in result.output
    result = runner.invoke(cli, ["start", str(SMA), "--mode", "paper", "--exchange", "binance",
                                 "--cycle-duration", "soon"])
    assert result.exit_code == 2 and "--cycle-duration 'soon': invalid duration" in result.output
    result = runner.invoke(cli, ["backtest", str(SMA), "--cycle-duration", "1s"])  # not a backtest's setting
    assert result.exit_code == 2 and "No such option '--cycle-duration'" in result.output


def test_a_run_spec_sets_it_under_core(tmp_path: Path) -> None:
    def spec(mode: str, **core: str) -> RunSpec:
        return spec_from_dict({"strategy_file": str(BREAKOUT), "mode": mode, "environment": {"exchange": "binance"},
                               "core": core}, base_dir=tmp_path, env={})

    assert spec("paper", cycle_duration="1s").daemon_config(tmp_path / "state").cycle_override == timedelta(seconds=1)
    assert spec("paper", cycle_duration="1s").config_fingerprint() != spec("paper").config_fingerprint()
    assert spec("paper").config_fingerprint() == spec("paper", cycle_duration=None).config_fingerprint()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^run spec: core\.cycle_duration: applies to --mode paper and live"):
        spec("replay", cycle_duration="1s")  # when the spec is read, under its own key
    # The variable overrides the key, as every setting's does.
    overridden = spec_from_dict({"strategy_file": str(BREAKOUT), "mode": "paper", "environment": {"exchange": "binance"}},
                                base_dir=tmp_path, env={"TRADEEXECUTOR_CYCLE_DURATION": "1m"})
    assert overridden.daemon_config(tmp_path / "state").cycle_override == timedelta(minutes=1)


def test_the_bars_keep_their_ratio_to_the_cycle() -> None:
    breakout = load_strategy(BREAKOUT)
    assert (breakout.cycle_duration, breakout.bar_frequency) == (timedelta(hours=1), timedelta(hours=1))
    fast = with_cycle_duration(breakout, timedelta(seconds=1))
    assert (fast.cycle_duration, fast.bar_frequency, fast.declared_cycle_duration) == (
        timedelta(seconds=1), timedelta(seconds=1), timedelta(hours=1))
    assert fast.describe()["declared_cycle_duration"] == "1:00:00" and "declared_cycle_duration" not in \
        breakout.describe()
    # 4h bars read on 1h cycles: 4s bars on 1s cycles; the parameter keeps the strategy's own words.
    four = with_cycle_duration(load_strategy(BREAKOUT, {"frequency": "4h"}), timedelta(seconds=1))
    assert four.bar_frequency == timedelta(seconds=4) and four.parameters["frequency"] == "4h"
    # A strategy without a bar frequency reads the exchange's bars of its cycle: nothing to scale.
    sma = with_cycle_duration(load_strategy(SMA), timedelta(seconds=1))
    assert (sma.cycle_duration, sma.bar_frequency) == (timedelta(seconds=1), None)
    rotation = with_cycle_duration(load_strategy(ROTATION), timedelta(seconds=1))
    assert rotation.declared_cycle_duration == timedelta(days=7)
    # Its own cycle: the strategy as it is.
    assert with_cycle_duration(breakout, timedelta(hours=1)) is breakout
    # Applied twice: scaled from the declared cycle, not from the first override.
    again = with_cycle_duration(fast, timedelta(minutes=1))
    assert (again.cycle_duration, again.bar_frequency, again.declared_cycle_duration) == (
        timedelta(minutes=1), timedelta(minutes=1), timedelta(hours=1))


def test_a_longer_cycle_or_bars_of_a_fraction_of_a_second_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--cycle-duration 2h is longer than the 1h cycle eurusd_breakout\.py "
                                          r"declares: .*never slower; give at most 1h"):
        with_cycle_duration(load_strategy(BREAKOUT), timedelta(hours=2))
    hourly_bars = tmp_path / "daily_on_hours.py"
    hourly_bars.write_text(SMA.read_text().replace('cycle_duration = "1d"', 'cycle_duration = "1d"\n'
                                                                            'bar_frequency = "1h"'))
    strategy = load_strategy(hourly_bars)
    assert strategy.bar_frequency == timedelta(hours=1)
    with pytest.raises(ConfigError, match=r"--cycle-duration 1s scales the strategy's 1h bars \(read on 1d cycles\) "
                                          r"to 0\.0416667 s, not a whole number of seconds"):
        with_cycle_duration(strategy, timedelta(seconds=1))
    assert with_cycle_duration(strategy, timedelta(seconds=24)).bar_frequency == timedelta(seconds=1)


def test_words_for_the_start_up_line() -> None:
    breakout = load_strategy(BREAKOUT)
    assert cycles_description(breakout) == "1h cycles"
    assert cycles_description(with_cycle_duration(breakout, timedelta(seconds=1))) == (
        "1s cycles (the strategy declares 1h; --cycle-duration)")
    # "closed 1 1h candles" said "candles" of one.
    assert (candles(0, "1h"), candles(1, "1h"), candles(2, "1s")) == ("0 1h candles", "1 1h candle", "2 1s candles")


def test_a_state_continues_only_on_the_cycles_its_last_process_ran() -> None:
    """The journal's last ``started`` line names the operator's cycle (or none: the strategy's own); another cycle is
    refused by name (tests/test_examples_live_e2e.py restarts a 1s paper run on 1m), the same one passes."""
    own = load_strategy(BREAKOUT, {})
    fast = with_cycle_duration(own, timedelta(seconds=1))
    on_1s = {"cursor": 5, "cycle_duration": "1s", "declared_cycle_duration": "1h"}
    check_cycle_duration([], fast, "ledger.sqlite")  # nothing journaled yet: a new state
    check_cycle_duration([{"cursor": 3}, on_1s], fast, "ledger.sqlite")
    check_cycle_duration([on_1s, {"cursor": 9}], own, "ledger.sqlite")
    with pytest.raises(StateError) as error:
        check_cycle_duration([{"cursor": 3}, on_1s], own, "ledger.sqlite")
    assert str(error.value) == ("ledger.sqlite ran on 1s cycles (--cycle-duration), not 1h: use the same "
                                "--cycle-duration or a new --state-dir")
    with pytest.raises(StateError) as error:
        check_cycle_duration([on_1s, {"cursor": 9}], fast, "ledger.sqlite")
    assert str(error.value) == ("ledger.sqlite ran on 1h cycles (the strategy's own), not 1s: use the same "
                                "--cycle-duration or a new --state-dir")


def test_a_shortened_cycle_on_the_exchange_itself_is_warned_about() -> None:
    """Without --exchange-url the 1-second cycles would run on the real exchange's candles: a warning (not a
    refusal: a paper run on real prices is harmless); with a simulator's URL, or without the setting, none."""
    assert rehearsal_warning(paper(cycle_duration="1s")) == (
        "--cycle-duration 1s on binance itself (no --exchange-url): shortened cycles are for rehearsals on a simulator "
        "or testnet; the strategy's own cycles are what it was written for")
    assert rehearsal_warning(paper()) is None
    at_simulator = DaemonConfig(strategy_file=BREAKOUT, mode="paper", cycle_duration="1s",
                                exchange=CcxtVenueConfig(exchange="binance", url="http://127.0.0.1:8765"))
    assert rehearsal_warning(at_simulator) is None

"""Constraints between parameters: the small safe language, its one-line errors, the spec key and the grid honouring them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeexecutor.errors import ConfigError
from tradeexecutor.runs.constraints import parse_constraint
from tradeexecutor.runs.optimize import build_grid
from tradeexecutor.runs.spec import load_spec

ROOT = Path(__file__).resolve().parent.parent
STRATEGY = ROOT / "strategies" / "sma_crossover.py"
NAMES = ["fast", "slow", "allocation", "symbol"]


@pytest.mark.parametrize(("text", "values", "holds"), [
    ("fast < slow", {"fast": 5, "slow": 20}, True),
    ("fast < slow", {"fast": 20, "slow": 20}, False),
    ("slow >= 2 * fast and slow - fast <= 40", {"fast": 10, "slow": 45}, True),
    ("slow >= 2 * fast and slow - fast <= 40", {"fast": 10, "slow": 60}, False),
    ("5 <= fast < slow <= 50", {"fast": 5, "slow": 50}, True),
    ("5 <= fast < slow <= 50", {"fast": 5, "slow": 51}, False),
    ("not (symbol == 'FB' and fast < 10)", {"symbol": "FB", "fast": 5}, False),
    ("not (symbol == 'FB' and fast < 10)", {"symbol": "GOOG", "fast": 5}, True),
    ("allocation * 100 // 25 % 2 == 0 or fast > 99", {"allocation": 0.5, "fast": 5}, True),
    ("-fast < -5 == True", {"fast": 6}, False),
    ("slow / fast > 2.5", {"fast": 10, "slow": 30}, True),
])
def test_constraints_evaluate_like_python_without_eval(text: str, values: dict, holds: bool) -> None:
    constraint = parse_constraint(text, NAMES)
    assert constraint.holds(values) is holds
    assert constraint.names <= set(NAMES)


@pytest.mark.parametrize(("text", "message"), [
    ("__import__('os').system('true')", "is not allowed"),
    ("fast.real < slow", "is not allowed"),
    ("[fast][0] < slow", "is not allowed"),
    ("(lambda: 1)() < fast", "is not allowed"),
    ("fast ** 2 < slow", "is not allowed"),
    ("fast if slow else 1", "is not allowed"),
    ("fats < slow", "'fats' is not a parameter of the strategy; did you mean fast?"),
    ("fast", "is not a condition"),
    ("fast + slow", "is not a condition"),
    ("fast <", "is not a valid constraint"),
    ("", "empty constraint"),
    ("fast < " + "1 + " * 200 + "1", "longer than 500"),
])
def test_bad_constraints_are_one_line_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_constraint(text, NAMES, "--constraint")
    assert "\n" not in str(info.value) and str(info.value).startswith("--constraint")


def test_constraints_that_cannot_be_computed_say_why() -> None:
    with pytest.raises(ConfigError, match="division by zero at fast=0, slow=3"):
        parse_constraint("slow / fast > 1", NAMES).holds({"fast": 0, "slow": 3})
    with pytest.raises(ConfigError, match="cannot compare or combine"):
        parse_constraint("symbol * 1000000000000 == 'x'", NAMES).holds({"symbol": "GOOG"})
    with pytest.raises(ConfigError, match="cannot compare or combine"):
        parse_constraint("symbol < 3", NAMES).holds({"symbol": "GOOG"})


def _spec(tmp_path: Path, optimize: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(f"strategy_file: {STRATEGY}\nmode: backtest\n"
                    "environment:\n  data: [stocks-daily]\n  start: '2011-01-01'\n  end: '2012-12-31'\n"
                    f"strategy:\n  fast: 10\n  slow: 30\n{optimize}")
    return path


def test_spec_declares_constraints_once_and_they_do_not_change_the_config(tmp_path: Path) -> None:
    plain = load_spec(_spec(tmp_path, ""), env={})
    spec = load_spec(_spec(tmp_path, "optimize:\n  constraints: ['fast < slow', 'slow - fast >= 10']\n"), env={})
    assert spec.constraints == ("fast < slow", "slow - fast >= 10")
    assert spec.config_fingerprint() == plain.config_fingerprint()  # a run's config is what a run does
    assert spec.to_dict()["optimize"] == {"constraints": ["fast < slow", "slow - fast >= 10"]}
    grid = build_grid(spec, ["fast=5..30:5", "slow=20,30"])
    assert grid == [{"fast": f, "slow": s} for f in (5, 10, 15, 20, 25, 30) for s in (20, 30) if s - f >= 10]
    both = build_grid(spec, ["fast=5..30:5", "slow=20,30"], constraints=["fast != 10"])
    assert {"fast": 10, "slow": 20} not in both and len(both) == len(grid) - 2
    with pytest.raises(ConfigError, match="no grid point satisfies the constraints"):
        build_grid(spec, ["fast=25..30:5", "slow=20,30"])


@pytest.mark.parametrize(("optimize", "message"), [
    ("optimize:\n  constraints: ['fast <<< slow']\n", r"spec.yaml: optimize.constraints\[0\]: .* not a valid"),
    ("optimize:\n  constraints: ['fats < slow']\n", r"optimize.constraints\[0\]: .*did you mean fast"),
    ("optimize:\n  constraints: [1]\n", "optimize.constraints: expected a list of conditions"),
    ("optimize:\n  constrains: ['fast < slow']\n", "optimize.constrains: unknown key; did you mean constraints"),
    ("optimize: fast < slow\n", "optimize: expected a mapping"),
])
def test_bad_spec_constraints_name_the_file_and_key(tmp_path: Path, optimize: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_spec(_spec(tmp_path, optimize), env={})
    assert "\n" not in str(info.value)

"""The documentation builds with ``mkdocs build --strict`` and its generated pages are current.

Strict mode turns every warning into a failure: a broken link, a missing anchor, a page left out
of the navigation. The configuration reference and the webhook API page are generated from the
CLI and the OpenAPI document; a test fails when the committed page differs from the output.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MKDOCS_YML = ROOT / "mkdocs.yml"


def load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mkdocs_command() -> list[str]:
    """``python -m mkdocs`` of this interpreter; skip when mkdocs is not installed (it is in the test extra)."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed: pip install -e '.[test]'")
    return [sys.executable, "-m", "mkdocs"]


@pytest.mark.slow
def test_mkdocs_builds_strictly_without_warnings(tmp_path: Path) -> None:
    command = [*mkdocs_command(), "build", "--strict", "--site-dir", str(tmp_path / "site")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    warnings = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "\n".join(warnings)
    for page in ("index", "quickstart", "writing-a-strategy", "configuration", "production", "webhook-api", "runner-api",
                 "architecture", "statistics", "benchmarks"):
        assert (tmp_path / "site" / f"{page}.html").is_file(), f"{page}.html not built"
    assert not list((tmp_path / "site").glob("*.py")), "generator scripts must not be published"


def test_mkdocs_config_is_strict_offline_and_lists_every_page() -> None:
    config = yaml.safe_load(MKDOCS_YML.read_text(encoding="utf-8"))
    assert config["strict"] is True
    theme = config["theme"]["name"] if isinstance(config["theme"], dict) else config["theme"]
    assert theme in {"mkdocs", "readthedocs"}, "built-in themes only: the build must not need the network"
    assert not config.get("plugins"), "no plugins: they may need the network or extra packages"
    pages = {next(iter(item.values())) for item in config["nav"]}
    assert pages == {path.name for path in DOCS.glob("*.md")}


def test_configuration_reference_is_generated_from_the_cli() -> None:
    generator = load_script(DOCS / "gen_config_reference.py")
    current = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert current == generator.render(), "docs/configuration.md is out of date: run python docs/gen_config_reference.py"
    from tradeexecutor.cli.main import cli

    for command in cli.commands.values():
        for param in command.params:
            if param.envvar:
                assert f"`{param.envvar}`" in current


def test_webhook_api_page_is_generated_from_the_openapi_document() -> None:
    source = ROOT / "tradeexecutor" / "webhook" / "openapi.yaml"
    if not source.exists():
        pytest.skip("no OpenAPI document yet")
    generator = load_script(DOCS / "gen_webhook_api.py")
    current = (DOCS / "webhook-api.md").read_text(encoding="utf-8")
    assert current == generator.render(), "docs/webhook-api.md is out of date: run python docs/gen_webhook_api.py"
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    for path in document["paths"]:
        assert f"`{path}`" in current


def test_runner_api_page_is_generated_from_its_openapi_document() -> None:
    generator = load_script(DOCS / "gen_webhook_api.py")
    current = (DOCS / "runner-api.md").read_text(encoding="utf-8")
    assert current == generator.render(generator.RUNNER_TARGET), \
        "docs/runner-api.md is out of date: run python docs/gen_webhook_api.py"
    document = yaml.safe_load((ROOT / "tradeexecutor" / "wallboard" / "runner-api.yaml").read_text(encoding="utf-8"))
    for path in document["paths"]:
        assert f"`{path}`" in current


def test_readme_commands_appear_in_the_quickstart() -> None:
    """The quick start repeats the README's two commands word for word."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quickstart = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.DOTALL)
    for command in ("python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/tradeexecutor start "
                    "strategies/sma_crossover.py", "PYTHON=.venv/bin/python bash .ci/run"):
        assert any(command in block for block in blocks), f"README no longer shows {command!r}"
        assert command in quickstart


def test_architecture_page_lists_every_package_part() -> None:
    """Every top-level part of the package appears in the layer table of docs/architecture.md."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    parts = {p.name for p in (ROOT / "tradeexecutor").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    parts |= {p.stem for p in (ROOT / "tradeexecutor").glob("*.py") if p.stem != "__init__"}
    missing = sorted(part for part in parts if f"`{part}`" not in text)
    assert not missing, f"docs/architecture.md does not place {missing} in a layer"


def test_architecture_page_names_only_code_that_exists() -> None:
    """Every class, function or method docs/architecture.md quotes (`ExecutorLoop.handle`, `_decide_ended`) is
    defined in the package, so the path of one cycle cannot keep a step the code renamed or dropped."""
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tradeexecutor").rglob("*.py"))
    quoted = set(re.findall(r"`(?:\w+\.)*(_?[A-Za-z]\w*)(?:\(\))?`", text))
    # Code-like names only: CamelCase, snake_case and _private (plain words such as `cli` are parts, checked above).
    names = {name for name in quoted if (name[0].isupper() and not name.isupper()) or "_" in name}
    missing = sorted(name for name in names if not re.search(rf"\b{name}\b", source))
    assert not missing, f"docs/architecture.md names {missing}, which the package no longer has"


def test_docs_name_only_existing_repository_files() -> None:
    """Paths quoted in the docs (`deploy/...`, `strategies/...`, `tradeexecutor/...`, `tests/...`) exist."""
    problems = []
    for page in DOCS.glob("*.md"):
        for path in re.findall(r"`((?:deploy|strategies|tradeexecutor|tests|docs|bench)/[\w./-]+)`",
                               page.read_text(encoding="utf-8")):
            if "<" in path or "*" in path:
                continue
            if not (ROOT / path).exists():
                problems.append(f"{page.name}: {path}")
    assert not problems, "missing: " + ", ".join(problems)


def test_documented_defaults_do_not_depend_on_the_click_version() -> None:
    """click 8.5 reports a flag's missing default as UNSET where 8.4 said False; the pages must not change."""
    import click

    from tradeexecutor.cli.common import option_default

    @click.command()
    @click.option("--flag", is_flag=True)
    @click.option("--on/--off", default=True)
    @click.option("--auto/--no-auto", default=None)
    @click.option("--count", type=int, default=3)
    @click.option("--name")
    @click.option("--item", multiple=True)
    def command(**_: object) -> None:
        """A command with one option of each kind."""

    defaults = {param.name: option_default(param) for param in command.params}
    assert defaults == {"flag": False, "on": True, "auto": None, "count": 3, "name": None, "item": None}


def test_the_docs_say_which_trigger_wins_and_how_fraction_sizing_treats_the_fee() -> None:
    """Checked by tests/test_engine_triggers.py and tests/test_parity_backtesting_py.py; here: the docs say so."""
    strategy = " ".join((DOCS / "writing-a-strategy.md").read_text(encoding="utf-8").split())
    architecture = " ".join((DOCS / "architecture.md").read_text(encoding="utf-8").split())
    assert ("a bar that opens at or above the take-profit takes profit at its open even when its low later "
            "trades through the stop") in strategy
    assert "When one bar reaches both, the stop is assumed to come first" not in strategy  # said too little
    assert "the stop wins when both are reached" not in architecture
    assert "a bar opening above the take-profit takes profit even if it later trades through the stop" in architecture
    assert "The fee is paid **on top** of that value" in strategy
    assert "backtesting.py puts the fee **inside** the fraction" in strategy
    assert "`fraction=f / (1 + fee)` buys what backtesting.py's `buy(size=f)` buys" in strategy

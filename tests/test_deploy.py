"""The deployment files under deploy/ are consistent, valid and use only the metrics the executor exports.

No Docker engine or cluster is needed: the Dockerfile, compose file and Kubernetes manifests are
parsed and checked as text and YAML; Prometheus config and rules go through ``promtool`` (skipped
locally when it is missing, a failure when the ``CI`` variable is set); the Kubernetes manifests
through ``kubectl kustomize`` when kubectl is installed. The Dockerfile's HEALTHCHECK command is
run as is (``sh -c``) against a webhook serving /healthz.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from metric_contract import METRIC_NAMES, SCRAPE_SERIES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tradeexecutor.json"
KUBERNETES = DEPLOY / "kubernetes"

#: The alerts the deployment promises (docs/production.md).
REQUIRED_ALERTS = {"ExecutorCrashed", "ExecutorCrashLooping", "CycleOverdue", "HealthFailing", "MarketDataStale",
                   "ExecutorDown", "ExecutorRunFinished"}
#: The scrape job the rules and the dashboard select (prometheus.yml; the ServiceMonitor's jobLabel).
JOB = "tradeexecutor"
#: Environment variables the deployment files may set that are not options of `tradeexecutor start`.
EXTRA_ENV = {"TRADEEXECUTOR_GIT_COMMIT", "TRADEEXECUTOR_IMAGE_VERSION"}
#: Services of the compose file that are not executors.
MONITORING_SERVICES = {"prometheus", "grafana", "wallboard"}
WEBHOOK_PORT = 3456


# ---------------------------------------------------------------------------------------------------
# Helpers


def load_script(path: Path) -> ModuleType:
    """Import a script that is not in a package (deploy/generate_env_example.py)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_tool(name: str) -> str:
    """The tool's path; skip without it locally, fail in CI (where .ci/run installs it)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (apt-get install prometheus provides promtool)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must have it")
        pytest.skip(message)
    return found


def run_tool(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command-line tool; the caller checks the return code (and shows the output)."""
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def build_requirement_met(requirement: str) -> bool:
    """Whether ``name>=x.y`` (or a bare name) is installed, for a build without isolation (offline)."""
    from importlib.metadata import PackageNotFoundError, version

    name, _, minimum = requirement.partition(">=")
    try:
        installed = version(name.strip())
    except PackageNotFoundError:
        return False

    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", text)[:3])

    return not minimum or numbers(installed) >= numbers(minimum)


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs: continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the last build stage (the image that runs)."""
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1]:]


def dockerfile_healthcheck_command(path: Path = DOCKERFILE) -> str:
    """The HEALTHCHECK's shell command, ready for ``sh -c`` (it reads TRADEEXECUTOR_PORT)."""
    checks = [rest for keyword, rest in final_stage(dockerfile_instructions(path)) if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "exactly one HEALTHCHECK expected"
    match = re.search(r"\bCMD\s+(.*)$", checks[0])
    assert match, f"HEALTHCHECK without CMD: {checks[0]}"
    command = match.group(1).strip()
    assert not command.startswith("["), "use the shell form of HEALTHCHECK CMD, so it runs with sh -c"
    return command


def command_envvars(command: str) -> set[str]:
    """Every environment variable a `tradeexecutor` command reads."""
    from tradeexecutor.cli.main import cli

    names: set[str] = set()
    for param in cli.commands[command].params:
        if param.envvar:
            names.update([param.envvar] if isinstance(param.envvar, str) else param.envvar)
    return names


def start_command_envvars() -> set[str]:
    """Every environment variable `tradeexecutor start` reads."""
    return command_envvars("start")


def package_envvars() -> set[str]:
    """TRADEEXECUTOR_* names the package reads or documents (options, credentials in openapi.yaml)."""
    names = set(start_command_envvars())
    for path in (ROOT / "tradeexecutor").rglob("*"):
        if path.suffix in {".py", ".yaml"}:
            names.update(re.findall(r"\bTRADEEXECUTOR_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    return names | EXTRA_ENV


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of a Docker env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{number}: not KEY=value: {raw!r}"
        assert key not in values, f"{path.name}:{number}: {key} set twice"
        values[key] = value
    return values


def duration_seconds(text: str) -> float:
    """Compose durations: 60s, 1m30s, 2m."""
    total = 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s|ms)", str(text))
    assert parts and "".join(n + u for n, u in parts) == str(text), f"bad duration {text!r}"
    for number, unit in parts:
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    return total


_PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                 "bool", "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (label matchers, ranges, grouping and functions removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before in ".$":
            continue  # 1e3, $variable
        if text[match.end():].lstrip().startswith("("):
            continue  # a function or aggregation
        if match.group(0).lower() in _PROMQL_WORDS:
            continue
        names.add(match.group(0))
    return names


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_exprs(node: Any) -> Iterator[str]:
    """Every PromQL expression of the Grafana dashboard (panel targets and variable queries)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key in {"query", "definition"} and isinstance(value, str):
                found = re.match(r"\s*label_values\(\s*([^,)]+)", value)
                if found:
                    yield found.group(1)
                elif key == "query":
                    yield value
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


# ---------------------------------------------------------------------------------------------------
# Dockerfile


def test_dockerfile_builds_a_slim_non_root_image_of_the_project() -> None:
    instructions = dockerfile_instructions()
    for keyword, rest in instructions:
        if keyword == "FROM":
            image = rest.split()[0]
            assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?", image), f"base image {image} is not python:3.11-slim"
    stage = final_stage(instructions)
    users = [rest for keyword, rest in stage if keyword == "USER"]
    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"USER {users[-1]} is root"
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert re.search(r"pip (install|wheel)\b[^&]*\s\.(\s|$)", runs), "the project itself must be pip-installed"
    # Everything copied from the build context exists and is not excluded by .dockerignore.
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for keyword, rest in instructions:
        if keyword == "COPY" and "--from" not in rest:
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the project"
                assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"
    assert {".git", "tests", "state", "output"} <= ignored


@pytest.mark.slow
def test_the_docker_build_context_makes_a_complete_wheel(tmp_path: Path) -> None:
    """What the build stage does (`pip wheel --no-deps .` on the copied files) gives a wheel with the
    package data and the console script, from only the files the Dockerfile copies."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]["requires"]
    missing = [r for r in requires if not build_requirement_met(r)]
    if missing:
        pytest.skip(f"build requirements {missing} not installed here (the image build installs them itself)")
    context = tmp_path / "context"
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY" and "--from" not in rest:
            *sources, _ = shlex.split(rest)
            for source in sources:
                if source.startswith("strategies"):
                    continue  # copied into the runtime stage, not part of the wheel
                origin = ROOT / source
                if origin.is_dir():
                    shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    context.mkdir(exist_ok=True)
                    shutil.copy2(origin, context / source)
    result = run_tool(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                      "--wheel-dir", str(tmp_path / "wheels"), str(context), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "wheels").glob("tradeexecutor-*.whl")
    import zipfile

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "tradeexecutor/cli/main.py" in names
    assert any(n.startswith("tradeexecutor/data/sample/") and n.endswith(".csv.gz") for n in names)
    if (ROOT / "tradeexecutor" / "webhook" / "openapi.yaml").exists():
        assert "tradeexecutor/webhook/openapi.yaml" in names
    assert re.search(r"^tradeexecutor\s*=\s*tradeexecutor\.cli\.main:main", entry_points, flags=re.MULTILINE)


def test_dockerfile_runtime_contract() -> None:
    stage = final_stage(dockerfile_instructions())
    by_keyword: dict[str, list[str]] = {}
    for keyword, rest in stage:
        by_keyword.setdefault(keyword, []).append(rest)
    assert by_keyword["ENTRYPOINT"] == ['["tradeexecutor"]']
    assert by_keyword["STOPSIGNAL"] == ["SIGTERM"]
    assert str(WEBHOOK_PORT) in " ".join(by_keyword["EXPOSE"]).split()
    volumes = json.loads(by_keyword["VOLUME"][-1])
    assert set(volumes) >= {"/app/strategies", "/state"}
    env = " ".join(by_keyword["ENV"])
    assert "TRADEEXECUTOR_HOST=0.0.0.0" in env, "inside a container the webhook must bind every interface"
    assert "TRADEEXECUTOR_STATE_DIR=/state" in env
    assert "TRADEEXECUTOR_GIT_COMMIT=${GIT_COMMIT}" in env
    args = {rest.split("=")[0] for rest in by_keyword["ARG"]}
    assert {"VERSION", "GIT_COMMIT"} <= args
    from tradeexecutor.runstate import GIT_COMMIT_ENV

    assert GIT_COMMIT_ENV == "TRADEEXECUTOR_GIT_COMMIT", "/status reads the commit from this variable"


def test_dockerfile_healthcheck_uses_urllib_against_healthz() -> None:
    command = dockerfile_healthcheck_command()
    assert "/healthz" in command and "urllib" in command
    assert "curl" not in command and "wget" not in command, "python:3.11-slim has neither"
    assert "TRADEEXECUTOR_PORT" in command


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_dockerfile_healthcheck_command_runs_against_a_webhook() -> None:
    """The HEALTHCHECK command exits 0 on a healthy /healthz, non-zero on a 503 and on a closed port."""
    from tradeexecutor.runstate import RunState, RunStatus
    from tradeexecutor.webhook import ROUTE_MODULES, WebhookServer, create_app

    includes = [] if "tradeexecutor.webhook.health" in ROUTE_MODULES else ["tradeexecutor.webhook.health"]
    runstate = RunState.create("exec-deploy", mode="replay", strategy_name="deploy-test",
                               version={"package": "0", "git_commit": None})
    command = dockerfile_healthcheck_command()

    def run(port: int) -> int:
        env = {**os.environ, "TRADEEXECUTOR_PORT": str(port), "PATH": os.pathsep.join(
            [str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True, timeout=60,
                              check=False).returncode

    with WebhookServer(create_app(runstate, extra_includes=includes), port=0) as server:
        port = server.effective_port
        assert run(port) != 0, "a starting executor (loop not running) must fail the health check"
        runstate.update(status=RunStatus.running, executor_running=True)
        assert run(port) == 0
    assert run(port) != 0, "nothing listening must fail the health check"


# ---------------------------------------------------------------------------------------------------
# Compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))  # SafeLoader resolves `<<:` merges
    assert isinstance(document, dict) and document.get("services")
    return document


def executor_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in compose["services"].items() if name not in MONITORING_SERVICES}


def test_compose_has_one_executor_per_example_strategy(compose: dict[str, Any]) -> None:
    executors = executor_services(compose)
    assert set(executors) == {"sma-crossover", "eurusd-breakout"}
    strategies = set()
    for name, service in executors.items():
        assert service["command"] == ["start"]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE_DIR / service["build"]["context"]).resolve() == ROOT
        env_files = service["env_file"]
        assert env_files == [f"{name}.env"], f"{name}: one env file named after the service"
        values = read_env_file(COMPOSE_DIR / env_files[0])
        strategy = values["TRADEEXECUTOR_STRATEGY_FILE"]
        assert strategy.startswith("/app/strategies/")
        assert (ROOT / "strategies" / Path(strategy).name).is_file(), f"{name}: {strategy} does not exist"
        strategies.add(strategy)
    assert len(strategies) == len(executors), "two services must never run the same strategy"


def test_compose_executors_restart_stop_gracefully_and_check_health(compose: dict[str, Any]) -> None:
    for name, service in executor_services(compose).items():
        # The crash policy makes the process exit non-zero; both policies restart that.
        assert service["restart"] in {"on-failure", "unless-stopped"}, name
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM"
        assert duration_seconds(service["stop_grace_period"]) >= 30, f"{name}: a cycle needs time to finish"
        check = service["healthcheck"]
        test = check["test"]
        assert test[0] == "CMD-SHELL" and "/healthz" in test[1] and "urllib" in test[1], name
        assert test[1].split() == dockerfile_healthcheck_command().split(), f"{name}: differs from the image's"
        assert "$" not in test[1].replace("$$", ""), f"{name}: compose would interpolate $ in the healthcheck"
        assert duration_seconds(check["start_period"]) >= 30


def test_compose_state_volumes_are_named_and_never_shared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    seen: dict[str, str] = {}
    for name, service in executor_services(compose).items():
        state = [v for v in service["volumes"] if v.split(":")[1] == "/state"]
        assert len(state) == 1, f"{name}: one volume at /state"
        volume = state[0].split(":")[0]
        assert volume in declared, f"{name}: state must be a named volume, not {volume}"
        assert volume not in seen, f"{name} and {seen.get(volume)} share {volume}: a strategy would run twice"
        seen[volume] = name


def test_compose_ports_are_bound_to_loopback(compose: dict[str, Any]) -> None:
    host_ports = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port} is not loopback-only"
            host_ports.append(port.split(":")[1])
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    for name, service in executor_services(compose).items():
        assert any(p.endswith(f":{WEBHOOK_PORT}") for p in service["ports"]), f"{name}: webhook port not published"


def test_compose_bind_mounts_and_env_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for env_file in service.get("env_file", []):
            assert (COMPOSE_DIR / env_file).is_file(), f"{name}: {env_file} missing"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: bind mount {source} missing"


def test_compose_env_files_set_only_known_variables(compose: dict[str, Any]) -> None:
    known = start_command_envvars()
    for service in executor_services(compose).values():
        for env_file in service["env_file"]:
            unknown = set(read_env_file(COMPOSE_DIR / env_file)) - known
            assert not unknown, f"{env_file}: not options of tradeexecutor start: {sorted(unknown)}"


def test_compose_wallboard_shows_every_executor_and_executors_cast_to_it(compose: dict[str, Any]) -> None:
    from tradeexecutor.wallboard import parse_executors

    service = compose["services"]["wallboard"]
    assert service["command"] == ["wallboard"] and service["restart"] == "unless-stopped"
    assert service["env_file"] == ["wallboard.env"]
    values = read_env_file(COMPOSE_DIR / "wallboard.env")
    assert set(values) <= command_envvars("wallboard"), sorted(set(values) - command_envvars("wallboard"))
    assert "TRADEEXECUTOR_WALLBOARD_TOKEN" not in values, "the token belongs in an uncommitted env file"
    named = {target.name for target in parse_executors([values["TRADEEXECUTOR_WALLBOARD_EXECUTORS"]])}
    assert named == set(executor_services(compose)), "the wallboard names every executor service"
    port = values["TRADEEXECUTOR_WALLBOARD_PORT"]
    assert values["TRADEEXECUTOR_WALLBOARD_HOST"] == "0.0.0.0" and service["ports"] == [f"127.0.0.1:{port}:{port}"]
    check = service["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and f"127.0.0.1:{port}/healthz" in check[1] and "$" not in check[1]
    for name, executor in executor_services(compose).items():
        settings = read_env_file(COMPOSE_DIR / executor["env_file"][0])
        assert settings.get("TRADEEXECUTOR_WALLBOARD_URL") == f"http://wallboard:{port}", name


def test_prometheus_scrapes_every_executor(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["tradeexecutor"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {target for static in job["static_configs"] for target in static["targets"]}
    assert targets == {f"{name}:{WEBHOOK_PORT}" for name in executor_services(compose)}
    assert config["rule_files"] == ["alerts.yml"]


def test_env_example_is_generated_from_the_cli() -> None:
    generator = load_script(DEPLOY / "generate_env_example.py")
    expected = generator.render()
    current = (COMPOSE_DIR / "env.example").read_text(encoding="utf-8")
    assert current == expected, "deploy/compose/env.example is out of date: run python deploy/generate_env_example.py"
    for name in start_command_envvars():
        assert f"# {name}=" in current


# ---------------------------------------------------------------------------------------------------
# The rehearsal: the exchange simulator, and a paper and a live executor against it (exchange-sim.yml)

REHEARSAL_FILE = COMPOSE_DIR / "exchange-sim.yml"


@pytest.fixture(scope="module")
def rehearsal() -> dict[str, Any]:
    document = yaml.safe_load(REHEARSAL_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and set(document["services"]) == {"exchange-sim", "paper-eurusd", "live-eurusd"}
    return document


def test_rehearsal_compose_pairs_the_simulator_with_a_paper_executor_by_service_name(rehearsal: dict[str, Any]) -> None:
    sim, executor = rehearsal["services"]["exchange-sim"], rehearsal["services"]["paper-eurusd"]
    for service in (sim, executor):
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (COMPOSE_DIR / service["build"]["context"]).resolve() == ROOT
        assert service["restart"] == "unless-stopped" and service["read_only"] is True
        assert all(p.startswith("127.0.0.1:") for p in service["ports"]), "published on the host's loopback only"
    assert sim["command"] == ["exchange-sim"] and sim["env_file"] == ["exchange-sim.env"]
    sim_values = read_env_file(COMPOSE_DIR / "exchange-sim.env")
    assert set(sim_values) <= command_envvars("exchange-sim"), sorted(set(sim_values) - command_envvars("exchange-sim"))
    assert sim_values["TRADEEXECUTOR_SIM_HOST"] == "0.0.0.0", "the executor reaches it from another container"
    port = sim_values["TRADEEXECUTOR_SIM_PORT"]
    assert sim["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"127.0.0.1:{port}/api/v3/ping" in sim["healthcheck"]["test"][1]

    assert executor["command"] == ["start"] and executor["env_file"] == ["paper-eurusd.env"]
    values = read_env_file(COMPOSE_DIR / "paper-eurusd.env")
    assert set(values) <= start_command_envvars(), sorted(set(values) - start_command_envvars())
    assert (values["TRADEEXECUTOR_MODE"], values["TRADEEXECUTOR_EXCHANGE"]) == ("paper", "binance")
    assert values["TRADEEXECUTOR_EXCHANGE_URL"] == f"http://exchange-sim:{port}", "the simulator, by service name"
    assert (ROOT / "strategies" / Path(values["TRADEEXECUTOR_STRATEGY_FILE"]).name).is_file()
    assert executor["depends_on"] == {"exchange-sim": {"condition": "service_healthy"}}
    assert executor["healthcheck"]["test"][1].split() == dockerfile_healthcheck_command().split()
    assert any(p.endswith(f":{WEBHOOK_PORT}") for p in executor["ports"])
    (state,) = [v for v in executor["volumes"] if v.split(":")[1] == "/state"]
    assert state.split(":")[0] in rehearsal["volumes"], "state in a named volume of its own"
    assert not set(rehearsal["volumes"]) & set(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["volumes"])
    for source in (v.split(":")[0] for v in executor["volumes"] if v.startswith(".")):
        assert (COMPOSE_DIR / source).exists()


def test_rehearsal_compose_runs_a_live_executor_against_the_simulator(rehearsal: dict[str, Any]) -> None:
    paper, live = rehearsal["services"]["paper-eurusd"], rehearsal["services"]["live-eurusd"]
    assert live["command"] == ["start"] and live["env_file"] == ["live-eurusd.env"]
    values = read_env_file(COMPOSE_DIR / "live-eurusd.env")
    assert set(values) <= start_command_envvars(), sorted(set(values) - start_command_envvars())
    assert (values["TRADEEXECUTOR_MODE"], values["TRADEEXECUTOR_EXCHANGE"]) == ("live", "binance")
    port = read_env_file(COMPOSE_DIR / "exchange-sim.env")["TRADEEXECUTOR_SIM_PORT"]
    assert values["TRADEEXECUTOR_EXCHANGE_URL"] == f"http://exchange-sim:{port}", "the simulator, by service name"
    # The variables the env file names are the ones the compose file fills in.
    named = {values["TRADEEXECUTOR_EXCHANGE_KEY_VARIABLE"], values["TRADEEXECUTOR_EXCHANGE_SECRET_VARIABLE"]}
    assert named == set(live["environment"])
    for key in ("build", "restart", "read_only", "depends_on", "healthcheck", "stop_signal"):
        assert live[key] == paper[key], key
    assert all(p.startswith("127.0.0.1:") for p in live["ports"]) and live["ports"] != paper["ports"]
    (state,) = [v for v in live["volumes"] if v.split(":")[1] == "/state"]
    assert state.split(":")[0] in rehearsal["volumes"] and state not in paper["volumes"], "a state of its own"


def test_rehearsal_compose_holds_credential_names_never_values(rehearsal: dict[str, Any]) -> None:
    """The simulator's key and secret come from the shell by name (``${NAME:?why}``); no file holds a value."""
    environment = rehearsal["services"]["exchange-sim"]["environment"]
    for name in ("TRADEEXECUTOR_SIM_API_KEY", "TRADEEXECUTOR_SIM_API_SECRET"):
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", environment[name]), f"{name}: {environment[name]!r}"
    assert "environment" not in rehearsal["services"]["paper-eurusd"], "paper mode needs no credentials"
    for name, value in rehearsal["services"]["live-eurusd"]["environment"].items():  # the simulator's, by name
        assert re.fullmatch(r"\$\{TRADEEXECUTOR_SIM_API_(KEY|SECRET):\?[^}]+\}", value), f"{name}: {value!r}"
    for env_file in ("exchange-sim.env", "paper-eurusd.env", "live-eurusd.env"):
        values = read_env_file(COMPOSE_DIR / env_file)
        assert not [k for k in values if re.search(r"KEY|SECRET|TOKEN|PASSWORD", k) and not k.endswith("_VARIABLE")
                    and not k.endswith("_ENV")], f"{env_file} sets a credential"


@pytest.mark.timeout(280)
def test_rehearsal_runs_as_written(tmp_path: Path, rehearsal: dict[str, Any]) -> None:
    """The env files as they are, outside Docker: the simulator serves, one executor paper trades on its prices and
    the other trades live against it, signed with the simulator's key and secret (given by name, as Compose does).

    Only what Docker provides is replaced: the executor reaches the simulator on loopback instead of
    by service name, each on a free port, the strategy and state directory on the host's paths.
    """
    import time
    import urllib.error
    import urllib.request

    from executor_process import free_port

    clean = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
    sim_port, port = free_port(), free_port()
    sim_env = {**clean, **read_env_file(COMPOSE_DIR / "exchange-sim.env"), "TRADEEXECUTOR_SIM_HOST": "127.0.0.1",
               "TRADEEXECUTOR_SIM_PORT": str(sim_port), "TRADEEXECUTOR_SIM_API_KEY": "RehearsalKey0001",
               "TRADEEXECUTOR_SIM_API_SECRET": "rehearsal-secret-0001"}
    values = read_env_file(COMPOSE_DIR / "paper-eurusd.env")
    written_port = read_env_file(COMPOSE_DIR / "exchange-sim.env")["TRADEEXECUTOR_SIM_PORT"]
    assert values["TRADEEXECUTOR_EXCHANGE_URL"] == f"http://exchange-sim:{written_port}"  # replaced here by loopback
    executor_env = {**clean, **values, "TRADEEXECUTOR_EXCHANGE_URL": f"http://127.0.0.1:{sim_port}",
                    "TRADEEXECUTOR_STRATEGY_FILE": str(ROOT / "strategies" / Path(
                        values["TRADEEXECUTOR_STRATEGY_FILE"]).name),
                    "TRADEEXECUTOR_STATE_DIR": str(tmp_path / "state"), "TRADEEXECUTOR_PORT": str(port)}
    live_values, live_port = read_env_file(COMPOSE_DIR / "live-eurusd.env"), free_port()
    # Compose's ${NAME:?why}: each credential variable of the live executor takes the named shell variable's value.
    given = {name: sim_env[re.match(r"\$\{(\w+)", value).group(1)]  # type: ignore[union-attr]
             for name, value in rehearsal["services"]["live-eurusd"]["environment"].items()}
    live_env = {**clean, **live_values, **given, "TRADEEXECUTOR_EXCHANGE_URL": f"http://127.0.0.1:{sim_port}",
                "TRADEEXECUTOR_STRATEGY_FILE": str(ROOT / "strategies" / Path(
                    live_values["TRADEEXECUTOR_STRATEGY_FILE"]).name),
                "TRADEEXECUTOR_STATE_DIR": str(tmp_path / "live-state"), "TRADEEXECUTOR_PORT": str(live_port)}

    def get(address: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(address, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None

    def poll(address: str, process: subprocess.Popen[bytes], log: Path) -> Any:
        for _ in range(900):  # up to ~180 s on a busy machine: a failure only waits that long
            status, body = get(address)
            if status == 200:
                return body
            assert process.poll() is None, log.read_text(encoding="utf-8", errors="replace")
            time.sleep(0.2)  # polling, not synchronisation: the loop ends on the answer
        raise AssertionError(f"{address} never answered 200:\n{log.read_text(encoding='utf-8', errors='replace')}")

    processes: list[subprocess.Popen[bytes]] = []
    try:
        sim_log, executor_log, live_log = tmp_path / "sim.log", tmp_path / "executor.log", tmp_path / "live.log"
        with open(sim_log, "wb") as out:
            processes.append(subprocess.Popen([sys.executable, "-m", "tradeexecutor.cli.main", "exchange-sim"],
                                              env=sim_env, stdout=out, stderr=subprocess.STDOUT))
        poll(f"http://127.0.0.1:{sim_port}/api/v3/ping", processes[0], sim_log)  # the simulator's healthcheck
        for env, log_path in ((executor_env, executor_log), (live_env, live_log)):  # both depend on the simulator
            with open(log_path, "wb") as out:
                processes.append(subprocess.Popen([sys.executable, "-m", "tradeexecutor.cli.main", "start"],
                                                  env=env, stdout=out, stderr=subprocess.STDOUT))
        poll(f"http://127.0.0.1:{port}/healthz", processes[1], executor_log)
        status = poll(f"http://127.0.0.1:{port}/status", processes[1], executor_log)
        assert status["mode"] == "paper", status
        assert f"http://127.0.0.1:{sim_port}" in json.dumps(status), "prices come from the simulator"
        log = executor_log.read_text(encoding="utf-8")
        assert "warm-up 1h candles of EURUSD" in log and "rehearsal-secret" not in log
        poll(f"http://127.0.0.1:{live_port}/healthz", processes[2], live_log)
        live = poll(f"http://127.0.0.1:{live_port}/status", processes[2], live_log)
        assert live["mode"] == "live" and live["prices"] == f"binance live prices via http://127.0.0.1:{sim_port}"
        assert live["reconciliation"]["outcome"] == "clean" and not live["safe_mode"], live["reconciliation"]
        assert "rehearsal-secret" not in live_log.read_text(encoding="utf-8")
    finally:
        for process in reversed(processes):
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    assert processes[1].returncode == processes[2].returncode == 0, "SIGTERM stops each executor cleanly (exit 0)"


# ---------------------------------------------------------------------------------------------------
# Prometheus and Grafana


def test_promtool_checks_the_prometheus_config() -> None:
    promtool = require_tool("promtool")
    result = run_tool(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_alert_rules() -> None:
    promtool = require_tool("promtool")
    result = run_tool(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_fire_as_intended() -> None:
    """promtool's rule unit tests: each alert fires on its condition and stays quiet when healthy."""
    promtool = require_tool("promtool")
    result = run_tool(promtool, "test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promql_metric_name_extraction() -> None:
    """The extractor the next tests rely on finds metric names and nothing else."""
    expr = ('sum by (instance, state) (rate(tradeexecutor_orders{state="filled",x=~"a|b"}[5m])) > 1e3 '
            'or max_over_time(tradeexecutor_up[1h]) unless on(instance) absent(process_resident_memory_bytes) '
            '* time() - tradeexecutor_cash{instance=~"$instance"} offset 5m')
    assert promql_metric_names(expr) == {"tradeexecutor_orders", "tradeexecutor_up", "process_resident_memory_bytes",
                                         "tradeexecutor_cash"}


def test_alert_rules_cover_the_promised_alerts_with_contract_metrics() -> None:
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert names >= REQUIRED_ALERTS, f"missing alerts: {sorted(REQUIRED_ALERTS - names)}"
    allowed = METRIC_NAMES | SCRAPE_SERIES
    for rule in rules:
        used = promql_metric_names(str(rule["expr"]))
        assert used, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert used <= allowed, f"{rule['alert']}: not exported by /metrics: {sorted(used - allowed)}"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]


def test_grafana_dashboard_uses_only_contract_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = list(dashboard_exprs(dashboard))
    assert len(exprs) >= 10
    used = set().union(*(promql_metric_names(expr) for expr in exprs))
    allowed = METRIC_NAMES | SCRAPE_SERIES
    assert used <= allowed, f"dashboard uses metrics /metrics does not export: {sorted(used - allowed)}"
    assert len(used) >= 15, "the dashboard should show most of the exported metrics"
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in datasources["datasources"]}
    panel_uids = {panel["datasource"]["uid"] for panel in dashboard["panels"] if "datasource" in panel}
    assert panel_uids <= uids, "every panel must use the provisioned datasource"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def live_metric_names() -> set[str]:
    """Sample names /metrics of a fresh app exports (families declared without samples included)."""
    from prometheus_client.parser import text_string_to_metric_families
    from webtest import TestApp

    from tradeexecutor.runstate import RunState
    from tradeexecutor.webhook import ROUTE_MODULES, create_app

    includes = [m for m in ("tradeexecutor.webhook.health", "tradeexecutor.webhook.metrics") if m not in ROUTE_MODULES]
    runstate = RunState.create("exec-deploy", mode="replay", strategy_name="deploy-test",
                               version={"package": "0", "git_commit": None})
    response = TestApp(create_app(runstate, extra_includes=includes)).get("/metrics")
    assert response.status_int == 200
    text = response.text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
    names.update(re.findall(r"^# TYPE (\S+)", text, flags=re.MULTILINE))
    return names


@pytest.mark.skipif(not (ROOT / "tradeexecutor" / "webhook" / "metrics.py").exists(), reason="no /metrics yet")
def test_alert_and_dashboard_metrics_are_exported_by_a_live_app() -> None:
    exported = live_metric_names()
    used = set().union(*(promql_metric_names(str(rule["expr"])) for rule in alert_rules()))
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used |= set().union(*(promql_metric_names(expr) for expr in dashboard_exprs(dashboard)))
    missing = used - exported - SCRAPE_SERIES
    assert not missing, f"/metrics does not export {sorted(missing)}"


def selectors(expr: str) -> Iterator[tuple[str, str]]:
    """(metric name, label matchers) of every selector of a PromQL expression."""
    for match in re.finditer(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{[^}]*\})?", expr):
        if match.group(1) in METRIC_NAMES | SCRAPE_SERIES:
            yield match.group(1), match.group(2) or ""


def test_up_is_always_read_for_the_executors_job_and_every_panel_selects_it() -> None:
    """Prometheus's `up` covers every job: the rules must read the executors' (a job without a target is
    then absent), and the dashboard must never show Prometheus's own process (Resident memory with All)."""
    for rule in alert_rules():
        for name, matchers in selectors(str(rule["expr"])):
            if name == "up":
                assert f'job="{JOB}"' in matchers, f"{rule['alert']}: {name}{matchers}"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for expr in dashboard_exprs(dashboard):
        found = list(selectors(expr))
        assert found, expr
        for name, matchers in found:
            assert f'job="{JOB}"' in matchers, f"dashboard: {name}{matchers} may match other jobs"
    variable = dashboard["templating"]["list"][0]
    assert variable["query"]["query"] == f'label_values(up{{job="{JOB}"}}, instance)', (
        "the Executor variable must list executors that never started too")


def test_status_panels_show_the_current_value_not_the_last_one_of_the_day() -> None:
    """A stat panel over a range reduces to the last value of a series that went stale hours ago: a killed
    executor shows green. Instant queries show what is true now."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    stats = [panel for panel in dashboard["panels"] if panel["type"] in ("stat", "table")]
    assert len(stats) >= 7
    for panel in stats:
        for target in panel["targets"]:
            assert target.get("instant") is True and target.get("range") in (False, None), panel["title"]
    crashes = next(panel for panel in stats if panel["title"] == "Crashes (24h)")
    assert crashes["fieldConfig"]["defaults"]["decimals"] == 0
    assert "increase(" not in crashes["targets"][0]["expr"], "increase() extrapolates: fractions, undercounts"


def test_every_alert_and_metric_is_documented_with_what_to_do() -> None:
    """docs/production.md: one row per alert (fires when, severity, what to do) and per metric name."""
    text = (ROOT / "docs" / "production.md").read_text(encoding="utf-8")
    for alert in alert_rules():
        rows = [line for line in text.splitlines() if line.startswith(f"| `{alert['alert']}` |")]
        assert len(rows) == 1, f"{alert['alert']}: one row in the alerts table of docs/production.md"
        cells = [cell.strip() for cell in rows[0].strip("|").split(" | ")]
        assert len(cells) == 4 and cells[2] == alert["labels"]["severity"] and cells[3], rows[0]
    for name in METRIC_NAMES:
        assert f"`{name}" in text, f"{name} is not documented in docs/production.md"


def rule(name: str) -> dict[str, Any]:
    return next(rule for rule in alert_rules() if rule["alert"] == name)


def longest_scrape_interval() -> float:
    """The slowest scrape of the shipped configs (compose's Prometheus, the Kubernetes ServiceMonitor)."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    intervals = [duration_seconds(config["global"]["scrape_interval"])]
    monitor = yaml.safe_load((KUBERNETES / "servicemonitor.yaml").read_text(encoding="utf-8"))
    intervals += [duration_seconds(endpoint["interval"]) for endpoint in monitor["spec"]["endpoints"]]
    return max(intervals)


def test_cycle_overdue_and_health_failing_fire_before_the_watchdog_ends_the_hang() -> None:
    """Under the exit crash policy the watchdog kills a hung process at --watchdog-seconds; an alert on
    the hang must fire first, counting the threshold, `for:`, and a scrape plus an evaluation of delay."""
    from tradeexecutor.cli.main import cli

    defaults = {param.name: param.default for param in cli.commands["start"].params}
    watchdog_default, grace_default = defaults["watchdog_seconds"], defaults["health_grace_seconds"]
    assert isinstance(watchdog_default, (int, float)) and isinstance(grace_default, (int, float))
    watchdog, grace = float(watchdog_default), float(grace_default)
    assert watchdog > 0
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    delay = longest_scrape_interval() + duration_seconds(config["global"]["evaluation_interval"])
    overdue = rule("CycleOverdue")
    match = re.fullmatch(r"tradeexecutor_next_cycle_overdue_seconds > (\d+)", overdue["expr"])
    assert match is not None, overdue["expr"]
    threshold = float(match.group(1))
    assert threshold + duration_seconds(overdue["for"]) + delay < watchdog
    assert grace + duration_seconds(rule("HealthFailing")["for"]) + delay < watchdog


def test_kubernetes_scrape_uses_the_rules_job_and_a_stable_instance() -> None:
    """The operator names the job after each Service unless jobLabel says otherwise, and `instance` after the
    pod's address, which changes when the pod is re-created."""
    monitor = yaml.safe_load((KUBERNETES / "servicemonitor.yaml").read_text(encoding="utf-8"))
    job_label = monitor["spec"]["jobLabel"]
    services = [doc for path in KUBERNETES.rglob("service.yaml") for doc in yaml.safe_load_all(path.read_text())]
    assert services and all(service["metadata"]["labels"][job_label] == JOB for service in services)
    relabelings = monitor["spec"]["endpoints"][0]["relabelings"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "instance"} in relabelings
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert JOB in {job["job_name"] for job in config["scrape_configs"]}


# ---------------------------------------------------------------------------------------------------
# Kubernetes


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8"))
    documents: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = KUBERNETES / resource
        assert path.is_file(), f"kustomization lists missing {resource}"
        documents.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    listed = {str(p.relative_to(KUBERNETES)) for p in KUBERNETES.rglob("*.yaml")} - {"kustomization.yaml"}
    assert listed == set(kustomization["resources"]), "every manifest must be listed in kustomization.yaml"
    return documents


def of_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def test_kubernetes_one_statefulset_with_one_replica_per_strategy(manifests: list[dict[str, Any]]) -> None:
    statefulsets = of_kind(manifests, "StatefulSet")
    assert set(statefulsets) == {"sma-crossover", "eurusd-breakout"}
    configmaps = of_kind(manifests, "ConfigMap")
    strategies = set()
    for name, statefulset in statefulsets.items():
        spec = statefulset["spec"]
        assert spec["replicas"] == 1, f"{name}: a strategy must never run twice at once"
        assert spec["serviceName"] in of_kind(manifests, "Service")
        pod = spec["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= 30
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["args"] == ["start"]
        (ref,) = container["envFrom"]
        env = configmaps[ref["configMapRef"]["name"]]["data"]
        assert env["TRADEEXECUTOR_HOST"] == "0.0.0.0" and env["TRADEEXECUTOR_STATE_DIR"] == "/state"
        strategy = env["TRADEEXECUTOR_STRATEGY_FILE"]
        assert (ROOT / "strategies" / Path(strategy).name).is_file()
        strategies.add(strategy)
        assert statefulset["spec"]["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert len(strategies) == len(statefulsets)
    text = (KUBERNETES / "sma-crossover" / "statefulset.yaml").read_text()
    assert "never run twice" in text, "replicas: 1 needs its reason next to it"


def test_kubernetes_probes_state_volume_and_ports(manifests: list[dict[str, Any]]) -> None:
    for name, statefulset in of_kind(manifests, "StatefulSet").items():
        spec = statefulset["spec"]
        (container,) = spec["template"]["spec"]["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/ping", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz", name
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"http": WEBHOOK_PORT}
        claims = {claim["metadata"]["name"]: claim for claim in spec["volumeClaimTemplates"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        assert mounts["state"] == "/state" and "state" in claims
        assert claims["state"]["spec"]["accessModes"] == ["ReadWriteOnce"]
        annotations = spec["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(WEBHOOK_PORT)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_kubernetes_credentials_come_from_a_placeholder_secret(manifests: list[dict[str, Any]]) -> None:
    secrets = of_kind(manifests, "Secret")
    assert secrets
    for secret in secrets.values():
        for key, value in (secret.get("stringData") or {}).items():
            assert value == "change-me", f"secret {key} must be a placeholder, never a real value"
        assert not secret.get("data"), "no encoded values in version control"
    known = package_envvars()
    for name, statefulset in of_kind(manifests, "StatefulSet").items():
        (container,) = statefulset["spec"]["template"]["spec"]["containers"]
        secret_refs = [item for item in container.get("env", []) if "secretKeyRef" in item.get("valueFrom", {})]
        assert secret_refs, f"{name}: credentials must come from the Secret"
        for item in secret_refs:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]]["stringData"], f"{name}: {ref} not in the Secret"
            assert item["name"] in known, f"{name}: the executor does not read {item['name']}"
        assert all("value" not in item for item in container.get("env", [])), "plain values belong in the ConfigMap"
    for configmap in of_kind(manifests, "ConfigMap").values():
        assert set(configmap["data"]) <= start_command_envvars(), "ConfigMap sets an unknown variable"
        assert not any("PASSWORD" in key or "SECRET" in key for key in configmap["data"])


def test_kubernetes_service_and_servicemonitor_reach_the_pods(manifests: list[dict[str, Any]]) -> None:
    services = of_kind(manifests, "Service")
    statefulsets = of_kind(manifests, "StatefulSet")
    for statefulset in statefulsets.values():
        service = services[statefulset["spec"]["serviceName"]]
        pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert {port["name"] for port in service["spec"]["ports"]} == {"http"}
    (monitor,) = of_kind(manifests, "ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [name for name, service in services.items()
                if selector.items() <= service["metadata"]["labels"].items()]
    assert sorted(selected) == sorted(statefulsets)
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
    secrets = of_kind(manifests, "Secret")
    for half in ("username", "password"):
        ref = endpoint["basicAuth"][half]
        assert ref["key"] in secrets[ref["name"]]["stringData"]


def test_kubernetes_kustomization_builds() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = run_tool(kubectl, "kustomize", str(KUBERNETES))
    assert result.returncode == 0, result.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc]
    assert kinds.count("StatefulSet") == 2 and "ServiceMonitor" in kinds and "Secret" in kinds
    namespaces = {doc["metadata"].get("namespace") for doc in yaml.safe_load_all(result.stdout)
                  if doc and doc["kind"] != "Namespace"}
    assert namespaces == {"tradeexecutor"}


def test_dockerfile_extras_build_arg_installs_project_extras(tmp_path: Path) -> None:
    """--build-arg EXTRAS=distributed,search gives the image sweep workers need; empty installs none."""
    stage = final_stage(dockerfile_instructions())
    assert 'EXTRAS=""' in [rest for keyword, rest in stage if keyword == "ARG"]
    (install,) = [rest for keyword, rest in stage if keyword == "RUN" and "/wheels" in rest and "pip install" in rest]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "tradeexecutor-0.1.0-py3-none-any.whl").write_bytes(b"")
    command = install.split("&&")[0].replace("pip install", "printf '%s\\n'").replace("/wheels", str(wheels))
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert {"distributed", "search"} <= set(extras)
    for value, suffix in (("", ""), ("distributed,search", "[distributed,search]")):
        result = subprocess.run(["sh", "-c", command], env={"EXTRAS": value, "PATH": os.environ["PATH"]},
                                capture_output=True, text=True, check=True)
        assert result.stdout.strip() == f"{wheels}/tradeexecutor-0.1.0-py3-none-any.whl{suffix}"


@pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="the distributed extra is not installed")
def test_sweep_worker_image_runs_the_dask_commands_charts_and_operators_call(tmp_path: Path) -> None:
    """deploy/dask: the worker image's dask-worker and dask-scheduler commands are Dask's, and the helm values and
    the DaskCluster run that image with one thread per worker."""
    instructions = dockerfile_instructions(DEPLOY / "dask" / "Dockerfile")
    assert [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"] == ["[]"]
    (shims,) = [rest for keyword, rest in instructions if keyword == "RUN" and "dask-worker" in rest]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = shims.replace("/usr/local/bin", str(bin_dir)).replace("&& dask --version", "")
    subprocess.run(["sh", "-c", script], check=True)
    path = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    for command, usage in (("dask-worker", "Usage: dask worker"), ("dask-scheduler", "Usage: dask scheduler")):
        result = subprocess.run([str(bin_dir / command), "--help"], capture_output=True, text=True,
                                env={**os.environ, "PATH": path}, timeout=120)
        assert result.returncode == 0 and usage in result.stdout, result.stdout + result.stderr
    values = yaml.safe_load((DEPLOY / "dask" / "helm-values.yaml").read_text(encoding="utf-8"))
    assert values["worker"]["image"]["dask_worker"] == "dask-worker"
    assert values["worker"]["resources"]["limits"]["cpu"] == 1  # the chart passes it on as --nthreads
    assert values["worker"]["image"]["tag"] == values["scheduler"]["image"]["tag"] == "sweep-worker"
    cluster = yaml.safe_load((DEPLOY / "dask" / "daskcluster.yaml").read_text(encoding="utf-8"))
    assert cluster["kind"] == "DaskCluster"
    (worker,) = cluster["spec"]["worker"]["spec"]["containers"]
    (scheduler,) = cluster["spec"]["scheduler"]["spec"]["containers"]
    assert worker["image"] == scheduler["image"] and worker["image"].endswith(":sweep-worker")
    assert worker["args"][0] == "dask-worker" and worker["args"][worker["args"].index("--nthreads") + 1] == "1"
    assert scheduler["args"] == ["dask-scheduler"]


def test_the_helm_instructions_port_forward_the_service_the_dask_chart_names() -> None:
    """The dask/dask chart names its scheduler service ``<fullname>-scheduler``, where fullname is the release name
    when it contains 'dask' and ``<release>-dask`` otherwise (the chart's ``dask.fullname`` helper): ``helm install
    sweeps dask/dask`` serves ``svc/sweeps-dask-scheduler``; the docs said ``svc/sweeps-scheduler``, which does not
    exist."""
    for path in (ROOT / "docs" / "optimize.md", DEPLOY / "dask" / "helm-values.yaml"):
        text = path.read_text(encoding="utf-8")
        (release,) = re.findall(r"helm install (\S+) dask/dask", text)
        (service,) = re.findall(r"kubectl port-forward svc/(\S+) 8786", text)
        fullname = release if "dask" in release else f"{release}-dask"
        assert service == f"{fullname}-scheduler", path

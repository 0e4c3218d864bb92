"""``tradeexecutor check SPEC``: are the credentials the spec's mode needs set? Names only, never values.

SPEC is a run spec file, or a run (folder, id or ref), whose ``run_spec.yaml`` is checked and whose
``readiness.json`` receives the result. Exit code 0 when ready (disabled or configured), 1 for
missing credentials, 2 for an invalid config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tradeexecutor.cli.common import user_errors
from tradeexecutor.cli.metrics_cmd import resolve_run_dir, runs_dir_option
from tradeexecutor.errors import ConfigError


@click.command("check")
@click.argument("spec")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the result as JSON to this file (a run gets its readiness.json anyway).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of text.")
@runs_dir_option
@user_errors
def check_command(spec: str, output: Path | None, as_json: bool, runs_dir: Path) -> None:
    """Report whether each credential SPEC's mode needs is set in the environment (by name; values never shown)."""
    from tradeexecutor.layout import RunPaths
    from tradeexecutor.runs.readiness import check_spec, write_readiness

    spec_path = Path(spec)
    run_dir: Path | None = None
    if not spec_path.is_file():
        run_dir = resolve_run_dir(spec, runs_dir)
        spec_path = RunPaths(run_dir).spec
        if not spec_path.is_file():
            raise ConfigError(f"{run_dir} holds no {spec_path.name}")
    readiness = check_spec(spec_path)
    targets = [path for path in (RunPaths(run_dir).readiness if run_dir else None, output) if path is not None]
    for target in targets:
        write_readiness(readiness, target)
    if as_json:
        click.echo(json.dumps(readiness.to_dict(), indent=2))
    else:
        for line in readiness.lines():
            click.echo(line)
        for target in targets:
            click.echo(f"wrote {target}")
    sys.exit(readiness.exit_code)

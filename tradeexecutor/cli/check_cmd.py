"""``tradeexecutor check SPEC``: are the credentials the spec's mode needs set? Names only, never values.

SPEC is a run spec file, or a run (folder, id or ref), whose ``run_spec.yaml`` is checked and whose
``readiness.json`` receives the result. Exit code 0 when ready (disabled or configured), 1 for
missing credentials (or, with ``--probe``, an exchange that could not be reached), 2 for an invalid config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tradeexecutor.cli.common import user_errors
from tradeexecutor.cli.metrics_cmd import resolve_run_dir, runs_dir_option
from tradeexecutor.cli.options import config_options, config_values
from tradeexecutor.config import CcxtVenueConfig
from tradeexecutor.errors import ConfigError


@click.command("check")
@click.argument("spec")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the result as JSON to this file (a run gets its readiness.json anyway).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of text.")
@click.option("--probe", is_flag=True,
              help="Also probe the exchange (the --exchange* settings): one unsigned, read-only request for its "
                   "clock; probe_ok, probe_http_error, probe_timeout or probe_unreachable (exit 1 unless ok).")
@runs_dir_option
@config_options(CcxtVenueConfig)
@user_errors
def check_command(spec: str, output: Path | None, as_json: bool, probe: bool, runs_dir: Path, **options: Any) -> None:
    """Report whether each credential SPEC's mode needs is set in the environment (by name; values never shown)."""
    from dataclasses import replace

    from tradeexecutor.config import build_config
    from tradeexecutor.layout import RunPaths
    from tradeexecutor.runs.readiness import check_spec, write_readiness

    spec_path = Path(spec)
    run_dir: Path | None = None
    if not spec_path.is_file():
        run_dir = resolve_run_dir(spec, runs_dir)
        spec_path = RunPaths(run_dir).spec
        if not spec_path.is_file():
            raise ConfigError(f"{run_dir} holds no {spec_path.name}")
    exchange: CcxtVenueConfig = build_config(CcxtVenueConfig, config_values(CcxtVenueConfig, options))
    readiness = check_spec(spec_path)
    if probe:
        from tradeexecutor.venue.probe import probe_exchange

        if exchange.exchange is None:  # no --exchange: the spec's own (a paper or live spec names one)
            from tradeexecutor.runs.spec import load_spec

            loaded = load_spec(spec_path)  # a live spec's exchange, read without its credentials (a read-only probe)
            exchange = loaded.daemon_config(Path("state"), mode="paper" if loaded.mode == "live" else loaded.mode).exchange
        readiness = replace(readiness, probe=probe_exchange(exchange))
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

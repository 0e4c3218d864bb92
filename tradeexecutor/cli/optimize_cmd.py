"""``tradeexecutor optimize SPEC --param fast=5..30:5 --param slow=20,30,50``: a parameter sweep of backtest runs.

Every grid point becomes a backtest run of its own (with its artifacts) in the runs folder; the
table ranked by ``--rank-by`` is printed and written as results.csv and results.md. Bad
``--param`` syntax, unknown parameters and wrong types stop with one line and exit 2 before
anything runs.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from tradeexecutor.cli.common import user_errors
from tradeexecutor.cli.metrics_cmd import runs_dir_option


@click.command("optimize")
@click.argument("spec_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--param", "params", multiple=True, metavar="NAME=VALUES",
              help="Values of one strategy parameter: a range FIRST..LAST:STEP (inclusive), a list a,b,c or one "
                   "value; repeat for each parameter swept.")
@click.option("--rank-by", default="sharpe", show_default=True,
              help="Summary statistic to rank by (sharpe, sortino, total_return, cagr, max_drawdown, ...); "
                   "drawdown, volatility, fees and rejections rank lowest first.")
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Worker processes. Default: every core.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for results.csv, results.md and the point specs. "
                   "Default: output/optimize-<spec>-<UTC time>.")
@click.option("--ref-prefix", default=None, help="Give the runs refs PREFIX-001, PREFIX-002, ...")
@runs_dir_option
@user_errors
def optimize_command(spec_file: Path, params: tuple[str, ...], rank_by: str, processes: int | None,
                     output: Path | None, ref_prefix: str | None, runs_dir: Path) -> None:
    """Backtest every combination of the --param values of SPEC_FILE in parallel and rank them."""
    from tradeexecutor.runs.optimize import build_grid, check_rank_by, run_grid
    from tradeexecutor.runs.registry import check_ref
    from tradeexecutor.runs.spec import load_spec

    # Everything is checked before anything runs or is written.
    check_rank_by(rank_by)
    if ref_prefix is not None:
        check_ref(f"{ref_prefix}-001")
    spec = load_spec(spec_file)
    grid = build_grid(spec, list(params))
    folder = output or Path("output") / f"optimize-{spec_file.stem}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    click.echo(f"{len(grid)} backtests of {spec_file} into {runs_dir}", err=True)

    done = 0

    def progress(point: object) -> None:
        nonlocal done
        done += 1
        if sys.stderr.isatty():
            click.echo(f"\r{done}/{len(grid)}", err=True, nl=False)

    result = run_grid(spec, grid, runs_dir=runs_dir, rank_by=rank_by, processes=processes, output_dir=folder,
                      ref_prefix=ref_prefix, progress=progress)
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(result.markdown)
    click.echo(f"wrote {result.csv_path} and {result.markdown_path}")
    if result.failed:
        click.echo(f"error: {result.failed} of {len(grid)} backtests failed (see the status column)", err=True)
        sys.exit(1)

"""``tradeexecutor optimize SPEC --param fast=5..30:5 --param slow=20,30,50``: a parameter sweep, ranked in-sample, checked out-of-sample.

Every point gets a row (values, figures over the whole period, in-sample and out-of-sample, and
fingerprints) in the sweep's folder as it finishes; by default (``--reports best``) the best
``--best`` points (5) also become full backtest runs with state, journal and report, and the sweep
keeps its charts' data (``tradeexecutor report FOLDER`` draws them, on demand like a run's); ``--reports all`` makes every point a full run, ``--reports none`` none (``--resume
--reports best`` makes them later without running a point again). Points run on local processes by
default, or on a Dask cluster (``--cluster``, extra ``distributed``); ``--search random|tpe``
samples the space with Optuna (extra ``search``). Bad options stop with one line and exit 2
before anything runs; Ctrl+C keeps the finished points, prints the command that resumes the
sweep, and exits 130.
"""

from __future__ import annotations

import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tradeexecutor.cli.common import user_errors
from tradeexecutor.cli.metrics_cmd import runs_dir_option
from tradeexecutor.cli.options import config_options, config_values
from tradeexecutor.config import build_config
from tradeexecutor.layout import SweepFiles
from tradeexecutor.runs.sweep_options import SweepOptions

if TYPE_CHECKING:
    from tradeexecutor.runs.sweep import SweepResult
    from tradeexecutor.runs.sweep_eval import PointResult

#: Exit code of an interrupted sweep (128 + SIGINT, as shells report Ctrl+C).
EXIT_INTERRUPTED = 130


@click.command("optimize")
@click.argument("spec_file", type=click.Path(dir_okay=False, path_type=Path))
@config_options(SweepOptions, select=lambda item: item.name != "ref_prefix")
@click.option("--cluster", default=None, envvar="DASK_SCHEDULER_ADDRESS", show_envvar=True, metavar="ADDRESS",
              help="Run the points on an existing Dask cluster, such as tcp://scheduler:8786 "
                   "(pip install \"tradeexecutor[distributed]\"; workers need the same tradeexecutor version).")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The sweep's folder: sweep.json, points.jsonl, results.csv, results.md, charts, point specs. "
                   "Default: output/optimize-<spec>-<UTC time>.")
@click.option("--resume", is_flag=True, default=False,
              help="Carry on the sweep in --output: points already done there are not run again.")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar or progress messages.")
@config_options(SweepOptions, select=lambda item: item.name == "ref_prefix")
@runs_dir_option
@user_errors
def optimize_command(spec_file: Path, cluster: str | None, output: Path | None, resume: bool, quiet: bool,
                     runs_dir: Path, **given: Any) -> None:
    """Backtest combinations of the --param values of SPEC_FILE in parallel; rank in-sample, check out-of-sample."""
    from tradeexecutor.runs.spec import load_spec
    from tradeexecutor.runs.sweep import plan_sweep, run_sweep

    if resume and output is None:
        raise click.UsageError("--resume needs --output: the folder of the sweep to carry on")
    options: SweepOptions = build_config(SweepOptions, config_values(SweepOptions, given), cluster=cluster or None)
    folder = output or Path("output") / f"optimize-{spec_file.stem}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    try:
        plan = plan_sweep(load_spec(spec_file), options)  # everything checked before anything runs or is written
        progress = _Progress(quiet)
        result = run_sweep(plan, output_dir=folder, runs_dir=runs_dir, resume=resume, progress=progress)
        progress.close()
    except KeyboardInterrupt:
        click.echo("interrupted before any point ran; nothing was written", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if result.interrupted:
        done = sum(1 for row in result.results if row.status != "lost")
        click.echo(f"interrupted: {done} of {result.total} points done and kept in {SweepFiles(folder).points}; "
                   f"resume with: {_resume_command(folder, output is None)}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    _print(result, folder, output is None)


def _resume_command(folder: Path, add_output: bool) -> str:
    """The exact command line that carries this sweep on."""
    words = ["tradeexecutor", *sys.argv[1:]]
    if add_output:
        words += ["--output", str(folder)]
    if "--resume" not in words:
        words.append("--resume")
    return shlex.join(words)


def _without_option(words: list[str], option: str) -> list[str]:
    """``words`` less ``option`` and its value (``--reports none`` or ``--reports=none``)."""
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word == option:
            skip = True
            continue
        if not word.startswith(option + "="):
            kept.append(word)
    return kept


def _print(result: SweepResult, folder: Path, add_output: bool) -> None:
    from tradeexecutor.runs.sweep_report import PRINTED_ROWS, markdown_report

    click.echo(markdown_report(result, limit=PRINTED_ROWS))
    click.echo("")
    click.echo(f"wrote {SweepFiles(folder).results_md} and {SweepFiles(folder).results_csv}")
    runs = sum(1 for row in result.results if row.run_id)
    if runs:
        click.echo(f"{runs} full run{'s' if runs != 1 else ''} with reports: see the run column "
                   "(tradeexecutor runs show RUN; tradeexecutor report RUN draws its charts)")
    if SweepFiles(folder).chart_data in result.files:
        click.echo(f"the sweep's charts: {shlex.join(['tradeexecutor', 'report', str(folder)])} draws them")
    elif result.plan.options.reports == "none" and not result.failed:
        best = result.plan.options.best
        words = _without_option(shlex.split(_resume_command(folder, add_output)), "--reports")
        click.echo(f"full runs (state, journal, report) of the best {best} and the sweep's chart data, "
                   f"without running any point again: {shlex.join(words)} --reports best")
    if result.failed:
        click.echo(f"error: {result.failed} of {len(result.results)} points failed (see the status column)", err=True)
        sys.exit(1)


class _Progress:
    """A tqdm bar with an ETA on stderr (off when stderr is not a terminal, or with --quiet)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar: Any = None

    def start(self, total: int, done: int, description: str) -> None:
        if not self.quiet:
            resumed = f", {done} already done" if done else ""
            click.echo(f"{total} points on {description}{resumed}", err=True)
        if self.enabled:
            from tqdm import tqdm

            try:
                size = os.get_terminal_size(sys.stderr.fileno())
            except OSError:
                size = os.terminal_size((0, 0))
            # tqdm hides its bar on a terminal that reports no size (a bare pty, some CI runners): assume 80x24.
            sized = size.columns > 0 and size.lines > 0
            self.bar = tqdm(total=total, initial=done, unit="pt", file=sys.stderr, desc="sweep", leave=False,
                            dynamic_ncols=sized, ncols=None if sized else 80, nrows=None if sized else 24)

    def advance(self, row: PointResult) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def phase(self, text: str) -> None:
        self.close()
        if not self.quiet and text == "reports":
            click.echo("making full runs of the chosen points (state, journal, report)", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

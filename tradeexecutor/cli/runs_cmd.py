"""``tradeexecutor runs``: create runs from specs, start and stop them, and read their journal and orders.

Every command takes a run id or a ref. Runs live in ``--runs-dir`` (``TRADEEXECUTOR_RUNS_DIR``,
default ``./runs``); see :mod:`tradeexecutor.runs.run` for the folder layout. Each verb only parses
and prints: the work is :mod:`tradeexecutor.runs.verbs`, which the runner API calls too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from tradeexecutor.cli.client_cmd import LOG_FORMATS, LOG_LEVELS, LogWriter, log_row, resolve_timezone
from tradeexecutor.cli.common import FloatRange, env, user_errors

#: Most journal entries one read returns (runs.verbs.LOG_LIMIT, kept here so --help needs no import of it).
TAIL_LIMIT = 1000

#: Options a run spec does not hold although it has the key: each run of ``runs`` gets a free port.
SPEC_FREE_OPTIONS = ("port",)


def spec_options() -> dict[str, tuple[str, str]]:
    """Options of ``start`` and ``backtest`` whose values a run spec holds: parameter → (option, spec key)."""
    from tradeexecutor.config import walk_settings
    from tradeexecutor.settings import DaemonConfig

    return {item.param: (item.option, item.about.spec) for item in walk_settings(DaemonConfig)
            if item.about.spec and item.param not in SPEC_FREE_OPTIONS}


def spec_for_command(spec_file: Path | None, strategy_file: Path | None) -> Any:
    """The RunSpec of ``start --spec`` / ``backtest --spec`` (None without --spec).

    A spec and a STRATEGY_FILE together, or neither, is an error; so is an option on the command
    line that the spec holds (the spec and the TRADEEXECUTOR_* variables decide those).
    """
    from click.core import ParameterSource

    from tradeexecutor.errors import ConfigError
    from tradeexecutor.runs.spec import load_spec

    ctx = click.get_current_context()
    from_command_line = ctx.get_parameter_source("strategy_file") is ParameterSource.COMMANDLINE
    if spec_file is None:
        if strategy_file is None:
            raise ConfigError("give a STRATEGY_FILE, or --spec RUN_SPEC (a YAML run spec naming its strategy_file)")
        return None
    if strategy_file is not None and from_command_line:
        raise ConfigError(f"give either STRATEGY_FILE or --spec, not both: {spec_file} names its own strategy_file")
    for name, (option, key) in spec_options().items():
        if name in ctx.params and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            raise ConfigError(f"{option} cannot be combined with --spec: set {key} in {spec_file}, or its "
                              "TRADEEXECUTOR_* environment variable")
    return load_spec(spec_file)


def _runs(ctx: click.Context) -> Any:
    from tradeexecutor.runs.run import Runs

    return Runs(ctx.obj["runs_dir"])


@click.group("runs")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"),
              show_default=True, envvar=env("RUNS_DIR"), show_envvar=True,
              help="Folder holding the runs and their registry.")
@click.pass_context
def runs_command(ctx: click.Context, runs_dir: Path) -> None:
    """Create, start, stop and inspect runs: a strategy with a pinned config, its state and its results."""
    ctx.ensure_object(dict)
    ctx.obj["runs_dir"] = runs_dir


@runs_command.command("create")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--ref", default=None, help="A unique name for the run, usable wherever an id is.")
@click.option("--start", "start_now", is_flag=True, help="Start the run once created.")
@click.option("--upsert", is_flag=True, help="Update the run holding --ref instead, while it is still new.")
@click.option("--tail", is_flag=True, help="With --start: follow the run's journal until it ends.")
@click.option("--port", type=int, default=None, help="Webhook port of a replay or paper run (default: a free one).")
@click.pass_context
@user_errors
def create_command(ctx: click.Context, spec: Path, ref: str | None, start_now: bool, upsert: bool, tail: bool,
                   port: int | None) -> None:
    """Create a run from the run spec SPEC (environment variables override its values, then it is pinned)."""
    from tradeexecutor.runs import verbs

    runs = _runs(ctx)
    result = verbs.create(runs, spec, ref=ref, upsert=upsert)
    record = result["run"]
    verb = "created" if result["created"] else "updated"
    click.echo(f"{verb} run {record['id']}" + (f" (ref {record['ref']})" if record["ref"] else "")
               + f": {record['name']}, {record['mode']} — {result['folder']}")
    if start_now:
        _start(runs, record["id"], port, tail)


@runs_command.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@click.pass_context
@user_errors
def ls_command(ctx: click.Context, as_json: bool) -> None:
    """List the runs: ID, REF, NAME, MODE, STATUS."""
    from tradeexecutor.runs import verbs

    records = verbs.ls(_runs(ctx))
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    rows = [("ID", "REF", "NAME", "MODE", "STATUS")]
    rows += [(r["id"], r["ref"] or "-", r["name"], r["mode"], r["status"]) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@runs_command.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print metadata.json as it is.")
@click.pass_context
@user_errors
def show_command(ctx: click.Context, run: str, as_json: bool) -> None:
    """Show one run: status, timeline, fingerprints and summary."""
    from tradeexecutor.runs import verbs
    from tradeexecutor.stats.formatting import KEY_FIGURES, format_statistic

    shown = verbs.show(_runs(ctx), run)
    record, meta = shown["run"], shown["metadata"]
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    prints = meta.get("fingerprints") or {}
    executor = meta.get("executor") or {}
    lines = [
        ("id", record["id"]), ("ref", record["ref"] or "-"), ("name", record["name"]), ("mode", record["mode"]),
        ("status", record["status"]), ("folder", shown["folder"]),
        ("strategy", f"{meta.get('strategy_name')} (version {str(meta.get('strategy_version'))[:12]})"),
        ("created", meta.get("created_at") or "-"), ("started", meta.get("started_at") or "-"),
        ("stopped", meta.get("stopped_at") or "-"),
        ("config", str(prints.get("config", "-"))), ("code", str(prints.get("code", "-"))),
        ("package", str(prints.get("package_version", "-"))),
    ]
    lines += [("data", f"{sha} {name}") for name, sha in (prints.get("data") or {}).items()]
    if executor.get("url"):
        lines.append(("webhook", str(executor["url"])))
    if meta.get("copied_from"):
        lines.append(("copied from", str(meta["copied_from"])))
    if meta.get("error"):
        lines.append(("error", str(meta["error"])))
    summary = meta.get("summary") or {}
    for key in KEY_FIGURES:
        if key in summary:
            lines.append((key.replace("_", " "), format_statistic(key, summary[key])))
    width = max(len(label) for label, _ in lines) + 1
    for label, value in lines:
        click.echo(f"{(label + ':').ljust(width)} {value}")
    click.echo("timeline:")
    for entry in meta.get("timeline", []):
        detail = f"  {entry['detail']}" if entry.get("detail") else ""
        click.echo(f"  {entry.get('at')}  {entry.get('event')}{detail}")


@runs_command.command("start")
@click.argument("run")
@click.option("--port", type=int, default=None, help="Webhook port of a replay or paper run (default: a free one).")
@click.option("--tail", is_flag=True, help="Follow the run's journal until it ends.")
@click.pass_context
@user_errors
def start_command(ctx: click.Context, run: str, port: int | None, tail: bool) -> None:
    """Start a run: a backtest runs here to completion; a replay or paper run becomes its own executor process."""
    _start(_runs(ctx), run, port, tail)


def _start(runs: Any, run: str, port: int | None, tail: bool) -> None:
    from tradeexecutor.runs import verbs
    from tradeexecutor.stats.formatting import format_statistic

    result = verbs.start(runs, run, port=port)
    for note in result["notes"]:
        click.echo(note, err=True)
    record = result["run"]
    label = record["label"]
    if record["mode"] == "backtest":
        summary = result["summary"] or {}
        info = result["backtest"] or {}
        click.echo(f"run {label} {record['status']}: {info.get('bars', '?')} bars, {info.get('cycles', '?')} "
                   f"cycles in {info.get('seconds', '?')}s; final equity "
                   f"{format_statistic('final_equity', summary.get('final_equity'))}, total return "
                   f"{format_statistic('total_return', summary.get('total_return'))}, "
                   f"{format_statistic('trade_count', summary.get('trade_count'))} trades")
    elif record["status"] == "starting":  # its webhook did not answer within the wait; it may still come up
        click.echo(f"run {label} is still starting (pid {record['pid']}); follow it with: tradeexecutor runs "
                   f"logs {label} --tail, or read {result['log']}")
    else:
        url = result["url"]
        click.echo(f"run {label} {record['status']}" + (f": webhook {url}" if url else "")
                   + f" (pid {record['pid']}); stop it with: tradeexecutor runs stop {label}")
    if tail:
        _follow(runs, record["id"], "table", None, None, None, 100, 1.0)


@runs_command.command("stop")
@click.argument("run")
@click.option("--timeout", type=FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds to wait for a graceful exit before killing the executor.")
@click.pass_context
@user_errors
def stop_command(ctx: click.Context, run: str, timeout: float) -> None:
    """Stop a running run (SIGTERM, then wait); a live run's positions stay open."""
    from tradeexecutor.runs import verbs

    result = verbs.stop(_runs(ctx), run, timeout=timeout)
    for note in result["notes"]:
        click.echo(note, err=True)
    click.echo(f"run {result['run']['label']} {result['run']['status']}")


@runs_command.command("reset")
@click.argument("run")
@click.pass_context
@user_errors
def reset_command(ctx: click.Context, run: str) -> None:
    """Clear a backtest, replay or paper run's results (state, reports) so it starts fresh; refused for live runs."""
    from tradeexecutor.runs import verbs

    record = verbs.reset(_runs(ctx), run)["run"]
    click.echo(f"run {record['label']} reset: status {record['status']}")


@runs_command.command("copy")
@click.argument("run")
@click.option("--ref", default=None, help="A unique name for the copy.")
@click.pass_context
@user_errors
def copy_command(ctx: click.Context, run: str, ref: str | None) -> None:
    """Make a new run with the same pinned strategy and config."""
    from tradeexecutor.runs import verbs

    result = verbs.copy(_runs(ctx), run, ref=ref)
    record = result["run"]
    click.echo(f"created run {record['id']}" + (f" (ref {record['ref']})" if record["ref"] else "")
               + f" as a copy of {run} — {result['folder']}")


@runs_command.command("set")
@click.argument("run")
@click.argument("assignments", nargs=-1, required=True)
@click.pass_context
@user_errors
def set_command(ctx: click.Context, run: str, assignments: tuple[str, ...]) -> None:
    """Change spec values of a new run: runs set REF core.fee=0.002 strategy.fast=5 environment.start=2010-01-01."""
    from tradeexecutor.runs import verbs

    record = verbs.set_values(_runs(ctx), run, list(assignments))["run"]
    click.echo(f"run {record['label']} updated: {' '.join(assignments)}")


@runs_command.command("logs")
@click.argument("run")
@click.option("--tail", "-f", "tail", is_flag=True, help="Keep following new entries until the run ends or Ctrl+C.")
@click.option("--format", "fmt", type=click.Choice(LOG_FORMATS), default="table", show_default=True,
              help="Output format.")
@click.option("--timezone", "timezone_name", envvar=env("TIMEZONE"), show_envvar=True, default=None,
              help="Show times in this IANA time zone (e.g. UTC, Europe/Helsinki); default: the local zone.")
@click.option("--level", type=click.Choice(LOG_LEVELS), default=None, help="Only entries at this level or above.")
@click.option("--since", default=None, help="Only entries at or after this time: RFC 3339 with a zone "
              "(2024-05-01T12:00:00Z), a date (midnight UTC) or Unix seconds.")
@click.option("--limit", type=click.IntRange(1, TAIL_LIMIT), default=100, show_default=True,
              help="How many of the most recent entries to show first.")
@click.option("--interval", type=FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between reads with --tail.")
@click.pass_context
@user_errors
def logs_command(ctx: click.Context, run: str, tail: bool, fmt: str, timezone_name: str | None, level: str | None,
                 since: str | None, limit: int, interval: float) -> None:
    """Show the run's journal (lifecycle, orders, the executor's events), oldest first."""
    _follow(_runs(ctx), run, fmt, timezone_name, level, since, limit, interval if tail else None)


def _follow(runs: Any, run: str, fmt: str, timezone_name: str | None, level: str | None, since_text: str | None,
            limit: int, interval: float | None) -> None:
    from tradeexecutor.errors import ConfigError
    from tradeexecutor.runs import verbs

    since = None
    if since_text is not None:
        from tradeexecutor.times import parse_time

        try:
            since = parse_time(since_text)
        except ValueError as exc:
            raise ConfigError(f"--since {exc}") from None
    zone = resolve_timezone(timezone_name)
    writer = LogWriter(fmt, sys.stdout)
    try:
        if interval is None:
            writer.rows([log_row(entry, zone) for entry in verbs.logs(runs, run, since=since, limit=limit,
                                                                      level=level)])
        else:
            for batch in verbs.follow(runs, run, since=since, limit=limit, level=level, interval=interval):
                if batch:
                    writer.rows([log_row(entry, zone) for entry in batch])
        writer.close()
    except KeyboardInterrupt:
        writer.close()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@runs_command.command("orders")
@click.argument("run")
@click.pass_context
@user_errors
def orders_command(ctx: click.Context, run: str) -> None:
    """Print the run's orders as CSV (every trade of every status)."""
    from tradeexecutor.runs import verbs

    sys.stdout.write(verbs.orders(_runs(ctx), run))


@runs_command.command("supervise", hidden=True)
@click.argument("run_id")
@click.option("--port", type=int, required=True)
@click.pass_context
@user_errors
def supervise_command(ctx: click.Context, run_id: str, port: int) -> None:
    """Internal: run a replay or paper run's executor and record how it ends (started detached by `runs start`)."""
    import logging

    from tradeexecutor.runs.runner import supervise

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    sys.exit(supervise(_runs(ctx), run_id, port))


@runs_command.command("cast")
@click.argument("run")
@click.argument("target", required=False, default=None)
@click.pass_context
@user_errors
def cast_command(ctx: click.Context, run: str, target: str | None) -> None:
    """Make the run publish its equity and price chart data to a wallboard chart; - (or nothing) stops.

    TARGET is a chart's path on the wallboard at $TRADEEXECUTOR_WALLBOARD_URL (/wallboard/page1/chart1)
    or a whole URL. Returns at once; whether the wallboard takes the data shows in `runs logs RUN`
    (cast_delivered, cast_failed).
    """
    from tradeexecutor.runs import verbs

    result = verbs.cast(_runs(ctx), run, target)
    notes = result["notes"]
    doing = f"casts to {result['target']}" if result["target"] else "stops casting"
    click.echo(f"run {result['run']['label']} {doing}" + (f": {notes[-1]}" if notes else ""))
    for note in notes[:-1]:
        click.echo(note, err=True)


@runs_command.command("cast-send", hidden=True)
@click.argument("run_id")
@click.pass_context
@user_errors
def cast_send_command(ctx: click.Context, run_id: str) -> None:
    """Internal: send a finished run's chart data once to its cast target (started detached by `runs cast`)."""
    from tradeexecutor.cast import CastConfig
    from tradeexecutor.runs.cast import cast_final

    reason = cast_final(_runs(ctx), run_id, CastConfig.from_env(os.environ))
    if reason:
        click.echo(f"cast of run {run_id} failed: {reason}", err=True)
        sys.exit(1)

"""``tradeexecutor metrics export|serve`` and ``tradeexecutor report``: Prometheus text and reports of runs.

``metrics export RUN`` prints (or writes) one Prometheus text snapshot of a run from its
artifacts; ``metrics serve`` answers ``GET /metrics`` with every run of a runs folder, reading
each run's small ``metrics.json`` per scrape (stdlib ``wsgiref`` with one thread per request —
pyramid and waitress belong to the webhook); ``report RUN`` regenerates the run's charts,
report.md and report.html.

RUN is a run folder, or a run id or ref looked up in the runs folder.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from tradeexecutor.cli.common import env, user_errors
from tradeexecutor.errors import ConfigError
from tradeexecutor.layout import RunPaths, SweepFiles

#: Default runs folder (``TRADEEXECUTOR_RUNS_DIR`` overrides it).
DEFAULT_RUNS_DIR = "runs"


def runs_dir_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--runs-dir`` option shared by the run commands."""
    return click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_RUNS_DIR,
                        show_default=True, envvar=env("RUNS_DIR"), show_envvar=True,
                        help="Folder holding one sub-folder per run.")(function)


def resolve_run_dir(text: str, runs_dir: Path) -> Path:
    """A run folder from a path, or a run id or ref looked up in ``runs_dir``; ConfigError when none matches."""
    path = Path(text)
    if path.is_dir():
        return path
    candidate = runs_dir / text
    if candidate.is_dir():
        return candidate
    registry = _registry_lookup(text, runs_dir)
    if registry is not None:
        return registry
    matches: list[Path] = []
    try:
        folders = sorted(p for p in runs_dir.iterdir() if p.is_dir())
    except OSError:
        folders = []
    for folder in folders:
        try:
            metadata = json.loads(RunPaths(folder).metadata.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(metadata, dict) and text in (metadata.get("run_id"), metadata.get("ref")):
            matches.append(folder)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"{text!r} names {len(matches)} runs in {runs_dir}: "
                          f"{', '.join(m.name for m in matches)}; give the run id")
    raise ConfigError(f"no run {text!r}: not a folder, and no run in {runs_dir} has that id or ref")


def _registry_lookup(text: str, runs_dir: Path) -> Path | None:
    """The run folder the runs registry knows by this id or ref; None without a registry file or a match."""
    from tradeexecutor.layout import REGISTRY_FILE
    from tradeexecutor.runs.registry import Registry

    if not (runs_dir / REGISTRY_FILE).is_file():  # never create a registry as a side effect of a lookup
        return None
    with Registry(runs_dir) as registry:
        record = registry.find(text)
    if record is None:
        return None
    folder = runs_dir / record.id
    return folder if folder.is_dir() else None


@click.group("metrics")
def metrics_group() -> None:
    """Prometheus metrics of runs: a one-shot export, or a scrape endpoint over the runs folder."""


@metrics_group.command("export")
@click.argument("run")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the text to this file instead of standard output.")
@runs_dir_option
@user_errors
def export_command(run: str, output: Path | None, runs_dir: Path) -> None:
    """Print the Prometheus text snapshot of RUN (a run folder, id or ref) from its artifacts."""
    from tradeexecutor.atomic import atomic_write_bytes
    from tradeexecutor.runs.artifacts import collect_run
    from tradeexecutor.runs.metrics_text import read_run_document, render_runs

    run_dir = resolve_run_dir(run, runs_dir)
    paths = RunPaths(run_dir)
    document = read_run_document(run_dir) if paths.metrics_json.exists() else None
    if document is None:
        if not paths.metadata.exists() and not paths.state.is_dir():
            raise ConfigError(f"{run_dir} is not a run folder (no metrics.json, metadata.json or state/)")
        document = collect_run(run_dir).document  # computed in memory, nothing written
    text = render_runs([document])
    if output is None:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(output, text)
        click.echo(f"wrote {output}", err=True)


def _metrics_server(host: str, port: int, app: Callable[..., Iterable[bytes]]) -> Any:
    """wsgiref's server with one daemon thread per request (a slow scrape does not block the next), no access log.

    Built here rather than at import time: http.server costs every other command ~75 ms to import.
    """
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class ThreadingServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

    return make_server(host, port, app, server_class=ThreadingServer, handler_class=QuietHandler)


def metrics_app(runs_dir: Path) -> Callable[..., Iterable[bytes]]:
    """A WSGI app: ``/metrics`` renders every run of ``runs_dir`` (plus this process's metrics); ``/`` says so."""
    from prometheus_client import make_wsgi_app

    from tradeexecutor.runs.metrics_text import build_runs_registry

    exposition = make_wsgi_app(build_runs_registry(runs_dir))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return exposition(environ, start_response)  # type: ignore[no-any-return]
        if path == "/":
            body = b"tradeexecutor runs metrics: GET /metrics\n"
            status = "200 OK"
        else:
            body = b"not found: GET /metrics\n"
            status = "404 Not Found"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    return app


@metrics_group.command("serve")
@runs_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, envvar=env("METRICS_HOST"), show_envvar=True,
              help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=9464, show_default=True, envvar=env("METRICS_PORT"),
              show_envvar=True, help="Port to listen on (0: any free port, printed at start).")
@user_errors
def serve_command(runs_dir: Path, host: str, port: int) -> None:
    """Serve GET /metrics for every run in the runs folder until interrupted (SIGINT or SIGTERM)."""
    try:
        server = _metrics_server(host, port, metrics_app(runs_dir))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None

    def stop(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    click.echo(f"serving metrics of the runs in {runs_dir} at http://{bound_host}:{bound_port}/metrics", err=True)
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    click.echo("stopped", err=True)


@click.command("report")
@click.argument("run")
@runs_dir_option
@user_errors
def report_command(run: str, runs_dir: Path) -> None:
    """Regenerate the charts, report.md and report.html of RUN (a run folder, id or ref), or draw a sweep's charts.

    RUN may also be a sweep's folder (``tradeexecutor optimize --output``): its charts are drawn
    on demand, as a run's are, and shown in its results.md.
    """
    from tradeexecutor.runs.artifacts import write_report

    if SweepFiles(Path(run)).definition.is_file():
        from tradeexecutor.runs.sweep_report import draw_charts

        written = draw_charts(Path(run))
        click.echo("wrote " + ", ".join(str(path) for path in written))
        return
    run_dir = resolve_run_dir(run, runs_dir)
    paths = RunPaths(run_dir)
    if not paths.metadata.exists() and not paths.state.is_dir():
        raise ConfigError(f"{run_dir} is not a run folder (no metadata.json or state/)")
    write_report(run_dir)
    click.echo(f"wrote {paths.report_md}, {paths.report_html} and {paths.charts}/")

"""The ``runs`` verbs, one function each: what ``tradeexecutor runs`` and the runner API both call.

Each verb takes the runs folder (:class:`~tradeexecutor.runs.run.Runs`) and plain values and
returns plain, JSON-able data: the CLI (``cli/runs_cmd.py``) prints it as text, the runner API
(``wallboard/runner_api.py``, wired by the CLI with a :class:`RunVerbs`) answers it as JSON. So a
verb does the same thing whichever door it came through, and :data:`VERBS` is the list both doors
must offer (``tests/test_runner_api.py`` checks each CLI verb has its API twin and the reverse).

Errors are the package's: ``UserInputError`` (bad input, a run in the wrong status) and its
``NotFoundError`` (an unknown run) — exit 2 on the command line, 400 and 404 over HTTP.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from tradeexecutor.runs.registry import RunRecord, RunsError
from tradeexecutor.runs.run import ACTIVE_STATUSES, Runs

__all__ = ["LOG_LIMIT", "VERBS", "RunVerbs", "cast", "copy", "create", "follow", "logs", "ls", "orders", "reset",
           "set_values", "show", "start", "stop"]

#: Every verb, by the CLI's name for it (``runs set`` is :func:`set_values`).
VERBS = ("create", "ls", "show", "start", "stop", "reset", "copy", "set", "logs", "orders", "cast")
#: Most journal entries one read returns.
LOG_LIMIT = 1000


def run_json(record: RunRecord) -> dict[str, Any]:
    """A registry row as JSON, with its label (the ref, else the id)."""
    return {**record.__dict__, "label": record.label}


def create(runs: Runs, spec: Path, *, ref: str | None = None, upsert: bool = False) -> dict[str, Any]:
    """``runs create SPEC``: a new run (or, with ``upsert``, the new run holding ``ref`` updated)."""
    record, created = runs.create(spec, ref=ref, upsert=upsert)
    return {"run": run_json(record), "created": created, "folder": str(runs.paths(record.id).root)}


def ls(runs: Runs) -> list[dict[str, Any]]:
    """``runs ls``: every run, oldest first, statuses brought up to date."""
    return [run_json(record) for record in runs.all()]


def show(runs: Runs, run: str) -> dict[str, Any]:
    """``runs show RUN``: the run and its metadata.json."""
    record = runs.resolve(run)
    return {"run": run_json(record), "folder": str(runs.paths(record.id).root), "metadata": runs.metadata(record.id)}


def start(runs: Runs, run: str, *, port: int | None = None, detach: bool = False,
          env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """``runs start RUN``: a backtest to completion (or, ``detach``, in a process of its own); a replay or paper run detached."""
    from tradeexecutor.runs.runner import start_run

    result = start_run(runs, run, port=port, env=env, detach=detach)
    meta = runs.metadata(result.record.id)
    url = result.url or (meta.get("executor") or {}).get("url")
    return {"run": run_json(result.record), "notes": list(result.notes), "url": url, "summary": meta.get("summary"),
            "backtest": meta.get("backtest"), "log": str(runs.paths(result.record.id).executor_log)}


def stop(runs: Runs, run: str, *, timeout: float) -> dict[str, Any]:
    """``runs stop RUN``: SIGTERM, a bounded wait for a graceful exit, then a kill; the run ends stopped."""
    from tradeexecutor.runs.runner import stop_run

    record, notes = stop_run(runs, run, timeout=timeout)
    return {"run": run_json(record), "notes": notes}


def reset(runs: Runs, run: str) -> dict[str, Any]:
    """``runs reset RUN``: clear a backtest's, replay's or paper run's results so it starts fresh (refused for live)."""
    return {"run": run_json(runs.reset(run))}


def copy(runs: Runs, run: str, *, ref: str | None = None) -> dict[str, Any]:
    """``runs copy RUN``: a new run with the same pinned strategy and config."""
    record = runs.copy(run, ref=ref)
    return {"run": run_json(record), "copied_from": run, "folder": str(runs.paths(record.id).root)}


def set_values(runs: Runs, run: str, assignments: list[str]) -> dict[str, Any]:
    """``runs set RUN KEY=VALUE...``: change spec values of a run that is still new."""
    return {"run": run_json(runs.set_values(run, assignments)), "assignments": list(assignments)}


def logs(runs: Runs, run: str, *, since: datetime | None = None, limit: int = 100,
         level: str | None = None) -> list[dict[str, Any]]:
    """``runs logs RUN``: the newest ``limit`` entries at or after ``since`` of the run's journals, oldest first."""
    record = runs.resolve(run)
    return runs.journal_entries(record.id, since=since, limit=limit, level=level)


def follow(runs: Runs, run: str, *, since: datetime | None = None, limit: int = 100, level: str | None = None,
           interval: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> Iterator[list[dict[str, Any]]]:
    """``runs logs RUN --tail``: the newest entries, then each read's new ones until the run is no longer active.

    Yields a batch per read, an empty one when nothing is new (a stream's chance to send a
    heartbeat); each entry once. The status is read before the entries, so the entries written
    before the run ended are read after it, and the last batch holds them.
    """
    from tradeexecutor.store.journal import Tail

    record = runs.resolve(run)
    seen = Tail()
    yield seen.new(runs.journal_entries(record.id, since=since, limit=limit, level=level))
    live = runs.resolve(record.id).status in ACTIVE_STATUSES
    while live:
        sleep(interval)
        live = runs.resolve(record.id).status in ACTIVE_STATUSES
        after = datetime.fromisoformat(seen.last_at) if seen.last_at else since
        yield seen.new(runs.journal_entries(record.id, since=after, limit=LOG_LIMIT, level=level))


def orders(runs: Runs, run: str) -> str:
    """``runs orders RUN``: the run's orders as CSV (the executor's file in public/, at most a minute old, while
    it runs)."""
    record = runs.resolve(run)
    paths = runs.paths(record.id)
    published = paths.state_files.orders_csv
    for path in ((published, paths.orders_csv) if record.status in ACTIVE_STATUSES
                 else (paths.orders_csv, published)):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise RunsError(f"run {record.label} has no orders yet ({record.status})")


def cast(runs: Runs, run: str, target: str | None, *, env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """``runs cast RUN TARGET``: record the chart the run casts to (``-``, empty or None: stop) and return at once."""
    from tradeexecutor.cast import CastConfig
    from tradeexecutor.runs.cast import cast_run

    result = cast_run(runs, run, target, CastConfig.from_env(env), env=env)
    return {"run": run_json(result.record), "target": result.target, "notes": list(result.notes)}


class RunVerbs:
    """The verbs over one runs folder for a server: each call opens the folder on the calling thread.

    The registry's SQLite connection may not cross threads, and a web server answers on several;
    so every call opens its own :class:`Runs` and closes it. Backtests start detached (see
    :func:`tradeexecutor.runs.runner.start_run`).
    """

    def __init__(self, runs_dir: Path, env: Mapping[str, str] = os.environ) -> None:
        #: The runs folder.
        self.runs_dir = Path(runs_dir)
        #: The environment: spec overrides at creation, cast settings, the executors' environment.
        self.env = env

    @contextmanager
    def _open(self) -> Iterator[Runs]:
        runs = Runs(self.runs_dir, env=self.env)
        try:
            yield runs
        finally:
            runs.close()

    def create(self, spec: Path, *, ref: str | None, upsert: bool) -> dict[str, Any]:
        with self._open() as runs:
            return create(runs, spec, ref=ref, upsert=upsert)

    def ls(self) -> list[dict[str, Any]]:
        with self._open() as runs:
            return ls(runs)

    def show(self, run: str) -> dict[str, Any]:
        with self._open() as runs:
            return show(runs, run)

    def start(self, run: str, *, port: int | None) -> dict[str, Any]:
        with self._open() as runs:
            return start(runs, run, port=port, detach=True, env=self.env)

    def stop(self, run: str, *, timeout: float) -> dict[str, Any]:
        with self._open() as runs:
            return stop(runs, run, timeout=timeout)

    def reset(self, run: str) -> dict[str, Any]:
        with self._open() as runs:
            return reset(runs, run)

    def copy(self, run: str, *, ref: str | None) -> dict[str, Any]:
        with self._open() as runs:
            return copy(runs, run, ref=ref)

    def set_values(self, run: str, assignments: list[str]) -> dict[str, Any]:
        with self._open() as runs:
            return set_values(runs, run, assignments)

    def logs(self, run: str, *, since: datetime | None, limit: int, level: str | None) -> list[dict[str, Any]]:
        with self._open() as runs:
            return logs(runs, run, since=since, limit=limit, level=level)

    def check(self, run: str) -> None:
        """Raise the NotFoundError of an unknown run (before a stream's headers are sent)."""
        with self._open() as runs:
            runs.resolve(run)

    def follow(self, run: str, *, since: datetime | None, limit: int, level: str | None,
               interval: float) -> Iterator[list[dict[str, Any]]]:
        with self._open() as runs:
            yield from follow(runs, run, since=since, limit=limit, level=level, interval=interval)

    def orders(self, run: str) -> str:
        with self._open() as runs:
            return orders(runs, run)

    def cast(self, run: str, target: str | None) -> dict[str, Any]:
        with self._open() as runs:
            return cast(runs, run, target, env=self.env)

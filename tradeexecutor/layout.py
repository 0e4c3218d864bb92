"""The names of every file the package keeps on disk: a state directory's, the runs folder's, a backtest's, a sweep's.

Writers and readers in different layers (the store and the crash recorder write a state
directory, the webhook and ``runs`` read it; the runs registry writes a run folder, the CLI and
the artifacts read it) take their paths from here, so a file is named in one place. Pure: no I/O
beyond :attr:`RunPaths.spec` asking which of two names exists, and no imports from the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["LEGACY_SPEC_FILE", "REGISTRY_FILE", "SPEC_FILE", "STRATEGY_FILE", "BacktestFiles", "DrillFiles", "RunFiles", "RunPaths", "SweepFiles"]

#: A run folder's pinned spec, as the artifact contract names it.
SPEC_FILE = "run_spec.yaml"
#: What run folders made by earlier versions call it; still read (and written back) under this name.
LEGACY_SPEC_FILE = "spec.yaml"
#: The runs registry, one SQLite file in the runs folder beside the run folders.
REGISTRY_FILE = "registry.sqlite"
#: A run folder's copy of the strategy; the pinned spec names it relative to the folder.
STRATEGY_FILE = "strategy.py"


@dataclass(frozen=True)
class RunFiles:
    """Paths inside one executor's state directory.

    The loop writes them (crash-safely, through :mod:`tradeexecutor.atomic`); the webhook only
    reads them. Files under ``public/`` are snapshots published after each change so that
    requests serve bytes, never serialise.
    """

    #: The state directory itself.
    root: Path

    @property
    def ledger(self) -> Path:
        """The executor's state, orders and journal: one SQLite file, one transaction per job (``ledger``)."""
        return self.root / "ledger.sqlite"

    @property
    def legacy_state(self) -> Path:
        """Where a state directory made before the ledger kept its state (refused at start-up)."""
        return self.root / "state.json"

    @property
    def state(self) -> Path:
        """The last full snapshot of the state (``store.StateStore``)."""
        return self.root / "state.json"

    @property
    def state_backup(self) -> Path:
        """The snapshot before the last compaction."""
        return self.root / "state.json.bak"

    @property
    def state_log(self) -> Path:
        """Saves since the snapshot, one fsynced record each."""
        return self.root / "state.log"

    @property
    def journal(self) -> Path:
        """Append-only JSON lines of what happened to the job."""
        return self.root / "journal.jsonl"

    @property
    def crash(self) -> Path:
        """The last crash record and the crash counter."""
        return self.root / "crash.json"

    @property
    def crash_tally(self) -> Path:
        """The crash count in a fixed-size block written in place, so a full disk cannot refuse it."""
        return self.root / "crash.tally"

    @property
    def reconciliation(self) -> Path:
        """The last reconciliation of the ledger with the venue (start-up or ``tradeexecutor reconcile``)."""
        return self.root / "reconciliation.json"

    @property
    def cast(self) -> Path:
        """Where the executor casts its charts (store.cast_target); survives restarts."""
        return self.root / "cast.json"

    @property
    def lock(self) -> Path:
        """Held exclusively by the executor that owns this state."""
        return self.root / "executor.lock"

    @property
    def spill(self) -> Path:
        """The publication caches' spill files: encoded rows of closed history, rebuilt from the ledger when damaged."""
        return self.root / "spill"

    @property
    def public(self) -> Path:
        """Snapshots served by the webhook."""
        return self.root / "public"

    @property
    def state_snapshot(self) -> Path:
        """The whole state as JSON, published after each change."""
        return self.public / "state.json"

    @property
    def state_snapshot_gz(self) -> Path:
        """The same bytes gzip-compressed, for clients that accept gzip."""
        return self.public / "state.json.gz"

    @property
    def orders_csv(self) -> Path:
        """Every order of the run, with the backtest trades CSV's columns."""
        return self.public / "orders.csv"

    @property
    def positions(self) -> Path:
        """Open and closed positions as a JSON list, for paged reads."""
        return self.public / "positions.json"

    @property
    def metadata(self) -> Path:
        """Name, description, mode, strategy version, started_at and key figures."""
        return self.public / "metadata.json"


@dataclass(frozen=True)
class RunPaths:
    """Where the files of one run live (the run folder's layout contract)."""

    #: The run folder, ``<runs_dir>/<run_id>``.
    root: Path

    @property
    def spec(self) -> Path:
        """``run_spec.yaml``; in a folder an earlier version made, its ``spec.yaml``."""
        current = self.root / SPEC_FILE
        legacy = self.root / LEGACY_SPEC_FILE
        return legacy if not current.exists() and legacy.exists() else current

    @property
    def strategy(self) -> Path:
        """The strategy file, copied in when the run was created."""
        return self.root / STRATEGY_FILE

    @property
    def metadata(self) -> Path:
        """Status, times, fingerprints and key figures of the run."""
        return self.root / "metadata.json"

    @property
    def journal(self) -> Path:
        """The run's own journal (created, started, finished, ...)."""
        return self.root / "journal.jsonl"

    @property
    def state(self) -> Path:
        """The executor's state directory (:class:`RunFiles` names what is inside)."""
        return self.root / "state"

    @property
    def state_files(self) -> RunFiles:
        """The files of the run's state directory."""
        return RunFiles(self.state)

    @property
    def executor_log(self) -> Path:
        """stdout and stderr of the executor process the runner started."""
        return self.root / "executor.log"

    @property
    def orders_csv(self) -> Path:
        """Every order of the run (artifact)."""
        return self.root / "orders.csv"

    @property
    def metrics_json(self) -> Path:
        """Key figures as JSON (artifact)."""
        return self.root / "metrics.json"

    @property
    def metrics_prom(self) -> Path:
        """Key figures in Prometheus text format (artifact)."""
        return self.root / "metrics.prom"

    @property
    def report_md(self) -> Path:
        """The run report in Markdown (artifact)."""
        return self.root / "report.md"

    @property
    def report_html(self) -> Path:
        """The run report as one HTML page (artifact)."""
        return self.root / "report.html"

    @property
    def charts(self) -> Path:
        """Chart images of the run (artifact folder)."""
        return self.root / "charts"

    @property
    def readiness(self) -> Path:
        """The readiness check's verdict (artifact)."""
        return self.root / "readiness.json"

    @property
    def results(self) -> tuple[Path, ...]:
        """What a reset clears so the run can start fresh: the state directory and every artifact."""
        return (self.state, self.orders_csv, self.metrics_json, self.metrics_prom, self.report_md, self.report_html,
                self.charts, self.readiness, self.executor_log)


@dataclass(frozen=True)
class DrillFiles:
    """What ``tradeexecutor drill NAME`` writes into its run folder (``--out``, or a new folder under the runs folder).

    The folder is laid out as a run's (:class:`RunPaths`: the strategy, the executor's state
    directory and its log), plus the drill's own ``drills/`` folder.
    """

    #: The run folder.
    root: Path

    @property
    def run(self) -> RunPaths:
        """The run-folder files inside it: the strategy the drill writes, the executor's state and log."""
        return RunPaths(self.root)

    @property
    def drills(self) -> Path:
        """The drills' reports and the simulator's log."""
        return self.root / "drills"

    def report(self, name: str) -> Path:
        """``drills/NAME.json``: what was injected, what the executor did, each check with pass or fail."""
        return self.drills / f"{name}.json"

    @property
    def simulator_log(self) -> Path:
        """stdout and stderr of the exchange simulator the drill started."""
        return self.drills / "exchange-sim.log"


@dataclass(frozen=True)
class BacktestFiles:
    """What ``tradeexecutor backtest`` writes into its ``--output`` folder."""

    #: The output folder.
    root: Path

    @property
    def state(self) -> Path:
        """The final state as JSON."""
        return self.root / "state.json"

    @property
    def trades(self) -> Path:
        """Every order of the run as CSV."""
        return self.root / "trades.csv"

    @property
    def summary(self) -> Path:
        """The strategy, the data, the config and the summary statistics."""
        return self.root / "summary.json"


@dataclass(frozen=True)
class SweepFiles:
    """The ``--output`` folder of one parameter sweep (``tradeexecutor optimize``)."""

    #: The sweep's folder.
    root: Path

    @property
    def definition(self) -> Path:
        """What is swept and its fingerprint; a resumed sweep must match it."""
        return self.root / "sweep.json"

    @property
    def points(self) -> Path:
        """One JSON row a point, appended as points finish."""
        return self.root / "points.jsonl"

    @property
    def reports(self) -> Path:
        """The full runs made for the best points, by point."""
        return self.root / "reports.json"

    @property
    def results_csv(self) -> Path:
        """Every point's figures as CSV."""
        return self.root / "results.csv"

    @property
    def results_md(self) -> Path:
        """The ranked table and the charts, as Markdown."""
        return self.root / "results.md"

    @property
    def charts(self) -> Path:
        """The sweep's chart images (drawn on demand: ``tradeexecutor report SWEEP_FOLDER``)."""
        return self.root / "charts"

    @property
    def chart_data(self) -> Path:
        """What the sweep's charts draw, as numpy arrays: the charts are drawn from it on demand."""
        return self.root / "charts.npz"

    def point_spec(self, index: int) -> Path:
        """The run spec of point ``index`` (0-based), as a full run of it uses."""
        return self.root / "specs" / f"point-{index + 1:03d}.yaml"

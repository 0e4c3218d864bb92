"""Runs in-process: the folder contract, pinning, fingerprints, reproducibility, edit/copy/reset and the lifecycle."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tradeexecutor import __version__
from tradeexecutor.data.bundled import BUNDLED_DATASETS
from tradeexecutor.errors import ConfigError
from tradeexecutor.ledger import load_state
from tradeexecutor.runs.registry import RunsError
from tradeexecutor.runs.run import Runs, sha256_file
from tradeexecutor.runs.runner import start_run, stop_run
from tradeexecutor.stats import compute_summary
from tradeexecutor.store.journal import Journal

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ROOT / "strategies"

SPEC = """\
strategy_file: {strategy}
mode: {mode}
name: SMA test
environment:
  data: [stocks-daily]
  start: "2008-01-01"
  end: "2011-12-31"
strategy:
  fast: 8
core:
  fee: 0.001
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A private copy of the SMA strategy and a backtest spec beside it."""
    shutil.copy(STRATEGIES / "sma_crossover.py", tmp_path / "sma.py")
    (tmp_path / "bt.yaml").write_text(SPEC.format(strategy="sma.py", mode="backtest"))
    (tmp_path / "paper.yaml").write_text(SPEC.format(strategy="sma.py", mode="replay"))
    (tmp_path / "live.yaml").write_text("strategy_file: sma.py\nmode: live\nenvironment: {exchange: binance}\n"
                                        "core: {exchange_key_variable: LIFE_KEY, exchange_secret_variable: LIFE_SECRET}\n")
    return tmp_path


@pytest.fixture
def runs(work: Path) -> Iterator[Runs]:
    manager = Runs(work / "runs", env={})
    yield manager
    manager.close()


def timeline(runs: Runs, run_id: str) -> list[str]:
    return [entry["event"] for entry in runs.metadata(run_id)["timeline"]]


def test_create_writes_the_folder_contract(runs: Runs, work: Path) -> None:
    record, created = runs.create(work / "bt.yaml", ref="sma")
    assert created and record.status == "new" and record.ref == "sma" and record.name == "SMA test"
    paths = runs.paths(record.id)
    assert paths.root == work / "runs" / record.id
    assert paths.strategy.read_text() == (work / "sma.py").read_text()
    assert sorted(p.name for p in paths.root.iterdir()) == ["journal.jsonl", "metadata.json", "run_spec.yaml",
                                                            "state", "strategy.py"]  # the artifact contract's names
    assert paths.spec == paths.root / "run_spec.yaml"
    spec_text = paths.spec.read_text()
    assert "strategy_file: strategy.py" in spec_text and "fee: 0.001" in spec_text
    assert runs.load_run_spec(record.id).strategy_file == paths.strategy.resolve()
    meta = json.loads(paths.metadata.read_text())
    assert {"run_id", "ref", "name", "mode", "status", "timeline", "created_at", "started_at", "stopped_at",
            "strategy_version", "fingerprints"} <= set(meta)
    assert meta["run_id"] == record.id and meta["status"] == "new" and meta["mode"] == "backtest"
    assert [e["event"] for e in meta["timeline"]] == ["created"] and meta["started_at"] is None
    prints = meta["fingerprints"]
    assert prints["code"] == meta["strategy_version"] == sha256_file(paths.strategy)
    assert prints["config"] == runs.load_run_spec(record.id).config_fingerprint()
    stocks = BUNDLED_DATASETS["stocks-daily"].path
    assert prints["data"] == {str(stocks): sha256_file(stocks)} and prints["package_version"] == __version__
    assert paths.state.is_dir()
    assert [e["event"] for e in Journal(paths.journal).read()] == ["created"]
    assert runs.registry.resolve("sma").id == runs.registry.resolve(record.id).id == record.id


def test_a_bad_spec_creates_nothing(runs: Runs, work: Path) -> None:
    (work / "bad.yaml").write_text("strategy_file: sma.py\nmode: backtest\ncore: {fe: 1}\n")
    with pytest.raises(ConfigError, match=re.escape("core.fe: unknown key; did you mean fee")):
        runs.create(work / "bad.yaml", ref="bad")
    with pytest.raises(RunsError, match="is not valid"):
        runs.create(work / "bt.yaml", ref="no good")
    assert runs.all() == []
    assert [p.name for p in (work / "runs").iterdir()] in ([], ["registry.sqlite"], ["registry.sqlite",
                                                                                       "registry.sqlite-wal",
                                                                                       "registry.sqlite-shm"])


def test_env_overrides_apply_at_creation_and_are_pinned(work: Path) -> None:
    runs = Runs(work / "runs", env={"TRADEEXECUTOR_FEE": "0.002"})
    record, _ = runs.create(work / "bt.yaml")
    assert runs.load_run_spec(record.id).core.fee == 0.002
    assert "fee: 0.002" in runs.paths(record.id).spec.read_text()


def test_refs_upsert_and_set(runs: Runs, work: Path) -> None:
    first, _ = runs.create(work / "bt.yaml", ref="sma")
    with pytest.raises(RunsError, match=r"ref 'sma' is taken by run .*--upsert"):
        runs.create(work / "bt.yaml", ref="sma")
    (work / "bt.yaml").write_text(SPEC.format(strategy="sma.py", mode="backtest").replace("fast: 8", "fast: 6"))
    again, created = runs.create(work / "bt.yaml", ref="sma", upsert=True)
    assert not created and again.id == first.id and runs.load_run_spec(first.id).strategy == {"fast": 6}
    assert timeline(runs, first.id) == ["created", "updated"]
    fresh, created = runs.create(work / "bt.yaml", ref="other", upsert=True)
    assert created and fresh.id != first.id

    before = runs.metadata(first.id)["fingerprints"]["config"]
    runs.set_values("sma", ["core.fee=0.003", "strategy.slow=40", "environment.start=2009-01-01", "name=renamed"])
    spec = runs.load_run_spec(first.id)
    assert spec.core.fee == 0.003 and spec.strategy == {"fast": 6, "slow": 40}
    assert spec.environment.start == "2009-01-01" and runs.registry.resolve("sma").name == "renamed"
    assert runs.metadata(first.id)["fingerprints"]["config"] == spec.config_fingerprint() != before
    with pytest.raises(ConfigError, match=re.escape("core.fe: unknown key; did you mean fee")):
        runs.set_values("sma", ["core.fe=1"])
    with pytest.raises(ConfigError, match=re.escape("strategy.fast: 'x' is not an integer")):
        runs.set_values("sma", ["strategy.fast=x"])
    with pytest.raises(RunsError, match="strategy_file cannot change"):
        runs.set_values("sma", ["strategy_file=other.py"])
    assert runs.load_run_spec(first.id).core.fee == 0.003  # failed edits changed nothing

    start_run(runs, "sma")
    with pytest.raises(RunsError, match="is complete: its config was pinned when it started; copy it"):
        runs.set_values("sma", ["core.fee=0.001"])
    with pytest.raises(RunsError, match="run sma is complete: only a new run can be updated"):
        runs.create(work / "bt.yaml", ref="sma", upsert=True)


def _results(runs: Runs, run_id: str) -> tuple[Any, str, dict[str, Any]]:
    state = load_state(runs.paths(run_id).state)
    assert state is not None
    valuations = (list(state.valuations.timestamp), list(state.valuations.equity), list(state.valuations.cash))
    return valuations, runs.paths(run_id).orders_csv.read_text(), compute_summary(state).to_dict()


def test_a_backtest_run_completes_and_is_reproducible(runs: Runs, work: Path) -> None:
    one, _ = runs.create(work / "bt.yaml", ref="one")
    two, _ = runs.create(work / "bt.yaml", ref="two")
    result = start_run(runs, "one")
    assert result.record.status == "complete"
    start_run(runs, two.id)
    meta = runs.metadata(one.id)
    assert timeline(runs, one.id) == ["created", "start_requested", "started", "complete"]
    assert meta["started_at"] and meta["stopped_at"] and meta["summary"]["trade_count"] > 5
    record = runs.registry.get(one.id)
    assert meta["executor"]["pid"] is None and record is not None and record.pid is None
    assert (runs.paths(one.id).state / "ledger.sqlite").is_file()
    assert runs.paths(one.id).orders_csv.read_text().startswith("trade_id,")
    events = [e["event"] for e in Journal(runs.paths(one.id).journal).read(limit=1000)]
    assert events[:3] == ["created", "start_requested", "started"] and events[-1] == "complete"
    assert "order_filled" in events

    assert _results(runs, one.id) == _results(runs, two.id)
    first, second = runs.metadata(one.id), runs.metadata(two.id)
    assert first["fingerprints"] == second["fingerprints"]
    assert first["summary"] == second["summary"]

    with pytest.raises(RunsError, match="backtest run one is complete; reset it"):
        start_run(runs, "one")


def test_a_changed_data_file_changes_the_data_fingerprint(runs: Runs, work: Path) -> None:
    candles = work / "eurusd.csv"
    shutil.copy(BUNDLED_DATASETS["eurusd-hourly"].path, candles)
    shutil.copy(STRATEGIES / "eurusd_breakout.py", work / "breakout.py")
    (work / "fx.yaml").write_text("strategy_file: breakout.py\nmode: backtest\nenvironment: {data: [eurusd.csv]}\n")
    before, _ = runs.create(work / "fx.yaml")
    lines = candles.read_text().splitlines()
    fields = lines[100].split(",")
    fields[4] = f"{float(fields[4]) + 0.0001:.5f}"  # one close price
    lines[100] = ",".join(fields)
    candles.write_text("\n".join(lines) + "\n")
    after, _ = runs.create(work / "fx.yaml")
    a, b = runs.metadata(before.id)["fingerprints"], runs.metadata(after.id)["fingerprints"]
    assert a["data"] != b["data"] and list(a["data"]) == [str(candles.resolve())]
    assert a["config"] == b["config"] and a["code"] == b["code"]
    start_run(runs, after.id)
    assert runs.metadata(after.id)["fingerprints"]["data"] == b["data"]


def test_reset_clears_results_and_the_run_starts_fresh(runs: Runs, work: Path) -> None:
    record, _ = runs.create(work / "bt.yaml", ref="sma")
    start_run(runs, "sma")
    paths = runs.paths(record.id)
    first = _results(runs, record.id)
    (paths.root / "report.md").write_text("old report")
    (paths.root / "charts").mkdir(exist_ok=True)
    reset = runs.reset("sma")
    assert reset.status == "new"
    assert not paths.orders_csv.exists() and not (paths.root / "report.md").exists()
    assert not (paths.root / "charts").exists() and list(paths.state.iterdir()) == []
    assert not any(p.name.startswith(".reset-") for p in paths.root.iterdir())
    meta = runs.metadata(record.id)
    assert meta["status"] == "new" and meta["summary"] is None and meta["started_at"] is None
    assert timeline(runs, record.id)[-1] == "reset"
    assert paths.spec.is_file() and paths.strategy.is_file() and paths.journal.is_file()
    start_run(runs, "sma")
    assert _results(runs, record.id) == first


def test_copy_pins_the_same_strategy_and_config(runs: Runs, work: Path) -> None:
    record, _ = runs.create(work / "bt.yaml", ref="sma")
    start_run(runs, "sma")
    copy = runs.copy("sma", ref="sma2")
    assert copy.id != record.id and copy.status == "new" and copy.ref == "sma2"
    a, b = runs.metadata(record.id), runs.metadata(copy.id)
    assert a["fingerprints"] == b["fingerprints"] and b["copied_from"] == record.id
    assert runs.paths(copy.id).spec.read_bytes() == runs.paths(record.id).spec.read_bytes()
    assert runs.paths(copy.id).strategy.read_bytes() == runs.paths(record.id).strategy.read_bytes()
    assert not runs.paths(copy.id).orders_csv.exists()
    with pytest.raises(RunsError, match="ref 'sma2' is taken"):
        runs.copy("sma", ref="sma2")
    start_run(runs, "sma2")
    assert _results(runs, copy.id) == _results(runs, record.id)


def test_the_pinned_strategy_runs_and_a_changed_pin_is_refused(runs: Runs, work: Path) -> None:
    record, _ = runs.create(work / "bt.yaml", ref="sma")
    pinned = runs.metadata(record.id)["strategy_version"]
    original = work / "sma.py"
    original.write_text(original.read_text().replace("fast crossed above slow", "edited later"))
    result = start_run(runs, "sma")  # the edit does not reach the run: it runs its pinned copy
    assert result.record.status == "complete" and any("keeps its pinned copy" in n for n in result.notes)
    assert "edited later" not in runs.paths(record.id).orders_csv.read_text()
    assert runs.metadata(record.id)["strategy_version"] == pinned

    second, _ = runs.create(work / "bt.yaml", ref="second")
    strategy = runs.paths(second.id).strategy
    strategy.write_text(strategy.read_text() + "\n# tampered\n")
    with pytest.raises(RunsError, match=r"pinned strategy .* no longer matches .* copy it to a new run "
                                        r"\(tradeexecutor runs copy second\)"):
        start_run(runs, "second")
    assert runs.resolve("second").status == "new"
    copy = runs.copy("second", ref="third")
    assert start_run(runs, copy.id).record.status == "complete"
    assert runs.metadata(copy.id)["fingerprints"]["code"] == sha256_file(strategy)


def test_a_run_whose_process_vanished_ends_in_error(runs: Runs, work: Path) -> None:
    record, _ = runs.create(work / "paper.yaml", ref="paper")
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    runs.record(record.id, "start_requested", status="starting", pid=dead)
    assert runs.resolve("paper").status == "error"
    meta = runs.metadata(record.id)
    assert "ended without recording an outcome" in meta["error"] and timeline(runs, record.id)[-1] == "error"
    with pytest.raises(RunsError, match="is error; only a starting or running run can be stopped"):
        stop_run(runs, "paper")


def test_active_runs_cannot_be_reset_and_live_runs_never(runs: Runs, work: Path) -> None:
    paper, _ = runs.create(work / "paper.yaml", ref="paper")
    runs.record(paper.id, "start_requested", status="starting", pid=os.getpid())
    with pytest.raises(RunsError, match="is starting; stop it first"):
        runs.reset("paper")
    with pytest.raises(RunsError, match="already starting"):
        start_run(runs, "paper")

    live, _ = runs.create(work / "live.yaml", ref="live")
    with pytest.raises(ConfigError, match="is a live run and LIFE_KEY and LIFE_SECRET are not set"):
        start_run(runs, "live", env={"LIFE_KEY": "", "OTHER": "x"})  # checked against the env the executor gets
    assert runs.resolve("live").status == "new"
    with pytest.raises(RunsError, match="live run: reset is refused"):
        runs.reset("live")
    runs.record(live.id, "start_requested", status="running", pid=None)
    stopped, notes = stop_run(runs, "live")
    assert stopped.status == "stopped" and any("does not close its positions" in note for note in notes)
    assert timeline(runs, live.id)[-2:] == ["stop_requested", "stopped"]


def test_starting_a_run_removes_the_temporary_files_an_interrupted_write_left(runs: Runs, work: Path) -> None:
    """kill -9 during an artifact or state write leaves ``.NAME.<hex>.tmp`` beside the file; the next start clears
    them."""
    from tradeexecutor.atomic import temp_path_for
    from tradeexecutor.layout import RunFiles

    record, _ = runs.create(work / "bt.yaml", ref="sma")
    paths = runs.paths(record.id)
    paths.charts.mkdir()
    RunFiles(paths.state).public.mkdir()
    left = [Path(temp_path_for(paths.metrics_json)), Path(temp_path_for(paths.charts / "equity.png")),
            Path(temp_path_for(paths.state / "state.json")), Path(temp_path_for(RunFiles(paths.state).orders_csv))]
    for path in left:
        path.write_bytes(b"half a write")
    start_run(runs, "sma")
    assert [path for path in left if path.exists()] == []
    assert runs.metadata(record.id)["status"] == "complete"


def test_a_paper_run_whose_supervisor_dies_at_once_fails_naming_its_log(runs: Runs, work: Path) -> None:
    """The supervisor itself cannot start (a broken Python environment): an error naming executor.log, never
    a run left 'starting' with 'webhook -'."""
    record, _ = runs.create(work / "paper.yaml", ref="paper")
    broken = {**os.environ, "PYTHONHOME": str(work / "no-such-python-home")}
    with pytest.raises(RunsError, match=r"run paper failed to start: .*No module named 'encodings'.* \(see .*"
                                        + record.id + r"/executor\.log\)"):
        start_run(runs, "paper", env=broken)
    assert runs.resolve("paper").status == "error"
    assert timeline(runs, record.id)[-2:] == ["start_requested", "error"]


def test_a_run_folder_an_earlier_version_made_with_spec_yaml_still_works(runs: Runs, work: Path) -> None:
    """Folders made before the spec file was named run_spec.yaml are read (and edited) as they are."""
    record, _ = runs.create(work / "bt.yaml", ref="old")
    paths = runs.paths(record.id)
    (paths.root / "run_spec.yaml").rename(paths.root / "spec.yaml")
    assert paths.spec == paths.root / "spec.yaml"
    runs.set_values("old", ["core.fee=0.002"])
    assert "fee: 0.002" in (paths.root / "spec.yaml").read_text() and not (paths.root / "run_spec.yaml").exists()
    copy = runs.copy("old", ref="new-copy")
    assert (runs.paths(copy.id).root / "run_spec.yaml").is_file(), "a copy is a new folder, with the new name"
    start_run(runs, "old")
    assert runs.resolve("old").status == "complete"
    assert (paths.root / "report.md").is_file() and runs.metadata(record.id)["summary"]["trade_count"] > 0


_DIE_AFTER_ORDERS = """
import os, signal, sys
from pathlib import Path
import tradeexecutor.runs.executor as executor
from tradeexecutor.runs.run import Runs
from tradeexecutor.runs.runner import start_run
real = executor.write_trades_csv
def write_then_die(state, path):
    real(state, path)
    os.kill(os.getpid(), signal.SIGKILL)
executor.write_trades_csv = write_then_die
start_run(Runs(Path(sys.argv[1]), env={}), sys.argv[2])
"""


def test_kill_9_in_the_middle_of_a_backtest_leaves_an_error_never_complete(runs: Runs, work: Path) -> None:
    """The run is started in one step (start_requested and started together) and its files are made with
    directory fsyncs deferred; a kill -9 after the ledger and orders.csv but before ``complete`` is recorded
    leaves a run the registry reports as error, with no reports, which a reset and a new start complete."""
    record, _ = runs.create(work / "bt.yaml", ref="sma")
    child = subprocess.run([sys.executable, "-c", _DIE_AFTER_ORDERS, str(work / "runs"), "sma"],
                           capture_output=True, text=True, timeout=240)
    assert child.returncode == -signal.SIGKILL, child.stderr
    paths = runs.paths(record.id)
    assert paths.orders_csv.is_file(), "killed after orders.csv, as the test means"
    assert runs.resolve("sma").status == "error"
    meta = runs.metadata(record.id)
    assert timeline(runs, record.id) == ["created", "start_requested", "started", "error"]
    assert "ended without recording an outcome" in meta["error"] and meta["summary"] is None
    assert not paths.metrics_json.exists() and not paths.report_md.exists()
    runs.reset("sma")
    assert start_run(runs, "sma").record.status == "complete"
    assert paths.orders_csv.is_file() and paths.report_md.is_file() and paths.metrics_json.is_file()


def _journal_steps(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(event, fields without the run id) of every journal entry, in order: what happened, not when or to which run."""
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [(entry["event"], {k: v for k, v in entry["fields"].items() if k != "run_id"}) for entry in entries]


@pytest.mark.parametrize("sweep_data", [False, True], ids=["loading", "reusing-the-sweeps-data"])
def test_a_staged_run_is_the_run_create_then_start_makes(runs: Runs, work: Path, sweep_data: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep's full run is built out of sight, made durable in one pass and registered complete (runs.sweep_runs):
    its timeline, journal, state, orders, summary, fingerprints and reports are those of create + start, field by
    field, and every command reads it like any other — also when it backtests on the market and benchmark prices
    the sweep already loaded (no session opened, no prices loaded again)."""
    import tradeexecutor.runs.artifacts as artifacts
    import tradeexecutor.runs.executor as executor
    from tradeexecutor.runs.spec import load_spec
    from tradeexecutor.runs.sweep import SweepOptions, plan_sweep
    from tradeexecutor.runs.sweep_eval import result_fingerprint
    from tradeexecutor.runs.sweep_runs import build_runs

    record, _ = runs.create(work / "bt.yaml", ref="two-steps", then=("swept", "sweep point 1: fast=8"))
    assert start_run(runs, "two-steps", charts=False).record.status == "complete"
    data = None
    if sweep_data:
        data = plan_sweep(load_spec(work / "bt.yaml", env={}), SweepOptions(params=("fast=8,9",))).data

        def not_again(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("loaded again")

        monkeypatch.setattr(executor, "open_session", not_again)
        monkeypatch.setattr(artifacts, "_prices_from_spec", not_again)
    [(staged, error)] = build_runs(runs, [(work / "bt.yaml", "one-step", ("swept", "sweep point 1: fast=8"), {})],
                                   data=data)
    assert staged is not None and error is None
    # The spec its backtest ran is the pinned one read back, to the type of every value (it is not read back any more)
    assert repr(staged.spec) == repr(load_spec(staged.paths.spec, env={}))
    assert runs.registry.find_ref("one-step") is None and not runs.paths(staged.record.id).root.exists()  # unseen
    [(committed, error)] = runs.commit_staged([staged])
    assert error is None and not staged.paths.root.exists()
    one = runs.resolve("one-step")
    assert one.id == committed.record.id and one.status == "complete" and one.pid is None
    a, b = runs.paths(record.id), runs.paths(one.id)
    meta_a, meta_b = runs.metadata(record.id), runs.metadata(one.id)
    assert timeline(runs, one.id) == timeline(runs, record.id) == [
        "created", "swept", "start_requested", "started", "complete"]
    for key in ("status", "summary", "fingerprints", "strategy_version", "name", "mode", "error"):
        assert meta_b[key] == meta_a[key], key
    assert meta_b["backtest"]["bars"] == meta_a["backtest"]["bars"] and \
        meta_b["backtest"]["cycles"] == meta_a["backtest"]["cycles"]
    assert meta_b["started_at"] and meta_b["stopped_at"] == one.updated_at and meta_b["executor"]["pid"] is None
    assert _journal_steps(b.journal) == _journal_steps(a.journal)  # every step and engine event, same fields
    assert b.orders_csv.read_bytes() == a.orders_csv.read_bytes()
    state_a, state_b = load_state(a.state), load_state(b.state)
    assert state_a is not None and state_b is not None
    assert result_fingerprint(state_b) == result_fingerprint(state_a)
    assert compute_summary(state_b).to_dict() == compute_summary(state_a).to_dict()
    assert meta_b["summary"]["trade_count"] == compute_summary(state_b).trade_count > 0
    doc_a, doc_b = (json.loads(p.metrics_json.read_text()) for p in (a, b))
    for key in ("summary", "events", "checks", "strategy", "status"):
        assert doc_b[key] == doc_a[key], key
    volatile = {"started_at", "finished_at", "duration_seconds"}
    assert {k: v for k, v in doc_b["run"].items() if k not in volatile} == \
        {k: v for k, v in doc_a["run"].items() if k not in volatile}
    assert ".creating-" not in b.report_md.read_text() + b.metrics_json.read_text()  # no trace of the hidden folder
    assert sorted(path.name for path in b.root.iterdir()) == sorted(path.name for path in a.root.iterdir())


def test_a_staged_run_whose_ref_was_taken_meanwhile_is_removed(runs: Runs, work: Path) -> None:
    """commit_staged registers what it can: a run whose ref another command took meanwhile is removed, with why."""
    from tradeexecutor.runs.sweep_runs import build_runs

    [(staged, _)] = build_runs(runs, [(work / "bt.yaml", "taken", ("swept", "sweep point 1"), {})])
    assert staged is not None
    runs.create(work / "bt.yaml", ref="taken")
    [(_, error)] = runs.commit_staged([staged])
    assert error is not None and "ref 'taken' is taken" in error
    assert not (runs.runs_dir / staged.record.id).exists() and not staged.paths.root.exists()
    assert [record.ref for record in runs.registry.all()] == ["taken"]


_DIE_AFTER_SECOND_ORDERS_IN_A_SWEEP = """
import os, signal, sys
from pathlib import Path
import tradeexecutor.runs.executor as executor
from tradeexecutor.runs.spec import load_spec
from tradeexecutor.runs.sweep import SweepOptions, plan_sweep, run_sweep
real, calls = executor.write_trades_csv, []
def write_then_die(state, path):
    real(state, path)
    calls.append(path)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
executor.write_trades_csv = write_then_die
plan = plan_sweep(load_spec(Path(sys.argv[2]), env={}), SweepOptions(params=("fast=5,8,10",), processes=1, best=3))
run_sweep(plan, output_dir=Path(sys.argv[3]), runs_dir=Path(sys.argv[1]))
"""


def test_kill_9_while_a_sweep_makes_its_full_runs_leaves_no_half_run(runs: Runs, work: Path) -> None:
    """A sweep killed mid-way through its full runs (the first built, the second after its ledger and orders): no
    run is registered and no run folder is visible — a run is there complete or not at all; resumed, the sweep
    makes them."""
    from tradeexecutor.runs.spec import load_spec
    from tradeexecutor.runs.sweep import SweepOptions, plan_sweep, run_sweep

    folder = work / "sweep"
    child = subprocess.run([sys.executable, "-c", _DIE_AFTER_SECOND_ORDERS_IN_A_SWEEP, str(work / "runs"),
                            str(work / "bt.yaml"), str(folder)], capture_output=True, text=True, timeout=240)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert runs.registry.all() == []
    names = [path.name for path in (work / "runs").iterdir()]
    assert [name for name in names if not name.startswith((".", "registry.sqlite"))] == []
    assert sum(name.startswith(".creating-") for name in names) == 2, "killed while building the second, as meant"
    assert not (folder / "reports.json").exists()
    plan = plan_sweep(load_spec(work / "bt.yaml", env={}), SweepOptions(params=("fast=5,8,10",), processes=1, best=3))
    result = run_sweep(plan, output_dir=folder, runs_dir=work / "runs", resume=True)
    assert result.resumed == 3 and result.evaluated == 0 and not result.note
    made = sorted(row.run_id for row in result.results)
    assert all(made) and sorted(record.id for record in runs.registry.all()) == made
    assert all(runs.resolve(run_id).status == "complete" for run_id in made)

"""Soak benchmark: a live executor on 1-second cycles against ``tradeexecutor exchange-sim`` for N minutes.

Run from the repository root::

    python bench/bench_soak.py [--minutes 30] [--every 5] [--sample-seconds 5] [--json soak.json]

Starts two processes, as an operator would run them: the exchange simulator (``tradeexecutor
exchange-sim --port 0 --speed 3600``: the bundled hourly EURUSD replayed as 1-second candles, fees in
the quote currency, Binance's default weight limit) and ``tradeexecutor start
bench/strategies/soak_flip.py --mode live --exchange binance --exchange-url URL`` with the daemon's
default configuration otherwise (charts on, threads pinned, ccxt's rate limiter on). The strategy
enters on one 1-second cycle in ``--every`` and exits ``--every`` cycles later: a real order through
ccxt every few cycles for the whole run. ``--mode paper`` runs the same against the simulator's
prices without sending orders.

The clock starts when the first cycle has completed (start-up and reconciliation are not soak).
Every ``--sample-seconds`` it samples, from /proc, the executor's resident set (VmRSS), its open file
descriptors (entries of /proc/PID/fd) and its child processes' resident sets (the chart renderer).
When the time is up the executor is stopped with SIGTERM and the benchmark reads:

- cycle lag: the journal's ``cycle_completed`` lines carry ``lag``, the seconds from the scheduler's
  boundary to the job's start (the same figure as ``tradeexecutor_last_cycle_lag_seconds``, for every
  cycle rather than the last); p50, p99 and max;
- errors: journal entries of level ``error`` or ``warning`` and of the events ``crashed``,
  ``safe_mode``, ``cycle_missed``, ``order_rejected``; log lines with ``ERROR``, ``WARNING`` or
  ``Traceback``; the executor's exit code (the ``stop_requested`` warning of the SIGTERM that ends
  the run is not counted);
- orders: the simulator's own list of orders (its control API) and how many filled.

RSS and fds are reported at the start, middle and end of the run with the least-squares slope over
the second half (after every cache has had time to fill), per minute. Goals: RSS and fds flat,
lag p99 < 50 ms, zero errors. Not a pytest test, and none runs it: CI has no minutes to spare for it, and
tests/test_live_e2e.py already drives the same two processes; `--minutes 1` is the smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STRATEGY = ROOT / "bench" / "strategies" / "soak_flip.py"
KEY = "SoakKey0123456789"
SECRET = "soak-secret-0123456789"
ERROR_EVENTS = {"crashed", "safe_mode", "cycle_missed", "order_rejected", "error"}
#: Warnings the benchmark itself causes: the SIGTERM that ends the run.
OURS = ("stop_requested",)


def _environment() -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("TRADEEXECUTOR_")}
    return {**base, "PYTHONUNBUFFERED": "1", "SOAK_KEY": KEY, "SOAK_SECRET": SECRET}


def start_simulator(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``tradeexecutor exchange-sim`` on a free loopback port; its URL."""
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "exchange-sim", "--port", "0", "--speed", "3600",
               "--fee-asset", "quote", "--api-key-env", "SOAK_KEY", "--api-secret-env", "SOAK_SECRET"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:  # warnings may come first
        if line.startswith("exchange simulator listening on "):
            threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
            return process, line.rsplit(" ", 1)[1].strip()
    process.kill()
    raise SystemExit("the simulator ended before it listened")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def proc_sample(pid: int) -> dict[str, float]:
    """The process's VmRSS (KiB), its open fds and its children's VmRSS (KiB), now."""

    def rss(of: int) -> int:
        for line in Path(f"/proc/{of}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    child_rss = 0
    for child in children:
        try:
            child_rss += rss(child)
        except OSError:
            continue
    return {"t": time.monotonic(), "rss_kib": rss(pid), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "children_rss_kib": child_rss}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def slope_per_minute(samples: list[dict[str, float]], key: str) -> float:
    """Least-squares slope of ``key`` against time, per minute (0 with fewer than two samples)."""
    if len(samples) < 2:
        return 0.0
    xs = [s["t"] / 60 for s in samples]
    ys = [s[key] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def read_journal(path: Path) -> list[dict[str, Any]]:
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def soak(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    env = _environment()
    simulator, url = start_simulator(env)
    port = free_port()
    state_dir = directory / "state"
    log_path = directory / "executor.log"
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(STRATEGY), "--mode", args.mode,
               "--exchange", "binance", "--exchange-url", url, "--exchange-key-variable", "SOAK_KEY",
               "--exchange-secret-variable", "SOAK_SECRET", "--state-dir", str(state_dir), "--port", str(port),
               "--param", f"every={args.every}", *args.executor_arg]
    with open(log_path, "wb") as log:
        executor = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=directory)
    samples: list[dict[str, float]] = []
    metrics_status: dict[str, Any] = {}
    exit_code: int | None = None
    try:
        deadline = time.monotonic() + 300
        while True:  # the clock starts at the first completed cycle
            status = get_json(f"http://127.0.0.1:{port}/status")
            if status and status.get("cycles", 0) >= 1:
                break
            if executor.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the executor did not complete a cycle (exit {executor.poll()}):\n"
                                 f"{log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        started = time.monotonic()
        end = started + args.minutes * 60
        while time.monotonic() < end and executor.poll() is None:
            samples.append(proc_sample(executor.pid))
            time.sleep(min(args.sample_seconds, max(0.0, end - time.monotonic())))
        if executor.poll() is None:
            samples.append(proc_sample(executor.pid))
            metrics_status = get_json(f"http://127.0.0.1:{port}/status") or {}
            executor.send_signal(signal.SIGTERM)
        try:
            exit_code = executor.wait(120)
        except subprocess.TimeoutExpired:
            executor.kill()
            exit_code = executor.wait(30)
        sim_orders = get_json(f"{url}/_sim/orders") or []
    finally:
        if executor.poll() is None:
            executor.kill()
            executor.wait(30)
        simulator.send_signal(signal.SIGTERM)
        try:
            simulator.wait(30)
        except subprocess.TimeoutExpired:
            simulator.kill()
            simulator.wait(10)
    journal = read_journal(state_dir / "journal.jsonl")
    cycles = [e for e in journal if e["event"] == "cycle_completed"]
    lags = [float(e["fields"]["lag"]) for e in cycles if e["fields"].get("lag") is not None]
    journal_errors = [e for e in journal if e["event"] not in OURS
                      and (e["level"] in ("error", "warning") or e["event"] in ERROR_EVENTS)]
    log_errors = [line for line in log_path.read_text(errors="replace").splitlines()
                  if ("ERROR" in line or "WARNING" in line or "Traceback" in line)
                  and not any(f": {event} " in line for event in OURS)]
    for sample in samples:
        sample["t"] -= started
    half = [s for s in samples if s["t"] >= (samples[-1]["t"] / 2 if samples else 0)]
    middle = samples[len(samples) // 2] if samples else {}
    return {
        "minutes": args.minutes, "mode": args.mode, "every": args.every,
        "machine": f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs",
        "load_average_end": os.getloadavg(),
        "samples": len(samples),
        "rss_kib": {"start": samples[0]["rss_kib"] if samples else None, "middle": middle.get("rss_kib"),
                    "end": samples[-1]["rss_kib"] if samples else None,
                    "slope_per_min_second_half": slope_per_minute(half, "rss_kib"),
                    "slope_per_min_all": slope_per_minute(samples, "rss_kib")},
        "fds": {"start": samples[0]["fds"] if samples else None, "middle": middle.get("fds"),
                "end": samples[-1]["fds"] if samples else None, "max": max((s["fds"] for s in samples), default=None),
                "slope_per_min_second_half": slope_per_minute(half, "fds")},
        "children_rss_kib": {"start": samples[0]["children_rss_kib"] if samples else None,
                             "end": samples[-1]["children_rss_kib"] if samples else None,
                             "slope_per_min_second_half": slope_per_minute(half, "children_rss_kib")},
        "cycles": len(cycles),
        "lag_ms": {"p50": percentile(lags, 0.5) * 1000 if lags else None,
                   "p99": percentile(lags, 0.99) * 1000 if lags else None,
                   "max": max(lags) * 1000 if lags else None, "count": len(lags)},
        "errors": {"journal": len(journal_errors), "log_lines": len(log_errors), "exit_code": exit_code,
                   "journal_events": sorted({e["event"] for e in journal_errors}),
                   "first_log_lines": log_errors[:5]},
        "orders": {"sent": len(sim_orders), "filled": sum(1 for o in sim_orders if o.get("status") == "FILLED")},
        "status_at_end": {key: metrics_status.get(key) for key in ("safe_mode", "outage", "prices")},
        "rss_series": [(round(s["t"], 1), s["rss_kib"], s["fds"], s["children_rss_kib"]) for s in samples],
    }


def report(result: dict[str, Any]) -> str:
    rss, fds, lag, errors = result["rss_kib"], result["fds"], result["lag_ms"], result["errors"]
    children = result["children_rss_kib"]
    lines = [f"{result['machine']}, load average at the end {result['load_average_end'][0]:.2f}; "
             f"{result['minutes']} min of 1-second cycles in {result['mode']} mode, an order every "
             f"{result['every']} cycles; {result['samples']} samples",
             "", "| measure | start | middle | end | slope (2nd half) |", "|---|---:|---:|---:|---:|",
             f"| executor RSS | {rss['start'] / 1024:.1f} MiB | {rss['middle'] / 1024:.1f} MiB | "
             f"{rss['end'] / 1024:.1f} MiB | {rss['slope_per_min_second_half']:+.1f} KiB/min |",
             f"| open fds | {fds['start']} | {fds['middle']} | {fds['end']} | "
             f"{fds['slope_per_min_second_half']:+.3f} /min |",
             f"| chart renderer RSS (children) | {children['start'] / 1024:.1f} MiB | | "
             f"{children['end'] / 1024:.1f} MiB | {children['slope_per_min_second_half']:+.1f} KiB/min |",
             "", f"cycles {result['cycles']}; lag p50 {lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms, "
             f"max {lag['max']:.2f} ms ({lag['count']} cycles with a lag)",
             f"errors: {errors['journal']} journal, {errors['log_lines']} log lines, exit code "
             f"{errors['exit_code']} {errors['journal_events']} {errors['first_log_lines']}",
             f"orders on the simulator: {result['orders']['sent']} ({result['orders']['filled']} filled)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--every", type=int, default=5, help="cycles between two orders")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--mode", choices=("live", "paper"), default="live")
    parser.add_argument("--json", type=Path, help="write every figure (and the RSS/fd series) here")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep the state and logs")
    parser.add_argument("--executor-arg", action="append", default=[],
                        help="one more option for `tradeexecutor start` (repeatable), e.g. --executor-arg=--cpu=off")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = soak(args, args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
            result = soak(args, Path(tmp))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    print(report(result))


if __name__ == "__main__":
    main()

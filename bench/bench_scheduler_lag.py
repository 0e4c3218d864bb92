"""Benchmark: delay between a 1-second cycle boundary and the start of that cycle, with 50 pollers on /status.

Run from the repository root::

    python bench/bench_scheduler_lag.py [--runs 3] [--unpinned-runs 3] [--cycles 60] [--baseline-runs 1]

Each run is a harness in a fresh child process that builds the real daemon with ``build_daemon`` — the
real ApschedulerTicker, CommandQueue, ExecutorLoop, Engine, StateStore and Publisher, exactly as
``tradeexecutor start bench/strategies/sma_lag_probe.py --replay-seconds 1 --max-cycles 60`` wires
them, so with the default configuration: charts on (``--chart-seconds 10``, drawn by the chart
renderer's process), threads pinned (``--cpu auto``) — and serves its RunState on the real
WebhookServer/create_app (default thread count) on 127.0.0.1, while wrk (``-c 50 -t 2``, or
http.client poller threads in another process when wrk is missing) polls /status from its own
process for the whole run. ``--chart-seconds`` changes the chart interval of every run (0: charts
off), for comparisons; each run reports how many charts were drawn.

For every cycle it records three instants, each measured from the cycle's 1 s boundary:

- fire: the APScheduler thread queued the tick (``CommandQueue.put_tick`` called);
- job start: the loop's worker thread took the tick (a wrapper around ``ExecutorLoop.handle``);
- decide: the strategy's ``decide()`` was entered (``time.time()`` recorded by the probe strategy).

Up to four configurations run side by side, alternating: 50 pollers with the daemon's default
configuration (``--cpu auto``: every thread pinned to one CPU, as ``start`` does it with
``CpuPinning``; charts on), 50 pollers with ``--cpu off`` (the OS places the threads), 50
pollers with charts off (``--no-chart-runs``: what the charts cost), and no load (pinned). The
load generator is never pinned: it is started with every CPU allowed, not the executor's one
(before 2026-12 it inherited the harness's pin and shared the executor's CPU). Reports p50/p95/p99/max of each measure pooled per configuration (goal:
p99 job start < 50 ms under load), the per-run p99s, /status throughput, and the
unpinned/pinned ratios. Not a pytest test.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import LoadRun, have_wrk, percentile

ROOT = Path(__file__).resolve().parents[1]
PROBE_STRATEGY = ROOT / "bench" / "strategies" / "sma_lag_probe.py"
MEASURES = ("fire", "job", "decide")


def child(args: argparse.Namespace) -> None:
    """One run: the real daemon in this process, the webhook under load from a wrk process; prints JSON."""
    from tradeexecutor.daemon.affinity import CpuPinning
    from tradeexecutor.daemon.commands import CommandKind, JobKind
    from tradeexecutor.daemon.runner import build_daemon
    from tradeexecutor.settings import DaemonConfig, FeedConfig
    from tradeexecutor.webhook import WebhookServer, create_app

    workdir = Path(tempfile.mkdtemp(prefix="bench_lag_"))
    # start_cmd._configure_logging, to a file instead of stderr.
    logging.basicConfig(level=logging.INFO, filename=str(workdir / "daemon.log"),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    chart_seconds = {} if args.chart_seconds is None else {"chart_seconds": args.chart_seconds}
    config = DaemonConfig(strategy_file=args.strategy, state_dir=workdir / "state", port=0,
                          feed=FeedConfig(replay_seconds=1.0),
                          max_cycles=args.cycles, cpu=args.cpu, **chart_seconds)
    unpinned_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    pinning = CpuPinning(config.cpu)  # as start_cmd does, before any thread starts
    pinning.start()
    daemon = build_daemon(config)
    entries: list[float] = daemon.engine.strategy.decide.__globals__["ENTRIES"]
    ticks: list[tuple[float, float]] = []  # (fired, job started) per cycle tick
    fired: list[float] = []  # when the APScheduler thread queued each cycle tick
    handle = daemon.loop.handle
    put_tick = daemon.commands.put_tick

    def timed_put_tick(job, scheduled_at=None):
        if job is JobKind.cycle:
            fired.append(time.time())
        return put_tick(job, scheduled_at)

    def timed_handle(command):
        if command.kind is CommandKind.tick and command.job is JobKind.cycle:
            ticks.append((fired[-1] if fired else math.nan, time.time()))
        handle(command)

    daemon.commands.put_tick = timed_put_tick

    daemon.loop.handle = timed_handle
    charts: list[float] = []  # when each set of chart images was stored
    set_images = daemon.runstate.set_images

    def timed_set_images(images, now=None):
        charts.append(time.time())
        return set_images(images, now)

    daemon.runstate.set_images = timed_set_images
    submits: list[float] = []  # when the loop handed each delta to the chart renderer
    renderer = daemon.publisher.renderer
    if renderer is not None:
        submit = renderer.submit

        def timed_submit(delta):
            accepted = submit(delta)
            if accepted:
                submits.append(time.time())
            return accepted

        renderer.submit = timed_submit
    server = WebhookServer(create_app(daemon.runstate), host="127.0.0.1", port=0,
                           threads=args.webhook_threads).start()
    load = None
    if args.load:
        # The load generator stands for clients elsewhere: it must not inherit the executor's pinned CPU.
        # A child process inherits the mask of the thread that starts it, so widen ours for the start only.
        pinned = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
        if pinned is not None:
            os.sched_setaffinity(0, unpinned_cpus)
        try:
            load = LoadRun(f"{server.url}/status", args.connections, args.cycles + 60, args.wrk_threads).start()
        finally:
            if pinned is not None:
                os.sched_setaffinity(0, pinned)
        time.sleep(0.5)
    try:
        code = daemon.run(None)
    finally:
        result = load.stop() if load is not None else None
        server.stop()
    print("CHILDJSON " + json.dumps({
        "exit_code": code, "ticks": ticks, "entries": list(entries), "threads": server.threads,
        "rps": result.rps if result else None, "p50_ms": result.p50_ms if result else None,
        "p99_ms": result.p99_ms if result else None,
        "errors": (result.errors + result.non2xx) if result else 0, "cpu": pinning.cpu, "charts": len(charts),
        "chart_times": charts, "chart_submits": submits,
        "chart_seconds": config.chart_seconds}), flush=True)
    pinning.stop()
    logging.shutdown()
    shutil.rmtree(workdir, ignore_errors=True)


def lags(run: dict) -> dict[str, list[float]]:
    """Per-cycle lags (ms) from the boundary (the whole second the tick fired in) to fire, job start, decide."""
    ticks, entries = run["ticks"], run["entries"]
    if len(ticks) != len(entries):
        print(f"  warning: {len(ticks)} cycle ticks but {len(entries)} decide() calls", flush=True)
    out: dict[str, list[float]] = {name: [] for name in MEASURES}
    for (fired, started), entered in zip(ticks, entries):
        boundary = math.floor(fired)
        out["fire"].append((fired - boundary) * 1e3)
        out["job"].append((started - boundary) * 1e3)
        out["decide"].append((entered - boundary) * 1e3)
    return out


#: The run configurations: (label, pollers on /status, threads pinned to one CPU).
CONFIGS = {
    "pinned": ("50 pollers, --cpu auto (default)", True, True),
    "unpinned": ("50 pollers, --cpu off", True, False),
    "no-charts": ("50 pollers, --cpu auto, --chart-seconds 0", True, True),
    "quiet": ("no load, --cpu auto", False, True),
}


def run_child(args: argparse.Namespace, config: str) -> dict:
    _, load, pinned = CONFIGS[config]
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--cycles", str(args.cycles),
               "--connections", str(args.connections), "--wrk-threads", str(args.wrk_threads),
               "--strategy", str(args.strategy), "--webhook-threads", str(args.webhook_threads),
               "--cpu", "auto" if pinned else "off"]
    if config == "no-charts":
        command += ["--chart-seconds", "0"]
    elif args.chart_seconds is not None:
        command += ["--chart-seconds", str(args.chart_seconds)]
    command += [] if load else ["--no-load"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          timeout=args.cycles + 300, check=False)
    line = next((row for row in proc.stdout.splitlines() if row.startswith("CHILDJSON ")), None)
    if line is None:
        raise RuntimeError(f"harness run failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(line.split(" ", 1)[1])


def describe(values: list[float]) -> str:
    return " | ".join(f"{percentile(values, q):.1f} ms" for q in (50, 95, 99)) + f" | {max(values):.1f} ms"


def plan_runs(args: argparse.Namespace) -> list[str]:
    """The loaded configurations alternate (so the machine's drifts hit each); quiet runs are spread among them."""
    plan: list[str] = []
    for i in range(max(args.runs, args.unpinned_runs, args.no_chart_runs)):
        plan += (["pinned"] if i < args.runs else []) + (["unpinned"] if i < args.unpinned_runs else []) \
            + (["no-charts"] if i < args.no_chart_runs else [])
    for i in range(args.baseline_runs):
        plan.insert(min(len(plan), 3 * i + 2), "quiet")
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs with 50 pollers, threads pinned (--cpu auto)")
    parser.add_argument("--unpinned-runs", type=int, default=None,
                        help="runs with 50 pollers and --cpu off (default: as many as --runs)")
    parser.add_argument("--baseline-runs", type=int, default=1, help="runs without load")
    parser.add_argument("--no-chart-runs", type=int, default=0,
                        help="runs with 50 pollers, threads pinned and charts off (--chart-seconds 0), for comparison")
    parser.add_argument("--cycles", type=int, default=60)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--webhook-threads", type=int, default=4, help="the executor's webhook worker threads")
    parser.add_argument("--chart-seconds", type=float, default=None,
                        help="chart interval of every run (default: the daemon's default; 0: charts off)")
    parser.add_argument("--cpu", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", type=Path, default=PROBE_STRATEGY)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-load", dest="load", action="store_false", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.unpinned_runs is None:
        args.unpinned_runs = args.runs

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}; load generator: "
          f"{f'wrk -c {args.connections} -t {args.wrk_threads}' if have_wrk() else 'http.client threads'}",
          flush=True)
    pooled = {config: {name: [] for name in MEASURES} for config in CONFIGS}
    p99s: dict[str, list[float]] = {config: [] for config in CONFIGS}
    rps: dict[str, list[float]] = {config: [] for config in CONFIGS}
    for number, config in enumerate(plan_runs(args), 1):
        label, load, _ = CONFIGS[config]
        run = run_child(args, config)
        measured = lags(run)
        for name in MEASURES:
            pooled[config][name].extend(measured[name])
        p99s[config].append(percentile(measured["job"], 99))
        if load:
            rps[config].append(run["rps"])
        print(f"run {number} ({label}): {len(measured['job'])} cycles, "
              f"job start p50 {percentile(measured['job'], 50):.1f} ms p99 {percentile(measured['job'], 99):.1f} ms "
              f"max {max(measured['job']):.1f} ms"
              + (f"; /status {run['rps']:,.0f} req/s p99 {run['p99_ms']:.0f} ms, {run['errors']} errors, "
                 f"{run['threads']} webhook threads" if load else "")
              + (f"; pinned to CPU {run['cpu']}" if run["cpu"] is not None else "; not pinned")
              + f"; {run['charts']} chart renders (--chart-seconds {run['chart_seconds']:g})",
              flush=True)

    print()
    print(f"Command: `python bench/bench_scheduler_lag.py --runs {args.runs} --unpinned-runs {args.unpinned_runs} "
          f"--cycles {args.cycles} --baseline-runs {args.baseline_runs} --no-chart-runs {args.no_chart_runs}"
          + (f" --chart-seconds {args.chart_seconds:g}" if args.chart_seconds is not None else "") + "`")
    print()
    print("| boundary → | runs | cycles | p50 | p95 | p99 | max | goal |")
    print("|---|---|---|---|---|---|---|---|")
    labels = {"fire": "tick queued (APScheduler thread)", "job": "**cycle job starts** (loop thread)",
              "decide": "decide() entered"}
    for config, (label, load, _) in CONFIGS.items():
        if not pooled[config]["job"]:
            continue
        for name in MEASURES:
            goal = "p99 < 50 ms" if name == "job" and load else ""
            print(f"| {labels[name]} | {label} | {len(pooled[config][name])} | "
                  f"{describe(pooled[config][name])} | {goal} |")
    print()
    for config, (label, _, _) in CONFIGS.items():
        if p99s[config]:
            print(f"per-run p99 of job start, {label}: {', '.join(f'{x:.1f}' for x in p99s[config])} ms "
                  f"(median {statistics.median(p99s[config]):.1f} ms)"
                  + (f"; /status {statistics.median(rps[config]):,.0f} req/s (median)" if rps[config] else ""))
    if pooled["pinned"]["job"] and pooled["no-charts"]["job"]:
        ratio = percentile(pooled["pinned"]["job"], 99) / max(percentile(pooled["no-charts"]["job"], 99), 1e-9)
        print(f"pooled p99 of job start, charts on (default) / charts off: {ratio:.2f}x")
    if pooled["pinned"]["job"] and pooled["unpinned"]["job"]:
        ratio = percentile(pooled["unpinned"]["job"], 99) / max(percentile(pooled["pinned"]["job"], 99), 1e-9)
        throughput = statistics.median(rps["pinned"]) / statistics.median(rps["unpinned"])
        print(f"pooled p99 of job start, unpinned / pinned: {ratio:.1f}x; /status throughput, pinned / unpinned: "
              f"{throughput:.2f}x")


if __name__ == "__main__":
    main()

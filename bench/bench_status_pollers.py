"""Benchmark: the executor's /status and /summary under 50 concurrent pollers while 1-second cycles run.

Run from the repository root::

    python bench/bench_status_pollers.py [--rounds 3] [--seconds 10] [--connections 50]

Starts the real daemon as a subprocess::

    tradeexecutor start bench/strategies/sma_lag_probe.py --replay-seconds 1 --port <free>
        --state-dir <tmp> --cpu <--cpu, default auto>

(the default configuration otherwise: charts on, drawn by the chart renderer's process)

(``sma_lag_probe`` is strategies/sma_crossover.py plus one ``time.time()`` recorded at the entry of
each ``decide()``, appended to a file), and a bare waitress app in another subprocess that returns
a constant JSON body (the daemon's own /status body, captured once) with the same thread count as
the daemon's webhook (``WebhookServer``'s default, read by introspection) and the same ``--cpu``
pinning. Each is driven by 50
keep-alive pollers in a separate process (wrk ``-c 50 -t 2`` when installed, else http.client
threads in a child process) for ``--seconds`` each, alternating daemon and bare app::

    round: /status (A), bare (B), /summary (A), bare (B), quiet (no load)

Reports the median over rounds of requests/second, p50/p99 latency and the ratio to the median
bare-app run of the same round (goal ≥ 0.5), and the cycle start lag of the daemon (cycle
boundary → decide() entry, pooled over rounds) in each phase: no load, under /status, under
/summary, and under the bare-app load (the same CPU contention without touching the daemon).
A boundary of a phase with no cycle started within 1 s is counted as missed.

Not a pytest test; figures are for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _load import BareApp, LoadResult, LoadRun, free_port, have_wrk, percentile, stop_process, wait_http

from tradeexecutor.webhook import WebhookServer

ROOT = Path(__file__).resolve().parents[1]
PROBE_STRATEGY = ROOT / "bench" / "strategies" / "sma_lag_probe.py"


def webhook_threads() -> int:
    """The daemon's webhook thread count: WebhookServer's default (start_cmd passes none)."""
    return int(inspect.signature(WebhookServer.__init__).parameters["threads"].default)


def start_daemon(workdir: Path, port: int, probe: Path, strategy: Path, cpu: str) -> tuple[subprocess.Popen, object]:
    command = [sys.executable, "-m", "tradeexecutor.cli.main", "start", str(strategy), "--replay-seconds", "1",
               "--port", str(port), "--state-dir", str(workdir / "state"), "--cpu", cpu]
    log = open(workdir / "daemon.log", "w")  # noqa: SIM115 - closed by the caller
    env = {**os.environ, "TRADEEXECUTOR_BENCH_PROBE": str(probe)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log


def lag_stats(entries: list[float], windows: list[tuple[float, float]]) -> dict[str, float]:
    """Lag (ms) of every cycle whose 1-second boundary lies in one of ``windows``; missed boundaries."""
    by_boundary: dict[int, list[float]] = {}
    for t in entries:
        by_boundary.setdefault(math.floor(t), []).append(t)
    lags: list[float] = []
    missed = doubled = 0
    for begin, end in windows:
        for boundary in range(math.ceil(begin), math.floor(end) + 1):
            starts = by_boundary.get(boundary, [])
            if not starts:
                missed += 1
                continue
            doubled += len(starts) > 1
            lags.append((starts[0] - boundary) * 1e3)
    return {"n": len(lags), "p50": percentile(lags, 50), "p99": percentile(lags, 99),
            "max": max(lags, default=math.nan), "missed": missed, "doubled": doubled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load (and quiet) phase")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--strategy", type=Path, default=PROBE_STRATEGY,
                        help="strategy run by the daemon (must append decide() entry times to $TRADEEXECUTOR_BENCH_PROBE)")
    parser.add_argument("--cpu", default="auto",
                        help="the daemon's --cpu, applied to the bare app too (default: the daemon's default, auto)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, state)")
    args = parser.parse_args()

    threads = webhook_threads()
    workdir = Path(tempfile.mkdtemp(prefix="bench_pollers_"))
    probe = workdir / "decide_entries.txt"
    port = free_port()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}; load generator: "
          f"{f'wrk -c {args.connections} -t {args.wrk_threads}' if have_wrk() else 'http.client threads'}; "
          f"webhook threads: {threads}; workdir {workdir}", flush=True)

    daemon, daemon_log = start_daemon(workdir, port, probe, args.strategy, args.cpu)
    bare: BareApp | None = None
    results: dict[str, list[LoadResult]] = {"status": [], "summary": [], "bare": []}
    ratios: dict[str, list[float]] = {"status": [], "summary": []}
    windows: dict[str, list[tuple[float, float]]] = {"quiet": [], "status": [], "summary": [], "bare": []}
    try:
        wait_http(port, "/summary", timeout=120, proc=daemon)  # 404 until the first cycle completed
        status_body = wait_http(port, "/status", proc=daemon)
        bare = BareApp(status_body, threads, workdir, cpu=args.cpu)
        time.sleep(2)
        order = ["status", "bare", "summary", "bare", "quiet"]
        for round_no in range(1, args.rounds + 1):
            round_runs: dict[str, list[LoadResult]] = {"status": [], "summary": [], "bare": []}
            for phase in order:
                if daemon.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {daemon.returncode}; see {workdir / 'daemon.log'}")
                if phase == "quiet":
                    begin = time.time()
                    time.sleep(args.seconds)
                    windows["quiet"].append((begin + 0.5, time.time() - 0.5))
                else:
                    url = (f"http://127.0.0.1:{bare.port}/status" if phase == "bare"
                           else f"http://127.0.0.1:{port}/{phase}")
                    run = LoadRun(url, args.connections, args.seconds, args.wrk_threads).start()
                    result = run.wait()
                    windows[phase].append((run.started + 0.5, run.started + args.seconds - 0.3))
                    round_runs[phase].append(result)
                    results[phase].append(result)
                    if result.errors or result.non2xx:
                        print(f"  warning: {phase}: {result.errors} socket errors, {result.non2xx} non-2xx", flush=True)
                time.sleep(1.0)
            bare_rps = statistics.median(r.rps for r in round_runs["bare"])
            for phase in ("status", "summary"):
                ratios[phase].append(round_runs[phase][0].rps / bare_rps)
            print(f"round {round_no}: " + ", ".join(
                f"{phase} {r.rps:,.0f} req/s p50 {r.p50_ms:.1f} ms p99 {r.p99_ms:.1f} ms"
                for phase in ("status", "summary", "bare") for r in round_runs[phase]), flush=True)
    finally:
        if bare is not None:
            bare.stop()
        stop_process(daemon)
        daemon_log.close()

    entries = [float(line) for line in probe.read_text().split()] if probe.exists() else []
    lag = {phase: lag_stats(entries, spans) for phase, spans in windows.items()}

    def med(phase: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[phase])

    print()
    print(f"Command: `python bench/bench_status_pollers.py --rounds {args.rounds} --seconds {args.seconds:g} --cpu {args.cpu}`"
          f" — medians of {args.rounds} rounds ({len(results['bare'])} bare-app runs)")
    print()
    print("| measure | /status | /summary | bare waitress (same body, same threads) | goal |")
    print("|---|---|---|---|---|")
    print(f"| requests/second | {med('status', 'rps'):,.0f} | {med('summary', 'rps'):,.0f} | "
          f"{med('bare', 'rps'):,.0f} | — |")
    print(f"| ratio to bare app (per round, median) | **{statistics.median(ratios['status']):.2f}** "
          f"({', '.join(f'{x:.2f}' for x in ratios['status'])}) | **{statistics.median(ratios['summary']):.2f}** "
          f"({', '.join(f'{x:.2f}' for x in ratios['summary'])}) | 1 | ≥ 0.5 |")
    print(f"| p50 latency | {med('status', 'p50_ms'):.1f} ms | {med('summary', 'p50_ms'):.1f} ms | "
          f"{med('bare', 'p50_ms'):.1f} ms | — |")
    print(f"| p99 latency | {med('status', 'p99_ms'):.1f} ms | {med('summary', 'p99_ms'):.1f} ms | "
          f"{med('bare', 'p99_ms'):.1f} ms | — |")
    errors = {phase: sum(r.errors + r.non2xx for r in results[phase]) for phase in results}
    print(f"| errors (socket + non-2xx) | {errors['status']} | {errors['summary']} | {errors['bare']} | 0 |")
    print()
    print("Daemon cycle start lag (1 s boundary → decide() entry), pooled over rounds:")
    print()
    print("| daemon phase | cycles | p50 | p99 | max | missed boundaries |")
    print("|---|---|---|---|---|---|")
    names = {"quiet": "no load", "status": "50 pollers on /status", "summary": "50 pollers on /summary",
             "bare": "50 pollers on the bare app (CPU contention only)"}
    for phase in ("quiet", "status", "summary", "bare"):
        s = lag[phase]
        doubled = f" ({s['doubled']} doubled)" if s["doubled"] else ""
        print(f"| {names[phase]} | {s['n']} | {s['p50']:.1f} ms | {s['p99']:.1f} ms | {s['max']:.1f} ms | "
              f"{s['missed']}{doubled} |")
    if not args.keep:
        for path in sorted(workdir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        workdir.rmdir()


if __name__ == "__main__":
    main()

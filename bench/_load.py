"""Shared helpers of the poller benchmarks: a load generator in its own process, a bare waitress app, percentiles.

Used by ``bench/bench_status_pollers.py`` and ``bench/bench_scheduler_lag.py``; not a benchmark itself.

Load generator: ``wrk`` (Debian package ``wrk``) when installed — ``-c 50 -t 2`` keep-alive
connections, exact percentiles from a Lua ``done`` hook — otherwise a fallback that runs N
``http.client`` keep-alive poller threads in a *separate* Python process
(``python bench/_load.py poll ...``), so the poller's GIL never competes with the measuring
process.

Bare app: ``python bench/_load.py bare --port P --threads T --body-file F [--cpu auto]`` serves the
bytes of F as ``application/json`` for every path on waitress with T threads, the daemon's logging
set-up and (with ``--cpu``) the daemon's CPU pinning, the baseline the webhook is compared with.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d," ..
    "\"errors\":%d,\"non2xx\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class LoadResult:
    """What one load run measured (latencies in milliseconds)."""

    url: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non2xx: int
    tool: str


# -- small utilities ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one GET on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_http(port: int, path: str, timeout: float = 60.0, want: int = 200, proc: subprocess.Popen | None = None) -> bytes:
    """Poll ``path`` until it answers ``want``; the body. Raises when ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {path} answered")
        try:
            status, body = http_get(port, path, timeout=2.0)
            if status == want:
                return body
            last = f"status {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise TimeoutError(f"127.0.0.1:{port}{path} did not answer {want} within {timeout}s ({last})")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal one child we started and wait; kill it if it does not end in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


# -- load generation ------------------------------------------------------------------------------


class LoadRun:
    """One load run against ``url`` in a child process: start(), then wait() (fixed duration) or stop() (open-ended)."""

    def __init__(self, url: str, connections: int = 50, seconds: float = 10.0, threads: int = 2,
                 use_wrk: bool | None = None) -> None:
        self.url = url
        self.connections = connections
        self.seconds = seconds
        self.threads = threads
        self.use_wrk = have_wrk() if use_wrk is None else use_wrk
        self.proc: subprocess.Popen | None = None
        self.started = math.nan
        self.ended = math.nan
        self._lua: str | None = None

    def start(self) -> LoadRun:
        if self.use_wrk:
            fd, self._lua = tempfile.mkstemp(suffix=".lua", prefix="bench_wrk_")
            with os.fdopen(fd, "w") as handle:
                handle.write(_WRK_LUA)
            duration = max(1, math.ceil(self.seconds))
            command = ["wrk", "-c", str(self.connections), "-t", str(self.threads), "-d", f"{duration}s",
                       "--timeout", "10s", "-s", self._lua, self.url]
        else:
            command = [sys.executable, str(Path(__file__).resolve()), "poll", self.url,
                       "--connections", str(self.connections), "--seconds", str(self.seconds)]
        self.started = time.time()
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def stop(self) -> LoadResult:
        """End an open-ended run early (SIGINT: both tools then report what they measured)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait()

    def wait(self) -> LoadResult:
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.ended = time.time()
        if self._lua:
            os.unlink(self._lua)
            self._lua = None
        line = next((row for row in out.splitlines() if row.startswith(("WRKJSON ", "POLLJSON "))), None)
        if line is None:
            raise RuntimeError(f"load generator gave no result (rc {self.proc.returncode}): {out[-500:]} {err[-500:]}")
        data = json.loads(line.split(" ", 1)[1])
        seconds = data["duration_us"] / 1e6
        return LoadResult(url=self.url, requests=data["requests"], seconds=seconds,
                          rps=data["requests"] / seconds if seconds else math.nan,
                          p50_ms=data["p50_us"] / 1e3, p90_ms=data["p90_us"] / 1e3, p99_ms=data["p99_us"] / 1e3,
                          max_ms=data["max_us"] / 1e3, errors=data["errors"], non2xx=data["non2xx"],
                          tool="wrk" if self.use_wrk else "http.client threads")


def _poll_main(args: argparse.Namespace) -> None:
    """Fallback load generator: ``connections`` keep-alive poller threads for ``seconds`` (or until SIGINT)."""
    from urllib.parse import urlsplit

    parts = urlsplit(args.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    latencies: list[list[float]] = [[] for _ in range(args.connections)]
    errors = [0] * args.connections
    non2xx = [0] * args.connections

    def poller(i: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        while not stop.is_set():
            begin = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                latencies[i].append(time.perf_counter() - begin)
                if not 200 <= response.status < 400:
                    non2xx[i] += 1
            except (OSError, http.client.HTTPException):
                errors[i] += 1
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        connection.close()

    workers = [threading.Thread(target=poller, args=(i,), daemon=True) for i in range(args.connections)]
    begin = time.perf_counter()
    for worker in workers:
        worker.start()
    stop.wait(args.seconds)
    stop.set()
    elapsed = time.perf_counter() - begin
    for worker in workers:
        worker.join(15)
    every = [value for values in latencies for value in values]
    pct = {q: percentile(every, q) * 1e6 for q in (50, 90, 99)}
    print("POLLJSON " + json.dumps({
        "requests": len(every), "duration_us": int(elapsed * 1e6), "p50_us": pct[50], "p90_us": pct[90],
        "p99_us": pct[99], "max_us": max(every, default=0) * 1e6, "errors": sum(errors), "non2xx": sum(non2xx)}),
        flush=True)


# -- the bare baseline app ------------------------------------------------------------------------


class BareApp:
    """The baseline server in a child process: waitress, ``threads`` threads, one constant JSON body."""

    def __init__(self, body: bytes, threads: int, workdir: Path, cpu: str = "off") -> None:
        self.port = free_port()
        self.body_file = workdir / "bare_body.json"
        self.body_file.write_bytes(body)
        self.log = open(workdir / "bare.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "bare", "--port", str(self.port),
             "--threads", str(threads), "--body-file", str(self.body_file), "--cpu", cpu],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_http(self.port, "/status", timeout=30, proc=self.proc)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def _bare_main(args: argparse.Namespace) -> None:
    import logging

    import waitress

    # The daemon's logging set-up (start_cmd._configure_logging). The daemon's server logs a summary of
    # queued requests once a minute instead of waitress's warning per request: silence those here too.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    if args.cpu != "off":  # the daemon's own --cpu treatment, so the comparison stays like for like
        sys.path.insert(0, str(ROOT))
        from tradeexecutor.daemon.affinity import CpuPinning

        CpuPinning(args.cpu).start()
    body = Path(args.body_file).read_bytes()
    headers = [("Content-Type", "application/json; charset=UTF-8"), ("Content-Length", str(len(body))),
               ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]

    def app(environ, start_response):
        start_response("200 OK", headers)
        return [body]

    waitress.serve(app, host="127.0.0.1", port=args.port, threads=args.threads, ident="bare",
                   expose_tracebacks=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    bare = sub.add_parser("bare", help="serve a constant JSON body on waitress")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--threads", type=int, required=True)
    bare.add_argument("--body-file", required=True)
    bare.add_argument("--cpu", default="off", help="pin like the daemon's --cpu (auto, off or a CPU number)")
    poll = sub.add_parser("poll", help="keep-alive poller threads (fallback when wrk is missing)")
    poll.add_argument("url")
    poll.add_argument("--connections", type=int, default=50)
    poll.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.command == "bare":
        _bare_main(args)
    else:
        _poll_main(args)


if __name__ == "__main__":
    main()


__all__ = ["BareApp", "LoadResult", "LoadRun", "asdict", "free_port", "have_wrk", "http_get", "percentile",
           "stop_process", "wait_http"]

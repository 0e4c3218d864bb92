"""Slow HTTP pollers in a process of their own, for tests that load the webhook: ``python tests/slow_pollers.py URL N``.

Each of N threads keeps one keep-alive connection and, until the process gets SIGTERM, sends a
request for URL's path in two writes 20 ms apart (a slow sender), reads the response 256 bytes
at a time with a pause after each read (a slow reader), and starts over. A connection the
server closes is reopened. While running it prints ``OK n`` whenever the count n of 200 responses has grown
(checked ten times a second), so a test can wait for work done instead of sleeping; on SIGTERM it prints one JSON
line: responses completed, by status.

A process of its own, so the pollers' interpreter lock never competes with the test's server.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit

stop = threading.Event()
statuses: Counter[int] = Counter()
lock = threading.Lock()


def poll(host: str, port: int, path: str) -> None:
    head = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
    sock: socket.socket | None = None
    while not stop.is_set():
        try:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=30)
            sock.sendall(head)
            time.sleep(0.02)
            sock.sendall(b"Accept: application/json\r\n\r\n")
            status = read_response(sock)
            with lock:
                statuses[status] += 1
        except OSError:
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.05)
    if sock is not None:
        sock.close()


def read_response(sock: socket.socket) -> int:
    """Read one response slowly; its status code."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
        time.sleep(0.005)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(256)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
        time.sleep(0.005)
    return int(head.split(b" ", 2)[1])


def main() -> None:
    url, count = sys.argv[1], int(sys.argv[2])
    parts = urlsplit(url)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=poll, args=(parts.hostname, parts.port, parts.path or "/"), daemon=True)
               for _ in range(count)]
    for thread in threads:
        thread.start()
    print("READY", flush=True)
    shown = 0
    while not stop.wait(0.1):
        with lock:
            ok = statuses[200]
        if ok > shown:
            print(f"OK {ok}", flush=True)
            shown = ok
    for thread in threads:
        thread.join(5)
    print(json.dumps({str(code): n for code, n in statuses.items()}), flush=True)


if __name__ == "__main__":
    main()

"""``autocnc serve`` as a process of its own, for the benchmarks that measure over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(env: Mapping[str, str], ready_within_s: float = 300.0) -> Iterator[str]:
    """Start ``autocnc serve`` on a free local port with ``env`` (its data directory and
    store), wait until ``/healthz`` answers, yield its base URL, and stop it afterwards."""
    port = free_port()
    autocnc = str(Path(sys.executable).with_name("autocnc"))
    server = subprocess.Popen([autocnc, "serve", "--port", str(port)], env=dict(env),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_within_s
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"autocnc serve did not start (exit code {server.poll()})")
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=60)

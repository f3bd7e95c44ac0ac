"""Helpers of the live tests: real binaries (Prometheus, Alertmanager, ``autocnc serve``)
started on 127.0.0.1 and stopped by their pid, and waiting for what they do.

The monitoring binaries come from Debian (``bash .ci/prometheus.sh install``): missing, a
test that needs them is skipped locally and fails under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

PROMETHEUS = os.environ.get("PROMETHEUS_BIN", "prometheus")
ALERTMANAGER = os.environ.get("ALERTMANAGER_BIN", "prometheus-alertmanager")
PROMTOOL = os.environ.get("PROMTOOL_BIN", "promtool")
AUTOCNC = str(Path(sys.executable).with_name("autocnc"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need(*binaries: str) -> None:
    missing = [b for b in binaries if shutil.which(b) is None]
    if not missing:
        return
    why = f"{', '.join(missing)} not installed (bash .ci/prometheus.sh install)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {why}: the live Prometheus tests must run in CI")
    pytest.skip(why)


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 40.0,
             alive: Callable[[], None] | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            got = check()
        except (httpx.TransportError, OSError):
            got = None
        if got:
            return got
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


@dataclass
class Process:
    """A binary started on 127.0.0.1, stopped by its pid."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, argv: list[str], log: Path, ready_url: str,
              env: dict[str, str] | None = None, timeout_s: float = 120.0) -> Process:
        with log.open("wb") as out:
            popen = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        proc = cls(name, popen, log)
        try:
            wait_for(f"{name} at {ready_url}",
                     lambda: httpx.get(ready_url, timeout=5).status_code == 200,
                     timeout_s, proc.check)
        except BaseException:
            proc.stop()
            raise
        return proc

    def check(self) -> None:
        if self.popen.poll() is not None:
            raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n"
                                 + self.log.read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=30)


def start_alertmanager(tmp: Path, config: str, port: int | None = None,
                       name: str = "alertmanager") -> tuple[Process, str]:
    """A real Alertmanager (clustering off) with ``config`` (YAML text) on 127.0.0.1;
    its state under ``tmp/name``."""
    need(ALERTMANAGER)
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tmp / f"{name}.yml"
    cfg.write_text(config)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Process.start(name, [
        ALERTMANAGER, f"--config.file={cfg}", f"--storage.path={tmp / name}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
        "--log.level=warn"], tmp / f"{name}.log", f"{url}/-/ready")
    return proc, url


def post_alerts(am_url: str, alerts: Sequence[dict[str, Any]]) -> None:
    """Alerts posted to Alertmanager's own API (``POST /api/v2/alerts``), as Prometheus
    does; times (datetimes) are sent to the millisecond, as Prometheus sends them."""
    body = [{k: _rfc3339(v) if isinstance(v, datetime) else v for k, v in a.items()}
            for a in alerts]
    httpx.post(f"{am_url}/api/v2/alerts", json=body, timeout=10).raise_for_status()


def _rfc3339(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def start_server(tmp: Path, settings: Any, env: dict[str, str] | None = None,
                 config: str = "", name: str = "serve", port: int | None = None
                 ) -> tuple[Process, str]:
    """``autocnc serve`` on the settings' backend and data directory, with ``config``
    written as its config file and ``env`` added to the environment; ready on return."""
    full = {**os.environ, "AUTOCNC_DATA_DIR": str(settings.data_dir),
            "AUTOCNC_STORE": settings.store, **(env or {})}
    if settings.neo4j_uri:
        full["NEO4J_URI"] = settings.neo4j_uri
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "config.yaml").write_text(config)
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Process.start("autocnc serve", [AUTOCNC, "serve", "--port", str(port)],
                         tmp / f"{name}.log", f"{url}/readyz", env=full, timeout_s=300)
    return proc, url

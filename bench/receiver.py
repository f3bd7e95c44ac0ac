"""Receiver benchmark: the Alertmanager webhook of ``autocnc serve`` under a storm, and the
restart after ``kill -9``.

    python bench/receiver.py [--seconds 60] [--connections 32]
                             [--restart-at 10000,100000] [--store embedded]
                             [--ack journal|graph] [--ack-wait-ms 250]

``autocnc serve`` runs as its own process on a fresh data directory holding the
online-boutique topology and the kube-prometheus rules. A separate load process (this file
with ``load``) sends Alertmanager v4 payloads of 10 alerts each (new fingerprints; pods of
the topology's workloads with fresh hash suffixes, see bench/ingest_sources.py) from
``--connections`` connections.

- storm: ``--seconds`` of load; prints payloads/s, alerts/s, acknowledgement latency
  p50 / p99 / max, how many answers came from the intake journal and the mean group commit
  of the others, the largest write-ahead log seen (embedded store) and the largest journal
  lag; then waits for the journal to drain into the graph (printing how long) and checks
  that every acknowledged alert is in the graph. 503 answers (the journal's back-pressure)
  are retried after their Retry-After, as Alertmanager does.
- restart: on a second fresh data directory, load until each ``--restart-at`` count of
  acknowledged alerts, stop the load, ``kill -9`` the server, start it again and time the
  start to ``/readyz`` 200; then the count of alerts in the graph must equal the count
  acknowledged. The log the restart replays is printed beside.

Targets (2 cores): >= 100 payloads/s with p99 <= 1 s; a restart at 10k alerts in <= 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest_sources import DATA, payload  # noqa: E402  (bench/ingest_sources.py)
from server import free_port  # noqa: E402  (bench/server.py)

AUTOCNC = str(Path(sys.executable).with_name("autocnc"))
SCOPE = "online-boutique"
COUNT_ALERTS = "MATCH (a:Entity) WHERE a.kind = 'Alert' RETURN count(a) AS n"


# -- the load process ------------------------------------------------------------------------

async def _load(url: str, seconds: float, connections: int, max_alerts: int, seed: int
                ) -> dict[str, object]:
    rng = random.Random(seed)
    latencies: list[float] = []
    groups: list[int] = []
    acked = failures = from_journal = refused = 0
    deadline = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal acked, failures, from_journal, refused
        while time.perf_counter() < deadline and (not max_alerts or acked < max_alerts):
            body = payload(rng)
            t = time.perf_counter()
            try:
                resp = await client.post(url, json=body, params={"scope": SCOPE})
            except httpx.HTTPError:
                failures += 1
                continue
            if resp.status_code == 200:
                latencies.append(time.perf_counter() - t)
                answer = resp.json()
                if answer.get("applied") is False:  # answered from the intake journal
                    from_journal += 1
                else:
                    groups.append(int(answer.get("group", 1)))
                acked += len(body["alerts"])
            elif resp.status_code == 503:  # back-pressure: retried after a pause
                refused += 1
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
            else:
                failures += 1

    t0 = time.perf_counter()
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(connections)))
    return {"seconds": time.perf_counter() - t0, "latencies": latencies, "groups": groups,
            "acked": acked, "failures": failures, "from_journal": from_journal,
            "refused": refused}


def load(url: str, seconds: float, connections: int, max_alerts: int = 0, seed: int = 7
         ) -> dict[str, object]:
    """Run the load in a process of its own; its results as a dict."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = Path(out.name)
    try:
        subprocess.run([sys.executable, __file__, "load", "--url", url, "--seconds",
                        str(seconds), "--connections", str(connections), "--max-alerts",
                        str(max_alerts), "--seed", str(seed), "--out", str(path)], check=True)
        result: dict[str, object] = json.loads(path.read_text())
        return result
    finally:
        path.unlink(missing_ok=True)


# -- the server ------------------------------------------------------------------------------

class Server:
    """``autocnc serve`` on ``data``; :meth:`start` returns the seconds to ``/readyz`` 200."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within_s: float = 600.0) -> float:
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([AUTOCNC, "serve", "--port", str(self.port)],
                                     env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        while True:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.perf_counter() - t0 > within_s:
                raise SystemExit(f"autocnc serve did not start (exit code {self.proc.poll()})")
            time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9`` the server and its query workers (its process group)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def intake(self) -> dict[str, int] | None:
        """The intake journal's status from /healthz (None: no journal)."""
        got: dict[str, int] | None = httpx.get(f"{self.base}/healthz", timeout=30).json().get(
            "intakeJournal")
        return got

    def drained(self) -> float:
        """Wait until the intake journal has been applied to the graph; the seconds."""
        t0 = time.perf_counter()
        while (st := self.intake()) is not None and st["lagEntries"] > 0:
            time.sleep(0.1)
        return time.perf_counter() - t0

    def alerts(self) -> int:
        resp = httpx.post(f"{self.base}/v1/cypher", json={"query": COUNT_ALERTS}, timeout=300)
        if resp.status_code != 200:
            raise SystemExit(f"counting the alerts: {resp.status_code} {resp.text}")
        return int(resp.json()["rows"][0][0])


def prepared_data(store: str, config: str = "") -> tuple[Path, dict[str, str]]:
    """A fresh data directory with the topology and the alert rules, ``config`` as its
    config file; its environment."""
    data = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    (data / "config.yaml").write_text(config)
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data), "AUTOCNC_STORE": store}
    for kind, path in (("topology", DATA / "topology" / "online-boutique"),
                       ("alerts", DATA / "alert-rules" / "kube-prometheus")):
        subprocess.run([AUTOCNC, "ingest", kind, str(path), "--scope", SCOPE,
                        "--allow-rejects", "--json"], env=env, check=True, capture_output=True)
    return data, env


class WalWatch:
    """The largest size of the embedded store's write-ahead log, sampled every 0.2 s, and
    with ``server`` the largest lag of its intake journal."""

    def __init__(self, data: Path, server: Server | None = None) -> None:
        self.path = data / "graph.lbug.wal"
        self.server = server
        self.largest = 0
        self.lag = (0, 0)  # entries, bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> WalWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def now(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.largest = max(self.largest, self.now())
            if self.server is not None:
                try:
                    st = self.server.intake()
                except httpx.HTTPError:
                    continue
                if st is not None and st["lagEntries"] > self.lag[0]:
                    self.lag = (st["lagEntries"], st["lagBytes"])


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


# -- the benchmarks --------------------------------------------------------------------------

def bench_storm(seconds: float, connections: int, store: str, config: str) -> None:
    data, env = prepared_data(store, config)
    server = Server(env)
    try:
        server.start()
        with WalWatch(data, server) as wal:
            res = load(f"{server.base}/v1/alerts/alertmanager", seconds, connections)
            drain = server.drained()
        lat = sorted(res["latencies"])  # type: ignore[type-var]
        n, took, acked = len(lat), float(res["seconds"]), int(res["acked"])  # type: ignore[arg-type]
        groups = res["groups"] or [0]
        print(f"[storm] {n:,} payloads ({acked:,} alerts) acknowledged in {took:.1f} s = "
              f"{n / took:,.0f} payloads/s, {acked / took:,.0f} alerts/s; ack latency p50 "
              f"{statistics.median(lat) * 1000:.0f} ms, p99 {lat[int(0.99 * n)] * 1000:.0f} ms, "
              f"max {lat[-1] * 1000:.0f} ms ({connections} connections; "
              f"{res['from_journal']:,} answered from the intake journal, the others after "
              f"their commit, {statistics.mean(groups):.1f} payloads per commit on average; "  # type: ignore[arg-type]
              f"{res['refused']} refused with 503, {res['failures']} failed)", flush=True)
        print(f"[storm] intake journal: largest lag {wal.lag[0]:,} notifications "
              f"({_mb(wal.lag[1])}); drained {drain:.1f} s after the load stopped", flush=True)
        stored = server.alerts()
        print(f"[storm] alerts in the graph: {stored:,} of {acked:,} acknowledged "
              f"({'all durable' if stored >= acked else 'MISSING SOME'}); write-ahead log "
              f"at most {_mb(wal.largest)} while serving, {_mb(wal.now())} at the end",
              flush=True)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def bench_restart(counts: list[int], connections: int, store: str, config: str) -> None:
    data, env = prepared_data(store, config)
    server = Server(env)
    acked = 0
    try:
        server.start()
        for i, target in enumerate(counts):
            res = load(f"{server.base}/v1/alerts/alertmanager", 3600, connections,
                       max_alerts=target - acked, seed=100 + i)
            acked += int(res["acked"])  # type: ignore[call-overload]
            wal = WalWatch(data).now()
            lag = server.intake() or {"lagEntries": 0}
            server.kill()
            took = server.start()
            stored = server.alerts()
            print(f"[restart] at {acked:,} acknowledged alerts: kill -9, then /readyz 200 "
                  f"after {took:.1f} s (write-ahead log at the kill: {_mb(wal)}, intake "
                  f"journal {lag['lagEntries']:,} notifications behind); alerts in "
                  f"the graph: {stored:,} "
                  f"({'= acknowledged' if stored == acked else 'MISMATCH'})", flush=True)
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", default="bench", choices=["bench", "load"])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--restart-at", default="10000,100000",
                    help="acknowledged alerts at which to kill -9 and restart ('' for none)")
    ap.add_argument("--store", default="embedded")
    ap.add_argument("--ack", choices=["graph", "journal"], default="journal",
                    help="the server's webhook_ack setting")
    ap.add_argument("--ack-wait-ms", type=int, default=250,
                    help="the server's webhook_ack_wait_ms setting")
    ap.add_argument("--url")  # load: the webhook URL
    ap.add_argument("--max-alerts", type=int, default=0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.mode == "load":
        res = asyncio.run(_load(args.url, args.seconds, args.connections, args.max_alerts,
                                args.seed))
        Path(args.out).write_text(json.dumps(res))
        return
    config = f"webhook_ack: {args.ack}\nwebhook_ack_wait_ms: {args.ack_wait_ms}\n"
    print(f"[settings] {config.strip().replace(chr(10), ', ')}", flush=True)
    if args.seconds > 0:
        bench_storm(args.seconds, args.connections, args.store, config)
    if args.restart_at:
        bench_restart([int(x) for x in args.restart_at.split(",")], args.connections,
                      args.store, config)


if __name__ == "__main__":
    main()

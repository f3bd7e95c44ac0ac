"""Ingest benchmark: records/s per source, end to end into the graph (durable, views caught up),
and the Alertmanager receiver driven over HTTP from another process.

    python bench/ingest_sources.py [--sources topology,alerts,runbooks,logs,metrics]
                                   [--receiver-seconds 60] [--concurrency 32]
                                   [--store embedded]

Per source: the real data in ../shared/data through ``ingest.run_ingest`` into a fresh store
(records as the source counts them: manifest documents, GraphML nodes/edges, CSV rows, rules,
runbooks, log lines, metric samples). The dedicated benchmarks measure the hot paths at scale:
bench/log_templates.py --throughput (log lines/s), bench/ingest_metrics.py (samples/s).

Receiver: ``autocnc serve`` runs as its own process on a fresh data directory holding the
online-boutique topology and the kube-prometheus rules; this process sends Alertmanager v4
payloads of 10 alerts each (new fingerprints; pods of the topology's workloads with fresh
hash suffixes) from ``--concurrency`` connections for ``--receiver-seconds``, then checks that
every acknowledged alert is in the graph. Targets (2 cores): >= 100 payloads/s (1,000 alerts/s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server import running_server  # noqa: E402  (bench/server.py)

from ingest import inputs_for, run_ingest  # noqa: E402
from kg.config import load_settings  # noqa: E402
from kg.graph import KnowledgeGraph  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCES = {
    "topology": [("zoo/{stem}", DATA / "topology" / "topology-zoo" / "graphml"),
                 ("online-boutique", DATA / "topology" / "online-boutique"),
                 ("sock-shop", DATA / "topology" / "sock-shop"),
                 ("train-ticket", DATA / "topology" / "train-ticket")],
    "alerts": [("kube-prometheus", DATA / "alert-rules" / "kube-prometheus"),
               ("awesome", DATA / "alert-rules" / "awesome-prometheus-alerts"),
               ("sock-shop", DATA / "alert-rules" / "sock-shop")],
    "runbooks": [("kube-prometheus", DATA / "runbooks")],
    "logs": [("loghub/{stem}", DATA / "loghub2k")],
    "metrics": [("petshop", DATA / "petshop")],
}


def bench_source(kind: str, store: str) -> None:
    data = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{kind}-"))
    kg = KnowledgeGraph.open(load_settings(data_dir=data, store=store))
    try:
        records = rejected = 0
        t0 = time.perf_counter()
        for scope, path in SOURCES[kind]:
            if not path.exists():
                continue
            report = run_ingest(kg, kind, inputs_for(kind, [str(path)]), scope=scope, as_of=T0)
            records += report.records
            rejected += len(report.rejected)
        written = time.perf_counter() - t0
        kg.sync()  # the RDF view follows writes lazily: count its catch-up too
        took = time.perf_counter() - t0
        print(f"[{kind}] {records:,} records in {took:.1f} s = {records / took:,.0f} records/s "
              f"end to end (durable after {written:.1f} s, the RDF view caught up after "
              f"{took:.1f} s; rejected {rejected})", flush=True)
    finally:
        kg.close()
        shutil.rmtree(data, ignore_errors=True)


# -- the receiver ----------------------------------------------------------------------------

WORKLOADS = ["frontend", "cartservice", "checkoutservice", "currencyservice", "adservice",
             "emailservice", "paymentservice", "productcatalogservice", "recommendationservice",
             "shippingservice", "redis-cart", "loadgenerator"]
ALERTS = [("KubePodCrashLooping", "warning"), ("KubePodNotReady", "warning"),
          ("KubeContainerWaiting", "warning"), ("CPUThrottlingHigh", "info")]


def payload(rng: random.Random, n: int = 10) -> dict:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    alerts = []
    for _ in range(n):
        wl = rng.choice(WORKLOADS)
        name, sev = rng.choice(ALERTS)
        pod = f"{wl}-{rng.getrandbits(36):09x}-{rng.getrandbits(20):05x}"
        alerts.append({
            "status": "firing", "startsAt": now, "endsAt": "0001-01-01T00:00:00Z",
            "labels": {"alertname": name, "severity": sev, "namespace": "default",
                       "pod": pod, "container": "server", "job": "kube-state-metrics",
                       "service": "kube-state-metrics"},
            "annotations": {"summary": f"{name} on {pod}"},
            "generatorURL": "http://prometheus/graph",
            "fingerprint": f"{rng.getrandbits(64):016x}",
        })
    first = alerts[0]["labels"]["alertname"]
    return {"version": "4", "groupKey": f'{{}}:{{alertname="{first}"}}',
            "truncatedAlerts": 0, "status": "firing", "receiver": "autocnc",
            "groupLabels": {"alertname": first},
            "commonLabels": {"namespace": "default"}, "commonAnnotations": {},
            "externalURL": "http://alertmanager", "alerts": alerts}


async def drive(url: str, seconds: float, concurrency: int) -> tuple[list[float], list[str]]:
    rng = random.Random(7)
    latencies: list[float] = []
    acked: list[str] = []
    deadline = time.perf_counter() + seconds
    failures = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while time.perf_counter() < deadline:
            body = payload(rng)
            t = time.perf_counter()
            resp = await client.post(url, json=body, params={"scope": "online-boutique"})
            if resp.status_code == 200:
                latencies.append(time.perf_counter() - t)
                acked.extend(a["fingerprint"] for a in body["alerts"])
            else:
                failures += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    if failures:
        print(f"[receiver] {failures} payloads were not acknowledged")
    return latencies, acked


def bench_receiver(seconds: float, concurrency: int, store: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data), "AUTOCNC_STORE": store}
    autocnc = str(Path(sys.executable).with_name("autocnc"))
    for kind, path in (("topology", DATA / "topology" / "online-boutique"),
                       ("alerts", DATA / "alert-rules" / "kube-prometheus")):
        subprocess.run([autocnc, "ingest", kind, str(path), "--scope", "online-boutique",
                        "--allow-rejects", "--json"], env=env, check=True, capture_output=True)
    try:
        with running_server(env) as base:
            t0 = time.perf_counter()
            lat, acked = asyncio.run(drive(f"{base}/v1/alerts/alertmanager", seconds, concurrency))
            took = time.perf_counter() - t0
            lat.sort()
            n = len(lat)
            print(f"[receiver] {n:,} payloads ({len(acked):,} alerts) acknowledged in {took:.1f} s "
                  f"= {n / took:,.0f} payloads/s, {len(acked) / took:,.0f} alerts/s; latency p50 "
                  f"{statistics.median(lat) * 1000:.0f} ms, p99 {lat[int(0.99 * n)] * 1000:.0f} ms "
                  f"({concurrency} connections)", flush=True)
            resp = httpx.post(f"{base}/v1/cypher", json={"query": (
                "MATCH (a:Entity) WHERE a.kind = 'Alert' RETURN count(a) AS n")}, timeout=120)
            stored = resp.json()["rows"][0][0]
            about = httpx.post(f"{base}/v1/cypher", json={"query": (
                "MATCH (a:Entity)-[r:aboutEntity]->(p:Entity) WHERE a.kind = 'Alert' "
                "RETURN count(r) AS n")}, timeout=120).json()["rows"][0][0]
            print(f"[receiver] alerts in the graph: {stored:,} of {len(acked):,} acknowledged "
                  f"({'all durable' if stored >= len(set(acked)) else 'MISSING SOME'}); "
                  f"{about:,} resolved to a (possibly inferred) pod", flush=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sources", default=",".join(SOURCES))
    ap.add_argument("--receiver-seconds", type=float, default=60.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--store", default="embedded")
    args = ap.parse_args()
    for kind in [s for s in args.sources.split(",") if s]:
        bench_source(kind, args.store)
    if args.receiver_seconds > 0:
        bench_receiver(args.receiver_seconds, args.concurrency, args.store)


if __name__ == "__main__":
    main()

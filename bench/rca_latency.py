"""RCA latency over HTTP on a generated 100k-entity CNC graph.

    python bench/rca_latency.py [--entities 100000] [--relations 300000] [--incidents 100]
                                [--alerts 50] [--store embedded] [--churn]

The graph (bench/cnc_graph.py) is loaded into a fresh data directory; ``autocnc serve`` runs
as its own process. Each incident injects a fault on a random resource (a link, a compute
node, a Kubernetes node or a deployment): an anomaly on it and ``--alerts`` alerts on the
entities that depend on it (nearest first), written over HTTP (``POST /v1/facts``: fresh
ingest), then ``POST /v1/rca`` for the incident's time window is timed from this process —
so every measured call includes whatever snapshot catch-up the fresh ingest requires.
With ``--churn`` a new pod and its ``runsOn`` relation (a rule relation: topology churn) are
written before each incident too, so each call also patches the compiled rules.
Prints p50/p90/p99 latency, and how often the injected fault's component ranked first (a
sanity check, not an accuracy benchmark). Target (2 cores): p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cnc_graph import generate_cnc  # noqa: E402
from server import running_server  # noqa: E402

from kg.config import load_settings  # noqa: E402
from kg.facts import Entity, FactBatch, Relation  # noqa: E402
from kg.graph import KnowledgeGraph  # noqa: E402
from ontology import mint_iri  # noqa: E402

DEPENDENCY = {"dependsOn", "calls", "hostedOn", "runsOn", "routedOver", "implementedBy",
              "selects", "manages", "exposes", "connectsTo", "hasAccelerator"}
FAULT_KINDS = ("NetworkLink", "ComputeNode", "KubernetesNode", "Deployment")
T0 = datetime(2026, 6, 1, tzinfo=UTC)


def dependants(rels: list[Relation]) -> dict[str, list[str]]:
    """cause -> entities that point at it with a dependency relation (one hop)."""
    out: dict[str, list[str]] = {}
    for r in rels:
        if r.type in DEPENDENCY:
            out.setdefault(r.end, []).append(r.start)
    return out


def impacted(deps: dict[str, list[str]], fault: str, n: int) -> list[str]:
    """Up to ``n`` entities that depend on ``fault``, nearest first (BFS)."""
    seen, queue, out = {fault}, deque([fault]), list[str]()
    while queue and len(out) < n:
        for nb in sorted(deps.get(queue.popleft(), [])):
            if nb not in seen:
                seen.add(nb)
                out.append(nb)
                queue.append(nb)
    return out[:n]


def incident_batch(i: int, fault: str, victims: list[str]) -> tuple[FactBatch, datetime]:
    at = T0 + timedelta(hours=i)
    series = mint_iri("bench/rca", "MetricSeries", f"s{i}")
    anomaly = mint_iri("bench/rca", "Anomaly", f"a{i}")
    ents = [Entity(series, "MetricSeries", {"metricName": "error_ratio", "seriesId": f"s{i}"}),
            Entity(anomaly, "Anomaly", {"metricName": "error_ratio", "anomalyScore": 9.0,
                                        "direction": "up", "startTime": at})]
    rels = [Relation("observes", series, fault), Relation("detectedIn", anomaly, series),
            Relation("aboutEntity", anomaly, fault)]
    for j, v in enumerate(victims):
        alert = mint_iri("bench/rca", "Alert", f"{i}/{j}")
        ents.append(Entity(alert, "Alert", {
            "name": "ServiceDegraded", "fingerprint": f"{i:06d}{j:04d}", "alertStatus": "firing",
            "startTime": at + timedelta(seconds=30 + j)}))
        rels.append(Relation("aboutEntity", alert, v))
    return FactBatch.of("bench/rca", ents, rels), at


def churn_batch(i: int, nodes: list[str], rng: random.Random) -> FactBatch:
    """Topology churn before an incident: a pod scheduled on a random Kubernetes node."""
    pod = mint_iri("bench/churn", "Pod", f"default/churn-{i}")
    return FactBatch.of("bench/churn", [Entity(pod, "Pod", {"name": f"churn-{i}"})],
                        [Relation("runsOn", pod, rng.choice(nodes))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--relations", type=int, default=300_000)
    ap.add_argument("--incidents", type=int, default=100)
    ap.add_argument("--alerts", type=int, default=50)
    ap.add_argument("--store", default="embedded")
    ap.add_argument("--churn", action="store_true",
                    help="also schedule a new pod (a rule relation) before every incident")
    args = ap.parse_args()

    g = generate_cnc(args.entities, args.relations)
    data = Path(tempfile.mkdtemp(prefix="bench-rca-"))
    settings = load_settings(data_dir=data, store=args.store,
                             neo4j_uri=os.environ.get("NEO4J_URI"))
    t = time.perf_counter()
    kg = KnowledgeGraph.open(settings)
    for i in range(0, len(g.entities), 20_000):
        kg.write(FactBatch.of("bench", g.entities[i:i + 20_000]))
    for i in range(0, len(g.relations), 20_000):
        kg.write(FactBatch.of("bench", relations=g.relations[i:i + 20_000]))
    kg.close()
    print(f"[rca] loaded {len(g.entities):,} entities and {len(g.relations):,} relations in "
          f"{time.perf_counter() - t:.0f} s ({args.store})", flush=True)

    deps = dependants(g.relations)
    kinds = {e.iri: e.type for e in g.entities}
    rng = random.Random(3)
    k8s_nodes = sorted(iri for iri, k in kinds.items() if k == "KubernetesNode")
    faults = [iri for iri, k in kinds.items() if k in FAULT_KINDS
              and len(impacted(deps, iri, 2)) >= 2]
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data), "AUTOCNC_STORE": args.store}
    started = time.perf_counter()
    try:
        with running_server(env, ready_within_s=600) as base, \
                httpx.Client(base_url=base, timeout=300) as client:
            print(f"[rca] server ready {time.perf_counter() - started:.1f} s after start "
                  "(the snapshot, event index and compiled rules are built before serving)",
                  flush=True)
            lat, hits, sizes = [], 0, []
            for i in range(-1, args.incidents):  # -1: the cold start, reported apart
                fault = rng.choice(faults)
                victims = impacted(deps, fault, args.alerts)
                batch, at = incident_batch(i, fault, victims)
                if args.churn:
                    client.post("/v1/facts", json=churn_batch(i, k8s_nodes, rng).to_json()
                                ).raise_for_status()
                client.post("/v1/facts", json=batch.to_json()).raise_for_status()
                body = {"window": {"start": at.isoformat(),
                                   "end": (at + timedelta(minutes=5)).isoformat()}}
                t = time.perf_counter()
                resp = client.post("/v1/rca", json=body)
                took = time.perf_counter() - t
                resp.raise_for_status()
                if i < 0:
                    print(f"[rca] first call after the server started: {took * 1000:.0f} ms",
                          flush=True)
                    continue
                lat.append(took)
                cands = resp.json()["candidates"]
                hits += bool(cands) and fault in cands[0].get("component", [cands[0]["entity"]])
                sizes.append(len(victims))
        lat.sort()
        n = len(lat)
        print(f"[rca] {n} incidents of {statistics.median(sizes):.0f} alerts (median) on "
              f"{len(g.entities):,} entities: POST /v1/rca latency p50 "
              f"{statistics.median(lat) * 1000:.1f} ms, p90 {lat[int(0.9 * n)] * 1000:.1f} ms, "
              f"p99 {lat[min(n - 1, int(0.99 * n))] * 1000:.1f} ms (target p99 <= 100 ms); "
              f"injected fault ranked first in {hits}/{n}", flush=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Query isolation: /healthz latency while a runaway query runs, and the cost of query workers.

    python bench/query_isolation.py [--store embedded] [--seconds 30]

``autocnc serve`` runs as its own process on a fresh data directory holding the
online-boutique topology and the 276 Internet Topology Zoo networks (../shared/data), with
``query_timeout_s`` = ``--seconds``. This
process sends the query of the issue, ``SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f }``
(every pair of quads of the RDF view), on GET /v1/sparql, then a Cypher query that runs
past the limit too, and samples GET /healthz every 20 ms from another connection while each
runs; it prints each query's answer and time and the /healthz latency percentiles. Then the
cost of the workers: a query right after a write (the worker reopens its read-only
handles) against the same query again (warm). Target: /healthz p99 under 100 ms.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server import running_server  # noqa: E402  (bench/server.py)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPARQL = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f }"
CYPHER = ("UNWIND range(1, 100000) AS x UNWIND range(1, 100000) AS y "
          "WITH x, y WHERE (x * y) % 7 = 3 RETURN count(*) AS n")


def probe(base: str, name: str, send: object) -> None:
    """Run ``send`` (the slow request) while sampling /healthz; print what both did."""
    answer: dict[str, object] = {}

    def run() -> None:
        t = time.perf_counter()
        resp = send()  # type: ignore[operator]
        answer.update(status=resp.status_code, body=resp.text[:120],
                      seconds=time.perf_counter() - t)

    slow = threading.Thread(target=run)
    slow.start()
    lat: list[float] = []
    with httpx.Client(timeout=30) as client:
        while slow.is_alive():
            t = time.perf_counter()
            assert client.get(f"{base}/healthz").status_code == 200
            lat.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)
    slow.join()
    lat.sort()
    print(f"[{name}] answered {answer['status']} after {answer['seconds']:.1f} s: "
          f"{answer['body']}")
    print(f"[{name}] /healthz meanwhile: n={len(lat)} p50={lat[len(lat) // 2]:.1f} ms "
          f"p99={lat[min(len(lat) - 1, int(len(lat) * 0.99))]:.1f} ms max={lat[-1]:.1f} ms")


def worker_costs(base: str) -> None:
    def timed(call: object) -> float:
        t = time.perf_counter()
        call()  # type: ignore[operator]
        return (time.perf_counter() - t) * 1000

    sparql = {"query": "ASK { ?s ?p ?o }"}
    cypher = {"query": "MATCH (n:Entity) RETURN count(n) AS n"}
    for i in range(3):
        fact = {"source": "bench", "entities": [{"scope": "bench", "key": f"r{i}",
                                                 "type": "Router", "properties": {}}]}
        httpx.post(f"{base}/v1/facts", json=fact).raise_for_status()
        after_write = timed(lambda: httpx.get(f"{base}/v1/sparql", params=sparql))
        warm = timed(lambda: httpx.get(f"{base}/v1/sparql", params=sparql))
        c_after = timed(lambda: httpx.post(f"{base}/v1/cypher", json=cypher))
        c_warm = timed(lambda: httpx.post(f"{base}/v1/cypher", json=cypher))
        print(f"[workers] after a write: SPARQL {after_write:.0f} ms (warm {warm:.0f} ms), "
              f"Cypher {c_after:.0f} ms (warm {c_warm:.0f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", default="embedded")
    ap.add_argument("--seconds", type=float, default=30.0, help="query_timeout_s")
    args = ap.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-isolation-"))
    data.mkdir(exist_ok=True)
    (data / "config.yaml").write_text(f"query_timeout_s: {args.seconds}\n")
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data), "AUTOCNC_STORE": args.store}
    autocnc = str(Path(sys.executable).with_name("autocnc"))
    for folder, scope in (("online-boutique", "online-boutique"),
                          ("topology-zoo/graphml", "zoo/{stem}")):
        subprocess.run([autocnc, "ingest", "topology", str(DATA / "topology" / folder),
                        "--scope", scope, "--json", "--allow-rejects"], env=env, check=True,
                       capture_output=True)
    try:
        run(env, args.seconds)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def run(env: dict[str, str], seconds: float) -> None:
    with running_server(env) as base:
        quads = httpx.get(f"{base}/v1/sparql", params={
            "query": "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"}).json()
        print(f"RDF view: {quads['results']['bindings'][0]['n']['value']} quads; "
              f"query_timeout_s = {seconds:g}")
        probe(base, "sparql", lambda: httpx.get(f"{base}/v1/sparql", params={"query": SPARQL},
                                                timeout=seconds + 60))
        probe(base, "cypher", lambda: httpx.post(f"{base}/v1/cypher", json={"query": CYPHER},
                                                 timeout=seconds + 60))
        worker_costs(base)


if __name__ == "__main__":
    main()

"""Store load benchmark: write a generated CNC graph through the public write path.

    python bench/store_load.py [--entities N] [--relations M] [--backend embedded|neo4j|both]

Prints facts/s per backend (validation + graph write + RDF view, with each stage's share),
peak RSS, and p50/p99 of a 3-hop neighbourhood query from random and from high-degree starts.
Neo4j runs when NEO4J_URI is set.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from kg.config import load_settings
from kg.facts import Entity, FactBatch, Relation, validate
from kg.graph import KnowledgeGraph
from ontology import load_ontology, mint_iri

KINDS = ["ComputeNode", "Router", "Pod", "Deployment", "NetworkLink", "KubernetesNode"]
RELS = ["dependsOn", "calls", "linkedTo", "partOf", "hostedOn"]  # no sh:class limits


def generate(n_ent: int, n_rel: int, seed: int = 1) -> tuple[list[Entity], list[Relation]]:
    rng = random.Random(seed)
    ents = [Entity(mint_iri(f"bench/scope-{i % 50}", k, f"e{i}"), k,
                   {"name": f"e{i}", "utilisation": rng.random()})
            for i in range(n_ent) for k in [KINDS[i % len(KINDS)]]]
    seen: set[tuple[str, int, int]] = set()
    rels: list[Relation] = []
    while len(rels) < n_rel:
        a = int(rng.paretovariate(1.2)) % n_ent if rng.random() < 0.3 else rng.randrange(n_ent)
        b, t = rng.randrange(n_ent), RELS[rng.randrange(len(RELS))]
        if a != b and (t, a, b) not in seen:
            seen.add((t, a, b))
            rels.append(Relation(t, ents[a].iri, ents[b].iri))
    return ents, rels


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def run(backend: str, ents: list[Entity], rels: list[Relation], batch: int) -> None:
    data = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-"))
    s = load_settings(data_dir=data, store=backend, neo4j_uri=os.environ.get("NEO4J_URI"))
    if backend == "neo4j":
        import neo4j

        with neo4j.GraphDatabase.driver(s.neo4j_uri, auth=None) as d:
            d.execute_query("MATCH (n) DETACH DELETE n")
    kg = KnowledgeGraph.open(s)
    onto = load_ontology()
    t_val = t_graph = t_view = 0.0
    t0 = time.perf_counter()
    chunks = [FactBatch.of("bench", ents[i:i + batch]) for i in range(0, len(ents), batch)]
    chunks += [FactBatch.of("bench", relations=rels[i:i + batch])
               for i in range(0, len(rels), batch)]
    for b in chunks:
        a = time.perf_counter()
        validate(b, onto)  # timed separately; upsert validates again (cheap share)
        c = time.perf_counter()
        kg.store.upsert(b)
        d = time.perf_counter()
        kg.rdf.catch_up(kg.store)
        e = time.perf_counter()
        t_val, t_graph, t_view = t_val + c - a, t_graph + d - c, t_view + e - d
    total = time.perf_counter() - t0
    facts = len(ents) + len(rels)
    print(f"[{backend}] {facts} facts in {total:.1f} s = {facts / total:,.0f} facts/s "
          f"(validation {t_val / total:.0%}, graph write {t_graph / total:.0%}, "
          f"RDF view {t_view / total:.0%}); peak RSS "
          f"{psutil.Process().memory_info().rss / 2**20:,.0f} MiB (process, all backends so far)")
    snap = kg.snapshot
    deg = snap.adjacency().getnnz(axis=1) + snap.adjacency().getnnz(axis=0)
    hubs = [snap.iris[i] for i in deg.argsort()[::-1][:100]]
    rng = random.Random(2)
    starts = [rng.choice(ents).iri for _ in range(1000)]
    q = "MATCH (a:Entity {iri: $iri})-[*1..3]-(b:Entity) RETURN count(DISTINCT b)"
    for label, group in (("random", starts), ("top-100 degree", hubs)):
        lat, sizes = [], []
        for iri in group:
            a = time.perf_counter()
            sizes.append(kg.store.query(q, {"iri": iri}).rows[0][0])
            lat.append(time.perf_counter() - a)
        print(f"[{backend}] 3-hop from {label} starts: p50 {pct(lat, .5):.1f} ms, "
              f"p99 {pct(lat, .99):.1f} ms; result size median {statistics.median(sizes):,.0f}, "
              f"max {max(sizes):,}")
    kg.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--relations", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--backend", default="both")
    args = ap.parse_args()
    ents, rels = generate(args.entities, args.relations)
    backends = ["embedded", "neo4j"] if args.backend == "both" else [args.backend]
    for b in backends:
        if b == "neo4j" and not os.environ.get("NEO4J_URI"):
            print("[neo4j] skipped: NEO4J_URI not set")
            continue
        run(b, ents, rels, args.batch)


if __name__ == "__main__":
    main()

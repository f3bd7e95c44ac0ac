"""Store load benchmark: write a generated CNC graph through the public write path.

    python bench/store_load.py [--entities N] [--relations M] [--batch B]
                               [--backend embedded|neo4j|both] [--no-sparql]
                               [--rdflib-timeout S]

The graph is :func:`cnc_graph.generate_cnc` (sparse, CNC-shaped, SHACL-valid). For each
backend, in a fresh data directory (Neo4j: the database at ``NEO4J_URI`` is wiped first):

- load: all entities, then all relations, in batches through ``KnowledgeGraph.write``
  (validation, SHACL checks, planning, the store transaction with its change log: durable and
  visible to Cypher when it returns), then ``catch_up_rdf`` (the RDF view follows writes
  lazily, in big rounds: docs in kg/graph.py). A fact is one entity or one relation written.
  Prints facts/s of the write path, the view's catch-up time, facts/s end to end (both), the
  validation share (timed on the same batches in a separate pass) and the peak RSS of the
  process that loaded (each backend loads in its own forked process; a Neo4j server's own
  memory is not included). Neo4j is left empty afterwards;
- 3-hop neighbourhood: p50/p99 latency of ``count(DISTINCT b)`` over nodes within 3
  relations (either direction) through ``store.query`` (the guarded operator path), from
  1,000 uniformly random start entities and from the 100 highest-degree ones, with the result
  sizes (LadybugDB's ``* SHORTEST`` is its BFS; a plain ``*1..3`` enumerates walks);
- competency questions (``ontology/queries/competency.yaml``, run once, on the first
  backend's view): SPARQL on Oxigraph and on an rdflib in-memory Graph holding the same
  triples, with the same bindings; the answers must be equal; prints both times and the ratio
  (Oxigraph, the engine alone: mean of 3 runs, with the bindings as SEP-0007 substitutions as
  ``kg.sparql`` passes them, and as a leading ``VALUES`` block, which Oxigraph 0.5 joins
  first; rdflib: one run with ``initBindings``, stopped after ``--rdflib-timeout`` seconds,
  in which case the ratio is a lower bound). rdflib plans a basic graph pattern once, before
  the bindings are known, and starts with every pattern that has one unknown term (e.g. all
  GPUs times all routers), so some questions take it minutes.

Neo4j runs when NEO4J_URI is set. Timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnc_graph import CNCGraph, generate_cnc  # bench/ is on sys.path when run as a script

from kg.config import load_settings
from kg.facts import FactBatch, validate
from kg.graph import KnowledgeGraph
from ontology import load_ontology
from ontology.competency import competency_questions, sparql_bindings

HOPS = {
    "embedded": "MATCH (a:Entity {iri: $iri})-[* SHORTEST 1..3]-(b:Entity) "
                "WHERE b.iri <> $iri RETURN count(DISTINCT b)",
    "neo4j": "MATCH (a:Entity {iri: $iri})-[*1..3]-(b:Entity) WHERE b.iri <> $iri "
             "RETURN count(DISTINCT b)",
}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def batches(g: CNCGraph, size: int) -> list[FactBatch]:
    out = [FactBatch.of("bench", g.entities[i:i + size]) for i in range(0, len(g.entities), size)]
    return out + [FactBatch.of("bench", relations=g.relations[i:i + size])
                  for i in range(0, len(g.relations), size)]


def open_graph(backend: str) -> KnowledgeGraph:
    data = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-"))
    s = load_settings(data_dir=data, store=backend, neo4j_uri=os.environ.get("NEO4J_URI"))
    if backend == "neo4j":
        wipe_neo4j(s.neo4j_uri)
    return KnowledgeGraph.open(s)


def wipe_neo4j(uri: str) -> None:
    """Delete everything, in chunks (one transaction over 400k nodes exceeds its memory)."""
    import neo4j

    with neo4j.GraphDatabase.driver(uri, auth=None) as d, d.session() as session:
        session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
                    ).consume()


def load(kg: KnowledgeGraph, backend: str, chunks: list[FactBatch]) -> None:
    onto = load_ontology()
    t_val = 0.0
    for b in chunks:  # the validation share, timed apart from the load below
        a = time.perf_counter()
        validate(b, onto)
        t_val += time.perf_counter() - a
    a = time.perf_counter()
    for b in chunks:
        kg.write(b)
    t_graph = time.perf_counter() - a
    kg.catch_up_rdf()
    t_view = time.perf_counter() - a - t_graph
    total = t_graph + t_view
    facts = sum(len(b) for b in chunks)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"[{backend}] load: {facts:,} facts written in {t_graph:.1f} s = "
          f"{facts / t_graph:,.0f} facts/s (validation {t_val / t_graph:.0%}); RDF view "
          f"caught up after them in {t_view:.1f} s; end to end {facts / total:,.0f} facts/s; "
          f"peak RSS {peak:,.0f} MiB", flush=True)


def three_hops(kg: KnowledgeGraph, backend: str, g: CNCGraph) -> None:
    snap = kg.snapshot
    adj = snap.adjacency()
    deg = adj.getnnz(axis=1) + adj.getnnz(axis=0)
    hubs = [snap.iris[i] for i in deg.argsort()[::-1][:100]]
    rng = random.Random(2)
    starts = [rng.choice(g.entities).iri for _ in range(1000)]
    query = HOPS[backend]
    kg.store.query(query, {"iri": starts[0]})  # warm up: connection, plan cache
    for label, group in (("random", starts), ("top-100 degree", hubs)):
        lat, sizes = [], []
        for iri in group:
            a = time.perf_counter()
            sizes.append(kg.store.query(query, {"iri": iri}).rows[0][0])
            lat.append(time.perf_counter() - a)
        print(f"[{backend}] 3-hop from {len(group)} {label} starts: p50 "
              f"{pct(lat, .5) * 1000:.1f} ms, p99 {pct(lat, .99) * 1000:.1f} ms; result size "
              f"median {statistics.median(sizes):,.0f}, p99 {pct(sizes, .99):,}, "
              f"max {max(sizes):,}", flush=True)


def competency(kg: KnowledgeGraph, g: CNCGraph, timeout_s: float) -> None:
    store = kg.rdf._ox  # the view's Oxigraph store, only read here
    a = time.perf_counter()
    graph = _rdflib_copy(store)
    print(f"[sparql] rdflib Graph: {len(graph):,} triples copied from Oxigraph in "
          f"{time.perf_counter() - a:.1f} s", flush=True)
    params = _params(kg, g)
    for q in competency_questions():
        bound = {k: params[k] for k in q.params}
        subst = sparql_bindings(bound)
        values = " ".join(f"VALUES ?{v.value} {{ {t} }}" for v, t in subst.items())
        with_values = q.sparql.replace("WHERE {", "WHERE { " + values, 1)
        ox_s, ox_answer = _oxigraph(store, q.sparql, subst)
        val_s, val_answer = _oxigraph(store, with_values, {})
        rd_s, rd_answer = _rdflib_answer(graph, q.sparql, bound, timeout_s)
        assert ox_answer == val_answer, f"{q.id}: substitutions and VALUES disagree"
        head = (f"[sparql] {q.id}: {len(ox_answer)} answers; Oxigraph {ox_s * 1000:.1f} ms "
                f"(substitutions) / {val_s * 1000:.1f} ms (VALUES)")
        if rd_answer is None:
            print(f"{head}; rdflib did not finish in {timeout_s:.0f} s: ratio > "
                  f"{timeout_s / ox_s:,.0f}x / > {timeout_s / val_s:,.0f}x", flush=True)
            continue
        assert ox_answer == rd_answer, f"{q.id}: Oxigraph and rdflib disagree"
        print(f"{head}; rdflib {rd_s * 1000:,.1f} ms, same answers: ratio "
              f"{rd_s / ox_s:,.1f}x / {rd_s / val_s:,.1f}x", flush=True)


def _oxigraph(store: Any, sparql: str, subst: dict[Any, Any]) -> tuple[float, list[str]]:
    """Mean seconds of 3 runs of the engine alone (kg.sparql adds its guard's parse, which
    uses rdflib's parser: 2-9 ms), and the sorted answer column."""
    times = []
    for _ in range(3):
        a = time.perf_counter()
        answer = sorted(s[0].value for s in store.query(
            sparql, use_default_graph_as_union=True, substitutions=subst))
        times.append(time.perf_counter() - a)
    return statistics.mean(times), answer


def _rdflib_answer(graph: Any, sparql: str, bound: dict[str, Any], timeout_s: float
                   ) -> tuple[float, list[str] | None]:
    """Seconds and the sorted answer column of ``sparql`` on rdflib (None after
    ``timeout_s``). It runs in a forked child holding the same Graph, so a query that runs
    away can be stopped; the child times itself."""
    import rdflib

    init = {k: rdflib.URIRef(v) if isinstance(v, str) else rdflib.Literal(v)
            for k, v in bound.items()}
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def run() -> None:
        a = time.perf_counter()
        answer = sorted(str(r[0]) for r in graph.query(sparql, initBindings=init))
        child.send((time.perf_counter() - a, answer))

    proc = ctx.Process(target=run)
    proc.start()
    result = parent.recv() if parent.poll(timeout_s) else (timeout_s, None)
    proc.kill()
    proc.join()
    return result


def _rdflib_copy(store: Any) -> Any:
    """Every triple of every graph of the Oxigraph store in one rdflib Graph (the union the
    view's queries see), with terms built once each."""
    import pyoxigraph as ox
    import rdflib

    terms: dict[Any, Any] = {}

    def term(t: Any) -> Any:
        r = terms.get(t)
        if r is None:
            if isinstance(t, ox.NamedNode):
                r = rdflib.URIRef(t.value)
            elif isinstance(t, ox.Literal):
                r = rdflib.Literal(t.value, datatype=rdflib.URIRef(t.datatype.value))
            else:
                r = rdflib.BNode(t.value)
            if not isinstance(t, ox.Literal) or len(terms) < 2_000_000:
                terms[t] = r
        return r

    graph = rdflib.Graph()
    graph.addN((term(q.subject), term(q.predicate), term(q.object), graph) for q in store)
    return graph


def _params(kg: KnowledgeGraph, g: CNCGraph) -> dict[str, Any]:
    """Parameters with non-empty answers: a single-homed uplink, a cloud site, its cluster."""
    cloud = kg.cypher("MATCH (s:Entity) WHERE 'CloudDataCentre' IN s.types "
                      "RETURN s.iri ORDER BY s.iri LIMIT 1").rows[0][0]
    cluster = kg.cypher("MATCH (c:Entity)-[:locatedIn]->(s:Entity {iri: $s}) "
                        "WHERE 'KubernetesCluster' IN c.types RETURN c.iri", {"s": cloud}).rows
    return {"link": g.links[1], "site": cloud, "cluster": cluster[0][0], "maxLatencyMs": 10.0,
            "minUtilisation": 0.8}


def in_child(fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn`` in a forked process, so each backend's peak RSS is its own."""
    proc = mp.get_context("fork").Process(target=fn, args=args)
    proc.start()
    proc.join()
    if proc.exitcode:
        raise SystemExit(f"benchmark child failed with exit code {proc.exitcode}")


def run_backend(backend: str, g: CNCGraph, size: int, sparql_timeout_s: float | None) -> None:
    kg = open_graph(backend)
    try:
        load(kg, backend, batches(g, size))
        three_hops(kg, backend, g)
        if sparql_timeout_s is not None:
            competency(kg, g, sparql_timeout_s)
    finally:
        kg.close()
        shutil.rmtree(kg.settings.data_dir, ignore_errors=True)
        if backend == "neo4j":  # leave the shared test database empty, as found
            wipe_neo4j(kg.settings.neo4j_uri)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=100_000)
    ap.add_argument("--relations", type=int, default=300_000)
    ap.add_argument("--batch", type=int, default=20_000, help="facts per write")
    ap.add_argument("--backend", default="both", choices=["embedded", "neo4j", "both"])
    ap.add_argument("--no-sparql", action="store_true", help="skip the competency questions")
    ap.add_argument("--rdflib-timeout", type=float, default=60.0,
                    help="seconds one competency question may run on rdflib")
    args = ap.parse_args()
    a = time.perf_counter()
    g = generate_cnc(args.entities, args.relations)
    print(f"graph: {len(g.entities):,} entities, {len(g.relations):,} relations, "
          f"{len(g.links):,} backbone links, {len(g.clusters):,} clusters "
          f"(generated in {time.perf_counter() - a:.1f} s)", flush=True)
    backends = ["embedded", "neo4j"] if args.backend == "both" else [args.backend]
    # The competency questions run once, on the first backend's view (the views are equal).
    sparql: float | None = None if args.no_sparql else args.rdflib_timeout
    for b in backends:
        if b == "neo4j" and not os.environ.get("NEO4J_URI"):
            print("[neo4j] skipped: NEO4J_URI not set")
            continue
        in_child(run_backend, b, g, args.batch, sparql)
        sparql = None


if __name__ == "__main__":
    main()

"""Metrics ingest throughput, end to end: samples/s from files to durable samples in the
time-series store, series summaries and anomalies in the graph, derived views caught up.

Cases:

- ``generated``: ``--series`` × ``--samples`` (default 1,000 × 1,000) seeded gauge series
  (noise around a per-series level, a few injected spikes), written once as a Prometheus
  text exposition dump (with timestamps) and once as a long CSV, each ingested into a fresh
  data directory; the series' ``service`` labels resolve to ``Service`` entities written
  first (not timed).
- ``petshop``: every ``metrics.csv`` of ``../shared/data/petshop`` (PetShop dataset,
  Hardt et al., CC BY 4.0), one scope per scenario, after the scenario's call-graph nodes
  were written as ``Service`` entities (not timed).

Usage: ``python bench/ingest_metrics.py [--store embedded|neo4j] [--series N] [--samples N]
[--case generated|petshop|all] [--option KEY=VALUE ...]``. Prints one line per case:
samples, seconds, samples/s, series, anomalies.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ingest.metrics  # noqa: E402,F401  (imported before timing: process start-up, not ingest)
from ingest import run_ingest  # noqa: E402
from ingest.base import Input, expand  # noqa: E402
from kg.config import load_settings  # noqa: E402
from kg.facts import Entity, FactBatch  # noqa: E402
from kg.graph import KnowledgeGraph  # noqa: E402
from ontology import mint_iri  # noqa: E402

PETSHOP = ROOT.parent / "shared" / "data" / "petshop" / "dataset"
SCOPE = "bench/cluster"
T0_MS = 1_700_000_000_000
STEP_MS = 15_000


def generate(series: int, samples: int, seed: int = 7) -> tuple[np.ndarray, list[str]]:
    """Values (series × samples) and each series' label text."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(1, 100, size=(series, 1))
    values = level * (1 + 0.05 * rng.standard_normal((series, samples)))
    spikes = rng.choice(series, size=max(1, series // 100), replace=False)
    values[spikes, samples // 2] *= 5
    labels = [f'service="svc-{i % 100}",instance="10.0.{i // 100}.{i % 100}:9100",mode="m{i}"'
              for i in range(series)]
    return np.round(values, 6), labels


def write_exposition(path: Path, values: np.ndarray, labels: list[str]) -> None:
    with path.open("w") as fh:
        fh.write("# HELP bench_cpu_usage A generated gauge.\n# TYPE bench_cpu_usage gauge\n")
        for k in range(values.shape[1]):
            ts = T0_MS + k * STEP_MS
            fh.write("".join(f"bench_cpu_usage{{{lab}}} {v!r} {ts}\n"
                             for lab, v in zip(labels, values[:, k].tolist(), strict=True)))


def write_long_csv(path: Path, values: np.ndarray, labels: list[str]) -> None:
    semi = [lab.replace('"', "").replace(",", ";") for lab in labels]
    with path.open("w") as fh:
        fh.write("timestamp,metric,labels,value\n")
        for k in range(values.shape[1]):
            ts = (T0_MS + k * STEP_MS) / 1000
            fh.write("".join(f"{ts},bench_cpu_usage,{lab},{v!r}\n"
                             for lab, v in zip(semi, values[:, k].tolist(), strict=True)))


@contextmanager
def fresh_graph(store: str) -> Iterator[KnowledgeGraph]:
    tmp = Path(tempfile.mkdtemp(prefix="autocnc-bench-metrics-"))
    if store == "neo4j":
        import os

        settings = load_settings(data_dir=tmp / "data", store="neo4j",
                                 neo4j_uri=os.environ["NEO4J_URI"])
    else:
        settings = load_settings(data_dir=tmp / "data", store="embedded")
    kg = KnowledgeGraph.open(settings, writer=True)
    try:
        if store == "neo4j":
            kg.cypher("MATCH (n) DETACH DELETE n", write=True)
        yield kg
    finally:
        kg.close()
        shutil.rmtree(tmp, ignore_errors=True)


OPTIONS: dict[str, str] = {}  # source options from --option KEY=VALUE


def timed_ingest(kg: KnowledgeGraph, inputs: list[Input], scope: str) -> tuple[float, dict]:
    t = time.perf_counter()
    report = run_ingest(kg, "metrics", inputs, scope=scope, options=OPTIONS)
    elapsed = time.perf_counter() - t
    if report.rejected:
        raise SystemExit(f"unexpected rejections: {report.rejected[:3]}")
    return elapsed, report.counts


def line(case: str, seconds: float, counts: dict) -> None:
    n = counts.get("samples", 0)
    print(f"{case:28s} samples={n:>9,d}  {seconds:6.2f} s  {n / seconds:>10,.0f} samples/s  "
          f"series={counts.get('series', 0):,d} anomalies={counts.get('anomalies', 0)} "
          f"unresolved={counts.get('unresolvedSeries', 0)}", flush=True)


def bench_generated(store: str, series: int, samples: int) -> None:
    values, labels = generate(series, samples)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"prometheus": Path(tmp) / "scrape.prom", "long-csv": Path(tmp) / "long.csv"}
        write_exposition(files["prometheus"], values, labels)
        write_long_csv(files["long-csv"], values, labels)
        for name, path in files.items():
            with fresh_graph(store) as kg:
                kg.write(FactBatch.of("bench/topology", [
                    Entity(mint_iri(SCOPE, "Service", f"svc-{i}"), "Service",
                           {"name": f"svc-{i}"}) for i in range(100)]))
                seconds, counts = timed_ingest(kg, [Input.file(path)], SCOPE)
                line(f"generated {name} {series}x{samples}", seconds, counts)


def bench_petshop(store: str) -> None:
    if not PETSHOP.is_dir():
        print(f"petshop: {PETSHOP} not found, skipped")
        return
    total = 0.0
    counts: dict[str, int] = {}
    with fresh_graph(store) as kg:
        for scenario in sorted(p for p in PETSHOP.iterdir() if p.is_dir()):
            scope = f"petshop/{scenario.name}"
            with (scenario / "graph.csv").open() as fh:  # the call-graph nodes (not timed)
                nodes = fh.readline().rstrip("\r\n").split(",")[1:]
            kg.write(FactBatch.of("bench/topology", [
                Entity(mint_iri(scope, "Service", n), "Service", {"name": n}) for n in nodes]))
            inputs = expand([scenario], ("metrics.csv",))
            seconds, c = timed_ingest(kg, inputs, scope)
            total += seconds
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + v
    line("petshop (all scenarios)", total, counts)


def warm_up() -> None:
    """Process start-up costs, paid before timing: pyarrow imports pandas on first use."""
    import pyarrow

    pyarrow.array([0.0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["embedded", "neo4j"], default="embedded")
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--case", choices=["generated", "petshop", "all"], default="all")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a metrics source option, e.g. detect=false or threshold=8")
    args = parser.parse_args()
    OPTIONS.update(o.split("=", 1) for o in args.option)
    warm_up()
    if args.case in ("generated", "all"):
        bench_generated(args.store, args.series, args.samples)
    if args.case in ("petshop", "all"):
        bench_petshop(args.store)


if __name__ == "__main__":
    main()

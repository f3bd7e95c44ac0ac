"""Benchmark: learned alarm causality against an expert graph, plus simulated validation.

Data: ``../shared/data/telecom-alarms/24V_439N_Microwave`` (PCIC 2021 / gCastle, MIT
licence): 64,598 alarms of 24 types on 439 devices, the device topology, and an
expert-labelled cause -> effect graph between alarm types (``dag_edges.csv``, row = cause).

The alarms and the topology are first converted into the learner's documented formats
(docs/causal.md: an event table CSV ``time,event_type,entity`` and a topology CSV
``source,target,relation``) in a temporary folder; the engine reads only those files, through
the same code path as any other input. The expert graph is used for the final score only.

Printed: method and hyperparameters, edges found, precision / recall / F1 over directed
edges, and, in the same run, the F1 of the complete graph and of random graphs with as
many edges (mean of ``--random-seeds``), the skeleton precision and orientation accuracy
(diagnostics), the runtime, and the scores on the simulated calibration settings
(:func:`reasoning.causal.simulate.validation_settings`). ``--calibrate`` also prints the
grid on the simulated settings from which the defaults were chosen.

    .venv/bin/python bench/causal_alarms.py [--data DIR] [--sim-seeds 2] [--calibrate]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reasoning.causal import (  # noqa: E402
    METHOD,
    CausalEdge,
    LearnConfig,
    learn,
    read_events_csv,
    read_topology_csv,
    select_edges,
    write_events_csv,
    write_topology_csv,
)
from reasoning.causal.simulate import simulate, validation_settings  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "telecom-alarms" / "24V_439N_Microwave"
Edges = set[tuple[str, str]]


def convert(data: Path, out: Path) -> tuple[Path, Path]:
    """Alarm.csv and topology_edges.csv -> the documented event table and topology CSVs.

    ``start_timestamp`` (whole seconds from the start of the log) is kept as seconds since
    the epoch; alarm ids become type names, device ids entity names.
    """
    with (data / "Alarm.csv").open(newline="") as fh:
        rows = [(float(r["start_timestamp"]), f"alarm-{r['alarm_id']}", f"device-{r['device_id']}")
                for r in csv.DictReader(fh)]
    with (data / "topology_edges.csv").open(newline="") as fh:
        links = [(f"device-{r['device_a']}", f"device-{r['device_b']}", "linkedTo")
                 for r in csv.DictReader(fh)]
    events, topology = out / "events.csv", out / "topology.csv"
    write_events_csv(events, rows)
    write_topology_csv(topology, links)
    return events, topology


def expert_edges(data: Path) -> Edges:
    with (data / "dag_edges.csv").open(newline="") as fh:
        return {(f"alarm-{r['cause_alarm_id']}", f"alarm-{r['effect_alarm_id']}")
                for r in csv.DictReader(fh)}


def prf(found: Edges, truth: Edges) -> tuple[float, float, float]:
    tp = len(found & truth)
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def random_f1(types: list[str], n_edges: int, truth: Edges, seeds: int) -> float:
    pairs = [(a, b) for a in types for b in types if a != b]
    scores = []
    for seed in range(seeds):
        pick = np.random.default_rng(seed).choice(len(pairs), size=n_edges, replace=False)
        scores.append(prf({pairs[i] for i in pick}, truth)[2])
    return float(np.mean(scores))


def real_benchmark(data: Path, config: LearnConfig, random_seeds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        events_csv, topology_csv = convert(data, Path(tmp))
        t0 = time.perf_counter()
        events, topology = read_events_csv(events_csv), read_topology_csv(topology_csv)
        edges = learn(events, topology, config)
        elapsed = time.perf_counter() - t0
        before = learn(events, topology, replace(config, orientation="pair", leads_to=False))
    truth = expert_edges(data)
    types = list(events.type_names)
    complete = {(a, b) for a in types for b in types if a != b}
    print(f"data: {data.name}: {len(events)} events, {events.n_types} types, "
          f"{events.n_entities} entities, {len(topology.edges)} links; "
          f"expert graph {len(truth)} edges")
    print(f"method: {METHOD} (+ global causal order, + leads-to closure)")
    print(f"hyperparameters: {asdict(config)}")
    print(f"complete graph ({len(complete)} edges): F1 {prf(complete, truth)[2]:.4f}")
    direct = {(e.cause, e.effect) for e in edges if e.kind == "direct"}
    every = {(e.cause, e.effect) for e in edges}
    for label, found in (("direct + leads-to (all edges)", every), ("direct edges only", direct),
                         ("previous default: 2-cycle rule, direct", _pairs(before))):
        p, r, f1 = prf(found, truth)
        print(f"{label}: {len(found)} edges   precision {p:.4f}   recall {r:.4f}   F1 {f1:.4f}"
              f"   | random graph with {len(found)} edges (mean of {random_seeds}): "
              f"F1 {random_f1(types, len(found), truth, random_seeds):.4f}")
    undirected = truth | {(b, a) for a, b in truth}
    hits = direct & undirected
    print(f"diagnostics (direct edges): skeleton precision {len(hits) / max(len(direct), 1):.4f} "
          f"(edge in either direction), orientation accuracy "
          f"{len(direct & truth) / max(len(hits), 1):.4f} on those; "
          f"via: {_count(e.via for e in edges if e.kind == 'direct')}")
    print(f"runtime (read + learn): {elapsed:.1f} s")


def simulated_validation(config: LearnConfig, seeds: int) -> None:
    print(f"simulated validation (known graphs, seeds 0..{seeds - 1}; docs/causal.md): "
          "direct edges vs the true graph; all edges vs its leads-to closure")
    means = []
    for settings in validation_settings():
        scores = []
        for seed in range(seeds):
            sim = simulate(settings, seed)
            edges = learn(sim.events, sim.topology, config)
            direct = {(e.cause, e.effect) for e in edges if e.kind == "direct"}
            scores.append(prf(direct, sim.true_edges())
                          + prf(_pairs(edges), sim.leads_to_edges()))
        p, r, f1, _, _, f1_all = np.mean(scores, axis=0)
        means.append((f1, f1_all))
        print(f"  {settings.name:<14} events ~{len(sim.events):>6}  direct: precision {p:.3f}  "
              f"recall {r:.3f}  F1 {f1:.3f}   all vs leads-to: F1 {f1_all:.3f}")
    m = np.mean(means, axis=0)
    print(f"  mean F1 direct {m[0]:.3f} (worst {min(x[0] for x in means):.3f}), "
          f"all vs leads-to {m[1]:.3f} (worst {min(x[1] for x in means):.3f})")


def calibrate(seeds: int) -> None:
    """The grid the defaults were chosen from, on the simulated settings only.

    Learned once per simulation with no selection (``penalty=0``, no DAG step); every rule
    is then applied to the same tested candidates with :func:`select_edges`.
    """
    runs = []
    for settings in validation_settings():
        for seed in range(seeds):
            sim = simulate(settings, seed)
            raw = learn(sim.events, sim.topology, LearnConfig(
                penalty=0.0, min_support=0.0, acyclic=False, leads_to=False))
            runs.append((sim, raw))
    print("calibration grid (simulated settings x seeds; mean and worst setting F1):")
    for penalty in (0.25, 0.5, 1.0, 2.0):
        for orientation in ("pair", "order"):
            config = LearnConfig(penalty=penalty, orientation=orientation)
            by_setting: dict[str, list[tuple[float, float]]] = {}
            for sim, raw in runs:
                edges = select_edges(raw, sim.events.type_names, config)
                direct = {(e.cause, e.effect) for e in edges if e.kind == "direct"}
                by_setting.setdefault(sim.settings.name, []).append(
                    (prf(direct, sim.true_edges())[2],
                     prf(_pairs(edges), sim.leads_to_edges())[2]))
            per = np.array([np.mean(v, axis=0) for v in by_setting.values()])
            print(f"  penalty {penalty:<5} orientation {orientation:<6} direct F1 "
                  f"{per[:, 0].mean():.3f} (worst {per[:, 0].min():.3f})   all vs leads-to F1 "
                  f"{per[:, 1].mean():.3f} (worst {per[:, 1].min():.3f})")


def _pairs(edges: Iterable[CausalEdge]) -> Edges:
    return {(e.cause, e.effect) for e in edges}


def _count(values: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--random-seeds", type=int, default=20)
    ap.add_argument("--sim-seeds", type=int, default=2)
    ap.add_argument("--calibrate", action="store_true")
    args = ap.parse_args()
    config = LearnConfig()
    t0 = time.perf_counter()
    real_benchmark(args.data, config, args.random_seeds)
    simulated_validation(config, args.sim_seeds)
    if args.calibrate:
        calibrate(args.sim_seeds)
    print(f"total runtime {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

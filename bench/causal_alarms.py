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
from dataclasses import asdict
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
    truth = expert_edges(data)
    found = {(e.cause, e.effect) for e in edges}
    types = list(events.type_names)
    p, r, f1 = prf(found, truth)
    complete = {(a, b) for a in types for b in types if a != b}
    print(f"data: {data.name}: {len(events)} events, {events.n_types} types, "
          f"{events.n_entities} entities, {len(topology.edges)} links; "
          f"expert graph {len(truth)} edges")
    print(f"method: {METHOD}")
    print(f"hyperparameters: {asdict(config)}")
    print(f"learned edges: {len(found)}   precision {p:.4f}   recall {r:.4f}   F1 {f1:.4f}")
    print(f"complete graph ({len(complete)} edges): F1 {prf(complete, truth)[2]:.4f}")
    print(f"random graph with {len(found)} edges (mean of {random_seeds} seeds): "
          f"F1 {random_f1(types, len(found), truth, random_seeds):.4f}")
    undirected = truth | {(b, a) for a, b in truth}
    hits = found & undirected
    print(f"diagnostics: skeleton precision {len(hits) / max(len(found), 1):.4f} "
          f"(edge in either direction), orientation accuracy "
          f"{len(found & truth) / max(len(hits), 1):.4f} on those; "
          f"via: {_count(e.via for e in edges)}")
    print(f"runtime (read + learn): {elapsed:.1f} s")


def simulated_validation(config: LearnConfig, seeds: int) -> None:
    print(f"simulated validation (known graphs, seeds 0..{seeds - 1}; docs/causal.md):")
    means = []
    for settings in validation_settings():
        scores = []
        for seed in range(seeds):
            sim = simulate(settings, seed)
            found = {(e.cause, e.effect) for e in learn(sim.events, sim.topology, config)}
            scores.append(prf(found, sim.true_edges()))
        p, r, f1 = np.mean(scores, axis=0)
        means.append(f1)
        print(f"  {settings.name:<14} events ~{len(sim.events):>6}  precision {p:.3f}  "
              f"recall {r:.3f}  F1 {f1:.3f}")
    print(f"  mean F1 {np.mean(means):.3f}")


def calibrate(seeds: int) -> None:
    """The grid the defaults were chosen from: mean F1 over the simulated settings."""
    banks = {"4 scales 3s..3000s": (1 / 3, 1 / 30, 1 / 300, 1 / 3000),
             "3 scales 5s..2000s": (1 / 5, 1 / 100, 1 / 2000),
             "1 scale 60s": (1 / 60,)}
    print("calibration grid (mean F1 over simulated settings and seeds):")
    for bank, scales in banks.items():
        # learn once with no selection, then apply each rule to the tested candidates
        runs = []
        for settings in validation_settings():
            for seed in range(seeds):
                sim = simulate(settings, seed)
                raw = learn(sim.events, sim.topology, LearnConfig(
                    scales=scales, penalty=0.0, min_support=0.0, acyclic=False))
                runs.append((raw, sim.true_edges()))
        for penalty in (0.25, 0.5, 1.0, 2.0, 4.0):
            for acyclic in (False, True):
                f1 = np.mean([prf(_select(raw, penalty, acyclic), truth)[2]
                              for raw, truth in runs])
                print(f"  {bank:<20} penalty {penalty:<5} acyclic {acyclic!s:<5} F1 {f1:.3f}")


def _select(raw: list[CausalEdge], penalty: float, acyclic: bool) -> Edges:
    kept = [e for e in raw if e.llr > penalty * e.bic_unit and e.support >= 1]
    by_pair = {(e.cause, e.effect): e for e in kept}
    if acyclic:
        kept = [e for e in kept if (b := by_pair.get((e.effect, e.cause))) is None
                or (e.llr, e.cause) > (b.llr, b.cause)]
    return {(e.cause, e.effect) for e in kept}


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

"""Benchmark: learned alarm causality against expert graphs, defaults chosen across networks.

Data: ``../shared/data/telecom-alarms/24V_439N_Microwave`` (PCIC 2021 / gCastle, MIT
licence): 64,598 alarms of 24 types on 439 devices, the device topology, and an
expert-labelled cause -> effect graph between alarm types (``dag_edges.csv``, row = cause).
``--data`` takes more networks in the same layout (``Alarm.csv``, ``topology_edges.csv``,
``dag_edges.csv``); each network is read through the learner's documented CSV formats
(docs/causal.md) in a temporary folder.

**Networks for cross-validation.** Every real network is cut into two regions along its
topology (its connected components, dealt to the region with fewer alarms so far): the
regions share alarm semantics and expert graph but no device and no link. Beside them, four
simulated networks with known graphs (:func:`reasoning.causal.simulate.validation_settings`:
``dense-deep``, ``dense-mid``, ``large-skewed``, ``storms``). Per dataset the candidate edges
are tested once (no selection); every rule of the grid (penalty, ``min_share``, leads-to
edges on/off) is then applied to the same candidates.

**Held-out figures (the headline).** Leave one *network* out: the rule is chosen on every
other network (both regions of a real network leave together) and scored on the one left
out. A rule is chosen by the mean over training datasets of ``min(F1 - F1 of all edges,
precision - 0.5)``, the smaller of the two target margins. The same is done with a prior of
20 % of the true edges (``required``; seed 0), whose own edges are left out of every score.
In-sample figures (the rule chosen on all networks, scored on the same data, and
``--in-sample`` on the whole real network) are extras, labelled so.

Baselines on the same pairs: all edges (every ordered pair), and random graphs with as
many edges as the method found (mean of ``--random-seeds``).

    .venv/bin/python bench/causal_alarms.py [--data DIR ...] [--in-sample] [--random-seeds 20]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reasoning.causal import (  # noqa: E402
    CausalEdge,
    CausalPrior,
    EventTable,
    LearnConfig,
    Topology,
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
SIMULATED = ("dense-deep", "dense-mid", "large-skewed", "storms")
RAW = LearnConfig(penalty=0.0, min_support=0.0, acyclic=False, leads_to=False)
GRID = [LearnConfig(penalty=p, min_share=s, leads_to=lt) for p, s, lt in
        itertools.product((0.5, 1.0, 2.0, 4.0), (0.0, 0.01, 0.02, 0.05), (False, True))]
PRIOR_SHARE = 0.2
Edges = set[tuple[str, str]]


@dataclass
class Dataset:
    name: str
    network: str  # datasets of one network leave together
    types: tuple[str, ...]
    truth: Edges
    tested: list[CausalEdge]  # candidate edges with their gains, no selection
    events: int
    seconds: float


# -- data ----------------------------------------------------------------------------------

def convert(data: Path, out: Path) -> tuple[Path, Path]:
    """Alarm.csv and topology_edges.csv -> the documented event table and topology CSVs
    (``start_timestamp``, whole seconds from the start of the log, as epoch seconds)."""
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


def read_network(data: Path) -> tuple[EventTable, Topology, Edges]:
    with tempfile.TemporaryDirectory() as tmp:
        events, topology = convert(data, Path(tmp))
        return read_events_csv(events), read_topology_csv(topology), expert_edges(data)


def regions(events: EventTable, topology: Topology) -> list[tuple[EventTable, Topology]]:
    """Two device-disjoint regions: connected components dealt to the lighter region."""
    parent = list(range(events.n_entities))

    def root(v: int) -> int:
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    code = {n: i for i, n in enumerate(events.entity_names)}
    for a, b, _ in topology.edges:
        if a in code and b in code:
            parent[root(code[a])] = root(code[b])
    load = np.bincount(events.entities, minlength=events.n_entities)
    comps: dict[int, list[int]] = {}
    for v in range(events.n_entities):
        comps.setdefault(root(v), []).append(v)
    side = np.zeros(events.n_entities, dtype=np.int64)
    totals = [0, 0]
    for members in sorted(comps.values(), key=lambda m: (-int(load[m].sum()), m[0])):
        k = int(np.argmin(totals))
        side[members] = k
        totals[k] += int(load[members].sum())
    out = []
    for k in (0, 1):
        keep = side[events.entities] == k
        names = {events.entity_names[v] for v in np.nonzero(side == k)[0]}
        sub = EventTable.from_arrays(events.times[keep],
                                     [events.type_names[t] for t in events.types[keep]],
                                     [events.entity_names[v] for v in events.entities[keep]])
        out.append((sub, Topology.from_edges(e for e in topology.edges if e[0] in names)))
    return out


def tested(name: str, network: str, events: EventTable, topology: Topology,
           truth: Edges) -> Dataset:
    t0 = time.perf_counter()
    raw = learn(events, topology, RAW)
    return Dataset(name, network, events.type_names, truth, raw, len(events),
                   time.perf_counter() - t0)


def datasets(networks: Sequence[Path]) -> list[Dataset]:
    out = []
    for data in networks:
        events, topology, truth = read_network(data)
        for k, (sub, topo) in enumerate(regions(events, topology)):
            out.append(tested(f"{data.name}/region-{k}", data.name, sub, topo, truth))
    for settings in validation_settings():
        if settings.name in SIMULATED:
            sim = simulate(settings, 0)
            out.append(tested(f"sim/{settings.name}", f"sim/{settings.name}", sim.events,
                              sim.topology, sim.true_edges()))
    return out


# -- scoring -------------------------------------------------------------------------------

def prior_for(truth: Edges, seed: int = 0) -> CausalPrior:
    """``PRIOR_SHARE`` of the true edges, drawn with ``seed``, as required pairs."""
    ordered = sorted(truth)
    pick = np.random.default_rng(seed).choice(len(ordered), round(PRIOR_SHARE * len(ordered)),
                                              replace=False)
    return CausalPrior.from_rows((*ordered[i], "required") for i in sorted(pick))


@dataclass
class Score:
    edges: int
    precision: float
    recall: float
    f1: float
    all_f1: float  # every ordered pair
    all_precision: float
    random_f1: float = float("nan")

    @property
    def margin(self) -> float:
        """The smaller target margin: F1 over all edges, precision over 0.5."""
        return min(self.f1 - self.all_f1, self.precision - 0.5)


def score(d: Dataset, config: LearnConfig, prior: CausalPrior | None,
          random_seeds: int = 0) -> Score:
    found = {(e.cause, e.effect) for e in select_edges(d.tested, d.types, config, prior)}
    leave_out = set(prior.required | prior.forbidden | prior.oriented) if prior else set()
    pairs = {(a, b) for a in d.types for b in d.types if a != b} - leave_out
    truth, found = d.truth & pairs, found & pairs
    p, r, f1 = prf(found, truth)
    every = prf(pairs, truth)
    s = Score(len(found), p, r, f1, every[2], every[0])
    if random_seeds:
        s.random_f1 = random_f1(sorted(pairs), len(found), truth, random_seeds)
    return s


def prf(found: Edges, truth: Edges) -> tuple[float, float, float]:
    tp = len(found & truth)
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def random_f1(pairs: list[tuple[str, str]], n_edges: int, truth: Edges, seeds: int) -> float:
    scores = []
    for seed in range(seeds):
        pick = np.random.default_rng(seed).choice(len(pairs), size=min(n_edges, len(pairs)),
                                                  replace=False)
        scores.append(prf({pairs[i] for i in pick}, truth)[2])
    return float(np.mean(scores))


def choose(train: list[Dataset], with_prior: bool) -> LearnConfig:
    """The grid rule with the best mean target margin over ``train`` (ties: first)."""
    def mean_margin(config: LearnConfig) -> float:
        return float(np.mean([score(d, config, prior_for(d.truth) if with_prior else None)
                              .margin for d in train]))
    return max(GRID, key=mean_margin)


# -- report --------------------------------------------------------------------------------

def rule(c: LearnConfig) -> str:
    kinds = "on" if c.leads_to else "off"
    return f"penalty {c.penalty:g}, min_share {c.min_share:g}, leads-to {kinds}"


def line(label: str, s: Score) -> str:
    return (f"  {label:<34} F1 {s.f1:.3f}  precision {s.precision:.3f}  recall {s.recall:.3f}"
            f"  edges {s.edges:>3} | all edges F1 {s.all_f1:.3f} (precision "
            f"{s.all_precision:.3f}) | random F1 {s.random_f1:.3f}")


def held_out(data: list[Dataset], seeds: int) -> dict[bool, LearnConfig]:
    print("HELD-OUT (leave one network out: rule chosen on the other networks)")
    for d in data:
        rest = [x for x in data if x.network != d.network]
        for with_prior in (False, True):
            config = choose(rest, with_prior)
            s = score(d, config, prior_for(d.truth) if with_prior else None, seeds)
            tag = "with 20% prior" if with_prior else "no prior"
            print(line(f"{d.name} [{tag}]", s) + f" | rule: {rule(config)}")
    print("IN-SAMPLE EXTRAS (rule chosen on all networks, scored on the same data)")
    chosen = {p: choose(data, p) for p in (False, True)}
    for with_prior in (False, True):
        print(f"  chosen {'with' if with_prior else 'without'} prior: {rule(chosen[with_prior])}")
        for d in data:
            s = score(d, chosen[with_prior], prior_for(d.truth) if with_prior else None, seeds)
            print(line(f"{d.name} [in-sample]", s))
    return chosen


def whole_networks(networks: Sequence[Path], config: LearnConfig, seeds: int) -> None:
    print(f"IN-SAMPLE EXTRAS: whole networks with LearnConfig() ({rule(config)})")
    for data in networks:
        events, topology, truth = read_network(data)
        d = tested(data.name, data.name, events, topology, truth)
        for with_prior in (False, True):
            s = score(d, config, prior_for(truth) if with_prior else None, seeds)
            print(line(f"{data.name} [{'20% prior' if with_prior else 'no prior'}]", s))
        print(f"  ({d.events} events, candidates tested in {d.seconds:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, action="append", help="a network folder "
                    "(repeatable); default the 24V_439N_Microwave network")
    ap.add_argument("--random-seeds", type=int, default=20)
    ap.add_argument("--in-sample", action="store_true",
                    help="also learn on each whole real network with the defaults")
    args = ap.parse_args()
    networks = args.data or [DATA]
    t0 = time.perf_counter()
    data = datasets(networks)
    for d in data:
        print(f"dataset {d.name}: {d.events} events, {len(d.types)} types, "
              f"{len(d.truth)} true edges; candidates tested in {d.seconds:.0f} s")
    chosen = held_out(data, args.random_seeds)
    default = LearnConfig()
    same = all(replace(default, leads_to=c.leads_to, penalty=c.penalty,
                       min_share=c.min_share) == default for c in chosen.values())
    print(f"LearnConfig() defaults: {rule(default)} "
          f"({'the rule chosen on all networks' if same else 'differs from the chosen rule'})")
    print(f"hyperparameters: {asdict(default)}")
    if args.in_sample:
        whole_networks(networks, default, args.random_seeds)
    print(f"total runtime {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

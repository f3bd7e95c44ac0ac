"""Simulated event histories with a known causal graph, to validate and calibrate the learner.

The generator is a topological Hawkes process (the model of THP, Cai et al. 2021, and of
gCastle's ``THPSimulation``), simulated exactly through its branching structure:

* a random DAG over ``n_types`` event types (random order, each forward pair an edge with
  probability ``edge_prob``) is the ground truth;
* a random sparse topology over ``n_entities`` entities (a random forest of chains and
  stars plus a few extra links, like transport networks);
* *immigrant* events of type ``j`` on entity ``v`` arrive as a Poisson process of rate
  ``mu_j * w_v`` (log-uniform type rates; log-normal entity activity ``w``, spread
  ``activity_sigma``: a few very noisy entities, as in real alarm logs);
* every event of type ``i`` triggers, for each child type ``j`` of the DAG, Poisson
  (``alpha_same``) events on its own entity and Poisson(``alpha_neighbour``) on each
  neighbour, after an exponential lag with an edge-specific mean in ``lag_range``; it also
  re-triggers its own type on its own entity (``self_excitation``), as alarms repeat;
* optional *storms*: an entity and its neighbours raise every type at ``storm_factor`` times
  the background for ``storm_seconds`` — a common cause outside the graph, the main source
  of spurious edges in real data;
* optional logging delays: each event is recorded ``report_delay`` seconds late on average
  (exponential), so a fast effect is sometimes logged before its cause;
* times are rounded to ``resolution`` seconds (alarm logs keep whole seconds), so effects
  that follow within the resolution tie with their cause.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from reasoning.causal.events import EventTable, Topology

DAY = 86_400.0


@dataclass(frozen=True)
class SimulationSettings:
    name: str = "default"
    n_types: int = 12
    n_entities: int = 120
    edge_prob: float = 0.25
    horizon: float = 3 * DAY
    mu_range: tuple[float, float] = (2e-6, 2e-5)  # immigrants / second / entity
    activity_sigma: float = 0.0
    alpha_same: tuple[float, float] = (0.1, 0.3)
    alpha_neighbour: tuple[float, float] = (0.03, 0.1)
    self_excitation: tuple[float, float] = (0.0, 0.3)
    lag_range: tuple[float, float] = (5.0, 300.0)  # mean lag of an edge, seconds
    lag_kind: str = "exponential"  # or "window": uniform on [lag/2, 3 lag/2] (misspecified)
    storms: int = 0
    storm_factor: float = 200.0
    storm_seconds: float = 1800.0
    report_delay: float = 0.0  # mean exponential delay before an event is logged (seconds)
    resolution: float = 1.0
    max_events: int = 200_000


@dataclass(frozen=True)
class Simulation:
    events: EventTable
    topology: Topology
    truth: np.ndarray  # (K, K) bool, truth[i, j]: type i causes type j
    settings: SimulationSettings

    def true_edges(self) -> set[tuple[str, str]]:
        names = self.events.type_names
        return {(names[i], names[j]) for i, j in zip(*np.nonzero(self.truth), strict=True)}

    def leads_to_edges(self) -> set[tuple[str, str]]:
        """The transitive closure of the true graph: every pair joined by a directed path."""
        reach = self.truth.copy()
        for k in range(len(reach)):  # Warshall
            reach |= reach[:, [k]] & reach[[k], :]
        names = self.events.type_names
        return {(names[i], names[j]) for i, j in zip(*np.nonzero(reach), strict=True)}


def validation_settings() -> list[SimulationSettings]:
    """The calibration suite: settings the learner's defaults were chosen on (docs/causal.md)."""
    base = SimulationSettings()
    return [
        replace(base, name="thp"),
        replace(base, name="ties", lag_range=(0.3, 5.0), mu_range=(1e-7, 2e-5)),
        replace(base, name="dense-weak", n_types=16, edge_prob=0.45, alpha_same=(0.03, 0.1),
                alpha_neighbour=(0.01, 0.03), mu_range=(1e-7, 2e-5)),
        replace(base, name="window-lags", lag_kind="window", lag_range=(5.0, 60.0),
                activity_sigma=1.0),
        replace(base, name="storms", activity_sigma=1.5, storms=60, storm_factor=300.0),
        replace(base, name="report-delays", lag_range=(1.0, 30.0), report_delay=5.0,
                activity_sigma=1.0),
        replace(base, name="large-skewed", n_types=24, n_entities=400, edge_prob=0.25,
                horizon=6 * DAY, mu_range=(3e-8, 1e-5), activity_sigma=2.0, storms=40,
                alpha_same=(0.03, 0.15), alpha_neighbour=(0.01, 0.05)),
        # dense causal graphs (half of all type pairs, like expert alarm graphs), deep
        # chains, weak effects, skewed rates and entities, storms, logging delays
        replace(base, name="dense-deep", n_types=24, n_entities=300, edge_prob=0.5,
                horizon=5 * DAY, mu_range=(3e-8, 1e-5), activity_sigma=2.0, storms=40,
                alpha_same=(0.02, 0.1), alpha_neighbour=(0.005, 0.03), lag_range=(1.0, 300.0),
                report_delay=3.0),
        replace(base, name="dense-mid", n_types=16, n_entities=200, edge_prob=0.5,
                horizon=4 * DAY, mu_range=(1e-7, 1e-5), activity_sigma=1.5, storms=20,
                alpha_same=(0.03, 0.15), alpha_neighbour=(0.01, 0.04)),
    ]


def simulate(settings: SimulationSettings, seed: int) -> Simulation:
    rng = np.random.default_rng(seed)
    K, N = settings.n_types, settings.n_entities
    truth = _random_dag(K, settings.edge_prob, rng)
    nbrs = _random_topology(N, rng)
    mu = _log_uniform(rng, settings.mu_range, K)
    w = np.exp(rng.normal(0.0, settings.activity_sigma, N)) if settings.activity_sigma else \
        np.ones(N)
    w = w / w.mean()
    a_same = rng.uniform(*settings.alpha_same, (K, K)) * truth
    a_nb = rng.uniform(*settings.alpha_neighbour, (K, K)) * truth
    a_same[np.arange(K), np.arange(K)] = rng.uniform(*settings.self_excitation, K)
    lag = _log_uniform(rng, settings.lag_range, (K, K))
    gen = _immigrants(settings, mu, w, nbrs, rng)
    parts = [gen]
    total = len(gen[0])
    while len(gen[0]) and total < settings.max_events:
        gen = _offspring(gen, a_same, a_nb, lag, nbrs, settings.horizon, settings.lag_kind,
                         rng)
        parts.append(gen)
        total += len(gen[0])
    k = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    t = np.concatenate([p[2] for p in parts])
    if settings.report_delay > 0:  # logging delays blur (and can invert) the true order
        t = t + rng.exponential(settings.report_delay, len(t))
    if settings.resolution > 0:
        t = np.floor(t / settings.resolution) * settings.resolution
    width = max(2, len(str(max(K, N) - 1)))
    types = [f"T{x:0{width}d}" for x in k]
    ents = [f"E{x:0{width + 1}d}" for x in v]
    events = EventTable.from_arrays(t, types, ents)
    edges = [(f"E{a:0{width + 1}d}", f"E{b:0{width + 1}d}", "connectsTo")
             for a in range(N) for b in nbrs[a] if a < b]
    # the table codes the type names in sorted order, which is the simulation's order
    present = sorted(set(k.tolist()))
    truth_present = truth[np.ix_(present, present)]
    return Simulation(events, Topology.from_edges(edges), truth_present, settings)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float],
                 size: int | tuple[int, int]) -> np.ndarray:
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(rng.uniform(float(lo), float(hi), size))


def _random_dag(K: int, p: float, rng: np.random.Generator) -> np.ndarray:
    order = rng.permutation(K)
    upper = np.triu(rng.random((K, K)) < p, 1)
    dag = np.zeros((K, K), dtype=bool)
    dag[np.ix_(order, order)] = upper
    return dag


def _random_topology(N: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A forest grown by attachment (some new roots), plus N/10 random extra links."""
    edges: set[tuple[int, int]] = set()
    for v in range(1, N):
        if rng.random() < 0.1:
            continue  # a new component
        # prefer recent nodes (chains) but sometimes any earlier node (stars, branches)
        u = v - 1 if rng.random() < 0.5 else int(rng.integers(0, v))
        edges.add((u, v))
    for _ in range(N // 10):
        a, b = (int(x) for x in rng.integers(0, N, 2))
        if a != b:
            edges.add((min(a, b), max(a, b)))
    nb: list[list[int]] = [[] for _ in range(N)]
    for a, b in edges:
        nb[a].append(b)
        nb[b].append(a)
    return [np.array(sorted(x), dtype=np.int64) for x in nb]


Generation = tuple[np.ndarray, np.ndarray, np.ndarray]  # types, entities, times


def _immigrants(s: SimulationSettings, mu: np.ndarray, w: np.ndarray,
                nbrs: list[np.ndarray], rng: np.random.Generator) -> Generation:
    rate = np.outer(mu, w)  # (K, N)
    counts = rng.poisson(rate * s.horizon)
    k, v = np.nonzero(counts)
    reps = counts[k, v]
    types, ents = np.repeat(k, reps), np.repeat(v, reps)
    times = rng.uniform(0.0, s.horizon, len(types))
    parts = [(types, ents, times)]
    for _ in range(s.storms):
        centre = int(rng.integers(0, len(nbrs)))
        region = np.concatenate([[centre], nbrs[centre]])
        start = rng.uniform(0.0, s.horizon - s.storm_seconds)
        r = rate[:, region] * s.storm_factor * s.storm_seconds
        c = rng.poisson(r)
        kk, vv = np.nonzero(c)
        rr = c[kk, vv]
        parts.append((np.repeat(kk, rr), np.repeat(region[vv], rr),
                      start + rng.uniform(0.0, s.storm_seconds, int(rr.sum()))))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def _offspring(gen: Generation, a_same: np.ndarray, a_nb: np.ndarray, lag: np.ndarray,
               nbrs: list[np.ndarray], horizon: float, lag_kind: str,
               rng: np.random.Generator) -> Generation:
    k, v, t = gen
    deg = np.array([len(x) for x in nbrs])
    out_k, out_v, out_t = [], [], []
    for i in np.unique(k):
        sel = k == i
        pv, pt = v[sel], t[sel]
        for j in np.nonzero((a_same[i] > 0) | (a_nb[i] > 0))[0]:
            n = rng.poisson(a_same[i, j], len(pv))
            cv, ct = np.repeat(pv, n), np.repeat(pt, n)
            if a_nb[i, j] > 0:
                nb_v = np.concatenate([nbrs[x] for x in pv]) if len(pv) else np.zeros(0, int)
                nb_t = np.repeat(pt, deg[pv])
                m = rng.poisson(a_nb[i, j], len(nb_v))
                cv = np.concatenate([cv, np.repeat(nb_v, m)])
                ct = np.concatenate([ct, np.repeat(nb_t, m)])
            if lag_kind == "window":
                ct = ct + rng.uniform(0.5 * lag[i, j], 1.5 * lag[i, j], len(ct))
            else:
                ct = ct + rng.exponential(lag[i, j], len(ct))
            keep = ct < horizon
            out_k.append(np.full(int(keep.sum()), j))
            out_v.append(cv[keep])
            out_t.append(ct[keep])
    if not out_k:
        return (np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    return (np.concatenate(out_k), np.concatenate(out_v).astype(np.int64),
            np.concatenate(out_t))

"""Excitation features of a topological Hawkes process with a bank of exponential kernels.

For every event ``e`` (type ``j`` on entity ``v`` at time ``t``) and every *feature*
``p = (channel c, scale s, parent type i)`` the design matrix holds

    X[e, p] = sum over earlier events (i, u, t') with u in N_c(v) and t' < t - min_lag
              of  beta_s * exp(-beta_s * (t - t'))

where channel 0 is the entity itself (``N_0(v) = {v}``) and channel ``1 + r`` holds the
neighbours of ``v`` over topology relation ``r``. The intensity of type ``j`` on ``v`` is then
``mu_j * w_v + X[e] . theta_j`` (see :mod:`reasoning.causal.hawkes`); each kernel integrates
to 1, so ``theta`` counts expected offspring per parent event and receiving entity.

The compensator ``G[p]`` is the integral of feature ``p`` summed over all receiving
entities up to the end of the observation window.

Decayed sums are computed per receiving entity and channel over the time-sorted events of
its sources, in chunks over which ``beta * t`` varies by at most ``_CHUNK`` so that the
exponentials never overflow; each chunk is a vectorised cumulative sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reasoning.causal.events import EventTable, Topology

SAME_ENTITY = "sameEntity"  # the channel name of excitation on the event's own entity
_CHUNK = 600.0  # largest beta * (t - t_ref) inside one chunk: exp(600) < 1e261


@dataclass(frozen=True)
class Design:
    """The features of one event table, grouped by the type of the receiving event."""

    X: tuple[np.ndarray, ...]  # per event type j: (n_j, P) features of its events
    entity: tuple[np.ndarray, ...]  # per event type j: the entity index of each event
    G: np.ndarray  # (P,) compensator of each feature over all receiving entities
    span: float  # observation window length (seconds)
    n_entities: int
    n_types: int
    channels: tuple[str, ...]
    scales: tuple[float, ...]  # decay rates beta_s (1/seconds)

    @property
    def n_features(self) -> int:
        return len(self.channels) * len(self.scales) * self.n_types

    def split(self, p: np.ndarray) -> np.ndarray:
        """A (P,) or (..., P) array reshaped to (..., channels, scales, types)."""
        return p.reshape(*p.shape[:-1], len(self.channels), len(self.scales), self.n_types)


def channel_map(events: EventTable, topology: Topology) -> tuple[tuple[str, ...],
                                                                  list[list[list[int]]]]:
    """Channel names and, per channel, the source entities of every receiving entity."""
    n = events.n_entities
    channels = [SAME_ENTITY]
    sources: list[list[list[int]]] = [[[v] for v in range(n)]]
    for rel, pairs in topology.neighbours(events.entity_names).items():
        if not pairs:
            continue
        nb: list[set[int]] = [set() for _ in range(n)]
        for v, u in pairs:
            nb[v].add(u)
        channels.append(rel)
        sources.append([sorted(s) for s in nb])
    return tuple(channels), sources


def build_design(events: EventTable, topology: Topology, scales: tuple[float, ...],
                 min_lag: float = 0.0) -> Design:
    """Compute the features and compensators of ``events`` on ``topology``."""
    channels, sources = channel_map(events, topology)
    K, S, C = events.n_types, len(scales), len(channels)
    betas = np.asarray(scales, dtype=np.float64)
    t0, t1 = events.span
    by_entity = _indices_by_entity(events)
    features = np.zeros((len(events), C, S, K), dtype=np.float64)
    for c in range(C):
        for v, idx_v in enumerate(by_entity):
            src_entities = sources[c][v]
            if len(idx_v) == 0 or not src_entities:
                continue
            src = np.concatenate([by_entity[u] for u in src_entities])
            if len(src) == 0:
                continue
            src = np.sort(src)  # event indices are in time order
            features[idx_v, c] = _stream_features(
                events.times[src], events.types[src], events.times[idx_v] - min_lag, K, betas)
    G = np.zeros((C, S, K))
    tail = 1.0 - np.exp(-np.outer(t1 - events.times, betas))  # (n, S) kernel mass inside
    for c in range(C):
        receivers = np.zeros(events.n_entities)
        for v in range(events.n_entities):
            for u in sources[c][v]:
                receivers[u] += 1.0
        weight = receivers[events.entities][:, None] * tail
        for s in range(S):
            G[c, s] = np.bincount(events.types, weights=weight[:, s], minlength=K)
    flat = features.reshape(len(events), C * S * K)
    X = tuple(np.ascontiguousarray(flat[events.types == j]) for j in range(K))
    ent = tuple(events.entities[events.types == j] for j in range(K))
    return Design(X, ent, G.reshape(-1), max(t1 - t0, 1.0), events.n_entities, K,
                  channels, tuple(float(b) for b in betas))


def _indices_by_entity(events: EventTable) -> list[np.ndarray]:
    order = np.argsort(events.entities, kind="stable")  # stays time-sorted per entity
    bounds = np.searchsorted(events.entities[order], np.arange(events.n_entities + 1))
    return [order[bounds[v]:bounds[v + 1]] for v in range(events.n_entities)]


def _stream_features(ts: np.ndarray, ks: np.ndarray, targets: np.ndarray, K: int,
                     betas: np.ndarray) -> np.ndarray:
    """(len(targets), S, K): decayed counts of the sources strictly before each target."""
    out = np.zeros((len(targets), len(betas), K))
    pos = np.searchsorted(ts, targets, side="left")  # number of sources strictly before
    has = pos > 0
    if not has.any():
        return out
    last = pos[has] - 1
    onehot = np.zeros((len(ts), K))
    onehot[np.arange(len(ts)), ks] = 1.0
    for s, beta in enumerate(betas):
        state = _decayed_state(beta * ts, onehot)  # state right after each source
        gap = np.exp(-beta * (targets[has] - ts[last]))
        out[has, s] = beta * state[last] * gap[:, None]
    return out


def _decayed_state(x: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """``D[q] = sum_{q' <= q} onehot[q'] * exp(x[q'] - x[q])`` for non-decreasing ``x``."""
    m = len(x)
    D = np.empty_like(onehot)
    carry = np.zeros(onehot.shape[1])
    x_prev = x[0]
    start = 0
    while start < m:
        ref = x[start]
        end = int(np.searchsorted(x, ref + _CHUNK, side="right"))
        rel = x[start:end] - ref
        cum = np.cumsum(onehot[start:end] * np.exp(rel)[:, None], axis=0)
        cum += carry * np.exp(x_prev - ref)
        D[start:end] = cum * np.exp(-rel)[:, None]
        carry = D[end - 1]
        x_prev = x[end - 1]
        start = end
    return D

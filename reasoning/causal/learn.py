"""Learn cause -> effect edges between event types from an event table and a topology.

Method (docs/causal.md has the reasoning and the calibration):

1. Fit a topological multivariate Hawkes process (:mod:`reasoning.causal.hawkes`): every
   event may be triggered by earlier events on the same entity or on a topology neighbour,
   through a bank of exponential kernels (``scales``), or arrive from a rank-one background.
2. Test every candidate edge ``i -> j`` by a likelihood ratio: refit target ``j`` without
   any excitation from ``i`` and compare. The edge is kept when the BIC approximation of its
   posterior probability, ``1 / (1 + exp(-(dLL - penalty/2 * df * log n_j)))``, exceeds 1/2
   (``df`` = channels x scales, ``n_j`` = events of type ``j``) and at least
   ``min_support`` effect events are attributed to it.
3. Optionally (``acyclic``) keep only the stronger direction of a pair found both ways:
   causal knowledge between event types is read as a DAG, as in THP and the expert graphs.

Every returned edge carries its confidence (that posterior), support (effect events
attributed to the cause type), weight (expected effect events per cause event and
receiving entity, summed over channels), typical lag, and the channel it mostly travels
over (``sameEntity`` or a topology relation name).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reasoning.causal import hawkes
from reasoning.causal.events import EventTable, Topology
from reasoning.causal.features import Design, build_design

METHOD = "topological-hawkes-em-lr"


@dataclass(frozen=True)
class LearnConfig:
    """Hyperparameters of :func:`learn`; the defaults were chosen on simulated data only."""

    scales: tuple[float, ...] = (1 / 3, 1 / 30, 1 / 300, 1 / 3000)  # kernel decay, 1/s
    min_lag: float = 0.0  # a parent must precede its child by more than this (seconds)
    penalty: float = 1.0  # multiplies the BIC penalty; 1 = plain BIC
    min_support: float = 1.0  # effect events that must be attributed to an edge
    acyclic: bool = True
    max_iter: int = 500
    tol: float = 1e-7
    min_events: int = 1  # event types with fewer events are left out

    def __post_init__(self) -> None:
        if not self.scales or any(not (b > 0 and math.isfinite(b)) for b in self.scales):
            raise ValueError(f"scales must be positive decay rates (1/s), got {self.scales}")
        if self.min_lag < 0:
            raise ValueError(f"min_lag must be >= 0 seconds, got {self.min_lag}")
        if self.penalty < 0 or self.min_support < 0:
            raise ValueError("penalty and min_support must be >= 0")
        if self.max_iter < 1 or not self.tol > 0:
            raise ValueError("max_iter must be >= 1 and tol > 0")


@dataclass(frozen=True)
class CausalEdge:
    """A learned cause -> effect relation between two event types."""

    cause: str
    effect: str
    confidence: float  # BIC posterior probability of the edge, 0..1
    support: int  # effect events attributed to the cause type
    weight: float  # expected effect events per cause event and receiving entity
    lag_seconds: float  # mean delay of the fitted kernel mixture
    via: str  # "sameEntity" or the topology relation the effect mostly travels over
    llr: float  # log-likelihood gain of the edge
    bic_unit: float  # the BIC penalty of one edge into this effect type


def learn(events: EventTable, topology: Topology, config: LearnConfig | None = None
          ) -> list[CausalEdge]:
    """Causal edges between the event types of ``events``, strongest first.

    Pure and deterministic: the same events, topology and config give the same edges.
    """
    config = config or LearnConfig()
    events = _frequent_types(events, config.min_events)
    if events.n_types < 2 or len(events) < 2:
        return []
    design = build_design(events, topology, config.scales, config.min_lag)
    fitted = hawkes.fit(design, max_iter=config.max_iter, tol=config.tol)
    edges = _test_edges(design, fitted, events, config)
    if config.acyclic:
        edges = _drop_weaker_direction(edges)
    return sorted(edges, key=lambda e: (-e.llr, e.cause, e.effect))


def _frequent_types(events: EventTable, min_events: int) -> EventTable:
    counts = events.counts()
    if min_events <= 1 or (counts >= min_events).all():
        return events
    keep = counts[events.types] >= min_events
    names = [events.type_names[k] for k in events.types[keep]]
    ents = [events.entity_names[v] for v in events.entities[keep]]
    return EventTable.from_arrays(events.times[keep], names, ents)


def _test_edges(design: Design, fitted: hawkes.HawkesFit, events: EventTable,
                config: LearnConfig) -> list[CausalEdge]:
    K = design.n_types
    df = len(design.channels) * len(design.scales)
    parent = np.tile(np.arange(K), df)  # parent type of each feature
    attributed = design.split(fitted.attributed)  # (target, channel, scale, parent)
    theta = design.split(fitted.theta)
    lags = 1.0 / np.asarray(design.scales)
    counts = events.counts()
    out: list[CausalEdge] = []
    for j in range(K):
        unit = 0.5 * df * math.log(max(counts[j], 2))  # BIC penalty of one edge
        threshold = config.penalty * unit
        for i in range(K):
            support = float(attributed[j, :, :, i].sum())
            if i == j or support < config.min_support or support <= 0:
                continue
            llr = float(fitted.loglik[j] - hawkes.refit_target(design, fitted, j, parent == i))
            if llr <= threshold:
                continue
            by_channel = attributed[j, :, :, i].sum(axis=1)
            by_scale = attributed[j, :, :, i].sum(axis=0)
            out.append(CausalEdge(
                cause=events.type_names[i], effect=events.type_names[j],
                confidence=_posterior(llr - unit), support=int(round(support)),
                weight=float(theta[j, :, :, i].sum()),
                lag_seconds=float(by_scale @ lags / by_scale.sum()),
                via=design.channels[int(np.argmax(by_channel))], llr=llr, bic_unit=unit))
    return out


def _posterior(x: float) -> float:
    """Logistic of the penalised log-likelihood gain (BIC approximation of P(edge))."""
    if x > 700:
        return 1.0
    return 1.0 / (1.0 + math.exp(-x))


def _drop_weaker_direction(edges: list[CausalEdge]) -> list[CausalEdge]:
    by_pair = {(e.cause, e.effect): e for e in edges}
    keep = []
    for e in edges:
        back = by_pair.get((e.effect, e.cause))
        if back is None or (e.llr, e.cause) > (back.llr, back.cause):
            keep.append(e)
    return keep

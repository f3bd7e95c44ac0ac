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
3. Optionally (``acyclic``) make the edges a DAG: causal knowledge between event types is
   read as a DAG, as in THP and the expert graphs. ``orientation="order"`` (default) finds a
   global causal order of the types from the gains of all tested pairs
   (:mod:`reasoning.causal.order`) and keeps the edges that agree with it;
   ``orientation="pair"`` only keeps the stronger direction of a pair found both ways.
4. Optionally (``leads_to``, with the order) add the *indirect* edges of the DAG: a cause
   that reaches an effect only through other learned edges "leads to" it. Such an edge has
   ``kind="indirect"``, its ``path`` of types, and the product of the path's confidences.

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
from reasoning.causal.order import causal_order, leads_to

METHOD = "topological-hawkes-em-lr"


@dataclass(frozen=True)
class LearnConfig:
    """Hyperparameters of :func:`learn`; the defaults were chosen on simulated data only."""

    scales: tuple[float, ...] = (1 / 3, 1 / 30, 1 / 300, 1 / 3000)  # kernel decay, 1/s
    min_lag: float = 0.0  # a parent must precede its child by more than this (seconds)
    penalty: float = 1.0  # multiplies the BIC penalty; 1 = plain BIC
    min_support: float = 1.0  # effect events that must be attributed to an edge
    acyclic: bool = True
    orientation: str = "order"  # "order": a global causal order; "pair": per 2-cycle
    leads_to: bool = True  # also report indirect ("leads to") edges (orientation "order")
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
        if self.orientation not in ("order", "pair"):
            raise ValueError(f"orientation must be 'order' or 'pair', got {self.orientation!r}")


@dataclass(frozen=True)
class CausalEdge:
    """A learned cause -> effect relation between two event types.

    A ``direct`` edge is a significant excitation of the effect by the cause. An
    ``indirect`` edge ("leads to") joins the ends of a path of direct edges, ``path`` (the
    types from cause to effect); its numbers combine the path's: confidence and weight are
    products, support and llr the weakest link's, lag the sum, ``via`` the hops' channels
    joined by ``>``.
    """

    cause: str
    effect: str
    confidence: float  # BIC posterior probability of the edge, 0..1
    support: int  # effect events attributed to the cause type
    weight: float  # expected effect events per cause event and receiving entity
    lag_seconds: float  # mean delay of the fitted kernel mixture
    via: str  # "sameEntity" or the topology relation the effect mostly travels over
    llr: float  # log-likelihood gain of the edge
    bic_unit: float  # the BIC penalty of one edge into this effect type
    kind: str = "direct"  # or "indirect"
    path: tuple[str, ...] = ()  # indirect edges: the types from cause to effect


def learn(events: EventTable, topology: Topology, config: LearnConfig | None = None
          ) -> list[CausalEdge]:
    """Causal edges between the event types of ``events``, strongest first.

    Direct edges come first, then indirect ones; pure and deterministic: the same events,
    topology and config give the same edges.
    """
    config = config or LearnConfig()
    events = _frequent_types(events, config.min_events)
    if events.n_types < 2 or len(events) < 2:
        return []
    design = build_design(events, topology, config.scales, config.min_lag)
    fitted = hawkes.fit(design, max_iter=config.max_iter, tol=config.tol)
    return select_edges(_test_edges(design, fitted, events, config), events.type_names, config)


def select_edges(tested: list[CausalEdge], type_names: tuple[str, ...] | list[str],
                 config: LearnConfig) -> list[CausalEdge]:
    """Steps 2-4 on tested candidate edges: the significance rule, the DAG, "leads to".

    ``tested`` are direct candidates with their gains (``learn`` with ``penalty=0``,
    ``acyclic=False`` returns them), so that selection rules can be compared without
    refitting; ``learn`` itself ends with this call.
    """
    names = tuple(type_names)
    tested = [e for e in tested if e.kind == "direct"]
    edges = [e for e in tested
             if e.llr > config.penalty * e.bic_unit and e.support >= config.min_support]
    if config.acyclic and config.orientation == "pair":
        edges = _drop_weaker_direction(edges)
    elif config.acyclic:
        edges = _agree_with_order(edges, tested, names)
    edges.sort(key=lambda e: (-e.llr, e.cause, e.effect))
    if config.acyclic and config.leads_to and config.orientation == "order":
        edges += _indirect(edges, names)  # the 2-cycle rule can leave longer cycles
    return edges


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
    """Every candidate edge with its likelihood-ratio gain, significant or not."""
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
        for i in range(K):
            support = float(attributed[j, :, :, i].sum())
            if i == j or support < config.min_support or support <= 0:
                continue
            llr = float(fitted.loglik[j] - hawkes.refit_target(design, fitted, j, parent == i))
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


def _agree_with_order(edges: list[CausalEdge], tested: list[CausalEdge],
                      names: tuple[str, ...]) -> list[CausalEdge]:
    """The edges that point forward in the causal order found from all tested gains."""
    code = {n: k for k, n in enumerate(names)}
    gain = np.zeros((len(names), len(names)))
    for e in tested:
        gain[code[e.cause], code[e.effect]] = e.llr
    position = np.empty(len(names), dtype=np.int64)
    position[causal_order(gain)] = np.arange(len(names))
    return [e for e in edges if position[code[e.cause]] < position[code[e.effect]]]


def _indirect(direct: list[CausalEdge], names: tuple[str, ...]) -> list[CausalEdge]:
    """The "leads to" edges of the DAG ``direct`` (see :func:`reasoning.causal.order.leads_to`)."""
    code = {n: k for k, n in enumerate(names)}
    by_pair = {(code[e.cause], code[e.effect]): e for e in direct}
    paths = leads_to({p: e.confidence for p, e in by_pair.items()}, len(names))
    out = []
    for (a, c), path in paths.items():
        hops = [by_pair[(x, y)] for x, y in zip(path, path[1:], strict=False)]
        weakest = min(hops, key=lambda h: h.llr)
        out.append(CausalEdge(
            cause=names[a], effect=names[c],
            confidence=float(np.prod([h.confidence for h in hops])),
            support=min(h.support for h in hops), weight=float(np.prod([h.weight for h in hops])),
            lag_seconds=float(sum(h.lag_seconds for h in hops)),
            via=">".join(h.via for h in hops), llr=weakest.llr, bic_unit=weakest.bic_unit,
            kind="indirect", path=tuple(names[k] for k in path)))
    return sorted(out, key=lambda e: (-e.confidence, -e.llr, e.cause, e.effect))

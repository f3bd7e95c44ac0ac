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
   A significant edge must also explain at least ``min_share`` of its effect type's events
   (an effect size on the same 0..1 scale in every network, unlike the gain, which grows
   with the number of events).
3. Optionally (``acyclic``) make the edges a DAG: causal knowledge between event types is
   read as a DAG, as in THP and the expert graphs. ``orientation="order"`` (default) finds a
   global causal order of the types from the gains of all tested pairs
   (:mod:`reasoning.causal.order`) and keeps the edges that agree with it;
   ``orientation="pair"`` only keeps the stronger direction of a pair found both ways.
   A :class:`reasoning.causal.prior.CausalPrior` guides this step: forbidden pairs are
   dropped, required and oriented pairs constrain the order, required pairs are kept.
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
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from reasoning.causal import hawkes
from reasoning.causal.events import EventTable, Topology
from reasoning.causal.features import Design, build_design
from reasoning.causal.order import causal_order, leads_to
from reasoning.causal.prior import CausalPrior, constrained_order, order_constraints

METHOD = "topological-hawkes-em-lr"
EDGE_KINDS = ("direct", "leads-to")

# progress(stage, done, total): stages "features", "fit" (EM iterations; total = max_iter,
# it may stop earlier) and "tests" (effect types tested)
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class LearnConfig:
    """Hyperparameters of :func:`learn`; the defaults were chosen by cross-validation across
    networks (docs/causal.md, ``bench/causal_alarms.py``)."""

    scales: tuple[float, ...] = (1 / 3, 1 / 30, 1 / 300, 1 / 3000)  # kernel decay, 1/s
    min_lag: float = 0.0  # a parent must precede its child by more than this (seconds)
    penalty: float = 1.0  # multiplies the BIC penalty; 1 = plain BIC
    min_support: float = 1.0  # effect events that must be attributed to an edge
    min_share: float = 0.0  # share of the effect type's events an edge must explain, 0..1
    acyclic: bool = True
    orientation: str = "order"  # "order": a global causal order; "pair": per 2-cycle
    leads_to: bool = False  # also report indirect ("leads to") edges (orientation "order")
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
        if not 0 <= self.min_share <= 1:
            raise ValueError(f"min_share must be a share in 0..1, got {self.min_share}")
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
    share: float = 0.0  # share of the effect type's events attributed to the cause
    prior: str = ""  # "required" / "oriented" when given knowledge decided it


def learn(events: EventTable, topology: Topology, config: LearnConfig | None = None, *,
          prior: CausalPrior | None = None, progress: ProgressFn | None = None
          ) -> list[CausalEdge]:
    """Causal edges between the event types of ``events``, strongest first.

    Direct edges come first, then indirect ones; pure and deterministic: the same events,
    topology, config and prior give the same edges. ``progress`` is told how far it got.
    """
    config = config or LearnConfig()
    tell = progress or (lambda stage, done, total: None)
    events = _frequent_types(events, config.min_events)
    if events.n_types < 2 or len(events) < 2:
        return []
    tell("features", 0, 1)
    design = build_design(events, topology, config.scales, config.min_lag)
    tell("features", 1, 1)
    fitted = hawkes.fit(design, max_iter=config.max_iter, tol=config.tol,
                        on_iteration=lambda n: tell("fit", n, config.max_iter))
    tested = _test_edges(design, fitted, events, config,
                         lambda n: tell("tests", n, events.n_types))
    return select_edges(tested, events.type_names, config, prior)


def select_edges(tested: list[CausalEdge], type_names: tuple[str, ...] | list[str],
                 config: LearnConfig, prior: CausalPrior | None = None
                 ) -> list[CausalEdge]:
    """Steps 2-4 on tested candidate edges: the significance rule, the DAG, "leads to".

    ``tested`` are direct candidates with their gains (``learn`` with ``penalty=0``,
    ``min_support=0``, ``acyclic=False`` returns them), so that selection rules can be
    compared without refitting; ``learn`` itself ends with this call.
    """
    names = tuple(type_names)
    prior = prior or CausalPrior()
    tested = [e for e in tested if e.kind == "direct" and (e.cause, e.effect)
              not in prior.forbidden]
    edges = [e for e in tested
             if e.llr > config.penalty * e.bic_unit and e.support >= config.min_support
             and e.share >= config.min_share]
    if config.acyclic and config.orientation == "pair":
        edges = _drop_weaker_direction(edges)
    elif config.acyclic:
        edges = _agree_with_order(edges, tested, names, prior)
    edges = _with_prior(edges, tested, names, prior)
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
                config: LearnConfig, done: Callable[[int], None]) -> list[CausalEdge]:
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
                via=design.channels[int(np.argmax(by_channel))], llr=llr, bic_unit=unit,
                share=support / max(float(counts[j]), 1.0)))
        done(j + 1)
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
                      names: tuple[str, ...], prior: CausalPrior) -> list[CausalEdge]:
    """The edges that point forward in the causal order found from all tested gains and
    the prior's known directions (the order keeps every required and oriented pair)."""
    code = {n: k for k, n in enumerate(names)}
    gain = np.zeros((len(names), len(names)))
    for e in tested:
        gain[code[e.cause], code[e.effect]] = e.llr
    after = order_constraints(prior, names)
    for a, children in enumerate(after):
        gain[children, a] = 0.0  # evidence against known directions does not count
    order = constrained_order(causal_order(gain), after)
    if order is None:
        raise ValueError("the prior's required and oriented pairs form a cycle")
    position = np.empty(len(names), dtype=np.int64)
    position[order] = np.arange(len(names))
    return [e for e in edges if position[code[e.cause]] < position[code[e.effect]]]


def _with_prior(edges: list[CausalEdge], tested: list[CausalEdge], names: tuple[str, ...],
                prior: CausalPrior) -> list[CausalEdge]:
    """Mark edges whose direction the prior gave; add the required pairs the data did not
    select (with the numbers of their test when they were tested)."""
    if not prior:
        return edges
    by_pair = {(e.cause, e.effect): e for e in tested}
    out = []
    for e in edges:
        pair = (e.cause, e.effect)
        if pair in prior.required:
            e = replace(e, prior="required", confidence=1.0)
        elif pair in prior.oriented or (e.effect, e.cause) in prior.directed:
            e = replace(e, prior="oriented")
        out.append(e)
    have = {(e.cause, e.effect) for e in out}
    present = set(names)
    for a, b in sorted(prior.required - have):
        if a not in present or b not in present:
            continue  # a type without events in this range
        base = by_pair.get((a, b)) or CausalEdge(a, b, 1.0, 0, 0.0, 0.0, "", 0.0, 0.0)
        out.append(replace(base, confidence=1.0, prior="required"))
    return out


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

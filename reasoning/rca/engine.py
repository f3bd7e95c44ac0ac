"""Root-cause analysis: candidates from propagation paths, fused evidence, explanations.

Given the symptoms of an incident (alerts on entities, with times) and the evidence in the
incident's time window (anomalies, log events, alerts, read once from the store), RCA

1. walks the propagation graph (:class:`reasoning.rules.PropagationGraph`: the rules
   compiled against the analytic snapshot) backwards from every symptom entity, up to
   ``max_depth`` hops, keeping for every reachable entity its strongest path (the product
   of rule weights) — the candidates, each with its evidence path per symptom — and
   forwards from every candidate: its *blast radius* (what it can impact);
2. weighs the evidence of every entity in the incident, per metric (:func:`node_anomaly`):
   each anomalous series adds ``log(1 + z / z_scale)`` times its *timeliness* (1 for an
   onset up to ``onset_before_s`` before the first symptom, decaying for earlier onsets —
   a condition that predates the incident — and for later ones); only deviations in a
   metric's harmful direction count (:data:`DEFAULT_BAD_DIRECTIONS`: latency up,
   availability down, ...; metrics without a known direction, such as request counts,
   weigh ``other_metrics``); each entity's evidence is then taken relative to the
   strongest entity's in the same metric (so a metric with small scores — availability —
   is not drowned by one with large ones);
3. computes, for each candidate, signals in [0, 1] (:data:`SIGNALS`):
   ``propagation`` and ``coverage`` (how strongly and how many symptoms its rule paths
   reach), ``anomaly`` (its own relative evidence), ``path`` (how anomalous, in the same
   metric, the best chain is that links it to a symptom: faults propagate as the same
   kind of deviation), ``root`` (its anomaly less what anomalies of its own causes that
   did not start later explain, times ``path``: the anomaly-traversal criterion, graded),
   ``temporal`` (timeliness of its strongest anomaly), ``impact`` (the share of the
   incident's evidence on what it can impact, besides the symptoms: a cause explains more
   than one effect), ``topology`` (the size of its blast radius, a prior among entities
   near evidence: shared dependencies fail many things), ``logs`` (log events on it) and
   ``causal`` (learned causal edges between its event types and the symptoms');
4. scores each candidate by a weighted sum of the signals (weights from a
   :class:`Weights` file, fitted by :mod:`reasoning.rca.train`, or the defaults) and
   ranks them; ties break by IRI.

Every candidate carries each signal's value and contribution and its evidence paths
(entities, relations, rules, events with times), so the answer explains itself. Nothing
depends on entity names. Results are deterministic for the same input and graph.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from reasoning.rca.reach import BlastRadii, blast_radii, walk
from reasoning.rules import PropagationGraph

SIGNALS = ("propagation", "coverage", "anomaly", "root", "temporal", "logs", "causal", "path",
           "impact", "topology")
DEFAULT_WEIGHTS = {"propagation": 1.0, "coverage": 1.0, "anomaly": 1.0, "root": 2.0,
                   "temporal": 1.5, "logs": 0.5, "causal": 0.5, "path": 2.5, "impact": 0.75,
                   "topology": 1.0}
ALERT_KEY = "alert:"
# Which way a metric deviates when something is wrong: the first pattern contained in the
# (lower-case) metric name decides; an anomaly the other way is not evidence of a fault.
DEFAULT_BAD_DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("availability", "down"), ("success", "down"), ("uptime", "down"),
    ("latency", "up"), ("duration", "up"), ("delay", "up"), ("rtt", "up"), ("jitter", "up"),
    ("error", "up"), ("fail", "up"), ("fault", "up"), ("timeout", "up"), ("loss", "up"),
    ("drop", "up"), ("retrans", "up"), ("restart", "up"), ("oom", "up"),
    ("saturation", "up"), ("utilization", "up"), ("usage", "up"), ("cpu", "up"),
    ("memory", "up"), ("temperature", "up"))


@dataclass(frozen=True)
class Symptom:
    """An observed problem: an alert (or SLO violation) on an entity at a time."""

    entity: str | None  # IRI of the resolved entity; None when its labels did not resolve
    name: str
    at: datetime
    alert: str | None = None  # IRI of the alert occurrence, when stored
    event_type: str | None = None  # IRI of its alert definition / event type
    labels: Mapping[str, str] = field(default_factory=dict)  # the alert's labels


@dataclass(frozen=True)
class Evidence:
    """An event about an entity inside the incident window."""

    entity: str
    kind: str  # Anomaly | LogEvent | Alert | Alarm
    at: datetime
    iri: str
    score: float = 0.0  # anomaly score (robust z) or log event count
    detail: str = ""  # metric name, event kind, alert name
    event_type: str | None = None
    direction: str = ""  # anomalies: up | down
    baseline: float | None = None  # anomalies: the baseline median and the observed value
    observed: float | None = None
    until: datetime | None = None  # when it ended (None: open, or not an interval)
    series: str | None = None  # the series it was detected in (``metric{labels}``)
    series_id: str | None = None  # ... and that series' id


@dataclass
class Weights:
    values: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    source: str = "default"

    @classmethod
    def load(cls, path: Path) -> Weights:
        if not path.exists():
            return cls()
        doc = json.loads(path.read_text())
        return cls({k: float(doc["weights"].get(k, 0.0)) for k in SIGNALS}, str(path))

    def save(self, path: Path, **meta: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"formatVersion": 1, "weights": self.values, **meta},
                                   indent=1, default=str))


@dataclass
class Hop:
    entity: str
    relation: str | None = None  # relation to the next hop, as stored
    rule: str | None = None


@dataclass
class Candidate:
    entity: str
    kind: str
    score: float
    signals: dict[str, float]
    contributions: dict[str, float]
    hypothesis: str
    paths: list[dict[str, Any]]
    evidence: list[Evidence]
    extra: dict[str, Any] = field(default_factory=dict)  # ranker-specific findings

    def to_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "kind": self.kind, "score": round(self.score, 6),
                **self.extra,
                "hypothesis": self.hypothesis,
                "signals": {k: round(v, 6) for k, v in self.signals.items()},
                "contributions": {k: round(v, 6) for k, v in self.contributions.items()},
                "paths": self.paths,
                "evidence": [{"iri": e.iri, "kind": e.kind, "at": e.at.isoformat(),
                              "score": e.score, "detail": e.detail} for e in self.evidence]}


@dataclass
class RCAConfig:
    """Tuning of the analysis (see the module doc for what each knob does)."""

    max_depth: int = 4
    max_candidates: int = 10
    temporal_scale_s: float = 600.0  # evidence this much later than the first symptom: 1/e
    onset_before_s: float = 300.0  # onsets up to this long before the first symptom: on time
    onset_scale_s: float = 120.0  # earlier onsets decay with this scale (pre-existing)
    z_scale: float = 5.0  # anomaly evidence: log(1 + z / z_scale) per anomalous series
    z_cap: float = 1000.0  # larger robust z (a flat baseline: MAD 0) count as this
    alert_z: float = 10.0  # an alert or alarm on an entity counts as an anomaly of this z
    other_metrics: float = 0.0  # weight of metrics without a known bad direction (load ...)
    path_floor: float = 0.05  # factor of a non-anomalous entity on a cause's chain
    sli_labels: tuple[str, ...] = ("sli", "slo_metric")  # symptom labels naming its metric
    bad_directions: tuple[tuple[str, str], ...] = DEFAULT_BAD_DIRECTIONS


@dataclass
class _Incident:
    """What every candidate's signals are computed from."""

    located: list[Symptom]
    first: datetime
    reach: dict[int, dict[int, tuple[float, list[int]]]]  # cand -> symptom -> (w, path)
    radii: BlastRadii  # cand -> itself and what it can impact
    universe: set[int]  # the candidates and their radii
    in_radius: dict[int, list[int]]  # cand -> the anomalous entities in its radius (sorted)
    per_metric: dict[int, dict[str, float]]  # entity -> metric -> share of the metric's max
    strength: dict[int, float]  # entity -> its largest share (0 when not anomalous)
    total: float  # the sum of ``strength``
    timely: dict[int, float]  # entity -> timeliness of its strongest anomaly
    onsets: dict[int, dict[str, datetime]]  # entity -> metric -> onset of its strongest
    by_entity: dict[str, list[Evidence]]
    symptom_nodes: set[int]
    widest: int  # the largest blast radius of a candidate, itself excluded (>= 1)
    metrics: list[str]  # the metrics with anomalies in the incident
    sli: dict[int, set[str]]  # symptom entity -> the metrics its alerts say it violates
    unobserved: frozenset[int] = frozenset()  # entities no metric series observes


def analyse(graph: PropagationGraph, iris: Sequence[str], kinds: Sequence[str],
            index: Mapping[str, int], symptoms: Sequence[Symptom],
            evidence: Sequence[Evidence], weights: Weights,
            causal: Mapping[tuple[str, str], float] | None = None,
            config: RCAConfig | None = None,
            observed: Collection[str] | None = None) -> list[Candidate]:
    """Ranked root-cause candidates (best first) for ``symptoms``; see the module doc.

    ``observed``: the entities some metric series observes. An entity outside it cannot
    show an anomaly, so it passes a chain on unchanged instead of breaking it (a GPU fault
    reaches the pods through a node nobody monitors). None: every entity is observed."""
    cfg = config or RCAConfig()
    inc = _incident(graph, index, symptoms, evidence, cfg)
    if inc is None:
        return []
    if observed is not None:  # (per entity of the incident: the set may be large)
        inc.unobserved = frozenset(n for n in inc.universe if iris[n] not in observed)
    # one walk per symptom entity (several alerts on one entity walk alike)
    chain = _chains(graph.W, inc, list(dict.fromkeys(index[str(s.entity)]
                                                     for s in inc.located)), cfg)
    symptom_types = {s.event_type for s in symptoms if s.event_type}
    out: list[Candidate] = []
    explain: dict[str, tuple[int, list[str]]] = {}
    for node in inc.reach:
        iri = iris[node]
        evs = sorted(inc.by_entity.get(iri, []), key=lambda e: (e.at, e.iri))
        sig, metrics = _signals(graph.W, node, inc, chain)
        sig["logs"] = _logs(evs)
        if causal and symptom_types:
            types = {e.event_type for e in evs if e.event_type}
            sig["causal"] = max((causal.get((a, b), 0.0) for a in types for b in symptom_types),
                                default=0.0)
        contrib = {k: weights.values.get(k, 0.0) * v for k, v in sig.items()}
        out.append(Candidate(iri, kinds[node], sum(contrib.values()), sig, contrib,
                             "", [], evs[:20]))
        explain[iri] = (node, metrics)
    out.sort(key=lambda c: (-c.score, c.entity))
    top = out[:cfg.max_candidates]
    for c in top:  # explanations only for the candidates returned
        node, metrics = explain[c.entity]
        per_symptom = inc.reach[node]
        c.paths = [_path_json(graph, iris, inc.located[s_i], w, p)
                   for s_i, (w, p) in sorted(per_symptom.items())]
        c.hypothesis = _hypothesis(graph, per_symptom, node, metrics)
    return top


def _signals(W: sp.csr_matrix, node: int, inc: _Incident,
             chain: Mapping[tuple[int, str], float]) -> tuple[dict[str, float], list[str]]:
    """The topology, time and anomaly signals of one candidate (see the module doc), and
    its anomalous metrics, strongest first."""
    per_symptom = inc.reach[node]
    sig = dict.fromkeys(SIGNALS, 0.0)
    sig["propagation"] = sum(w for w, _ in per_symptom.values()) / len(inc.located)
    sig["coverage"] = len(per_symptom) / len(inc.located)
    sig["anomaly"] = inc.strength.get(node, 0.0)
    sig["temporal"] = inc.timely.get(node, 0.0)
    own = inc.per_metric.get(node, {})
    metrics = sorted((m for m in own if not m.startswith(ALERT_KEY)), key=lambda m: -own[m])
    sig["path"] = max((chain.get((node, m), 0.0) for m in metrics or inc.metrics), default=0.0)
    # unexplained by its own causes, and linked to the symptoms by an anomalous chain
    sig["root"] = _root(W, node, inc) * sig["path"]
    # (the anomalous entities are few: iterate those in the radius, not the radius)
    others = [n for n in inc.in_radius[node] if n != node and n not in inc.symptom_nodes]
    if inc.total > 0:
        sig["impact"] = sum(inc.strength[n] for n in others) / inc.total
    if others or node in inc.strength:  # a prior among suspects only
        sig["topology"] = math.log1p(inc.radii.size(node) - 1) / math.log1p(inc.widest)
    return sig, metrics


def _incident(graph: PropagationGraph, index: Mapping[str, int], symptoms: Sequence[Symptom],
              evidence: Sequence[Evidence], cfg: RCAConfig) -> _Incident | None:
    """Candidates (best rule path to each symptom), their blast radii, and the anomaly
    strength of every entity in them."""
    located = [s for s in symptoms if s.entity is not None and s.entity in index]
    if not located:
        return None
    first = min(s.at for s in symptoms)
    reach: dict[int, dict[int, tuple[float, list[int]]]] = {}
    walks: dict[int, dict[int, tuple[float, list[int]]]] = {}  # per symptom entity
    for s_i, s in enumerate(located):
        start = index[str(s.entity)]
        if start not in walks:
            walks[start] = walk(graph.W, start, cfg.max_depth)
        for node, (weight, path) in walks[start].items():
            best = reach.setdefault(node, {}).get(s_i)
            if best is None or weight > best[0]:
                reach[node][s_i] = (weight, path)
    radii = blast_radii(graph.W, list(reach), cfg.max_depth)
    universe = radii.universe()
    by_entity: dict[str, list[Evidence]] = {}
    for ev in evidence:
        if index.get(ev.entity, -1) in universe:
            by_entity.setdefault(ev.entity, []).append(ev)
    raw = {index[iri]: node_anomaly(evs, first, cfg) for iri, evs in by_entity.items()}
    top: dict[str, float] = {}
    for a in raw.values():
        for m, v in a.evidence.items():
            top[m] = max(top.get(m, 0.0), v)
    per_metric = {n: {m: v / top[m] for m, v in a.evidence.items() if v > 0}
                  for n, a in raw.items()}
    strength = {n: max(ms.values()) for n, ms in per_metric.items() if ms}
    timely = {n: a.timeliness for n, a in raw.items()}
    return _Incident(located, first, reach, radii, universe, radii.members(sorted(strength)),
                     per_metric, strength, sum(strength.values()), timely,
                     {n: a.onset for n, a in raw.items()}, by_entity,
                     {index[str(s.entity)] for s in located}, radii.widest(),
                     sorted(m for m in top if not m.startswith(ALERT_KEY)),
                     _sli(located, index, cfg))


def _sli(located: Sequence[Symptom], index: Mapping[str, int], cfg: RCAConfig
         ) -> dict[int, set[str]]:
    """Per symptom entity, the metrics its alerts name (labels ``sli_labels``), lower-case."""
    out: dict[int, set[str]] = {}
    for s in located:
        names = {str(s.labels[k]).lower() for k in cfg.sli_labels if s.labels.get(k)}
        out.setdefault(index[str(s.entity)], set()).update(names)
    return out


def _chains(W: sp.csr_matrix, inc: _Incident, starts: Sequence[int], cfg: RCAConfig
            ) -> dict[tuple[int, str], float]:
    """Per (candidate, metric): how anomalous in that metric the best chain is that links
    the candidate to a symptom: the product over the entities between them of
    ``path_floor + (1 - path_floor) *`` their share of the metric's evidence, times
    ``path_floor`` when the symptom has metric anomalies but none of this metric. A fault
    propagates as the same kind of deviation (slow callee → slow caller, failing callee →
    failing caller)."""
    out: dict[tuple[int, str], float] = {}
    for m in inc.metrics:
        share = {n: ms.get(m, 0.0) for n, ms in inc.per_metric.items()}
        factors = {n: cfg.path_floor + (1 - cfg.path_floor) * v for n, v in share.items()}
        factors.update(dict.fromkeys(inc.unobserved - set(share), 1.0))
        for start in starts:
            own = {k: v for k, v in inc.per_metric.get(start, {}).items()
                   if not k.startswith(ALERT_KEY)}
            said = inc.sli.get(start, set())
            if not own or any(x in m.lower() or m.lower() in x for x in said):
                last = 1.0
            else:
                last = cfg.path_floor + (1 - cfg.path_floor) * own.get(m, 0.0) / max(own.values())
            for node, (weight, _) in walk(W, start, cfg.max_depth, factors,
                                          cfg.path_floor).items():
                key = (node, m)
                out[key] = max(out.get(key, 0.0), weight * (last if node != start else 1.0))
    return out


def _root(W: sp.csr_matrix, node: int, inc: _Incident) -> float:
    """Its anomaly, less the share that anomalies of the same metric of its own causes
    explain — a cause as anomalous as it, or more, explains it fully, but only when that
    anomaly did not start after its own (an effect does not precede its cause); an alert
    is explained by any anomalous cause. The anomaly-traversal criterion, graded; the
    best metric counts."""
    mine = inc.per_metric.get(node)
    if not mine:
        return 0.0
    causes = [int(c) for c in W.indices[W.indptr[node]:W.indptr[node + 1]]]
    best = 0.0
    for m, v in mine.items():
        if m.startswith(ALERT_KEY):
            explained = max((inc.strength.get(c, 0.0) for c in causes), default=0.0)
        else:
            at = inc.onsets[node].get(m)
            explained = max((inc.per_metric.get(c, {}).get(m, 0.0) / v for c in causes
                             if at is None or inc.onsets.get(c, {}).get(m, at) <= at),
                            default=0.0)
        best = max(best, v * (1.0 - min(1.0, explained)))
    return best


def _logs(evs: Sequence[Evidence]) -> float:
    logs = [e for e in evs if e.kind == "LogEvent"]
    return 1.0 - math.exp(-sum(e.score for e in logs) / 10.0) if logs else 0.0


@dataclass(frozen=True)
class NodeAnomaly:
    """An entity's anomaly evidence in the incident: per metric the sum over its anomalous
    series; ``timeliness`` is how near the onset of its strongest anomaly is."""

    evidence: dict[str, float]
    timeliness: float = 0.0
    onset: dict[str, datetime] = field(default_factory=dict)  # per metric: its strongest


def node_anomaly(evs: Sequence[Evidence], first: datetime, cfg: RCAConfig) -> NodeAnomaly:
    """Evidence of one entity, per metric: ``log(1 + z / z_scale)`` of each anomalous series
    (its strongest anomaly) times its timeliness, summed over the metric's series (several
    statistics that agree say more than one) and weighted by :func:`metric_weight`. Alerts
    and alarms count as an anomaly of ``alert_z`` (key ``alert:<name>``)."""
    per_series: dict[tuple[str, str], float] = {}
    onset: dict[str, tuple[float, datetime]] = {}
    best, when = 0.0, 0.0
    for e in evs:
        if e.kind == "Anomaly":
            value = metric_weight(e, cfg) * math.log1p(min(abs(e.score), cfg.z_cap)
                                                       / cfg.z_scale)
            key = (e.detail, e.series or e.iri)
        elif e.kind in ("Alert", "Alarm"):
            value = math.log1p(cfg.alert_z / cfg.z_scale)
            key = (ALERT_KEY + e.detail, e.iri)
        else:
            continue
        value *= timeliness((e.at - first).total_seconds(), cfg)
        per_series[key] = max(per_series.get(key, 0.0), value)
        if value > 0 and value > onset.get(key[0], (0.0, e.at))[0]:
            onset[key[0]] = (value, e.at)
        if value > best:
            best, when = value, timeliness((e.at - first).total_seconds(), cfg)
    evidence: dict[str, float] = {}
    for (metric, _), v in per_series.items():
        evidence[metric] = evidence.get(metric, 0.0) + v
    return NodeAnomaly(evidence, when, {m: at for m, (_, at) in onset.items()})


def metric_weight(e: Evidence, cfg: RCAConfig) -> float:
    """1 for an anomaly of a metric with a known bad direction going that way (the first
    ``bad_directions`` pattern contained in the lower-case metric name decides), 0 going
    the other way, ``other_metrics`` for metrics without a known direction."""
    name = e.detail.lower()
    for pattern, bad in cfg.bad_directions:
        if pattern in name:
            return 1.0 if not e.direction or e.direction == bad else 0.0
    return cfg.other_metrics


def timeliness(lag_s: float, cfg: RCAConfig) -> float:
    """1 for an onset from ``onset_before_s`` before the first symptom up to it; decaying
    with ``onset_scale_s`` for earlier onsets (a condition that predates the incident) and
    with ``temporal_scale_s`` for later ones."""
    if lag_s > 0:
        return math.exp(-lag_s / cfg.temporal_scale_s)
    early = -lag_s - cfg.onset_before_s
    return 1.0 if early <= 0 else math.exp(-early / cfg.onset_scale_s)


def _path_json(graph: PropagationGraph, iris: Sequence[str], symptom: Symptom,
               weight: float, path: list[int]) -> dict[str, Any]:
    hops = []
    for a, b in zip(path, path[1:], strict=False):
        rule_i, rel = graph.rule_of[(b, a)]
        rule = graph.rules[rule_i]
        # the stored relation's direction: effect -rel-> cause, or cause -rel-> effect
        start, end = (iris[b], iris[a]) if rule.direction == "effect-to-cause" else \
            (iris[a], iris[b])
        hops.append({"cause": iris[a], "effect": iris[b], "relation": rel,
                     "start": start, "end": end, "rule": rule.id})
    return {"symptom": symptom.entity, "alert": symptom.alert, "symptomName": symptom.name,
            "at": symptom.at.isoformat(), "weight": round(weight, 6),
            "entities": [iris[i] for i in path], "hops": hops}


def _hypothesis(graph: PropagationGraph, per_symptom: Mapping[int, tuple[float, list[int]]],
                node: int, metrics: Sequence[str]) -> str:
    """The fault this candidate is suspected of: the rule of its strongest outgoing hop,
    refined by its own evidence (its most anomalous metric)."""
    rule = None
    for _, (_, path) in sorted(per_symptom.items(), key=lambda kv: -kv[1][0]):
        if len(path) > 1:
            rule = graph.rules[graph.rule_of[(path[1], path[0])][0]].hypothesis
            break
    parts = [rule or "fault of the symptomatic entity itself"]
    if metrics:
        parts.append(f"anomalous {metrics[0]}")
    return "; ".join(parts)


def rank_of(candidates: Sequence[Candidate], entity: str) -> int | None:
    """1-based rank of ``entity``; ties count against it (placed last among equals)."""
    scores = {c.entity: c.score for c in candidates}
    if entity not in scores:
        return None
    mine = scores[entity]
    return int(np.sum([s >= mine for s in scores.values()]))

"""Root-cause analysis: candidates from propagation paths, fused evidence, explanations.

Given the symptoms of an incident (alerts on entities, with times) and the evidence in the
incident's time window (anomalies, log events, alerts, read once from the store), RCA

1. walks the propagation graph (:class:`reasoning.rules.PropagationGraph`: the rules
   compiled against the analytic snapshot) backwards from every symptom entity, up to
   ``max_depth`` hops, keeping for every reachable entity its strongest path (the product
   of rule weights) — the candidates, each with its evidence path per symptom;
2. computes, for each candidate, signals in [0, 1] (:data:`SIGNALS`): how strongly and how
   many symptoms it explains (``propagation``, ``coverage``), its own anomaly evidence
   (``anomaly``), whether its anomaly is left unexplained by its own causes (``root``: the
   anomaly-traversal criterion), how early its evidence started (``temporal``), log
   evidence (``logs``) and learned causal edges between its event types and the
   symptoms' (``causal``);
3. scores each candidate by a weighted sum of the signals (weights from a
   :class:`Weights` file, learned or default) and ranks them; ties break by IRI.

Every candidate carries each signal's contribution and its evidence paths (entities,
relations, rules, events with times), so the answer explains itself. Results are
deterministic for the same input and graph.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from reasoning.rules import PropagationGraph

SIGNALS = ("propagation", "coverage", "anomaly", "root", "temporal", "logs", "causal")
DEFAULT_WEIGHTS = {"propagation": 1.0, "coverage": 1.0, "anomaly": 1.5, "root": 2.0,
                   "temporal": 0.5, "logs": 0.5, "causal": 0.5}


@dataclass(frozen=True)
class Symptom:
    """An observed problem: an alert (or SLO violation) on an entity at a time."""

    entity: str | None  # IRI of the resolved entity; None when its labels did not resolve
    name: str
    at: datetime
    alert: str | None = None  # IRI of the alert occurrence, when stored
    event_type: str | None = None  # IRI of its alert definition / event type


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

    def to_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "kind": self.kind, "score": round(self.score, 6),
                "hypothesis": self.hypothesis,
                "signals": {k: round(v, 6) for k, v in self.signals.items()},
                "contributions": {k: round(v, 6) for k, v in self.contributions.items()},
                "paths": self.paths,
                "evidence": [{"iri": e.iri, "kind": e.kind, "at": e.at.isoformat(),
                              "score": e.score, "detail": e.detail} for e in self.evidence]}


@dataclass
class RCAConfig:
    max_depth: int = 4
    max_candidates: int = 10
    temporal_scale_s: float = 600.0  # evidence this much later than the first symptom: 1/e


def analyse(graph: PropagationGraph, iris: Sequence[str], kinds: Sequence[str],
            index: Mapping[str, int], symptoms: Sequence[Symptom],
            evidence: Sequence[Evidence], weights: Weights,
            causal: Mapping[tuple[str, str], float] | None = None,
            config: RCAConfig | None = None) -> list[Candidate]:
    """Ranked root-cause candidates (best first) for ``symptoms``; see the module doc."""
    cfg = config or RCAConfig()
    located = [s for s in symptoms if s.entity is not None and s.entity in index]
    if not located:
        return []
    first = min(s.at for s in symptoms)
    # 1. candidates: best path from each candidate to each symptom (max-product walk)
    reach: dict[int, dict[int, tuple[float, list[int]]]] = {}  # cand -> symptom -> path
    for s_i, s in enumerate(located):
        for node, (weight, path) in _walk(graph, index[s.entity], cfg.max_depth).items():
            best = reach.setdefault(node, {}).get(s_i)
            if best is None or weight > best[0]:
                reach[node][s_i] = (weight, path)
    by_entity: dict[str, list[Evidence]] = {}
    for ev in evidence:
        by_entity.setdefault(ev.entity, []).append(ev)
    anomaly = {iri: _anomaly_strength(evs) for iri, evs in by_entity.items()}
    # 2. signals
    out: list[Candidate] = []
    n_sym = len(located)
    symptom_types = {s.event_type for s in symptoms if s.event_type}
    for node, per_symptom in reach.items():
        iri = iris[node]
        evs = sorted(by_entity.get(iri, []), key=lambda e: (e.at, e.iri))
        sig = dict.fromkeys(SIGNALS, 0.0)
        sig["propagation"] = sum(w for w, _ in per_symptom.values()) / n_sym
        sig["coverage"] = len(per_symptom) / n_sym
        sig["anomaly"] = anomaly.get(iri, 0.0)
        causes = graph.W.indices[graph.W.indptr[node]:graph.W.indptr[node + 1]]
        upstream = max((anomaly.get(iris[c], 0.0) for c in causes), default=0.0)
        sig["root"] = sig["anomaly"] * (1.0 - upstream)
        if evs:
            lag = (evs[0].at - first).total_seconds()
            sig["temporal"] = 1.0 if lag <= 0 else math.exp(-lag / cfg.temporal_scale_s)
        logs = [e for e in evs if e.kind == "LogEvent"]
        sig["logs"] = 1.0 - math.exp(-sum(e.score for e in logs) / 10.0) if logs else 0.0
        if causal and symptom_types:
            mine = {e.event_type for e in evs if e.event_type}
            sig["causal"] = max((causal.get((a, b), 0.0) for a in mine for b in symptom_types),
                                default=0.0)
        contrib = {k: weights.values.get(k, 0.0) * v for k, v in sig.items()}
        paths = [_path_json(graph, iris, located[s_i], w, p)
                 for s_i, (w, p) in sorted(per_symptom.items())]
        out.append(Candidate(iri, kinds[node], sum(contrib.values()), sig, contrib,
                             _hypothesis(graph, per_symptom, node, evs), paths, evs[:20]))
    out.sort(key=lambda c: (-c.score, c.entity))
    return out[:cfg.max_candidates]


def _walk(graph: PropagationGraph, start: int, depth: int) -> dict[int, tuple[float, list[int]]]:
    """Entities that can impact ``start`` within ``depth`` rule hops: best weight + path
    (``[cause, ..., start]``); ``start`` itself with weight 1."""
    W = graph.W
    best: dict[int, tuple[float, list[int]]] = {start: (1.0, [start])}
    frontier = [start]
    for _ in range(depth):
        nxt: list[int] = []
        for effect in frontier:
            w_e, path = best[effect]
            lo, hi = W.indptr[effect], W.indptr[effect + 1]
            for cause, w in zip(W.indices[lo:hi], W.data[lo:hi], strict=True):
                cause = int(cause)
                weight = w_e * float(w)
                old = best.get(cause)
                if old is None or weight > old[0]:
                    best[cause] = (weight, [cause, *path])
                    nxt.append(cause)
        frontier = nxt
        if not frontier:
            break
    return best


def _anomaly_strength(evs: Sequence[Evidence]) -> float:
    """Evidence strength in [0, 1): anomalies by robust score, alerts and alarms as strong."""
    z = 0.0
    for e in evs:
        if e.kind == "Anomaly":
            z = max(z, abs(e.score))
        elif e.kind in ("Alert", "Alarm"):
            z = max(z, 6.0)
    return 1.0 - math.exp(-z / 6.0) if z else 0.0


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
                node: int, evs: Sequence[Evidence]) -> str:
    """The fault this candidate is suspected of: the rule of its strongest outgoing hop,
    refined by its own evidence (the anomalous metric)."""
    rule = None
    for _, (_, path) in sorted(per_symptom.items(), key=lambda kv: -kv[1][0]):
        if len(path) > 1:
            rule = graph.rules[graph.rule_of[(path[1], path[0])][0]].hypothesis
            break
    metric = next((e.detail for e in evs if e.kind == "Anomaly" and e.detail), None)
    parts = [rule or "fault of the symptomatic entity itself"]
    if metric:
        parts.append(f"anomalous {metric}")
    return "; ".join(parts)


def rank_of(candidates: Sequence[Candidate], entity: str) -> int | None:
    """1-based rank of ``entity``; ties count against it (placed last among equals)."""
    scores = {c.entity: c.score for c in candidates}
    if entity not in scores:
        return None
    mine = scores[entity]
    return int(np.sum([s >= mine for s in scores.values()]))

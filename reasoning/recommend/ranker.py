"""Ranking runbooks and policies for a problem: signals, their fusion, and the reasons.

Each item gets signals in [0, 1] (:data:`SIGNALS`):

- ``alertDefinition``: an alert of the problem is one the item is for — its runbook
  ``mitigates`` the alert's definition, the runbook is named after the alert (the
  prometheus-operator layout), or the policy's event names it;
- ``lexical``: BM25 of the problem's text against the item's text, divided by the best;
- ``semantic``: cosine similarity of their sentence vectors (all-MiniLM-L6-v2);
- ``entityTypes``: the graph path problem → entity → ontology type → item (the types the
  runbook's text names, a policy's event types), idf-weighted share of the problem's types;
- ``metrics``: share of the problem's metrics (anomalies of the incident's entities, names
  in the text) that the item's alert expressions or commands use;
- ``similarAlerts``: similarity of the problem's text to the *other* alert definitions the
  item is linked to (kNN through ``mitigates``); off by default — see docs/recommend.md:
  measured, it pulls towards sibling runbooks;
- ``successRate``: the Beta posterior of the item's past outcomes (feedback and executed
  actions), in this alert's context when known; it contributes ``w · (rate − ½)``, so an
  item without history is neutral, one that failed here sinks.

The score is the weighted sum of the contributions (:class:`RecommendWeights`). A policy
whose label conditions the problem contradicts is not recommended.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reasoning.recommend.catalogue import Catalogue, Item, text_metrics
from reasoning.recommend.feedback import SuccessStats
from reasoning.recommend.policies import fill_parameters
from reasoning.recommend.query import ProblemQuery
from reasoning.recommend.text import max_normalised

SIGNALS = ("alertDefinition", "lexical", "semantic", "entityTypes", "metrics",
           "similarAlerts", "successRate")
DEFAULT_WEIGHTS: dict[str, float] = {
    "alertDefinition": 2.0, "lexical": 1.0, "semantic": 0.5, "entityTypes": 0.2,
    "metrics": 0.3, "similarAlerts": 0.0, "successRate": 1.0,
}


@dataclass
class RecommendWeights:
    values: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    source: str = "default"

    @classmethod
    def load(cls, path: Path) -> RecommendWeights:
        """Weights from a JSON file ``{"formatVersion": 1, "weights": {...}}``; absent
        signals keep their default."""
        if not path.exists():
            return cls()
        doc = json.loads(path.read_text(encoding="utf-8"))
        return cls({**DEFAULT_WEIGHTS, **{k: float(v) for k, v in doc["weights"].items()
                                          if k in SIGNALS}}, str(path))

    def without(self, *signals: str) -> RecommendWeights:
        return RecommendWeights({k: (0.0 if k in signals else v)
                                 for k, v in self.values.items()}, f"{self.source}-ablated")


@dataclass
class Recommendation:
    item: Item
    score: float
    signals: dict[str, float]
    contributions: dict[str, float]
    reasons: list[dict[str, Any]]
    action: list[dict[str, Any]] | None = None  # a policy's steps with filled parameters

    def to_json(self, rank: int) -> dict[str, Any]:
        it = self.item
        out: dict[str, Any] = {
            "rank": rank, "iri": it.iri, "kind": it.kind, "name": it.name,
            "score": round(self.score, 6),
            "signals": {k: round(v, 4) for k, v in self.signals.items() if v},
            "contributions": {k: round(v, 4) for k, v in self.contributions.items() if v},
            "reasons": self.reasons, "runbookUrl": it.url,
        }
        if it.policy is not None:
            out["policy"] = {**{k: v for k, v in it.policy.items() if k != "steps"},
                             "runbook": it.runbook, "steps": self.action}
        return out


@dataclass
class QueryVectors:
    """The query's sentence vector (None without the model)."""

    text: np.ndarray | None


def rank(cat: Catalogue, q: ProblemQuery, qv: QueryVectors, stats: SuccessStats,
         weights: RecommendWeights, *, limit: int = 10,
         kinds: Sequence[str] = ("runbook", "policy")) -> list[Recommendation]:
    """The best ``limit`` items for ``q``, best first (ties by name)."""
    n = len(cat.items)
    if not n:
        return []
    w = weights.values
    lexical = max_normalised(cat.bm25.scores(q.text)) if q.text else np.zeros(n)
    semantic = np.zeros(n)
    similar = np.zeros(n)
    best_def: dict[int, tuple[int, float]] = {}
    if qv.text is not None and cat.vectors is not None and len(cat.vectors):
        semantic = np.clip(cat.vectors @ qv.text, 0.0, 1.0)
        if w.get("similarAlerts") and cat.def_vectors is not None and len(cat.def_vectors):
            dsim = np.clip(cat.def_vectors @ qv.text, 0.0, 1.0)
            for j, d in enumerate(cat.definitions):
                if d.name in q.alert_names:
                    continue  # that is the alertDefinition signal
                for i in d.items:
                    if dsim[j] > similar[i]:
                        similar[i], best_def[i] = dsim[j], (j, float(dsim[j]))
    metrics = set(q.metrics) | (text_metrics(q.text) & cat.metric_vocabulary)
    type_norm = sum(cat.type_idf.get(t, 1.0) for t in q.entity_types)
    out = []
    for i, it in enumerate(cat.items):
        if it.kind not in kinds:
            continue
        reasons: list[dict[str, Any]] = []
        if it.policy is not None and not _conditions_hold(it, q, reasons):
            continue
        sig = dict.fromkeys(SIGNALS, 0.0)
        sig["alertDefinition"] = _alert_match(cat, it, q, reasons)
        sig["lexical"] = float(lexical[i])
        sig["semantic"] = float(semantic[i])
        sig["similarAlerts"] = float(similar[i])
        if i in best_def and w.get("similarAlerts"):
            d = cat.definitions[best_def[i][0]]
            reasons.append({"signal": "similarAlerts", "definition": d.iri, "alert": d.name,
                            "similarity": round(best_def[i][1], 4)})
        sig["entityTypes"] = _types(cat, it, q, type_norm, reasons)
        if metrics and it.metrics:
            shared = sorted(metrics & it.metrics)
            sig["metrics"] = len(shared) / len(metrics)
            if shared:
                reasons.append({"signal": "metrics", "shared": shared[:10]})
        rate = stats.rate(it.iri, q.context)
        contrib = {k: w.get(k, 0.0) * v for k, v in sig.items()}
        if rate is not None:
            sig["successRate"] = rate.value
            contrib["successRate"] = w.get("successRate", 0.0) * (rate.value - 0.5)
            reasons.append({"signal": "successRate", "rate": round(rate.value, 4),
                            "successes": rate.successes, "failures": rate.failures,
                            "context": rate.context})
        if sig["lexical"] or sig["semantic"]:
            reasons.append({"signal": "text", "lexical": round(sig["lexical"], 4),
                            "semantic": round(sig["semantic"], 4)})
        out.append(Recommendation(it, sum(contrib.values()), sig, contrib, reasons,
                                  _action(it, q)))
    out.sort(key=lambda r: (-r.score, r.item.name, r.item.iri))
    return out[:limit]


def _alert_match(cat: Catalogue, it: Item, q: ProblemQuery,
                 reasons: list[dict[str, Any]]) -> float:
    hit = 0.0
    for name in q.alert_names:
        if name not in it.alert_names:
            continue
        hit = 1.0
        defs = [cat.definitions[j] for j in it.definitions if cat.definitions[j].name == name]
        if defs:
            rel = "mitigates" if it.kind == "runbook" else "appliesTo"
            reasons += [{"signal": "alertDefinition", "alert": name, "definition": d.iri,
                         "relation": rel} for d in defs]
        elif it.kind == "runbook" and it.name == name:
            reasons.append({"signal": "alertDefinition", "alert": name,
                            "relation": "runbook named after the alert"})
        else:
            reasons.append({"signal": "alertDefinition", "alert": name,
                            "relation": "policy event"})
    return hit


def _types(cat: Catalogue, it: Item, q: ProblemQuery, norm: float,
           reasons: list[dict[str, Any]]) -> float:
    if not norm or not it.types:
        return 0.0
    shared = sorted(set(q.entity_types) & it.types)
    for t in shared:
        reasons.append({"signal": "entityTypes", "type": t,
                        "path": [*q.entity_types[t], t, it.iri]})
    return sum(cat.type_idf.get(t, 1.0) for t in shared) / norm


def _conditions_hold(it: Item, q: ProblemQuery, reasons: list[dict[str, Any]]) -> bool:
    """A policy's label conditions: a contradicted one excludes it; one the problem has no
    label for is reported as unchecked."""
    assert it.policy is not None
    for key, want in it.policy.get("conditions", {}).items():
        have = q.labels.get(key)
        if have is None:
            reasons.append({"signal": "condition", "label": key, "wanted": want,
                            "checked": False})
            continue
        ok = re.fullmatch(want[1:], have) is not None if want.startswith("~") else have == want
        if not ok:
            return False
        reasons.append({"signal": "condition", "label": key, "wanted": want, "checked": True})
    return True


def _action(it: Item, q: ProblemQuery) -> list[dict[str, Any]] | None:
    if it.policy is None:
        return None
    return [{**s, "parameters": fill_parameters(s.get("parameters") or {}, q.labels)}
            for s in it.policy["steps"]]


def explain(rec: Recommendation) -> str:
    """One line on why an item ranks where it does."""
    parts = [f"{k} {v:+.3f}" for k, v in sorted(rec.contributions.items(),
                                                  key=lambda kv: -abs(kv[1])) if v]
    return f"{rec.item.name}: " + ", ".join(parts)


"""Ranking runbooks and policies for a problem: signals, their fusion, and the reasons.

Each item gets signals in [0, 1] (:data:`SIGNALS`, computed in
:mod:`reasoning.recommend.signals`):

- ``alertDefinition``: an alert of the problem is one the item is for — its runbook
  ``mitigates`` the alert's definition, the runbook is named after the alert, the policy's
  event names it, or the alert's ``generatorURL`` carries exactly the definition's
  expression (an alert whose name was lost);
- ``lexical``: BM25 of the problem's text against the item's whole text, divided by the best;
- ``title``: the same against the item's name in words and title only (short, so a match
  there says what the runbook is about);
- ``expressionTerms``: BM25 of the words of the alert's expression (metric names, matched
  label values such as ``kube-state-metrics``) against the item's text;
- ``semantic``: cosine similarity of their sentence vectors (all-MiniLM-L6-v2);
- ``entityTypes``: the graph path problem → entity → ontology type → item (the types the
  runbook's text names, a policy's event types), idf-weighted share of the problem's types;
- ``metrics``: share of the problem's metrics (its expression, anomalies of the incident's
  entities, names in the text) that the item's alert expressions or commands use;
- ``family``: how close the problem's metrics come to the alert definitions of the
  runbook's family (the folder it lies in: a component such as etcd or node), the same for
  every runbook of the family;
- ``similarAlerts``: similarity of the problem's text to the *other* alert definitions the
  item is linked to (kNN through ``mitigates``); off by default — see docs/recommend.md:
  measured, it pulls towards sibling runbooks;
- ``successRate``: the Beta posterior of the item's past outcomes (feedback and executed
  actions), in this alert's context when known; it contributes ``w · (rate − ½)``, so an
  item without history is neutral, one that failed here sinks.

The score is the weighted sum of the contributions (:class:`RecommendWeights`; the defaults
are chosen by cross-validation in ``bench/recommend_runbooks.py``). A policy whose label
conditions the problem contradicts is not recommended.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reasoning.recommend import signals
from reasoning.recommend.catalogue import Catalogue, Item
from reasoning.recommend.feedback import SuccessStats
from reasoning.recommend.policies import fill_parameters
from reasoning.recommend.query import ProblemQuery

SIGNALS = ("alertDefinition", "lexical", "title", "expressionTerms", "semantic",
           "entityTypes", "metrics", "family", "similarAlerts", "successRate")
# Fitted on alerts that lost their name (bench/recommend_runbooks.py: MRR, coordinate
# ascent; held out by runbook family 0.983 Hits@1 / 0.992 MRR on the shared runbooks).
# title, expressionTerms and family gained nothing there; metrics and entityTypes cost
# (a shared metric or type pulls towards sibling runbooks), so they are 0: set them in
# <data dir>/models/recommend-weights.json where incidents carry anomaly metrics.
DEFAULT_WEIGHTS: dict[str, float] = {
    "alertDefinition": 2.0, "lexical": 1.0, "title": 0.0, "expressionTerms": 0.0,
    "semantic": 0.75, "entityTypes": 0.0, "metrics": 0.0, "family": 0.0,
    "similarAlerts": 0.0, "successRate": 1.0,
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
    if not cat.items:
        return []
    w = weights.values
    sig = signals.compute(cat, q, qv.text, bool(w.get("similarAlerts")))
    names = [k for k in SIGNALS if k != "successRate"]
    matrix = np.vstack([sig.values[k] for k in names])  # signals x items
    score = np.asarray([w.get(k, 0.0) for k in names]) @ matrix
    rates: dict[int, Any] = {}
    for i, it in enumerate(cat.items):
        rate = stats.rate(it.iri, q.context)
        if rate is not None:
            rates[i] = rate
            sig.values["successRate"][i] = rate.value
            score[i] += w.get("successRate", 0.0) * (rate.value - 0.5)
    out: list[Recommendation] = []
    for i in sorted(range(len(cat.items)),
                    key=lambda i: (-score[i], cat.items[i].name, cat.items[i].iri)):
        it = cat.items[i]
        if it.kind not in kinds:
            continue
        reasons: list[dict[str, Any]] = []
        if it.policy is not None and not _conditions_hold(it, q, reasons):
            continue
        values = sig.of(i)
        contrib = {k: w.get(k, 0.0) * v for k, v in values.items() if k != "successRate"}
        if i in rates:
            r = rates[i]
            contrib["successRate"] = w.get("successRate", 0.0) * (r.value - 0.5)
            reasons.append({"signal": "successRate", "rate": round(r.value, 4),
                            "successes": r.successes, "failures": r.failures,
                            "context": r.context})
        reasons[:0] = signals.reasons_for(cat, q, sig, i, w)
        out.append(Recommendation(it, float(score[i]), values, contrib, reasons,
                                  _action(it, q)))
        if len(out) >= limit:
            break
    return out


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


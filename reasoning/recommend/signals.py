"""The recommender's signals: one array per signal, one value in [0, 1] per catalogue item.

Computed for every item at once (sparse BM25 products, one vector product, set overlaps
over the alert definitions), so a query costs a few milliseconds whatever the catalogue
holds. What each signal means is in :mod:`reasoning.recommend.ranker`; why an item got
its value is kept beside the arrays for the explanation of the items shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reasoning.recommend.catalogue import Catalogue, compact_expression
from reasoning.recommend.promql import text_metrics
from reasoning.recommend.query import ProblemQuery
from reasoning.recommend.text import max_normalised


@dataclass
class Signals:
    values: dict[str, np.ndarray]
    metrics: set[str]  # the problem's metrics the catalogue knows
    # item -> (definition, similarity) behind its similarAlerts / family value
    similar: dict[int, tuple[int, float]] = field(default_factory=dict)
    family_source: dict[int, tuple[int, float]] = field(default_factory=dict)
    by_expression: set[int] = field(default_factory=set)  # definitions named by expression

    def of(self, i: int) -> dict[str, float]:
        return {k: float(v[i]) for k, v in self.values.items()}


def compute(cat: Catalogue, q: ProblemQuery, qvec: np.ndarray | None,
            with_similar: bool) -> Signals:
    n = len(cat.items)
    zeros = np.zeros(n)
    metrics = set(q.metrics) | (text_metrics(q.text) & cat.metric_vocabulary)
    sig = Signals({}, metrics)
    sig.values["alertDefinition"] = _alert_definition(cat, q, sig)
    sig.values["lexical"] = max_normalised(cat.bm25.scores(q.text)) if q.text else zeros
    sig.values["title"] = (max_normalised(cat.title_bm25.scores(q.text)) if q.text
                           else zeros)
    expr_text = q.expression_text
    sig.values["expressionTerms"] = (max_normalised(cat.bm25.scores(expr_text))
                                     if expr_text else zeros)
    semantic, similar = zeros, zeros.copy()
    if qvec is not None and cat.vectors is not None and len(cat.vectors):
        semantic = np.clip(cat.vectors @ qvec, 0.0, 1.0)
        if with_similar and cat.def_vectors is not None and len(cat.def_vectors):
            similar = _similar_alerts(cat, q, np.clip(cat.def_vectors @ qvec, 0.0, 1.0), sig)
    sig.values["semantic"] = semantic
    sig.values["similarAlerts"] = similar
    sig.values["entityTypes"] = _entity_types(cat, q)
    sig.values["metrics"] = _metric_share(cat, metrics)
    sig.values["family"] = _family(cat, metrics, sig)
    sig.values["successRate"] = zeros.copy()
    return sig


def _alert_definition(cat: Catalogue, q: ProblemQuery, sig: Signals) -> np.ndarray:
    """1 for the items of the problem's alerts: by name, or by the expression of its
    generatorURL when that is exactly a known definition's."""
    out = np.zeros(len(cat.items))
    for name in q.alert_names:
        out[cat.by_alert.get(name, [])] = 1.0
    for expr in q.expressions:
        for j in cat.by_expression.get(compact_expression(expr), []):
            sig.by_expression.add(j)
            out[cat.definitions[j].items] = 1.0
    return out


def _similar_alerts(cat: Catalogue, q: ProblemQuery, dsim: np.ndarray,
                    sig: Signals) -> np.ndarray:
    out = np.zeros(len(cat.items))
    for j, d in enumerate(cat.definitions):
        if d.name in q.alert_names:
            continue  # that is the alertDefinition signal
        for i in d.items:
            if dsim[j] > out[i]:
                out[i] = dsim[j]
                sig.similar[i] = (j, float(dsim[j]))
    return out


def _entity_types(cat: Catalogue, q: ProblemQuery) -> np.ndarray:
    out = np.zeros(len(cat.items))
    norm = sum(cat.type_idf.get(t, 1.0) for t in q.entity_types)
    if not norm:
        return out
    for i, it in enumerate(cat.items):
        shared = set(q.entity_types) & it.types
        if shared:
            out[i] = sum(cat.type_idf.get(t, 1.0) for t in shared) / norm
    return out


def _metric_share(cat: Catalogue, metrics: set[str]) -> np.ndarray:
    out = np.zeros(len(cat.items))
    if metrics:
        for i, it in enumerate(cat.items):
            if it.metrics:
                out[i] = len(metrics & it.metrics) / len(metrics)
    return out


def _family(cat: Catalogue, metrics: set[str], sig: Signals) -> np.ndarray:
    """How close the problem's metrics come to those of the alert definitions of each
    family (the folder the runbooks lie in): the best Jaccard overlap of a definition
    linked to a runbook of the family. Every runbook of a family gets the same value, so
    it points to the component without preferring one sibling runbook over another."""
    out = np.zeros(len(cat.items))
    if not metrics or not cat.families:
        return out
    best = np.zeros(len(cat.families))
    source: dict[int, tuple[int, float]] = {}
    for j, d in enumerate(cat.definitions):
        if not d.items or not d.metrics:
            continue
        overlap = len(metrics & d.metrics)
        if not overlap:
            continue
        jac = overlap / len(metrics | d.metrics)
        for f in {int(cat.family_of[i]) for i in d.items}:
            if jac > best[f]:
                best[f], source[f] = jac, (j, jac)
    out = best[cat.family_of]
    for i in range(len(cat.items)):
        f = int(cat.family_of[i])
        if f in source:
            sig.family_source[i] = source[f]
    return out


def reasons_for(cat: Catalogue, q: ProblemQuery, sig: Signals, i: int,
                used: dict[str, float]) -> list[dict[str, Any]]:
    """Why item ``i`` got its signals (only those with a weight)."""
    it = cat.items[i]
    out: list[dict[str, Any]] = []
    if used.get("alertDefinition") and sig.values["alertDefinition"][i]:
        out += _definition_reasons(cat, q, sig, i)
    if used.get("similarAlerts") and i in sig.similar:
        d = cat.definitions[sig.similar[i][0]]
        out.append({"signal": "similarAlerts", "definition": d.iri, "alert": d.name,
                    "similarity": round(sig.similar[i][1], 4)})
    if used.get("entityTypes"):
        for t in sorted(set(q.entity_types) & it.types):
            out.append({"signal": "entityTypes", "type": t,
                        "path": [*q.entity_types[t], t, it.iri]})
    if used.get("metrics") and sig.values["metrics"][i]:
        out.append({"signal": "metrics", "shared": sorted(sig.metrics & it.metrics)[:10]})
    if used.get("family") and sig.values["family"][i] and i in sig.family_source:
        j, jac = sig.family_source[i]
        d = cat.definitions[j]
        out.append({"signal": "family", "family": it.family, "definition": d.iri,
                    "alert": d.name, "shared": sorted(sig.metrics & d.metrics)[:10],
                    "overlap": round(jac, 4)})
    text = {k: round(float(sig.values[k][i]), 4) for k in
            ("lexical", "title", "expressionTerms", "semantic") if sig.values[k][i]}
    if text:
        out.append({"signal": "text", **text})
    return out


def _definition_reasons(cat: Catalogue, q: ProblemQuery, sig: Signals,
                        i: int) -> list[dict[str, Any]]:
    it = cat.items[i]
    rel = "mitigates" if it.kind == "runbook" else "appliesTo"
    out: list[dict[str, Any]] = []
    for name in q.alert_names:
        if name not in it.alert_names:
            continue
        defs = [cat.definitions[j] for j in it.definitions if cat.definitions[j].name == name]
        if defs:
            out += [{"signal": "alertDefinition", "alert": name, "definition": d.iri,
                     "relation": rel} for d in defs]
        elif it.kind == "runbook" and it.name == name:
            out.append({"signal": "alertDefinition", "alert": name,
                        "relation": "runbook named after the alert"})
        else:
            out.append({"signal": "alertDefinition", "alert": name,
                        "relation": "policy event"})
    for j in sorted(sig.by_expression & set(it.definitions)):
        d = cat.definitions[j]
        out.append({"signal": "alertDefinition", "alert": d.name, "definition": d.iri,
                    "relation": rel, "matched": "expression of the generatorURL"})
    return out

"""RCA over the knowledge graph: :class:`RCAService` ties the engine to the stores.

It keeps the propagation graph compiled against the analytic snapshot (rebuilt when the
snapshot moved), reads the evidence of an incident's window with one query, runs
:func:`reasoning.rca.engine.analyse`, and can store the result back as facts
(``RCAResult`` → ``RootCauseCandidate`` → ``EvidencePath``) with provenance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kg.facts import Entity, FactBatch, Relation, now_utc
from reasoning.rca.engine import (
    Candidate,
    Evidence,
    RCAConfig,
    Symptom,
    Weights,
    analyse,
)
from reasoning.rules import PropagationGraph, PropagationRule, load_rules

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

__all__ = ["Candidate", "Evidence", "RCAConfig", "RCAResult", "RCAService", "Symptom",
           "Weights"]

EVIDENCE_KINDS = ["Anomaly", "LogEvent", "Alert", "Alarm"]
EVIDENCE_QUERY = (
    "MATCH (e:Entity)-[:aboutEntity]->(x:Entity) "
    "WHERE e.kind IN $kinds AND e.startTime >= $t0 AND e.startTime <= $t1 "
    "OPTIONAL MATCH (e)-[:instanceOf]->(t:Entity) "
    "OPTIONAL MATCH (e)-[:detectedIn]->(s:Entity) "
    "RETURN e.iri, e.kind, x.iri, e.startTime, e.anomalyScore, e.metricName, e.eventKind, "
    "e.count, e.name, t.iri, e.direction, e.baselineValue, e.observedValue, e.endTime, s.name"
)


@dataclass
class RCAResult:
    symptoms: list[Symptom]
    candidates: list[Candidate]
    window: tuple[datetime, datetime]
    unresolved: list[str] = field(default_factory=list)  # symptoms without a graph entity
    weights: str = "default"
    iri: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "iri": self.iri,
            "window": {"start": self.window[0].isoformat(), "end": self.window[1].isoformat()},
            "symptoms": [{"entity": s.entity, "name": s.name, "at": s.at.isoformat(),
                          "alert": s.alert} for s in self.symptoms],
            "unresolved": self.unresolved,
            "candidates": [dict(rank=i + 1, **c.to_json())
                           for i, c in enumerate(self.candidates)],
            "weights": self.weights,
            "explanation": self.explanation(),
        }

    def explanation(self) -> str:
        if not self.candidates:
            if self.unresolved:
                return ("no candidate: none of the symptoms resolved to a graph entity "
                        f"({len(self.unresolved)} unresolved)")
            return "no candidate: no symptom has an entity in the graph"
        top = self.candidates[0]
        strongest = max(top.contributions, key=lambda k: top.contributions[k])
        note = (f"; {len(self.unresolved)} symptom(s) did not resolve to graph entities"
                if self.unresolved else "")
        return (f"most likely root cause: {top.entity} ({top.kind}), {top.hypothesis}; "
                f"strongest signal: {strongest}{note}")


class RCAService:
    def __init__(self, kg: KnowledgeGraph, rules: Sequence[PropagationRule] | None = None,
                 weights: Weights | None = None, config: RCAConfig | None = None) -> None:
        self.kg = kg
        self.rules = list(rules) if rules is not None else load_rules(kg.onto)
        self.weights = weights or Weights.load(kg.settings.data_dir / "models" /
                                               "rca-weights.json")
        self.config = config or RCAConfig()
        self._graph: PropagationGraph | None = None

    def propagation_graph(self) -> PropagationGraph:
        """The rules compiled against the snapshot; recompiled only when a change touched
        what rules read (their relations, or existing resources), so fresh alerts and
        anomalies cost nothing here."""
        snap = self.kg.snapshot  # caught up with the change log
        g = self._graph
        if g is not None and g.watermark != snap.watermark and self._irrelevant(g, snap):
            n = snap.node_count
            if g.W.shape[0] < n:
                g.W.resize((n, n))
            g.watermark = snap.watermark
        if g is None or g.watermark != snap.watermark:
            g = self._graph = PropagationGraph.build(snap, self.kg.onto, self.rules)
        return g

    def _irrelevant(self, g: PropagationGraph, snap: Any, max_entries: int = 2_000) -> bool:
        """Whether the changes since ``g`` was compiled leave it valid."""
        from reasoning.rules import sub_properties

        if not hasattr(self, "_relevant_rels"):
            self._relevant_rels = {p for r in self.rules
                                   for p in sub_properties(self.kg.onto, r.relation)}
            self._rule_classes = {c for r in self.rules for c in (r.cause, r.effect)}
        seen, after = 0, g.watermark
        onto = self.kg.onto
        while after < snap.watermark:
            entries = self.kg.store.changes(after, limit=200)
            if not entries:
                break
            for e in entries:
                iris, keys = e.touched()
                if any(k[0] in self._relevant_rels for k in keys):
                    return False
                for iri in iris:
                    i = snap.index.get(iri)
                    if i is not None and i < g.W.shape[0]:
                        kind = snap.kinds[i]
                        if kind in onto.classes and any(
                                onto.is_subclass(kind, c) for c in self._rule_classes):
                            return False
            seen += len(entries)
            if seen > max_entries:
                return False
            after = entries[-1].seq
        return True

    def evidence(self, start: datetime, end: datetime) -> list[Evidence]:
        rows = self.kg.store.read(EVIDENCE_QUERY, {"kinds": EVIDENCE_KINDS, "t0": start,
                                                    "t1": end},
                                  max_rows=200_000).rows
        out = []
        for (iri, kind, entity, at, z, metric, ev_kind, count, name, etype, direction,
             baseline, observed, until, series) in rows:
            score = float(z) if z is not None else float(count or 0)
            out.append(Evidence(entity, kind, at, iri, score,
                                str(metric or ev_kind or name or ""), etype,
                                direction=direction or "", baseline=baseline,
                                observed=observed, until=until, series=series))
        return out

    def observed(self) -> set[str]:
        """Entities that some metric series observes (they can show anomalies)."""
        rows = self.kg.store.read("MATCH (s:Entity)-[:observes]->(x:Entity) "
                                  "WHERE s.validTo IS NULL RETURN DISTINCT x.iri").rows
        return {r[0] for r in rows}

    def causal_edges(self) -> dict[tuple[str, str], float]:
        rows = self.kg.store.read(
            "MATCH (c:Entity)-[:causeType]->(a:Entity) MATCH (c)-[:effectType]->(b:Entity) "
            "WHERE c.validTo IS NULL RETURN a.iri, b.iri, c.confidence", max_rows=100_000).rows
        return {(a, b): float(conf or 0.0) for a, b, conf in rows}

    def analyse(self, symptoms: Sequence[Symptom], *, start: datetime | None = None,
                end: datetime | None = None, lookback: timedelta = timedelta(minutes=30)
                ) -> RCAResult:
        """Rank root causes of ``symptoms``; evidence is read from ``start``..``end``
        (default: ``lookback`` before the first symptom until the last one)."""
        if not symptoms:
            raise ValueError("RCA needs at least one symptom")
        first = min(s.at for s in symptoms)
        last = max(s.at for s in symptoms)
        start = start or first - lookback
        end = end or last + timedelta(minutes=5)
        graph = self.propagation_graph()
        snap = self.kg.snapshot
        evidence = self.evidence(start, end)
        candidates = analyse(graph, snap.iris, snap.kinds, snap.index, symptoms, evidence,
                             self.weights, self.causal_edges(), self.config,
                             observed=self.observed())
        unresolved = [s.name for s in symptoms if s.entity is None or s.entity not in snap.index]
        return RCAResult(list(symptoms), candidates, (start, end), unresolved,
                         self.weights.source)

    # -- symptoms --------------------------------------------------------------------------
    _ALERTS = ("MATCH (a:Entity){match} WHERE a.kind = 'Alert' {where} "
               "OPTIONAL MATCH (a)-[:aboutEntity]->(x:Entity) "
               "OPTIONAL MATCH (a)-[:instanceOf]->(d:Entity) "
               "RETURN a.iri, a.name, a.startTime, x.iri, d.iri, a.alertStatus, a.labels")

    def _symptoms(self, where: str, params: dict[str, Any], match: str = ""
                  ) -> list[Symptom]:
        rows = self.kg.store.read(self._ALERTS.format(match=match, where=where), params,
                                   max_rows=10_000).rows
        return [Symptom(entity, name or "alert", at, iri, definition,
                        json.loads(labels) if labels else {})
                for iri, name, at, entity, definition, status, labels in rows
                if at is not None and status != "resolved"]

    def symptoms_of_incident(self, incident: str) -> list[Symptom]:
        return self._symptoms("", {"inc": incident},
                              match="-[:partOfIncident]->(i:Entity {iri: $inc})")

    def symptoms_in_window(self, start: datetime, end: datetime,
                           scope: str | None = None) -> list[Symptom]:
        where = "AND a.startTime >= $t0 AND a.startTime <= $t1"
        params: dict[str, Any] = {"t0": start, "t1": end}
        if scope:
            where += " AND a.ingestScope = $scope"
            params["scope"] = scope
        return self._symptoms(where, params)

    def symptoms_from_alerts(self, alerts: Sequence[dict[str, Any]], scope: str
                             ) -> list[Symptom]:
        """Symptoms of webhook-style alerts (``labels``, ``startsAt``), resolved against the
        topology of ``scope`` but not stored."""
        from ingest.resolve import Resolver
        from kg.facts import utc

        resolved = Resolver(self.kg).resolve_many(
            [(scope, {str(k): str(v) for k, v in (a.get("labels") or {}).items()})
             for a in alerts])
        return [Symptom(res.iri, str((a.get("labels") or {}).get("alertname", "alert")),
                        utc(a.get("startsAt") or now_utc(), what="startsAt"),
                        labels={str(k): str(v) for k, v in (a.get("labels") or {}).items()})
                for a, res in zip(alerts, resolved, strict=True)]

    def store(self, result: RCAResult, *, scope: str, incident: str | None = None) -> str:
        """Write the result back as facts; returns the RCAResult IRI."""
        now = now_utc()
        digest = hashlib.sha1(json.dumps(
            [[s.entity, s.name, s.at.isoformat()] for s in result.symptoms]).encode()
        ).hexdigest()[:16]
        base = self.kg.settings.iri_base
        from ontology import mint_iri

        res_iri = mint_iri(scope, "RCAResult", f"{digest}-{now.strftime('%Y%m%dT%H%M%S%fZ')}",
                           base)
        source = "reasoning/rca"
        ents = [Entity(res_iri, "RCAResult", {
            "generatedAt": now, "summary": result.explanation(),
            "description": json.dumps({"window": [t.isoformat() for t in result.window],
                                       "unresolved": result.unresolved,
                                       "weights": result.weights})}, source)]
        rels: list[Relation] = []
        if incident:
            rels.append(Relation("hasResult", incident, res_iri, source=source))
        for rank, cand in enumerate(result.candidates, 1):
            c_iri = f"{res_iri}/candidate/{rank}"
            ents.append(Entity(c_iri, "RootCauseCandidate", {
                "rank": rank, "score": cand.score, "hypothesis": cand.hypothesis,
                "description": json.dumps(cand.contributions, sort_keys=True)}, source))
            rels.append(Relation("hasCandidate", res_iri, c_iri, {"rank": rank}, source))
            rels.append(Relation("candidateEntity", c_iri, cand.entity, source=source))
            for p_i, path in enumerate(cand.paths[:5]):
                p_iri = f"{c_iri}/path/{p_i}"
                text = " <- ".join(path["entities"][::-1])
                ents.append(Entity(p_iri, "EvidencePath", {
                    "hopCount": len(path["hops"]), "pathText": text,
                    "description": json.dumps(path, sort_keys=True)}, source))
                rels.append(Relation("hasEvidence", c_iri, p_iri, source=source))
                for hop_i, entity in enumerate(dict.fromkeys(path["entities"])):
                    rels.append(Relation("traverses", p_iri, entity, {"rank": hop_i}, source))
        self.kg.write(FactBatch.of(source, ents, rels))
        result.iri = res_iri
        return res_iri

"""RCA over the knowledge graph: :class:`RCAService` ties the engine to the stores.

It keeps the propagation graph compiled against the analytic snapshot (patched when the
topology changes, see :meth:`RCAService.propagation_graph`), reads the symptoms and the
evidence of an incident's window from the snapshot's event index (:mod:`kg.events`, in
memory: no store query on the analysis path), runs :func:`reasoning.rca.engine.analyse`,
and can store the result back as facts (``RCAResult`` → ``RootCauseCandidate`` →
``EvidencePath``) with provenance.
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
from reasoning.rca.learned import LearnedSettings, apply_learned
from reasoning.rules import PropagationGraph, PropagationRule, load_rules

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph
    from kg.snapshot import AnalyticSnapshot

__all__ = ["Candidate", "Evidence", "RCAConfig", "RCAResult", "RCAService", "Symptom",
           "Weights"]

EVIDENCE_KINDS = ["Anomaly", "LogEvent", "Alert", "Alarm"]
# The store queries that the event index answers from memory (kg/events.py); kept as the
# definition of what it returns (tests/test_rca_events.py compares both).
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
    learned: dict[str, Any] = field(default_factory=dict)  # applied / skipped / disabled

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
            "learned": self.learned,
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
                 weights: Weights | None = None, config: RCAConfig | None = None,
                 learned: LearnedSettings | None = None) -> None:
        self.kg = kg
        self.rules = list(rules) if rules is not None else load_rules(kg.onto)
        weights_file = kg.settings.data_dir / "models" / "rca-weights.json"
        self.weights = weights or Weights.load(weights_file)
        self.learned = learned or LearnedSettings.load(weights_file)
        self.config = config or RCAConfig()
        self._graph: PropagationGraph | None = None
        self._compiled_on: AnalyticSnapshot | None = None  # the snapshot ``_graph`` is of

    def propagation_graph(self) -> PropagationGraph:
        """The rules compiled against the snapshot, patched from the snapshot's journal
        when the topology changed (:meth:`PropagationGraph.updated`) and grown for new
        entities, so fresh alerts and anomalies cost nothing here and topology churn costs
        only the entries it touches. Recompiled in full when the journal does not reach
        back far enough, after a reindex, or when an entity changed class."""
        snap = self.kg.snapshot  # caught up with the change log
        g = self._graph if self._compiled_on is snap else None  # (reindex: a new snapshot)
        if g is not None and g.watermark != snap.watermark:
            touched = snap.touched_since(g.watermark)
            g = g.updated(snap, self.kg.onto, touched) if touched is not None else None
            self._graph = g
        if g is None:
            g = self._graph = PropagationGraph.build(snap, self.kg.onto, self.rules)
            self._compiled_on = snap
        return g

    def warm(self) -> None:
        """Build the snapshot (and its event index) and compile the rules now."""
        self.propagation_graph()

    def evidence(self, start: datetime, end: datetime) -> list[Evidence]:
        """The events about entities starting in ``start``..``end`` (what EVIDENCE_QUERY
        returns), from the event index."""
        rows = self.kg.snapshot.events.evidence_rows(EVIDENCE_KINDS, start, end)
        out = []
        for (iri, kind, entity, at, z, metric, ev_kind, count, name, etype, direction,
             baseline, observed, until, series) in rows:
            score = float(z) if z is not None else float(count or 0)
            out.append(Evidence(entity, kind, at, iri, score,
                                str(metric or ev_kind or name or ""), etype,
                                direction=direction or "", baseline=baseline,
                                observed=observed, until=until, series=series))
        return out

    def observed(self) -> frozenset[str]:
        """Entities that some metric series observes (they can show anomalies)."""
        return self.kg.snapshot.events.observed()

    def causal_edges(self) -> dict[tuple[str, str], float]:
        """Learned causal edges between event types: (cause type, effect type) -> confidence."""
        return self.kg.snapshot.events.causal_edges()

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
        fused = apply_learned(self.kg, candidates, self.learned)
        unresolved = [s.name for s in symptoms if s.entity is None or s.entity not in snap.index]
        return RCAResult(list(symptoms), fused.candidates, (start, end), unresolved,
                         self.weights.source, learned=fused.to_json())

    # -- symptoms --------------------------------------------------------------------------
    _ALERTS = ("MATCH (a:Entity){match} WHERE a.kind = 'Alert' {where} "
               "OPTIONAL MATCH (a)-[:aboutEntity]->(x:Entity) "
               "OPTIONAL MATCH (a)-[:instanceOf]->(d:Entity) "
               "RETURN a.iri, a.name, a.startTime, x.iri, d.iri, a.alertStatus, a.labels")

    @staticmethod
    def _symptoms(rows: Sequence[Sequence[Any]]) -> list[Symptom]:
        """Firing alerts of ``_ALERTS`` rows (from the event index) as symptoms."""
        return [Symptom(entity, name or "alert", at, iri, definition,
                        json.loads(labels) if labels else {})
                for iri, name, at, entity, definition, status, labels in rows
                if at is not None and status != "resolved"]

    def symptoms_of_incident(self, incident: str) -> list[Symptom]:
        """The incident's alerts (``partOfIncident``); query form: ``_ALERTS`` with
        ``match="-[:partOfIncident]->(i:Entity {iri: $inc})"``."""
        return self._symptoms(self.kg.snapshot.events.alerts_of_incident(incident))

    def symptoms_in_window(self, start: datetime, end: datetime,
                           scope: str | None = None) -> list[Symptom]:
        """Alerts starting in the window (in ``scope`` if given); query form: ``_ALERTS``
        with ``where="AND a.startTime >= $t0 AND a.startTime <= $t1 [AND a.ingestScope =
        $scope]"``."""
        return self._symptoms(self.kg.snapshot.events.alerts_between(start, end, scope or None))

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

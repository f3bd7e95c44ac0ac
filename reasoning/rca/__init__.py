"""RCA over the knowledge graph: :class:`RCAService` ties the rankers to the stores.

It keeps the propagation graph compiled against the analytic snapshot (patched when the
topology changes, see :meth:`RCAService.propagation_graph`), reads the symptoms and the
events of an incident's window from the snapshot's event index (:mod:`kg.events`, in
memory: no store query on the analysis path), asks its series sources for the incident's
series (the local time-series store, and the operator's Prometheus when configured), runs
a ranker picked by name (:data:`RANKERS`: ``origin``, the default,
:mod:`reasoning.rca.origin_rank`; ``signals``, the earlier weighted-signal engine
:mod:`reasoning.rca.engine`), and can store the result back as facts (``RCAResult`` →
``RootCauseCandidate`` → ``EvidencePath``) with provenance.
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
from reasoning.rca.evidence.collect import LogCount
from reasoning.rca.evidence.sources import LocalSeries, SeriesSource
from reasoning.rca.learned import LearnedSettings, apply_learned
from reasoning.rca.origin_rank import OriginConfig, rank
from reasoning.rules import PropagationGraph, PropagationRule, load_rules

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph
    from kg.snapshot import AnalyticSnapshot

__all__ = ["RANKERS", "Candidate", "Evidence", "OriginConfig", "RCAConfig", "RCAResult",
           "RCAService", "Symptom", "Weights"]

RANKERS = ("origin", "signals")  # origin: the default (reasoning/rca/origin_rank.py)

EVIDENCE_KINDS = ["Anomaly", "LogEvent", "Alert", "Alarm"]
# The store queries that the event index answers from memory (kg/events.py); kept as the
# definition of what it returns (tests/test_rca_events.py compares both).
EVIDENCE_QUERY = (
    "MATCH (e:Entity)-[:aboutEntity]->(x:Entity) "
    "WHERE e.kind IN $kinds AND e.startTime >= $t0 AND e.startTime <= $t1 "
    "OPTIONAL MATCH (e)-[:instanceOf]->(t:Entity) "
    "OPTIONAL MATCH (e)-[:detectedIn]->(s:Entity) "
    "RETURN e.iri, e.kind, x.iri, e.startTime, e.anomalyScore, e.metricName, e.eventKind, "
    "e.count, e.name, t.iri, e.direction, e.baselineValue, e.observedValue, e.endTime, s.name, "
    "s.seriesId"
)

LOG_COUNTS_QUERY = (
    "MATCH (e:Entity)-[:aboutEntity]->(x:Entity) "
    "WHERE e.kind = 'LogEvent' AND e.eventKind = 'template-count' "
    "AND e.startTime >= $t0 AND e.startTime <= $t1 "
    "OPTIONAL MATCH (e)-[:hasTemplate]->(t:Entity) "
    "RETURN e.iri, x.iri, e.startTime, e.count, t.iri, e.logLevel"
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
    ranker: str = "origin"
    total: int = 0  # candidates before the limit
    evidence: dict[str, Any] = field(default_factory=dict)  # sources asked, what failed

    def to_json(self) -> dict[str, Any]:
        return {
            "iri": self.iri,
            "ranker": self.ranker,
            "window": {"start": self.window[0].isoformat(), "end": self.window[1].isoformat()},
            "evidence": self.evidence,
            "totalCandidates": self.total,
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
                 learned: LearnedSettings | None = None, *, ranker: str = "origin",
                 origin: OriginConfig | None = None,
                 sources: Sequence[SeriesSource] | None = None) -> None:
        """``ranker``: ``origin`` (default) or ``signals`` (the weighted-signal engine, with
        ``weights``, ``config`` and the learned stage). ``sources``: series sources asked
        besides the local time-series store (e.g. a Prometheus)."""
        if ranker not in RANKERS:
            raise ValueError(f"rca: unknown ranker {ranker!r}; one of {', '.join(RANKERS)}")
        self.kg = kg
        self.ranker = ranker
        self.origin = origin or OriginConfig()
        self.sources = list(sources or [])
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
             baseline, observed, until, series, series_id) in rows:
            score = float(z) if z is not None else float(count or 0)
            out.append(Evidence(entity, kind, at, iri, score,
                                str(metric or ev_kind or name or ""), etype,
                                direction=direction or "", baseline=baseline,
                                observed=observed, until=until, series=series,
                                series_id=series_id))
        return out

    def observed(self) -> frozenset[str]:
        """Entities that some metric series observes (they can show anomalies)."""
        return self.kg.snapshot.events.observed()

    def causal_edges(self) -> dict[tuple[str, str], float]:
        """Learned causal edges between event types: (cause type, effect type) -> confidence."""
        return self.kg.snapshot.events.causal_edges()

    def series_sources(self) -> list[SeriesSource]:
        """The local time-series store (through the snapshot's series catalogue), then the
        configured sources."""
        from kg.timeseries import TimeSeriesStore

        data_dir = self.kg.settings.data_dir
        local = LocalSeries(self.kg.snapshot.events,
                            lambda: TimeSeriesStore.open(data_dir, read_only=True))
        return [local, *self.sources]

    def analyse(self, symptoms: Sequence[Symptom], *, start: datetime | None = None,
                end: datetime | None = None, lookback: timedelta = timedelta(minutes=30),
                reference: tuple[datetime, datetime] | None = None,
                limit: int | None = 10) -> RCAResult:
        """Rank root causes of ``symptoms``. ``reference``: a known fault-free window to
        judge series against (default: a trailing window before the incident, cleaned of
        anomalous points); ``limit``: candidates returned (None: all). The ``signals``
        ranker reads events from ``start``..``end`` (default: ``lookback`` before the first
        symptom until 5 minutes after the last)."""
        if not symptoms:
            raise ValueError("RCA needs at least one symptom")
        if limit is not None and limit < 1:
            raise ValueError("limit must be >= 1 (or None for all)")
        if reference is not None and not reference[0] < reference[1]:
            raise ValueError("reference: start must be before end")
        first = min(s.at for s in symptoms)
        last = max(s.at for s in symptoms)
        if self.ranker == "origin":
            return self._analyse_origin(symptoms, first, last, reference, limit)
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
                         self.weights.source, learned=fused.to_json(), ranker="signals",
                         total=len(fused.candidates))

    def _analyse_origin(self, symptoms: Sequence[Symptom], first: datetime, last: datetime,
                        reference: tuple[datetime, datetime] | None, limit: int | None
                        ) -> RCAResult:
        cfg = self.origin
        judge = cfg.judge
        start = first - timedelta(seconds=judge.trailing_s + judge.before_s)
        end = last + timedelta(seconds=judge.after_s)
        if reference is not None:  # before the incident, or a quiet period after it
            start, end = min(start, reference[0]), max(end, reference[1])
        graph = self.propagation_graph()
        snap = self.kg.snapshot
        events = self.evidence(start, end)
        logs = [LogCount(entity, at, float(count or 0), template, level)
                for _, entity, at, count, template, level
                in snap.events.log_count_rows(start, end)]
        ranking = rank(graph, snap.iris, snap.kinds, snap.index, symptoms, events,
                       self.series_sources(), cfg, reference=reference, limit=limit,
                       log_counts=logs)
        unresolved = [s.name for s in symptoms if s.entity is None or s.entity not in snap.index]
        found = ranking.evidence
        summary = {"sources": found.sources, "series": found.series,
                   "problems": found.problems,
                   "reference": {"start": reference[0].isoformat(),
                                 "end": reference[1].isoformat()} if reference else
                   {"trailingSeconds": judge.trailing_s}}
        return RCAResult(list(symptoms), ranking.candidates, (start, end), unresolved,
                         "none", ranker="origin", total=ranking.total, evidence=summary)

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
        for place, cand in enumerate(result.candidates, 1):
            c_iri = f"{res_iri}/candidate/{place}"
            ents.append(Entity(c_iri, "RootCauseCandidate", {
                "rank": place, "score": cand.score, "hypothesis": cand.hypothesis,
                "description": json.dumps(cand.contributions, sort_keys=True)}, source))
            rels.append(Relation("hasCandidate", res_iri, c_iri, {"rank": place}, source))
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

"""Incidents behind the webhook: group received alerts, run RCA off the request path.

The receiver passes the alerts it writes through :meth:`IncidentWorker.assign` and writes
the incident facts in the same transaction; a background
thread ticks once a second, asks :func:`reasoning.incidents.should_analyse` for every open
incident and runs RCA for those that are due: the analysis holds the analytic snapshot
steady (:meth:`kg.graph.KnowledgeGraph.holding_snapshot`), not the writer's lock, which it
takes only to write the result, so intake never waits for an analysis. Incidents and
their RCA results are facts in the graph (``Incident`` with ``partOfIncident`` alerts and
``hasResult``), so ``GET /v1/incidents`` reads them back after a restart too. The grouping
state is in memory; :meth:`restore` (called when the worker starts) rebuilds it from the
open incidents in the graph, so after a restart alerts keep joining the incidents they
belonged to.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from api.periodic import Periodic
from ingest.base import Record
from kg.facts import Entity, FactBatch, Relation, now_utc
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from reasoning.incidents import AlertRef, GroupingConfig, Incident, IncidentGrouper, should_analyse
from reasoning.rca import RCAService, Symptom


def alert_refs(records: Sequence[Record]) -> list[AlertRef]:
    """The alerts of receiver records, as grouping needs them."""
    out = []
    for rec in records:
        alert = next((e for e in rec.entities if e.type == "Alert"), None)
        if alert is None:
            continue
        p = alert.properties
        about = next((r.end for r in rec.relations if r.type == "aboutEntity"), None)
        definition = next((r.end for r in rec.relations if r.type == "instanceOf"), None)
        labels = json.loads(str(p.get("labels") or "{}"))
        starts = p.get("startTime")
        if not isinstance(starts, datetime):
            continue
        out.append(AlertRef(alert.iri, labels, starts, str(p.get("alertStatus") or "firing"),
                            str(p.get("groupKey")) if p.get("groupKey") else None, about,
                            definition))
    return out


MAX_SYMPTOMS = 500  # the newest firing alerts of an incident that one analysis reads
RESTORE_LIMIT = 10_000  # open incidents taken back after a restart (the newest)

_OPEN_INCIDENTS = (
    "MATCH (i:Entity) WHERE i.kind = 'Incident' AND i.validTo IS NULL "
    "AND (i.incidentStatus IS NULL OR i.incidentStatus <> 'resolved') "
    "RETURN i.iri, i.groupKey, i.startTime, i.ingestScope ORDER BY i.startTime DESC "
    "LIMIT $limit")
_INCIDENT_ALERTS = (
    "MATCH (a:Entity)-[:partOfIncident]->(i:Entity) WHERE i.iri IN $iris "
    "OPTIONAL MATCH (a)-[:aboutEntity]->(x:Entity) "
    "OPTIONAL MATCH (a)-[:instanceOf]->(d:Entity) "
    "RETURN i.iri, a.iri, a.labels, a.startTime, a.alertStatus, a.groupKey, x.iri, d.iri")
_LAST_ANALYSIS = ("MATCH (i:Entity)-[:hasResult]->(r:Entity) WHERE i.iri IN $iris "
                  "RETURN i.iri, max(r.generatedAt)")


def stored_incidents(kg: KnowledgeGraph, limit: int = RESTORE_LIMIT
                     ) -> list[tuple[Incident, str]]:
    """The open incidents of the graph with their alerts and scope, as grouping keeps them
    (an analysed incident counts its current alerts as analysed: only new ones re-trigger)."""
    rows = kg.store.read(_OPEN_INCIDENTS, {"limit": limit}, max_rows=limit).rows
    if not rows:
        return []
    iris = [r[0] for r in rows]
    alerts: dict[str, dict[str, AlertRef]] = {i: {} for i in iris}
    for inc, a, labels, at, status, group_key, about, definition in kg.store.read(
            _INCIDENT_ALERTS, {"iris": iris}, max_rows=10_000_000).rows:
        if at is not None:
            alerts[inc][a] = AlertRef(a, json.loads(labels) if labels else {}, at,
                                      status or "firing", group_key, about, definition)
    analysed = dict(kg.store.read(_LAST_ANALYSIS, {"iris": iris}, max_rows=limit).rows)
    out = []
    for iri, group, started, scope in rows:
        refs = alerts[iri]
        inc = Incident(iri.rsplit("/", 1)[-1], group or "", started, refs,
                       max((r.starts_at for r in refs.values()), default=started),
                       analysed.get(iri), len(refs) if analysed.get(iri) else 0)
        out.append((inc, scope or _scope_of(iri, kg.settings.iri_base)))
    return out


def _scope_of(iri: str, base: str) -> str:
    """The scope part of an incident IRI (for incidents stored without ``ingestScope``)."""
    base = base if base.endswith(("/", "#")) else base + "/"
    return unquote(iri.removeprefix(base).rsplit("/Incident/", 1)[0]) or "default"


class IncidentWorker:
    def __init__(self, kg: KnowledgeGraph, guard: threading.Lock, *,
                 config: GroupingConfig | None = None,
                 clock: Callable[[], datetime] = now_utc,
                 rca: RCAService | None = None,
                 timed: Callable[[], AbstractContextManager[None]] = nullcontext) -> None:
        self.kg = kg
        self.timed = timed  # times each analysis (the server's metrics)
        self.due = 0  # incidents due for analysis and not analysed yet (a queue depth)
        self.guard = guard
        self.clock = clock
        self.grouper = IncidentGrouper(config, clock)
        self.rca = rca or RCAService(kg)  # the app shares its own: one compiled rule graph
        self.scopes: dict[str, str] = {}  # incident key -> scope
        self._lock = threading.Lock()
        self._ticker = Periodic("incident-rca", 1.0, self.tick, "autocnc.incidents")

    def start(self) -> IncidentWorker:
        self.restore()
        self._ticker.start()
        return self

    def restore(self, limit: int = RESTORE_LIMIT) -> int:
        """Seed the grouping state with the newest ``limit`` incidents of the graph that are
        not resolved (their alerts, scope and last analysis); returns how many."""
        incidents = stored_incidents(self.kg, limit)
        with self._lock:
            self.grouper.restore([inc for inc, _ in incidents])
            for inc, scope in incidents:
                self.scopes[inc.key] = scope
        return len(incidents)

    def stop(self) -> None:
        self._ticker.stop()

    @property
    def tracked(self) -> int:
        """Incidents in the grouping state."""
        return len(self.grouper.incidents)

    def assign(self, refs: Sequence[AlertRef], scope: str) -> FactBatch:
        """Group alerts into incidents; the facts to write (the caller writes them, e.g. in
        the same transaction as the alerts)."""
        with self._lock:
            touched: dict[str, Incident] = {}
            added: list[tuple[str, AlertRef]] = []
            for ref in refs:
                inc = self.grouper.add(ref)
                self.scopes[inc.key] = scope
                touched[inc.key] = inc
                added.append((inc.key, ref))
        return self._facts(list(touched.values()), added)

    def iri(self, key: str) -> str:
        return mint_iri(self.scopes.get(key, "default"), "Incident", key,
                        self.kg.settings.iri_base)

    def _facts(self, incidents: Sequence[Incident],
               added: Sequence[tuple[str, AlertRef]] = ()) -> FactBatch:
        """The incidents' own facts, and the relations of the alerts just ``added`` to
        them (earlier alerts' relations are already in the graph)."""
        src = "reasoning/incidents"
        ents = [Entity(self.iri(inc.key), "Incident", {
            "name": inc.group, "groupKey": inc.group, "startTime": inc.started,
            "incidentStatus": inc.status, "count": len(inc.alerts),
            "ingestScope": self.scopes.get(inc.key, "default")}, src) for inc in incidents]
        rels: dict[tuple[str, str, str], Relation] = {}
        for key, ref in added:
            iri = self.iri(key)
            rels[("partOfIncident", ref.iri, iri)] = Relation("partOfIncident", ref.iri, iri,
                                                              source=src)
            if ref.entity:
                rels[("affects", iri, ref.entity)] = Relation("affects", iri, ref.entity,
                                                              source=src)
        return FactBatch.of(src, ents, rels.values())

    def tick(self) -> list[str]:
        """Analyse every incident that is due now; returns their keys (used by tests)."""
        now = self.clock()
        with self._lock:
            due = [inc for inc in self.grouper.incidents.values()
                   if should_analyse(inc, now, self.grouper.config)[0]]
        done = []
        self.due = len(due)
        for inc in due:
            self.due -= 1
            firing = sorted((a for a in inc.alerts.values() if a.status == "firing"),
                            key=lambda a: (a.starts_at, a.iri))[-MAX_SYMPTOMS:]
            symptoms = [Symptom(a.entity, a.name, a.starts_at, a.iri, a.definition,
                                dict(a.labels)) for a in firing]
            if not symptoms:
                continue
            # the analysis holds the snapshot, not the writer's lock: alerts keep landing
            # meanwhile (they join the next analysis); only its result is a write
            with self.kg.holding_snapshot(), self.timed():
                result = self.rca.analyse(symptoms)
            with self.guard:
                self.rca.store(result, scope=self.scopes.get(inc.key, "default"),
                               incident=self.iri(inc.key))
                inc.analysed_at, inc.analysed_alerts = now, len(inc.alerts)
                self.kg.write(self._facts([inc]))
            done.append(inc.key)
        return done


def incident_json(kg: KnowledgeGraph, incident_id: str | None = None, limit: int = 100
                  ) -> list[dict[str, Any]]:
    """Incidents (newest first) with their latest RCA result, read from the graph;
    ``incident_id`` is the last segment of an incident's IRI (or the whole IRI)."""
    where = "WHERE i.kind = 'Incident'"
    params: dict[str, Any] = {}
    if incident_id:
        where += " AND (i.iri = $id OR i.iri ENDS WITH $suffix)"
        params = {"id": incident_id, "suffix": "/Incident/" + incident_id}
    rows = kg.store.read(
        f"MATCH (i:Entity) {where} RETURN i.iri, i.groupKey, i.startTime, i.incidentStatus, "
        f"i.count ORDER BY i.startTime DESC LIMIT {int(limit)}", params).rows
    out = []
    for i_iri, group, start, status, count in rows:
        res = kg.store.read(
            "MATCH (i:Entity {iri: $iri})-[:hasResult]->(r:Entity) "
            "RETURN r.iri, r.generatedAt, r.summary ORDER BY r.generatedAt DESC LIMIT 1",
            {"iri": i_iri}).rows
        latest = None
        if res:
            r_iri, at, summary = res[0]
            cands = kg.store.read(
                "MATCH (r:Entity {iri: $iri})-[:hasCandidate]->(c:Entity)"
                "-[:candidateEntity]->(x:Entity) RETURN c.rank, x.iri, x.kind, c.score, "
                "c.hypothesis ORDER BY c.rank", {"iri": r_iri}).rows
            latest = {"iri": r_iri, "generatedAt": at.isoformat() if at else None,
                      "summary": summary,
                      "candidates": [{"rank": r, "entity": e, "kind": k, "score": s,
                                      "hypothesis": h} for r, e, k, s, h in cands]}
        out.append({"id": i_iri.rsplit("/", 1)[-1], "iri": i_iri, "groupKey": group,
                    "startTime": start.isoformat() if start else None, "status": status,
                    "alerts": count, "rca": latest})
    return out

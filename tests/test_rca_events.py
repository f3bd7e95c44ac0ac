"""The event index (kg/events.py) answers RCA's store queries from memory: after writes,
updates and retirements, on both backends, it returns what the queries return; the snapshot
journal tells RCA when its compiled rules stay valid; the engine's blast radii match a
breadth-first walk."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import scipy.sparse as sp

from ingest.demo import generate_demo
from kg.facts import Entity, FactBatch, Relation
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from reasoning.rca import EVIDENCE_KINDS, EVIDENCE_QUERY, LOG_COUNTS_QUERY, RCAService
from reasoning.rca.reach import blast_radii, effects_of
from reasoning.rules import PropagationGraph

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
WINDOWS = [(T0 - timedelta(minutes=30), T0 + timedelta(minutes=5)),
           (T0, T0 + timedelta(seconds=95)), (T0 + timedelta(hours=1), T0 + timedelta(hours=2))]


def _iri(kind: str, key: str) -> str:
    return mint_iri("evtest", kind, key)


def _events(targets: list[str]) -> FactBatch:
    """Anomalies with series, log events, alerts with definitions and incidents, causal
    edges: every shape the RCA queries read, some of them with several matches."""
    ents: list[Entity] = [Entity(_iri("AlertDefinition", "high"), "AlertDefinition",
                                 {"name": "High", "expression": "up == 0"}),
                          Entity(_iri("LogTemplate", "oom"), "LogTemplate",
                                 {"name": "oom", "templateText": "out of memory <*>"}),
                          Entity(_iri("Incident", "i1"), "Incident",
                                 {"name": "i1", "startTime": T0})]
    rels: list[Relation] = []
    for i, x in enumerate(targets):
        series, anomaly = _iri("MetricSeries", f"s{i}"), _iri("Anomaly", f"a{i}")
        alert, log = _iri("Alert", f"al{i}"), _iri("LogEvent", f"l{i}")
        counted = _iri("LogEvent", f"c{i}")
        ents += [
            Entity(series, "MetricSeries", {"metricName": "latency_p99", "seriesId": f"s{i}",
                                            "name": f"latency_p99{{i=\"{i}\"}}"}),
            Entity(anomaly, "Anomaly", {"metricName": "latency_p99", "anomalyScore": 4.0 + i,
                                        "direction": "up", "baselineValue": 1.5,
                                        "observedValue": 9.0, "startTime": T0 + timedelta(
                                            seconds=20 * i), "endTime": T0 + timedelta(hours=1)}),
            Entity(alert, "Alert", {"name": "High", "alertStatus": "firing",
                                    "startTime": T0 + timedelta(seconds=30 * i),
                                    "labels": '{"sli": "latency"}', "ingestScope": "evtest",
                                    "fingerprint": f"f{i}"}),
            Entity(log, "LogEvent", {"eventKind": "new-template", "count": 3 + i,
                                     "startTime": T0 - timedelta(minutes=i)}),
            Entity(counted, "LogEvent", {"eventKind": "template-count", "count": 7 + i,
                                         "logLevel": "error",
                                         "startTime": T0 + timedelta(seconds=10 * i)})]
        rels += [Relation("observes", series, x), Relation("detectedIn", anomaly, series),
                 Relation("aboutEntity", anomaly, x), Relation("aboutEntity", alert, x),
                 Relation("instanceOf", alert, _iri("AlertDefinition", "high")),
                 Relation("aboutEntity", log, x), Relation("aboutEntity", counted, x),
                 Relation("hasTemplate", counted, _iri("LogTemplate", "oom")),
                 Relation("instanceOf", log, _iri("LogTemplate", "oom"))]
        if i % 2 == 0:
            rels.append(Relation("partOfIncident", alert, _iri("Incident", "i1")))
    # an event about two entities (rows multiply), causal knowledge between event types
    rels.append(Relation("aboutEntity", _iri("Anomaly", "a0"), targets[-1]))
    oom, high = _iri("LogTemplate", "oom"), _iri("AlertDefinition", "high")
    for key, conf, cause, effect in (("c1", 0.7, oom, high), ("c2", 0.4, high, oom)):
        c = _iri("CausalEdge", key)
        ents.append(Entity(c, "CausalEdge", {"confidence": conf, "name": key}))
        rels += [Relation("causeType", c, cause), Relation("effectType", c, effect)]
    return FactBatch.of("evtest", ents, rels)


def _changes(targets: list[str]) -> list[FactBatch]:
    """Updates and retirements: a moved and a re-scored anomaly, a removed property, a
    resolved alert, a retired series, relation and causal edge, a late alert."""
    retired = T0 + timedelta(hours=3)
    return [
        FactBatch.of("evtest", [
            Entity(_iri("Anomaly", "a1"), "Anomaly", {"startTime": T0 + timedelta(hours=1,
                                                                                minutes=10)}),
            Entity(_iri("Anomaly", "a2"), "Anomaly", {"anomalyScore": 50.0,
                                                      "baselineValue": None}),
            Entity(_iri("Alert", "al3"), "Alert", {"alertStatus": "resolved"}),
        ]),
        FactBatch.of("evtest", [
            Entity(_iri("MetricSeries", "s0"), "MetricSeries", {}, valid_to=retired),
            Entity(_iri("CausalEdge", "c1"), "CausalEdge", {}, valid_to=retired),
            Entity(_iri("Alert", "late"), "Alert", {"name": "High", "alertStatus": "firing",
                                                    "startTime": T0 + timedelta(seconds=45),
                                                    "fingerprint": "late"}),
        ], [Relation("aboutEntity", _iri("Anomaly", "a3"), targets[0],
                     valid_to=retired)]),
    ]


def _key(row: tuple[Any, ...]) -> tuple[str, ...]:
    """A sort key that does not depend on how a backend spells UTC."""
    return tuple(x.isoformat() if isinstance(x, datetime) else repr(x) for x in row)


def _store_rows(kg: KnowledgeGraph, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in kg.store.read(query, params, max_rows=100_000).rows),
                  key=_key)


def _assert_index_matches_store(kg: KnowledgeGraph) -> None:
    events = kg.snapshot.events
    alerts = RCAService._ALERTS
    for t0, t1 in WINDOWS:
        expected = _store_rows(kg, EVIDENCE_QUERY, {"kinds": EVIDENCE_KINDS, "t0": t0, "t1": t1})
        assert sorted(events.evidence_rows(EVIDENCE_KINDS, t0, t1), key=_key) == expected
        assert sorted(events.log_count_rows(t0, t1), key=_key) == _store_rows(
            kg, LOG_COUNTS_QUERY, {"t0": t0, "t1": t1})
        where = "AND a.startTime >= $t0 AND a.startTime <= $t1"
        for scope in (None, "evtest"):
            params: dict[str, Any] = {"t0": t0, "t1": t1}
            if scope:
                params["scope"] = scope
            query = alerts.format(match="", where=where + (
                " AND a.ingestScope = $scope" if scope else ""))
            assert sorted(events.alerts_between(t0, t1, scope), key=_key) == \
                _store_rows(kg, query, params)
    inc = _iri("Incident", "i1")
    assert sorted(events.alerts_of_incident(inc), key=_key) == _store_rows(
        kg, alerts.format(match="-[:partOfIncident]->(i:Entity {iri: $inc})", where=""),
        {"inc": inc})
    series = _store_rows(kg, "MATCH (s:Entity)-[:observes]->(x:Entity) WHERE s.validTo IS NULL "
                             "RETURN x.iri, s.seriesId, s.metricName", {})
    assert sorted((x, sid, m) for x in {r[0] for r in series}
                  for sid, m, _ in events.series_of(x)) == series
    assert events.observed() == {r[0] for r in _store_rows(
        kg, "MATCH (s:Entity)-[:observes]->(x:Entity) WHERE s.validTo IS NULL "
            "RETURN DISTINCT x.iri", {})}
    assert events.causal_edges() == {(a, b): float(c or 0.0) for a, b, c in _store_rows(
        kg, "MATCH (c:Entity)-[:causeType]->(a:Entity) MATCH (c)-[:effectType]->(b:Entity) "
            "WHERE c.validTo IS NULL RETURN a.iri, b.iri, c.confidence", {})}


def test_event_index_answers_the_rca_queries_after_writes_updates_and_retirements(
        kg: KnowledgeGraph) -> None:
    demo = generate_demo(7)
    kg.write(demo.batch)
    targets = sorted({r.start for r in demo.batch.relations if r.type == "routedOver"})[:5]
    assert kg.snapshot.events.watermark == kg.snapshot.watermark  # built with the snapshot
    kg.write(_events(targets))
    _assert_index_matches_store(kg)
    assert kg.snapshot.events.evidence_rows(EVIDENCE_KINDS, *WINDOWS[0])  # not trivially
    for batch in _changes(targets):
        kg.write(batch)
        _assert_index_matches_store(kg)
    # what the changes did: the moved anomaly left the window, the resolved alert is no
    # symptom, the retired series no longer counts as observing, the retired causal edge
    # leaves the other one
    svc = RCAService(kg)
    ev = {e.iri for e in svc.evidence(*WINDOWS[0])}
    assert _iri("Anomaly", "a1") not in ev and _iri("Anomaly", "a2") in ev
    assert _iri("Alert", "al3") not in {s.alert for s in svc.symptoms_in_window(*WINDOWS[0])}
    assert svc.causal_edges() == {(_iri("AlertDefinition", "high"),
                                   _iri("LogTemplate", "oom")): 0.4}
    # a rebuild from a scan of the store gives the same index as the catch-up did
    incremental = kg.snapshot.events
    kg.reindex()
    rebuilt = kg.snapshot.events
    assert rebuilt is not incremental
    for t0, t1 in WINDOWS:
        assert sorted(rebuilt.evidence_rows(EVIDENCE_KINDS, t0, t1), key=_key) == \
            sorted(incremental.evidence_rows(EVIDENCE_KINDS, t0, t1), key=_key)
    assert (rebuilt.props, rebuilt.kinds, rebuilt.retired) == \
        (incremental.props, incremental.kinds, incremental.retired)


def test_fresh_events_keep_the_compiled_rules_and_topology_changes_patch_them(
        kg: KnowledgeGraph) -> None:
    demo = generate_demo(7)
    kg.write(demo.batch)
    svc = RCAService(kg)
    graph = svc.propagation_graph()
    targets = sorted({r.start for r in demo.batch.relations if r.type == "routedOver"})[:3]
    kg.write(_events(targets))  # events only: the same compiled graph, grown
    assert svc.propagation_graph() is graph
    assert graph.W.shape[0] == kg.snapshot.node_count
    routed = {(r.start, r.end) for r in demo.batch.relations if r.type == "routedOver"}
    kg.write(FactBatch.of("evtest", relations=[  # the same relations again: no change
        Relation("routedOver", a, b) for a, b in sorted(routed)[:3]]))
    assert svc.propagation_graph() is graph
    link = next(b for b in sorted({b for _, b in routed}) if (targets[0], b) not in routed)
    kg.write(FactBatch.of("evtest", relations=[Relation("routedOver", targets[0], link)]))
    assert svc.propagation_graph() is not graph  # a rule relation was added
    assert kg.snapshot.touched_since(0) is None  # older than the journal: unknown


def _same_as_a_build(kg: KnowledgeGraph, svc: RCAService) -> None:
    patched = svc.propagation_graph()
    built = PropagationGraph.build(kg.snapshot, kg.onto, svc.rules)
    assert patched.W.shape == built.W.shape
    assert (patched.W != built.W).nnz == 0
    assert patched.rule_of == built.rule_of


def test_topology_churn_patches_the_compiled_rules_like_a_full_build(
        kg: KnowledgeGraph) -> None:
    """New pods and their relations, a retired relation, a retired pod: the patched graph
    equals a compilation from scratch; a class change recompiles."""
    demo = generate_demo(7)
    kg.write(demo.batch)
    svc = RCAService(kg)
    first = svc.propagation_graph()
    runs_on = sorted((r.start, r.end) for r in demo.batch.relations if r.type == "runsOn"
                     and "/Pod/" in r.start)
    pod, node = runs_on[0]
    new_pod = mint_iri("churn", "Pod", "default/web-7f9c")
    kg.write(FactBatch.of("churn", [Entity(new_pod, "Pod", {"name": "web-7f9c"})],
                          [Relation("runsOn", new_pod, node)]))
    _same_as_a_build(kg, svc)
    assert svc.propagation_graph() is not first
    kg.write(FactBatch.of("churn", relations=[
        Relation("runsOn", pod, node, valid_to=T0)]))  # a retired relation
    _same_as_a_build(kg, svc)
    kg.write(FactBatch.of("churn", [Entity(new_pod, "Pod", {"name": "web-7f9c"},
                                           valid_to=T0)]))  # a deleted pod
    _same_as_a_build(kg, svc)
    assert svc.propagation_graph().W[kg.snapshot.index[new_pod]].nnz == 0
    kg.write(FactBatch.of("churn", relations=[Relation("runsOn", pod, node)]))  # back
    _same_as_a_build(kg, svc)
    kg.write(FactBatch.of("churn", [Entity(new_pod, "Deployment", {"name": "web"})]))
    _same_as_a_build(kg, svc)  # a class change: compiled again from scratch


def test_blast_radii_match_a_breadth_first_walk_and_the_cached_transpose_grows() -> None:
    rng = np.random.default_rng(3)
    n = 60
    dense = (rng.random((n, n)) < 0.04) * rng.uniform(0.2, 1.0, (n, n))
    W = sp.csr_matrix(dense)  # W[effect, cause]
    cands = [0, 5, 17, 33, 59]
    radii = blast_radii(W, cands, 3)
    for c in cands:
        seen, queue = {c}, deque([(c, 0)])
        while queue:
            node, d = queue.popleft()
            if d == 3:
                continue
            for effect in np.nonzero(dense[:, node])[0].tolist():
                if effect not in seen:
                    seen.add(effect)
                    queue.append((effect, d + 1))
        assert radii.size(c) == len(seen)
        anomalous = [2, 11, 40, 58]
        assert radii.members(anomalous)[c] == [x for x in anomalous if x in seen]
    first = effects_of(W)
    W.resize((n + 4, n + 4))  # new entities no rule links yet (RCAService grows W so)
    assert effects_of(W) is first and first.shape == (n + 4, n + 4)
    assert blast_radii(W, [n + 3], 3).size(n + 3) == 1

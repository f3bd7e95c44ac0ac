"""RCA on the demo CNC (both backends), propagation rules, incident grouping."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.demo import generate_demo
from kg.errors import ConfigError
from kg.facts import Entity, FactBatch, Relation
from kg.graph import KnowledgeGraph
from ontology import load_ontology, mint_iri
from reasoning.incidents import (
    AlertRef,
    GroupingConfig,
    IncidentGrouper,
    merge_candidates,
    should_analyse,
)
from reasoning.rca import RCAService, Symptom
from reasoning.rules import load_rules

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def demo_kg(kg: KnowledgeGraph):
    demo = generate_demo(7)
    kg.write(demo.batch)
    return kg, demo


def link_fault(kg: KnowledgeGraph, demo) -> tuple[str, list[Symptom]]:
    """A backbone link fails: the deployments routed over it alert, and the link's packet
    loss series shows an anomaly a minute before the first alert."""
    link = sorted({r.end for r in demo.batch.relations if r.type == "routedOver"})[0]
    deps = sorted(r.start for r in demo.batch.relations
                  if r.type == "routedOver" and r.end == link)
    series = mint_iri("demo", "MetricSeries", "loss/" + link.rsplit("/", 1)[1])
    anomaly = mint_iri("demo", "Anomaly", "loss/" + link.rsplit("/", 1)[1] + "/t0")
    kg.write(FactBatch.of("test", [
        Entity(series, "MetricSeries", {"metricName": "packet_loss_ratio", "seriesId": "s1"}),
        Entity(anomaly, "Anomaly", {"metricName": "packet_loss_ratio", "anomalyScore": 12.0,
                                    "direction": "up", "startTime": T0 - timedelta(minutes=1),
                                    "endTime": T0 + timedelta(minutes=4)}),
    ], [Relation("observes", series, link), Relation("detectedIn", anomaly, series),
        Relation("aboutEntity", anomaly, link)]))
    symptoms = [Symptom(d, "ServiceLatencyHigh", T0 + timedelta(seconds=20 * i))
                for i, d in enumerate(deps)]
    return link, symptoms


def test_link_failure_is_the_top_cause_with_valid_evidence_paths(demo_kg) -> None:
    kg, demo = demo_kg
    link, symptoms = link_fault(kg, demo)
    result = RCAService(kg).analyse(symptoms)
    top = result.candidates[0]
    assert top.entity == link and top.kind == "NetworkLink"
    assert top.signals["origin"] > 0 and top.signals["chain"] == 1.0
    assert "link failure" in top.hypothesis and "packet_loss_ratio" in top.hypothesis
    assert top.evidence and top.evidence[0].kind == "Anomaly"
    kinds = top.to_json()["evidenceKinds"]
    assert kinds["errors"]["status"] == "present" and kinds["latency"]["status"] == "missing"
    # the symptoms' own alerts are explained by the link, so none outranks it
    assert all(c.score < top.score for c in result.candidates[1:])
    # every hop of every explanation is a relation that exists in the graph
    for cand in result.candidates:
        for path in cand.paths:
            assert path["entities"][0] in cand.to_json()["component"]
            # ends at the symptom, or at a member of its component (its pod, its service)
            assert path["entities"][-1] == path["symptom"] or path["symptomVia"] == "component"
            keys = [(h["relation"], h["start"], h["end"]) for h in path["hops"]]
            _, found = kg.store.fetch([], keys)
            assert set(found) == set(keys)


def test_rca_is_deterministic_and_stored_as_queryable_facts(demo_kg) -> None:
    kg, demo = demo_kg
    link, symptoms = link_fault(kg, demo)
    svc = RCAService(kg)
    first, second = svc.analyse(symptoms), svc.analyse(list(reversed(symptoms)))
    assert first.to_json()["candidates"] == second.to_json()["candidates"]
    iri = svc.store(first, scope="demo")
    rows = kg.cypher("MATCH (r:Entity {iri: $r})-[:hasCandidate]->(c:Entity)"
                     "-[:candidateEntity]->(x:Entity) WHERE c.rank = 1 RETURN x.iri",
                     {"r": iri}).rows
    assert rows == [[link]]
    sparql = kg.sparql(
        "PREFIX cnc: <https://w3id.org/autocnc/ontology#> "
        "SELECT ?x WHERE { ?r cnc:hasCandidate ?c . ?c cnc:rank 1 ; cnc:candidateEntity ?x }")
    assert sparql.rows == [[link]]
    (hops,) = kg.cypher("MATCH (c:Entity)-[:hasEvidence]->(p:Entity) WHERE c.rank = 1 "
                        "RETURN max(p.hopCount)").rows[0]
    assert hops == 1


def test_unresolved_symptoms_still_get_an_answer_that_says_so(demo_kg) -> None:
    kg, _ = demo_kg
    result = RCAService(kg).analyse([Symptom(None, "KubePodCrashLooping", T0)])
    assert result.candidates == [] and result.unresolved == ["KubePodCrashLooping"]
    assert "unresolved" in result.explanation()


def test_gpu_fault_ranks_its_node_first() -> None:
    onto = load_ontology()
    rules = {r.id: r for r in load_rules(onto)}
    assert rules["gpu-fault-fails-jobs"].relation == "hasAccelerator"


def test_bad_rule_files_name_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {id: x, cause: Pod, effect: Nowhere, relation: runsOn, "
                   "direction: effect-to-cause, weight: 0.5}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: rules\[0\]: effect 'Nowhere'"):
        load_rules(load_ontology(), [bad])
    bad.write_text("rules:\n  - {id: x, cause: Pod, effect: Pod, relation: runsOn, "
                   "direction: sideways, weight: 0.5}\n")
    with pytest.raises(ConfigError, match="direction"):
        load_rules(load_ontology(), [bad])


# -- incidents -----------------------------------------------------------------------------

def ref(i: int, at: datetime, **labels: str) -> AlertRef:
    group_key = labels.pop("group_key", None)
    status = labels.pop("status", "firing")
    return AlertRef(f"urn:alert:{i}", {"alertname": "A", **labels}, at, status, group_key)


def test_grouping_by_group_key_and_by_labels_in_event_time() -> None:
    g = IncidentGrouper(GroupingConfig(window=timedelta(minutes=10)), clock=lambda: T0)
    a = g.add(ref(1, T0, group_key="{}:{alertname=\"A\"}"))
    b = g.add(ref(2, T0 + timedelta(hours=3), group_key="{}:{alertname=\"A\"}"))
    assert a is b  # Alertmanager's group: one incident however far apart
    c = g.add(ref(3, T0, namespace="shop"))
    d = g.add(ref(4, T0 + timedelta(minutes=5), namespace="shop"))
    e = g.add(ref(5, T0 + timedelta(minutes=30), namespace="shop"))
    f = g.add(ref(6, T0, namespace="other"))
    assert c is d and e is not c and f is not c
    g.add(ref(1, T0, group_key="{}:{alertname=\"A\"}", status="resolved"))
    g.add(ref(2, T0, group_key="{}:{alertname=\"A\"}", status="resolved"))
    assert a.status == "resolved"
    again = g.add(ref(7, T0 + timedelta(hours=5), group_key="{}:{alertname=\"A\"}"))
    assert again is not a  # a resolved incident is not reopened


@pytest.mark.parametrize("started, analysed, alerts, analysed_alerts, now, expect", [
    (0, None, 1, 0, 10, (False, "waiting for group_wait")),
    (0, None, 1, 0, 31, (True, "first analysis after group_wait")),
    (0, 40, 2, 2, 400, (False, "no new alerts since the last analysis")),
    (0, 40, 3, 2, 100, (False, "new alerts; waiting for group_interval")),
    (0, 40, 3, 2, 400, (True, "new alerts after group_interval")),
])
def test_should_analyse(started: int, analysed: int | None, alerts: int, analysed_alerts: int,
                        now: int, expect: tuple[bool, str]) -> None:
    g = IncidentGrouper(clock=lambda: T0)
    inc = None
    for i in range(alerts):
        inc = g.add(ref(i, T0 + timedelta(seconds=started), group_key="k"))
    assert inc is not None
    inc.analysed_at = T0 + timedelta(seconds=analysed) if analysed is not None else None
    inc.analysed_alerts = analysed_alerts
    assert should_analyse(inc, T0 + timedelta(seconds=now), g.config) == expect


def test_merge_is_a_recorded_separate_step() -> None:
    merges = merge_candidates({"i1": ["urn:link"], "i2": ["urn:link", "urn:x"],
                               "i3": ["urn:y"]})
    assert [(m.into, m.merged) for m in merges] == [("i1", "i2")]
    assert "urn:link" in merges[0].reason


# -- HTTP: /v1/rca, the receiver's incidents ------------------------------------------------

def test_rca_endpoint_and_incidents_from_the_webhook(tmp_path: Path) -> None:
    import subprocess

    from fastapi.testclient import TestClient

    from api.app import create_app
    from kg.config import load_settings
    from tests.test_api_cli import AUTOCNC

    settings = load_settings(data_dir=tmp_path / "data", store="embedded")
    demo = generate_demo(7)
    app = create_app(settings)
    with TestClient(app) as client:
        client.post("/v1/facts", json=demo.batch.to_json()).raise_for_status()
        kg = None  # the server owns the store; everything goes over HTTP
        link = sorted({r.end for r in demo.batch.relations if r.type == "routedOver"})[0]
        deps = sorted(r.start for r in demo.batch.relations
                      if r.type == "routedOver" and r.end == link)
        scope = deps[0].split("/id/")[1].rsplit("/", 2)[0]
        names = [d.rsplit("%2F", 1)[1] for d in deps if d.startswith(
            f"https://w3id.org/autocnc/id/{scope}/")]
        alerts = [{"status": "firing", "startsAt": (T0 + timedelta(seconds=i)).isoformat(),
                   "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": f"f{i}",
                   "labels": {"alertname": "KubeDeploymentReplicasMismatch",
                              "namespace": "default", "deployment": n},
                   "annotations": {}} for i, n in enumerate(names)]
        direct = client.post("/v1/rca", json={"alerts": alerts, "scope": scope}).json()
        assert direct["candidates"] and direct["unresolved"] == []
        assert direct["candidates"][0]["entity"] in {link, *deps}
        assert client.post("/v1/rca", json={"alerts": alerts}).status_code == 422
        payload = {"version": "4", "groupKey": "{}:{alertname=\"x\"}", "status": "firing",
                   "receiver": "r", "groupLabels": {}, "commonLabels": {},
                   "commonAnnotations": {}, "externalURL": "", "alerts": alerts}
        assert client.post("/v1/alerts/alertmanager", json=payload,
                           params={"scope": scope}).status_code == 200
        assert app.state.incidents.tick()  # due: its alerts are older than group_wait
        incidents = client.get("/v1/incidents").json()
        assert len(incidents) == 1 and incidents[0]["alerts"] == len(alerts)
        assert incidents[0]["rca"]["candidates"][0]["rank"] == 1
        one = client.get(f"/v1/incidents/{incidents[0]['id']}").json()
        assert one["iri"] == incidents[0]["iri"]
        assert client.get("/v1/incidents/nope").status_code == 404
        by_incident = client.post("/v1/rca", json={"incident": one["iri"]}).json()
        assert by_incident["candidates"][0]["entity"] == \
            incidents[0]["rca"]["candidates"][0]["entity"]
        assert kg is None
    out = subprocess.run([AUTOCNC, "rca", "--window", T0.isoformat(),
                          (T0 + timedelta(minutes=5)).isoformat(), "--format", "json"],
                         env={**__import__("os").environ,
                              "AUTOCNC_DATA_DIR": str(tmp_path / "data")},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert __import__("json").loads(out.stdout)["candidates"]


def test_incident_grouping_survives_a_restart(demo_kg) -> None:
    """Alerts that arrive after a restart join the incident their group had before it, and
    an analysed incident is not analysed again until new alerts join it."""
    import threading

    from api.incident_worker import IncidentWorker

    kg, demo = demo_kg
    _, symptoms = link_fault(kg, demo)
    now = [T0 + timedelta(minutes=2)]
    clock = lambda: now[0]  # noqa: E731

    def alerts(first: int, n: int) -> list[AlertRef]:
        """Alerts on the symptom's entity, written to the graph like the receiver does."""
        s = symptoms[0]
        batch = [AlertRef(mint_iri("demo/net", "Alert", f"a{i}"), {"alertname": s.name},
                          s.at + timedelta(seconds=10 * i), group_key='{}:{team="net"}',
                          entity=s.entity) for i in range(first, first + n)]
        kg.write(FactBatch.of("test", [Entity(r.iri, "Alert", {
            "name": r.name, "startTime": r.starts_at, "alertStatus": "firing",
            "fingerprint": r.iri[-8:], "groupKey": r.group_key,
            "labels": json.dumps(dict(r.labels))}) for r in batch],
            [Relation("aboutEntity", r.iri, str(r.entity)) for r in batch]))
        return batch

    first = IncidentWorker(kg, threading.Lock(), clock=clock)
    kg.write(first.assign(alerts(0, 3), "demo/net"))
    assert first.tick()  # analysed once group_wait has passed
    (key,) = first.grouper.incidents

    after = IncidentWorker(kg, threading.Lock(), clock=clock)  # the restarted server's
    assert after.restore() == 1
    inc = after.grouper.incidents[key]
    assert len(inc.alerts) == 3 and inc.analysed_at is not None
    assert after.scopes[key] == "demo/net" and after.iri(key) == first.iri(key)
    assert after.tick() == []  # nothing new since its analysis
    kg.write(after.assign(alerts(3, 1), "demo/net"))
    assert list(after.grouper.incidents) == [key] and len(inc.alerts) == 4


def test_rca_limit_and_reference_over_http(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from api.app import create_app
    from kg.config import load_settings

    demo = generate_demo(7)
    app = create_app(load_settings(data_dir=tmp_path / "data", store="embedded"))
    link = sorted({r.end for r in demo.batch.relations if r.type == "routedOver"})[0]
    deps = sorted(r.start for r in demo.batch.relations
                  if r.type == "routedOver" and r.end == link)
    scope = deps[0].split("/id/")[1].rsplit("/", 2)[0]
    name = deps[0].rsplit("%2F", 1)[1]
    alerts = [{"labels": {"alertname": "Down", "namespace": "default", "deployment": name},
               "startsAt": T0.isoformat()}]
    with TestClient(app) as client:
        client.post("/v1/facts", json=demo.batch.to_json()).raise_for_status()
        every = client.post("/v1/rca", json={"alerts": alerts, "scope": scope,
                                             "limit": "all"}).json()
        assert every["totalCandidates"] == len(every["candidates"]) > 2
        two = client.post("/v1/rca", json={"alerts": alerts, "scope": scope, "limit": 2}).json()
        assert [c["entity"] for c in two["candidates"]] == \
            [c["entity"] for c in every["candidates"][:2]]
        assert two["totalCandidates"] == every["totalCandidates"]
        assert every["evidence"]["reference"] == {"trailingSeconds": 3600.0}
        quiet = {"start": (T0 - timedelta(hours=3)).isoformat(),
                 "end": (T0 - timedelta(hours=2)).isoformat()}
        explicit = client.post("/v1/rca", json={"alerts": alerts, "scope": scope,
                                                "reference": quiet}).json()
        assert explicit["evidence"]["reference"]["start"].startswith(
            (T0 - timedelta(hours=3)).isoformat()[:16])
        for bad in ({"limit": 0}, {"limit": "some"},
                    {"reference": {"start": quiet["end"], "end": quiet["start"]}}):
            r = client.post("/v1/rca", json={"alerts": alerts, "scope": scope, **bad})
            assert r.status_code == 422, bad

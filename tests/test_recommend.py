"""Policies as data, runbook/policy recommendation and learning from feedback, both backends,
on the real prometheus-operator runbooks and kube-prometheus rules."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.recommend_routes import add_recommend_routes
from ingest import inputs_for, run_ingest
from kg.config import load_settings
from kg.facts import Entity, FactBatch, Relation
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from reasoning.recommend import (
    BadQuery,
    FeedbackInput,
    PolicyError,
    PolicyScopes,
    Recommender,
    RecommendWeights,
    from_alerts,
    from_incident,
    from_text,
    load_policies,
)
from reasoning.recommend.policies import POLICY_DIR
from reasoning.recommend.ranker import DEFAULT_WEIGHTS
from tests.conftest import SHARED_DATA

SCOPE = "kube-prometheus"
RUNBOOKS = SHARED_DATA / "runbooks"
RULES = SHARED_DATA / "alert-rules" / "kube-prometheus" / \
    "kubernetesControlPlane-prometheusRule.yaml"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def plan(name: str, folder: str = "kubernetes") -> str:
    """A runbook plan: keyed by its path (folder and file stem)."""
    return mint_iri(SCOPE, "OperationPlan", f"{folder}/{name}")


def policy(pid: str) -> str:
    return mint_iri(SCOPE, "RemediationPolicy", pid)


def knowledge(kg: KnowledgeGraph, runbooks: Path = RUNBOOKS / "kubernetes") -> None:
    """The Kubernetes runbooks, kube-prometheus' Kubernetes rules, the example policies."""
    run_ingest(kg, "runbooks", inputs_for("runbooks", [str(runbooks)]), scope=SCOPE,
               options={"embed": False})
    run_ingest(kg, "alerts", inputs_for("alerts", [str(RULES)]), scope=SCOPE)
    load_policies(kg, scopes=PolicyScopes(SCOPE))


def names(result: Any) -> list[str]:
    return [r.item.name for r in result.recommendations]


CRASHLOOP = {"labels": {"alertname": "KubePodCrashLooping", "namespace": "shop",
                        "pod": "cart-5d8f9c7b6-x2xkq", "container": "cart",
                        "severity": "warning"},
             "annotations": {"summary": "Pod is crash looping.",
                             "description": "Pod shop/cart-5d8f9c7b6-x2xkq (cart) is in "
                                            "waiting state (reason: \"CrashLoopBackOff\")."}}


# -- policies --------------------------------------------------------------------------------

def test_policies_are_linked_facts_validated_and_retired(kg: KnowledgeGraph,
                                                         tmp_path: Path) -> None:
    knowledge(kg)
    rows = kg.cypher("MATCH (p:Entity)-[:appliesTo]->(d:Entity) WHERE p.iri = $p "
                     "RETURN d.name", {"p": policy("restart-crashlooping-pod")}).rows
    assert rows == [["KubePodCrashLooping"]]
    chain = kg.cypher(
        "MATCH (p:Entity)-[:usesPlan]->(a:Entity)-[:derivedFrom]->(r:Entity), "
        "(a)-[:hasStep]->(s:Entity)-[:stepAction]->(t:Entity), "
        "(a)-[:hasPostCondition]->(c:Entity) WHERE p.iri = $p "
        "RETURN r.iri, s.stepOrder, t.name, c.comparator ORDER BY s.stepOrder",
        {"p": policy("restart-crashlooping-pod")}).rows
    assert [r[1:3] for r in chain] == [[1, "Collect diagnostics"], [2, "Restart pod"]]
    assert chain[0][0] == plan("KubePodCrashLooping") and chain[0][3] == "=="
    guards = kg.cypher("MATCH (p:Entity)-[:guardedBy]->(g:Entity) WHERE p.iri = $p "
                       "RETURN g.guardType, g.maxExecutions ORDER BY g.guardType",
                       {"p": policy("restart-crashlooping-pod")}).rows
    assert guards == [["blastRadius", None], ["denyList", None], ["frequency", 3]]
    # the collect step carries out step 2 of the runbook
    step = mint_iri(SCOPE, "PlanStep", "kubernetes/KubePodCrashLooping/2")
    assert kg.cypher("MATCH (s:Entity)-[:derivedFrom]->(r:Entity) WHERE r.iri = $r "
                     "RETURN count(s)", {"r": step}).rows == [[1]]
    again = load_policies(kg, scopes=PolicyScopes(SCOPE))
    assert (again.created, again.updated, again.retired) == (0, 0, 0)

    text = (POLICY_DIR / "kubernetes.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text.replace("autonomyLevel: L3", "autonomyLevel: L9"))
    (tmp_path / "b.yaml").write_text(text.replace("action: restart-pod",
                                                  "action: reboot-universe")
                                     .replace("id: ", "id: b-"))
    with pytest.raises(PolicyError) as err:
        load_policies(kg, [POLICY_DIR / "actions.yaml", tmp_path], scopes=PolicyScopes(SCOPE))
    assert {(Path(f).name, p) for f, p, _ in err.value.problems} == {
        ("a.yaml", "/policies/0/autonomyLevel"), ("b.yaml", "/policies/0/action/steps/1/action")}
    assert kg.cypher("MATCH (p:Entity) WHERE 'RemediationPolicy' IN p.types "
                     "RETURN count(p)").rows == [[5]]  # nothing of them was written

    report = load_policies(kg, [POLICY_DIR / "actions.yaml", POLICY_DIR / "kubernetes.yaml"],
                           scopes=PolicyScopes(SCOPE))
    assert report.retired > 0
    live = kg.cypher("MATCH (p:Entity) WHERE 'RemediationPolicy' IN p.types AND "
                     "p.validTo IS NULL RETURN p.name").rows
    assert len(live) == 4 and ["Reroute traffic around a degraded link"] not in live


# -- ranking ---------------------------------------------------------------------------------

def test_alert_ranks_its_runbook_and_policy_with_reasons(kg: KnowledgeGraph) -> None:
    knowledge(kg)
    rec = Recommender(kg, embed=False)
    res = rec.recommend(from_alerts(CRASHLOOP))
    top = res.recommendations[:2]
    assert {r.item.iri for r in top} == {plan("KubePodCrashLooping"),
                                         policy("restart-crashlooping-pod")}
    runbook = next(r for r in top if r.item.kind == "runbook")
    assert {"signal": "alertDefinition", "alert": "KubePodCrashLooping",
            "definition": mint_iri(SCOPE, "AlertDefinition", "KubePodCrashLooping"),
            "relation": "mitigates"} in runbook.reasons
    pol = next(r for r in top if r.item.kind == "policy").to_json(1)["policy"]
    restart = pol["steps"][1]
    assert restart["parameters"] == {"namespace": "shop", "pod": "cart-5d8f9c7b6-x2xkq"}
    assert {g["guardType"] for g in pol["guards"]} == {"frequency", "denyList", "blastRadius"}

    # runbook_url is never read: pointing it elsewhere changes nothing
    lying = {**CRASHLOOP, "annotations": {**CRASHLOOP["annotations"], "runbook_url":
             "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubejobfailed"}}
    assert names(rec.recommend(from_alerts(lying))) == names(res)
    # the restart policy's condition excludes kube-system
    system = {**CRASHLOOP, "labels": {**CRASHLOOP["labels"], "namespace": "kube-system"}}
    assert "Restart a crash-looping pod" not in names(rec.recommend(from_alerts(system)))
    # without its name, the alert's words still find the runbook
    anonymous = {"labels": {"severity": "warning"}, "annotations": CRASHLOOP["annotations"]}
    assert names(rec.recommend(from_alerts(anonymous), kinds=("runbook",)))[0] == \
        "KubePodCrashLooping"
    with pytest.raises(BadQuery, match="alert/labels"):
        from_alerts({"labels": ["not", "a", "map"]})


def test_ranking_changes_after_feedback_and_is_learnt_from_stored_facts(
        kg: KnowledgeGraph) -> None:
    knowledge(kg)
    rec = Recommender(kg, embed=False)
    alert = {"labels": {"alertname": "ShopReplicasLow", "namespace": "shop"},
             "annotations": {"summary": "Deployment has not matched the expected number of "
                                        "replicas."}}
    before = names(rec.recommend(from_alerts(alert), kinds=("runbook",)))
    first, second = before[0], before[1]
    assert first == "KubeDeploymentReplicasMismatch"
    for ok, target in ((False, first), (False, first), (True, second), (True, second),
                       (True, second)):
        rec.feedback(FeedbackInput("recommendation", plan(target), ok, agent="alice",
                                   context=("ShopReplicasLow",), scope=SCOPE))
    after = rec.recommend(from_alerts(alert), kinds=("runbook",))
    assert names(after)[0] == second and names(after).index(first) > 0
    learnt = next(r for r in after.recommendations if r.item.name == second)
    assert {"signal": "successRate", "rate": pytest.approx(0.8, abs=0.05), "successes": 3,
            "failures": 0, "context": "ShopReplicasLow"} in [
        {**x, "rate": pytest.approx(0.8, abs=0.05)} if x["signal"] == "successRate" else x
        for x in learnt.reasons]
    stored = kg.cypher("MATCH (f:Entity)-[:givenBy]->(a:Entity) WHERE f.kind = 'Feedback' "
                       "RETURN f.method, f.accepted, a.name").rows
    assert len(stored) == 5 and {tuple(r) for r in stored} == {
        ("recommendation", False, "alice"), ("recommendation", True, "alice")}
    # a fresh recommender learns the same from the stored facts
    fresh = Recommender(kg, embed=False)
    assert names(fresh.recommend(from_alerts(alert), kinds=("runbook",))) == names(after)
    # another alert keeps the text order closer: the context record does not apply
    other = {**alert, "labels": {"alertname": "SomethingElse"}}
    assert names(fresh.recommend(from_alerts(other), kinds=("runbook",)))[0] in (first,
                                                                                 second)


def test_incident_recommendation_follows_graph_paths_and_metrics(kg: KnowledgeGraph) -> None:
    knowledge(kg)
    ns = mint_iri("shop", "Namespace", "shop")
    dep = mint_iri("shop", "Deployment", "shop/cart")
    pod = mint_iri("shop", "Pod", "shop/cart-5d8f9c7b6-x2xkq")
    alert = mint_iri("shop", "Alert", "f1/2026-03-01T12:00:00Z")
    incident = mint_iri("shop", "Incident", "g1")
    anomaly = mint_iri("shop", "Anomaly", "waiting/cart")
    kg.write(FactBatch.of("test", [
        Entity(ns, "Namespace", {"name": "shop"}),
        Entity(dep, "Deployment", {"name": "cart"}),
        Entity(pod, "Pod", {"name": "cart-5d8f9c7b6-x2xkq"}),
        Entity(alert, "Alert", {"name": "CartUnhealthy", "startTime": T0, "fingerprint": "f1",
                                "alertStatus": "firing",
                                "summary": "cart keeps restarting"}),
        Entity(incident, "Incident", {"name": "g1", "startTime": T0}),
        Entity(anomaly, "Anomaly", {"metricName": "kube_pod_container_status_waiting_reason",
                                    "anomalyScore": 9.0, "startTime": T0
                                    - timedelta(minutes=2)}),
    ], [Relation("inNamespace", dep, ns), Relation("manages", dep, pod),
        Relation("aboutEntity", alert, pod), Relation("partOfIncident", alert, incident),
        Relation("affects", incident, pod), Relation("aboutEntity", anomaly, pod)]))
    q = from_incident(kg, incident)
    assert q.alert_names == ["CartUnhealthy"] and "Pod" in q.entity_types
    assert q.metrics == {"kube_pod_container_status_waiting_reason"}
    # metrics and entity types are off by default (they pull nameless alerts towards
    # sibling runbooks); an incident with anomalies is where they are meant to be set
    weights = RecommendWeights({**DEFAULT_WEIGHTS, "entityTypes": 0.2, "metrics": 0.3})
    res = Recommender(kg, weights, embed=False).recommend(q, kinds=("runbook",))
    top = res.recommendations[0]
    assert top.item.name == "KubePodCrashLooping"
    assert {"signal": "metrics",
            "shared": ["kube_pod_container_status_waiting_reason"]} in top.reasons
    paths = [r["path"] for r in top.reasons if r["signal"] == "entityTypes"]
    assert [incident, pod, "Pod", top.item.iri] in paths
    with pytest.raises(Exception, match="no incident"):
        from_incident(kg, mint_iri("shop", "Incident", "missing"))


# -- HTTP ------------------------------------------------------------------------------------

@pytest.fixture
def client(kg: KnowledgeGraph) -> Iterator[TestClient]:
    knowledge(kg)
    app = FastAPI()
    add_recommend_routes(app, lambda: kg, lambda: None, threading.Lock())
    with TestClient(app) as c:
        yield c


def test_http_recommendations_feedback_and_policies(client: TestClient,
                                                    kg: KnowledgeGraph) -> None:
    body = client.post("/v1/recommendations", json={
        "alert": {"version": "4", "alerts": [CRASHLOOP]}, "kinds": ["runbook"]}).json()
    first = body["recommendations"][0]
    assert first["name"] == "KubePodCrashLooping" and first["contributions"]["alertDefinition"]
    assert body["query"]["alertNames"] == ["KubePodCrashLooping"]
    assert client.post("/v1/recommendations", json={"text": "x", "incident": "y"}
                       ).status_code == 422
    bad = client.post("/v1/recommendations", json={"alert": {"alerts": [{"labels": 3}]}})
    assert bad.status_code == 422 and "alert/alerts/0/labels" in bad.json()["detail"]
    assert client.post("/v1/recommendations", json={
        "incident": mint_iri("x", "Incident", "nope")}).status_code == 404

    took = []
    for i in range(44):  # the catalogue and query vectors are kept: answers are fast
        t = time.perf_counter()
        r = client.post("/v1/recommendations", json={"text": f"pods crash looping {i % 4}"})
        took.append(time.perf_counter() - t)
        assert r.status_code == 200
    assert np.median(took[4:]) < 0.05  # (bench/recommend_runbooks.py measures p99)

    fb = client.post("/v1/feedback", json={"recommendation": first["iri"], "succeeded": True,
                                           "context": ["KubePodCrashLooping"]})
    assert fb.status_code == 200 and fb.json()["context"] == ["KubePodCrashLooping"], fb.text
    assert client.post("/v1/feedback", json={"recommendation": first["iri"]}
                       ).status_code == 422
    assert client.post("/v1/feedback", json={
        "rootCause": mint_iri("x", "Pod", "p"), "incident": mint_iri("x", "Incident", "i")}
        ).status_code == 404
    again = client.post("/v1/recommendations", json={
        "alert": CRASHLOOP, "kinds": ["runbook"]}).json()["recommendations"][0]
    # one success here: the context rate shrinks to the overall rate 2/3 (Beta(1, 1) prior)
    assert again["signals"]["successRate"] == pytest.approx((1 + 2 * 2 / 3) / 3, abs=1e-4)

    bad_policy = client.post("/v1/policies?scope=ops", content="formatVersion: 1\npolicies:\n"
                             "  - {id: p, name: p}\n",
                             headers={"Content-Type": "application/yaml"})
    assert bad_policy.status_code == 422
    assert {"/policies/0/description", "/policies/0/event", "/policies/0/action"} <= {
        p["pointer"] for p in bad_policy.json()["detail"]["problems"]}
    ok = client.post(f"/v1/policies?scope=ops&runbooks_scope={SCOPE}",
                     content=(POLICY_DIR / "actions.yaml").read_text(),
                     headers={"Content-Type": "application/yaml"})
    assert ok.status_code == 200 and ok.json()["action_types"] == 7
    assert kg.cypher("MATCH (a:Entity) WHERE 'ActionType' IN a.types AND "
                     "a.ingestScope = 'ops' RETURN count(a)").rows == [[7]]


# -- semantic similarity (the offline sentence model; embedded store only) ---------------------

def test_semantic_similarity_finds_runbooks_without_shared_words(tmp_path: Path) -> None:
    kg = KnowledgeGraph.open(load_settings(data_dir=tmp_path / "d", store="embedded"))
    try:
        run_ingest(kg, "runbooks", inputs_for("runbooks", [str(RUNBOOKS / "node")]),
                   scope=SCOPE)
        rec = Recommender(kg)
        res = rec.recommend(from_text("the disk of the host is nearly full"))
        assert res.recommendations[0].item.name.startswith("NodeFilesystem")
        assert res.recommendations[0].signals["semantic"] > 0.3
        lexical_only = rec.recommend(from_text("the disk of the host is nearly full"),
                                     weights=rec.weights.without("semantic"))
        assert lexical_only.recommendations[0].signals["semantic"] > 0  # computed, not used
        assert "semantic" not in lexical_only.to_json()["recommendations"][0][
            "contributions"]
    finally:
        kg.close()


# -- CLI (the commands the `autocnc` app registers; embedded store) -----------------------------

def test_cli_recommend_feedback_policies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    import json

    import typer
    from typer.testing import CliRunner

    from api.recommend_cli import feedback, policies, recommend, train

    monkeypatch.setenv("AUTOCNC_DATA_DIR", str(tmp_path / "d"))
    kg = KnowledgeGraph.open(load_settings(data_dir=tmp_path / "d", store="embedded"))
    try:
        run_ingest(kg, "runbooks", inputs_for("runbooks", [str(RUNBOOKS / "kubernetes")]),
                   scope=SCOPE, options={"embed": False})
    finally:
        kg.close()
    app = typer.Typer()
    for command in (recommend, feedback, policies, train):
        app.command()(command)
    runner = CliRunner()
    loaded = runner.invoke(app, ["policies", "--scope", SCOPE, "--json"])
    assert loaded.exit_code == 0, loaded.output
    assert json.loads(loaded.stdout)["policies"] == 5
    out = runner.invoke(app, ["recommend", "pods are crash looping", "--kind", "runbook",
                              "--json"])
    assert out.exit_code == 0, out.output
    answer = json.loads(out.stdout)["recommendations"][0]
    assert answer["name"] == "KubePodCrashLooping"
    fb = runner.invoke(app, ["feedback", "--recommendation", answer["iri"], "--failed"])
    assert fb.exit_code == 0 and "stored" in fb.stdout
    again = json.loads(runner.invoke(app, ["recommend", "pods are crash looping", "--kind",
                                           "runbook", "--json"]).stdout)
    assert again["recommendations"][0]["signals"]["successRate"] == pytest.approx(1 / 3, abs=1e-3)
    skipped = runner.invoke(app, ["train", "--model", "gnn"])
    assert skipped.exit_code == 0 and "skipped" in skipped.output

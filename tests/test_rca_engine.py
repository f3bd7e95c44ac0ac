"""The RCA engine's signals and the weight fitting, on small call graphs; and one incident
end to end through the ingest path and RCAService (both backends)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from ingest import run_ingest
from ingest.base import Input
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from reasoning.rca import RCAService
from reasoning.rca.engine import (
    SIGNALS,
    Candidate,
    Evidence,
    RCAConfig,
    Symptom,
    Weights,
    analyse,
    metric_weight,
    rank_of,
    timeliness,
)
from reasoning.rca.train import Example, fit_weights, rank_with
from reasoning.rules import PropagationGraph, PropagationRule

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULE = PropagationRule("calls", "Resource", "Resource", "calls", "effect-to-cause", 0.8,
                       "saturated or slow upstream")
# front calls a, m (a leaf mirroring a) and y; a calls b; b calls c; y calls x
CALLS = [("front", "a"), ("front", "m"), ("front", "y"), ("a", "b"), ("b", "c"), ("y", "x")]


def graph(calls: list[tuple[str, str]] = CALLS) -> tuple[PropagationGraph, list[str]]:
    names = sorted({n for edge in calls for n in edge})
    ix = {n: i for i, n in enumerate(names)}
    keys = [(ix[caller], ix[callee]) for caller, callee in calls]  # W[effect, cause]
    W = sp.csr_matrix(([RULE.weight] * len(keys), ([k[0] for k in keys], [k[1] for k in keys])),
                      shape=(len(names), len(names)))
    return PropagationGraph(W, {k: (0, "calls") for k in keys}, [RULE], 0), names


def anomaly(entity: str, z: float, lag_s: float = 0.0, metric: str = "latency",
            direction: str = "up", stat: str = "Average") -> Evidence:
    return Evidence(entity, "Anomaly", T0 + timedelta(seconds=lag_s),
                    f"urn:anomaly:{entity}:{metric}:{stat}:{lag_s}", z, metric,
                    direction=direction, series=f'{metric}{{service="{entity}",stat="{stat}"}}')


def rank(evidence: list[Evidence], symptom: Symptom | None = None,
         calls: list[tuple[str, str]] = CALLS, **cfg: Any) -> list[Candidate]:
    g, names = graph(calls)
    sym = symptom or Symptom("front", "SLOViolation", T0)
    return analyse(g, names, ["Service"] * len(names), {n: i for i, n in enumerate(names)},
                   [sym], evidence, Weights(), None, RCAConfig(max_candidates=100, **cfg))


def by_entity(cands: list[Candidate]) -> dict[str, Candidate]:
    return {c.entity: c for c in cands}


# -- evidence -------------------------------------------------------------------------------

def test_only_the_harmful_direction_of_a_known_metric_is_evidence() -> None:
    cfg = RCAConfig(other_metrics=0.25)
    assert metric_weight(anomaly("a", 9, metric="latency"), cfg) == 1.0
    assert metric_weight(anomaly("a", 9, metric="latency", direction="down"), cfg) == 0.0
    assert metric_weight(anomaly("a", 9, metric="availability", direction="down"), cfg) == 1.0
    assert metric_weight(anomaly("a", 9, metric="http_errors_total"), cfg) == 1.0
    assert metric_weight(anomaly("a", 9, metric="requests"), cfg) == 0.25  # no known direction


def test_timeliness_favours_onsets_just_before_the_symptom() -> None:
    cfg = RCAConfig()
    assert timeliness(0, cfg) == timeliness(-cfg.onset_before_s, cfg) == 1.0
    assert timeliness(-cfg.onset_before_s - cfg.onset_scale_s, cfg) == pytest.approx(math.exp(-1))
    assert timeliness(cfg.temporal_scale_s, cfg) == pytest.approx(math.exp(-1))


# -- signals --------------------------------------------------------------------------------

def test_the_deepest_anomalous_entity_of_an_anomalous_chain_ranks_first() -> None:
    cands = rank([anomaly("front", 12), anomaly("a", 40), anomaly("b", 30),
                  anomaly("m", 40)])
    assert cands[0].entity == "b"
    sig = by_entity(cands)
    assert sig["b"].signals["root"] > 0.8 and sig["a"].signals["root"] < 0.3
    assert sig["c"].signals["anomaly"] == 0.0 and sig["c"].signals["impact"] > 0
    # every contribution is the weight times the signal, and they sum to the score
    top = cands[0]
    assert sum(top.contributions.values()) == pytest.approx(top.score)
    assert top.contributions["root"] == pytest.approx(Weights().values["root"]
                                                      * top.signals["root"])
    assert "anomalous latency" in top.hypothesis


def test_a_cause_explains_only_when_its_anomaly_did_not_start_later() -> None:
    before = by_entity(rank([anomaly("front", 12), anomaly("a", 30, lag_s=-60),
                             anomaly("b", 30, lag_s=-120)]))
    after = by_entity(rank([anomaly("front", 12), anomaly("a", 30, lag_s=-60),
                            anomaly("b", 30, lag_s=240)]))
    assert before["a"].signals["root"] == 0.0  # explained by b, which started first
    assert after["a"].signals["root"] > 0.9  # b started after a: it cannot explain a


def test_a_strong_anomaly_off_the_anomalous_chain_or_predating_the_incident_counts_less(
        ) -> None:
    cands = rank([anomaly("front", 12), anomaly("a", 20), anomaly("x", 400),
                  anomaly("m", 400, lag_s=-1800)])
    sig = by_entity(cands)
    assert cands[0].entity == "a"
    assert sig["x"].signals["path"] == pytest.approx(RCAConfig().path_floor)  # y is quiet
    assert sig["m"].signals["temporal"] < 0.01  # began half an hour before the symptom


def test_the_symptom_metric_named_by_the_alert_links_the_chain() -> None:
    evidence = [anomaly("front", 12), anomaly("a", 8),
                anomaly("m", 30, metric="availability", direction="down")]
    plain = by_entity(rank(evidence))
    named = by_entity(rank(evidence, Symptom("front", "SLOViolation", T0,
                                             labels={"sli": "availability"})))
    assert plain["m"].signals["path"] < 0.1  # the symptom shows latency, not availability
    assert named["m"].signals["path"] == 1.0


def test_no_evidence_leaves_the_topology_prior_out() -> None:
    cands = rank([])
    assert all(c.signals["topology"] == 0.0 and c.signals["anomaly"] == 0.0 for c in cands)
    assert cands[0].entity == "front"  # propagation alone: the symptom explains itself


# -- fitting and scoring ----------------------------------------------------------------------

def example(truth_root: float, other_root: float, seed: int) -> Example:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(6, len(SIGNALS)))
    x[:, SIGNALS.index("coverage")] = 1.0  # constant: nothing to learn from
    x[:, SIGNALS.index("root")] = other_root
    x[2, SIGNALS.index("root")] = truth_root
    return Example(tuple(f"e{i}" for i in range(6)), x, 2)


def test_fit_finds_the_informative_signal_with_non_negative_weights() -> None:
    train = [example(0.9, 0.1, s) for s in range(12)]
    w = fit_weights(train)
    assert all(v >= 0 for v in w.values.values())
    assert w.values["root"] == max(w.values.values()) and w.values["coverage"] == 0.0
    assert all(rank_with(e, w) == 1 for e in train)
    assert fit_weights(train, exclude=["root"]).values["root"] == 0.0


def test_ties_count_against_the_truth() -> None:
    tied = Example(("a", "b", "c"), np.ones((3, len(SIGNALS))), 0)
    assert rank_with(tied, Weights()) == 3
    cands = [Candidate(e, "Service", 1.0, {}, {}, "", [], []) for e in ("a", "b")]
    assert rank_of(cands, "a") == 2 and rank_of(cands, "zz") is None


def test_weights_round_trip_and_old_files_load(tmp_path: Path) -> None:
    w = Weights({s: float(i) for i, s in enumerate(SIGNALS)}, "fitted")
    w.save(tmp_path / "w.json", fittedOn="unit test")
    again = Weights.load(tmp_path / "w.json")
    assert again.values == w.values
    assert json.loads((tmp_path / "w.json").read_text())["fittedOn"] == "unit test"
    (tmp_path / "old.json").write_text(json.dumps({"weights": {"root": 2.0}}))
    old = Weights.load(tmp_path / "old.json")
    assert old.values["root"] == 2.0 and old.values["topology"] == 0.0


# -- end to end through ingest and RCAService --------------------------------------------------

def test_an_incident_through_ingest_and_rca_service(kg: KnowledgeGraph) -> None:
    """A call graph, a normal hour then a slow ``db``, and an SLO alert on ``web``: the
    engine reads the anomalies (with direction and series) and blames ``db``."""
    scope = "rca-unit/shop"
    deps = "caller,callee\nweb,api\nweb,cdn\napi,db\napi,cache\n"
    run_ingest(kg, "topology", [Input.of_bytes("deps.csv", deps.encode())], scope=scope)
    rows = ["timestamp,metric,labels,value"]
    rng = np.random.default_rng(3)
    for k in range(40):  # one normal point a minute, then the incident's last five
        t = T0 + timedelta(minutes=k - 40)
        slow = k >= 37
        for svc, base in (("web", 0.20), ("api", 0.10), ("db", 0.02), ("cache", 0.01),
                          ("cdn", 0.05)):
            value = base * (1 + 0.02 * rng.standard_normal())
            if slow and svc in ("web", "api", "db"):
                value += 0.3
            rows.append(f"{t.isoformat()},latency_seconds,service={svc},{value:.5f}")
    report = run_ingest(kg, "metrics", [Input.of_bytes("m.csv", "\n".join(rows).encode())],
                        scope=scope)
    assert report.counts["anomalies"] >= 3
    alert = {"status": "firing", "labels": {"alertname": "SLOViolation", "service": "web",
                                            "sli": "latency"},
             "annotations": {}, "startsAt": T0.isoformat(), "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "", "fingerprint": "slo-web"}
    payload = {"version": "4", "groupKey": "g", "status": "firing", "receiver": "r",
               "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
               "externalURL": "", "alerts": [alert]}
    run_ingest(kg, "alerts", [Input.of_bytes("a.json", json.dumps(payload).encode())],
               scope=scope, options={"format": "alertmanager"})
    rca = RCAService(kg)
    symptoms = rca.symptoms_in_window(T0 - timedelta(minutes=1), T0 + timedelta(minutes=1),
                                      scope=scope)
    assert len(symptoms) == 1 and symptoms[0].labels["sli"] == "latency"
    result = rca.analyse(symptoms)
    top = result.candidates[0]
    assert top.entity == mint_iri(scope, "Service", "db")
    assert top.signals["origin"] > 0 and top.signals["chain"] == 1.0
    ev = next(e for e in top.evidence if e.kind == "Anomaly")
    assert ev.direction == "up" and ev.series and 'service="db"' in ev.series
    # the series itself, judged against the trailing reference, is cited
    cited = top.to_json()["series"]
    assert cited[0]["metric"] == "latency_seconds" and cited[0]["labels"] == {"service": "db"}
    assert cited[0]["status"] == "judged" and cited[0]["deviation"] > 3
    # the callers' latency is explained by db's: they rank below it
    scores = {c.entity: c.score for c in result.candidates}
    assert scores[mint_iri(scope, "Service", "api")] < top.score


K8S = """
entities:
  - {id: frontend, type: Service, properties: {name: frontend}}
  - {id: cart, type: Service, properties: {name: cart}}
  - {id: db, type: Service, properties: {name: db}}
  - {id: default/frontend, type: Deployment, properties: {name: frontend}}
  - {id: default/cart, type: Deployment, properties: {name: cart}}
  - {id: default/db, type: Deployment, properties: {name: db}}
  - id: https://w3id.org/autocnc/id/rca-unit/k8s/KubernetesService/default%2Ffrontend
    type: KubernetesService
    properties: {name: frontend}
relations:
  - {type: implementedBy, source: frontend, target: default/frontend}
  - {type: implementedBy, source: cart, target: default/cart}
  - {type: implementedBy, source: db, target: default/db}
  - type: selects
    source: https://w3id.org/autocnc/id/rca-unit/k8s/KubernetesService/default%2Ffrontend
    target: default/frontend
  - {type: calls, source: frontend, target: cart}
  - {type: calls, source: cart, target: db}
"""


def test_components_join_pods_services_and_call_edges(kg: KnowledgeGraph) -> None:
    """Metrics on pods, calls between application services, an alert on the Kubernetes
    Service: the saturated pod's component (its deployment and service) ranks first, the
    alerting front end — slow only because of it — does not, and the answer says which
    evidence kinds were present, normal or missing."""
    scope = "rca-unit/k8s"
    run_ingest(kg, "topology", [Input.of_bytes("k8s.yaml", K8S.encode())], scope=scope,
               options={"format": "native"})
    rows = ["timestamp,metric,labels,value"]
    rng = np.random.default_rng(5)
    pods = {"frontend": "frontend-6d8f9c7b6-x2xkq", "cart": "cart-5d8f9c7b6-a1b2c",
            "db": "db-7f8e9d0c1-q9w8e"}
    for k in range(70):
        t = T0 + timedelta(minutes=k - 65)
        hot = k >= 65
        for svc, pod in pods.items():
            cpu = 20 * (1 + 0.03 * rng.standard_normal()) + (60 if hot and svc == "cart" else 0)
            lat = {"frontend": 0.2, "cart": 0.1, "db": 0.02}[svc] * (
                1 + 0.02 * rng.standard_normal()) + (0.3 if hot and svc != "db" else 0)
            labels = f"pod={pod};namespace=default"
            rows.append(f"{t.isoformat()},cpu_usage_percent,{labels},{cpu:.4f}")
            rows.append(f"{t.isoformat()},request_latency_seconds,{labels},{lat:.5f}")
    report = run_ingest(kg, "metrics", [Input.of_bytes("m.csv", "\n".join(rows).encode())],
                        scope=scope)
    assert report.counts.get("unresolvedSeries", 0) == 0
    rca = RCAService(kg)
    symptoms = rca.symptoms_from_alerts([{"labels": {"alertname": "SLO", "service":
                                                     "frontend", "namespace": "default"},
                                          "startsAt": T0.isoformat()}], scope)
    assert symptoms[0].entity == mint_iri(scope, "KubernetesService", "default/frontend")
    result = rca.analyse(symptoms, limit=None)
    top = result.to_json()["candidates"][0]
    assert mint_iri(scope, "Deployment", "default/cart") in top["component"]
    assert mint_iri(scope, "Service", "cart") in top["component"]
    assert top["evidenceKinds"]["resource"]["status"] == "present"
    assert top["evidenceKinds"]["gap"]["status"] == "missing"
    assert {s["metric"] for s in top["series"]} >= {"cpu_usage_percent"}
    front = next(c for c in result.to_json()["candidates"]
                 if mint_iri(scope, "Service", "frontend") in c["component"])
    assert front["score"] < top["score"] / 2
    assert front["evidenceKinds"]["latency"]["status"] == "present"  # but explained
    assert front["signals"]["origin"] < front["evidenceKinds"]["latency"]["score"]
    # one candidate per component: no member of cart's component ranks on its own
    assert sum(mint_iri(scope, "Service", "cart") in c["component"]
               for c in result.to_json()["candidates"]) == 1
    assert result.total == len(result.candidates) and rca.analyse(symptoms, limit=1).total \
        == result.total and len(rca.analyse(symptoms, limit=1).candidates) == 1

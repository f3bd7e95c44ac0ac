"""The store's shape on both backends: ``labelPairs`` derived from ``labels`` (queried
with the docs' own examples) and ``validFrom`` on every fact that any ingest writes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ingest import inputs_for, run_ingest
from ingest.base import Input
from kg.facts import Entity, FactBatch
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 1, 1, tzinfo=UTC)
ALERT = mint_iri("t/shop", "Alert", "a1")
SERIES = mint_iri("t/shop", "MetricSeries", "s1")


def label_examples() -> list[str]:
    """The Cypher blocks of the labels section of docs/model.md."""
    text = (ROOT / "docs" / "model.md").read_text(encoding="utf-8")
    start = text.index("### Labels")
    section = text[start:text.index("\n## ", start)]
    return re.findall(r"^```cypher\n(.*?)^```", section, re.M | re.S)


def pairs(kg: KnowledgeGraph, iri: str) -> list[str] | None:
    rows = kg.cypher("MATCH (n:Entity {iri: $iri}) RETURN n.labelPairs", {"iri": iri}).rows
    return rows[0][0]


def write_labelled(kg: KnowledgeGraph, labels: dict[str, object] | None) -> int:
    """Write the alert with ``labels`` (None removes them); returns how many were unchanged."""
    text = None if labels is None else json.dumps(labels, sort_keys=True)
    summary = kg.write(FactBatch.of("test/labels", [
        Entity(ALERT, "Alert", {"name": "KubePodCrashLooping", "labels": text, "fingerprint": "f1",
                                "startTime": AS_OF}, valid_from=AS_OF),
        Entity(SERIES, "MetricSeries", {"metricName": "up", "labels": json.dumps(
            {"job": "node", "instance": "a:9100"})}, valid_from=AS_OF)]))
    return summary.unchanged


def test_label_pairs_follow_labels_and_answer_the_docs_examples(kg: KnowledgeGraph) -> None:
    labels = {"alertname": "KubePodCrashLooping", "namespace": "default",
              "pod": "checkout-1", "severity": "warning", "url": "a=b", "we=ird%": 3}
    write_labelled(kg, labels)
    assert pairs(kg, ALERT) == ["alertname=KubePodCrashLooping", "namespace=default",
                                "pod=checkout-1", "severity=warning", "url=a=b", "we%3Dird%25=3"]
    found = kg.cypher("MATCH (a:Entity) WHERE 'pod=checkout-1' IN a.labelPairs RETURN a.iri")
    assert found.rows == [[ALERT]]
    answers = [kg.cypher(q).rows for q in label_examples()]
    assert answers == [[["KubePodCrashLooping", AS_OF]], [["KubePodCrashLooping", "checkout-1"]],
                       [["up", ["instance=a:9100", "job=node"]]]]
    assert write_labelled(kg, labels) == 2  # derived pairs change nothing on a re-write
    write_labelled(kg, {"pod": "checkout-2"})
    assert pairs(kg, ALERT) == ["pod=checkout-2"]
    assert kg.cypher("MATCH (a:Entity) WHERE 'pod=checkout-1' IN a.labelPairs "
                     "RETURN a.iri").rows == []
    write_labelled(kg, None)
    assert pairs(kg, ALERT) is None
    kg.write(FactBatch.of("test/labels", [Entity(ALERT, "Alert", {"labels": "not json"})]))
    assert pairs(kg, ALERT) is None
    kg.write(FactBatch.of("test/labels", [Entity(ALERT, "Alert", {"labels": "{}"})]))
    assert pairs(kg, ALERT) == []


def without_valid_from(kg: KnowledgeGraph) -> list[list[object]]:
    rows = kg.cypher("MATCH (n:Entity) WHERE n.validFrom IS NULL "
                     "RETURN n.kind, n.source, count(*)").rows
    for rel in kg.store.schema.relation_types:
        rows += [[rel, *r] for r in kg.cypher(f"MATCH ()-[e:{rel}]->() WHERE e.validFrom IS "
                                              "NULL RETURN e.source, count(*)").rows]
    return rows


def prometheus_exposition() -> bytes:
    t0 = 1_767_225_600_000
    lines = ["# TYPE app_latency_seconds gauge"] + [
        f'app_latency_seconds{{service="cart",path="/"}} {30.0 if k == 150 else 10 + k % 3 / 10} '
        f"{t0 + k * 60_000}" for k in range(200)]
    return ("\n".join(lines) + "\n").encode()


def test_every_ingested_fact_has_valid_from(kg: KnowledgeGraph) -> None:
    topo = SHARED_DATA / "topology"
    manifests = Input.file(topo / "online-boutique" / "kubernetes-manifests.yaml")
    jobs = [
        ("topology", [manifests], "ob"),
        ("topology", [Input.file(topo / "online-boutique" / "service-dependencies.csv")], "ob"),
        ("topology", [Input.file(topo / "topology-zoo" / "graphml" / "Abilene.graphml")],
         "net/{stem}"),
        ("metrics", [Input.of_bytes("m.prom", prometheus_exposition())], "ob"),
        ("logs", [Input.file(SHARED_DATA / "loghub2k" / "Linux" / "Linux_2k.log")], "ob"),
        ("alerts", inputs_for("alerts", [str(SHARED_DATA / "alert-rules" / "kube-prometheus")]),
         "ob"),
        ("alerts", [Input.file(SHARED_DATA / "alertmanager-webhook-example.json")], "ob"),
        ("runbooks", inputs_for("runbooks", [str(SHARED_DATA / "runbooks" / "node")]), "ob"),
    ]
    for kind, inputs, scope in jobs:
        report = run_ingest(kg, kind, inputs, scope=scope, as_of=AS_OF)
        assert report.created and not report.rejected, (kind, report.rejected[:3])
    assert without_valid_from(kg) == []
    source = "topology/k8s:ob:kubernetes-manifests"
    k8s = "MATCH (n:Entity) WHERE n.source = $s RETURN DISTINCT n.validFrom"
    assert kg.cypher(k8s, {"s": source}).rows == [[AS_OF]]
    calls = kg.cypher("MATCH ()-[e:calls]->() RETURN DISTINCT e.validFrom").rows
    assert calls == [[AS_OF]]
    # A later snapshot of the same manifests: what stays keeps the time it appeared.
    again = run_ingest(kg, "topology", [manifests], scope="ob", as_of=AS_OF + timedelta(days=1))
    assert again.created == 0 and again.updated == 1  # the snapshot's own record
    assert kg.cypher(k8s, {"s": source}).rows == [[AS_OF]]

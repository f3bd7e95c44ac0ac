"""Label resolution of Prometheus' own labels: ``instance`` (host:port), ``job``, scrape
targets (``up``, ``up == 0`` alerts) and the configurable label map; both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from ingest import run_ingest
from ingest.alerts import ingest_webhook
from ingest.base import IngestContext, IngestReport, Input, Sink
from ingest.resolve import Resolver, apply_label_map, candidates, is_target
from kg.config import Settings
from kg.graph import KnowledgeGraph
from ontology import mint_iri

BASE = "https://w3id.org/autocnc/id/"
SCOPE = "shop"
TOPOLOGY = """
entities:
  - {id: cart, type: Service, properties: {name: cart}}
  - {id: frontend, type: Service, properties: {name: frontend}}
  - {id: node1, type: ComputeNode, properties: {name: node1}}
  - {id: shop/cart, type: Deployment, properties: {name: cart}}
relations:
  - {type: calls, source: frontend, target: cart}
  - {type: runsOn, source: cart, target: node1}
"""
MAP = {"kubernetes_pod_name": "pod", "kubernetes_namespace": "namespace", "app": "service"}


def iri(kind: str, key: str) -> str:
    return mint_iri(SCOPE, kind, key, BASE)


def first(labels: dict[str, str], **kw: object) -> tuple[str, str, str]:
    c = candidates(SCOPE, labels, BASE, **kw)[0]  # type: ignore[arg-type]
    return c.kind, c.iri.rsplit("/", 1)[-1], c.how


# -- the rule, without a store ------------------------------------------------------------------

def test_instance_names_a_host_without_its_port() -> None:
    assert first({"instance": "node1:9100"}) == ("KubernetesNode", "node1", "exact")
    assert first({"instance": "[fe80::1]:9100"}) == ("KubernetesNode", "fe80%3A%3A1", "exact")
    assert first({"instance": "node1"}) == ("KubernetesNode", "node1", "exact")


def test_job_names_the_service_of_that_name() -> None:
    kinds = [(c.kind, c.label) for c in candidates(SCOPE, {"job": "cart"}, BASE)]
    assert kinds == [("Service", "job")]


def test_an_ordinary_series_keeps_the_host_before_the_job() -> None:
    # what a target exposes about its host (node_exporter) is about the host
    got = candidates(SCOPE, {"__name__": "node_load1", "job": "cart",
                             "instance": "node1:8080"}, BASE)
    assert [c.label for c in got][:5] == ["instance"] * 5 and got[-1].label == "job"


@pytest.mark.parametrize("labels", [
    {"__name__": "up", "job": "cart", "instance": "node1:8080"},
    {"__name__": "scrape_duration_seconds", "job": "cart", "instance": "node1:8080"},
    {"alertname": "TargetDown", "job": "cart", "instance": "node1:8080", "severity": "x"},
    {"alertname": "InstanceDown", "job": "cart", "instance": "node1:8080"},
])
def test_scrape_target_labels_resolve_by_job_first(labels: dict[str, str]) -> None:
    assert is_target(labels)
    got = candidates(SCOPE, labels, BASE)
    assert [(c.kind, c.label, c.how) for c in got[:2]] == [
        ("KubernetesService", "job", "exact"), ("Service", "job", "exact")]
    # the host only stands in for the target, and says so
    assert {(c.label, c.how) for c in got[2:]} == {("instance", "inferred")}


def test_more_target_alert_names_come_from_the_settings() -> None:
    labels = {"alertname": "CartDown", "job": "cart", "instance": "node1:8080"}
    assert not is_target(labels)
    assert first(labels, target_alerts={"CartDown"}) == ("KubernetesService", "default%2Fcart",
                                                         "exact")


def test_subject_labels_win_over_the_target() -> None:
    labels = {"__name__": "up", "job": "kubelet", "node": "node1", "instance": "10.0.0.1:10250"}
    assert first(labels) == ("KubernetesNode", "node1", "exact")


def test_the_label_map_renames_before_resolution() -> None:
    labels = {"kubernetes_pod_name": "cart-0", "kubernetes_namespace": "shop"}
    c = candidates(SCOPE, labels, BASE, label_map=MAP)[0]
    assert (c.kind, c.iri, c.label) == ("Pod", iri("Pod", "shop/cart-0"), "kubernetes_pod_name")
    # like Prometheus' labelmap: the mapped label replaces one of the target name
    mapped, origin = apply_label_map({"app": "cart", "service": "exporter"}, MAP)
    assert mapped["service"] == "cart" and origin == {"service": "app"}
    assert apply_label_map({"app": ""}, MAP) == ({"app": ""}, {})  # empty = absent


def test_label_map_settings_are_validated() -> None:
    from kg.config import load_settings
    from kg.errors import ConfigError

    ok = load_settings(prometheus_label_map=MAP, prometheus_url="http://p:9090/")
    assert ok.prometheus_url == "http://p:9090" and ok.prometheus_label_map == MAP
    for bad, says in [({"app": "application"}, "does not read"),
                      ({"a-b": "pod"}, "not a Prometheus label name"),
                      ({"pod": "pod"}, "maps to itself")]:
        with pytest.raises(ConfigError, match=says):
            load_settings(prometheus_label_map=bad)


# -- against the graph, both backends ----------------------------------------------------------

def load(kg: KnowledgeGraph) -> None:
    report = run_ingest(kg, "topology", [Input.of_bytes("shop.yaml", TOPOLOGY.encode())],
                        scope=SCOPE, as_of=datetime(2026, 1, 1, tzinfo=UTC))
    assert not report.rejected


@pytest.fixture
def mapped(settings: Settings) -> Iterator[KnowledgeGraph]:
    """The graph opened with a label map and one more target alert name."""
    graph = KnowledgeGraph.open(settings.model_copy(update={
        "prometheus_label_map": MAP, "prometheus_target_alerts": ("CartDown",)}))
    try:
        load(graph)
        yield graph
    finally:
        graph.close()


def test_up_alert_is_about_the_target_not_its_host(mapped: KnowledgeGraph) -> None:
    target = {"job": "cart", "instance": "node1:8080"}
    items = [(SCOPE, {"alertname": "TargetDown", **target}),
             (SCOPE, {"alertname": "CartDown", **target}),  # named in the settings
             (SCOPE, {"alertname": "HighCPU", **target}),  # not about the target: the host
             (SCOPE, {"alertname": "TargetDown", "job": "node-exporter",
                      "instance": "node1:9100"}),  # no entity for the exporter: its host
             (SCOPE, {"__name__": "up", "job": "cart", "instance": "10.1.2.3:8080"})]
    for resolver in (Resolver(mapped), Resolver.in_memory(mapped)):
        got = [(r.iri, r.how, r.label) for r in resolver.resolve_many(items)]
        assert got == [(iri("Service", "cart"), "exact", "job")] * 2 + [
            (iri("ComputeNode", "node1"), "exact", "instance"),
            (iri("ComputeNode", "node1"), "inferred", "instance"),
            (iri("Service", "cart"), "exact", "job")]


def test_mapped_labels_resolve_through_the_webhook(mapped: KnowledgeGraph) -> None:
    """A pod named only by a mapped label: the alert is about its workload (inferred), and
    the receiver does not look for a ``pod`` label that is not there."""
    payload = {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "x",
               "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
               "externalURL": "http://am", "alerts": [
                   {"status": "firing", "labels": {
                       "alertname": "CrashLoop", "kubernetes_pod_name": "cart-5d8f9c7b6-x2xkq",
                       "kubernetes_namespace": "shop"}, "annotations": {},
                    "startsAt": "2026-01-02T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": "f1"},
                   {"status": "firing", "labels": {"alertname": "Slow", "app": "frontend"},
                    "annotations": {}, "startsAt": "2026-01-02T00:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "f2"}]}
    report = IngestReport("alerts")
    ingest_webhook(IngestContext(mapped, report, Sink(mapped, report), SCOPE), payload, "am")
    rows = mapped.cypher("MATCH (a:Entity)-[r:aboutEntity]->(x:Entity) "
                         "RETURN a.name, x.iri, r.resolution ORDER BY a.name").rows
    assert rows == [["CrashLoop", iri("Deployment", "shop/cart"), "inferred"],
                    ["Slow", iri("Service", "frontend"), "exact"]]
    assert json.loads(mapped.cypher("MATCH (a:Entity) WHERE a.name = 'CrashLoop' "
                                    "RETURN a.labels").rows[0][0])["kubernetes_namespace"] == "shop"


def test_namespace_and_cluster_qualify_a_service_name() -> None:
    # {service, namespace} is the Kubernetes Service in that namespace, not the namespace
    assert first({"service": "cart", "namespace": "shop"}) == (
        "KubernetesService", "shop%2Fcart", "exact")
    order = [c.kind for c in candidates(SCOPE, {"service": "cart", "namespace": "shop"}, BASE)]
    assert order == ["KubernetesService", "Service", "Namespace"]
    # alone, or beside a subject label, the namespace is still what the labels name
    assert first({"namespace": "shop"})[0] == "Namespace"
    assert first({"pod": "cart-5d8f9c7b6-x2xkq", "namespace": "shop"})[0] == "Pod"
    assert first({"job": "cart", "cluster": "c1"})[:2] == ("Service", "cart")

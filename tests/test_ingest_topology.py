"""Topology ingest on the real data in ../shared/data/topology, on every backend."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest import Input, inputs_for, run_ingest
from ingest.resolve import Resolver
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from tests.conftest import SHARED_DATA

TOPO = SHARED_DATA / "topology"
T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 2, 1, tzinfo=UTC)


def ingest(kg: KnowledgeGraph, paths: list[Path | str], scope: str, at: datetime = T1,
           **kw):
    return run_ingest(kg, "topology", inputs_for("topology", [str(p) for p in paths]),
                      scope=scope, as_of=at, **kw)


def one(kg: KnowledgeGraph, query: str, **params):
    rows = kg.cypher(query, params).rows
    assert len(rows) == 1, rows
    return rows[0]


def kinds(kg: KnowledgeGraph) -> dict[str, int]:
    return {k: n for k, n in kg.cypher("MATCH (n:Entity) RETURN n.kind, count(*)").rows}


def test_kubernetes_manifests_and_dependencies(kg: KnowledgeGraph) -> None:
    report = ingest(kg, [TOPO / "online-boutique"], "online-boutique")
    assert report.rejected == [] and report.skipped == []
    assert report.counts["files.k8s"] == 2 and report.counts["files.dependencies"] == 1
    assert report.counts["k8s.ignored.ServiceAccount"] == 12
    k = kinds(kg)
    assert k["Deployment"] == 13 and k["KubernetesService"] == 13
    assert k["KubernetesCluster"] == 1 and k["Namespace"] == 1

    frontend = mint_iri("online-boutique", "Deployment", "default/frontend")
    name, replicas, labels = one(kg, "MATCH (d:Entity {iri: $iri}) RETURN d.name, d.replicas, "
                                 "d.labels", iri=frontend)
    assert (name, replicas, json.loads(labels)) == ("frontend", 1, {"app": "frontend"})
    (image,) = one(kg, "MATCH (c:Entity)-[:partOf]->(d:Entity {iri: $iri}) RETURN c.image",
                   iri=frontend)
    assert image.endswith("/frontend:v0.10.6")
    selected = kg.cypher("MATCH (s:Entity)-[:selects]->(d:Entity {iri: $iri}) "
                         "RETURN s.name ORDER BY s.name", {"iri": frontend}).rows
    assert selected == [["frontend"], ["frontend-external"]]
    # the dependency CSV's calls join the application services Kubernetes Services made
    port, attrs = one(kg, "MATCH (a:Entity {iri: $a})-[c:calls]->(b:Entity {iri: $b}) "
                      "RETURN c.port, c.attributes",
                      a=mint_iri("online-boutique", "Service", "frontend"),
                      b=mint_iri("online-boutique", "Service", "productcatalogservice"))
    assert port == 3550
    assert json.loads(attrs)["evidence"] == "PRODUCT_CATALOG_SERVICE_ADDR"
    (impl,) = one(kg, "MATCH (s:Entity {iri: $s})-[:implementedBy]->(d:Entity) RETURN d.iri",
                  s=mint_iri("online-boutique", "Service", "frontend"))
    assert impl == frontend
    (calls,) = one(kg, "MATCH ()-[c:calls]->() RETURN count(c)")
    assert calls == 17

    again = ingest(kg, [TOPO / "online-boutique"], "online-boutique")
    assert (again.created, again.updated, again.retired) == (0, 0, 0)
    assert again.unchanged > 0


def test_all_kubernetes_apps_ingest(kg: KnowledgeGraph) -> None:
    for app in ("sock-shop", "train-ticket"):
        report = ingest(kg, [TOPO / app], app)
        assert report.rejected == [], report.rejected[:3]
    k = kinds(kg)
    assert k["Deployment"] == 78 and k["KubernetesCluster"] == 2
    # two scopes never collide: each app has its own cluster and namespaces
    (n,) = one(kg, "MATCH (c:Entity) WHERE c.kind = 'KubernetesCluster' AND c.name = $n "
               "RETURN count(c)", n="sock-shop")
    assert n == 1
    (calls,) = one(kg, "MATCH (a:Entity)-[c:calls]->(b:Entity) WHERE a.name = 'front-end' "
                   "AND b.name = 'cart' RETURN count(c)")
    assert calls == 1


def test_graphml_latency_estimate_and_provenance(kg: KnowledgeGraph) -> None:
    report = ingest(kg, [TOPO / "topology-zoo" / "graphml" / "Abilene.graphml"], "zoo/{stem}")
    assert report.rejected == []
    k = kinds(kg)
    assert (k["NetworkNode"], k["NetworkLink"], k["Network"]) == (11, 14, 1)
    ny = mint_iri("zoo/Abilene", "NetworkNode", "0")
    rows = kg.cypher("MATCH (l:Entity)-[:connectsTo]->(n:Entity {iri: $ny}) "
                     "MATCH (l)-[:connectsTo]->(m:Entity) WHERE m.name = 'Chicago' "
                     "RETURN l.latencyMs, l.derivation, l.source", {"ny": ny}).rows
    assert len(rows) == 1
    latency, derivation, source = rows[0]
    assert 5.5 < latency < 6.0  # New York - Chicago, 1,145 km of great circle at 2/3 c
    assert "great-circle" in derivation
    assert source == "topology/graphml:zoo/Abilene:Abilene"
    (n,) = one(kg, "MATCH (l:Entity) WHERE l.kind = 'NetworkLink' AND l.latencyMs < 2.0 "
               "RETURN count(l)")  # typed: range queries work
    assert n >= 1


def test_every_topology_zoo_file_ingests(kg: KnowledgeGraph) -> None:
    files = inputs_for("topology", [str(TOPO / "topology-zoo" / "graphml")])
    assert len(files) == 276
    report = run_ingest(kg, "topology", files, scope="zoo/{stem}", as_of=T1)
    assert report.rejected == [], report.rejected[:3]
    assert report.counts["files.graphml"] == 276
    k = kinds(kg)
    assert k["Network"] == 276 and k["NetworkNode"] > 10_000 and k["NetworkLink"] > 13_000


NATIVE_V1 = """
entities:
  - {id: edge-1, type: EdgeSite, properties: {name: Edge 1, latitude: 31.2, longitude: 121.5}}
  - {id: r1, type: Router, properties: {name: r1}}
  - {id: r2, type: Router, properties: {name: r2}}
relations:
  - {type: locatedIn, source: r1, target: edge-1}
  - {type: linkedTo, source: r1, target: r2, properties: {latencyMs: 1.5}}
"""
NATIVE_V2 = """
entities:
  - {id: edge-1, type: EdgeSite, properties: {name: Edge 1, latitude: 31.2, longitude: 121.5}}
  - {id: r1, type: Router, properties: {name: r1}}
relations:
  - {type: locatedIn, source: r1, target: edge-1}
"""


def native(text: str) -> list[Input]:
    return [Input.of_bytes("site.yaml", text.encode())]


def test_newer_snapshot_retires_older_is_rejected(kg: KnowledgeGraph) -> None:
    first = run_ingest(kg, "topology", native(NATIVE_V1), scope="lab", as_of=T1)
    assert first.created == 6 and first.rejected == []  # 5 facts + the snapshot marker
    second = run_ingest(kg, "topology", native(NATIVE_V2), scope="lab", as_of=T2)
    assert second.retired == 2 and second.created == 0
    r2 = mint_iri("lab", "Router", "r2")
    ents, rels = kg.store.fetch([r2], [("linkedTo", mint_iri("lab", "Router", "r1"), r2)])
    assert ents[r2].valid_to == T2  # retired, not deleted
    assert next(iter(rels.values())).valid_to == T2
    old = run_ingest(kg, "topology", native(NATIVE_V1), scope="lab", as_of=T1)
    assert len(old.rejected) == 1 and "older" in old.rejected[0].reason
    assert kg.store.fetch([r2], [])[0][r2].valid_to == T2  # the old snapshot changed nothing
    back = run_ingest(kg, "topology", native(NATIVE_V1), scope="lab",
                      as_of=datetime(2026, 3, 1, tzinfo=UTC))
    assert back.updated == 3 and kg.store.fetch([r2], [])[0][r2].valid_to is None


BAD_MANIFESTS = """apiVersion: apps/v1
kind: Deployment
metadata: {name: good}
spec:
  template:
    metadata: {labels: {app: good}}
    spec: {containers: [{name: c, image: "img:1"}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: [unclosed
---
apiVersion: v1
kind: Service
metadata: {}
spec: {selector: {app: good}}
---
apiVersion: v1
kind: Service
metadata: {name: good}
spec: {selector: {app: good}, ports: [{port: 80}]}
"""


def test_bad_records_are_rejected_with_line_and_the_rest_lands(kg: KnowledgeGraph) -> None:
    report = run_ingest(kg, "topology", [Input.of_bytes("bad.yaml", BAD_MANIFESTS.encode())],
                        scope="c1", as_of=T1)
    where = sorted(r.where for r in report.rejected)
    assert where == ["line 11", "line 13 (Service)"]  # the YAML error; a Service without name
    assert "metadata.name" in report.rejected[-1].reason
    good = mint_iri("c1", "Deployment", "default/good")
    assert good in kg.store.fetch([good], [])[0]
    (n,) = one(kg, "MATCH (s:Entity)-[:selects]->(d:Entity {iri: $d}) RETURN count(s)", d=good)
    assert n == 1
    lines = (kg.settings.data_dir / "dead-letter" / "topology.jsonl").read_text().splitlines()
    assert len(lines) == 2 and {json.loads(x)["file"] for x in lines} == {"bad.yaml"}
    again = run_ingest(kg, "topology", [Input.of_bytes("bad.yaml", BAD_MANIFESTS.encode())],
                       scope="c1", as_of=T2)
    assert again.retired == 0 and any("retirement skipped" in n for n in again.notes)


def test_dependency_csv_errors_name_the_line(kg: KnowledgeGraph) -> None:
    missing = run_ingest(kg, "topology", [Input.of_bytes("deps.csv", b"caller,port\na,1\n")],
                         scope="c1", as_of=T1)
    assert [r.where for r in missing.rejected] == ["line 1"]
    assert "callee" in missing.rejected[0].reason
    rows = b"caller,callee,port,note\na,b,80,x\nb,c,eighty,y\nc,,1,z\n"
    report = run_ingest(kg, "topology", [Input.of_bytes("deps2.csv", rows)], scope="c1",
                        as_of=T1)
    assert sorted(r.where for r in report.rejected) == ["line 3", "line 4"]
    (port,) = one(kg, "MATCH (a:Entity)-[c:calls]->(b:Entity) WHERE a.name = 'a' RETURN c.port")
    assert port == 80


def test_link_csv_errors_name_the_line(kg: KnowledgeGraph) -> None:
    rows = b"source,target,relation\nr1,r2,\nr2,r3\nr3,,connectsTo\nr1,r3,likes\n"
    report = run_ingest(kg, "topology", [Input.of_bytes("links.csv", rows)], scope="n1",
                        as_of=T1)
    why = {r.where: r.reason for r in report.rejected}
    assert sorted(why) == ["line 3", "line 4", "line 5"]
    assert "2 fields" in why["line 3"] and "must not be empty" in why["line 4"]
    assert "likes" in why["line 5"]
    (n,) = one(kg, "MATCH (a:Entity)-[:connectsTo]->(b:Entity) WHERE a.name = 'r1' "
                   "AND b.name = 'r2' RETURN count(*)")
    assert n == 1


def test_dry_run_writes_nothing(kg: KnowledgeGraph) -> None:
    head = kg.store.head()
    report = ingest(kg, [TOPO / "online-boutique"], "online-boutique", dry_run=True)
    assert report.created > 100 and report.rejected == []
    assert kg.store.head() == head
    assert kinds(kg) == {}


def test_labels_resolve_to_topology_entities(kg: KnowledgeGraph) -> None:
    ingest(kg, [TOPO / "online-boutique"], "online-boutique")
    res = Resolver(kg).resolve_many([
        # a running pod unknown to the manifests maps to its workload by its hash suffix
        ("online-boutique", {"namespace": "default", "pod": "frontend-6b8f7c9d4-x2x7k",
                             "service": "kube-state-metrics"}),
        ("online-boutique", {"service": "frontend"}),
        ("online-boutique", {"namespace": "elsewhere", "pod": "nothing-here-0"}),
    ])
    assert res[0].iri == mint_iri("online-boutique", "Deployment", "default/frontend")
    assert res[0].how == "inferred"
    assert res[1].iri == mint_iri("online-boutique", "KubernetesService", "default/frontend")
    assert res[1].how == "exact"
    assert not res[2].resolved


def test_unknown_format_is_skipped_not_failed(kg: KnowledgeGraph, tmp_path: Path) -> None:
    (tmp_path / "notes.yaml").write_text("hello: world\n")
    report = ingest(kg, [tmp_path / "notes.yaml"], "x")
    assert len(report.skipped) == 1 and report.rejected == []


@pytest.mark.parametrize("scope", [None, ""])
def test_scope_is_required(kg: KnowledgeGraph, scope: str | None) -> None:
    from ingest import IngestError

    with pytest.raises(IngestError, match="scope"):
        run_ingest(kg, "topology", native(NATIVE_V1), scope=scope, as_of=T1)

"""Alerts that lost their name: what they still carry (the generatorURL's expression,
labels, prose) finds the runbook; the catalogue is kept in the data directory. Both
backends, on the real node runbooks and node-exporter rules."""

from __future__ import annotations

from urllib.parse import quote

from ingest import inputs_for, run_ingest
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from reasoning.recommend import Recommender, from_alerts
from reasoning.recommend.persist import catalogue_path
from reasoning.recommend.query import generator_expression
from tests.conftest import SHARED_DATA

SCOPE = "kube-prometheus"
RULES = SHARED_DATA / "alert-rules" / "kube-prometheus" / "nodeExporter-prometheusRule.yaml"
EXPR = ('node_filesystem_avail_bytes{job="node-exporter",fstype!=""} / '
        'node_filesystem_size_bytes{job="node-exporter",fstype!=""} * 100 < 7')


def knowledge(kg: KnowledgeGraph) -> None:
    run_ingest(kg, "runbooks", inputs_for("runbooks", [str(SHARED_DATA / "runbooks" / "node")]),
               scope=SCOPE, options={"embed": False})
    run_ingest(kg, "alerts", inputs_for("alerts", [str(RULES)]), scope=SCOPE)


def nameless(expr: str) -> dict[str, object]:
    return {"labels": {"severity": "critical", "job": "node-exporter", "instance": "n1"},
            "annotations": {"summary": "Filesystem has less than 3% space left."},
            "generatorURL": f"http://prom:9090/graph?g0.expr={quote(expr)}&g0.tab=1"}


def test_generator_url_expression_names_the_definition(kg: KnowledgeGraph) -> None:
    knowledge(kg)
    rows = kg.cypher("MATCH (d:Entity) WHERE d.name = 'NodeFilesystemAlmostOutOfSpace' AND "
                     "'AlertDefinition' IN d.types RETURN d.expression").rows
    expr = next(e for (e,) in rows if "< 3" in e)
    q = from_alerts(nameless(expr))
    assert generator_expression(str(nameless(expr)["generatorURL"])) == expr.strip()
    assert q.alert_names == [] and "node_filesystem_avail_bytes" in q.metrics
    assert {"mountpoint", "fstype"} <= q.label_names and "node-exporter" in q.expression_text
    rec = Recommender(kg, embed=False)
    top = rec.recommend(q, kinds=("runbook",)).recommendations[0]
    assert top.item.iri == mint_iri(SCOPE, "OperationPlan",
                                    "node/NodeFilesystemAlmostOutOfSpace")
    assert any(r.get("matched") == "expression of the generatorURL" for r in top.reasons)
    # an expression no definition has: no identity, the alert's words still rank
    other = rec.recommend(from_alerts(nameless(EXPR + " and 1")), kinds=("runbook",))
    assert other.recommendations[0].signals["alertDefinition"] == 0
    assert other.recommendations[0].item.name.startswith("NodeFilesystem")


def test_catalogue_is_kept_and_rebuilt_only_when_runbooks_or_rules_change(
        kg: KnowledgeGraph) -> None:
    knowledge(kg)
    first = Recommender(kg, embed=False)
    before = first.recommend(from_alerts(nameless(EXPR)), kinds=("runbook",))
    path = catalogue_path(kg.settings.data_dir)
    assert path.exists()
    stamp = path.stat().st_mtime_ns
    # a new recommender (a new process) takes the kept catalogue: same answer, no rebuild
    again = Recommender(kg, embed=False)
    assert [r.item.iri for r in again.recommend(from_alerts(nameless(EXPR)),
                                                kinds=("runbook",)).recommendations] == \
        [r.item.iri for r in before.recommendations]
    assert path.stat().st_mtime_ns == stamp
    # a changed runbook is seen by a new recommender: it rebuilds
    book = kg.settings.data_dir.parent / "books" / "node"
    book.mkdir(parents=True)
    (book / "NodeInodesGone.md").write_text(
        "# NodeInodesGone\n\nThe filesystem has no inodes left: no file can be created.\n")
    run_ingest(kg, "runbooks", inputs_for("runbooks", [str(book)]), scope=SCOPE,
               options={"embed": False})
    fresh = Recommender(kg, embed=False)
    names = {it.name for it in fresh.catalogue().items}
    assert "NodeInodesGone" in names and path.stat().st_mtime_ns != stamp

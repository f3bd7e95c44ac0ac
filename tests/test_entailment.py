"""Entailments in the RDF view: inferred types and super-properties, marked with their rule
and kept in step with writes through the change log (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime

import pyoxigraph as ox

from kg.facts import Entity, FactBatch, Relation
from kg.graph import KnowledgeGraph
from kg.rdf_view import META_GRAPH
from ontology import mint_iri

CNC = "https://w3id.org/autocnc/ontology#"
PREFIX = f"PREFIX cnc: <{CNC}> PREFIX noria: <https://w3id.org/noria/ontology/> "
SITE = mint_iri("test/ent", "EdgeSite", "edge-a")
POD = mint_iri("test/ent", "Pod", "shop/web-1")
NODE = mint_iri("test/ent", "KubernetesNode", "n1")
RETIRED = datetime(2026, 3, 1, tzinfo=UTC)


def rules_for(kg: KnowledgeGraph, s: str, p: str, o: str) -> list[str]:
    """Where the triple holds: 'asserted' for the default graph, else its rule's name."""
    quads = kg.rdf._ox.quads_for_pattern(ox.NamedNode(s), ox.NamedNode(p), ox.NamedNode(o),
                                         None)
    return sorted("asserted" if isinstance(q.graph_name, ox.DefaultGraph)
                  else q.graph_name.value.rsplit(":", 1)[-1] for q in quads)


def write_topology(kg: KnowledgeGraph) -> None:
    kg.write(FactBatch.of("test", [
        Entity(SITE, "EdgeSite", {"name": "edge-a"}),
        Entity(POD, "Pod", {"name": "web-1"}),
        Entity(NODE, "KubernetesNode", {"name": "n1"}),
    ], [Relation("runsOn", POD, NODE), Relation("hostedOn", POD, NODE)]))


def test_superclass_types_are_inferred_under_their_rule(kg: KnowledgeGraph) -> None:
    write_topology(kg)
    sites = kg.sparql(PREFIX + "SELECT ?x WHERE { ?x a cnc:ComputeSite }").rows
    assert sites == [[SITE]]  # no property path needed
    aligned = kg.sparql(PREFIX + f"ASK {{ <{SITE}> a noria:ManagedElement }}").rows
    assert aligned == [[True]]
    rdf_type = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
    assert rules_for(kg, SITE, rdf_type, CNC + "ComputeSite") == ["cax-sco"]
    assert rules_for(kg, SITE, rdf_type, CNC + "EdgeSite") == ["asserted"]
    rule = kg.sparql(PREFIX + f"SELECT ?r ?label WHERE {{ GRAPH <{META_GRAPH.value}> {{ "
                     "?r a cnc:EntailmentRule ; "
                     "<http://www.w3.org/2000/01/rdf-schema#label> ?label } } ORDER BY ?r").rows
    assert rule == [["urn:autocnc:inferred:cax-sco", "subclass entailment"],
                    ["urn:autocnc:inferred:prp-spo1", "sub-property entailment"]]


def test_kind_change_replaces_inferred_types(kg: KnowledgeGraph) -> None:
    write_topology(kg)
    kg.write(FactBatch.of("test", [Entity(SITE, "CloudDataCentre", {"name": "edge-a"})]))
    types = {r[1] for r in kg.sparql(PREFIX + "SELECT ?x ?t WHERE { ?x a ?t }",
                                     {"x": SITE}).rows}
    assert CNC + "CloudDataCentre" in types and CNC + "ComputeSite" in types
    assert CNC + "EdgeSite" not in types


def test_super_properties_follow_retirement(kg: KnowledgeGraph) -> None:
    """runsOn ⊑ hostedOn ⊑ dependsOn: retiring runsOn drops what only it supported and
    keeps what the asserted hostedOn still does; retiring both leaves nothing behind."""
    write_topology(kg)
    assert rules_for(kg, POD, CNC + "dependsOn", NODE) == ["prp-spo1"]
    assert rules_for(kg, POD, CNC + "hostedOn", NODE) == ["asserted", "prp-spo1"]
    kg.write(FactBatch.of("test", [], [Relation("runsOn", POD, NODE, valid_to=RETIRED)]))
    assert rules_for(kg, POD, CNC + "runsOn", NODE) == []
    assert rules_for(kg, POD, CNC + "hostedOn", NODE) == ["asserted"]
    assert rules_for(kg, POD, CNC + "dependsOn", NODE) == ["prp-spo1"]
    kg.write(FactBatch.of("test", [], [Relation("hostedOn", POD, NODE, valid_to=RETIRED)]))
    assert rules_for(kg, POD, CNC + "dependsOn", NODE) == []
    # Transitive properties are answered by property paths, never materialised.
    closure = kg.sparql("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } "
                        f"FILTER(?p = <{CNC}partOf>) }}").rows
    assert closure == [[0]]


def test_view_of_an_older_format_is_rebuilt_with_entailments(kg: KnowledgeGraph) -> None:
    write_topology(kg)
    inferred = ox.NamedNode("urn:autocnc:inferred:cax-sco")
    store = kg.rdf._ox
    store.remove_graph(inferred)
    for q in list(store.quads_for_pattern(None, ox.NamedNode(CNC + "viewFormat"), None,
                                          META_GRAPH)):
        store.remove(q)
    assert not kg.rdf.current
    kg.sync()
    assert kg.rdf.current
    assert kg.sparql(PREFIX + "SELECT ?x WHERE { ?x a cnc:ComputeSite }").rows == [[SITE]]

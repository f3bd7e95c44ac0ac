"""Learned causal knowledge: recovery on simulated data, determinism, formats, and the graph
round trip (events read from the graph, edges written back, queried with Cypher and SPARQL)
on every store backend."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from kg.facts import Entity, FactBatch, Relation
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from reasoning.causal import (
    CausalInputError,
    EventTable,
    LearnConfig,
    Topology,
    events_from_graph,
    learn,
    read_events_csv,
    read_topology_csv,
    select_edges,
    store_edges,
    topology_from_graph,
    write_events_csv,
    write_topology_csv,
)
from reasoning.causal.order import causal_order, leads_to
from reasoning.causal.simulate import DAY, SimulationSettings, simulate

SMALL = SimulationSettings(name="small", n_types=8, n_entities=40, edge_prob=0.3,
                           horizon=2 * DAY, mu_range=(1e-5, 4e-5))
SCOPE = "test/causal"
LEADS = LearnConfig(leads_to=True)  # direct and "leads to" edges (default: direct only)


def _prf(edges: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[float, float]:
    tp = len(edges & truth)
    return tp / max(len(edges), 1), tp / max(len(truth), 1)


@pytest.fixture(scope="module")
def sim():
    return simulate(replace(SMALL, horizon=3 * DAY, n_entities=80), seed=7)


def test_recovers_the_simulated_graph_deterministically(sim) -> None:
    edges = learn(sim.events, sim.topology, LEADS)
    direct = [e for e in edges if e.kind == "direct"]
    assert direct == learn(sim.events, sim.topology)  # the default: direct edges only
    found = {(e.cause, e.effect) for e in direct}
    precision, recall = _prf(found, sim.true_edges())
    assert len(sim.true_edges()) >= 5
    assert precision >= 0.9 and recall >= 0.8, (precision, recall, found, sim.true_edges())
    assert learn(sim.events, sim.topology, LEADS) == edges  # same input, same edges, same numbers
    for e in direct:
        assert 0.5 < e.confidence <= 1.0 and e.support >= 1 and e.lag_seconds > 0
        assert e.via in ("sameEntity", "connectsTo") and e.path == ()
    # indirect edges: the ends of a path of direct edges, never weaker-linked than the path
    by_pair = {(e.cause, e.effect): e for e in direct}
    indirect = [e for e in edges if e.kind == "indirect"]
    assert indirect and edges == direct + indirect
    for e in indirect:
        hops = [by_pair[h] for h in zip(e.path, e.path[1:], strict=False)]
        assert (e.path[0], e.path[-1]) == (e.cause, e.effect) and len(hops) >= 2
        assert (e.cause, e.effect) not in by_pair
        assert e.confidence <= min(h.confidence for h in hops) + 1e-12
        assert e.via == ">".join(h.via for h in hops)
    p_all, r_all = _prf({(e.cause, e.effect) for e in edges}, sim.leads_to_edges())
    assert p_all >= 0.9 and r_all >= 0.8, (p_all, r_all)


def test_causal_order_recovers_a_planted_order() -> None:
    rng = np.random.default_rng(5)
    K = 12
    planted = rng.permutation(K)
    rank = np.empty(K, dtype=np.int64)
    rank[planted] = np.arange(K)
    forward = rank[:, None] < rank[None, :]
    # strong evidence along the order, weaker contradicting evidence on a few pairs
    gain = np.where(forward, rng.uniform(5, 50, (K, K)), 0.0)
    back = (~forward) & (rng.random((K, K)) < 0.15)
    gain[back] = rng.uniform(0.5, 3.0, int(back.sum()))
    np.fill_diagonal(gain, 0.0)
    assert causal_order(gain) == planted.tolist()
    assert sorted(causal_order(np.zeros((4, 4)))) == [0, 1, 2, 3]


def test_leads_to_takes_the_most_probable_path() -> None:
    # 0 -> 1 -> 3 (0.9 * 0.9) beats 0 -> 2 -> 3 (0.99 * 0.5); 0 -> 3 absent
    edges = {(0, 1): 0.9, (1, 3): 0.9, (0, 2): 0.99, (2, 3): 0.5, (3, 4): 0.8}
    paths = leads_to(edges, 5)
    assert paths[(0, 3)] == [0, 1, 3] and paths[(0, 4)] == [0, 1, 3, 4]
    assert paths[(2, 4)] == [2, 3, 4] and (0, 1) not in paths and (4, 0) not in paths
    with pytest.raises(ValueError, match="cycle"):
        leads_to({(0, 1): 0.9, (1, 0): 0.9}, 2)


def test_order_orientation_keeps_a_dag_on_the_same_candidates(sim) -> None:
    raw = learn(sim.events, sim.topology, LearnConfig(penalty=0.0, acyclic=False,
                                                      leads_to=False))
    names = sim.events.type_names
    ordered = select_edges(raw, names, LearnConfig(leads_to=False))
    unconstrained = select_edges(raw, names, LearnConfig(acyclic=False))
    assert {(e.cause, e.effect) for e in ordered} <= {(e.cause, e.effect) for e in unconstrained}
    assert ordered == [e for e in learn(sim.events, sim.topology) if e.kind == "direct"]
    # a DAG (leads_to raises on a cycle)
    leads_to({(names.index(e.cause), names.index(e.effect)): e.confidence for e in ordered},
             len(names))


def test_without_the_topology_neighbour_effects_are_lost(sim) -> None:
    # effects that travel to neighbours carry evidence: dropping the topology costs recall
    with_topo = {(e.cause, e.effect) for e in learn(sim.events, sim.topology)}
    alone = {(e.cause, e.effect) for e in learn(sim.events, Topology())}
    assert _prf(alone, sim.true_edges())[1] <= _prf(with_topo, sim.true_edges())[1]


def test_no_edges_from_independent_types() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    times = np.sort(rng.uniform(0, 5 * DAY, n))
    types = [f"T{k}" for k in rng.integers(0, 5, n)]
    ents = [f"E{v}" for v in rng.integers(0, 30, n)]
    topo = Topology.from_edges([(f"E{v}", f"E{v + 1}") for v in range(29)])
    assert learn(EventTable.from_arrays(times, types, ents), topo) == []


def test_csv_formats_round_trip_and_bad_rows(tmp_path: Path, sim) -> None:
    ev = sim.events
    rows = [(float(t), ev.type_names[k], ev.entity_names[v])
            for t, k, v in zip(ev.times, ev.types, ev.entities, strict=True)]
    write_events_csv(tmp_path / "events.csv", rows)
    write_topology_csv(tmp_path / "topology.csv", sim.topology.edges)
    back = read_events_csv(tmp_path / "events.csv")
    assert np.array_equal(back.times, ev.times) and back.type_names == ev.type_names
    assert read_topology_csv(tmp_path / "topology.csv") == sim.topology
    bad = tmp_path / "bad.csv"
    bad.write_text("time,event_type,entity\n2021-01-01T00:00:00Z,A,x\n2021-01-01 00:00,B,y\n")
    with pytest.raises(CausalInputError, match=r"bad.csv line 3: .*no time zone"):
        read_events_csv(bad)
    (tmp_path / "cols.csv").write_text("when,type,entity\n")
    with pytest.raises(CausalInputError, match="missing column"):
        read_events_csv(tmp_path / "cols.csv")


def _write_history(kg: KnowledgeGraph, sim) -> None:
    """The simulated history as graph facts: routers, links, alarm types and alarms."""
    ev = sim.events
    node = {name: mint_iri(SCOPE, "Router", name) for name in ev.entity_names}
    atype = {name: mint_iri(SCOPE, "AlarmType", name) for name in ev.type_names}
    ents = [Entity(i, "Router", {"name": n}) for n, i in node.items()]
    ents += [Entity(i, "AlarmType", {"name": n}) for n, i in atype.items()]
    rels = [Relation("linkedTo", node[a], node[b]) for a, b, _ in sim.topology.edges
            if a in node and b in node]
    for n, (t, k, v) in enumerate(zip(ev.times, ev.types, ev.entities, strict=True)):
        iri = mint_iri(SCOPE, "Alarm", str(n))
        ents.append(Entity(iri, "Alarm", {"eventTime": datetime.fromtimestamp(t, UTC)}))
        rels += [Relation("instanceOf", iri, atype[ev.type_names[k]]),
                 Relation("aboutEntity", iri, node[ev.entity_names[v]])]
    kg.write(FactBatch.of("test/alarms", ents, rels))


def test_graph_round_trip_cypher_and_sparql(kg: KnowledgeGraph) -> None:
    small = simulate(SMALL, seed=11)
    _write_history(kg, small)
    events = events_from_graph(kg)
    assert len(events) == len(small.events)
    topology = topology_from_graph(kg, events.entity_names)
    assert len(topology.edges) > 0 and topology.relations == ("linkedTo",)
    edges = learn(events, topology, LEADS)
    names = {mint_iri(SCOPE, "AlarmType", n): n for n in small.events.type_names}
    direct = {(names[e.cause], names[e.effect]) for e in edges if e.kind == "direct"}
    found = {(names[e.cause], names[e.effect]) for e in edges}
    precision, recall = _prf(direct, small.true_edges())
    assert precision >= 0.8 and recall >= 0.6, (direct, small.true_edges())

    summary = store_edges(kg, edges, scope=SCOPE, type_class="AlarmType")
    assert summary.created == len(edges)  # the alarm types exist already
    assert summary.relations_created == 2 * len(edges) + len(direct)  # + direct short form
    again = store_edges(kg, edges, scope=SCOPE, type_class="AlarmType")
    assert again.created == again.updated == again.relations_updated == 0

    rows = kg.cypher(
        "MATCH (c:Entity)-[:causeType]->(a:Entity) MATCH (c)-[:effectType]->(b:Entity) "
        "WHERE 'CausalEdge' IN c.types AND c.validTo IS NULL "
        "RETURN a.name, b.name, c.confidence, c.support, c.viaRelation, c.method").rows
    assert {(a, b) for a, b, *_ in rows} == found
    assert {(a, b) for a, b, *_, m in rows if not m.endswith("/leads-to")} == direct
    assert all(0 < conf <= 1 and sup >= 1 and set(via.split(">")) <= {"sameEntity", "linkedTo"}
               for _, _, conf, sup, via, _ in rows)
    short = kg.cypher("MATCH (a:Entity)-[r:causes]->(b:Entity) RETURN a.name, b.name").rows
    assert {tuple(r) for r in short} == direct

    res = kg.sparql(
        "PREFIX cnc: <https://w3id.org/autocnc/ontology#> "
        "SELECT ?a ?b ?conf WHERE { ?c a cnc:CausalEdge ; cnc:causeType ?ta ; "
        "cnc:effectType ?tb ; cnc:confidence ?conf . ?ta cnc:name ?a . ?tb cnc:name ?b . "
        "?ta a cnc:AlarmType }")
    assert {(str(a), str(b)) for a, b, _ in res.rows} == found

    # learning again without the strongest edge retires it, it is not deleted
    store_edges(kg, edges[1:], scope=SCOPE, type_class="AlarmType")
    live = kg.cypher("MATCH (c:Entity) WHERE 'CausalEdge' IN c.types AND c.validTo IS NULL "
                     "RETURN count(c)").rows[0][0]
    total = kg.cypher("MATCH (c:Entity) WHERE 'CausalEdge' IN c.types RETURN count(c)").rows
    assert (live, total[0][0]) == (len(edges) - 1, len(edges))
    # a direct edge that becomes indirect keeps its CausalEdge but loses the short form
    first = edges[1]
    demoted = replace(first, kind="indirect", path=(first.cause, first.effect))
    store_edges(kg, [demoted, *edges[2:]], scope=SCOPE, type_class="AlarmType")
    short = kg.cypher("MATCH (a:Entity)-[r:causes]->(b:Entity) WHERE r.validTo IS NULL "
                      "RETURN a.name, b.name").rows
    pair = (names[first.cause], names[first.effect])
    assert pair not in {tuple(r) for r in short} and len(short) == len(direct) - 2


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="scales"):
        LearnConfig(scales=(0.0,))
    with pytest.raises(ValueError, match="min_lag"):
        LearnConfig(min_lag=-1)
    with pytest.raises(ValueError, match="orientation"):
        LearnConfig(orientation="random")


def test_learning_from_the_graph_over_http_and_the_cli(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`POST /v1/causal/learn` learns from the graph's alarms and stores the edges (a dry
    run stores nothing, an empty range is a 422); `autocnc causal` does the same without a
    server."""
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from api.app import create_app
    from api.cli import app as cli
    from kg.config import load_settings

    small = simulate(SMALL, seed=11)
    settings = load_settings(data_dir=tmp_path / "data", store="embedded")
    live = "MATCH (c:Entity) WHERE 'CausalEdge' IN c.types AND c.validTo IS NULL RETURN count(c)"
    with TestClient(create_app(settings)) as client:
        kg = client.app.state.incidents.kg  # the server's own graph, to write the history
        _write_history(kg, small)
        # --scope selects the events: none in net/a, the history is in SCOPE
        none = client.post("/v1/causal/learn", json={"scope": "net/a", "dryRun": True})
        assert none.status_code == 422 and "in scope 'net/a'" in none.text
        dry = client.post("/v1/causal/learn", json={"scope": SCOPE, "dryRun": True}).json()
        assert dry["events"] == len(small.events) and dry["written"] is None
        assert dry["direct"] >= 3 and len(dry["edges"]) == dry["direct"] + dry["indirect"]
        count = client.post("/v1/cypher", json={"query": live}).json()["rows"][0][0]
        assert count == 0
        done = client.post("/v1/causal/learn", json={"scope": SCOPE}).json()
        assert done["written"]["created"] == len(done["edges"])
        assert client.post("/v1/cypher", json={"query": live}).json()["rows"][0][0] == \
            len(done["edges"])
        empty = client.post("/v1/causal/learn", json={
            "scope": SCOPE, "since": "2030-01-01T00:00:00Z"})
        assert empty.status_code == 422 and "no events" in empty.text
    monkeypatch.setenv("AUTOCNC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AUTOCNC_STORE", "embedded")
    res = CliRunner().invoke(cli, ["causal", "--scope", "net/b", "--all-scopes", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["written"]["created"] == len(done["edges"])


def test_stored_edges_use_the_configured_iri_base(tmp_path: Path) -> None:
    from kg.config import load_settings
    from reasoning.causal.learn import CausalEdge

    base = "https://ops.example.net/id/"
    kg = KnowledgeGraph.open(load_settings(data_dir=tmp_path / "d", store="embedded",
                                           iri_base=base))
    try:
        edge = CausalEdge("LinkDown", "BgpPeerDown", confidence=0.9, support=5, weight=0.5,
                          lag_seconds=3.0, via="linkedTo", llr=10.0, bic_unit=2.0)
        store_edges(kg, [edge], scope="net", type_class="AlarmType")
        iris = {r[0] for r in kg.cypher(
            "MATCH (c:Entity)-[:causeType|effectType]->(t:Entity) RETURN c.iri "
            "UNION MATCH (c:Entity)-[:causeType|effectType]->(t:Entity) RETURN t.iri").rows}
        assert len(iris) == 3 and all(i.startswith(base) for i in iris), iris
    finally:
        kg.close()

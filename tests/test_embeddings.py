"""Graph embeddings (PyKEEN) and the root-cause GNN (PyG) on the demo CNC, both backends:
versioned models, inductive vectors for new pods, incremental refresh, learning from
confirmed root causes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

pytest.importorskip("pykeen")
pytest.importorskip("torch_geometric")

from ingest.demo import generate_demo  # noqa: E402
from kg.facts import Entity, FactBatch, Relation  # noqa: E402
from kg.graph import KnowledgeGraph  # noqa: E402
from ontology import mint_iri  # noqa: E402
from reasoning.embeddings import ModelMissing, ModelStore  # noqa: E402
from reasoning.embeddings.gnn import (  # noqa: E402
    case_from_candidates,
    gnn_scores,
    ranking_metrics,
    train_gnn,
)
from reasoning.embeddings.kge import KGEConfig, KGEModel, train_kge  # noqa: E402
from reasoning.embeddings.train import train_models  # noqa: E402
from reasoning.embeddings.triples import graph_triples, split_triples  # noqa: E402

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TINY = KGEConfig(dim=8, epochs=3, refresh_epochs=2, batch_size=1024, negatives=4)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def new_pod(kg: KnowledgeGraph, demo) -> tuple[str, str, str]:
    """A freshly scheduled pod of an existing deployment, on its sibling's node."""
    rels = demo.batch.relations
    dep, sibling = next((r.start, r.end) for r in rels if r.type == "manages")
    node = next(r.end for r in rels if r.type == "runsOn" and r.start == sibling)
    pod = mint_iri("demo", "Pod", "fresh/pod-x7k2p")
    kg.write(FactBatch.of("test", [Entity(pod, "Pod", {"name": "pod-x7k2p"})],
                          [Relation("manages", dep, pod), Relation("runsOn", pod, node)]))
    return pod, sibling, node


def test_new_pod_gets_an_inductive_embedding_without_retraining(kg: KnowledgeGraph) -> None:
    demo = generate_demo(7)
    kg.write(demo.batch)
    triples = graph_triples(kg.snapshot)
    assert len(triples) == len(demo.batch.relations)  # the demo has no events to leave out
    with pytest.raises(ModelMissing, match="autocnc train"):
        KGEModel.load(kg.settings.data_dir, "nodepiece")
    trained = train_kge(triples, replace(TINY, model="nodepiece"),
                        watermark=kg.snapshot.watermark)
    version = trained.save(kg.settings.data_dir)
    assert version.version == "v0001" and version.meta["triples"] == len(triples)
    assert version.meta["config"]["model"] == "nodepiece" and len(version.meta["losses"]) == 3

    pod, sibling, node = new_pod(kg, demo)
    model = KGEModel.load(kg.settings.data_dir, "nodepiece")  # as a fresh process would
    assert pod not in model.entity_to_id
    vectors = model.embed_graph(graph_triples(kg.snapshot))
    assert pod in vectors and np.isfinite(vectors[pod]).all()
    # same relations as its sibling (manages, runsOn): alike; unlike the node it runs on
    assert cos(vectors[pod], vectors[sibling]) > 0.99
    assert cos(vectors[pod], vectors[node]) < cos(vectors[pod], vectors[sibling]) - 0.05
    # the trained entities keep their vectors in the new graph
    assert cos(vectors[sibling], model.entity_vectors()[sibling]) > 0.99
    assert ModelStore(kg.settings.data_dir, "nodepiece").versions() == ["v0001"]
    with pytest.raises(ValueError, match="transductive"):
        replace(model, config=replace(model.config, model="rotate")).embed_graph(triples)


def test_refresh_continues_from_the_current_version(kg: KnowledgeGraph) -> None:
    demo = generate_demo(7)
    kg.write(demo.batch)
    first = train_models(kg, ["rotate"], epochs=3, dim=8)[0]
    assert (first["version"], first["mode"]) == ("v0001", "full")
    before = KGEModel.load(kg.settings.data_dir, "rotate")
    pod, sibling, _ = new_pod(kg, demo)
    second = train_models(kg, ["rotate"], refresh=True, epochs=1)[0]
    assert (second["version"], second["mode"], second["parent"]) == ("v0002", "incremental",
                                                                    "v0001")
    after = KGEModel.load(kg.settings.data_dir, "rotate")
    assert pod in after.entity_to_id and pod not in before.entity_to_id
    assert after.entity_to_id[sibling] == before.entity_to_id[sibling]  # ids kept
    old, new = before.entity_vectors()[sibling], after.entity_vectors()[sibling]
    assert cos(old, new) > 0.9  # started from the old vector, one epoch moved it a little
    assert after.meta["epochs"] == 1 and after.meta["watermark"] == kg.snapshot.watermark
    # the inductive model refreshes too (its token assignment is recomputed, not copied)
    train_models(kg, ["nodepiece"], epochs=1, dim=8)
    refreshed = train_models(kg, ["nodepiece"], refresh=True, epochs=1)[0]
    assert (refreshed["version"], refreshed["mode"]) == ("v0002", "incremental")


def test_link_prediction_split_keeps_held_out_triples_predictable() -> None:
    triples = [(f"e{i}", "calls", f"e{(i + 1) % 30}") for i in range(30)] + \
        [(f"e{i}", "dependsOn", f"e{(i + 7) % 30}") for i in range(30)]
    train, valid, test = split_triples(triples, seed=1)
    assert len(valid) == len(test) == 6 and len(train) == 48
    seen = {x for h, _, t in train for x in (h, t)}
    assert all(h in seen and t in seen for h, _, t in valid + test)


def gnn_case(kg: KnowledgeGraph, demo, k: int, rng: np.random.Generator):
    """A synthetic RCA case: a link's deployments alert; the link is the cause. Signals
    overlap (the deployments have anomalies too), so what separates the cause is its
    position: its neighbours are the symptomatic ones."""
    links = sorted({r.end for r in demo.batch.relations if r.type == "routedOver"})
    link = links[k % len(links)]
    deps = sorted(r.start for r in demo.batch.relations
                  if r.type == "routedOver" and r.end == link)
    others = [links[(k + 1) % len(links)], *deps]
    cands = [link, *others]
    signals = {c: {"anomaly": float(rng.uniform(0.5, 1.0)),
                   "coverage": float(rng.uniform(0.2, 0.6))} for c in cands}
    signals[link]["coverage"] = 1.0
    return case_from_candidates(kg.snapshot, cands, signals, truth=[link])


def test_gnn_learns_root_causes_and_scores_candidates_for_rca(kg: KnowledgeGraph) -> None:
    demo = generate_demo(7)
    kg.write(demo.batch)
    rng = np.random.default_rng(0)
    cases = [gnn_case(kg, demo, k, rng) for k in range(16)]
    train, held_out = cases[:12], cases[12:]
    assert all(c.edges for c in cases)  # the deployments' routedOver edges to the link
    gnn = train_gnn(train, kg.onto, epochs=60, sources={"synthetic": len(train)})
    assert ranking_metrics(gnn, held_out)["hits1"] == 1.0
    assert gnn_scores(kg, held_out[0].candidates) == {}  # nothing saved yet: no signal
    gnn.save(kg.settings.data_dir)
    case = held_out[0]
    signals = {c: dict(zip(gnn.signal_names, map(float, row), strict=True))
               for c, row in zip(case.candidates, case.signals, strict=True)}
    scores = gnn_scores(kg, case.candidates, signals)
    assert max(scores, key=scores.__getitem__) == case.candidates[0]
    assert max(scores.values()) == 1.0 and min(scores.values()) >= 0.0


def test_gnn_trains_on_confirmed_root_causes_from_feedback(kg: KnowledgeGraph) -> None:
    from reasoning.recommend import FeedbackInput, Recommender

    demo = generate_demo(7)
    kg.write(demo.batch)
    assert train_models(kg, ["gnn"])[0]["skipped"].startswith("no incident")
    link = sorted({r.end for r in demo.batch.relations if r.type == "routedOver"})[0]
    deps = sorted(r.start for r in demo.batch.relations
                  if r.type == "routedOver" and r.end == link)
    incident = mint_iri("demo", "Incident", "g1")
    anomaly = mint_iri("demo", "Anomaly", "loss/l1")
    ents = [Entity(incident, "Incident", {"name": "g1", "startTime": T0}),
            Entity(anomaly, "Anomaly", {"metricName": "packet_loss_ratio", "anomalyScore": 12.0,
                                        "startTime": T0 - timedelta(minutes=1)})]
    rels = [Relation("aboutEntity", anomaly, link)]
    for i, d in enumerate(deps):
        a = mint_iri("demo", "Alert", f"a{i}")
        ents.append(Entity(a, "Alert", {"name": "ServiceLatencyHigh", "fingerprint": f"a{i}",
                                        "alertStatus": "firing",
                                        "startTime": T0 + timedelta(seconds=20 * i)}))
        rels += [Relation("aboutEntity", a, d), Relation("partOfIncident", a, incident)]
    kg.write(FactBatch.of("test", ents, rels))
    Recommender(kg, embed=False).feedback(FeedbackInput("rootCause", link, True, incident,
                                                        agent="noc"))
    summary = train_models(kg, ["gnn"])[0]
    assert summary["version"] == "v0001" and summary["cases"] == 1
    meta = ModelStore(kg.settings.data_dir, "rca-gnn").require().meta
    assert meta["sources"]["feedback"] == 1 and meta["trainHits1"] == 1.0

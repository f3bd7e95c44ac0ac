"""The learned-signal stage of RCA (reasoning/rca/learned.py) on the demo CNC, both backends:
a trained GNN re-ranks when enabled and only then, a missing model is skipped and reported,
the configuration is validated; and fitting with a learned signal column."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ingest.demo import generate_demo
from kg.errors import ConfigError
from kg.facts import Entity, FactBatch, Relation
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from reasoning.rca import RCAService, Symptom
from reasoning.rca.engine import Candidate, Weights
from reasoning.rca.learned import LearnedSettings, apply_learned, fuse
from reasoning.rca.train import Example, fit_weights, rank_with, validate_gnn

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
GNN_ON = LearnedSettings().with_signal("gnn", enabled=True, weight=100.0)


def link_symptoms(kg: KnowledgeGraph) -> list[Symptom]:
    """Alerts on the deployments routed over the demo's first backbone link."""
    rels = kg.cypher("MATCH (d:Entity)-[:routedOver]->(l:Entity) RETURN d.iri, l.iri").rows
    link = sorted(r[1] for r in rels)[0]
    deps = sorted(d for d, lk in rels if lk == link)
    return [Symptom(d, "ServiceLatencyHigh", T0 + timedelta(seconds=20 * i))
            for i, d in enumerate(deps)]


def link_incident(kg: KnowledgeGraph) -> list[Candidate]:
    """The demo CNC with a failing backbone link (packet-loss anomaly) and alerts on the
    deployments routed over it; RCA's candidates, best first."""
    demo = generate_demo(7)
    kg.write(demo.batch)
    link = sorted({r.end for r in demo.batch.relations if r.type == "routedOver"})[0]
    deps = sorted(r.start for r in demo.batch.relations
                  if r.type == "routedOver" and r.end == link)
    anomaly = mint_iri("demo", "Anomaly", "loss/l0")
    kg.write(FactBatch.of("test", [Entity(anomaly, "Anomaly", {
        "metricName": "packet_loss_ratio", "anomalyScore": 12.0, "direction": "up",
        "startTime": T0 - timedelta(minutes=1)})], [Relation("aboutEntity", anomaly, link)]))
    symptoms = [Symptom(d, "ServiceLatencyHigh", T0 + timedelta(seconds=20 * i))
                for i, d in enumerate(deps)]
    candidates = RCAService(kg, ranker="signals").analyse(symptoms).candidates
    assert candidates[0].entity == link and len(candidates) >= 3
    return candidates


def order(cands: list[Candidate]) -> list[tuple[str, float]]:
    return [(c.entity, round(c.score, 9)) for c in cands]


def test_trained_gnn_reranks_only_when_enabled(kg: KnowledgeGraph) -> None:
    pytest.importorskip("torch_geometric")
    from reasoning.embeddings.gnn import case_from_candidates, train_gnn

    cands = link_incident(kg)
    # a confirmed root cause the engine ranks third: the GNN learns to put it first
    target = cands[2].entity
    case = case_from_candidates(kg.snapshot, [c.entity for c in cands],
                                {c.entity: c.signals for c in cands}, truth=[target])
    gnn = train_gnn([case], kg.onto, epochs=200, seed=0)
    assert max(gnn.score(case).items(), key=lambda kv: kv[1])[0] == target
    gnn.save(kg.settings.data_dir)

    off = apply_learned(kg, cands, LearnedSettings())  # the default: every learned signal off
    assert off.disabled == ["gnn"] and not off.applied and not off.skipped
    assert order(off.candidates) == order(cands) and "gnn" not in off.candidates[0].signals

    on = apply_learned(kg, cands, GNN_ON)
    assert on.applied == {"gnn": "v0001"} and not on.skipped
    assert on.candidates[0].entity == target  # re-ranked by the learned signal
    assert order(apply_learned(kg, cands, GNN_ON).candidates) == order(on.candidates)
    assert {c.entity for c in on.candidates} == {c.entity for c in cands}
    for c in on.candidates:
        assert 0.0 <= c.signals["gnn"] <= 1.0
        assert c.contributions["gnn"] == pytest.approx(100.0 * c.signals["gnn"])
        assert sum(c.contributions.values()) == pytest.approx(c.score)
    assert max(c.signals["gnn"] for c in on.candidates) == 1.0
    assert [c.score for c in on.candidates] == sorted((c.score for c in on.candidates),
                                                      reverse=True)
    assert "gnn" not in cands[0].signals  # the engine's candidates are left as they were

    # Through the service: off by default, on when the weights file says so.
    symptoms = link_symptoms(kg)
    default = RCAService(kg, ranker="signals").analyse(symptoms).to_json()
    assert default["learned"]["disabled"] == ["gnn"]
    assert default["candidates"][0]["entity"] == cands[0].entity
    Weights().save(kg.settings.data_dir / "models" / "rca-weights.json",
                   learned=GNN_ON.to_json())
    fused = RCAService(kg, ranker="signals").analyse(symptoms).to_json()
    assert fused["learned"]["applied"] == {"gnn": "v0001"}
    assert fused["candidates"][0]["entity"] == target
    assert "gnn" in fused["candidates"][0]["contributions"]


def test_missing_model_is_skipped_and_reported(kg: KnowledgeGraph) -> None:
    cands = link_incident(kg)
    out = apply_learned(kg, cands, GNN_ON)
    assert set(out.skipped) == {"gnn"} and not out.applied
    assert "autocnc train" in out.skipped["gnn"] or "[ml]" in out.skipped["gnn"]
    assert order(out.candidates) == order(cands)
    assert out.to_json()["skipped"] == out.skipped


def test_fuse_adds_replaces_and_breaks_ties_by_iri() -> None:
    def cand(iri: str, score: float) -> Candidate:
        return Candidate(iri, "Pod", score, {"anomaly": score}, {"anomaly": score}, "", [], [])

    cands = [cand("b", 1.0), cand("a", 0.5), cand("c", 0.5)]
    fused = fuse(cands, {"gnn": {"a": 1.0, "c": 1.0}}, {"gnn": 0.5})
    assert [c.entity for c in fused] == ["a", "b", "c"]  # a and b tie at 1.0: by IRI
    again = fuse(fused, {"gnn": {"c": 1.0}}, {"gnn": 2.0})  # replaces the old value
    assert [(c.entity, c.score) for c in again] == [("c", 2.5), ("b", 1.0), ("a", 0.5)]


def test_learned_settings_live_in_the_weights_file_and_are_validated(tmp_path: Path) -> None:
    path = tmp_path / "rca-weights.json"
    assert LearnedSettings.load(path).enabled == []  # no file: the defaults, all off
    Weights().save(path, learned=GNN_ON.to_json())
    loaded = LearnedSettings.load(path)
    assert loaded.enabled == ["gnn"] and loaded.signals["gnn"].weight == 100.0
    assert Weights.load(path).values == Weights().values  # the engine's part is unaffected
    for bad, match in ([{"kge": {"enabled": True}}, "unknown learned signal 'kge'"],
                       [{"gnn": {"enabled": "yes"}}, r"learned.gnn.enabled"],
                       [{"gnn": {"weight": -1}}, r"learned.gnn.weight must be a number >= 0"],
                       [{"gnn": {"enabled": True, "wieght": 2}}, "keys"]):
        path.write_text(json.dumps({"formatVersion": 1, "weights": {}, "learned": bad}))
        with pytest.raises(ConfigError, match=match):
            LearnedSettings.load(path)


def test_a_learned_column_is_fitted_with_the_engine_signals() -> None:
    rng = np.random.default_rng(3)
    examples = []
    for i in range(12):  # the engine's signals are noise; the extra column finds the cause
        ex = Example(tuple(f"e{j}" for j in range(5)), rng.uniform(0, 1, (5, 10)), i % 5)
        learned = np.where(np.arange(5) == i % 5, 1.0, rng.uniform(0, 0.5, 5))
        examples.append(ex.with_signal("gnn", learned))
    w = fit_weights(examples)
    assert set(w.values) >= {"gnn", "anomaly"} and w.values["gnn"] > 3 * max(
        v for k, v in w.values.items() if k != "gnn")
    assert all(rank_with(e, w) == 1 for e in examples)
    with pytest.raises(ValueError, match="two or more groups"):
        validate_gnn(examples, [], None)  # type: ignore[arg-type]

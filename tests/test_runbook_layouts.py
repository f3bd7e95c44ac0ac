"""Any Markdown file is a runbook: files without sections, titles naming other runbooks,
one alert name in two folders, the same file twice — none overwrites another, every skip
says why. Both backends."""

from __future__ import annotations

from pathlib import Path

from ingest import inputs_for, run_ingest
from ingest.base import Input
from ingest.runbook_markdown import parse_runbook
from ingest.runbooks import Duplicate, runbook_keys
from kg.graph import KnowledgeGraph
from ontology import mint_iri

SCOPE = "ops"
RULES = """groups:
- name: disks
  rules:
  - alert: DiskFull
    expr: node_filesystem_avail_bytes / node_filesystem_size_bytes < 0.05
    labels: {severity: critical}
    annotations: {summary: A disk is full.}
"""


def plans(kg: KnowledgeGraph) -> dict[str, str]:
    rows = kg.cypher("MATCH (p:Entity) WHERE 'OperationPlan' IN p.types AND "
                     "p.validTo IS NULL RETURN p.iri, p.name").rows
    return {iri: name for iri, name in rows}


def test_every_markdown_file_is_a_runbook_and_none_overwrites_another(
        kg: KnowledgeGraph, tmp_path: Path) -> None:
    books = tmp_path / "books"
    (books / "node").mkdir(parents=True)
    (books / "general").mkdir()
    # no sections at all: one section, steps from its list
    (books / "node" / "DiskFull.md").write_text(
        "# DiskFull\n\nA volume is nearly full.\n\n- Find big files: `du -sh /var/*`\n"
        "- Remove them.\n")
    # the same alert in another folder: kept apart by its path
    (books / "general" / "DiskFull.md").write_text(
        "# DiskFull\n\n## Meaning\n\nThe disk is full.\n\n## Mitigation\n\n- Grow it.\n")
    # a heading that names another runbook: the title, not the identity
    (books / "node" / "DiskAlmostFull.md").write_text(
        "---\ntitle: Disk almost full\n---\n# DiskFull\n\n## Meaning\n\nSoon full.\n")
    (books / "node" / "_index.md").write_text("---\ntitle: node\n---\n")
    report = run_ingest(kg, "runbooks", inputs_for("runbooks", [str(books)]), scope=SCOPE,
                        options={"embed": False})
    assert [(Path(s.file).name, "no text" in s.reason) for s in report.skipped] == [
        ("_index.md", True)]
    assert plans(kg) == {
        mint_iri(SCOPE, "OperationPlan", "node/DiskFull"): "DiskFull",
        mint_iri(SCOPE, "OperationPlan", "general/DiskFull"): "DiskFull",
        mint_iri(SCOPE, "OperationPlan", "node/DiskAlmostFull"): "DiskAlmostFull"}
    assert report.counts["sharedNames"] == 1 and "DiskFull" in report.notes[0]
    steps = kg.cypher("MATCH (p:Entity)-[:hasStep]->(s:Entity) WHERE p.iri = $p "
                      "RETURN s.stepOrder, s.command ORDER BY s.stepOrder",
                      {"p": mint_iri(SCOPE, "OperationPlan", "node/DiskFull")}).rows
    assert steps == [[1, None], [2, "du -sh /var/*"], [3, None]]  # its paragraph, its items
    attrs = kg.cypher("MATCH (p:Entity) WHERE p.iri = $p RETURN p.attributes",
                      {"p": mint_iri(SCOPE, "OperationPlan", "node/DiskAlmostFull")}).rows
    assert '"title": "DiskFull"' in attrs[0][0] and '"path": "node/DiskAlmostFull.md"' in \
        attrs[0][0]
    # rules ingested afterwards link every runbook named like the alert
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    linked = run_ingest(kg, "alerts", inputs_for("alerts", [str(rules)]), scope=SCOPE)
    assert linked.counts["runbooksLinked"] == 2
    ends = kg.cypher("MATCH (p:Entity)-[:mitigates]->(d:Entity) RETURN p.iri").rows
    assert sorted(r[0] for r in ends) == sorted(
        mint_iri(SCOPE, "OperationPlan", f"{d}/DiskFull") for d in ("general", "node"))
    # again: nothing changes, nothing is skipped but the index page
    again = run_ingest(kg, "runbooks", inputs_for("runbooks", [str(books)]), scope=SCOPE,
                       options={"embed": False})
    assert (again.created, again.updated, len(again.skipped)) == (0, 0, 1)


def test_keys_follow_the_path_and_a_file_given_twice_is_skipped(tmp_path: Path) -> None:
    for d in ("a/x", "b/x", "y"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "R.md").write_text("# R\n\ntext\n")
    files = [tmp_path / "a/x/R.md", tmp_path / "b/x/R.md", tmp_path / "y/R.md",
             tmp_path / "y/../y/R.md"]
    keys = runbook_keys([Input.file(f) for f in files])
    assert keys[:3] == ["a/x/R", "b/x/R", "y/R"]  # a clash takes more of the path
    assert keys[3] == Duplicate(str(tmp_path / "y/R.md"))


def test_parser_reads_any_markdown() -> None:
    book = parse_runbook("Restart the service when it hangs:\n\n```\nsystemctl restart x\n```\n",
                         "restart-x")
    assert (book.name, book.title, list(book.sections)) == ("restart-x", None, ["Overview"])
    assert [(s.text, s.command) for s in book.steps] == [
        ("Restart the service when it hangs:", "systemctl restart x")]
    # text before the first section is kept, and describes (no steps)
    intro = parse_runbook("# KubeX\n\nAbout X.\n\n## Mitigation\n\n- Fix X.\n", "KubeX")
    assert intro.sections == {"Overview": "About X.", "Mitigation": "- Fix X."}
    assert [s.section for s in intro.steps] == ["Mitigation"]
    # the stem names the alert; a heading that is no alert name is only the title
    assert parse_runbook("# Disk Full\n\ntext", "DiskFull").name == "DiskFull"
    assert parse_runbook("# DiskFull\n\ntext", "disk-full").name == "DiskFull"

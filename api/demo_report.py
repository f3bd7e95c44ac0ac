"""``autocnc demo``: load the demo CNC and answer the competency questions in both languages."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ingest.demo import DemoCNC, generate_demo
from kg.config import Settings
from kg.facts import FactBatch
from kg.graph import KnowledgeGraph
from ontology.competency import competency_questions


def demo_params(d: DemoCNC) -> dict[str, Any]:
    """Parameters for the competency questions, chosen from the generated CNC."""
    edge = d.single_homed[0]
    link = next(lk for (a, b), lk in d.links.items() if edge in (a, b))
    return {"link": link, "site": d.sites["cloud-shanghai"], "maxLatencyMs": 10.0,
            "minUtilisation": 0.7, "cluster": d.clusters["cloud-beijing"]}


def run_demo(settings: Settings, seed: int, console: Console) -> dict[str, Any]:
    """Load the demo, answer the competency questions, explain injected faults; prints the
    report on ``console`` and returns it as a document (``autocnc demo -o json``)."""
    d = generate_demo(seed, settings.iri_base)
    kg = KnowledgeGraph.open(settings, writer=True)
    try:
        t0 = time.perf_counter()
        ents, rels = list(d.batch.entities), list(d.batch.relations)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("loading the demo CNC", total=len(d.batch))
            step = 500
            for i in range(0, len(ents), step):
                kg.write(FactBatch.of(d.batch.source, ents[i:i + step]))
                progress.advance(task, len(ents[i:i + step]))
            for i in range(0, len(rels), step):
                kg.write(FactBatch.of(d.batch.source, relations=rels[i:i + step]))
                progress.advance(task, len(rels[i:i + step]))
        took = time.perf_counter() - t0
        h = kg.health()
        console.print(f"[bold]AutoCNC demo[/bold] - {len(ents)} entities, {len(rels)} relations "
                      f"loaded into the {settings.store} store at "
                      f"{settings.neo4j_uri if settings.store == 'neo4j' else settings.data_dir} "
                      f"in {took:.1f} s; "
                      f"RDF view lag {h['views']['rdf']['lag']}")
        counts = kg.cypher("MATCH (n:Entity) RETURN n.kind AS kind, count(*) AS n "
                           "ORDER BY n DESC, kind")
        console.print("entities by type: " + ", ".join(f"{k} {n}" for k, n in counts.rows))
        params = demo_params(d)
        table = Table("question", "Cypher", "SPARQL", "agree", "first answers")
        for column in table.columns:
            column.overflow = "fold"
        answers = []
        for q in competency_questions():
            p = {k: params[k] for k in q.params}
            cy = [r[0] for r in kg.cypher(q.cypher_for(settings.store), p).rows]
            sp = [r[0] for r in kg.sparql(q.sparql, p).rows]
            short = ", ".join(a.rsplit("/", 1)[-1] for a in cy[:3]) + (" ..." if len(cy) > 3
                                                                          else "")
            table.add_row(q.question, str(len(cy)), str(len(sp)),
                          "yes" if cy == sp else "[red]NO[/red]", short)
            answers.append({"question": q.question, "cypher": len(cy), "sparql": len(sp),
                            "agree": cy == sp, "answers": cy})
        console.print(table)
        console.print("parameters: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    finally:
        kg.close()
    # The server takes the data directory over to receive the alerts of injected faults.
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.demo_faults import inject_and_explain

    console.print("\n[bold]Root-cause analysis of injected faults[/bold] (alerts through "
                  "the Alertmanager webhook, RCA over HTTP)")
    with TestClient(create_app(settings)) as client:
        hits = inject_and_explain(client, d, console)
    console.print(f"\nRCA ranked the injected cause first in {sum(hits)} of {len(hits)} faults")
    return {"dataDir": str(settings.data_dir), "entities": len(ents), "relations": len(rels),
            "loadSeconds": round(took, 3), "parameters": params, "questions": answers,
            "faults": {"injected": len(hits), "rankedFirst": sum(hits)}}

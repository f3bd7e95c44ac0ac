"""Link CSV (format version 1): undirected links between devices, one per row.

The topology CSV of the causal learner (docs/causal.md): columns ``source`` and ``target``
(required: natural keys of resources in the scope) and ``relation`` (optional: an ontology
object property, default ``connectsTo``). Each end is an entity of class ``entity_kind``
(option, default ``NetworkNode``, the class alarm logs refer to), created with its name
unless the graph has it already from another source. Detected as a ``.csv`` whose header has
``source`` and ``target``.
"""

from __future__ import annotations

from collections.abc import Iterator

from ingest.base import IngestContext, Input, Record
from ingest.topology.edge_csv import EdgeTable, read_table
from kg.facts import Relation

REQUIRED = ("source", "target")
DEFAULT_RELATION = "connectsTo"


def looks_like_links(text: str) -> bool:
    head = [h.strip() for h in text.lstrip("\ufeff").split("\n", 1)[0].split(",")]
    return all(c in head for c in REQUIRED)


def records(ctx: IngestContext, inp: Input, scope: str, source: str) -> Iterator[Record]:
    kind = str(ctx.options.get("entity_kind") or "NetworkNode")
    onto = ctx.kg.onto
    if kind not in onto.classes:
        ctx.sink.reject(inp.name, "file", f"option entity_kind: {kind!r} is not an ontology "
                        "class")
        return
    header, rows = read_table(inp)
    table = EdgeTable(ctx, inp, header, rows, REQUIRED, scope, kind)
    for line, cells, raw in table.edges():
        rel = cells.get("relation") or DEFAULT_RELATION
        if rel not in onto.object_properties:
            ctx.sink.reject(inp.name, f"line {line}", f"column relation: {rel!r} is not an "
                            "ontology object property (e.g. connectsTo)", raw)
            continue
        yield Record(inp.name, f"line {line}", table.owned_ends(cells, source),
                     [Relation(rel, table.iris[cells["source"]], table.iris[cells["target"]],
                               {}, source)], raw)

"""Link CSV (format version 1): undirected links between devices, one per row.

The topology CSV of the causal learner (docs/causal.md): columns ``source`` and ``target``
(required: natural keys of resources in the scope) and ``relation`` (optional: an ontology
object property, default ``connectsTo``). Each end is an entity of class ``entity_kind``
(option, default ``NetworkNode``, the class alarm logs refer to), created with its name
unless the graph has it already from another source. Detected as a ``.csv`` whose header has
``source`` and ``target``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from ingest.base import IngestContext, Input, Record
from kg.facts import Entity, Relation

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
    reader = csv.reader(io.StringIO(inp.read_text().lstrip("\ufeff")))
    header = [h.strip() for h in next(reader, [])]
    rows = list(enumerate(reader, 2))
    names = {c.strip() for _, r in rows if len(r) == len(header) for c in
             (r[header.index(k)] for k in REQUIRED)}
    iris = {n: ctx.iri(scope, kind, n) for n in names if n}
    ctx.sink.flush()
    existing, _ = ctx.kg.store.fetch(list(iris.values()), [])
    written: set[str] = set()
    for line, row in rows:
        raw = ",".join(row)
        if len(row) != len(header):
            ctx.sink.reject(inp.name, f"line {line}", f"{len(row)} fields, the header has "
                            f"{len(header)}", raw)
            continue
        cells = dict(zip(header, (c.strip() for c in row), strict=True))
        rel = cells.get("relation") or DEFAULT_RELATION
        if not cells["source"] or not cells["target"]:
            ctx.sink.reject(inp.name, f"line {line}", "source and target must not be empty",
                            raw)
            continue
        if rel not in onto.object_properties:
            ctx.sink.reject(inp.name, f"line {line}", f"column relation: {rel!r} is not an "
                            "ontology object property (e.g. connectsTo)", raw)
            continue
        entities = []
        for name in (cells["source"], cells["target"]):
            iri, old = iris[name], existing.get(iris[name])
            if iri not in written and (old is None or old.source == source):
                entities.append(Entity(iri, kind, {"name": name}, source))
                written.add(iri)
        yield Record(inp.name, f"line {line}", entities,
                     [Relation(rel, iris[cells["source"]], iris[cells["target"]], {}, source)],
                     raw)

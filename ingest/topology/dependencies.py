"""Service dependency CSV (format version 1): one ``calls`` relation per row.

Columns: ``caller`` and ``callee`` (required: application service names in the scope);
any other column becomes a property of the ``calls`` edge — typed into the ontology edge
property of the same name (``port``, ``protocol``, ``callRate``, ``weight``, ``latencyMs``,
...), otherwise kept in the edge's ``attributes`` JSON object (values as text). Empty cells
are left out. Callers and callees are application ``Service`` entities (key: the name), the
same ones Kubernetes Services create; a service not yet in the graph is created by this
file (and belongs to it).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from ingest.base import IngestContext, Input, Record
from kg.facts import Entity, Relation, coerce_value

REQUIRED = ("caller", "callee")


def records(ctx: IngestContext, inp: Input, scope: str, source: str) -> Iterator[Record]:
    reader = csv.reader(io.StringIO(inp.read_text().lstrip("\ufeff")))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        ctx.sink.reject(inp.name, "line 1", f"missing required column(s) {', '.join(missing)} "
                        f"(header: {', '.join(header) or 'empty'})")
        return
    onto = ctx.kg.onto
    typed = {h: onto.datatype_properties[h] for h in header
             if h in onto.datatype_properties and onto.datatype_properties[h].edge}
    rows = list(enumerate(reader, 2))
    names = {r[header.index(c)].strip() for _, r in rows if len(r) == len(header)
             for c in REQUIRED}
    iris = {n: ctx.iri(scope, "Service", n) for n in names if n}
    ctx.sink.flush()  # services of manifests read just before must be visible
    existing, _ = ctx.kg.store.fetch(list(iris.values()), [])
    written: set[str] = set()
    for line, row in rows:
        raw = ",".join(row)
        if len(row) != len(header):
            ctx.sink.reject(inp.name, f"line {line}", f"{len(row)} fields, the header has "
                            f"{len(header)}", raw)
            continue
        cells = dict(zip(header, (c.strip() for c in row), strict=True))
        if not cells["caller"] or not cells["callee"]:
            ctx.sink.reject(inp.name, f"line {line}", "caller and callee must not be empty", raw)
            continue
        try:
            props = _edge_props(cells, typed)
        except ValueError as exc:
            ctx.sink.reject(inp.name, f"line {line}", str(exc), raw)
            continue
        a, b = iris[cells["caller"]], iris[cells["callee"]]
        entities = []
        for name, iri in ((cells["caller"], a), (cells["callee"], b)):
            old = existing.get(iri)
            # Write a service only if this file owns it: another source's service keeps
            # its provenance, and this file's snapshot never retires it.
            if iri not in written and (old is None or old.source == source):
                entities.append(Entity(iri, "Service", {"name": name}, source))
                written.add(iri)
        yield Record(inp.name, f"line {line}", entities,
                     [Relation("calls", a, b, props, source)], raw)


def _edge_props(cells: dict[str, str], typed: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for name, text in cells.items():
        if name in REQUIRED or text == "":
            continue
        prop = typed.get(name)
        if prop is None:
            extra[name] = text
            continue
        value: Any = text
        if prop.kind in ("integer", "double"):
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"column {name}: {text!r} is not a number") from None
        elif prop.kind == "boolean":
            value = text.lower() in ("true", "1", "yes")
        try:
            props[name] = coerce_value(prop.kind, value)
        except ValueError as exc:
            raise ValueError(f"column {name}: {exc}") from None
    if extra:
        props["attributes"] = json.dumps(extra, sort_keys=True, ensure_ascii=False)
    return props

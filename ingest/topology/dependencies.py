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

import json
from collections.abc import Iterator
from typing import Any

from ingest.base import IngestContext, Input, Record
from ingest.topology.edge_csv import EdgeTable, read_table
from kg.facts import Relation, coerce_value

REQUIRED = ("caller", "callee")


def records(ctx: IngestContext, inp: Input, scope: str, source: str) -> Iterator[Record]:
    header, rows = read_table(inp)
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        ctx.sink.reject(inp.name, "line 1", f"missing required column(s) {', '.join(missing)} "
                        f"(header: {', '.join(header) or 'empty'})")
        return
    onto = ctx.kg.onto
    typed = {h: onto.datatype_properties[h] for h in header
             if h in onto.datatype_properties and onto.datatype_properties[h].edge}
    table = EdgeTable(ctx, inp, header, rows, ("caller", "callee"), scope, "Service")
    for line, cells, raw in table.edges():
        try:
            props = _edge_props(cells, typed)
        except ValueError as exc:
            ctx.sink.reject(inp.name, f"line {line}", str(exc), raw)
            continue
        a, b = table.iris[cells["caller"]], table.iris[cells["callee"]]
        yield Record(inp.name, f"line {line}", table.owned_ends(cells, source),
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

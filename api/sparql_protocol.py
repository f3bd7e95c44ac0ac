"""SPARQL 1.1 Protocol result serialisation (JSON, CSV, TSV; N-Triples for graphs)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyoxigraph as ox

from kg.store import QueryResult

JSON = "application/sparql-results+json"
CSV = "text/csv"
TSV = "text/tab-separated-values"
NTRIPLES = "application/n-triples"


def negotiate(accept: str | None, *, graph: bool) -> str:
    """Pick the response type from an Accept header (default JSON, N-Triples for graphs)."""
    offered = [NTRIPLES, "text/turtle"] if graph else [JSON, "application/json", CSV, TSV]
    for part in (accept or "").split(","):
        mime = part.split(";")[0].strip().lower()
        if mime in offered:
            return NTRIPLES if mime == "text/turtle" else (JSON if mime == "application/json"
                                                          else mime)
    return offered[0]


def _json_term(t: Any) -> dict[str, str]:
    if isinstance(t, ox.NamedNode):
        return {"type": "uri", "value": t.value}
    if isinstance(t, ox.BlankNode):
        return {"type": "bnode", "value": t.value}
    out = {"type": "literal", "value": t.value}
    if t.language:
        out["xml:lang"] = t.language
    elif t.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
        out["datatype"] = t.datatype.value
    return out


def serialise(res: QueryResult, mime: str) -> str:
    if res.columns == ["ask"]:
        return json.dumps({"head": {}, "boolean": bool(res.rows[0][0])})
    if mime == NTRIPLES:
        return "".join(f"{s} {p} {o} .\n" for s, p, o in res.rows)
    if mime == JSON:
        return json.dumps({
            "head": {"vars": res.columns},
            "results": {"bindings": [
                {c: _json_term(t) for c, t in zip(res.columns, row, strict=True) if t is not None}
                for row in res.rows
            ]},
        })
    buf = io.StringIO()
    if mime == CSV:
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(res.columns)
        for row in res.rows:
            w.writerow(["" if t is None else t.value for t in row])
    else:
        buf.write("\t".join("?" + c for c in res.columns) + "\n")
        for row in res.rows:
            buf.write("\t".join("" if t is None else str(t) for t in row) + "\n")
    return buf.getvalue()

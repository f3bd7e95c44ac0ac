"""SPARQL query results in the formats of the SPARQL 1.1 Protocol.

Solutions (SELECT) and booleans (ASK) as SPARQL Query Results JSON, XML, CSV and TSV
(a boolean in CSV / TSV is the one word ``true`` or ``false``, as Oxigraph writes it);
graphs (CONSTRUCT, DESCRIBE) as Turtle, N-Triples, JSON-LD or RDF/XML, written by
Oxigraph with the query's own prefixes. The query worker serialises (see
:func:`answer`), so a query's time and memory limits hold for its serialisation too; the
server picks the format for each kind of result from the request (``api.sparql_protocol``)
and sends the choice with the query, and the worker uses the one of the query's kind, or
raises :class:`~kg.errors.NotAcceptable` (406) before running the query.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph as ox

from kg.errors import NotAcceptable
from kg.query import sparql_guard
from kg.query.dataset import Dataset
from kg.store.base import QueryResult

if TYPE_CHECKING:
    from kg.rdf_view import RdfView

JSON = "application/sparql-results+json"
XML = "application/sparql-results+xml"
CSV = "text/csv"
TSV = "text/tab-separated-values"
TURTLE = "text/turtle"
NTRIPLES = "application/n-triples"
JSONLD = "application/ld+json"
RDFXML = "application/rdf+xml"

# The kind of result of each query form, and the formats of each kind (preferred first).
KINDS = {"SELECT": "solutions", "ASK": "boolean", "CONSTRUCT": "graph", "DESCRIBE": "graph"}
FORMATS: dict[str, tuple[str, ...]] = {
    "solutions": (JSON, XML, CSV, TSV),
    "boolean": (JSON, XML, CSV, TSV),
    "graph": (TURTLE, NTRIPLES, JSONLD, RDFXML),
}
_RDF_FORMATS = {TURTLE: ox.RdfFormat.TURTLE, NTRIPLES: ox.RdfFormat.N_TRIPLES,
                JSONLD: ox.RdfFormat.JSON_LD, RDFXML: ox.RdfFormat.RDF_XML}
_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
_RESULTS_NS = "http://www.w3.org/2005/sparql-results#"
# Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Answer:
    """A query's results, serialised."""

    media_type: str
    body: bytes
    truncated: bool  # the row cap cut the results


def answer(view: RdfView, query: str, formats: Mapping[str, str | None], *,
           dataset: Dataset | None, base_iri: str | None, timeout_s: float,
           max_rows: int) -> Answer:
    """Run ``query`` on ``view`` and serialise its results in the format ``formats`` gives
    for their kind (solutions, boolean, graph); NotAcceptable when it gives none."""
    shape = sparql_guard.analyse(query)
    kind = KINDS[shape.form]
    mime = formats.get(kind)
    if mime is None:
        raise NotAcceptable(f"a {shape.form} query has {kind} results, served as "
                            f"{', '.join(FORMATS[kind])}; none of them is acceptable to "
                            "this request (Accept header, format or output parameter)")
    res = view.query(query, timeout_s=timeout_s, max_rows=max_rows, terms=True,
                     dataset=dataset, base_iri=base_iri)
    return Answer(mime, serialise(res, kind, mime, dict(shape.prefixes)), res.truncated)


def serialise(res: QueryResult, kind: str, mime: str,
              prefixes: Mapping[str, str] | None = None) -> bytes:
    """``res`` (rows of Oxigraph terms) in ``mime``, one of ``FORMATS[kind]``."""
    if mime not in FORMATS[kind]:
        raise ValueError(f"{mime} is not a format of {kind} results")
    if kind == "graph":
        return _graph(res.rows, mime, prefixes or {})
    if kind == "boolean":
        return _boolean(bool(res.rows[0][0]), mime)
    writer = {JSON: _json, XML: _xml, CSV: _csv, TSV: _tsv}[mime]
    return writer(res.columns, res.rows).encode("utf-8")


# -- graphs ----------------------------------------------------------------------------------

def _graph(rows: Sequence[Sequence[Any]], mime: str, prefixes: Mapping[str, str]) -> bytes:
    triples = [ox.Triple(s, p, o) for s, p, o in rows]
    if mime == RDFXML:
        _check_xml(o for _, _, o in rows)
    try:
        out = ox.serialize(triples, format=_RDF_FORMATS[mime], prefixes=dict(prefixes))
    except (ValueError, SyntaxError) as exc:  # e.g. a predicate RDF/XML cannot write
        raise NotAcceptable(f"the graph cannot be written as {mime}: {exc}; ask for "
                            f"{TURTLE} or {NTRIPLES}") from exc
    assert out is not None  # no output stream given: the bytes are returned
    return out


# -- booleans --------------------------------------------------------------------------------

def _boolean(value: bool, mime: str) -> bytes:
    word = "true" if value else "false"
    if mime == JSON:
        return json.dumps({"head": {}, "boolean": value}).encode()
    if mime == XML:
        return (f'<?xml version="1.0"?>\n<sparql xmlns="{_RESULTS_NS}">\n  <head/>\n'
                f"  <boolean>{word}</boolean>\n</sparql>\n").encode()
    return f"{word}\n".encode()


# -- solutions -------------------------------------------------------------------------------

def _json(columns: list[str], rows: list[list[Any]]) -> str:
    return json.dumps({
        "head": {"vars": columns},
        "results": {"bindings": [
            {c: _json_term(t) for c, t in zip(columns, row, strict=True) if t is not None}
            for row in rows]},
    })


def _json_term(t: Any) -> dict[str, Any]:
    if isinstance(t, ox.NamedNode):
        return {"type": "uri", "value": t.value}
    if isinstance(t, ox.BlankNode):
        return {"type": "bnode", "value": t.value}
    if isinstance(t, ox.Triple):
        return {"type": "triple", "value": {
            "subject": _json_term(t.subject), "predicate": _json_term(t.predicate),
            "object": _json_term(t.object)}}
    out = {"type": "literal", "value": t.value}
    if t.language:
        out["xml:lang"] = t.language
    elif t.datatype.value != _XSD_STRING:
        out["datatype"] = t.datatype.value
    return out


def _xml(columns: list[str], rows: list[list[Any]]) -> str:
    _check_xml(t for row in rows for t in row)
    out = [f'<?xml version="1.0"?>\n<sparql xmlns="{_RESULTS_NS}">\n  <head>\n']
    out += [f"    <variable name={quoteattr(c)}/>\n" for c in columns]
    out.append("  </head>\n  <results>\n")
    for row in rows:
        out.append("    <result>\n")
        out += [f"      <binding name={quoteattr(c)}>{_xml_term(t)}</binding>\n"
                for c, t in zip(columns, row, strict=True) if t is not None]
        out.append("    </result>\n")
    out.append("  </results>\n</sparql>\n")
    return "".join(out)


def _xml_term(t: Any) -> str:
    if isinstance(t, ox.NamedNode):
        return f"<uri>{escape(t.value)}</uri>"
    if isinstance(t, ox.BlankNode):
        return f"<bnode>{escape(t.value)}</bnode>"
    if isinstance(t, ox.Triple):
        return (f"<triple><subject>{_xml_term(t.subject)}</subject><predicate>"
                f"{_xml_term(t.predicate)}</predicate><object>{_xml_term(t.object)}"
                "</object></triple>")
    if t.language:
        attr = f" xml:lang={quoteattr(t.language)}"
    elif t.datatype.value != _XSD_STRING:
        attr = f" datatype={quoteattr(t.datatype.value)}"
    else:
        attr = ""
    return f"<literal{attr}>{escape(t.value)}</literal>"


def _check_xml(terms: Any) -> None:
    for t in terms:
        if isinstance(t, ox.Literal) and _NOT_XML.search(t.value):
            raise NotAcceptable(f"a value holds a control character that XML 1.0 cannot "
                                f"carry ({t.value[:80]!r}); ask for JSON, CSV, TSV, Turtle "
                                "or N-Triples")


def _csv(columns: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([_csv_term(t) for t in row])
    return buf.getvalue()


def _csv_term(t: Any) -> str:
    if t is None:
        return ""
    if isinstance(t, ox.BlankNode):
        return f"_:{t.value}"
    if isinstance(t, ox.Triple):
        return str(t)
    return str(t.value)


def _tsv(columns: list[str], rows: list[list[Any]]) -> str:
    lines = ["\t".join("?" + c for c in columns)]
    # terms as in SPARQL / N-Triples; a tab inside a literal is escaped like a newline
    lines += ["\t".join("" if t is None else str(t).replace("\t", "\\t") for t in row)
              for row in rows]
    return "\n".join(lines) + "\n"


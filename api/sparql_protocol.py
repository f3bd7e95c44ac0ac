"""The SPARQL 1.1 Protocol's query operation: what a request asks, and in which format.

A request carries exactly one ``query`` (in the URL for GET, in the URL or the form body
for a form POST, or as the body of an ``application/sparql-query`` POST, UTF-8), any number
of ``default-graph-uri`` / ``named-graph-uri`` (the dataset, which replaces the query's
FROM / FROM NAMED), and optionally ``format`` or ``output`` (a short name such as ``json``,
``xml``, ``csv``, ``turtle``, or a media type), which wins over the ``Accept`` header. The
endpoint is read-only: an ``update`` parameter or an ``application/sparql-update`` body is
refused with 403, as is an update sent as a query.

The format is chosen for each kind of result (solutions, boolean, graph) here, before the
query form is known; the query worker serialises in the one of the query's kind
(:mod:`kg.query.sparql_results`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyoxigraph as ox
from fastapi import HTTPException, Request
from starlette.datastructures import QueryParams

from api.content_negotiation import choose, parse_accept
from kg.errors import ForbiddenQuery
from kg.query import sparql_results as fmt
from kg.query.sparql_results import Dataset

# Names a client may use for a format besides its media type, per kind of result.
_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "solutions": {fmt.JSON: ("application/json",), fmt.XML: ("application/xml",)},
    "boolean": {fmt.JSON: ("application/json",), fmt.XML: ("application/xml",)},
    "graph": {fmt.TURTLE: ("application/x-turtle",), fmt.NTRIPLES: ("text/plain",),
              fmt.JSONLD: ("application/json",), fmt.RDFXML: ("application/xml",)},
}
# ``format`` / ``output`` short names: the media type of each kind of result they mean.
_SHORT_NAMES: dict[str, dict[str, str]] = {
    "json": {"solutions": fmt.JSON, "boolean": fmt.JSON, "graph": fmt.JSONLD},
    "xml": {"solutions": fmt.XML, "boolean": fmt.XML, "graph": fmt.RDFXML},
    "csv": {"solutions": fmt.CSV, "boolean": fmt.CSV},
    "tsv": {"solutions": fmt.TSV, "boolean": fmt.TSV},
    "turtle": {"graph": fmt.TURTLE}, "ttl": {"graph": fmt.TURTLE}, "n3": {"graph": fmt.TURTLE},
    "ntriples": {"graph": fmt.NTRIPLES}, "n-triples": {"graph": fmt.NTRIPLES},
    "nt": {"graph": fmt.NTRIPLES},
    "json-ld": {"graph": fmt.JSONLD}, "jsonld": {"graph": fmt.JSONLD},
    "rdf": {"graph": fmt.RDFXML}, "rdfxml": {"graph": fmt.RDFXML},
    "rdf+xml": {"graph": fmt.RDFXML}, "rdf/xml": {"graph": fmt.RDFXML},
}
QUERY_TYPE = "application/sparql-query"
UPDATE_TYPE = "application/sparql-update"
FORM_TYPE = "application/x-www-form-urlencoded"
READ_ONLY = "this endpoint is read-only: SPARQL updates are not allowed"


@dataclass(frozen=True)
class ProtocolRequest:
    """One query operation: the query, the dataset it names, the format of each kind."""

    query: str
    dataset: Dataset | None
    formats: Mapping[str, str | None]
    base_iri: str  # the endpoint's URL: relative IRIs in the query resolve against it


def from_params(params: Mapping[str, Sequence[str]], accept: str | None, base_iri: str,
                direct_query: str | None = None) -> ProtocolRequest:
    """The request of ``params`` (every value of each parameter, URL and form body
    together); ``direct_query`` is the body of an ``application/sparql-query`` POST."""
    if params.get("update"):
        raise ForbiddenQuery(READ_ONLY)
    queries = list(params.get("query", ()))
    if direct_query is not None:
        queries.append(direct_query)
    if len(queries) > 1:
        raise HTTPException(400, "more than one query in the request (give exactly one "
                                 "'query' parameter or body)")
    if not queries or not queries[0].strip():
        raise HTTPException(400, "missing SPARQL query (the 'query' parameter, or an "
                                 f"{QUERY_TYPE} body)")
    return ProtocolRequest(queries[0], _dataset(params), negotiate(accept, _format(params)),
                           base_iri)


def negotiate(accept: str | None, format_param: str | None) -> dict[str, str | None]:
    """The media type each kind of result is served in (None: none acceptable); 406 when
    no kind has one. ``format_param`` (a short name or media types) wins over ``accept``."""
    formats = _by_format(format_param) if format_param is not None else _by_accept(accept)
    if not any(formats.values()):
        asked = (f"format={format_param!r}" if format_param is not None
                 else f"Accept: {accept}")
        raise HTTPException(406, f"no result format fits {asked}. Served: solutions and "
                                 f"booleans as {', '.join(fmt.FORMATS['solutions'])}; graphs "
                                 f"as {', '.join(fmt.FORMATS['graph'])}; or format=json, xml, "
                                 "csv, tsv, turtle, ntriples, json-ld, rdfxml")
    return formats


def _by_accept(accept: str | None) -> dict[str, str | None]:
    ranges = parse_accept(accept)
    return {kind: choose(ranges, [(m, (m, *_ALIASES[kind].get(m, ()))) for m in offered])
            for kind, offered in fmt.FORMATS.items()}


def _by_format(value: str) -> dict[str, str | None]:
    if "/" in value:  # media types, as in an Accept header
        return _by_accept(value)
    named = _SHORT_NAMES.get(value.strip().lower(), {})
    return {kind: named.get(kind) for kind in fmt.FORMATS}


async def read_post(request: Request) -> ProtocolRequest:
    """The query operation of a POST: a form, or a query as the body."""
    mime, charset = _content_type(request.headers.get("content-type"))
    url = _multi(request.query_params)
    if mime == UPDATE_TYPE:
        raise ForbiddenQuery(READ_ONLY)
    if charset not in (None, "utf-8", "utf8"):
        raise HTTPException(415, f"the query must be UTF-8, not {charset}")
    accept, base = request.headers.get("accept"), _endpoint(request)
    if mime == QUERY_TYPE:
        try:
            body = (await request.body()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(400, f"the query is not UTF-8 text: {exc}") from None
        return from_params(url, accept, base, direct_query=body)
    if mime == FORM_TYPE:
        form = await request.form()
        params = {k: url.get(k, []) + [str(v) for v in form.getlist(k)]
                  for k in {*url, *form.keys()}}
        return from_params(params, accept, base)
    raise HTTPException(415, f"send the query as {QUERY_TYPE} or as a form field 'query' "
                             f"({FORM_TYPE}); got {mime or 'no Content-Type'}")


def from_get(request: Request) -> ProtocolRequest:
    return from_params(_multi(request.query_params), request.headers.get("accept"),
                       _endpoint(request))


def _endpoint(request: Request) -> str:
    return str(request.url.replace(query="", fragment=""))


def _multi(params: QueryParams) -> dict[str, list[str]]:
    return {k: params.getlist(k) for k in params}


def _content_type(header: str | None) -> tuple[str, str | None]:
    mime, *params = (p.strip() for p in (header or "").split(";"))
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return mime.lower(), charset


def _dataset(params: Mapping[str, Sequence[str]]) -> Dataset | None:
    default, named = params.get("default-graph-uri", ()), params.get("named-graph-uri", ())
    if not default and not named:
        return None
    for iri in (*default, *named):
        try:
            ox.NamedNode(iri)
        except ValueError as exc:
            raise HTTPException(400, f"graph IRI {iri[:200]!r} is not an IRI: {exc}") from None
    return Dataset(tuple(default), tuple(named))


def _format(params: Mapping[str, Sequence[str]]) -> str | None:
    """The ``format`` / ``output`` value; several must mean the same (SPARQLWrapper sends
    ``format=tsv&output=text/tab-separated-values``)."""
    given = sorted({*params.get("format", ()), *params.get("output", ())})
    if len({tuple(_by_format(v).items()) for v in given}) > 1:
        raise HTTPException(400, f"conflicting result formats asked: {given}")
    return given[0] if given else None

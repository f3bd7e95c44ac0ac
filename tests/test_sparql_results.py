"""SPARQL results formats and content negotiation, checked by other parsers (Oxigraph's and
rdflib's result and RDF parsers) rather than by our own reading of our output."""

from __future__ import annotations

import io
import json

import pyoxigraph as ox
import pytest
import rdflib
from rdflib.query import Result

from api.content_negotiation import choose, parse_accept, quality
from api.sparql_protocol import negotiate
from kg.errors import NotAcceptable
from kg.query import sparql_results as fmt
from kg.store.base import QueryResult

XSD = "http://www.w3.org/2001/XMLSchema#"
ROW_TERMS = [
    ox.NamedNode("http://example.org/r1?a=1&b=2"),
    ox.BlankNode("b7"),
    ox.Literal('say "hi",\tthen\nleave'),
    ox.Literal("routeur", language="fr"),
    ox.Literal("42", datatype=ox.NamedNode(XSD + "integer")),
]
SOLUTIONS = QueryResult(["iri", "bnode", "text", "lang", "num"],
                        [ROW_TERMS, [ROW_TERMS[0], None, None, None, None]])
OX_FORMATS = {fmt.JSON: ox.QueryResultsFormat.JSON, fmt.XML: ox.QueryResultsFormat.XML,
              fmt.CSV: ox.QueryResultsFormat.CSV, fmt.TSV: ox.QueryResultsFormat.TSV}


@pytest.mark.parametrize("mime", [fmt.JSON, fmt.XML, fmt.TSV])
def test_solutions_round_trip_through_oxigraphs_parser(mime: str) -> None:
    body = fmt.serialise(SOLUTIONS, "solutions", mime)
    parsed = ox.parse_query_results(body, OX_FORMATS[mime])
    assert [v.value for v in parsed.variables] == SOLUTIONS.columns
    rows = [[sol[c] for c in SOLUTIONS.columns] for sol in parsed]
    assert rows[1] == [ROW_TERMS[0], None, None, None, None]
    first = rows[0]
    assert first[0] == ROW_TERMS[0] and first[2:] == ROW_TERMS[2:]
    assert isinstance(first[1], ox.BlankNode)  # a parser may relabel blank nodes


@pytest.mark.parametrize("mime, name", [(fmt.JSON, "json"), (fmt.XML, "xml")])
def test_solutions_parse_with_rdflib(mime: str, name: str) -> None:
    res = Result.parse(io.BytesIO(fmt.serialise(SOLUTIONS, "solutions", mime)), format=name)
    row = list(res)[0]
    assert str(row["text"]) == 'say "hi",\tthen\nleave'
    assert row["lang"].language == "fr" and row["num"].toPython() == 42


def test_csv_gives_plain_values_and_quotes_what_needs_it() -> None:
    body = fmt.serialise(SOLUTIONS, "solutions", fmt.CSV).decode()
    assert body.startswith("iri,bnode,text,lang,num\r\n")
    assert ',_:b7,"say ""hi"",\tthen\nleave",routeur,42\r\n' in body
    assert body.endswith("http://example.org/r1?a=1&b=2,,,,\r\n")


def test_tsv_escapes_a_tab_inside_a_literal() -> None:
    line = fmt.serialise(SOLUTIONS, "solutions", fmt.TSV).decode().split("\n")[1]
    assert line.count("\t") == 4 and '"say \\"hi\\",\\tthen\\nleave"' in line


@pytest.mark.parametrize("mime", [fmt.JSON, fmt.XML, fmt.CSV, fmt.TSV])
@pytest.mark.parametrize("value", [True, False])
def test_booleans(mime: str, value: bool) -> None:
    body = fmt.serialise(QueryResult(["ask"], [[value]]), "boolean", mime)
    if mime == fmt.CSV:  # a lossy format nobody parses: the word Oxigraph writes
        ask = ox.Store().query(f"ASK {{ FILTER({str(value).lower()}) }}")
        assert body.strip() == ask.serialize(format=ox.QueryResultsFormat.CSV)
        return
    assert bool(ox.parse_query_results(body, OX_FORMATS[mime])) is value


def test_xml_refuses_a_control_character_it_cannot_carry() -> None:
    res = QueryResult(["log"], [[ox.Literal("\x1b[31mERROR\x1b[0m disk full")]])
    with pytest.raises(NotAcceptable, match="XML 1.0"):
        fmt.serialise(res, "solutions", fmt.XML)
    assert json.loads(fmt.serialise(res, "solutions", fmt.JSON))["results"]["bindings"]


GRAPH = QueryResult(["s", "p", "o"], [
    [ox.NamedNode("https://w3id.org/autocnc/ontology#r1"),
     ox.NamedNode("https://w3id.org/autocnc/ontology#name"), ox.Literal("r1")],
    [ox.BlankNode("x"), ox.NamedNode("http://example.org/p"),
     ox.Literal("3.5", datatype=ox.NamedNode(XSD + "double"))],
])


@pytest.mark.parametrize("mime, rdflib_format", [
    (fmt.TURTLE, "turtle"), (fmt.NTRIPLES, "nt"), (fmt.JSONLD, "json-ld"),
    (fmt.RDFXML, "xml")])
def test_graphs_parse_with_rdflib(mime: str, rdflib_format: str) -> None:
    body = fmt.serialise(GRAPH, "graph", mime, {"cnc": "https://w3id.org/autocnc/ontology#"})
    g = rdflib.Graph().parse(data=body, format=rdflib_format)
    assert len(g) == 2
    assert (rdflib.URIRef("https://w3id.org/autocnc/ontology#r1"),
            rdflib.URIRef("https://w3id.org/autocnc/ontology#name"),
            rdflib.Literal("r1")) in g
    if mime == fmt.TURTLE:  # the query's prefixes shorten the output
        assert b"cnc:r1 cnc:name" in body


def test_a_format_of_another_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        fmt.serialise(GRAPH, "graph", fmt.CSV)


# -- content negotiation -----------------------------------------------------------------------

@pytest.mark.parametrize("accept, offers, expected", [
    (None, ["a/x", "b/y"], "a/x"),
    ("", ["a/x", "b/y"], "a/x"),
    ("*/*", ["a/x", "b/y"], "a/x"),
    ("b/y", ["a/x", "b/y"], "b/y"),
    ("b/*", ["a/x", "b/y"], "b/y"),
    ("a/x;q=0.5, b/y", ["a/x", "b/y"], "b/y"),
    ("a/x;q=0.5, b/y;q=0.4", ["a/x", "b/y"], "a/x"),
    ("a/x;q=0, */*;q=0.1", ["a/x", "b/y"], "b/y"),  # the specific range wins over */*
    ("B/Y", ["a/x", "b/y"], "b/y"),
    ("c/z", ["a/x", "b/y"], None),
    ("a/x;q=0", ["a/x", "b/y"], None),
    ("garbage, b/y;q=0.3", ["a/x", "b/y"], "b/y"),  # a malformed range is left out
    ("a/x;q=abc", ["a/x"], "a/x"),
])
def test_choose(accept: str | None, offers: list[str], expected: str | None) -> None:
    assert choose(parse_accept(accept), [(o, (o,)) for o in offers]) == expected


def test_quality_takes_the_most_specific_range() -> None:
    ranges = parse_accept("text/*;q=0.3, text/csv;q=0.7, */*;q=0.1")
    assert quality(ranges, "text/csv") == 0.7
    assert quality(ranges, "text/tab-separated-values") == 0.3
    assert quality(ranges, "application/json") == 0.1


@pytest.mark.parametrize("accept, fmt_param, expected", [
    (None, None, {"solutions": fmt.JSON, "boolean": fmt.JSON, "graph": fmt.TURTLE}),
    ("application/sparql-results+xml", None,
     {"solutions": fmt.XML, "boolean": fmt.XML, "graph": None}),
    # SPARQLWrapper's default (XML) asks for both kinds at once
    ("application/sparql-results+xml, application/rdf+xml", None,
     {"solutions": fmt.XML, "boolean": fmt.XML, "graph": fmt.RDFXML}),
    # YASGUI's for a CONSTRUCT
    ("text/turtle,*/*;q=0.9", None,
     {"solutions": fmt.JSON, "boolean": fmt.JSON, "graph": fmt.TURTLE}),
    ("application/json", None, {"solutions": fmt.JSON, "boolean": fmt.JSON,
                                "graph": fmt.JSONLD}),
    ("text/csv;q=0.5, text/tab-separated-values", None,
     {"solutions": fmt.TSV, "boolean": fmt.TSV, "graph": None}),
    ("text/plain", None, {"solutions": None, "boolean": None, "graph": fmt.NTRIPLES}),
    ("text/csv", "xml", {"solutions": fmt.XML, "boolean": fmt.XML, "graph": fmt.RDFXML}),
    (None, "CSV", {"solutions": fmt.CSV, "boolean": fmt.CSV, "graph": None}),
    (None, "json-ld", {"solutions": None, "boolean": None, "graph": fmt.JSONLD}),
    (None, "text/tab-separated-values",
     {"solutions": fmt.TSV, "boolean": fmt.TSV, "graph": None}),
])
def test_negotiate_per_kind_of_result(accept: str | None, fmt_param: str | None,
                                      expected: dict[str, str | None]) -> None:
    assert negotiate(accept, fmt_param) == expected


@pytest.mark.parametrize("accept, fmt_param", [("image/png", None), (None, "html"),
                                               ("*/*;q=0", None)])
def test_negotiate_refuses_what_fits_no_kind(accept: str | None, fmt_param: str | None
                                             ) -> None:
    from fastapi import HTTPException

    with pytest.raises(HTTPException) as err:
        negotiate(accept, fmt_param)
    assert err.value.status_code == 406 and "Served:" in str(err.value.detail)

"""The SPARQL 1.1 Protocol endpoint ``/v1/sparql`` against a real embedded store.

The first part is the W3C SPARQL 1.1 protocol test suite (w3c/rdf-tests,
``sparql/sparql11/protocol/manifest.ttl``), request by request as the manifest gives them
(``/sparql/`` is ``/v1/sparql`` here). Its dataset tests name the graphs
``http://kasei.us/2009/09/sparql/data/dataN.rdf``, each holding ``<dataN.rdf> a
foaf:Document`` (as the suite's own setup writes them); the endpoint loads nothing from the
web, so the fixture puts them in the RDF view as named graphs. The update tests expect the
update to succeed: this endpoint is read-only, so those get 403 here (and their
follow-up queries, which read what the update wrote, are left out); the ``bad_update_*``
tests expect a 4xx, which they get.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
import rdflib
from fastapi.testclient import TestClient

from api.app import create_app
from kg.config import Settings, load_settings
from kg.facts import Entity, FactBatch
from kg.graph import KnowledgeGraph
from ontology import mint_iri

ROUTER = mint_iri("t/net", "Router", "r1")
BATCH = FactBatch.of("protocol-test", [Entity(ROUTER, "Router", {"name": "r1"})])
KASEI = "http://kasei.us/2009/09/sparql/data/data{}.rdf"
FOAF_DOCUMENT = "http://xmlns.com/foaf/0.1/Document"
D0, D1, D2, D3 = (KASEI.format(i).replace(":", "%3A").replace("/", "%2F") for i in range(4))
MAX_ROWS = 50


def seeded_settings(tmp: Path, **overrides: Any) -> Settings:
    """A data directory with one router and the suite's three graphs in the RDF view."""
    settings = load_settings(data_dir=tmp / "data", store="embedded",
                             query_max_rows=MAX_ROWS, **overrides)
    kg = KnowledgeGraph.open(settings)
    try:
        kg.write(BATCH)
    finally:
        kg.close()
    store = ox.Store(str(settings.data_dir / "rdf"))
    for i in (1, 2, 3):
        g = ox.NamedNode(KASEI.format(i))
        store.add(ox.Quad(g, ox.NamedNode(rdflib.RDF.type), ox.NamedNode(FOAF_DOCUMENT), g))
    store.flush()
    del store
    return settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = seeded_settings(tmp_path_factory.mktemp("protocol"))
    with TestClient(create_app(settings)) as c:
        yield c


# -- the W3C protocol tests ----------------------------------------------------------------------

@dataclass(frozen=True)
class W3C:
    name: str
    method: str
    path: str  # after /sparql/
    body: bytes | None = None
    content_type: str | None = None
    status: int = 200  # the class: 200 for 2xx, 400 for 4xx; 403 exactly where we say so
    boolean: bool | None = None  # mf:expectedBoolean
    kind: str | None = None  # mf:expectedFormat: boolean, tabular, RDF
    headers: dict[str, str] = field(default_factory=dict)


SQ = "application/sparql-query"
FORM = "application/x-www-form-urlencoded"
ASK_DEFAULTS = ("ASK%20%7B%20%3Chttp%3A%2F%2Fkasei.us%2F2009%2F09%2Fsparql%2Fdata%2Fdata1.rdf"
                "%3E%20a%20%3Ftype%20.%20%3Chttp%3A%2F%2Fkasei.us%2F2009%2F09%2Fsparql%2Fdata"
                "%2Fdata2.rdf%3E%20a%20%3Ftype%20.%20%7D")
ASK_NAMED = ("ASK%20%7B%20GRAPH%20%3Fg1%20%7B%20%3Chttp%3A%2F%2Fkasei.us%2F2009%2F09%2Fsparql"
             "%2Fdata%2Fdata1.rdf%3E%20a%20%3Ftype%20%7D%20GRAPH%20%3Fg2%20%7B%20%3Chttp%3A%2F"
             "%2Fkasei.us%2F2009%2F09%2Fsparql%2Fdata%2Fdata2.rdf%3E%20a%20%3Ftype%20%7D%20%7D")
K1, K2, K3 = (KASEI.format(i) for i in (1, 2, 3))

W3C_TESTS = [
    W3C("query_post_form", "POST", f"?default-graph-uri={D0}", b"query=ASK%20%7B%7D", FORM,
        boolean=True, kind="boolean"),
    W3C("query_dataset_default_graphs_get", "GET",
        f"?query={ASK_DEFAULTS}&default-graph-uri={D1}&default-graph-uri={D2}",
        boolean=True, kind="boolean"),
    W3C("query_dataset_default_graphs_post", "POST",
        f"?default-graph-uri={D1}&default-graph-uri={D2}",
        f"ASK {{ <{K1}> a ?type . <{K2}> a ?type . }}".encode(), SQ,
        boolean=True, kind="boolean"),
    W3C("query_dataset_named_graphs_post", "POST",
        f"?named-graph-uri={D1}&named-graph-uri={D2}",
        f"ASK {{ GRAPH ?g1 {{ <{K1}> a ?type }} GRAPH ?g2 {{ <{K2}> a ?type }} }}".encode(),
        SQ, boolean=True, kind="boolean"),
    W3C("query_dataset_named_graphs_get", "GET",
        f"?query={ASK_NAMED}&named-graph-uri={D1}&named-graph-uri={D2}",
        boolean=True, kind="boolean"),
    W3C("query_dataset_full", "POST",
        f"?default-graph-uri={D3}&named-graph-uri={D1}&named-graph-uri={D2}",
        f"ASK {{\n  <{K3}> a ?type\n  GRAPH ?g1 {{ <{K1}> a ?type }}\n"
        f"  GRAPH ?g2 {{ <{K2}> a ?type }}\n}}".encode(), SQ, boolean=True, kind="boolean"),
    # The manifest's path encodes the second "&named-graph-uri=" (%26...%3D), making one
    # named graph of a nonsense IRI, under which no conformant endpoint answers true: we
    # send the two parameters the test means.
    W3C("query_multiple_dataset", "POST", f"?named-graph-uri={D1}&named-graph-uri={D2}",
        f"ASK FROM <{K3}> {{ GRAPH ?g1 {{ <{K1}> a ?type }} "
        f"GRAPH ?g2 {{ <{K2}> a ?type }} }}".encode(), SQ, boolean=True, kind="boolean"),
    W3C("query_get", "GET", f"?query=ASK%20%7B%7D&default-graph-uri={D0}", boolean=True,
        kind="boolean"),
    W3C("query_content_type_select", "POST", f"?default-graph-uri={D0}",
        b"SELECT (1 AS ?value) {}", SQ, kind="tabular"),
    W3C("query_content_type_ask", "POST", f"?default-graph-uri={D0}", b"ASK {}", SQ,
        kind="boolean"),
    W3C("query_content_type_describe", "POST", f"?default-graph-uri={D0}",
        b"DESCRIBE <http://example.org/>", SQ, kind="RDF"),
    W3C("query_content_type_construct", "POST", f"?default-graph-uri={D0}",
        b"CONSTRUCT { <s> <p> 1 } WHERE {}", SQ, kind="RDF"),
    W3C("query_post_direct", "POST", "", b"ASK {}", SQ, boolean=True, kind="boolean"),
    W3C("bad_query_method", "PUT", f"?query=ASK%20%7B%7D&default-graph-uri={D0}", b"",
        FORM, status=400),
    W3C("bad_multiple_queries", "GET", "?query=ASK%20%7B%7D&query=SELECT%20%2A%20%7B%7D",
        status=400),
    W3C("bad_query_wrong_media_type", "POST", "", b"ASK {}", "text/plain", status=400),
    W3C("bad_query_missing_form_type", "POST", "", b"query=ASK%20%7B%7D", status=400),
    W3C("bad_query_missing_direct_type", "POST", "", b"ASK {}", status=400),
    W3C("bad_query_non_utf8", "POST", "", "ASK {}".encode("utf-16"),
        "application/sparql-query; charset=UTF-16", status=400),
    W3C("bad_query_syntax", "GET", "?query=ASK%20%7B", status=400),
    # read-only: the updates the suite expects to succeed are refused, as documented
    W3C("update_post_form", "POST", "", b"update=CLEAR+ALL", FORM, status=403),
    W3C("update_post_direct", "POST", "", b"CLEAR ALL", "application/sparql-update",
        status=403),
    W3C("update_dataset_default_graph", "POST", f"?using-graph-uri={D1}",
        b"CLEAR ALL ; INSERT DATA { <urn:a> <urn:b> <urn:c> }", "application/sparql-update",
        status=403),
    W3C("bad_update_get", "GET", "?update=CLEAR%20ALL", status=400),
    W3C("bad_multiple_updates", "POST", "", b"update=CLEAR%20NAMED&update=CLEAR%20DEFAULT",
        FORM, status=400),
    W3C("bad_update_wrong_media_type", "POST", "", b"CLEAR NAMED", "text/plain", status=400),
    W3C("bad_update_missing_form_type", "POST", "", b"update=CLEAR%20NAMED", status=400),
    W3C("bad_update_non_utf8", "POST", "", "CLEAR NAMED".encode("utf-16"),
        "application/sparql-update; charset=UTF-16", status=400),
    W3C("bad_update_syntax", "POST", "", b"update=CLEAR%20XYZ", FORM, status=400),
    W3C("bad_update_dataset_conflict", "POST",
        "?using-named-graph-uri=http%3A%2F%2Fexample%2Fpeople",
        b"WITH <http://example/addresses> DELETE { ?p <urn:n> 'Bill' } "
        b"INSERT { ?p <urn:n> 'William' } WHERE { ?p <urn:n> 'Bill' }",
        "application/sparql-update", status=400),
]
BOOLEAN_TYPES = {"application/sparql-results+json", "application/sparql-results+xml"}
TABULAR_TYPES = BOOLEAN_TYPES | {"text/csv", "text/tab-separated-values"}
RDF_TYPES = {"text/turtle", "application/rdf+xml", "application/n-triples",
             "application/ld+json"}


@pytest.mark.parametrize("case", W3C_TESTS, ids=lambda c: c.name)
def test_w3c_protocol(client: TestClient, case: W3C) -> None:
    headers = {**case.headers, **({"Content-Type": case.content_type}
                                  if case.content_type else {})}
    resp = client.request(case.method, f"/v1/sparql{case.path}", content=case.body,
                          headers=headers)
    if case.status == 403:
        assert resp.status_code == 403, resp.text
        assert "read-only" in resp.json()["detail"]
        return
    assert resp.status_code // 100 == case.status // 100, resp.text
    if case.status != 200:
        return
    ctype = resp.headers["content-type"].split(";")[0]
    expected = {"boolean": BOOLEAN_TYPES, "tabular": TABULAR_TYPES, "RDF": RDF_TYPES}
    assert ctype in expected[case.kind or "boolean"]
    if case.kind == "RDF":
        rdflib.Graph().parse(data=resp.content, format=_RDFLIB[ctype])
    elif case.kind == "tabular":
        assert resp.json()["head"]["vars"] == ["value"]
    if case.boolean is not None:
        assert resp.json()["boolean"] is case.boolean


_RDFLIB = {"text/turtle": "turtle", "application/rdf+xml": "xml",
           "application/n-triples": "nt", "application/ld+json": "json-ld"}


def test_the_dataset_decides_the_w3c_answers(client: TestClient) -> None:
    """The suite's dataset tests answer false without their parameters' graphs: the
    parameters are used, not ignored."""
    ask = f"ASK {{ <{K1}> a ?type . <{K2}> a ?type . }}"
    only_one = client.get("/v1/sparql", params={"query": ask, "default-graph-uri": K1})
    assert only_one.json()["boolean"] is False
    named = f"ASK {{ GRAPH ?g1 {{ <{K1}> a ?type }} GRAPH ?g2 {{ <{K2}> a ?type }} }}"
    assert client.get("/v1/sparql", params={"query": named, "named-graph-uri": K1}
                      ).json()["boolean"] is False


# -- datasets ----------------------------------------------------------------------------------

def _select(client: TestClient, query: str, **params: Any) -> list[dict[str, Any]]:
    resp = client.get("/v1/sparql", params={"query": query, **params})
    assert resp.status_code == 200, resp.text
    bindings: list[dict[str, Any]] = resp.json()["results"]["bindings"]
    return bindings


def test_the_default_graph_is_the_union_unless_a_dataset_is_named(client: TestClient) -> None:
    docs = "SELECT ?d WHERE { ?d a <http://xmlns.com/foaf/0.1/Document> }"
    assert len(_select(client, docs)) == 3  # the union of all graphs
    assert [b["d"]["value"] for b in _select(client, docs, **{"default-graph-uri": K3})] == [K3]
    # the query's own FROM, no longer ignored
    assert [b["d"]["value"] for b in _select(client, docs.replace("WHERE", f"FROM <{K2}>"))
            ] == [K2]
    # the protocol's dataset replaces the query's
    assert [b["d"]["value"] for b in _select(client, docs.replace("WHERE", f"FROM <{K2}>"),
                                             **{"default-graph-uri": K1})] == [K1]


def test_the_asserted_graph_has_no_inferred_types(client: TestClient) -> None:
    types = f"SELECT ?t WHERE {{ <{ROUTER}> a ?t }}"
    union = {b["t"]["value"] for b in _select(client, types)}
    asserted = {b["t"]["value"] for b in _select(
        client, types, **{"default-graph-uri": "urn:autocnc:asserted"})}
    assert asserted == {"https://w3id.org/autocnc/ontology#Router"}
    assert asserted < union  # the superclasses come from the inferred graphs


def test_named_graphs_restrict_graph_patterns(client: TestClient) -> None:
    graphs = "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }"
    everything = {b["g"]["value"] for b in _select(client, graphs)}
    assert {K1, K2, K3, "https://w3id.org/autocnc/ontology"} <= everything
    only = _select(client, graphs, **{"named-graph-uri": [K1, K3]})
    assert {b["g"]["value"] for b in only} == {K1, K3}


def test_a_graph_name_that_is_no_iri_is_a_bad_request(client: TestClient) -> None:
    resp = client.get("/v1/sparql", params={"query": "ASK {}", "default-graph-uri": "data 1"})
    assert resp.status_code == 400 and "not an IRI" in resp.json()["detail"]


# -- formats -----------------------------------------------------------------------------------

SELECT_NAME = "SELECT ?n WHERE { ?r <https://w3id.org/autocnc/ontology#name> ?n }"
CONSTRUCT_NAME = ("PREFIX cnc: <https://w3id.org/autocnc/ontology#> "
                  "CONSTRUCT { ?r cnc:name ?n } WHERE { ?r cnc:name ?n }")


@pytest.mark.parametrize("accept, ctype", [
    ("application/sparql-results+xml", "application/sparql-results+xml"),
    ("application/sparql-results+json", "application/sparql-results+json"),
    ("text/csv", "text/csv"),
    ("text/tab-separated-values", "text/tab-separated-values"),
    ("application/xml", "application/sparql-results+xml"),
    ("text/csv;q=0.4, application/sparql-results+xml;q=0.6", "application/sparql-results+xml"),
    ("*/*", "application/sparql-results+json"),
])
def test_select_results_by_accept(client: TestClient, accept: str, ctype: str) -> None:
    resp = client.get("/v1/sparql", params={"query": SELECT_NAME}, headers={"Accept": accept})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(ctype)
    assert resp.headers["vary"] == "Accept"
    if ctype in (fmt := {"application/sparql-results+xml": ox.QueryResultsFormat.XML,
                         "application/sparql-results+json": ox.QueryResultsFormat.JSON,
                         "text/tab-separated-values": ox.QueryResultsFormat.TSV}):
        rows = list(ox.parse_query_results(resp.content, fmt[ctype]))
        assert [r["n"] for r in rows] == [ox.Literal("r1")]
    else:
        assert resp.text == "n\r\nr1\r\n"


@pytest.mark.parametrize("accept, ctype", [
    (None, "text/turtle"),
    ("text/turtle", "text/turtle"),
    ("application/n-triples", "application/n-triples"),
    ("application/ld+json", "application/ld+json"),
    ("application/rdf+xml", "application/rdf+xml"),
    ("application/sparql-results+xml, application/rdf+xml", "application/rdf+xml"),
    ("text/plain", "application/n-triples"),
])
def test_construct_results_by_accept(client: TestClient, accept: str | None,
                                     ctype: str) -> None:
    headers = {"Accept": accept} if accept else {}
    resp = client.post("/v1/sparql", content=CONSTRUCT_NAME,
                       headers={"Content-Type": SQ, **headers})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(ctype)
    g = rdflib.Graph().parse(data=resp.content, format=_RDFLIB[ctype])
    assert set(g) == {(rdflib.URIRef(ROUTER),
                       rdflib.URIRef("https://w3id.org/autocnc/ontology#name"),
                       rdflib.Literal("r1"))}
    if ctype == "text/turtle":  # the query's prefixes
        assert b"@prefix cnc: <https://w3id.org/autocnc/ontology#>" in resp.content


@pytest.mark.parametrize("query, params, ctype", [
    (SELECT_NAME, {"format": "xml"}, "application/sparql-results+xml"),
    (CONSTRUCT_NAME, {"format": "xml"}, "application/rdf+xml"),
    (SELECT_NAME, {"output": "csv"}, "text/csv"),
    (CONSTRUCT_NAME, {"output": "json"}, "application/ld+json"),
    (SELECT_NAME, {"format": "text/tab-separated-values"}, "text/tab-separated-values"),
    ("ASK {}", {"format": "xml"}, "application/sparql-results+xml"),
])
def test_format_parameter_wins_over_accept(client: TestClient, query: str,
                                           params: dict[str, str], ctype: str) -> None:
    resp = client.get("/v1/sparql", params={"query": query, **params},
                      headers={"Accept": "application/sparql-results+json"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(ctype)


@pytest.mark.parametrize("query, headers, params", [
    (SELECT_NAME, {"Accept": "image/png"}, {}),
    (SELECT_NAME, {"Accept": "text/turtle"}, {}),  # fits graphs, not solutions
    (CONSTRUCT_NAME, {"Accept": "text/csv"}, {}),
    (CONSTRUCT_NAME, {}, {"format": "csv"}),
    (SELECT_NAME, {}, {"format": "html"}),
])
def test_nothing_acceptable_is_406(client: TestClient, query: str, headers: dict[str, str],
                                   params: dict[str, str]) -> None:
    resp = client.get("/v1/sparql", params={"query": query, **params}, headers=headers)
    assert resp.status_code == 406, resp.text
    assert "acceptable" in resp.json()["detail"] or "Served:" in resp.json()["detail"]


def test_conflicting_format_parameters_are_a_bad_request(client: TestClient) -> None:
    resp = client.get("/v1/sparql", params={"query": "ASK {}", "format": "xml",
                                            "output": "json"})
    assert resp.status_code == 400


def test_xml_results_refuse_what_xml_cannot_carry(client: TestClient) -> None:
    ansi = 'SELECT ("\\u001B[31mERROR" AS ?line) {}'
    xml = client.get("/v1/sparql", params={"query": ansi},
                     headers={"Accept": "application/sparql-results+xml"})
    assert xml.status_code == 406 and "XML 1.0" in xml.json()["detail"]
    as_json = client.get("/v1/sparql", params={"query": ansi})
    assert as_json.json()["results"]["bindings"][0]["line"]["value"] == "\x1b[31mERROR"


@pytest.mark.parametrize("accept, count", [
    ("application/sparql-results+xml", lambda body: body.count(b"<result>")),
    ("text/csv", lambda body: body.count(b"\r\n") - 1),
])
def test_the_row_cap_holds_in_every_format(client: TestClient, accept: str, count: Any
                                           ) -> None:
    values = " ".join(str(i) for i in range(3 * MAX_ROWS))
    resp = client.get("/v1/sparql", params={"query": f"SELECT ?x {{ VALUES ?x {{ {values} }} }}"},
                      headers={"Accept": accept})
    assert resp.headers["x-autocnc-truncated"] == "true"
    assert count(resp.content) == MAX_ROWS


def test_the_triple_cap_holds_for_graphs(client: TestClient) -> None:
    values = " ".join(str(i) for i in range(3 * MAX_ROWS))
    q = f"CONSTRUCT {{ <urn:s> <urn:p> ?x }} WHERE {{ VALUES ?x {{ {values} }} }}"
    resp = client.get("/v1/sparql", params={"query": q},
                      headers={"Accept": "application/n-triples"})
    assert resp.headers["x-autocnc-truncated"] == "true"
    assert len(rdflib.Graph().parse(data=resp.content, format="nt")) == MAX_ROWS


# -- methods, read-only ------------------------------------------------------------------------

def test_head_answers_like_get_without_a_body(client: TestClient) -> None:
    resp = client.head("/v1/sparql", params={"query": SELECT_NAME},
                       headers={"Accept": "text/csv"})
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["content-type"].startswith("text/csv")
    assert client.head("/v1/sparql").status_code == 400  # no query, as for GET


def test_options_lists_the_methods(client: TestClient) -> None:
    resp = client.options("/v1/sparql")
    assert resp.status_code == 204
    assert resp.headers["allow"] == "GET, HEAD, POST, OPTIONS"
    assert "access-control-allow-origin" not in resp.headers  # CORS is off by default


@pytest.mark.parametrize("send", [
    lambda c, q: c.get("/v1/sparql", params={"query": q}),
    lambda c, q: c.post("/v1/sparql", data={"query": q}),
    lambda c, q: c.post("/v1/sparql", content=q, headers={"Content-Type": SQ}),
])
@pytest.mark.parametrize("query", [
    "SELECT * WHERE { SERVICE <http://127.0.0.1:9/> { ?s ?p ?o } }",
    "LOAD <http://127.0.0.1:9/data.ttl>",
    "INSERT DATA { <urn:a> <urn:b> <urn:c> }",
    "DROP ALL",
])
def test_no_way_of_sending_makes_it_write_or_call_out(client: TestClient, send: Any,
                                                       query: str) -> None:
    assert send(client, query).status_code == 403
    ask = client.get("/v1/sparql", params={"query": "ASK { <urn:a> <urn:b> <urn:c> }"})
    assert ask.json()["boolean"] is False
    assert client.get("/v1/sparql", params={"query": SELECT_NAME}).json()[
        "results"]["bindings"]  # DROP ALL dropped nothing


def test_a_body_over_the_request_bound_is_refused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", store="embedded",
                             max_request_bytes=10_000)
    with TestClient(create_app(settings)) as c:
        big = "ASK {} #" + "x" * 20_000
        resp = c.post("/v1/sparql", content=big, headers={"Content-Type": SQ})
        assert resp.status_code == 413


# -- CORS --------------------------------------------------------------------------------------

YASGUI = "http://yasgui.example:8080"


@pytest.fixture(scope="module")
def cors_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = seeded_settings(tmp_path_factory.mktemp("cors"),
                               sparql_cors_origins=(YASGUI,))
    with TestClient(create_app(settings)) as c:
        yield c


def test_cors_preflight_from_an_allowed_origin(cors_client: TestClient) -> None:
    resp = cors_client.options("/v1/sparql", headers={
        "Origin": YASGUI, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert resp.status_code == 200
    assert resp.headers["access-control-allow-origin"] == YASGUI
    assert "POST" in resp.headers["access-control-allow-methods"]


def test_cors_refuses_other_origins_and_other_routes(cors_client: TestClient) -> None:
    other = cors_client.options("/v1/sparql", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers
    get = cors_client.get("/v1/sparql", params={"query": "ASK {}"},
                          headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in get.headers
    health = cors_client.get("/healthz", headers={"Origin": YASGUI})
    assert "access-control-allow-origin" not in health.headers
    facts = cors_client.options("/v1/facts", headers={
        "Origin": YASGUI, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in facts.headers


def test_cors_headers_on_answers_and_errors(cors_client: TestClient) -> None:
    ok = cors_client.get("/v1/sparql", params={"query": "ASK {}"}, headers={"Origin": YASGUI})
    assert ok.headers["access-control-allow-origin"] == YASGUI
    assert "x-autocnc-truncated" in ok.headers["access-control-expose-headers"].lower()
    bad = cors_client.get("/v1/sparql", params={"query": "ASK {"}, headers={"Origin": YASGUI})
    assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == YASGUI


def test_cors_origins_are_validated() -> None:
    from kg.errors import ConfigError

    with pytest.raises(ConfigError, match="not an origin"):
        load_settings(sparql_cors_origins=["https://yasgui.example/path"])
    assert load_settings(sparql_cors_origins="https://A.example, *").sparql_cors_origins == (
        "https://a.example", "*")


def test_json_results_are_the_documented_shape(client: TestClient) -> None:
    body = json.loads(client.get("/v1/sparql", params={"query": SELECT_NAME}).content)
    assert body == {"head": {"vars": ["n"]},
                    "results": {"bindings": [{"n": {"type": "literal", "value": "r1"}}]}}

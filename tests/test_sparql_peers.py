"""Real SPARQL clients against a real ``autocnc serve``: SPARQLWrapper, rdflib's
SPARQLStore, and a browser page on another origin that queries the endpoint with fetch()
as YASGUI does, in Debian's chromium driven by Playwright (no browser download).

Chromium or Playwright missing: the browser test is skipped locally and fails under
``CI=true`` (``.ci/run`` installs both).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import urllib.error
import urllib.parse
import warnings
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import rdflib
from rdflib.plugins.stores.sparqlstore import SPARQLStore
from SPARQLWrapper import CSV, JSON, JSONLD, POST, POSTDIRECTLY, TSV, TURTLE, XML, SPARQLWrapper

from kg.config import load_settings
from kg.facts import Entity, FactBatch
from ontology import mint_iri
from tests.live import free_port, start_server

CNC = "https://w3id.org/autocnc/ontology#"
ONTOLOGY_GRAPH = "https://w3id.org/autocnc/ontology"
R1, R2 = mint_iri("t/net", "Router", "r1"), mint_iri("t/net", "Router", "r2")
BATCH = FactBatch.of("peers-test", [
    Entity(R1, "Router", {"name": "r1", "status": "up"}),
    Entity(R2, "Router", {"name": "r2", "status": "down"}),
])
NAMES = f"PREFIX cnc: <{CNC}> SELECT ?n WHERE {{ ?r cnc:name ?n }} ORDER BY ?n"
CONSTRUCT = (f"PREFIX cnc: <{CNC}> CONSTRUCT {{ ?r cnc:name ?n }} "
             "WHERE { ?r cnc:name ?n }")


@pytest.fixture(scope="module")
def page_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, page_port: int) -> Iterator[str]:
    """``autocnc serve`` with two routers, its SPARQL endpoint open to the test page's
    origin (http://127.0.0.1:page_port) and no other."""
    tmp = tmp_path_factory.mktemp("peers")
    settings = load_settings(data_dir=tmp / "data", store="embedded")
    config = f"sparql_cors_origins: ['http://127.0.0.1:{page_port}']\n"
    proc, url = start_server(tmp, settings, config=config)
    try:
        httpx.post(f"{url}/v1/facts", json=BATCH.to_json(), timeout=30).raise_for_status()
        yield f"{url}/v1/sparql"
    finally:
        proc.stop()


def _wrapper(endpoint: str, query: str, fmt: str, **options: Any) -> Any:
    sw = SPARQLWrapper(endpoint)
    sw.setQuery(query)
    sw.setReturnFormat(fmt)
    for name, value in options.items():
        getattr(sw, name)(value)
    with warnings.catch_warnings():
        # SPARQLWrapper warns (RuntimeWarning) on a response format it did not ask for
        warnings.simplefilter("error", RuntimeWarning)
        return sw.query().convert()


# -- SPARQLWrapper -----------------------------------------------------------------------------

def test_sparqlwrapper_default_xml(endpoint: str) -> None:
    doc = _wrapper(endpoint, NAMES, XML)
    assert [n.firstChild.data for n in doc.getElementsByTagName("literal")] == ["r1", "r2"]


@pytest.mark.parametrize("options", [{}, {"setMethod": POST},
                                     {"setMethod": POST, "setRequestMethod": POSTDIRECTLY},
                                     {"setOnlyConneg": True}])
def test_sparqlwrapper_json_by_every_method(endpoint: str, options: dict[str, Any]) -> None:
    res = _wrapper(endpoint, NAMES, JSON, **options)
    assert [b["n"]["value"] for b in res["results"]["bindings"]] == ["r1", "r2"]


@pytest.mark.parametrize("fmt, text", [(CSV, b"n\r\nr1\r\nr2\r\n"), (TSV, b'?n\n"r1"\n"r2"\n')])
def test_sparqlwrapper_csv_tsv(endpoint: str, fmt: str, text: bytes) -> None:
    assert _wrapper(endpoint, NAMES, fmt) == text


@pytest.mark.parametrize("fmt", [XML, JSON])
def test_sparqlwrapper_ask(endpoint: str, fmt: str) -> None:
    res = _wrapper(endpoint, f"PREFIX cnc: <{CNC}> ASK {{ ?r cnc:status 'down' }}", fmt)
    if fmt == JSON:
        assert res["boolean"] is True
    else:
        assert res.getElementsByTagName("boolean")[0].firstChild.data == "true"


@pytest.mark.parametrize("fmt", [XML, JSONLD, TURTLE])
def test_sparqlwrapper_construct(endpoint: str, fmt: str) -> None:
    res = _wrapper(endpoint, CONSTRUCT, fmt)
    graph = res if isinstance(res, rdflib.Graph) else rdflib.Graph().parse(data=res,
                                                                         format="turtle")
    assert set(graph.objects(None, rdflib.URIRef(CNC + "name"))) == {rdflib.Literal("r1"),
                                                                     rdflib.Literal("r2")}


def test_sparqlwrapper_update_is_refused(endpoint: str) -> None:
    sw = SPARQLWrapper(endpoint)
    sw.setMethod(POST)
    sw.setQuery("INSERT DATA { <urn:a> <urn:b> <urn:c> }")
    with pytest.raises(urllib.error.HTTPError) as err:
        sw.query()
    assert err.value.code == 403


def test_head_on_the_real_server_sends_headers_only(endpoint: str) -> None:
    """Read from the socket: an HTTP client would drop a body sent to HEAD unseen."""
    host, port = endpoint.split("//")[1].split("/")[0].split(":")
    target = "/v1/sparql?" + urllib.parse.urlencode({"query": NAMES})
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"HEAD {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/csv\r\n"
                     "Connection: close\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-type: text/csv" in head.lower()
    assert body == b""


# -- rdflib's SPARQLStore ----------------------------------------------------------------------

def test_rdflib_sparqlstore_queries_the_union(endpoint: str) -> None:
    graph = rdflib.Graph(store=SPARQLStore(endpoint))
    names = sorted(str(row.n) for row in graph.query(NAMES))  # type: ignore[union-attr]
    assert names == ["r1", "r2"]
    assert graph.query(f"ASK {{ <{R1}> a <{CNC}Router> }}").askAnswer is True
    built = graph.query(CONSTRUCT).graph
    assert built is not None and len(built) == 2


def test_rdflib_sparqlstore_graph_is_the_default_graph_uri(endpoint: str) -> None:
    """A Graph with an identifier on a SPARQLStore reads through ``default-graph-uri``."""
    store = SPARQLStore(endpoint)
    ontology = rdflib.Graph(store=store, identifier=rdflib.URIRef(ONTOLOGY_GRAPH))
    classes = set(ontology.subjects(rdflib.RDF.type, rdflib.OWL.Class))
    assert rdflib.URIRef(CNC + "Router") in classes
    assert (rdflib.URIRef(R1), None, None) not in ontology  # facts are not in that graph
    asserted = rdflib.Graph(store=store, identifier=rdflib.URIRef("urn:autocnc:asserted"))
    assert set(asserted.objects(rdflib.URIRef(R1), rdflib.RDF.type)) == {
        rdflib.URIRef(CNC + "Router")}  # no inferred superclass


# -- a browser on another origin ---------------------------------------------------------------

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>SPARQL</title></head>
<body>
<textarea id="query"></textarea><button id="run">Run</button>
<table id="results"></table><p id="status"></p>
<script>
// What YASGUI sends by default: a form POST asking for SPARQL JSON results.
async function yasguiQuery(endpoint, query) {
  const resp = await fetch(endpoint, {
    method: "POST",
    headers: {"Accept": "application/sparql-results+json,*/*;q=0.9",
              "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
    body: new URLSearchParams({query}),
  });
  return {status: resp.status, type: resp.headers.get("content-type"),
          truncated: resp.headers.get("x-autocnc-truncated"), body: await resp.json()};
}
// A query as the body: not a simple request, so the browser sends a CORS preflight first.
async function directQuery(endpoint, query) {
  const resp = await fetch(endpoint, {
    method: "POST", body: query,
    headers: {"Content-Type": "application/sparql-query",
              "Accept": "application/sparql-results+json"}});
  return {status: resp.status, body: await resp.json()};
}
async function tryFetch(url) {
  try { const r = await fetch(url); return "read " + r.status; }
  catch (e) { return "blocked: " + e.message; }
}
document.getElementById("run").addEventListener("click", async () => {
  const out = document.getElementById("results");
  try {
    const res = await yasguiQuery(window.ENDPOINT, document.getElementById("query").value);
    const vars = res.body.head.vars;
    out.innerHTML = "<tr>" + vars.map(v => "<th>" + v + "</th>").join("") + "</tr>" +
      res.body.results.bindings.map(b => "<tr>" + vars.map(
        v => "<td>" + (b[v] ? b[v].value : "") + "</td>").join("") + "</tr>").join("");
    document.getElementById("status").textContent = "done " + res.status;
  } catch (e) {
    document.getElementById("status").textContent = "failed: " + e.message;
  }
});
</script>
</body></html>
"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    missing = []
    if path is None:
        missing.append("chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]')")
    if missing:
        why = f"{', '.join(missing)} not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {why}: the browser test must run in CI")
        pytest.skip(why)
    assert path is not None
    return path


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory, page_port: int) -> Iterator[str]:
    """The test page, served from its own origin (another port than the endpoint's)."""
    root = tmp_path_factory.mktemp("page")
    (root / "yasgui.html").write_text(PAGE, encoding="utf-8")
    handler = partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", page_port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{page_port}/yasgui.html"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_browser_page_on_another_origin_queries_the_endpoint(endpoint: str,
                                                              page_server: str) -> None:
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(page_server)
            page.evaluate("e => { window.ENDPOINT = e; }", endpoint)
            # as a user of the page: type a query, run it, read the table
            page.fill("#query", NAMES)
            page.click("#run")
            page.wait_for_selector("#status:has-text('done')", timeout=30_000)
            assert page.inner_text("#status") == "done 200"
            assert page.locator("#results td").all_inner_texts() == ["r1", "r2"]
            # the response headers the page may read (exposed by CORS)
            res = page.evaluate("([e, q]) => yasguiQuery(e, q)", [endpoint, NAMES])
            assert res["type"].startswith("application/sparql-results+json")
            assert res["truncated"] == "false"
            # a preflighted request
            direct = page.evaluate("([e, q]) => directQuery(e, q)",
                                   [endpoint, f"ASK {{ <{R2}> <{CNC}status> 'down' }}"])
            assert direct == {"status": 200, "body": {"head": {}, "boolean": True}}
            # CORS covers the SPARQL endpoint only
            other_route = endpoint.replace("/v1/sparql", "/healthz")
            assert page.evaluate("u => tryFetch(u)", other_route).startswith("blocked")
            # and only the configured origin: the same page from http://localhost:port
            page.goto(page_server.replace("127.0.0.1", "localhost"))
            blocked = page.evaluate("u => tryFetch(u)", f"{endpoint}?query=ASK%7B%7D")
            assert blocked.startswith("blocked"), blocked
        finally:
            browser.close()


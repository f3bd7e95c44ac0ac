"""A server that one query cannot freeze and one value cannot break.

A real ``autocnc serve`` process on each backend: pathological SPARQL and Cypher queries are
stopped at their time and memory limits while ``/healthz`` keeps answering; oversized
bodies (chunked too) get 413 and oversized values are refused before anything is written;
the RDF view sets aside what it cannot take and goes on; nothing is silently accepted.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from kg.config import Settings, load_settings
from kg.errors import FactError
from kg.facts import Entity, FactBatch
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from tests.conftest import BACKENDS, SHARED_DATA, backend_settings

AUTOCNC = str(Path(sys.executable).with_name("autocnc"))
TIMEOUT_S = 5.0  # query_timeout_s of the servers under test
MEMORY_MB = 512  # query_max_memory_mb
ROUTER = mint_iri("t/net", "Router", "r1")
CNC = "PREFIX cnc: <https://w3id.org/autocnc/ontology#> "
# three triple patterns that share no variable: a count over a cube of the view
SPARQL_CUBE = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
SPARQL_SORTED_CUBE = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i } ORDER BY ?c ?f ?i"
CYPHER_SLOW = ("UNWIND range(1, 100000) AS x UNWIND range(1, 100000) AS y "
               "WITH x, y WHERE (x * y) % 7 = 3 RETURN count(*) AS n")
# rows that are cheap to make and big to hold: 10,000 copies of a 100 kB parameter (1 GB)
CYPHER_BIG_ROWS = "UNWIND range(1, 10000) AS x RETURN $text AS row"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """``autocnc serve`` on the test's backend with a short query timeout, a small memory
    limit and a default scope for the webhook; yields its base URL once ready."""
    settings = backend_settings(request.param, tmp_path / "data")
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "config.yaml").write_text(
        f"query_timeout_s: {TIMEOUT_S}\nquery_max_memory_mb: {MEMORY_MB}\n")
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(settings.data_dir),
           "AUTOCNC_STORE": settings.store}
    if settings.neo4j_uri:
        env["NEO4J_URI"] = settings.neo4j_uri
    port = _free_port()
    proc = subprocess.Popen([AUTOCNC, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=10).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        batch = FactBatch.of("robust", [Entity(ROUTER, "Router", {"name": "r1"})])
        httpx.post(f"{base}/v1/facts", json=batch.to_json()).raise_for_status()
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


class HealthProbe:
    """Samples /healthz every 20 ms in a thread while a slow request runs."""

    def __init__(self, base: str) -> None:
        self.base, self.latencies, self.statuses = base, [], []  # type: ignore[var-annotated]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                t = time.perf_counter()
                resp = client.get(f"{self.base}/healthz")
                self.latencies.append(time.perf_counter() - t)
                self.statuses.append(resp.status_code)
                time.sleep(0.02)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        lat = sorted(self.latencies)
        assert len(lat) >= 10 and set(self.statuses) == {200}
        p95 = lat[int(len(lat) * 0.95)]
        assert p95 < 0.1, f"/healthz p95 {p95 * 1000:.0f} ms while the query ran"


def _timed(call: object) -> tuple[httpx.Response, float]:
    t = time.perf_counter()
    resp = call()  # type: ignore[operator]
    return resp, time.perf_counter() - t


def test_a_runaway_sparql_query_is_stopped_while_healthz_answers(server: str) -> None:
    with HealthProbe(server) as probe:
        resp, took = _timed(lambda: httpx.get(f"{server}/v1/sparql",
                                              params={"query": SPARQL_CUBE}, timeout=60))
    assert resp.status_code == 504, resp.text
    assert resp.json()["error"] == "QueryTimedOut" and "query_timeout_s" in resp.json()["detail"]
    assert took < TIMEOUT_S + 2
    probe.check()
    # the next query gets a fresh worker and its answer
    ask = httpx.get(f"{server}/v1/sparql", params={"query": CNC + "ASK { ?r cnc:name 'r1' }"})
    assert ask.json()["boolean"] is True


def test_a_sparql_query_past_its_memory_limit_is_stopped(server: str) -> None:
    with HealthProbe(server) as probe:
        resp, took = _timed(lambda: httpx.get(
            f"{server}/v1/sparql", params={"query": SPARQL_SORTED_CUBE}, timeout=60))
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "QueryOverMemory"
    assert "query_max_memory_mb" in resp.json()["detail"] and took < TIMEOUT_S + 2
    probe.check()


def test_a_runaway_cypher_query_is_stopped_while_healthz_answers(server: str) -> None:
    with HealthProbe(server) as probe:
        resp, took = _timed(lambda: httpx.post(f"{server}/v1/cypher",
                                               json={"query": CYPHER_SLOW}, timeout=60))
    assert resp.status_code == 504, resp.text
    assert resp.json()["error"] == "QueryTimedOut" and took < TIMEOUT_S + 2
    probe.check()
    ok = httpx.post(f"{server}/v1/cypher",
                    json={"query": "MATCH (n:Entity) RETURN n.name AS name"})
    assert ok.json()["rows"] == [["r1"]]


def test_a_cypher_result_past_the_memory_limit_is_stopped(server: str) -> None:
    resp, took = _timed(lambda: httpx.post(f"{server}/v1/cypher", timeout=60, json={
        "query": CYPHER_BIG_ROWS, "parameters": {"text": "x" * 100_000}}))
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "QueryOverMemory" and took < TIMEOUT_S + 2, resp.text


def test_queries_see_writes_and_do_not_wait_for_each_other(server: str) -> None:
    """A slow query holds one worker; another query and a write go on meanwhile, and
    both query languages see the write at once."""
    slow = threading.Thread(target=lambda: httpx.get(
        f"{server}/v1/sparql", params={"query": SPARQL_CUBE}, timeout=60))
    slow.start()
    time.sleep(0.5)
    router2 = mint_iri("t/net", "Router", "r2")
    resp, took = _timed(lambda: httpx.post(f"{server}/v1/facts", json=FactBatch.of(
        "robust", [Entity(router2, "Router", {"name": "r2"})]).to_json()))
    assert resp.status_code == 200 and took < 2
    cypher = httpx.post(f"{server}/v1/cypher", json={
        "query": "MATCH (n:Entity) RETURN n.name AS name ORDER BY name"}).json()
    assert cypher["rows"] == [["r1"], ["r2"]]
    ask = httpx.get(f"{server}/v1/sparql", params={"query": CNC + "ASK { ?r cnc:name 'r2' }"})
    assert ask.json()["boolean"] is True
    assert slow.is_alive()  # still running (its worker is stopped at the limit)
    slow.join()


def test_chunked_and_declared_oversize_bodies_get_413(server: str) -> None:
    def chunks(n: int) -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(n):
            yield b" " * (1 << 20)

    for path, ctype in (("/v1/facts", "application/json"),
                        ("/v1/alerts/alertmanager?scope=t", "application/json"),
                        ("/v1/sparql", "application/sparql-query")):
        resp = httpx.post(server + path, content=chunks(18), timeout=60,
                          headers={"Content-Type": ctype})
        assert resp.status_code == 413, (path, resp.text)
        declared = httpx.post(server + path, content=b" " * (17 << 20), timeout=60,
                              headers={"Content-Type": ctype})
        assert declared.status_code == 413, path
    assert httpx.get(f"{server}/healthz").json()["status"] == "ok"


def test_an_oversized_value_is_refused_and_the_next_ingest_works(server: str) -> None:
    huge = "x" * (20 << 20)
    doc = {"entities": [{"id": "r-big", "type": "Router", "properties": {"name": huge}},
                        {"id": "r-ok", "type": "Router", "properties": {"name": "ok"}}]}
    resp = httpx.post(f"{server}/v1/ingest/topology", params={"scope": "t", "name": "big.json"},
                      content=json.dumps(doc).encode(), timeout=120)
    report = resp.json()
    assert resp.status_code == 200 and report["rejected"] == 1, report
    rejection = report["rejections"][0]
    assert rejection["file"] == "big.json" and rejection["where"] == "/entities/0"
    assert "max_value_bytes" in rejection["reason"] and len(rejection["reason"]) < 2000
    # through the fact API: 400 naming the fact, nothing written
    batch = FactBatch.of("robust", [Entity(mint_iri("t", "Router", "r9"), "Router",
                                           {"name": "y" * (1 << 20)})])
    refused = httpx.post(f"{server}/v1/facts", json=batch.to_json(), timeout=60)
    assert refused.status_code == 400 and "r9" in refused.json()["detail"]
    assert "max_value_bytes" in refused.json()["detail"]
    # a 20 MiB name also mints a 20 MiB IRI: refused the same way
    named = {"entities": [{"id": "y" * (20 << 20), "type": "Router"}]}
    resp = httpx.post(f"{server}/v1/ingest/topology", params={"scope": "t", "name": "n.json"},
                      content=json.dumps(named).encode(), timeout=120)
    assert resp.json()["rejected"] == 1
    # the next valid ingest lands, and both query languages see it
    ok = httpx.post(f"{server}/v1/ingest/topology", params={"scope": "t", "name": "ok.json"},
                    content=json.dumps({"entities": [{"id": "r-next", "type": "Router",
                                                      "properties": {"name": "next"}}]}))
    assert ok.json()["rejected"] == 0 and ok.json()["created"] >= 1
    ask = httpx.get(f"{server}/v1/sparql", params={"query": CNC + "ASK { ?r cnc:name 'next' }"})
    assert ask.json()["boolean"] is True
    health = httpx.get(f"{server}/healthz").json()
    assert health["status"] == "ok" and health["views"]["rdf"]["lag"] == 0


def test_the_webhook_needs_a_scope(server: str) -> None:
    payload = json.loads((SHARED_DATA / "alertmanager-webhook-example.json").read_text())
    resp = httpx.post(f"{server}/v1/alerts/alertmanager", json=payload)
    assert resp.status_code == 422 and "scope" in resp.json()["detail"]
    assert httpx.post(f"{server}/v1/alerts/alertmanager", json=payload,
                      params={"scope": "t"}).status_code == 200


def test_livez_and_readyz(server: str) -> None:
    assert httpx.get(f"{server}/livez").json() == {"status": "alive", "phase": "ready"}
    assert httpx.get(f"{server}/readyz").json() == {"status": "ready"}


# -- in-process: startup, defaults, error rendering --------------------------------------

def test_not_ready_while_starting(tmp_path: Path) -> None:
    """With serve_while_starting the app answers at once: /livez 200, /readyz and the
    routes that need the graph 503 until the stores are open."""
    settings = load_settings(data_dir=tmp_path / "data", store="embedded")
    with TestClient(create_app(settings, serve_while_starting=True)) as client:
        seen: set[tuple[str, int]] = set()
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert client.get("/livez").status_code == 200
            resp = client.post("/v1/cypher", json={"query": "RETURN 1 AS x"})
            if resp.status_code == 503:  # still starting (it may have finished meanwhile)
                assert resp.json()["error"] == "NotReady" and resp.headers["Retry-After"]
            seen.add(("readyz", client.get("/readyz").status_code))
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.get("/healthz").json()["status"] == "ok"
        assert client.post("/v1/cypher", json={"query": "RETURN 1 AS x"}).json()["rows"] \
            == [[1]]


def test_the_webhook_takes_the_configured_default_scope(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", store="embedded",
                             default_scope="prod")
    payload = json.loads((SHARED_DATA / "alertmanager-webhook-example.json").read_text())
    with TestClient(create_app(settings)) as client:
        resp = client.post("/v1/alerts/alertmanager", json=payload)
        assert resp.status_code == 200 and resp.json()["alerts"] == len(payload["alerts"])
        rows = client.post("/v1/cypher", json={
            "query": "MATCH (a:Entity) WHERE a.kind = 'Alert' RETURN a.iri AS iri"}).json()
        assert rows["rows"] and all("/prod/" in r[0] for r in rows["rows"])


def test_bad_input_gets_4xx_not_5xx(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data", store="embedded")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        # a parameter list mixing types: the driver cannot convert it
        mixed = client.post("/v1/cypher", json={"query": "RETURN $x AS x",
                                                "parameters": {"x": [1, "a"]}})
        assert mixed.status_code == 400
        # a lone surrogate in a JSON body: in a 422 that echoes it, and in a fact
        lone = b'{"query": 5, "parameters": {"\\udc00": 1}}'
        resp = client.post("/v1/cypher", content=lone,
                           headers={"Content-Type": "application/json"})
        assert resp.status_code == 422 and resp.json()["detail"]
        fact = (b'{"source": "t", "entities": [{"iri": "urn:x", "type": "Router", '
                b'"properties": {"name": "a\\udc00"}}]}')
        resp = client.post("/v1/facts", content=fact,
                           headers={"Content-Type": "application/json"})
        assert resp.status_code == 400 and "surrogate" in resp.json()["detail"]
        resp = client.post("/v1/facts", content=b"{}", headers={
            "Content-Type": "application/json", "Content-Length": "abc"})
        assert resp.status_code == 400


def test_the_cli_exits_non_zero_for_a_metrics_csv_missing_a_column(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("timestamp,metric\n2026-01-01T00:00:00Z,q\n")
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    out = subprocess.run([AUTOCNC, "ingest", "metrics", str(csv), "--scope", "t"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "line 1: missing column(s) value" in out.stderr and "rejected 1" in out.stdout


# -- the store: values bounded, a view that sets aside what it cannot take ----------------

def test_an_oversized_value_writes_nothing(kg: KnowledgeGraph) -> None:
    head = kg.store.head()
    big = FactBatch.of("t", [Entity(ROUTER, "Router", {"name": "x" * (65 * 1024)})])
    with pytest.raises(FactError) as info:
        kg.write(big)
    assert info.value.fact == ROUTER and info.value.field == "name"
    assert "max_value_bytes" in str(info.value)
    assert kg.store.head() == head


def test_the_rdf_view_sets_aside_what_it_cannot_take(kg: KnowledgeGraph) -> None:
    """A value the view's parser refuses (stored before the limit existed: written to the
    store directly here) is set aside with its error; the rest goes on, and reindex
    recovers the view."""
    bad = mint_iri("t/net", "Router", "big")
    kg.store.upsert(FactBatch.of("old", [Entity(bad, "Router", {"status": "x" * (17 << 20)})]))
    kg.write(FactBatch.of("t", [Entity(ROUTER, "Router", {"name": "r1"})]))
    kg.catch_up_rdf()  # does not raise
    health = kg.health()
    rdf = health["views"]["rdf"]
    assert rdf["lag"] == 0 and rdf["setAside"] == 1
    assert rdf["setAsideRecords"][0]["seq"] == 1 and "buffer" in \
        rdf["setAsideRecords"][0]["error"]
    assert kg.sparql(CNC + "ASK { ?r cnc:name 'r1' }").rows == [[True]]
    kg.write(FactBatch.of("t", [Entity(mint_iri("t/net", "Router", "r2"), "Router",
                                       {"name": "r2"})]))
    assert kg.sparql(CNC + "ASK { ?r cnc:name 'r2' }").rows == [[True]]
    kg.reindex()  # does not raise either: the fact is set aside by name
    rdf = kg.health()["views"]["rdf"]
    assert rdf["lag"] == 0 and rdf["setAsideRecords"] == [
        {**rdf["setAsideRecords"][0], "seq": None, "fact": bad}]
    assert kg.sparql(CNC + "SELECT ?n WHERE { ?r cnc:name ?n } ORDER BY ?n").rows == [
        ["r1"], ["r2"]]


def test_settings_bound_the_value_limit() -> None:
    with pytest.raises(ValueError):
        Settings(max_value_bytes=32 << 20)

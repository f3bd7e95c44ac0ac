"""The HTTP API and the CLI, against a real embedded store (and a real server process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from kg.config import load_settings
from kg.facts import Entity, FactBatch
from ontology import mint_iri

ROUTER = mint_iri("t/net", "Router", "r1")
BATCH = FactBatch.of("api-test", [Entity(ROUTER, "Router", {"name": "r1", "status": "up"})])
AUTOCNC = str(Path(sys.executable).with_name("autocnc"))


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = load_settings(data_dir=tmp_path / "data", store="embedded",
                             max_request_bytes=100_000)
    with TestClient(create_app(settings)) as c:
        c.post("/v1/facts", json=BATCH.to_json()).raise_for_status()
        yield c


def test_healthz_reports_view_lag(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["views"]["rdf"]["lag"] in (0, 1)
    assert body["changeLogHead"] == 1
    client.get("/v1/sparql", params={"query": "ASK { ?s ?p ?o }"}).raise_for_status()
    assert client.get("/healthz").json()["views"]["rdf"]["lag"] == 0  # a query catches up


def test_the_rdf_view_catches_up_in_the_background(client: TestClient) -> None:
    """No query needed: the server applies writes to the RDF view when idle."""
    update = FactBatch.of("api-test", [Entity(ROUTER, "Router", {"name": "r1",
                                                                  "status": "down"})])
    client.post("/v1/facts", json=update.to_json()).raise_for_status()
    deadline = time.monotonic() + 10
    while client.get("/healthz").json()["views"]["rdf"]["lag"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("/healthz").json()["views"]["rdf"] == {"watermark": 2, "lag": 0}


def test_sparql_protocol_get_post_and_negotiation(client: TestClient) -> None:
    q = "PREFIX cnc: <https://w3id.org/autocnc/ontology#> SELECT ?n WHERE { ?r cnc:name ?n }"
    got = client.get("/v1/sparql", params={"query": q})
    assert got.headers["content-type"].startswith("application/sparql-results+json")
    assert got.json()["results"]["bindings"] == [{"n": {"type": "literal", "value": "r1"}}]
    form = client.post("/v1/sparql", data={"query": q}, headers={"Accept": "text/csv"})
    assert form.text == "n\r\nr1\r\n"
    raw = client.post("/v1/sparql", content=q, headers={
        "Content-Type": "application/sparql-query", "Accept": "text/tab-separated-values"})
    assert raw.text == '?n\n"r1"\n'


@pytest.mark.parametrize("query, status", [
    ("SELEC ?x WHERE {}", 400),
    ("SELECT * WHERE { SERVICE <http://127.0.0.1:9/> { ?s ?p ?o } }", 403),
    ("INSERT DATA { <urn:a> <urn:b> <urn:c> }", 403),
])
def test_sparql_errors(client: TestClient, query: str, status: int) -> None:
    resp = client.get("/v1/sparql", params={"query": query})
    assert resp.status_code == status
    assert resp.json()["detail"]


def test_cypher_endpoint_is_read_only(client: TestClient) -> None:
    ok = client.post("/v1/cypher", json={"query": "MATCH (n:Entity) RETURN n.name AS name"})
    assert ok.json() == {"columns": ["name"], "rows": [["r1"]], "truncated": False}
    bad = client.post("/v1/cypher", json={"query": "MATCH (n:Entity) DELETE n"})
    assert bad.status_code == 403
    assert client.post("/v1/cypher", json={"query": "MATCH (n:Entity) RETURN count(n) AS c"}
                       ).json()["rows"] == [[1]]


def test_invalid_facts_get_400_naming_the_fact(client: TestClient) -> None:
    doc = {"source": "x", "entities": [{"scope": "t/net", "key": "r9", "type": "Router",
                                        "properties": {"colour": "red"}}]}
    resp = client.post("/v1/facts", json=doc)
    assert resp.status_code == 400 and "colour" in resp.json()["detail"]
    assert "r9" in resp.json()["detail"]


def test_oversized_body_is_refused(client: TestClient) -> None:
    resp = client.post("/v1/facts", content=b"{" + b" " * 200_000 + b"}",
                       headers={"Content-Type": "application/json"})
    assert resp.status_code == 413


def test_write_routes_need_the_token_when_configured(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "d", store="embedded", api_token="s3cret")
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/facts", json=BATCH.to_json()).status_code == 401
        ok = c.post("/v1/facts", json=BATCH.to_json(),
                    headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["created"] == 1
        # the webhook, and an RCA that stores its result, are writes too
        hook = c.post("/v1/alerts/alertmanager?scope=s", json={"version": "4", "alerts": []})
        assert hook.status_code == 401
        window = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z"}
        stored = c.post("/v1/rca", json={"window": window, "store": True})
        assert stored.status_code == 401
        read_only = c.post("/v1/rca", json={"window": window})
        assert read_only.status_code != 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_writes_go_through_the_running_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data), "AUTOCNC_STORE": "embedded"}
    port = _free_port()
    server = subprocess.Popen([AUTOCNC, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        facts = tmp_path / "facts.json"
        facts.write_text(json.dumps(BATCH.to_json()))
        out = subprocess.run([AUTOCNC, "ingest", "facts", str(facts)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "through the server" in out.stdout
        q = subprocess.run([AUTOCNC, "query", "cypher", "MATCH (n:Entity) RETURN n.name AS name",
                            "-f", "json"], env=env, capture_output=True, text=True, timeout=120)
        assert json.loads(q.stdout) == [{"name": "r1"}]
        # a graph result through the server comes back as s, p, o rows
        c = subprocess.run([AUTOCNC, "query", "sparql",
                            "PREFIX cnc: <https://w3id.org/autocnc/ontology#> "
                            "CONSTRUCT { ?r cnc:name ?n } WHERE { ?r cnc:name ?n }",
                            "-o", "json"], env=env, capture_output=True, text=True, timeout=120)
        assert c.returncode == 0, c.stderr
        assert [(t["p"], t["o"]) for t in json.loads(c.stdout)] == [
            ("https://w3id.org/autocnc/ontology#name", "r1")]
    finally:
        server.terminate()
        server.wait(timeout=30)
    # With the server gone, the CLI opens the store itself (read-only) and sees the same.
    q = subprocess.run([AUTOCNC, "query", "sparql",
                        "PREFIX cnc: <https://w3id.org/autocnc/ontology#> "
                        "SELECT ?n WHERE { ?r cnc:name ?n }", "-f", "csv"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stderr
    assert q.stdout.splitlines() == ["n", "r1"]


def test_demo_answers_competency_questions_in_both_languages(tmp_path: Path) -> None:
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(tmp_path / "demo"), "COLUMNS": "80"}
    out = subprocess.run([AUTOCNC, "demo"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    questions = out.stdout.split("Root-cause analysis")[0]
    assert "NO" not in questions.split("question")[-1]
    assert questions.count("yes") == 4
    # injected faults, alerted through the webhook, are explained by RCA
    assert "RCA ranked the injected cause first in 2 of 2 faults" in out.stdout
    assert "evidence path: alert KubePodCrashLooping" in out.stdout
    assert "\u2026" not in out.stdout  # at 80 columns, tables wrap names rather than cut them

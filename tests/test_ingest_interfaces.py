"""`autocnc ingest ...` and `POST /v1/ingest/{kind}`: reports, exit codes, 4xx, the server path."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from kg.config import load_settings
from tests.conftest import SHARED_DATA
from tests.test_api_cli import AUTOCNC, _free_port

BOUTIQUE = SHARED_DATA / "topology" / "online-boutique"
DEPS = (BOUTIQUE / "service-dependencies.csv").read_bytes()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUTOCNC, *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AUTOCNC_DATA_DIR": str(tmp_path / "data"),
            "AUTOCNC_STORE": "embedded", "COLUMNS": "200"}


def test_cli_ingest_reports_and_is_idempotent(env: dict[str, str]) -> None:
    out = run(env, "ingest", "topology", str(BOUTIQUE), "--scope", "ob", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["created"] > 100 and report["rejected"] == 0
    again = json.loads(run(env, "ingest", "topology", str(BOUTIQUE), "--scope", "ob",
                           "--json").stdout)
    assert (again["created"], again["updated"]) == (0, 0)
    plain = run(env, "ingest", "topology", str(BOUTIQUE), "--scope", "ob")
    assert "created 0, updated 0" in plain.stdout


def test_cli_exit_code_names_rejections(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "deps.csv"
    bad.write_text("caller,callee,port\na,b,80\nb,c,eighty\n")
    out = run(env, "ingest", "topology", str(bad), "--scope", "x")
    assert out.returncode == 1
    assert "deps.csv: line 3" in out.stderr and "eighty" in out.stderr
    relaxed = run(env, "ingest", "topology", str(bad), "--scope", "x", "--allow-rejects",
                  "--as-of", "2030-01-01T00:00:00Z")
    assert relaxed.returncode == 0
    dry = run(env, "ingest", "topology", str(BOUTIQUE), "--scope", "y", "--dry-run",
              "--json")
    assert json.loads(dry.stdout)["dryRun"] is True
    q = run(env, "query", "cypher", "MATCH (n:Entity) WHERE n.source STARTS WITH "
            "'topology/k8s:y' RETURN count(n) AS n", "-f", "json")
    assert json.loads(q.stdout) == [{"n": 0}]
    missing = run(env, "ingest", "topology", str(tmp_path / "nope.yaml"), "--scope", "x")
    assert missing.returncode == 2 and "no such file" in missing.stderr


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = load_settings(data_dir=tmp_path / "data", store="embedded")
    with TestClient(create_app(settings)) as c:
        yield c


def test_http_ingest_returns_the_report(client: TestClient) -> None:
    resp = client.post("/v1/ingest/topology", content=DEPS,
                       params={"scope": "ob", "name": "deps.csv",
                               "as_of": "2026-01-01T00:00:00Z"})
    assert resp.status_code == 200, resp.text
    services = {n for line in DEPS.decode().splitlines()[1:] for n in line.split(",")[:2]}
    assert resp.json()["created"] == len(services) + 17 + 1  # + the snapshot marker
    rows = client.post("/v1/cypher", json={"query": "MATCH ()-[c:calls]->() RETURN count(c)"})
    assert rows.json()["rows"] == [[17]]


@pytest.mark.parametrize("params, field", [
    ({"scope": "ob", "name": "d.csv", "as_of": "yesterday"}, "as_of"),
    ({"scope": "ob", "name": "d.csv", "options": "[1]"}, "options"),
    ({"name": "d.csv"}, "scope"),
])
def test_http_ingest_malformed_requests_get_422(client: TestClient, params: dict[str, str],
                                                field: str) -> None:
    resp = client.post("/v1/ingest/topology", content=DEPS, params=params)
    assert resp.status_code == 422 and field in resp.text
    assert client.get("/healthz").json()["changeLogHead"] == 0


def test_http_ingest_unknown_kind_is_422(client: TestClient) -> None:
    assert client.post("/v1/ingest/weather", content=b"x").status_code == 422


def test_cli_ingest_goes_through_the_running_server(env: dict[str, str]) -> None:
    port = _free_port()
    server = subprocess.Popen([AUTOCNC, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(150):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        out = run(env, "ingest", "topology", str(BOUTIQUE), "--scope", "ob", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["created"] > 100
        # SPARQL sees what was acknowledged (the view catches up before the query)
        ask = httpx.get(f"http://127.0.0.1:{port}/v1/sparql", params={
            "query": "PREFIX cnc: <https://w3id.org/autocnc/ontology#> "
                     "ASK { ?s cnc:calls ?o }"}).json()
        assert ask["boolean"] is True
        health = httpx.get(f"http://127.0.0.1:{port}/healthz").json()
        assert health["changeLogHead"] > 0 and health["views"]["rdf"]["lag"] == 0
    finally:
        server.terminate()
        server.wait(timeout=30)

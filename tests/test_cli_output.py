"""One output convention for every ``autocnc`` command (docs/cli.md): ``-o/--output
table|json|yaml|csv`` honoured or refused up front, tables that never cut an identifier,
``incidents list|show``, validated ``serve`` options, no tracebacks, a light ``--help``."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import yaml
from typer.testing import CliRunner

from api.cli import app
from api.output import FORMATS
from kg.config import load_settings
from kg.facts import Entity, FactBatch

AUTOCNC = str(Path(sys.executable).with_name("autocnc"))
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LONG = "https://w3id.org/autocnc/id/demo/backbone/Link/" + "core-shanghai-beijing-" * 3 + "01"


# -- every command: -o honoured or refused up front ---------------------------------------

def _leaves(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if hasattr(cmd, "commands"):  # a group
        for name, sub in sorted(cmd.commands.items()):
            yield from _leaves(sub, (*path, name))
    else:
        yield path


COMMANDS = list(_leaves(typer.main.get_command(app)))
# The commands that print fewer than the four formats; every other one must print all four.
SUPPORTED: dict[tuple[str, ...], tuple[str, ...]] = {
    ("serve",): ("table",), ("demo",): ("table", "json", "yaml")}


def _command(path: tuple[str, ...]) -> Any:
    cmd: Any = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def test_the_command_list_is_complete() -> None:
    names = {" ".join(p) for p in COMMANDS}
    assert {"status", "rca", "incidents list", "incidents show", "query cypher",
            "query sparql", "ingest facts", "ingest alerts", "serve", "alerts resync",
            "causal", "recommend"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_has_the_output_option_and_refuses_unknown_formats(
        path: tuple[str, ...]) -> None:
    options = {o for p in _command(path).params for o in getattr(p, "opts", [])}
    assert "--output" in options, f"autocnc {' '.join(path)} has no -o/--output"
    # ingest's -o also carries KEY=VALUE source options; everywhere else -o is --output
    flag = "--output" if path[0] == "ingest" else "-o"
    assert "-o" in options
    res = CliRunner().invoke(app, [*path, flag, "xml"], prog_name="autocnc")
    assert res.exit_code == 2, res.output
    message = " ".join(res.output.replace("│", " ").split())
    supported = SUPPORTED.get(path, FORMATS)
    assert f"'xml': `autocnc {' '.join(path)}` prints {', '.join(supported)}" in message
    for fmt in set(FORMATS) - set(supported):  # known formats it cannot print: refused too
        refused = CliRunner().invoke(app, [*path, flag, fmt], prog_name="autocnc")
        assert refused.exit_code == 2 and "prints" in refused.output


# -- real data: a graph with a long identifier, and an incident from a webhook payload -----

def _run(env: dict[str, str], *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUTOCNC, *args], env={**env, "COLUMNS": str(columns)},
                          capture_output=True, text=True, timeout=300)


def _cells(table: str, column: int, key: int = 0) -> list[str]:
    """The full text of each row's cell in ``column`` of a Rich table: folded lines joined;
    a row starts where the cell of ``key`` (a short column that never folds) has text."""
    cells: list[str] = []
    for line in table.splitlines():
        if not line.startswith("│"):
            continue
        parts = [p.strip() for p in line.split("│")[1:-1]]
        if parts[key] or not cells:
            cells.append("")
        cells[-1] += parts[column]
    return cells


@pytest.fixture(scope="module")
def incident_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A data directory with the demo CNC, a long-named router and one incident that came
    in as an Alertmanager webhook payload and was analysed; the server is gone after."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from ingest.demo import generate_demo

    data = tmp_path_factory.mktemp("cli") / "data"
    settings = load_settings(data_dir=data, store="embedded")
    demo = generate_demo(7)
    app_ = create_app(settings)
    with TestClient(app_) as client:
        client.post("/v1/facts", json=demo.batch.to_json()).raise_for_status()
        client.post("/v1/facts", json=FactBatch.of("cli-test", [
            Entity(LONG, "Router", {"name": "r-long", "status": "up"})]).to_json()
        ).raise_for_status()
        link = sorted({r.end for r in demo.batch.relations if r.type == "routedOver"})[0]
        deps = sorted(r.start for r in demo.batch.relations
                      if r.type == "routedOver" and r.end == link)
        scope = deps[0].split("/id/")[1].rsplit("/", 2)[0]
        names = [d.rsplit("%2F", 1)[1] for d in deps
                 if d.startswith(f"https://w3id.org/autocnc/id/{scope}/")]
        alerts = [{"status": "firing", "startsAt": (T0 + timedelta(seconds=i)).isoformat(),
                   "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": f"f{i}",
                   "labels": {"alertname": "KubeDeploymentReplicasMismatch",
                              "namespace": "default", "deployment": n},
                   "annotations": {}} for i, n in enumerate(names)]
        payload = {"version": "4", "groupKey": "{}:{alertname=\"x\"}", "status": "firing",
                   "receiver": "r", "groupLabels": {}, "commonLabels": {},
                   "commonAnnotations": {}, "externalURL": "", "alerts": alerts}
        client.post("/v1/alerts/alertmanager", json=payload,
                    params={"scope": scope}).raise_for_status()
        assert app_.state.incidents.tick()
        listed = client.get("/v1/incidents").json()
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(data), "AUTOCNC_STORE": "embedded"}
    return {"env": env, "data": data, "incident": listed[0], "alerts": len(alerts)}


def test_query_prints_every_format_with_full_values(incident_env: dict[str, Any]) -> None:
    env = incident_env["env"]
    q = "MATCH (n:Entity {name: 'r-long'}) RETURN n.iri AS iri, n.status AS status"
    out = {fmt: _run(env, "query", "cypher", q, "-o", fmt) for fmt in FORMATS}
    assert all(r.returncode == 0 for r in out.values()), {f: r.stderr for f, r in out.items()}
    assert json.loads(out["json"].stdout) == [{"iri": LONG, "status": "up"}]
    assert yaml.safe_load(out["yaml"].stdout) == [{"iri": LONG, "status": "up"}]
    assert list(csv.reader(io.StringIO(out["csv"].stdout))) == [["iri", "status"],
                                                                [LONG, "up"]]
    # at 80 columns the 110-character IRI folds over lines but is all there
    assert _cells(out["table"].stdout, 0, key=1) == [LONG]
    # the old -f still works (deprecated: a warning on stderr, stdout unchanged)
    old = _run(env, "query", "sparql", "SELECT ?n WHERE { ?r <https://w3id.org/autocnc/"
               "ontology#name> 'r-long' . BIND('x' AS ?n) }", "-f", "yaml")
    assert old.returncode == 0 and yaml.safe_load(old.stdout) == [{"n": "x"}]
    assert "deprecated" in old.stderr
    both = _run(env, "query", "cypher", q, "-o", "json", "-f", "csv")
    assert both.returncode == 2 and "conflicting output formats" in both.stderr


def test_status_prints_every_format(incident_env: dict[str, Any]) -> None:
    env = incident_env["env"]
    doc = json.loads(_run(env, "status", "-o", "json").stdout)
    assert doc["store"] == "embedded" and doc["server"] is None
    assert doc["views"]["rdf"]["lag"] == 0
    assert yaml.safe_load(_run(env, "status", "-o", "yaml").stdout) == doc
    rows = dict(csv.reader(io.StringIO(_run(env, "status", "-o", "csv").stdout)))
    assert rows["changeLogHead"] == str(doc["changeLogHead"]) and "views.rdf.lag" in rows
    table = _run(env, "status").stdout
    assert "views.rdf.lag" in table and "{" not in table  # not a Python dict any more


def test_incidents_list_and_show_from_a_webhook_payload(incident_env: dict[str, Any]) -> None:
    env, inc = incident_env["env"], incident_env["incident"]
    listed = json.loads(_run(env, "incidents", "list", "-o", "json").stdout)
    assert [i["id"] for i in listed] == [inc["id"]]
    assert listed[0]["alerts"] == incident_env["alerts"] and listed[0]["status"] == "analysed"
    top = listed[0]["rca"]["candidates"][0]
    assert top["rank"] == 1 and top["entity"].startswith("https://")
    assert json.loads(_run(env, "incidents", "list", "--status", "resolved", "-o",
                           "json").stdout) == []
    assert json.loads(_run(env, "incidents", "list", "--status", "open", "-o",
                           "json").stdout) == listed
    rows = list(csv.DictReader(io.StringIO(_run(env, "incidents", "list", "-o",
                                                "csv").stdout)))
    assert rows[0]["id"] == inc["id"] and rows[0]["top cause"] == top["entity"]
    # the table at 80 columns: the top cause (without the IRI base) is never cut
    table = _run(env, "incidents", "list").stdout
    assert _cells(table, 4, key=1) == [top["entity"].removeprefix(
        "https://w3id.org/autocnc/id/")]
    assert _cells(table, 0, key=1) == [inc["id"]]

    shown = yaml.safe_load(_run(env, "incidents", "show", inc["id"], "-o", "yaml").stdout)
    assert shown["iri"] == inc["iri"] and shown["rca"]["candidates"][0] == top
    by_iri = json.loads(_run(env, "incidents", "show", inc["iri"], "-o", "json").stdout)
    assert by_iri == shown
    cands = list(csv.DictReader(io.StringIO(_run(env, "incidents", "show", inc["id"], "-o",
                                                 "csv").stdout)))
    assert [c["candidate"] for c in cands][:1] == [top["entity"]]
    fields = _run(env, "incidents", "show", inc["id"]).stdout.split("\n\n")[0]
    assert dict(zip(_cells(fields, 0), _cells(fields, 1), strict=True))["iri"] == inc["iri"]
    missing = _run(env, "incidents", "show", "nope")
    assert missing.returncode == 2 and "no incident nope" in missing.stderr
    assert "Traceback" not in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_rca_prints_csv_and_an_uncut_table(incident_env: dict[str, Any]) -> None:
    env, inc = incident_env["env"], incident_env["incident"]
    as_csv = _run(env, "rca", "--incident", inc["iri"], "-o", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows[0]["rank"] == "1" and rows[0]["candidate"].startswith("https://")
    assert float(rows[0]["score"]) > 0
    table = _run(env, "rca", "--incident", inc["iri"], "--limit", "3").stdout
    names = _cells(table, 1)
    assert len(names) == min(3, len(rows)) and names[0] == rows[0]["candidate"].removeprefix("https://w3id.org/autocnc/id/")
    old = _run(env, "rca", "--incident", inc["iri"], "--format", "json", "--limit", "1")
    assert json.loads(old.stdout)["candidates"][0]["entity"] == rows[0]["candidate"]


def test_user_errors_are_one_line_without_traceback(incident_env: dict[str, Any]) -> None:
    env = incident_env["env"]
    bad = _run(env, "query", "cypher", "MATCH (n RETURN n")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error:")
    limit = _run(env, "rca", "--window", T0.isoformat(), T0.isoformat(), "--limit", "0")
    assert limit.returncode == 2 and "--limit" in limit.stderr


# -- serve: validated options, a busy port found before the start-up -----------------------

def test_serve_refuses_a_port_out_of_range(tmp_path: Path) -> None:
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(tmp_path / "d")}
    for port in ("99999", "0"):
        out = _run(env, "serve", "--port", port)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        message = " ".join(out.stderr.replace("│", " ").split())
        assert "Invalid value for '--port'" in message
        assert ("65535" if port == "99999" else "greater than or equal to 1") in message


def test_serve_reports_a_busy_port_before_starting(tmp_path: Path) -> None:
    env = {**os.environ, "AUTOCNC_DATA_DIR": str(tmp_path / "d")}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = _run(env, "serve", "--port", str(port))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"cannot serve on 127.0.0.1:{port}: the port is in use" in out.stderr
    assert not (tmp_path / "d" / "writer.lock").exists()  # refused before the stores open


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PROBE = """
import json, sys
from api.cli import main
sys.argv = ["autocnc", *sys.argv[1:]]
try:
    main()
finally:
    sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""
HEAVY = ("torch", "sentence_transformers", "pyoxigraph", "ladybug", "fastapi", "pandas",
         "numpy", "scipy", "neo4j", "uvicorn", "pyarrow", "duckdb", "kg.graph", "reasoning")


def test_through_a_running_server(incident_env: dict[str, Any]) -> None:
    env, inc = incident_env["env"], incident_env["incident"]
    port = _free_port()
    srv = subprocess.Popen([AUTOCNC, "serve", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        listed = json.loads(_run(env, "incidents", "list", "-o", "json").stdout)
        assert [i["id"] for i in listed] == [inc["id"]]
        shown = json.loads(_run(env, "incidents", "show", inc["id"], "-o", "json").stdout)
        assert shown["iri"] == inc["iri"]
        status = json.loads(_run(env, "status", "-o", "json").stdout)
        assert status["server"] == f"http://127.0.0.1:{port}"
        # a query through the server imports nothing of the engine
        probe = subprocess.run([sys.executable, "-c", PROBE, "query", "cypher",
                                "MATCH (n:Entity {name: 'r-long'}) RETURN n.iri AS iri",
                                "-o", "json"], env=env, capture_output=True, text=True,
                               timeout=120)
        assert json.loads(probe.stdout) == [{"iri": LONG}], probe.stderr
        loaded = json.loads(probe.stderr.split("MODULES ")[-1])
        assert [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY] == []
        # a second server on the same data directory is refused at once
        again = _run(env, "serve", "--port", str(_free_port()))
        assert again.returncode == 2 and "already holds the data directory" in again.stderr
    finally:
        srv.terminate()
        srv.wait(timeout=60)


def test_help_imports_nothing_heavy() -> None:
    out = subprocess.run([sys.executable, "-c", "import json, sys, api.cli; "
                          "print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=60)
    loaded = json.loads(out.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY]
    assert heavy == [], heavy
    assert "api.cli" in loaded and "httpx" not in loaded and "kg.config" not in loaded

"""The ``autocnc`` command line.

Writes go to the process that holds the data directory's writer lock: when ``autocnc serve``
runs, CLI commands send their work to its API; otherwise they open the stores themselves
(read-only for reads).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from api.cli_context import OPTIONS, http, open_graph, server, settings
from kg.config import Settings
from kg.errors import AutoCNCError, ConfigError

app = typer.Typer(help="AutoCNC: knowledge-graph engine for CNC operations.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
query_app = typer.Typer(help="Query the knowledge graph (read-only unless --write).",
                        no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest data into the knowledge graph.", no_args_is_help=True)
app.add_typer(query_app, name="query")
app.add_typer(ingest_app, name="ingest")
console = Console()
err = Console(stderr=True)


@app.callback()
def main_options(
    data_dir: Annotated[Path | None, typer.Option(
        help="data directory [env AUTOCNC_DATA_DIR; default ./.autocnc]")] = None,
    store: Annotated[str | None, typer.Option(help="embedded | neo4j [env AUTOCNC_STORE]")] = None,
    neo4j_uri: Annotated[str | None, typer.Option(help="bolt:// URI [env NEO4J_URI]")] = None,
    neo4j_user: Annotated[str | None, typer.Option(help="[env NEO4J_USER]")] = None,
    neo4j_password: Annotated[str | None, typer.Option(help="[env NEO4J_PASSWORD]")] = None,
    neo4j_database: Annotated[str | None, typer.Option(help="[env NEO4J_DATABASE]")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file "
                                                "[env AUTOCNC_CONFIG]")] = None,
) -> None:
    OPTIONS.update(config_file=config, data_dir=data_dir, store=store, neo4j_uri=neo4j_uri,
                     neo4j_user=neo4j_user, neo4j_password=neo4j_password,
                     neo4j_database=neo4j_database)


@app.command()
def init() -> None:
    """Create an empty store (graph store + RDF view) with the ontology loaded."""
    kg = open_graph(writer=True)
    try:
        h = kg.health()
    finally:
        kg.close()
    console.print(f"initialised {h['store']} store in {settings().data_dir} "
                  f"(ontology {h['ontologyVersion']}, change log at {h['changeLogHead']})")


@ingest_app.command("facts")
def ingest_facts(file: Annotated[Path, typer.Argument(help="JSON or YAML fact batch")]) -> None:
    """Upsert a batch of facts in the native fact format (docs/model.md), all or nothing."""
    from kg.facts import FactBatch

    s = settings()
    try:
        text = file.read_text(encoding="utf-8")
        doc = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise AutoCNCError(f"cannot read {file}: {exc}") from exc
    if (info := server(s)) is not None:
        result = http(info, "POST", "/v1/facts", json=doc).json()
        console.print(f"written through the server at {info['url']}: {result}")
        return
    batch = FactBatch.from_json(doc, base=s.iri_base)
    kg = open_graph(writer=True)
    try:
        summary = kg.write(batch)
    finally:
        kg.close()
    console.print(f"written: {summary}")


_INGEST_HELP = {
    "topology": "Topology snapshots: native YAML/JSON, GraphML, Kubernetes manifests, "
                "service-dependency CSV (docs/ingest/topology.md).",
    "metrics": "Metric samples: Prometheus text, long CSV/Parquet, PetShop wide CSV; "
               "series summaries and anomalies into the graph (docs/ingest/metrics.md).",
    "logs": "Log lines (plain/syslog, JSON lines): templates mined with Drain, counts per "
            "entity and window, new/rare templates and error bursts (docs/ingest/logs.md).",
    "runbooks": "Runbooks in Markdown (prometheus-operator layout) as operation plans with "
                "steps, embedded for matching (docs/ingest/runbooks.md).",
    "alerts": "Prometheus rule files as alert definitions; Alertmanager webhook payloads "
              "as alert occurrences (docs/ingest/alerts.md).",
    "traces": "OpenTelemetry spans (OTLP JSON / protobuf, span table CSV / Parquet) as the "
              "observed call graph, RED and self-time series, span-error events "
              "(docs/ingest/traces.md).",
}


def _register_ingest_commands() -> None:
    from api.ingest_cli import make_command

    for kind, text in _INGEST_HELP.items():
        ingest_app.command(kind, help=text + " Exit code 1 when records were rejected "
                           "(see --allow-rejects).")(make_command(kind, text))


_register_ingest_commands()


def _emit(columns: list[str], rows: list[list[Any]], fmt: str, truncated: bool) -> None:
    def plain(v: Any) -> Any:
        return v.isoformat() if isinstance(v, datetime) else v

    if fmt == "json":
        sys.stdout.write(json.dumps([{c: plain(v) for c, v in zip(columns, r, strict=True)}
                                     for r in rows], default=str, indent=1) + "\n")
    elif fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(columns)
        w.writerows([[plain(v) for v in r] for r in rows])
        sys.stdout.write(buf.getvalue())
    else:
        table = Table(*columns)
        for r in rows:
            table.add_row(*["" if v is None else str(plain(v)) for v in r])
        console.print(table)
        console.print(f"{len(rows)} row(s)")
    if truncated:
        err.print("[yellow]result truncated at the row cap[/yellow]")


Format = Annotated[str, typer.Option("--format", "-f", help="table | json | csv")]


@query_app.command("cypher")
def query_cypher(
    query: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p",
                                                    help="NAME=JSON value, repeatable")] = None,
    write: Annotated[bool, typer.Option(help="allow writing clauses (maintenance)")] = False,
    format: Format = "table",
) -> None:
    """Run Cypher on the graph store (read-only unless --write)."""
    params = {}
    for p in param or []:
        name, _, value = p.partition("=")
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    s = settings()
    if (info := server(s)) is not None:
        if write:
            raise AutoCNCError("the server holds the store; --write is refused while it runs")
        body = http(info, "POST", "/v1/cypher", json={"query": query, "parameters": params})
        res = body.json()
        _emit(res["columns"], res["rows"], format, res["truncated"])
        return
    kg = open_graph(writer=write)
    try:
        r = kg.cypher(query, params, write=write)
    finally:
        kg.close()
    _emit(r.columns, r.rows, format, r.truncated)


@query_app.command("sparql")
def query_sparql(query: str, format: Format = "table") -> None:
    """Run a SPARQL 1.1 query on the RDF view (read-only)."""
    s = settings()
    if (info := server(s)) is not None:
        res = http(info, "POST", "/v1/sparql", content=query.encode(),
                   headers={"Content-Type": "application/sparql-query",
                            "Accept": "application/sparql-results+json"}).json()
        if "boolean" in res:
            _emit(["ask"], [[res["boolean"]]], format, False)
            return
        cols = res["head"]["vars"]
        rows = [[b.get(c, {}).get("value") for c in cols] for b in res["results"]["bindings"]]
        _emit(cols, rows, format, False)
        return
    kg = open_graph(writer=False)
    try:
        r = kg.sparql(query)
    finally:
        kg.close()
    _emit(r.columns, r.rows, format, r.truncated)


@app.command()
def reindex() -> None:
    """Rebuild the derived views (RDF view, snapshot) from the graph store, from zero."""
    s = settings()
    if (info := server(s)) is not None:
        console.print(http(info, "POST", "/v1/reindex").json())
        return
    kg = open_graph(writer=True)
    try:
        kg.reindex()
        console.print(kg.health())
    finally:
        kg.close()


@app.command()
def status() -> None:
    """Show the store, the change-log head and each derived view's lag."""
    s = settings()
    if (info := server(s)) is not None:
        console.print(http(info, "GET", "/healthz").json())
        return
    kg = open_graph(writer=False)
    try:
        console.print(kg.health())
    finally:
        kg.close()


SHUTDOWN_GRACE_S = 10


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address; non-loopback needs "
                                      "AUTOCNC_API_TOKEN")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs); holds the data directory's writer lock."""
    import uvicorn

    from api.app import create_app

    s = settings()
    if host not in ("127.0.0.1", "localhost", "::1") and not s.api_token:
        raise ConfigError(f"binding {host} exposes the API: set AUTOCNC_API_TOKEN first")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    # On SIGTERM, requests still running after SHUTDOWN_GRACE_S are given up (a query's
    # worker is then stopped; a write finishes before the stores close).
    uvicorn.run(create_app(s, url=url, serve_while_starting=True), host=host, port=port,
                log_level="info", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)


@app.command()
def demo(seed: Annotated[int, typer.Option(help="generator seed")] = 7) -> None:
    """Build the demo CNC in the embedded store and answer the competency questions."""
    from api.demo_report import run_demo

    s = settings()
    if s.store != "embedded":
        s = s.model_copy(update={"store": "embedded"})
    run_demo(s, seed, console)



@app.command()
def rca(
    alerts: Annotated[Path | None, typer.Option(
        help="Alertmanager webhook payload (JSON) or a JSON list of its alerts")] = None,
    window: Annotated[tuple[str, str] | None, typer.Option(
        help="START END (ISO 8601 with zone): the firing alerts in the graph in this window")
    ] = None,
    incident: Annotated[str | None, typer.Option(help="IRI of an incident in the graph")
                        ] = None,
    scope: Annotated[str | None, typer.Option(
        help="cluster/network/site the alert labels belong to")] = None,
    store: Annotated[bool, typer.Option(help="store the result in the graph")] = False,
    limit: Annotated[str, typer.Option(
        help="candidates to show: a number >= 1, or 'all'")] = "10",
    reference: Annotated[tuple[str, str] | None, typer.Option(
        help="START END (ISO 8601 with zone): a known fault-free window to judge series "
             "against (default: the hour before the incident, cleaned of anomalies)")
    ] = None,
    format: Format = "table",
) -> None:
    """Rank the root causes of alerts (a file), an incident, or a time window, with the
    evidence that makes each candidate the origin (present, normal, unjudged or missing
    per kind), the deviating series and the paths that link it to the symptoms."""
    if limit != "all" and not (limit.isdigit() and int(limit) >= 1):
        raise AutoCNCError(f"--limit: expected a number >= 1 or 'all', got {limit!r}")
    body: dict[str, Any] = {"scope": scope, "store": store,
                            "limit": limit if limit == "all" else int(limit)}
    if reference is not None:
        body["reference"] = {"start": reference[0], "end": reference[1]}
    if sum(x is not None for x in (alerts, window, incident)) != 1:
        raise AutoCNCError("give exactly one of --alerts, --window, --incident")
    if alerts is not None:
        try:
            doc = json.loads(alerts.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AutoCNCError(f"cannot read {alerts}: {exc}") from exc
        body["alerts"] = doc.get("alerts", []) if isinstance(doc, dict) else doc
        if not scope:
            raise AutoCNCError("--alerts needs --scope: the cluster its labels belong to")
    elif window is not None:
        body["window"] = {"start": window[0], "end": window[1]}
    else:
        body["incident"] = incident
    s = settings()
    if (info := server(s)) is not None:
        result = http(info, "POST", "/v1/rca", json=body).json()
    else:
        result = _rca_local(s, body)
    if format == "json":
        sys.stdout.write(json.dumps(result, indent=1, default=str) + "\n")
        return
    table = Table("rank", "candidate", "type", "score", "hypothesis", "evidence")
    for c in result["candidates"]:
        if "evidenceKinds" in c:
            present = [f"{k} {v['origin']:.2f}" for k, v in c["evidenceKinds"].items()
                       if v["status"] == "present"]
        else:
            top = sorted(c["contributions"].items(), key=lambda kv: -kv[1])[:3]
            present = [f"{k} {v:.2f}" for k, v in top if v]
        table.add_row(str(c["rank"]), c["entity"], c["kind"], f"{c['score']:.3f}",
                      c["hypothesis"], ", ".join(present))
    console.print(table)
    shown, total = len(result["candidates"]), result.get("totalCandidates", 0)
    if total > shown:
        console.print(f"{shown} of {total} candidates (--limit all shows every one)")
    for problem in result.get("evidence", {}).get("problems", []):
        console.print(f"[yellow]evidence not read:[/yellow] {problem}", markup=True)
    if result["candidates"]:
        for path in result["candidates"][0]["paths"][:3]:
            hops = " <- ".join(path["entities"][::-1])
            console.print(f"evidence: {path['symptomName']} at {path['at']}: {hops}")
    console.print(result["explanation"])


def _rca_local(s: Settings, body: dict[str, Any]) -> dict[str, Any]:
    from kg.facts import utc
    from reasoning.rca import RCAService
    from reasoning.rca.evidence.prometheus import PrometheusSeries

    kg = open_graph(writer=bool(body["store"]))
    prometheus = None
    try:
        # series pulled from the operator's Prometheus too, as the server does
        prometheus = PrometheusSeries.from_settings(kg)
        svc = RCAService(kg, sources=[prometheus] if prometheus else [])
        if "alerts" in body:
            symptoms = svc.symptoms_from_alerts(body["alerts"], body["scope"])
        elif "window" in body:
            w = body["window"]
            symptoms = svc.symptoms_in_window(utc(w["start"], what="--window start"),
                                              utc(w["end"], what="--window end"),
                                              body["scope"])
        else:
            symptoms = svc.symptoms_of_incident(body["incident"])
        if not symptoms:
            raise AutoCNCError("no firing alerts found for this request")
        ref = body.get("reference")
        result = svc.analyse(
            symptoms, limit=None if body["limit"] == "all" else int(body["limit"]),
            reference=(utc(ref["start"], what="--reference start"),
                       utc(ref["end"], what="--reference end")) if ref else None)
        if body["store"]:
            svc.store(result, scope=body["scope"] or "default", incident=body.get("incident"))
        return result.to_json()
    finally:
        if prometheus is not None:
            prometheus.close()
        kg.close()


def _register_commands() -> None:
    from api.alerts_cli import alerts_app
    from api.causal_cli import causal
    from api.recommend_cli import feedback, policies, recommend, train

    for command in (recommend, train, feedback, policies, causal):
        app.command()(command)
    app.add_typer(alerts_app, name="alerts")


_register_commands()


def main() -> None:
    try:
        app()
    except AutoCNCError as exc:
        err.print(f"[red]error:[/red] {exc}")
        sys.exit(2)

"""The ``autocnc`` command line.

Writes go to the process that holds the data directory's writer lock: when ``autocnc serve``
runs, CLI commands send their work to its API; otherwise they open the stores themselves
(read-only for reads). Every command prints with ``-o/--output table|json|yaml|csv``
(api/output.py, docs/cli.md).

Start-up matters for scripts: this module imports Typer, Rich and the error types only;
each command imports what it needs when it runs (``autocnc --help`` stays well under half
a second, a command that asks a running server imports httpx and nothing of the engine).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli_context import OPTIONS, PortUnavailable, http, open_graph, server, settings
from api.output import (
    FormatAlias,
    Output,
    chosen,
    emit_doc,
    emit_rows,
    output_param,
    stderr,
    stdout,
)
from kg.errors import AutoCNCError, ConfigError

app = typer.Typer(help="AutoCNC: knowledge-graph engine for CNC operations.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
query_app = typer.Typer(help="Query the knowledge graph (read-only unless --write).",
                        no_args_is_help=True)
ingest_app = typer.Typer(help="Ingest data into the knowledge graph.", no_args_is_help=True)
app.add_typer(query_app, name="query")
app.add_typer(ingest_app, name="ingest")


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
def init(output: Output = None) -> None:
    """Create an empty store (graph store + RDF view) with the ontology loaded."""
    fmt = chosen(output)
    kg = open_graph(writer=True)
    try:
        h = kg.health()
    finally:
        kg.close()
    emit_doc(fmt, {"dataDir": str(settings().data_dir), **h}, human=lambda d: stdout.print(
        f"initialised {d['store']} store in {d['dataDir']} (ontology "
        f"{d['ontologyVersion']}, change log at {d['changeLogHead']})", markup=False))


@ingest_app.command("facts")
def ingest_facts(file: Annotated[Path, typer.Argument(help="JSON or YAML fact batch")],
                 output: Output = None) -> None:
    """Upsert a batch of facts in the native fact format (docs/model.md), all or nothing."""
    import dataclasses

    import yaml

    from kg.facts import FactBatch

    fmt = chosen(output)
    s = settings()
    try:
        text = file.read_text(encoding="utf-8")
        doc = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise AutoCNCError(f"cannot read {file}: {exc}") from exc
    if (info := server(s)) is not None:
        result = http(info, "POST", "/v1/facts", json=doc).json()
        emit_doc(fmt, result, human=lambda d: stdout.print(
            f"written through the server at {info['url']}: {d}", markup=False))
        return
    batch = FactBatch.from_json(doc, base=s.iri_base)
    kg = open_graph(writer=True)
    try:
        summary = kg.write(batch)
    finally:
        kg.close()
    emit_doc(fmt, dataclasses.asdict(summary),
             human=lambda d: stdout.print(f"written: {summary}", markup=False))


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


def _emit(fmt: str, columns: list[str], rows: list[list[Any]], truncated: bool) -> None:
    emit_rows(fmt, columns, rows, footer=f"{len(rows)} row(s)")
    if truncated:
        stderr.print("[yellow]result truncated at the row cap[/yellow]")


@query_app.command("cypher")
def query_cypher(
    query: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p",
                                                    help="NAME=JSON value, repeatable")] = None,
    write: Annotated[bool, typer.Option(help="allow writing clauses (maintenance)")] = False,
    output: Output = None,
    format: FormatAlias = None,
) -> None:
    """Run Cypher on the graph store (read-only unless --write)."""
    fmt = chosen(output, format_alias=format)
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
        _emit(fmt, res["columns"], res["rows"], res["truncated"])
        return
    kg = open_graph(writer=write)
    try:
        r = kg.cypher(query, params, write=write)
    finally:
        kg.close()
    _emit(fmt, r.columns, r.rows, r.truncated)


@query_app.command("sparql")
def query_sparql(query: str, output: Output = None, format: FormatAlias = None) -> None:
    """Run a SPARQL 1.1 query on the RDF view (read-only)."""
    fmt = chosen(output, format_alias=format)
    s = settings()
    if (info := server(s)) is not None:
        resp = http(info, "POST", "/v1/sparql", content=query.encode(),
                    headers={"Content-Type": "application/sparql-query",
                             # CONSTRUCT / DESCRIBE answer triples: shown as s, p, o rows
                             "Accept": "application/sparql-results+json, "
                                       "application/n-triples;q=0.9"})
        cut = resp.headers.get("X-AutoCNC-Truncated", "").lower() == "true"
        if resp.headers.get("content-type", "").startswith("application/n-triples"):
            import pyoxigraph as ox

            triples = ox.parse(resp.content, format=ox.RdfFormat.N_TRIPLES)
            _emit(fmt, ["s", "p", "o"], [[t.subject.value, t.predicate.value, t.object.value]
                                         for t in triples], cut)
            return
        res = resp.json()
        if "boolean" in res:
            _emit(fmt, ["ask"], [[res["boolean"]]], False)
            return
        cols = res["head"]["vars"]
        rows = [[b.get(c, {}).get("value") for c in cols] for b in res["results"]["bindings"]]
        _emit(fmt, cols, rows, cut)
        return
    kg = open_graph(writer=False)
    try:
        r = kg.sparql(query)
    finally:
        kg.close()
    _emit(fmt, r.columns, r.rows, r.truncated)


@app.command()
def reindex(output: Output = None) -> None:
    """Rebuild the derived views (RDF view, snapshot) from the graph store, from zero."""
    fmt = chosen(output)
    s = settings()
    if (info := server(s)) is not None:
        emit_doc(fmt, http(info, "POST", "/v1/reindex").json())
        return
    kg = open_graph(writer=True)
    try:
        kg.reindex()
        emit_doc(fmt, kg.health())
    finally:
        kg.close()


@app.command()
def status(output: Output = None) -> None:
    """Show the store, the change-log head and each derived view's lag.

    -o table and csv: one dotted field per row (e.g. views.rdf.lag)."""
    fmt = chosen(output)
    s = settings()
    if (info := server(s)) is not None:
        health = {"server": info["url"], **http(info, "GET", "/healthz").json()}
    else:
        kg = open_graph(writer=False)
        try:
            health = {"server": None, **kg.health()}
        finally:
            kg.close()
    emit_doc(fmt, health)


SHUTDOWN_GRACE_S = 10
ServeOutput = Annotated[str | None, output_param("table")]
DemoOutput = Annotated[str | None, output_param("table", "json", "yaml")]


def check_bindable(host: str, port: int) -> None:
    """Fail in milliseconds, before the stores open, when ``host:port`` cannot be served
    (uvicorn would only find out after the whole start-up)."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise PortUnavailable(host, port, f"unknown host ({exc.strerror})") from exc
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(addr)
        except OSError as exc:
            reason = {errno.EADDRINUSE: "the port is in use by another process (pick "
                                        "another --port)",
                      errno.EACCES: "binding this port needs privileges (use a port "
                                    "above 1023)",
                      errno.EADDRNOTAVAIL: "the address is not one of this machine's"
                      }.get(exc.errno or 0, exc.strerror or str(exc))
            raise PortUnavailable(host, port, reason) from exc


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="bind address; non-loopback needs "
                                      "AUTOCNC_API_TOKEN")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port, 1-65535")] = 8080,
    output: ServeOutput = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs); holds the data directory's writer lock.

    Prints its log for people (-o table only). Exit code 2 at once when the port cannot be
    bound or another server holds the data directory."""
    chosen(output)
    s = settings()
    if host not in ("127.0.0.1", "localhost", "::1") and not s.api_token:
        raise ConfigError(f"binding {host} exposes the API: set AUTOCNC_API_TOKEN first")
    if (info := server(s)) is not None:
        raise AutoCNCError(f"the server at {info['url']} (pid {info.get('pid', '?')}) "
                           f"already holds the data directory {s.data_dir}")
    check_bindable(host, port)
    import uvicorn

    from api.app import create_app

    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    # On SIGTERM, requests still running after SHUTDOWN_GRACE_S are given up (a query's
    # worker is then stopped; a write finishes before the stores close).
    uvicorn.run(create_app(s, url=url, serve_while_starting=True), host=host, port=port,
                log_level="info", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)


@app.command()
def demo(seed: Annotated[int, typer.Option(help="generator seed")] = 7,
         output: DemoOutput = None) -> None:
    """Build the demo CNC, answer the competency questions, explain injected faults.

    The demo CNC goes into the configured store (--store embedded | neo4j); faults are
    injected through the webhook and explained by RCA. -o json / yaml: the answers on stdout,
    the report on stderr."""
    from api.demo_report import run_demo

    fmt = chosen(output)
    s = settings()
    report = run_demo(s, seed, stdout if fmt == "table" else stderr)
    if fmt != "table":
        emit_doc(fmt, report)


def _register_commands() -> None:
    from api.alerts_cli import alerts_app
    from api.causal_cli import causal
    from api.rca_cli import incidents_app, rca
    from api.recommend_cli import feedback, policies, recommend, train

    for command in (rca, recommend, train, feedback, policies, causal):
        # the list of commands shows the first sentence of each docstring
        first = " ".join((command.__doc__ or "").split()).split(". ")[0].rstrip(".")
        app.command(short_help=first + ".")(command)
    app.add_typer(alerts_app, name="alerts")
    app.add_typer(incidents_app, name="incidents")


_register_commands()


def main() -> None:
    """The console script: a user's error is one line on stderr and exit code 2, never a
    traceback (docs/cli.md lists the exit codes)."""
    try:
        app()
    except AutoCNCError as exc:
        from rich.markup import escape

        stderr.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False,
                     soft_wrap=True)  # one line, however long: scripts grep it
        sys.exit(2)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)

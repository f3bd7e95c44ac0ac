"""The HTTP API (FastAPI): health, SPARQL 1.1 Protocol, read-only Cypher, fact ingest.

Security by default: ``autocnc serve`` binds 127.0.0.1; binding another address needs
``AUTOCNC_API_TOKEN``, and every write route then requires ``Authorization: Bearer <token>``.
Query endpoints are read-only and refuse clauses that reach files or the network; every
query has a timeout and a row cap; request bodies are bounded.
"""

from __future__ import annotations

import gc
import hmac
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api import sparql_protocol
from api.alert_receiver import AlertReceiver
from api.causal_routes import add_causal_routes
from api.incident_worker import IncidentWorker, alert_refs
from api.ingest_routes import add_ingest_routes
from api.periodic import Periodic
from api.rca_routes import add_rca_routes
from api.recommend_routes import add_recommend_routes
from api.trace_routes import add_trace_routes
from ingest import IngestError
from kg.config import Settings
from kg.errors import AutoCNCError, FactError, ForbiddenQuery, QueryError, StoreUnavailable
from kg.facts import FactBatch
from kg.graph import KnowledgeGraph
from reasoning.rca import RCAService
from reasoning.rca.evidence.prometheus import PrometheusSeries


def _warm(rca: RCAService) -> None:
    """Build the analytic snapshot (with its event index) and compile the propagation rules
    before serving, so the first RCA call does not pay for them (seconds at 100k entities).

    Then freeze what survived in the collector's permanent generation: the snapshot is
    millions of long-lived objects, and a full collection walking them stalled a request
    for 300-400 ms at 100k entities; frozen, they are still freed by reference counting."""
    t = time.perf_counter()
    rca.warm()
    gc.collect()
    gc.freeze()
    logging.getLogger("autocnc.api").info("views warm in %.1f s (%d entities)",
                                          time.perf_counter() - t, rca.kg.snapshot.node_count)


class ViewSyncer:
    """Catches the RDF view up in the background: writes leave it behind (see
    :mod:`kg.graph`), and this applies what they changed once writes pause for ``interval``
    seconds, or every ``max_lag_s`` seconds under sustained writing, many writes in one round
    (cheaper per fact than one by one, and it leaves the CPU to the writers during a burst).
    SPARQL queries never see the lag: they catch the view up first. It runs without the
    request guard: the graph store and Oxigraph are safe to use from this thread, and
    writers should not wait for the view."""

    def __init__(self, kg: KnowledgeGraph, interval: float = 0.5, max_lag_s: float = 5.0
                 ) -> None:
        self.kg, self.interval, self.max_lag_s = kg, interval, max_lag_s
        self._caught_up = time.monotonic()
        self._ticker = Periodic("rdf-view", interval, self.tick, "autocnc.api")

    def start(self) -> ViewSyncer:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop(timeout=60)

    def tick(self) -> None:
        now = time.monotonic()
        if not self.kg.rdf_behind:
            self._caught_up = now
        elif now - self.kg.last_write >= self.interval or \
                now - self._caught_up >= self.max_lag_s:  # else: writes coming, batch them
            self._caught_up = now
            self.kg.catch_up_rdf()


class CypherRequest(BaseModel):
    query: str = Field(..., description="a read-only Cypher query", max_length=100_000)
    parameters: dict[str, Any] = Field(default_factory=dict,
                                       description="query parameters ($name)")


class CypherResponse(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="true when the row cap cut the result")


def create_app(settings: Settings, *, url: str | None = None) -> FastAPI:
    """The app for ``settings``; the knowledge graph is opened (and locked) at startup."""
    state: dict[str, Any] = {}
    guard = threading.Lock()  # the stores are used by one request at a time

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["kg"] = KnowledgeGraph.open(settings, writer=True, url=url)
        # series pulled per incident from the operator's Prometheus (docs/prometheus.md)
        prometheus = PrometheusSeries.from_settings(state["kg"])
        state["rca"] = RCAService(state["kg"], sources=[prometheus] if prometheus else [])
        _warm(state["rca"])
        state["incidents"] = IncidentWorker(state["kg"], guard, rca=state["rca"]).start()
        state["alerts"] = AlertReceiver(
            state["kg"], guard,
            incidents=lambda recs, scope: state["incidents"].assign(alert_refs(recs), scope),
        ).start()
        state["views"] = ViewSyncer(state["kg"]).start()
        app.state.incidents = state["incidents"]  # for operators' tooling and tests
        try:
            yield
        finally:
            state.pop("views").stop()
            state.pop("alerts").stop()
            state.pop("incidents").stop()
            state.pop("rca")
            if prometheus is not None:
                prometheus.close()
            state.pop("kg").close()

    app = FastAPI(
        title="AutoCNC", version="0.1.0", lifespan=lifespan,
        description="Knowledge-graph engine for computing-and-network convergence operations.",
    )

    @app.middleware("http")
    async def bounded_body(request: Request, call_next: Any) -> Response:
        length = request.headers.get("content-length")
        limit = (settings.max_ingest_bytes if request.url.path.startswith("/v1/ingest/")
                 else settings.max_request_bytes)
        if length is not None and int(length) > limit:
            return JSONResponse({"detail": f"request body over {limit} bytes"},
                                status_code=413)
        return await call_next(request)

    @app.exception_handler(AutoCNCError)
    async def autocnc_error(request: Request, exc: AutoCNCError) -> JSONResponse:
        status = (403 if isinstance(exc, ForbiddenQuery) else
                  400 if isinstance(exc, QueryError | FactError) else
                  422 if isinstance(exc, IngestError) else
                  503 if isinstance(exc, StoreUnavailable) else 500)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__},
                            status_code=status)

    def kg() -> KnowledgeGraph:
        return state["kg"]

    def writer(authorization: str | None = Header(None)) -> None:
        """Write routes need the bearer token when one is configured."""
        if settings.api_token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), settings.api_token.encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/healthz", tags=["ops"])
    def healthz(g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Liveness and the lag of each derived view behind the change log."""
        with guard:
            return {"status": "ok", **g.health()}

    @app.post("/v1/cypher", response_model=CypherResponse, tags=["query"])
    def cypher(req: CypherRequest, g: KnowledgeGraph = Depends(kg)) -> CypherResponse:
        """Run a read-only Cypher query. Writes, LOAD CSV / LOAD FROM, COPY, INSTALL and
        CALL outside the allowlist are refused with 403; syntax errors give 400."""
        with guard:
            res = g.cypher(req.query, req.parameters)
        return CypherResponse(columns=res.columns, rows=res.rows, truncated=res.truncated)

    def _sparql(query: str | None, accept: str | None, g: KnowledgeGraph) -> Response:
        if not query:
            raise HTTPException(400, "missing SPARQL query")
        with guard:
            res = g.rdf.query(query, timeout_s=settings.query_timeout_s,
                              max_rows=settings.query_max_rows, terms=True)
        graph = res.columns == ["s", "p", "o"] and "CONSTRUCT" in query.upper() or \
            "DESCRIBE" in query.upper()
        mime = negotiate_ask(res, accept, graph)
        return Response(sparql_protocol.serialise(res, mime), media_type=mime,
                        headers={"X-AutoCNC-Truncated": str(res.truncated).lower()})

    def negotiate_ask(res: Any, accept: str | None, graph: bool) -> str:
        if res.columns == ["ask"]:
            return sparql_protocol.JSON
        return sparql_protocol.negotiate(accept, graph=graph)

    @app.get("/v1/sparql", tags=["query"])
    def sparql_get(query: str | None = None, accept: str | None = Header(None),
                   g: KnowledgeGraph = Depends(kg)) -> Response:
        """SPARQL 1.1 Protocol, query via GET ``?query=``. Results as
        application/sparql-results+json (default), text/csv or text/tab-separated-values."""
        return _sparql(query, accept, g)

    @app.post("/v1/sparql", tags=["query"])
    async def sparql_post(request: Request, accept: str | None = Header(None),
                          g: KnowledgeGraph = Depends(kg)) -> Response:
        """SPARQL 1.1 Protocol, query via POST: form field ``query`` or an
        ``application/sparql-query`` body."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype == "application/sparql-query":
            query = (await request.body()).decode("utf-8")
        elif ctype == "application/x-www-form-urlencoded":
            query = str((await request.form()).get("query") or "")
        else:
            raise HTTPException(415, "use application/sparql-query or a form field 'query'")
        return _sparql(query, accept, g)

    @app.post("/v1/facts", tags=["ingest"], dependencies=[Depends(writer)])
    def post_facts(doc: dict[str, Any], g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Upsert a batch of facts (the JSON fact format of docs/model.md). All or nothing:
        an invalid fact gives 400 naming it and nothing is written. Answers after the batch
        is durable in the graph store."""
        batch = FactBatch.from_json(doc, base=settings.iri_base)
        with guard:
            summary = g.write(batch)
        return summary.__dict__ | {"facts": summary.facts}

    add_ingest_routes(app, settings, kg, writer, guard,
                      after_write=lambda: state["alerts"].forget())
    add_rca_routes(app, kg, lambda: state["rca"], writer, guard)
    add_recommend_routes(app, kg, writer, guard)
    add_causal_routes(app, kg, writer, guard)
    add_trace_routes(app, settings, kg, writer, guard, after_write=lambda: state["alerts"].forget())

    @app.post("/v1/alerts/alertmanager", tags=["ingest"], dependencies=[Depends(writer)])
    async def alertmanager(payload: dict[str, Any], scope: str = "default",
                           rules_scope: str | None = None) -> dict[str, Any]:
        """Alertmanager webhook receiver (payload version 4; configure it as a
        ``webhook_configs`` URL). Each alert becomes an occurrence keyed by fingerprint and
        startsAt; a resolved notification closes it; a repeated delivery moves only its
        last-seen time. ``scope`` is the cluster whose topology the labels resolve against
        (``rules_scope`` where the alert rules were ingested, default ``scope``). Answers
        2xx only once the alerts are durable (so Alertmanager retries otherwise); 422
        names the JSON pointer of a malformed field and writes nothing."""
        from asyncio import wrap_future

        opts = {"rules_scope": rules_scope} if rules_scope else {}
        done = state["alerts"].submit(payload, scope, opts)
        return await wrap_future(done)

    @app.post("/v1/reindex", tags=["ops"], dependencies=[Depends(writer)])
    def reindex(g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Rebuild the derived views (RDF view, snapshot) from the graph store."""
        with guard:
            g.reindex()
            return g.health()

    return app

"""``POST /v1/cypher`` and the SPARQL 1.1 Protocol endpoint ``/v1/sparql``.

Both run each query in a worker process (:mod:`kg.query.workers`): the query takes no lock,
waits for no write and no other query, and is stopped at its time limit (504) or memory
limit (503). The request says which version of the data the answer must reflect (the
change-log head for Cypher, the RDF view's version for SPARQL), so a worker's read-only
handle never answers from before an acknowledged write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api import sparql_protocol
from kg.config import Settings
from kg.graph import KnowledgeGraph
from kg.query.workers import QueryRequest, QueryWorkers
from kg.store import QueryResult

LIMITS: dict[int | str, dict[str, Any]] = {
    504: {"description": "the query ran past query_timeout_s and was stopped"},
    503: {"description": "the query needed more than query_max_memory_mb, no query worker "
                         "is free, or the server is starting"}}


class CypherRequest(BaseModel):
    query: str = Field(..., description="a read-only Cypher query", max_length=100_000)
    parameters: dict[str, Any] = Field(default_factory=dict,
                                       description="query parameters ($name)")


class CypherResponse(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = Field(description="true when the row cap cut the result")


def add_query_routes(app: FastAPI, settings: Settings, kg: Callable[[], KnowledgeGraph],
                     queries: Callable[[], QueryWorkers]) -> None:
    @app.post("/v1/cypher", response_model=CypherResponse, tags=["query"], responses=LIMITS)
    def cypher(req: CypherRequest, g: KnowledgeGraph = Depends(kg),
               workers: QueryWorkers = Depends(queries)) -> CypherResponse:
        """Run a read-only Cypher query. Writes, LOAD CSV / LOAD FROM, COPY, INSTALL and
        CALL outside the allowlist are refused with 403; syntax errors give 400; a query
        past its time limit is stopped with 504, one past its memory limit with 503."""
        res = workers.run(QueryRequest("cypher", req.query, req.parameters, g.read_version,
                                       settings.query_timeout_s, settings.query_max_rows))
        return CypherResponse(columns=res.columns, rows=res.rows, truncated=res.truncated)

    def sparql(query: str | None, accept: str | None, g: KnowledgeGraph,
               workers: QueryWorkers) -> Response:
        if not query:
            raise HTTPException(400, "missing SPARQL query")
        if g.rdf_behind:  # SPARQL never sees the lag: apply this process's writes first
            g.catch_up_rdf()
        res = workers.run(QueryRequest("sparql", query, version=g.view_version,
                                       timeout_s=settings.query_timeout_s,
                                       max_rows=settings.query_max_rows))
        graph = res.columns == ["s", "p", "o"] and "CONSTRUCT" in query.upper() or \
            "DESCRIBE" in query.upper()
        mime = _negotiate(res, accept, graph)
        return Response(sparql_protocol.serialise(res, mime), media_type=mime,
                        headers={"X-AutoCNC-Truncated": str(res.truncated).lower()})

    @app.get("/v1/sparql", tags=["query"], responses=LIMITS)
    def sparql_get(query: str | None = None, accept: str | None = Header(None),
                   g: KnowledgeGraph = Depends(kg),
                   workers: QueryWorkers = Depends(queries)) -> Response:
        """SPARQL 1.1 Protocol, query via GET ``?query=``. Results as
        application/sparql-results+json (default), text/csv or text/tab-separated-values.
        A query past its time limit is stopped with 504, one past its memory limit with
        503."""
        return sparql(query, accept, g, workers)

    @app.post("/v1/sparql", tags=["query"], responses=LIMITS)
    async def sparql_post(request: Request, accept: str | None = Header(None),
                          g: KnowledgeGraph = Depends(kg),
                          workers: QueryWorkers = Depends(queries)) -> Response:
        """SPARQL 1.1 Protocol, query via POST: form field ``query`` or an
        ``application/sparql-query`` body."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype == "application/sparql-query":
            try:
                query = (await request.body()).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HTTPException(400, f"the query is not UTF-8 text: {exc}") from None
        elif ctype == "application/x-www-form-urlencoded":
            query = str((await request.form()).get("query") or "")
        else:
            raise HTTPException(415, "use application/sparql-query or a form field 'query'")
        return await run_in_threadpool(sparql, query, accept, g, workers)


def _negotiate(res: QueryResult, accept: str | None, graph: bool) -> str:
    if res.columns == ["ask"]:
        return sparql_protocol.JSON
    return sparql_protocol.negotiate(accept, graph=graph)

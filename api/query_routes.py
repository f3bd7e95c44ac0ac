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

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api import sparql_protocol
from api.deps import GraphDependency
from api.sparql_cors import SparqlCors
from kg.config import Settings
from kg.errors import NotAcceptable
from kg.graph import KnowledgeGraph
from kg.query.workers import QueryRequest, QueryWorkers

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


def add_query_routes(app: FastAPI, settings: Settings, kg: GraphDependency,
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

    add_sparql_routes(app, settings, kg, queries)


SPARQL_ALLOW = "GET, HEAD, POST, OPTIONS"
SPARQL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **LIMITS,
    400: {"description": "a syntax error, no query or more than one, a bad graph IRI"},
    403: {"description": "an update (any way it is sent) or SERVICE: the endpoint is "
                         "read-only and calls no other URL"},
    406: {"description": "no result format fits the Accept header or format parameter"},
    415: {"description": "a POST body that is neither a form nor application/sparql-query "
                         "(UTF-8)"}}


def _param(name: str, description: str, many: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if many:
        schema = {"type": "array", "items": schema}
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **({"style": "form", "explode": True} if many else {})}


# The protocol's parameters, read from the request as the protocol defines them (every value
# of a repeated parameter, the URL and a form body together): documented here.
DATASET_PARAMS = [
    _param("default-graph-uri", "a graph of the default graph (replaces the query's FROM; "
                                "urn:autocnc:asserted: the store's default graph)", many=True),
    _param("named-graph-uri", "a named graph (replaces the query's FROM NAMED)", many=True),
    _param("format", "result format: json, xml, csv, tsv, turtle, ntriples, json-ld, "
                     "rdfxml, or a media type; wins over Accept"),
    _param("output", "the same as format"),
]
GET_PARAMS = [_param("query", "the SPARQL query (exactly one)"), *DATASET_PARAMS]


def add_sparql_routes(app: FastAPI, settings: Settings, kg: GraphDependency,
                      queries: Callable[[], QueryWorkers]) -> None:
    """The SPARQL 1.1 Protocol endpoint ``/v1/sparql`` (query operation only), with CORS
    for the origins of ``sparql_cors_origins`` (:mod:`api.sparql_cors`)."""
    if settings.sparql_cors_origins:
        app.add_middleware(SparqlCors, origins=settings.sparql_cors_origins)

    def sparql(req: sparql_protocol.ProtocolRequest, g: KnowledgeGraph,
               workers: QueryWorkers) -> Response:
        if g.rdf_behind:  # SPARQL never sees the lag: apply this process's writes first
            g.catch_up_rdf()
        try:
            ans = workers.answer(QueryRequest(
                "sparql", req.query, version=g.view_version, timeout_s=settings.query_timeout_s,
                max_rows=settings.query_max_rows, formats=req.formats, dataset=req.dataset,
                base_iri=req.base_iri))
        except NotAcceptable as exc:
            raise HTTPException(406, str(exc)) from None
        return Response(ans.body, media_type=ans.media_type,
                        headers={"X-AutoCNC-Truncated": str(ans.truncated).lower(),
                                 "Vary": "Accept"})

    @app.get("/v1/sparql", tags=["query"], responses=SPARQL_RESPONSES,
             openapi_extra={"parameters": GET_PARAMS})
    def sparql_get(request: Request, g: KnowledgeGraph = Depends(kg),
                   workers: QueryWorkers = Depends(queries)) -> Response:
        """SPARQL 1.1 Protocol, query via GET ``?query=``, with ``default-graph-uri`` /
        ``named-graph-uri`` for the dataset (they replace the query's FROM / FROM NAMED;
        ``urn:autocnc:asserted`` is the store's default graph; without them the default
        graph is the union of all graphs).
        Results by ``Accept`` (or ``format`` / ``output``): SELECT and ASK as
        application/sparql-results+json (the default), application/sparql-results+xml,
        text/csv or text/tab-separated-values; CONSTRUCT and DESCRIBE as text/turtle (the
        default), application/n-triples, application/ld+json or application/rdf+xml; 406
        when none fits. Updates and SERVICE get 403; a query past its time limit is
        stopped with 504, one past its memory limit with 503."""
        return sparql(sparql_protocol.from_get(request), g, workers)

    @app.head("/v1/sparql", tags=["query"], responses=SPARQL_RESPONSES,
              openapi_extra={"parameters": GET_PARAMS})
    def sparql_head(request: Request, g: KnowledgeGraph = Depends(kg),
                    workers: QueryWorkers = Depends(queries)) -> Response:
        """As GET, without the body (the server drops it): the status and headers."""
        return sparql(sparql_protocol.from_get(request), g, workers)

    @app.post("/v1/sparql", tags=["query"], responses=SPARQL_RESPONSES, openapi_extra={
        "parameters": DATASET_PARAMS,
        "requestBody": {"required": True, "content": {
            "application/sparql-query": {"schema": {"type": "string"}},
            "application/x-www-form-urlencoded": {"schema": {
                "type": "object", "required": ["query"],
                "properties": {"query": {"type": "string"}}}}}}})
    async def sparql_post(request: Request, g: KnowledgeGraph = Depends(kg),
                          workers: QueryWorkers = Depends(queries)) -> Response:
        """SPARQL 1.1 Protocol, query via POST: form fields (``query``, the dataset
        parameters; these may also be in the URL) or an ``application/sparql-query`` body
        (UTF-8; the dataset parameters in the URL). Results as for GET;
        ``application/sparql-update`` and an ``update`` field get 403."""
        req = await sparql_protocol.read_post(request)
        return await run_in_threadpool(sparql, req, g, workers)

    @app.options("/v1/sparql", tags=["query"], status_code=204)
    def sparql_options() -> Response:
        """The methods of the endpoint (``Allow``). Browsers' CORS preflights are answered
        before this, for the origins of ``sparql_cors_origins``."""
        return Response(status_code=204, headers={"Allow": SPARQL_ALLOW})

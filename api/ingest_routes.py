"""HTTP ingest: ``POST /v1/ingest/{kind}`` (a file as the body).

Answers after the facts are durable (the graph store committed, the views caught up) with
the ingest report; a malformed request as a whole gets 422 naming the parameter.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import GraphDependency, WriterDependency
from ingest import IngestReport, Input, run_ingest
from kg.config import Settings
from kg.facts import utc
from kg.graph import KnowledgeGraph

Kind = Literal["topology", "metrics", "logs", "runbooks", "alerts", "traces"]


def add_ingest_routes(app: FastAPI, settings: Settings, kg: GraphDependency,
                      writer: WriterDependency, guard: threading.Lock,
                      after_write: Callable[[], None] = lambda: None,
                      observe: Callable[[str, IngestReport], None] = lambda kind, r: None
                      ) -> None:
    """``observe`` gets each report (the server's metrics count records and rejects)."""
    @app.post("/v1/ingest/{kind}", tags=["ingest"], dependencies=[Depends(writer)])
    async def ingest_file(
        kind: Kind, request: Request, scope: str | None = None, name: str = "upload",
        as_of: str | None = None, dry_run: bool = False, options: str | None = None,
        format: str | None = None, g: KnowledgeGraph = Depends(kg),
    ) -> dict[str, Any]:
        """Ingest one file of ``kind`` sent as the request body (formats:
        docs/ingest.md). ``scope`` names the cluster, network or site; ``name`` the file
        (its extension selects the format unless ``format`` is given); ``as_of`` the
        snapshot time (ISO 8601 with zone; default now); ``options`` a JSON object of
        source options. Bad records are rejected in the report (and the dead-letter file),
        the rest lands; answers after the facts are durable."""
        try:
            when = utc(as_of, what="as_of") if as_of else None
        except ValueError as exc:
            raise HTTPException(422, f"as_of: {exc}") from exc
        try:
            opts = json.loads(options) if options else {}
        except ValueError as exc:
            raise HTTPException(422, f"options: not JSON: {exc}") from exc
        if not isinstance(opts, dict):
            raise HTTPException(422, "options: must be a JSON object")
        if format:
            opts["format"] = format
        body = await request.body()
        inp = Input.of_bytes(name, body)

        def work() -> dict[str, Any]:
            with guard:
                report = run_ingest(g, kind, [inp], scope=scope, as_of=when,
                                    dry_run=dry_run, options=opts)
            after_write()  # cached label resolutions may be stale now
            observe(kind, report)
            return report.to_json()

        return await run_in_threadpool(work)

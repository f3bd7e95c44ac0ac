"""``POST /v1/causal/learn``: learn causal knowledge from the graph's event history."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from kg.graph import KnowledgeGraph


class CausalLearnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    scope: str = Field(..., min_length=1, max_length=500,
                       description="scope the learned edges are kept in (a later run in "
                                   "the same scope replaces them)")
    since: datetime | None = Field(None, description="first event time (with zone)")
    until: datetime | None = Field(None, description="end of the range, exclusive")
    dry_run: bool = Field(False, alias="dryRun", description="learn, store nothing")


def add_causal_routes(app: FastAPI, kg: Callable[[], KnowledgeGraph],
                      writer: Callable[..., None], guard: threading.Lock) -> None:
    @app.post("/v1/causal/learn", tags=["reasoning"], dependencies=[Depends(writer)])
    async def learn(req: CausalLearnRequest, g: KnowledgeGraph = Depends(kg)
                    ) -> dict[str, Any]:
        """Learn which event types cause which from the alerts, alarms, anomalies and log
        events in ``[since, until)`` along the topology (topological Hawkes process;
        docs/causal.md), and store the edges as ``CausalEdge`` knowledge in ``scope``
        (``causeType``, ``effectType``, ``confidence``, ``support``, ``viaRelation``), where
        RCA's ``causal`` signal reads them. The graph is read and written under the store
        lock; the learning runs beside it. 422 when there is nothing to learn from."""
        from kg.facts import utc
        from reasoning.causal.run import learn_from_graph

        def work() -> dict[str, Any]:
            try:
                return learn_from_graph(
                    g, scope=req.scope, since=utc(req.since, what="since") if req.since
                    else None, until=utc(req.until, what="until") if req.until else None,
                    dry_run=req.dry_run, lock=guard).to_json()
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc

        return await run_in_threadpool(work)

"""``POST /v1/causal/learn``: learn causal knowledge from the graph's event history."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deps import GraphDependency, WriterDependency
from kg.graph import KnowledgeGraph

log = logging.getLogger("autocnc.causal")


class PriorPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cause: str = Field(..., min_length=1, description="event type (name or IRI)")
    effect: str = Field(..., min_length=1, description="event type (name or IRI)")
    kind: Literal["required", "forbidden", "oriented"] = "required"


class CausalLearnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    scope: str = Field(..., min_length=1, max_length=500,
                       description="the scope whose events are learned from (minted in it "
                                   "or below it) and where the edges are kept (a later run "
                                   "in the same scope replaces them)")
    since: datetime | None = Field(None, description="first event time (with zone)")
    until: datetime | None = Field(None, description="end of the range, exclusive")
    all_scopes: bool = Field(False, alias="allScopes",
                             description="learn from the events of every scope")
    lag_min: str | None = Field(None, alias="lagMin", max_length=40,
                                description="shortest typical lag with unit, e.g. 3s")
    lag_max: str | None = Field(None, alias="lagMax", max_length=40,
                                description="longest typical lag with unit, e.g. 50m")
    kernels: int | None = Field(None, ge=1, le=12,
                                description="kernels spread over the lag range (4)")
    min_lag: str | None = Field(None, alias="minLag", max_length=40,
                                description="a cause precedes its effect by more than this "
                                            "(with unit; 0)")
    penalty: float | None = Field(None, ge=0, le=1000,
                                  description="multiplies the BIC penalty (1)")
    min_share: float | None = Field(None, alias="minShare", ge=0, le=1,
                                    description="share of an effect type's events an edge "
                                                "must explain (0)")
    edge_kinds: list[Literal["direct", "leads-to"]] | None = Field(
        None, alias="edgeKinds", description="edge kinds to report (['direct'])")
    prior: list[PriorPair] | None = Field(None, max_length=100_000,
                                          description="known causal knowledge")
    prior_from_graph: bool = Field(True, alias="priorFromGraph",
                                   description="also use the causes links asserted in the "
                                               "graph")
    dry_run: bool = Field(False, alias="dryRun", description="learn, store nothing")


def add_causal_routes(app: FastAPI, kg: GraphDependency,
                      writer: WriterDependency, guard: threading.Lock) -> None:
    @app.post("/v1/causal/learn", tags=["reasoning"], dependencies=[Depends(writer)])
    async def learn(req: CausalLearnRequest, g: KnowledgeGraph = Depends(kg)
                    ) -> dict[str, Any]:
        """Learn which event types cause which from the alerts, alarms, anomalies and log
        events of ``scope`` in ``[since, until)`` along the topology (topological Hawkes
        process; docs/causal.md), guided by ``prior`` and the ``causes`` links asserted in
        the graph, and store the edges as ``CausalEdge`` knowledge in ``scope``
        (``causeType``, ``effectType``, ``confidence``, ``support``, ``viaRelation``), where
        RCA's ``causal`` signal reads them. Durations carry their unit (``3s``, ``5m``). The
        graph is read and written under the store lock; the learning runs beside it and logs
        its progress. 422 for a bad setting or prior, or when there is nothing to learn."""
        from kg.facts import utc
        from reasoning.causal import CausalInputError, CausalPrior
        from reasoning.causal.run import PeriodicProgress, config_from, learn_from_graph

        def work() -> dict[str, Any]:
            try:
                config = config_from(
                    lag_min=req.lag_min, lag_max=req.lag_max, kernels=req.kernels,
                    min_lag=req.min_lag, penalty=req.penalty, min_share=req.min_share,
                    edge_kinds=list(req.edge_kinds) if req.edge_kinds is not None else None)
                prior = CausalPrior.from_rows(
                    [(p.cause, p.effect, p.kind) for p in req.prior or []], "prior")
                return learn_from_graph(
                    g, scope=req.scope, since=utc(req.since, what="since") if req.since
                    else None, until=utc(req.until, what="until") if req.until else None,
                    config=config, prior=prior, prior_from_kg=req.prior_from_graph,
                    all_scopes=req.all_scopes, dry_run=req.dry_run, lock=guard,
                    progress=PeriodicProgress(log.info)).to_json()
            except (ValueError, CausalInputError) as exc:
                raise HTTPException(422, str(exc)) from exc

        return await run_in_threadpool(work)

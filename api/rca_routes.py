"""``POST /v1/rca``, ``GET /v1/incidents``, ``GET /v1/incidents/{iri}``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, field_validator, model_validator

from api.deps import GraphDependency, WriterDependency
from api.incident_worker import incident_json
from kg.graph import KnowledgeGraph
from reasoning.rca import RCAService


class Window(BaseModel):
    start: datetime = Field(description="ISO 8601 with a zone")
    end: datetime


class RCARequest(BaseModel):
    """Exactly one of ``alerts``, ``incident`` or ``window``."""

    alerts: list[dict[str, Any]] | None = Field(
        None, max_length=10_000,
        description="alerts in Alertmanager's webhook form (labels, startsAt); resolved "
                    "against the topology of `scope`, not stored")
    incident: str | None = Field(None, description="IRI of an incident in the graph")
    window: Window | None = Field(None, description="alerts in the graph starting in the "
                                                    "window (and in `scope` if given)")
    scope: str | None = Field(None, description="cluster/network/site of the labels")
    store: bool = Field(False, description="store the result back in the graph")
    limit: int | Literal["all"] = Field(
        10, description="candidates returned (>= 1), or \"all\"")
    reference: Window | None = Field(
        None, description="a known fault-free window to judge series against (default: "
                          "the hour before the incident, cleaned of anomalous points)")

    @field_validator("limit")
    @classmethod
    def _limit(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("limit must be >= 1 or \"all\"")
        return v

    @model_validator(mode="after")
    def _reference(self) -> RCARequest:
        if self.reference is not None and not self.reference.start < self.reference.end:
            raise ValueError("reference: start must be before end")
        return self


def add_rca_routes(app: FastAPI, kg: GraphDependency,
                   rca: Callable[[], RCAService], writer: WriterDependency,
                   guard: threading.Lock,
                   timed: Callable[[], AbstractContextManager[None]] = nullcontext) -> None:
    """``timed`` times each analysis that answers (the server's metrics)."""
    @app.post("/v1/rca", tags=["rca"], response_class=Response,
              responses={200: {"content": {"application/json": {}}}})
    async def post_rca(req: RCARequest, svc: RCAService = Depends(rca),
                       authorization: str | None = Header(None)) -> Response:
        """Rank the root causes of a list of alerts, an incident or a time window.

        Each candidate is a component (its representative entity and its members) with its
        score, each signal's contribution, the fault hypothesis, evidence paths (entities,
        relations, rules), the evidence kinds that were present, normal, unjudged or
        missing, the deviating series cited (with their source: the local store or
        Prometheus) and events. ``limit`` (default 10, or ``"all"``) bounds the candidates;
        ``totalCandidates`` says how many there were. ``reference`` gives a known fault-free
        window; without it series are judged against the hour before the incident, cleaned
        of anomalous points. Symptoms whose labels do not resolve are listed under
        ``unresolved``; what the series sources could not read under
        ``evidence.problems``."""
        given = [x for x in (req.alerts, req.incident, req.window) if x is not None]
        if len(given) != 1:
            raise HTTPException(422, "give exactly one of alerts, incident, window")
        if req.alerts is not None and not req.scope:
            raise HTTPException(422, "scope: alerts need the scope their labels belong to")

        def work() -> str:
            # reads the snapshot held steady, not the writer's lock: intake goes on
            with svc.kg.holding_snapshot(), timed():
                if req.alerts is not None:
                    symptoms = svc.symptoms_from_alerts(req.alerts, str(req.scope))
                elif req.incident is not None:
                    symptoms = svc.symptoms_of_incident(req.incident)
                else:
                    assert req.window is not None
                    symptoms = svc.symptoms_in_window(req.window.start, req.window.end,
                                                      req.scope)
                if not symptoms:
                    raise HTTPException(404, "no firing alerts found for this request")
                ref = (req.reference.start, req.reference.end) if req.reference else None
                result = svc.analyse(symptoms, reference=ref,
                                     limit=None if req.limit == "all" else int(req.limit))
            if req.store:
                with guard:
                    svc.store(result, scope=req.scope or "default", incident=req.incident)
            # encoded here: FastAPI's generic encoder took ~12 ms on a 50-alert result
            return json.dumps(result.to_json())

        if req.store:
            await writer(authorization)  # storing writes: the write token applies
        return Response(await run_in_threadpool(work), media_type="application/json")

    @app.get("/v1/incidents", tags=["rca"])
    def incidents(limit: int = 100, g: KnowledgeGraph = Depends(kg)) -> list[dict[str, Any]]:
        """Incidents, newest first, each with its latest RCA (top candidates)."""
        # a read: no writer's lock (the store's own connection lock serialises it)
        return incident_json(g, limit=min(limit, 1000))

    @app.get("/v1/incidents/{incident_id}", tags=["rca"])
    def incident(incident_id: str, g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """One incident (its ``id`` from the list) with its latest RCA."""
        found = incident_json(g, incident_id)  # a read: no writer's lock, as above
        if not found:
            raise HTTPException(404, f"no incident {incident_id}")
        return found[0]

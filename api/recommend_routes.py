"""``POST /v1/recommendations``, ``POST /v1/feedback``, ``POST /v1/policies``,
``POST /v1/models/train``.

One :class:`~reasoning.recommend.Recommender` per knowledge graph, built on first use and
kept (catalogue, vectors and the sentence model stay loaded), so a recommendation costs a
few milliseconds. Feedback and policies are writes: they need the write token when one is
configured, and answer after the facts are durable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from api.deps import GraphDependency, WriterDependency
from kg.graph import KnowledgeGraph
from reasoning.recommend import (
    BadQuery,
    FeedbackInput,
    PolicyError,
    PolicyScopes,
    QueryNotFound,
    Recommender,
    from_alerts,
    from_incident,
    from_text,
)

Kind = Literal["runbook", "policy"]
ModelName = Literal["rotate", "nodepiece", "gnn"]


def _all_kinds() -> list[Kind]:
    return ["runbook", "policy"]


def _all_models() -> list[ModelName]:
    return ["rotate", "nodepiece", "gnn"]


class RecommendRequest(BaseModel):
    """Exactly one of ``incident``, ``alert`` or ``text``."""

    model_config = ConfigDict(extra="forbid")

    incident: str | None = Field(None, description="IRI of an incident in the graph")
    alert: dict[str, Any] | list[dict[str, Any]] | None = Field(
        None, description="an Alertmanager webhook payload (version 4), one alert "
                          "(`labels`, `annotations`) or a list of alerts; `runbook_url` is "
                          "never read")
    text: str | None = Field(None, max_length=20_000,
                             description="free text describing the problem")
    scope: str | None = Field(None, description="cluster whose topology the alert labels "
                                                "are resolved against (optional)")
    limit: int = Field(10, ge=1, le=100)
    kinds: list[Kind] = Field(default_factory=_all_kinds)


class FeedbackRequest(BaseModel):
    """A confirmed (or rejected) root cause, and/or an applied recommendation's outcome."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    incident: str | None = Field(None, description="IRI of the incident judged")
    root_cause: str | None = Field(None, alias="rootCause",
                                   description="IRI of the root-cause entity")
    accepted: bool = Field(True, description="the root cause is confirmed (false: rejected)")
    recommendation: str | None = Field(None, description="IRI of the runbook or policy "
                                                         "that was applied")
    succeeded: bool | None = Field(None, description="whether applying it solved the "
                                                     "problem (required with recommendation)")
    agent: str = Field("operator", min_length=1, max_length=200,
                       description="who gives the feedback")
    comment: str | None = Field(None, max_length=10_000)
    context: list[str] = Field(default_factory=list,
                               description="alert names of the problem (default: the "
                                           "incident's)")
    scope: str = Field("default", min_length=1)


class TrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[ModelName] = Field(default_factory=_all_models)
    refresh: bool = Field(False, description="continue from the current versions")
    epochs: int | None = Field(None, ge=1, le=10_000)


def add_recommend_routes(app: FastAPI, kg: GraphDependency,
                         writer: WriterDependency, guard: threading.Lock,
                         timed: Callable[[], AbstractContextManager[None]] = nullcontext
                         ) -> None:
    """``timed`` times each recommendation that answers (the server's metrics)."""
    held: dict[int, Recommender] = {}

    def recommender(g: KnowledgeGraph) -> Recommender:
        rec = held.get(id(g))
        if rec is None or rec.kg is not g:
            held.clear()
            rec = held[id(g)] = Recommender(g)
        return rec

    @app.post("/v1/recommendations", tags=["recommend"])
    async def recommendations(req: RecommendRequest,
                              g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Ranked runbooks and remediation policies for an incident, an alert (webhook
        format) or free text. Each answer has its score, every signal's contribution and
        its reasons: the alert definition matched, text similarity, graph paths from the
        problem's entities through their types to the runbook, shared metrics, and the past
        success rate learnt from feedback. A policy comes with its action steps (parameters
        filled from the alert's labels), guards and post-conditions."""
        given = [x for x in (req.incident, req.alert, req.text) if x is not None]
        if len(given) != 1:
            raise HTTPException(422, "give exactly one of incident, alert, text")

        def work() -> dict[str, Any]:
            with guard, timed():
                try:
                    if req.incident is not None:
                        query = from_incident(g, req.incident)
                    elif req.alert is not None:
                        query = from_alerts(req.alert, g, req.scope)
                    else:
                        query = from_text(str(req.text))
                    rec = recommender(g)
                    return rec.recommend(query, limit=req.limit, kinds=req.kinds).to_json()
                except QueryNotFound as exc:
                    raise HTTPException(404, str(exc)) from exc
                except BadQuery as exc:
                    raise HTTPException(422, str(exc)) from exc

        return await run_in_threadpool(work)

    @app.post("/v1/feedback", tags=["recommend"], dependencies=[Depends(writer)])
    async def feedback(req: FeedbackRequest, g: KnowledgeGraph = Depends(kg)
                       ) -> dict[str, Any]:
        """Record an incident's confirmed (or rejected) root cause and/or whether an
        applied recommendation succeeded, as ``Feedback`` facts with provenance. The
        ranking learns at once (success rates per runbook/policy and alert); confirmed root
        causes are the GNN's training labels (``autocnc train``)."""
        items: list[FeedbackInput] = []
        if req.root_cause:
            if not req.incident:
                raise HTTPException(422, "incident: a root cause is confirmed for an "
                                         "incident")
            items.append(FeedbackInput("rootCause", req.root_cause, req.accepted,
                                       req.incident, req.agent, req.comment,
                                       tuple(req.context), req.scope))
        if req.recommendation:
            if req.succeeded is None:
                raise HTTPException(422, "succeeded: say whether the applied "
                                         "recommendation succeeded")
            items.append(FeedbackInput("recommendation", req.recommendation, req.succeeded,
                                       req.incident, req.agent, req.comment,
                                       tuple(req.context), req.scope))
        if not items:
            raise HTTPException(422, "give rootCause and/or recommendation")

        def work() -> dict[str, Any]:
            with guard:
                rec = recommender(g)
                try:
                    stored = [rec.feedback(fb) for fb in items]
                except QueryNotFound as exc:
                    raise HTTPException(404, str(exc)) from exc
                except BadQuery as exc:
                    raise HTTPException(422, str(exc)) from exc
            return {"feedback": [s.iri for s in stored],
                    "context": stored[-1].context}

        return await run_in_threadpool(work)

    @app.post("/v1/policies", tags=["recommend"], dependencies=[Depends(writer)])
    async def policies(body: str = Body(..., media_type="application/yaml"),
                       name: str = "policies.yaml", scope: str = "default",
                       runbooks_scope: str | None = None, alerts_scope: str | None = None,
                       g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Load a remediation-policy file (YAML, format version 1, docs/recommend.md) as a
        snapshot of the policies of ``scope``: its policies, action types, guards and
        post-conditions become facts, linked to the runbooks (``runbooks_scope``) and alert
        definitions (``alerts_scope``) they name; policies of the scope it lacks are
        retired. 422 lists every invalid field by JSON pointer."""
        from reasoning.recommend.policies import apply_policies, parse_documents

        def work() -> dict[str, Any]:
            try:
                parsed = parse_documents([(name, body)])
            except PolicyError as exc:
                raise HTTPException(422, {"problems": [
                    {"file": f, "pointer": p, "reason": r} for f, p, r in exc.problems]}
                ) from exc
            with guard:
                return apply_policies(g, parsed, PolicyScopes(scope, runbooks_scope,
                                                              alerts_scope)).to_json()

        return await run_in_threadpool(work)

    @app.post("/v1/models/train", tags=["recommend"], dependencies=[Depends(writer)])
    async def train(req: TrainRequest, g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Train the graph embeddings (RotatE, InductiveNodePiece) and the root-cause GNN
        on the current graph; each becomes a new version in ``<data dir>/models``.
        ``refresh`` continues the KGE models from their current version. The graph is read
        under the store lock, the training runs beside it. Answers when done."""
        from reasoning.embeddings.train import train_models

        def work() -> dict[str, Any]:
            try:
                return {"models": train_models(g, req.models, refresh=req.refresh,
                                               epochs=req.epochs, lock=guard)}
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc

        return await run_in_threadpool(work)

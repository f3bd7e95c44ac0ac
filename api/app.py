"""The HTTP API (FastAPI): health, SPARQL 1.1 Protocol, read-only Cypher, fact ingest.

Security by default: ``autocnc serve`` binds 127.0.0.1; binding another address needs
``AUTOCNC_API_TOKEN``, and every write route then requires ``Authorization: Bearer <token>``.
Query endpoints are read-only and refuse clauses that reach files or the network; every
query runs in a worker process that is stopped at its time and memory limits
(:mod:`kg.query.workers`: 504 / 503), with a row cap; request bodies are counted and bounded
(:mod:`api.limits`: 413), and so is every value (``max_value_bytes``).

Reads take no lock: ``/healthz``, ``/livez``, ``/readyz`` answer from memory and the query
endpoints from their workers, whatever the writer is doing. ``autocnc serve`` listens
before its stores are open (``serve_while_starting``): until the stores are open and
replayed and the snapshot is warm, ``/readyz`` and every route that needs the graph answer
503 (the RDF view catches up in the background; SPARQL waits for it).
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import os
import threading
import time
from asyncio import wrap_future
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from api.alert_receiver import AlertReceiver
from api.alert_resync import AlertResync, ResyncSchedule
from api.causal_routes import add_causal_routes
from api.checkpoints import Checkpointer, CheckpointPolicy
from api.incident_worker import IncidentWorker, alert_refs
from api.ingest_routes import add_ingest_routes
from api.intake_journal import Entry, IntakeJournal
from api.limits import BodyLimit, json_safe
from api.periodic import Periodic
from api.query_routes import add_query_routes
from api.rca_routes import add_rca_routes
from api.recommend_routes import add_recommend_routes
from api.resync_routes import add_resync_routes
from api.telemetry import ServerState, Telemetry
from api.trace_routes import add_trace_routes
from ingest import IngestError
from ingest.alertmanager import WebhookPayloadError
from kg.config import Settings
from kg.errors import (
    AutoCNCError,
    FactError,
    ForbiddenQuery,
    NotReady,
    QueryError,
    QueryOverMemory,
    QueryTimedOut,
    StoreUnavailable,
)
from kg.facts import FactBatch
from kg.graph import KnowledgeGraph
from kg.query.workers import QueryWorkers
from reasoning.rca import RCAService
from reasoning.rca.evidence.prometheus import PrometheusSeries

WEBHOOK_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "an Alertmanager webhook notification (version 4)"}}}}}
log = logging.getLogger("autocnc.api")


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
    log.info("views warm in %.1f s (%d entities)", time.perf_counter() - t,
             rca.kg.snapshot.node_count)


def _replay(journal: IntakeJournal, alerts: AlertReceiver, entries: list[Entry]) -> None:
    """Apply the journal entries found after its applied mark (acknowledged, not yet in the
    graph when the server stopped), and wait for them: the server is not ready before."""
    t = time.perf_counter()
    for entry in entries:
        alerts.apply(entry)
    last = entries[-1].seq
    while journal.mark < last:
        time.sleep(0.01)
    log.info("intake journal: %d notifications applied in %.1f s", len(entries),
             time.perf_counter() - t)


class ViewSyncer:
    """Catches the RDF view up in the background: writes leave it behind (see
    :mod:`kg.graph`), and this applies what they changed, in rounds. While writes go on it
    takes at most ``share`` of the time, in small rounds: intake comes first (the view
    costs about as much CPU per alert as the write itself), so its lag grows during a
    storm. Once writes pause for ``interval`` seconds it catches up with rounds back to
    back, looking between them whether writes resumed; after a restart it catches up the
    same way, so the server is ready without waiting for the view. SPARQL queries never
    see the lag: they catch the view up first. It runs without the request guard: the
    graph store and Oxigraph are safe to use from this thread, and writers should not wait
    for the view."""

    ROUND_FACTS = 500  # facts per round while writes go on (tens of milliseconds)

    def __init__(self, kg: KnowledgeGraph, interval: float = 0.5, share: float = 0.5
                 ) -> None:
        self.kg, self.interval, self.share = kg, interval, share
        self._ticker = Periodic("rdf-view", interval * (1 - share), self.tick, "autocnc.api")

    def start(self) -> ViewSyncer:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop(timeout=60)

    def tick(self) -> None:
        start = time.monotonic()
        while self.kg.rdf_behind and time.monotonic() - start < 5.0:  # then stop() may end it
            now = time.monotonic()
            if now - self.kg.last_write < self.interval:  # writes go on: a share of the time
                self.kg.catch_up_rdf(until=now + self.share * self.interval,
                                     round_facts=self.ROUND_FACTS)
                return
            self.kg.catch_up_rdf(until=now + self.interval)


class Startup:
    """Where the server is in its start: ``starting`` (opening the stores, replaying their
    logs, catching the views up, warming the snapshot), ``ready``, or ``failed``."""

    def __init__(self) -> None:
        self.phase = "starting"
        self.since = time.monotonic()

    @property
    def ready(self) -> bool:
        return self.phase == "ready"


def _status(exc: AutoCNCError) -> int:
    if isinstance(exc, ForbiddenQuery):
        return 403
    if isinstance(exc, QueryTimedOut):
        return 504
    if isinstance(exc, QueryOverMemory | StoreUnavailable):
        return 503
    if isinstance(exc, QueryError | FactError):
        return 400
    return 422 if isinstance(exc, IngestError) else 500


def _outcome(exc: AutoCNCError | HTTPException) -> str:
    """A refused webhook request as ``autocnc_webhook_notifications_total`` counts it."""
    status = exc.status_code if isinstance(exc, HTTPException) else _status(exc)
    if status == 503:
        return "unavailable"
    return "invalid" if status < 500 else "failed"


def create_app(settings: Settings, *, url: str | None = None,
               serve_while_starting: bool = False) -> FastAPI:
    """The app for ``settings``; the knowledge graph is opened (and locked) at startup, in
    the background with ``serve_while_starting`` (``autocnc serve``: ``/livez`` and
    ``/readyz`` answer meanwhile), else before the app takes requests."""
    state: dict[str, Any] = {}
    startup = Startup()
    # The writer's lock. One thread at a time may change the graph or the state derived
    # from it in this process: LadybugDB's write connection is single-threaded, the
    # analytic snapshot is refreshed in place after each write, and ingest keeps per-source
    # state (log miners, trace windows, label caches) next to the store. So writes, and
    # RCA and recommendation (which read the snapshot), hold it. Reads do not: /healthz,
    # /livez, /readyz answer from memory, and operator queries run in worker processes on
    # read-only handles (kg.query.workers).
    guard = threading.Lock()
    telemetry = Telemetry()

    def open_all() -> None:
        state["kg"] = KnowledgeGraph.open(settings, writer=True, url=url,
                                          rdf_in_background=True)
        # series pulled per incident from the operator's Prometheus (docs/prometheus.md)
        state["prometheus"] = PrometheusSeries.from_settings(state["kg"])
        prometheus = state["prometheus"]
        state["rca"] = RCAService(state["kg"], sources=[prometheus] if prometheus else [])
        # not started before the snapshot is warm: its analyses would build it meanwhile
        state["incidents"] = IncidentWorker(state["kg"], guard, rca=state["rca"],
                                            timed=lambda: telemetry.rca("incident"))
        journal = None
        if settings.webhook_ack == "journal":
            journal = state["journal"] = IntakeJournal.open(
                settings.data_dir / "intake", max_entries=settings.webhook_journal_max_entries,
                max_bytes=settings.webhook_journal_max_mb << 20)
        state["alerts"] = alerts = AlertReceiver(
            state["kg"], guard,
            incidents=lambda recs, scope: state["incidents"].assign(alert_refs(recs), scope),
            telemetry=telemetry, journal=journal,
        ).start()
        if journal is not None:
            replay = journal.unapplied()
            journal.start(None if settings.webhook_apply_paused else alerts.apply)
            if replay and not settings.webhook_apply_paused:  # before the snapshot is
                _replay(journal, alerts, replay)  # built: no commit then refreshes it
        _warm(state["rca"])
        state["incidents"].start()
        state["views"] = ViewSyncer(state["kg"]).start()
        state["checkpoints"] = Checkpointer(state["kg"], CheckpointPolicy(
            log_bytes=settings.checkpoint_log_mb << 20)).start()
        state["queries"] = QueryWorkers(settings).start()
        if settings.alertmanager_url:  # what Alertmanager holds, reconciled (bounded wait)
            state["resync"] = ResyncSchedule(
                AlertResync(state["kg"], settings, state["alerts"].submit),
                settings.alertmanager_resync_s).start()
        app.state.incidents = state["incidents"]  # for operators' tooling and tests
        startup.phase = "ready"
        log.info("ready in %.1f s", time.monotonic() - startup.since)

    def open_in_background() -> None:
        try:
            open_all()
        except BaseException as exc:
            startup.phase = "failed"
            log.critical("startup failed: %s: %s", type(exc).__name__, exc)
            close_all()
            os._exit(3)  # as uvicorn exits when startup fails; the kernel drops the lock

    def close_all() -> None:
        if (workers := state.pop("queries", None)) is not None:
            workers.close()
        for name in ("resync", "views", "checkpoints", "journal", "alerts", "incidents"):
            if (part := state.pop(name, None)) is not None:
                part.stop()
        state.pop("rca", None)
        if (prometheus := state.pop("prometheus", None)) is not None:
            prometheus.close()
        if "kg" in state:
            with guard:  # a write still in flight (its request was given up) ends first
                state.pop("kg").close()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        opener = None
        if serve_while_starting:
            opener = threading.Thread(target=open_in_background, name="startup", daemon=True)
            opener.start()
        else:
            open_all()
        try:
            yield
        finally:
            if opener is not None:
                opener.join()
            close_all()

    app = FastAPI(
        title="AutoCNC", version="0.1.0", lifespan=lifespan,
        description="Knowledge-graph engine for computing-and-network convergence operations.",
    )
    app.add_middleware(BodyLimit, settings=settings)

    @app.exception_handler(AutoCNCError)
    async def autocnc_error(request: Request, exc: AutoCNCError) -> JSONResponse:
        status = _status(exc)
        headers = {"Retry-After": "2"} if exc.retryable else None
        return JSONResponse({"detail": json_safe(str(exc)), "error": type(exc).__name__},
                            status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, renderable whatever the input held (see api.limits)."""
        return JSONResponse({"detail": json_safe(exc.errors())}, status_code=422)

    def server_state() -> ServerState:
        """What ``/metrics`` reads: from memory, like ``/healthz``."""
        parts = dict(state)  # close_all() empties it while the server stops
        g: KnowledgeGraph | None = parts.get("kg")
        alerts, incidents, workers = (parts.get(k) for k in ("alerts", "incidents", "queries"))
        if not startup.ready or g is None or alerts is None or incidents is None:
            return ServerState(startup.phase if not startup.ready else "stopping",
                               settings.data_dir)
        return ServerState(
            "rebuilding" if g.rebuilding else "ready", settings.data_dir, g.health(),
            webhook_queue=alerts.depth(), incidents_tracked=incidents.tracked,
            intake=journal.status() if (journal := parts.get("journal")) else None,
            incidents_due=incidents.due,
            query_workers_busy=workers.busy if workers is not None else None,
            query_workers=settings.query_workers)

    telemetry.watch(server_state)

    def running() -> dict[str, Any]:
        if not startup.ready:
            raise NotReady(f"the server is {startup.phase} (opening the stores, replaying, "
                           "catching the views up); retry shortly")
        return state

    # dependencies are coroutines: a plain function would cost each request a hop through
    # the thread pool (a third of the webhook's time on the event loop under a storm)
    async def kg() -> KnowledgeGraph:
        graph: KnowledgeGraph = running()["kg"]
        return graph

    async def writer(authorization: str | None = Header(None)) -> None:
        """Write routes need the bearer token when one is configured."""
        if settings.api_token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), settings.api_token.encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/livez", tags=["ops"])
    async def livez() -> dict[str, Any]:
        """Liveness: the process serves requests (also while it starts). For a restart
        policy; it says nothing about the stores."""
        return {"status": "alive", "phase": startup.phase}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "not ready"}})
    async def readyz() -> JSONResponse:
        """Readiness: 200 once the stores are open and replayed and the analytic snapshot
        is warm (the RDF view catches up in the background: ``/healthz`` shows its lag, and
        a SPARQL query waits for it); 503 while the server starts or rebuilds its views
        (``reindex``)."""
        if not startup.ready:
            return JSONResponse({"status": "not ready", "reason": startup.phase},
                                status_code=503, headers={"Retry-After": "2"})
        if state["kg"].rebuilding:
            return JSONResponse({"status": "not ready", "reason": "rebuilding the views"},
                                status_code=503, headers={"Retry-After": "2"})
        return JSONResponse({"status": "ready"})

    @app.get("/healthz", tags=["ops"], responses={503: {"description": "starting"}})
    async def healthz() -> JSONResponse:
        """The change-log head, each derived view's watermark and lag, and what the RDF
        view set aside (``status`` is then ``degraded``); 503 while starting. Answers from
        memory: no store is asked, so no write or query delays it."""
        if not startup.ready:
            return JSONResponse({"status": startup.phase}, status_code=503,
                                headers={"Retry-After": "2"})
        health = state["kg"].health()
        status = "degraded" if health["views"]["rdf"].get("setAside") else "ok"
        if (resync := state.get("resync")) is not None:
            health["alertmanagerResync"] = resync.status()
        if (journal := state.get("journal")) is not None:
            health["intakeJournal"] = journal.status()
        return JSONResponse({"status": status, **health})

    async def metrics_reader(authorization: str | None = Header(None)) -> None:
        """``/metrics`` needs the bearer token only with ``metrics_require_token``."""
        if settings.metrics_require_token:
            await writer(authorization)

    @app.get("/metrics", tags=["ops"], response_class=Response,
             dependencies=[Depends(metrics_reader)],
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics(request: Request) -> Response:
        """AutoCNC's own metrics in the Prometheus exposition format (OpenMetrics when
        the scraper asks for it): ingest records and rejections per source, the webhook's
        notifications, alerts, latency and group commits, RCA and recommendation latency,
        each view's lag and set-aside records, checkpoints, store size and queue depths
        (docs/metrics.md). Answers from memory, also while the server starts
        (``autocnc_ready`` 0); needs the bearer token only with ``metrics_require_token``."""
        body, content_type = telemetry.exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    add_query_routes(app, settings, kg, lambda: running()["queries"])

    @app.post("/v1/facts", tags=["ingest"], dependencies=[Depends(writer)])
    def post_facts(doc: dict[str, Any], g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Upsert a batch of facts (the JSON fact format of docs/model.md). All or nothing:
        an invalid fact, or a value over ``max_value_bytes``, gives 400 naming it and
        nothing is written. Answers after the batch is durable in the graph store."""
        batch = FactBatch.from_json(doc, base=settings.iri_base)
        with guard:
            summary = g.write(batch)
        return summary.__dict__ | {"facts": summary.facts}

    add_ingest_routes(app, settings, kg, writer, guard,
                      after_write=lambda: state["alerts"].forget(), observe=telemetry.ingested)
    add_rca_routes(app, kg, lambda: running()["rca"], writer, guard,
                   timed=lambda: telemetry.rca("request"))
    add_recommend_routes(app, kg, writer, guard, timed=telemetry.recommendation)
    add_causal_routes(app, kg, writer, guard)
    add_trace_routes(app, settings, kg, writer, guard, after_write=lambda: state["alerts"].forget(),
                     observe=telemetry.ingested)
    add_resync_routes(app, kg, writer, lambda: state.get("resync"))

    # The webhook reads its body and writes its answer itself: FastAPI's validation of a
    # dict body and encoding of the answer cost more event-loop time than the rest of the
    # request in a storm (parse_payload validates the payload, naming the bad field).
    @app.post("/v1/alerts/alertmanager", tags=["ingest"], dependencies=[Depends(writer)],
              response_model=None, openapi_extra=WEBHOOK_BODY)
    async def alertmanager(request: Request, scope: str | None = None,
                           rules_scope: str | None = None,
                           g: KnowledgeGraph = Depends(kg)) -> JSONResponse:
        """Alertmanager webhook receiver (payload version 4; configure it as a
        ``webhook_configs`` URL). Each alert becomes an occurrence keyed by fingerprint and
        startsAt; a resolved notification closes it; a repeated delivery moves only its
        last-seen time. ``scope`` is the cluster whose topology the labels resolve against
        (``rules_scope`` where the alert rules were ingested, default ``scope``); without
        it the setting ``default_scope`` applies, and without that the call gets 422.
        Answers 2xx only once the alerts are durable (so Alertmanager retries otherwise);
        422 names the JSON pointer of a malformed field and writes nothing."""
        start, outcome = time.perf_counter(), "failed"
        try:
            scope = scope or settings.default_scope
            if not scope:
                raise HTTPException(422, "missing query parameter 'scope': the cluster whose "
                                    "topology the alert labels resolve against (or set "
                                    "default_scope)")
            try:
                payload = json.loads(await request.body())
            except ValueError as exc:  # UnicodeDecodeError included
                raise WebhookPayloadError("", f"the body is not JSON: {exc}") from None
            opts = {"rules_scope": rules_scope} if rules_scope else {}
            journaled, done = running()["alerts"].accept(payload, scope, opts)
            if journaled is None:
                answer = JSONResponse(await wrap_future(done))
            else:
                answer = JSONResponse(await _acknowledged(journaled, done, payload))
            outcome = "accepted"
            return answer
        except (AutoCNCError, HTTPException) as exc:
            outcome = _outcome(exc)
            raise
        finally:
            telemetry.webhook_answered(outcome, time.perf_counter() - start)

    async def _acknowledged(journaled: Future[int], done: Future[dict[str, Any]],
                            payload: dict[str, Any]) -> dict[str, Any]:
        """The answer once the notification is durable in the journal and then either in
        the graph or ``webhook_ack_wait_ms`` later, whichever is first."""
        seq = await wrap_future(journaled)
        try:
            committed: dict[str, Any] = await asyncio.wait_for(
                asyncio.shield(wrap_future(done)), settings.webhook_ack_wait_ms / 1000)
            return {**committed, "journalSeq": seq}
        except TimeoutError:  # durable in the journal; the graph has it a little later
            return {"alerts": len(payload["alerts"]), "journalSeq": seq, "applied": False}

    @app.post("/v1/reindex", tags=["ops"], dependencies=[Depends(writer)])
    def reindex(g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Rebuild the derived views (RDF view, snapshot) from the graph store; facts the
        RDF view cannot take are set aside and listed in ``/healthz``. ``/readyz`` answers
        503 meanwhile."""
        with guard:
            g.reindex()
            return g.health()

    return app

"""``POST /v1/alerts/resync``: reconcile the graph with Alertmanager now (api.alert_resync)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException

from api.alert_resync import ResyncBusy, ResyncSchedule, ResyncTimedOut
from api.deps import GraphDependency, WriterDependency
from kg.alertmanager import AlertmanagerError, AlertmanagerUnavailable
from kg.graph import KnowledgeGraph


def add_resync_routes(app: FastAPI, kg: GraphDependency,
                      writer: WriterDependency,
                      schedule: Callable[[], ResyncSchedule | None]) -> None:
    @app.post("/v1/alerts/resync", tags=["ingest"], dependencies=[Depends(writer)],
              responses={409: {"description": "resync not configured, or one is running"},
                         502: {"description": "Alertmanager failed or refused"},
                         504: {"description": "over alertmanager_timeout_s"}})
    def resync(g: KnowledgeGraph = Depends(kg)) -> dict[str, Any]:
        """Reconcile the graph with the alerts Alertmanager holds now (setting
        ``alertmanager_url``): alerts it holds that the graph lacks are created firing
        (through the webhook's write path, joining incidents), occurrences open in the
        graph that it no longer holds are closed (``closedBy`` says how the end time was
        chosen), the rest is left alone. Answers the counts once the writes are durable.
        The server also runs it on start-up and every ``alertmanager_resync_s`` seconds;
        the last outcome is in ``/healthz``. 409 when it is not configured or already
        running, 502 when Alertmanager cannot be read, 504 over ``alertmanager_timeout_s``
        (what was queued still lands)."""
        sched = schedule()
        if sched is None:
            raise HTTPException(409, "the resync is off: set alertmanager_url (and "
                                     "alertmanager_scope or default_scope)")
        try:
            return sched.run_now()
        except ResyncBusy as exc:
            raise HTTPException(409, str(exc), headers={"Retry-After": "5"}) from exc
        except ResyncTimedOut as exc:
            raise HTTPException(504, str(exc)) from exc
        except AlertmanagerError as exc:
            headers = {"Retry-After": "5"} if isinstance(exc, AlertmanagerUnavailable) else None
            raise HTTPException(502, str(exc), headers=headers) from exc

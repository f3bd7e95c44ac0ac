"""The resync with Alertmanager: what it holds now, reconciled with the graph, on start-up and
every ``alertmanager_resync_s`` seconds, so that an outage of AutoCNC loses no alert that
Alertmanager still holds (it sends no notification for an alert whose firing one was never
delivered, and resends nothing on its own).

:class:`AlertResync` runs one reconcile (:func:`ingest.alertmanager_resync.plan_resync`):
it reads Alertmanager (its status and configuration, then its alerts), reads the graph's
open occurrences from Alertmanager in the scope, and writes the difference through the
webhook's own write path (:meth:`api.alert_receiver.AlertReceiver.submit`), so created
alerts join incidents as delivered ones do. The whole run is bounded by
``alertmanager_timeout_s``; what it queued lands even when it gives up waiting.
:class:`ResyncSchedule` runs it on start-up (waiting at most ``STARTUP_WAIT_S``) and then
periodically; a failed run is tried again after 2, 4, 8 ... seconds, at most the period.
``status()`` (in ``/healthz``) answers from memory.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from datetime import datetime
from typing import Any

from api.periodic import Periodic
from ingest.alertmanager import FORMAT
from ingest.alertmanager_resync import (
    Desired,
    Key,
    Observed,
    annotations_of,
    desired_of,
    ms,
    payloads,
    plan_resync,
)
from ingest.alertmanager_routes import (
    Route,
    RouteConfigError,
    routes_of,
    routing_tree,
    webhook_receivers,
)
from kg.alertmanager import AlertmanagerAlert, AlertmanagerClient
from kg.config import Settings
from kg.errors import AutoCNCError, ConfigError
from kg.facts import now_utc
from kg.graph import KnowledgeGraph

log = logging.getLogger("autocnc.resync")
STARTUP_WAIT_S = 10.0
BACKOFF_FIRST_S = 2.0
MAX_OPEN = 1_000_000  # open occurrences one resync reads

Submit = Callable[[dict[str, Any], str, dict[str, Any]], "Future[dict[str, Any]]"]

_OPEN = ("MATCH (a:Entity) WHERE a.kind = 'Alert' AND a.source = $source "
         "AND a.validTo IS NULL RETURN a.iri, a.fingerprint, a.startTime, a.firstSeen, "
         "a.labels, a.groupKey, a.summary, a.description, a.runbookUrl, a.attributes")
_CLOSED = ("MATCH (a:Entity) WHERE a.kind = 'Alert' AND a.source = $source "
           "AND a.validTo IS NOT NULL AND a.fingerprint IN $fps "
           "RETURN a.fingerprint, a.startTime, a.closedBy")


class ResyncBusy(AutoCNCError):
    """Another resync is running; its result comes in ``/healthz``."""

    retryable = True


class ResyncTimedOut(AutoCNCError):
    """The resync did not finish within ``alertmanager_timeout_s``; what it queued still
    lands, and the next one picks up the rest."""

    retryable = True


class AlertResync:
    """One reconcile of the graph with Alertmanager per :meth:`run`; the last outcome."""

    def __init__(self, kg: KnowledgeGraph, settings: Settings, submit: Submit, *,
                 client: Callable[[], AlertmanagerClient] | None = None,
                 clock: Callable[[], datetime] = now_utc) -> None:
        scope = settings.resync_scope
        if not settings.alertmanager_url or not scope:
            raise ConfigError("the resync needs alertmanager_url and alertmanager_scope "
                              "(or default_scope)")
        self.kg, self.settings, self.submit, self.clock = kg, settings, submit, clock
        self.scope: str = scope
        self.source = f"alerts/{FORMAT}:{scope}"
        self.client = client or (lambda: AlertmanagerClient.from_settings(settings))
        self.last: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Reconcile now; the outcome (also kept for :meth:`status`). Raises what stopped
        it (Alertmanager's errors, :class:`ResyncTimedOut`, :class:`ResyncBusy`)."""
        limit = self.settings.alertmanager_timeout_s if timeout_s is None else timeout_s
        if not self._lock.acquire(timeout=limit):
            raise ResyncBusy("a resync is running; its outcome comes in /healthz")
        started, t0 = self.clock(), time.monotonic()
        try:
            outcome = self._run(t0 + limit)
        except Exception as exc:
            self.last = {"at": started.isoformat(), "ok": False,
                         "durationS": round(time.monotonic() - t0, 3),
                         "error": f"{type(exc).__name__}: {exc}"}
            raise
        finally:
            self._lock.release()
        self.last = {"at": started.isoformat(), "ok": True,
                     "durationS": round(time.monotonic() - t0, 3), "error": None, **outcome}
        return self.last

    def status(self) -> dict[str, Any]:
        return {"url": self.settings.alertmanager_url, "scope": self.scope,
                "lastRun": self.last}

    # -- one run -----------------------------------------------------------------------------
    def _run(self, deadline: float) -> dict[str, Any]:
        def left() -> float:
            rest = deadline - time.monotonic()
            if rest <= 0:
                raise ResyncTimedOut("the resync took over "
                                     f"{self.settings.alertmanager_timeout_s:g} s "
                                     "(alertmanager_timeout_s)")
            return rest

        with self.client() as am:
            status = am.status(timeout_s=left())
            read_at = self.clock()
            alerts = am.alerts(timeout_s=left())
        problems: list[str] = []
        group_key, receivers = self._routing(status.config, problems)
        desired = desired_of(alerts, group_key, receivers)
        observed = self._observed()
        now = self.clock()
        up_s = (now - status.started_at).total_seconds() if status.started_at else None
        settled = up_s is None or up_s >= self.settings.alertmanager_settle_s
        plan = plan_resync(desired, observed, self._closed(desired, observed), now=now,
                           read_at=read_at, close_missing=settled)
        jobs = [self.submit(p, self.scope, opts) for p, opts in
                payloads(plan, external_url=str(self.settings.alertmanager_url))]
        written = self._wait(jobs, left)
        counts = plan.counts()
        if plan.actions or plan.deferred:
            log.info("resync with %s: %s", self.settings.alertmanager_url, counts)
        return {"counts": counts, "written": written,
                "alertmanager": {"alerts": len(alerts), "toAutocnc": len(desired),
                                 "version": status.version,
                                 "startedAt": status.started_at.isoformat()
                                 if status.started_at else None, "settled": settled},
                "receivers": sorted(receivers), "problems": problems}

    def _wait(self, jobs: list[Future[dict[str, Any]]], left: Callable[[], float]) -> int:
        pending = set(jobs)
        while pending:
            if self.stopping.is_set():
                raise ResyncTimedOut("the server is stopping; what was queued still lands")
            _, pending = wait_all(pending, timeout=min(left(), 0.5))
        return sum(int(j.result().get("alerts", 0)) for j in jobs)

    def _routing(self, config: str, problems: list[str]
                 ) -> tuple[Callable[[AlertmanagerAlert], tuple[str, str]], list[str]]:
        """The group key and receiver of each alert, and AutoCNC's receivers."""
        receivers = list(self.settings.alertmanager_receivers) or sorted(
            webhook_receivers(config))
        if not receivers:
            why = ("Alertmanager masks its webhook URLs (<secret>)" if "<secret>" in config
                   else "no receiver of Alertmanager posts to /v1/alerts/alertmanager")
            problems.append(f"{why}: every alert it holds is taken; set "
                            "alertmanager_receivers to the receivers that post to AutoCNC")
        tree: Route | None
        try:
            tree = routing_tree(config)
        except (RouteConfigError, TypeError, ValueError, AttributeError) as exc:
            tree = None  # a configuration shaped in a way this reader does not know
            problems.append(f"routing tree not read ({exc}): alerts are grouped by the "
                            "group_by labels instead of Alertmanager's group key")

        def group_key(a: AlertmanagerAlert) -> tuple[str, str]:
            if tree is None:
                return "", next((r for r in a.receivers if r in receivers),
                                a.receivers[0] if a.receivers else "")
            route = routes_of(tree, a.labels, receivers)[0]
            return route.group_key(a.labels), route.receiver

        return group_key, receivers

    def _observed(self) -> list[Observed]:
        rows = self.kg.store.read(_OPEN, {"source": self.source}, max_rows=MAX_OPEN).rows
        out = []
        for iri, fp, starts, first, labels, key, summary, desc, url, attrs in rows:
            if not fp or not isinstance(starts, datetime):
                continue
            ann, delivery = annotations_of(summary, desc, url, _json(attrs))
            out.append(Observed(iri, fp, starts, first, _json(labels), ann, key or "",
                                delivery["generatorURL"], delivery["receiver"],
                                delivery["externalURL"]))
        return out

    def _closed(self, desired: list[Desired], observed: list[Observed]
                ) -> dict[Key, str | None]:
        open_keys = {o.key for o in observed}
        todo = {d.key for d in desired if d.key not in open_keys}
        if not todo:
            return {}
        rows = self.kg.store.read(_CLOSED, {"source": self.source,
                                            "fps": sorted({fp for fp, _ in todo})},
                                  max_rows=MAX_OPEN).rows
        out: dict[Key, str | None] = {}
        for fp, starts, closed_by in rows:
            if isinstance(starts, datetime) and (fp, ms(starts)) in todo:
                key = (fp, ms(starts))
                # several occurrences under one key (times finer than a millisecond): one
                # closed by the resync is reason enough to reopen
                if out.get(key) is None or not str(out[key]).startswith("resync-"):
                    out[key] = closed_by
        return out


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, Mapping):
        return dict(text)
    try:
        doc = json.loads(text) if text else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


class ResyncSchedule:
    """Runs :class:`AlertResync` on start-up and every ``period_s`` seconds; a failed run
    is tried again after a backoff (2 s, doubling, at most the period)."""

    def __init__(self, resync: AlertResync, period_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.resync, self.period_s, self.monotonic = resync, period_s, monotonic
        self.failures = 0
        self.next_at = monotonic()
        self._ticker = Periodic("alertmanager-resync", 1.0, self.tick, "autocnc.resync")

    def start(self, wait_s: float = STARTUP_WAIT_S) -> ResyncSchedule:
        """The first resync (waiting for it at most ``wait_s``), then the periodic ones."""
        self.attempt(timeout_s=min(wait_s, self.resync.settings.alertmanager_timeout_s))
        self._ticker.start()
        return self

    def stop(self) -> None:
        self.resync.stopping.set()
        self._ticker.stop(timeout=5)

    def tick(self) -> None:
        if self.monotonic() >= self.next_at:
            self.attempt()

    def attempt(self, timeout_s: float | None = None, *, raising: bool = False
                ) -> dict[str, Any] | None:
        """Run a resync now and schedule the next; a failure is logged and backs off (and
        is raised with ``raising``, else None is returned)."""
        try:
            outcome = self.resync.run(timeout_s)
        except ResyncBusy:
            if raising:
                raise
            return None
        except Exception as exc:
            self.failures += 1
            backoff = min(self.period_s, BACKOFF_FIRST_S * 2 ** (self.failures - 1))
            self.next_at = self.monotonic() + backoff
            log.warning("resync with %s failed (%s: %s); again in %.0f s",
                        self.resync.settings.alertmanager_url, type(exc).__name__, exc,
                        backoff)
            if raising:
                raise
            return None
        self.failures = 0
        self.next_at = self.monotonic() + self.period_s
        return outcome

    def run_now(self) -> dict[str, Any]:
        """A resync at once (``POST /v1/alerts/resync``); raises what stopped it."""
        outcome = self.attempt(raising=True)
        assert outcome is not None
        return outcome

    def status(self) -> dict[str, Any]:
        return {**self.resync.status(), "periodS": self.period_s,
                "failures": self.failures,
                "nextInS": round(max(0.0, self.next_at - self.monotonic()), 1)}


def resync_locally(settings: Settings) -> dict[str, Any]:
    """One resync without a server: the CLI opens the stores and writes through the same
    receiver and incident grouping the server uses (RCA of the incidents runs when the
    server next starts)."""
    from api.alert_receiver import AlertReceiver
    from api.incident_worker import IncidentWorker, alert_refs

    kg = KnowledgeGraph.open(settings, writer=True)
    try:
        guard = threading.Lock()
        incidents = IncidentWorker(kg, guard)
        incidents.restore()
        receiver = AlertReceiver(
            kg, guard, incidents=lambda recs, scope: incidents.assign(alert_refs(recs), scope)
        ).start()
        try:
            return AlertResync(kg, settings, receiver.submit).run()
        finally:
            receiver.stop()
    finally:
        kg.close()

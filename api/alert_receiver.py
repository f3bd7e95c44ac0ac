"""The Alertmanager webhook receiver with group commit.

Each request is validated in its own thread (a malformed body gets 422 naming the JSON
pointer, and nothing is written), then queued. One writer thread takes every queued
notification, turns them into records and writes them in one transaction through the one
write path, then answers all of them: under load, many notifications share a commit, so
throughput grows with concurrency while each answer still means "durable". Retries of the
same notification are idempotent (occurrences are keyed by fingerprint and startsAt).

With an intake journal (:mod:`api.intake_journal`), :meth:`AlertReceiver.accept` journals
the notification first; the journal hands it to the writer once fsynced, and the writer
reports each commit's highest sequence number back, so the journal can drop what the graph
holds. The webhook then answers once the graph commit lands or the entry has been durable in
the journal for a while, whichever comes first (``webhook_ack_wait_ms``, see
:func:`api.app.create_app`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from api.intake_journal import Entry, IntakeJournal
from ingest.alertmanager import AlertmanagerReceiver, parse_payload
from ingest.base import IngestContext, IngestReport, Record, Sink
from kg.facts import FactBatch
from kg.graph import KnowledgeGraph

if TYPE_CHECKING:
    from api.telemetry import Telemetry

MAX_GROUP = 256  # notifications per commit
log = logging.getLogger("autocnc.alerts")


@dataclass
class _Job:
    payload: dict[str, Any]
    scope: str
    options: dict[str, Any]
    done: Future[dict[str, Any]] = field(default_factory=Future)
    entry: Entry | None = None  # where it is journaled; None: not journaled


class AlertReceiver:
    def __init__(self, kg: KnowledgeGraph, guard: threading.Lock,
                 incidents: Callable[[list[Record], str], FactBatch] | None = None,
                 telemetry: Telemetry | None = None,
                 journal: IntakeJournal | None = None) -> None:
        self.kg = kg
        self.journal = journal  # None: every notification straight to the writer
        self.telemetry = telemetry  # None: not measured
        self.guard = guard
        # the incident facts of the received alerts, written in the same transaction
        self.incidents = incidents
        self.receiver = AlertmanagerReceiver(kg)
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="alert-writer", daemon=True)

    def start(self) -> AlertReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, payload: dict[str, Any], scope: str,
               options: dict[str, Any] | None = None) -> Future[dict[str, Any]]:
        """Validate (WebhookPayloadError names the bad field) and queue one notification."""
        parse_payload(payload)
        job = _Job(payload, scope, dict(options or {}))
        self._queue.put(job)
        return job.done

    def accept(self, payload: dict[str, Any], scope: str, options: dict[str, Any] | None = None
               ) -> tuple[Future[int] | None, Future[dict[str, Any]]]:
        """Validate a notification and journal it (IntakeFull when the journal is at its
        bound): the future of its journal sequence number (resolved once fsynced; None
        without a journal) and the future of its graph commit (as :meth:`submit`'s)."""
        if self.journal is None:
            return None, self.submit(payload, scope, options)
        parse_payload(payload)
        job = _Job(payload, scope, dict(options or {}))
        job.entry = self.journal.append(scope, job.options, payload, ref=job)
        return job.entry.durable, job.done

    def apply(self, entry: Entry) -> None:
        """Queue a durable journal entry for the writer (in journal order)."""
        job = entry.ref if isinstance(entry.ref, _Job) else _Job(
            entry.payload, entry.scope, entry.options)
        job.entry = entry
        self._queue.put(job)

    def depth(self) -> int:
        """Notifications validated and waiting for the writer (approximate)."""
        return self._queue.qsize()

    def forget(self) -> None:
        """Drop cached label resolutions and definitions (after topology/rules changed)."""
        self.receiver.forget()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            while len(jobs) < MAX_GROUP:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                jobs.append(nxt)
            try:
                self._write(jobs)
            except Exception:
                for j in jobs:  # one bad notification must not fail the others
                    try:
                        self._write([j])
                    except Exception as exc:
                        if j.entry is not None:  # its client may have been answered
                            log.error("journal entry %d not applied to the graph: %s",
                                      j.entry.seq, exc)
                        if not j.done.done():
                            j.done.set_exception(exc)
            self._applied(jobs)

    def _applied(self, jobs: list[_Job]) -> None:
        """Tell the journal how far the graph has it (a failed entry counts: retried, it
        would fail again; its client got the error unless answered from the journal)."""
        entries = [j.entry for j in jobs if j.entry is not None]
        if self.journal is not None and entries:
            self.journal.applied(max(e.seq for e in entries), sum(e.size for e in entries))

    def _write(self, jobs: list[_Job]) -> None:
        start = time.perf_counter()
        with self.guard:
            report = IngestReport("alerts")
            sink = Sink(self.kg, report, batch_size=1_000_000)
            counts = []
            ctxs = [IngestContext(self.kg, report, sink, j.scope, None, j.options)
                    for j in jobs]
            made = self.receiver.records_many([(c, j.payload, "alertmanager")
                                               for c, j in zip(ctxs, jobs, strict=True)])
            for j, recs in zip(jobs, made, strict=True):
                if isinstance(recs, Exception):
                    raise recs  # the group is written again one by one (see _run)
                for rec in recs:
                    sink.add(rec)
                if self.incidents is not None and recs:
                    facts = self.incidents(recs, j.scope)
                    sink.add(Record("alertmanager", "incidents", list(facts.entities),
                                    list(facts.relations)), counted=False)
                counts.append(len(recs))
            sink.flush()
        if self.telemetry is not None:
            self.telemetry.webhook_committed(len(jobs), sum(counts),
                                             time.perf_counter() - start)
            self.telemetry.ingested("alertmanager", report)
        summary = report.to_json()
        for j, n in zip(jobs, counts, strict=True):
            j.done.set_result({"alerts": n, "group": len(jobs), **{
                k: summary[k] for k in ("created", "updated", "unchanged", "rejected")},
                "counts": summary["counts"]})

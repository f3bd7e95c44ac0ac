"""AutoCNC's own metrics: ``GET /metrics`` in the Prometheus exposition format.

One :class:`Telemetry` per app, with a registry of its own (no process-wide state: two apps
in one process count apart). Two kinds of metrics:

* counted where things happen, at a few central places: ingest reports (records and
  rejections per source), the webhook (notifications by outcome, alerts, each request's
  latency, group-commit size and duration), RCA (per request and per incident analysis)
  and recommendation latency. An update is a few microseconds and takes no lock of ours;
* read at scrape time from memory by :class:`ServerCollector`: readiness, the change-log
  head and each view's watermark, lag and set-aside records, checkpoints, the write-ahead
  log, the data directory's size and the queue depths (webhook, incidents due for
  analysis, busy query workers). Like ``/healthz``, a scrape asks no store and never waits
  for the writer.

The metrics are listed in docs/metrics.md; deploy/prometheus/ has a scrape job and alert
rules for AutoCNC itself.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from ingest.base import IngestReport

# request latencies: a webhook answer takes milliseconds, an RCA up to seconds
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0)
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # notifications per commit (MAX_GROUP)
DATA_DIR_EVERY_S = 30.0  # the data directory is walked at most this often


@dataclass(frozen=True)
class ServerState:
    """What a scrape reads, all from memory: ``phase`` is ``starting``, ``ready``,
    ``rebuilding``, ``stopping`` or ``failed``; the rest is None unless ready or
    rebuilding."""

    phase: str
    data_dir: Path
    health: dict[str, Any] | None = None  # KnowledgeGraph.health()
    webhook_queue: int | None = None
    incidents_tracked: int | None = None
    incidents_due: int | None = None
    query_workers_busy: int | None = None
    query_workers: int | None = None
    intake: dict[str, Any] | None = None  # IntakeJournal.status(); None: no journal


class Telemetry:
    """The app's metrics and the narrow interface the server's parts report through."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self._records = Counter(
            "autocnc_ingest_records", "Input records ingested (the ingest report's records), "
            "by source kind", ["source"], registry=reg)
        self._rejected = Counter(
            "autocnc_ingest_rejected_records", "Input records rejected (listed in the ingest "
            "report and the dead-letter file), by source kind", ["source"], registry=reg)
        self._notifications = Counter(
            "autocnc_webhook_notifications", "Alertmanager webhook notifications by outcome: "
            "accepted (durable), invalid (4xx), unavailable (503), failed (5xx)",
            ["outcome"], registry=reg)
        self._alerts = Counter("autocnc_webhook_alerts",
                               "Alerts in accepted webhook notifications", registry=reg)
        self._webhook_s = Histogram(
            "autocnc_webhook_request_duration_seconds", "Webhook requests, from reading the "
            "body to the answer (durable)", registry=reg, buckets=LATENCY_BUCKETS)
        self._group = Histogram(
            "autocnc_webhook_group_commit_notifications", "Notifications written in one "
            "transaction (group commit)", registry=reg, buckets=GROUP_BUCKETS)
        self._commit_s = Histogram(
            "autocnc_webhook_commit_duration_seconds", "One group commit of the webhook, "
            "waiting for the writer's lock included", registry=reg, buckets=LATENCY_BUCKETS)
        self._rca_s = Histogram(
            "autocnc_rca_duration_seconds", "Root-cause analyses that answered: trigger "
            "request (POST /v1/rca) or incident (the background analysis of an incident)",
            ["trigger"], registry=reg, buckets=LATENCY_BUCKETS)
        self._recommend_s = Histogram(
            "autocnc_recommendation_duration_seconds", "Recommendations that answered "
            "(POST /v1/recommendations)", registry=reg, buckets=LATENCY_BUCKETS)
        ProcessCollector(registry=reg)  # CPU, memory, open files (reads /proc)
        GCCollector(registry=reg)

    # -- counted where it happens ------------------------------------------------------
    def ingested(self, source: str, report: IngestReport) -> None:
        """An ingest run landed (a dry run counts nothing)."""
        if report.dry_run:
            return
        self._records.labels(source).inc(report.records)
        self._rejected.labels(source).inc(len(report.rejected))

    def webhook_answered(self, outcome: str, seconds: float) -> None:
        self._notifications.labels(outcome).inc()
        self._webhook_s.observe(seconds)

    def webhook_committed(self, notifications: int, alerts: int, seconds: float) -> None:
        self._group.observe(notifications)
        self._commit_s.observe(seconds)
        self._alerts.inc(alerts)

    @contextmanager
    def rca(self, trigger: str) -> Iterator[None]:
        """Times an RCA; observed when it answers (an error, e.g. no symptoms, is not)."""
        with _timed(self._rca_s.labels(trigger).observe):
            yield

    @contextmanager
    def recommendation(self) -> Iterator[None]:
        with _timed(self._recommend_s.observe):
            yield

    # -- read at scrape time -----------------------------------------------------------
    def watch(self, state: Callable[[], ServerState]) -> Telemetry:
        """Read ``state()`` at every scrape (it must answer from memory)."""
        self.registry.register(ServerCollector(state))
        return self

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (OpenMetrics or the text format
        0.0.4, the default) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


@contextmanager
def _timed(observe: Callable[[float], None]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    observe(time.perf_counter() - start)


class _DirSize:
    """The bytes of the files under a directory, walked on a thread of its own at most every
    ``every_s`` (a scrape never waits for the walk: it reads the last result, None before
    the first)."""

    def __init__(self, every_s: float = DATA_DIR_EVERY_S) -> None:
        self.every_s = every_s
        self._lock = threading.Lock()  # scrapes only; the writer never takes it
        self._bytes: int | None = None
        self._at = -math.inf
        self._walking = False

    def __call__(self, path: Path) -> int | None:
        with self._lock:
            now = time.monotonic()
            if not self._walking and now - self._at >= self.every_s:
                self._walking, self._at = True, now
                threading.Thread(target=self._walk, args=(path,), name="metrics-data-dir",
                                 daemon=True).start()
            return self._bytes

    def _walk(self, path: Path) -> None:
        size = None
        try:
            size = _tree_bytes(path)
        finally:
            with self._lock:
                self._bytes, self._walking = size, False


def _tree_bytes(path: Path) -> int:
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:  # gone meanwhile (a checkpoint replaces files)
                        continue
        except OSError:
            continue
    return total


class ServerCollector(Collector):
    """The server's state as gauges and counters, read from memory at scrape time."""

    def __init__(self, state: Callable[[], ServerState]) -> None:
        self.state = state
        self.dir_size = _DirSize()

    def describe(self) -> Iterable[Metric]:
        return []  # what it yields depends on the phase: not described up front

    def collect(self) -> Iterable[Metric]:
        s = self.state()
        yield _gauge("autocnc_ready", "1 when the server is ready (/readyz answers 200), "
                     "0 while it starts, rebuilds its views, stops or failed",
                     1 if s.phase == "ready" else 0)
        if (size := self.dir_size(s.data_dir)) is not None:
            yield _gauge("autocnc_data_dir_bytes", "Bytes of the files under the data "
                         f"directory (walked at most every {DATA_DIR_EVERY_S:g} s)", size)
        if s.health is not None:
            yield from _health(s.health)
        for name, doc, value in [
            ("autocnc_webhook_queue_notifications", "Webhook notifications validated and "
             "waiting for the writer", s.webhook_queue),
            ("autocnc_incidents_tracked", "Incidents in the grouping state (in memory)",
             s.incidents_tracked),
            ("autocnc_incidents_due", "Incidents due for analysis and not analysed yet "
             "(the incident worker's queue)", s.incidents_due),
            ("autocnc_query_workers_busy", "Query worker processes running (or starting "
             "for) a query", s.query_workers_busy),
            ("autocnc_query_workers_max", "Query worker processes at most (setting "
             "query_workers)", s.query_workers),
        ]:
            if value is not None:
                yield _gauge(name, doc, value)
        if s.intake is not None:
            yield from _intake(s.intake)


def _intake(status: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("autocnc_intake_journal_lag_notifications", "Webhook notifications "
                 "accepted into the intake journal and not yet applied to the graph",
                 status["lagEntries"])
    yield _gauge("autocnc_intake_journal_lag_bytes", "Bytes of the intake journal's "
                 "notifications not yet applied to the graph", status["lagBytes"])
    yield _gauge("autocnc_intake_journal_applied_seq", "Sequence number of the last intake "
                 "journal entry applied to the graph", status["appliedSeq"])


def _health(health: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("autocnc_change_log_head", "Sequence number of the newest change-log entry",
                 health["changeLogHead"])
    marks = GaugeMetricFamily("autocnc_view_watermark", "Change-log entry each derived view "
                              "has applied", labels=["view"])
    lag = GaugeMetricFamily("autocnc_view_lag_entries", "Change-log entries a derived view "
                            "is behind the head", labels=["view"])
    aside = GaugeMetricFamily("autocnc_view_set_aside_records", "Change-log entries (or "
                              "facts) the view could not take and set aside (fixed by "
                              "reindex)", labels=["view"])
    for view, st in health["views"].items():
        marks.add_metric([view], st["watermark"])
        lag.add_metric([view], st["lag"])
        if view == "rdf":  # the one view that sets entries aside
            aside.add_metric([view], st.get("setAside", 0))
    yield from (marks, lag, aside)
    if (wal := health.get("writeAheadLog")) is not None:
        yield _gauge("autocnc_store_wal_bytes", "Size of the embedded store's write-ahead log "
                     "(replayed after a crash)", wal["bytes"])
        yield CounterMetricFamily("autocnc_store_checkpoints", "Checkpoints of the embedded "
                                  "store since the server started", value=wal["checkpoints"])
        if wal.get("lastCheckpointSeconds") is not None:
            yield _gauge("autocnc_store_last_checkpoint_duration_seconds", "How long the "
                         "last checkpoint took (it holds the writers)",
                         wal["lastCheckpointSeconds"])


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)

"""What a trace ingest writes: series samples, services, call relations, span-error events.

* **Series** go through the metrics pipeline (:class:`ingest.metrics.MetricsRun`): the
  samples to the time-series store, a ``MetricSeries`` summary per series with ``observes``
  its resolved entity, anomalies from the same detector. Names and labels are a contract
  the RCA engine reads (docs/ingest/traces.md): ``trace_request_rate``,
  ``trace_error_ratio``, ``trace_latency_seconds{statistic}``,
  ``trace_self_time_seconds{statistic}``, ``trace_call_gap_seconds{statistic}`` with
  ``service`` (always), ``pod`` and
  ``namespace`` (when known), ``operation`` (the per-operation variant). A sample is the
  whole bucket's value at the bucket's start, written again whenever a span of the bucket
  comes (the store keeps the newest write).
* **Services**: an application ``Service`` (key: its name) that the graph does not have is
  created (option ``create_services``), so the observed call graph of a system without
  topology still lands.
* **Calls**: ``calls`` between the application services (and between ``Pod`` s the graph
  knows) with the running totals ``callCount``, ``errorCount``, ``firstCallTime``,
  ``lastCallTime``.
* **Span errors**: a ``LogEvent`` with ``eventKind`` ``span-error`` per (service instance,
  bucket, status message), ``count`` = its error spans, ``name`` = the message,
  ``aboutEntity`` the entity its labels resolve to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from ingest.base import IngestContext, Record
from ingest.metrics import MetricsRun
from ingest.metrics_series import Chunk
from ingest.traces.spans import Instance
from ingest.traces.state import Applied, Totals, TraceState
from kg.facts import Entity, Relation, Value

SERIES = {  # metric -> (unit, description)
    "trace_request_rate": ("requests/s", "Requests served (entry spans) per second in the "
                           "bucket, from traces."),
    "trace_error_ratio": ("ratio", "Share of the bucket's entry spans with error status."),
    "trace_latency_seconds": ("s", "Duration of the bucket's entry spans (statistic: mean, "
                              "p50, p90, p99)."),
    "trace_self_time_seconds": ("s", "Self time of the bucket's spans: duration minus the "
                                "union of the children's intervals, client spans of calls "
                                "to other services left out (statistic: mean, p90)."),
    "trace_call_gap_seconds": ("s", "Call gap of the bucket's entry spans called from another "
                               "service: the caller's span minus the callee's, when it has "
                               "no other child (statistic: mean, p90)."),
}
EVENT_KIND = "span-error"
NO_MESSAGE = "(error status without a message)"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def source_of(scope: str) -> str:
    return f"traces/spans:{scope}"


@dataclass
class TraceWriter:
    """Collects what the batches of one run changed and writes it (see the module doc)."""

    ctx: IngestContext
    run: MetricsRun
    per_operation: bool = True
    create_services: bool = True
    _services: dict[str, bool] = field(default_factory=dict)  # service IRI -> in the graph
    _created: dict[str, Entity] = field(default_factory=dict)  # services this run created
    _calls: dict[tuple[str, str, str], tuple[Totals, str]] = field(default_factory=dict)
    _pod_calls: dict[tuple[str, Instance, Instance], tuple[Totals, str]] = \
        field(default_factory=dict)
    # (scope, instance, bucket start ms, message) -> (count, operations, file, step ms)
    _events: dict[tuple[str, Instance, int, str], tuple[int, list[str], str, int]] = \
        field(default_factory=dict)

    def add(self, state: TraceState, applied: Applied, file: str) -> None:
        scope = state.scope
        # the services of the spans this batch touched (the text tables may hold more)
        self._ensure_services(scope, {state.window.instances[i][0]
                                      for i in np.unique(applied.cells.inst)})
        self._samples(state, applied, file)
        for (a, b), totals in applied.service_calls.items():
            self._calls[(scope, a, b)] = (totals, file)
        for (pa_, pb), totals in applied.pod_calls.items():
            self._pod_calls[(scope, pa_, pb)] = (totals, file)
        e = applied.errors
        for i in range(len(e.count)):
            inst = state.window.instances[e.inst[i]]
            msg = state.window.messages[e.msg[i]] if e.msg[i] >= 0 else ""
            ops = [state.window.operations[o] for o in e.operations[i]]
            step_ms = state.step_ns // 1_000_000
            self._events[(scope, inst, int(e.bucket[i]) * step_ms, msg)] = (
                int(e.count[i]), ops, file, step_ms)

    def finish(self) -> None:
        """Queue the events and calls, then let the metrics run write the samples (durable)
        and flush the sink: one graph write for the series summaries, events and calls."""
        sink, report = self.ctx.sink, self.ctx.report
        events = list(self._event_records())
        for rec in events:
            sink.add(rec, counted=False)
        report.count("spanErrorEvents", len(events))
        for rec in self._call_records():
            sink.add(rec, counted=False)
        self.run.finish()
        sink.flush()

    # -- services -------------------------------------------------------------------------
    def _ensure_services(self, scope: str, names: set[str]) -> None:
        """Create the application services the graph lacks (before series resolve)."""
        iris = {self.ctx.iri(scope, "Service", n): n for n in names}
        todo = [i for i in iris if i not in self._services]
        if not todo:
            return
        self.ctx.sink.flush()
        found, _ = self.ctx.kg.store.fetch(todo, [])
        created = 0
        for iri in todo:
            st = found.get(iri)
            live = st is not None and st.valid_to is None
            if not live and self.create_services:
                entity = Entity(iri, "Service", {"name": iris[iri]}, source_of(scope))
                self._created[iri] = entity
                self.ctx.sink.add(Record("", f"service {iris[iri]}", [entity]), counted=False)
                created += 1
                live = True
            self._services[iri] = live
        if created:
            self.ctx.report.count("servicesCreated", created)
            self.ctx.sink.flush()
            self.run.resolver.forget()  # it may have cached these as absent

    # -- series ---------------------------------------------------------------------------
    def _samples(self, state: TraceState, applied: Applied, file: str) -> None:
        c = applied.cells
        idx: list[int] = []
        ts: list[int] = []
        val: list[float] = []
        step_ms = state.step_ns // 1_000_000
        for i in range(len(c)):
            if c.op[i] >= 0 and not self.per_operation:
                continue
            inst = state.window.instances[c.inst[i]]
            labels = {"service": inst[0]}
            if inst[1]:
                labels["pod"] = inst[1]
            if inst[2]:
                labels["namespace"] = inst[2]
            if c.op[i] >= 0:
                labels["operation"] = state.window.operations[c.op[i]]
            at = int(c.bucket[i]) * step_ms
            values: list[tuple[str, dict[str, str], float]] = []
            if c.entries[i]:
                values.append(("trace_request_rate", {}, c.entries[i] * 1000 / step_ms))
                values.append(("trace_error_ratio", {}, c.errors[i] / c.entries[i]))
                values += [("trace_latency_seconds", {"statistic": k}, v[i])
                           for k, v in c.latency.items()]
            values += [("trace_self_time_seconds", {"statistic": k}, v[i])
                       for k, v in c.self_time.items() if np.isfinite(v[i])]
            values += [("trace_call_gap_seconds", {"statistic": k}, v[i])
                       for k, v in c.gap.items() if np.isfinite(v[i])]
            for metric, extra, value in values:
                unit, text = SERIES[metric]
                key = tuple(sorted({**labels, **extra}.items()))
                idx.append(self.run.catalog.index(
                    state.scope, metric, key, file=file, where="spans", fmt="traces",
                    counter=False, unit=unit, description=text))
                ts.append(at)
                val.append(float(value))
        if idx:
            self.run.add(Chunk(np.array(idx, np.int64), np.array(ts, np.int64),
                               np.array(val, np.float64)))
        self.ctx.report.count("cellsUpdated", len(c))

    # -- events ---------------------------------------------------------------------------
    def _event_records(self) -> Iterator[Record]:
        if not self._events:
            return
        keys = list(self._events)
        found = self.run.resolver.resolve_many([(scope, _labels(inst))
                                                for scope, inst, _, _ in keys])
        for (scope, inst, at, msg), res in zip(keys, found, strict=True):
            count, ops, file, step_ms = self._events[(scope, inst, at, msg)]
            start = _time(at)
            digest = hashlib.sha1(json.dumps([*inst, at, msg]).encode()).hexdigest()[:24]
            iri = self.ctx.iri(scope, "LogEvent", f"{EVENT_KIND}/{digest}")
            props: dict[str, Value] = {
                "eventKind": EVENT_KIND, "name": msg or NO_MESSAGE, "count": count,
                "startTime": start, "endTime": _time(at + step_ms),
                "logLevel": "error", "ingestScope": scope,
                "labels": json.dumps(_labels(inst), sort_keys=True, ensure_ascii=False),
                "attributes": json.dumps({"operations": ops}, ensure_ascii=False),
            }
            if msg:
                props["message"] = msg
            rels = []
            if res.iri is None:
                props["resolution"] = "unresolved"
            else:
                rels.append(Relation("aboutEntity", iri, res.iri, {"resolution": res.how},
                                     source_of(scope)))
            yield Record(file, f"{EVENT_KIND} {inst[0]} {start.isoformat()}",
                         [Entity(iri, "LogEvent", props, source_of(scope), start)], rels,
                         raw=msg)

    # -- calls ----------------------------------------------------------------------------
    def _call_records(self) -> Iterator[Record]:
        made = 0
        for (scope, a, b), (totals, file) in sorted(self._calls.items()):
            ia, ib = self.ctx.iri(scope, "Service", a), self.ctx.iri(scope, "Service", b)
            if not (self._services.get(ia) and self._services.get(ib)):
                self.ctx.report.count("callsWithoutService")
                continue
            made += 1
            rec = _call(ia, ib, totals, scope, file, f"calls {a} -> {b}")
            if self.ctx.report.dry_run:  # nothing was stored: the services go along
                rec.entities += [self._created[i] for i in (ia, ib) if i in self._created]
            yield rec
        self.ctx.report.count("serviceCalls", made)
        pods = {(scope, x): self.ctx.iri(scope, "Pod", f"{x[2] or 'default'}/{x[1]}")
                for scope, a, b in self._pod_calls for x in (a, b)}
        found, _ = self.ctx.kg.store.fetch(sorted(set(pods.values())), []) if pods else ({}, {})
        known = {iri for iri, st in found.items() if st.kind == "Pod" and st.valid_to is None}
        made = 0
        for (scope, pa_, pb), (totals, file) in sorted(self._pod_calls.items()):
            ia, ib = pods[(scope, pa_)], pods[(scope, pb)]
            if ia in known and ib in known:
                made += 1
                yield _call(ia, ib, totals, scope, file, f"calls {pa_[1]} -> {pb[1]}")
        self.ctx.report.count("podCalls", made)


def _call(caller: str, callee: str, totals: Totals, scope: str, file: str, where: str
          ) -> Record:
    count, errors, first, last = totals
    props: dict[str, Value] = {"callCount": count, "errorCount": errors,
                               "firstCallTime": _time(first // 1_000_000),
                               "lastCallTime": _time(last // 1_000_000)}
    return Record(file, where, [], [Relation("calls", caller, callee, props, source_of(scope),
                                             valid_from=_time(first // 1_000_000))])


def _labels(inst: Instance) -> dict[str, str]:
    out = {"service": inst[0]}
    if inst[1]:
        out["pod"] = inst[1]
    if inst[2]:
        out["namespace"] = inst[2]
    return out


def _time(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


"""Trace ingest: OpenTelemetry spans -> the observed call graph, RED and self-time series,
span-error events. Spans themselves are not stored (the trace backend keeps them).

Inputs (docs/ingest/traces.md, format version 1): OTLP ``ExportTraceServiceRequest`` as
JSON or JSON lines (:mod:`ingest.traces.otlp`) or binary protobuf, and the span table, CSV
or Parquet (:mod:`ingest.traces.table`). The OTLP/HTTP receiver ``POST /v1/traces`` feeds
the same pipeline (api/trace_routes.py).

Pipeline per input: parse -> spans per scope, bad spans refused with their line, row or
JSON pointer -> merge into the scope's open window (:mod:`ingest.traces.state`): spans of
closed buckets are *late*, repeated spans are duplicates -> recompute the statistics of
every touched (service instance, bucket) and the new calls (:mod:`ingest.traces.derive`)
-> samples through the metrics pipeline, services, calls and events through the sink
(:mod:`ingest.traces.facts`). After the last input: the facts are flushed (durable), then
each scope's state is saved, so a crash in between only makes a retry recompute the same
values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.base import IngestContext, IngestError, Input
from ingest.metrics import MetricsOptions, MetricsRun
from ingest.metrics_tables import zone
from ingest.traces.facts import TraceWriter
from ingest.traces.otlp import looks_like_json, parse_json, parse_proto
from ingest.traces.spans import (
    NoScopeError,
    NotTracesError,
    SpanBatch,
    TraceInputError,
    head_bytes,
)
from ingest.traces.state import TraceState
from ingest.traces.table import read_table, table_spans
from kg.facts import now_utc

PATTERNS = ("*.json", "*.jsonl", "*.ndjson", "*.pb", "*.binpb", "*.otlp", "*.csv", "*.csv.gz",
            "*.parquet")
FORMATS = ("otlp-json", "otlp-proto", "table")
FORMAT_VERSION = 1

__all__ = ["FORMATS", "PATTERNS", "NoScopeError", "TraceInputError", "TraceOptions",
           "ingest", "parse_options"]


class TraceOptions(BaseModel):
    """The ``options`` of a traces ingest (docs/ingest/traces.md lists them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["auto", "otlp-json", "otlp-proto", "table"] = "auto"
    step: int | None = Field(None, ge=1, le=3600,
                             description="bucket width, seconds (default: the scope's, else 60)")
    grace: int = Field(600, ge=0, le=7 * 86_400,
                       description="seconds a bucket stays open behind the newest one")
    time_unit: Literal["s", "ms", "us", "ns"] = "s"
    tz: str = "UTC"
    max_future: int = Field(600, ge=0, description="seconds a span may start after now")
    per_operation: bool = True
    create_services: bool = True
    detect: bool = True


def parse_options(raw: Mapping[str, Any]) -> TraceOptions:
    """Options validated at load; IngestError names every bad key."""
    try:
        opts = TraceOptions.model_validate(dict(raw))
        zone(opts.tz)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        raise IngestError(f"traces options: {problems}") from exc
    except ValueError as exc:
        raise IngestError(f"traces options: {exc}") from exc
    return opts


def ingest(ctx: IngestContext, inputs: list[Input]) -> None:
    """Ingest trace inputs; see the module doc."""
    opts = parse_options(ctx.options)
    run = MetricsRun.open(ctx, MetricsOptions(detect=opts.detect))
    writer = TraceWriter(ctx, run, opts.per_operation, opts.create_services)
    states: dict[str, TraceState] = {}
    max_start = (now_utc().timestamp() + opts.max_future) * 1e9
    ctx.progress.start(sum(i.size for i in inputs), "traces")
    for inp in inputs:
        for scope, batch in _spans(ctx, opts, inp).items():
            state = states.get(scope)
            if state is None:
                state = states[scope] = TraceState.load(
                    ctx.data_dir, scope, opts.step, opts.grace, cached=not ctx.sink.dry_run)
            applied = state.apply(batch, int(max_start))
            _count(ctx, applied.accepted, applied.duplicates, applied.late, applied.future)
            writer.add(state, applied, inp.name)
        ctx.progress.advance(inp.size)
    writer.finish()
    if not ctx.sink.dry_run:
        for state in states.values():
            state.save()
    late = ctx.report.counts.get("lateSpans", 0)
    if late:
        ctx.report.notes.append(
            f"{late} span(s) were late: their bucket had closed ({opts.grace} s behind the "
            "newest bucket; option grace) and its statistics are final, so they were "
            "counted, not merged")
    if ctx.report.counts.get("futureSpans"):
        ctx.report.notes.append(
            f"{ctx.report.counts['futureSpans']} span(s) start more than {opts.max_future} s "
            "after now (option max_future) and were not merged; check the senders' clocks")


def _count(ctx: IngestContext, accepted: int, duplicates: int, late: int, future: int
           ) -> None:
    report = ctx.report
    report.records += accepted
    report.count("spans", accepted)
    report.count("duplicateSpans", duplicates)
    report.count("lateSpans", late)
    report.count("futureSpans", future)


def format_of(inp: Input, forced: str) -> str | None:
    """``otlp-json`` / ``otlp-proto`` / ``table``, or None when the input is none of them."""
    if forced != "auto":
        return forced
    name = inp.name.lower()
    head = head_bytes(inp, 8)
    if head.startswith(b"PAR1") or name.endswith((".csv", ".csv.gz", ".parquet")):
        return "table"
    if name.endswith((".pb", ".binpb", ".otlp", ".protobuf")):
        return "otlp-proto"
    if name.endswith((".json", ".jsonl", ".ndjson")) or looks_like_json(head):
        return "otlp-json"
    return None


def _spans(ctx: IngestContext, opts: TraceOptions, inp: Input) -> dict[str, SpanBatch]:
    """The spans of one input per scope; bad spans are refused through the sink."""
    fmt = format_of(inp, opts.format)
    if fmt is None:
        ctx.sink.skip(inp.name, "not a trace input (OTLP JSON or protobuf, or a span table "
                      "in CSV or Parquet)")
        return {}
    scope = ctx.scope.replace("{stem}", inp.stem) if ctx.scope else None
    before = len(ctx.report.rejected)

    def reject(where: str, reason: str, raw: str | None) -> None:
        ctx.sink.reject(inp.name, where, reason, raw)

    try:
        if fmt == "otlp-json":
            batches = parse_json(inp.read_text(), scope, reject)
        elif fmt == "otlp-proto":
            batches = parse_proto(inp.read_bytes(), scope, reject)
        else:
            if scope is None:
                raise NoScopeError(f"{inp.name}: a span table needs a scope (--scope, or "
                                   "?scope= over HTTP)")
            table, numbers, word, invalid = read_table(inp)
            for line in invalid:
                reject(f"line {line}", "wrong number of cells for the header", None)
            batches = {scope: table_spans(table, numbers, word, opts.time_unit,
                                          zone(opts.tz), reject)}
    except NotTracesError as exc:
        if opts.format != "auto":
            raise NotTracesError(f"{Path(inp.name).name}: {exc}") from None
        ctx.sink.skip(inp.name, str(exc))
        return {}
    except TraceInputError as exc:
        raise type(exc)(f"{Path(inp.name).name}: {exc}") from None
    ctx.report.count("spansRejected", len(ctx.report.rejected) - before)
    return {s: b for s, b in batches.items() if len(b)}

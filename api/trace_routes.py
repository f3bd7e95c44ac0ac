"""The OTLP/HTTP trace receiver: ``POST /v1/traces``.

OTLP/HTTP semantics (opentelemetry-proto, ``ExportTraceServiceRequest``): the body is
``application/x-protobuf`` or ``application/json``, optionally ``Content-Encoding: gzip``;
the answer is an ``ExportTraceServiceResponse`` in the request's encoding, with
``partial_success`` {``rejected_spans``, ``error_message``} when some spans were refused
(malformed, late or from the future); a malformed request gets 400 with a
``google.rpc.Status``; another content type 415. The spans go through the traces ingest
(docs/ingest/traces.md); the answer comes after the derived facts and samples are durable.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import GraphDependency, WriterDependency
from ingest import IngestError, IngestReport, Input, run_ingest
from kg.config import Settings
from kg.graph import KnowledgeGraph

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
INVALID_ARGUMENT = 3  # google.rpc.Code


def add_trace_routes(app: FastAPI, settings: Settings, kg: GraphDependency,
                     writer: WriterDependency, guard: threading.Lock,
                     after_write: Callable[[], None] = lambda: None,
                     observe: Callable[[str, IngestReport], None] = lambda kind, r: None
                     ) -> None:
    """``observe`` gets each report (the server's metrics count records and rejects)."""
    @app.post("/v1/traces", tags=["ingest"], dependencies=[Depends(writer)],
              responses={400: {"description": "malformed request (google.rpc.Status)"},
                         413: {"description": "body over the size limit"},
                         415: {"description": "neither protobuf nor JSON"}})
    async def otlp_traces(request: Request, scope: str | None = None,
                          g: KnowledgeGraph = Depends(kg)) -> Response:
        """OTLP/HTTP trace receiver (point an OpenTelemetry collector's ``otlphttp``
        exporter at this server). Body: an ``ExportTraceServiceRequest`` as
        ``application/x-protobuf`` or ``application/json``, gzip allowed. ``scope`` names
        the cluster; without it each resource's ``k8s.cluster.name`` attribute does, and a
        resource with neither gets 400. Spans become the observed call graph, RED and
        self-time series per service and operation, and span-error events
        (docs/ingest/traces.md); they are not stored one by one. Answers after the derived
        facts and samples are durable, with ``partial_success`` counting refused spans
        (malformed, or late for a closed bucket); 400 for a malformed request, 415 for
        another content type."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in (PROTOBUF, JSON):
            return _status(JSON, 415, f"unsupported content type {ctype or 'none'!r}: send "
                           f"{PROTOBUF} or {JSON}")
        body = await _body(request, settings.max_request_bytes)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding == "gzip":
            try:
                body = _gunzip(body, settings.max_ingest_bytes)
            except ValueError as exc:
                return _status(ctype, 400, f"gzip body: {exc}")
        elif encoding not in ("", "identity"):
            return _status(ctype, 415, f"unsupported content encoding {encoding!r} (gzip "
                           "or none)")
        fmt = "otlp-proto" if ctype == PROTOBUF else "otlp-json"
        inp = Input.of_bytes("POST /v1/traces", body)

        def work() -> IngestReport:
            with guard:
                report = run_ingest(g, "traces", [inp], scope=scope,
                                    options={"format": fmt})
            after_write()  # new services: cached label resolutions may be stale
            observe("traces", report)
            return report

        try:
            report = await run_in_threadpool(work)
        except IngestError as exc:
            return _status(ctype, 400, str(exc))
        return _export_response(ctype, report)


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (the app's middleware already checks
    a declared Content-Length; this also bounds chunked bodies)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompressed, refusing more than ``limit`` bytes (a small body can inflate a lot)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ValueError(f"not valid gzip: {exc}") from None
    if len(out) > limit:
        raise HTTPException(413, f"decompressed body over {limit} bytes")
    if not inflater.eof:
        raise ValueError("truncated gzip stream")
    return out


def _export_response(ctype: str, report: IngestReport) -> Response:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    resp = ExportTraceServiceResponse()
    late = report.counts.get("lateSpans", 0) + report.counts.get("futureSpans", 0)
    bad = len(report.rejected)
    if bad or late:
        resp.partial_success.rejected_spans = bad + late
        why = [f"{r.where}: {r.reason}" for r in report.rejected[:5]]
        if late:
            why.append(f"{late} span(s) late (bucket closed) or in the future, not merged")
        resp.partial_success.error_message = "; ".join(why)
    if ctype == PROTOBUF:
        return Response(resp.SerializeToString(), media_type=PROTOBUF)
    from google.protobuf.json_format import MessageToDict

    return Response(json.dumps(MessageToDict(resp)), media_type=JSON)


def _status(ctype: str, code: int, message: str) -> Response:
    """A ``google.rpc.Status`` {code, message} as OTLP/HTTP sends errors."""
    if ctype == PROTOBUF:
        # Encoded by hand: google.rpc.Status is two fields (1: int32 code, 2: string
        # message), and its generated class lives in another package we do not need.
        text = message.encode()
        body = bytes([0x08, INVALID_ARGUMENT, 0x12]) + _varint(len(text)) + text
        return Response(body, status_code=code, media_type=PROTOBUF)
    doc: dict[str, Any] = {"code": INVALID_ARGUMENT, "message": message}
    return Response(json.dumps(doc), status_code=code, media_type=JSON)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)

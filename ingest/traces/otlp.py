"""OTLP trace input: ``ExportTraceServiceRequest`` as JSON (one request, or one per line as
the collector's file exporter writes) or as binary protobuf (the OTLP/HTTP body).

The JSON form follows the OTLP/JSON encoding: ``traceId`` / ``spanId`` / ``parentSpanId``
are hex strings (not base64), enums are integers (their names are accepted too), 64-bit
integers are numbers or decimal strings, keys are lowerCamelCase (the proto field names
are accepted too). Per resource: ``service.name`` is the service, ``k8s.pod.name`` the pod,
``k8s.namespace.name`` the namespace, and ``k8s.cluster.name`` the scope when none is given.

A bad span is refused with its JSON pointer (``/resourceSpans/0/scopeSpans/1/spans/7``,
after ``line N`` in JSON lines) and the reason; the other spans go on. An input that is not
a request at all raises :class:`TraceInputError`; a resource without a scope raises
:class:`NoScopeError` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ingest.traces.spans import (
    KIND_NAMES,
    STATUS_NAMES,
    NoScopeError,
    NotTracesError,
    SpanBatch,
    SpanBuilder,
    TraceInputError,
    hex_bytes,
)

Reject = Callable[[str, str, str | None], None]  # (where, reason, raw record)
SCOPE_ATTRIBUTE = "k8s.cluster.name"


class _Scopes:
    """One builder per scope: a request may carry resources of several clusters."""

    def __init__(self, given: str | None) -> None:
        self.given = given
        self.builders: dict[str, SpanBuilder] = {}

    def builder(self, attrs: Mapping[str, str], where: str) -> SpanBuilder:
        scope = self.given or attrs.get(SCOPE_ATTRIBUTE)
        if not scope:
            raise NoScopeError(
                f"{where}: no scope for these spans: give one (--scope, or ?scope= on the "
                f"receiver) or set the resource attribute {SCOPE_ATTRIBUTE}")
        if scope not in self.builders:
            self.builders[scope] = SpanBuilder()
        return self.builders[scope]

    def batches(self) -> dict[str, SpanBatch]:
        return {s: b.build() for s, b in self.builders.items() if len(b)}


# -- JSON ---------------------------------------------------------------------------------------

def parse_json(text: str, scope: str | None, reject: Reject) -> dict[str, SpanBatch]:
    """Spans per scope of an OTLP/JSON document or of JSON lines of them."""
    scopes = _Scopes(scope)

    def walk(prefix: str, doc: Any, *, one_of_many: bool) -> None:
        spans = _get(doc, "resourceSpans", "resource_spans", default=None)
        if isinstance(spans, list) or doc == {}:  # {}: an empty request
            _walk_json(doc, prefix, scopes, reject)
        elif one_of_many:
            reject(prefix.strip(), "not an ExportTraceServiceRequest object",
                   json.dumps(doc)[:4096])
        elif isinstance(doc, dict) and spans is None:
            raise NotTracesError("not an OTLP/JSON ExportTraceServiceRequest: no "
                                 "resourceSpans")
        else:
            raise TraceInputError("not an OTLP/JSON ExportTraceServiceRequest: expected an "
                                  "object with a resourceSpans array")

    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if not text.strip():
            raise TraceInputError("empty input: expected an OTLP/JSON "
                                  "ExportTraceServiceRequest") from None
        for prefix, doc in _json_lines(text, exc, reject):
            walk(prefix, doc, one_of_many=True)
    else:
        walk("", whole, one_of_many=False)
    return scopes.batches()


def _json_lines(text: str, first_error: json.JSONDecodeError, reject: Reject
                ) -> Iterator[tuple[str, Any]]:
    numbered = [(n, line) for n, line in enumerate(text.split("\n"), 1) if line.strip()]
    for i, (n, line) in enumerate(numbered):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == 0:  # not even the first line is JSON: the input is no OTLP JSON at all
                raise TraceInputError(f"not JSON: {first_error}") from None
            reject(f"line {n}", f"not JSON: {exc}", line[:4096])
            continue
        yield f"line {n} ", doc


def _walk_json(doc: dict[str, Any], prefix: str, scopes: _Scopes, reject: Reject) -> None:
    for r, rs in enumerate(_list(doc, "resourceSpans", "resource_spans")):
        where = f"{prefix}/resourceSpans/{r}"
        resource = _get(rs, "resource", default={}) if isinstance(rs, dict) else None
        if not isinstance(resource, dict):  # also: the entry itself is not an object
            reject(where, "resourceSpans entry or its resource is not an object", None)
            continue
        attrs = _json_attributes(resource.get("attributes"))
        builder = scopes.builder(attrs, f"{where}/resource")
        inst = _instance(attrs)
        for s, ss in enumerate(_list(rs, "scopeSpans", "scope_spans")):
            for k, span in enumerate(_list(ss, "spans")):
                at = f"{where}/scopeSpans/{s}/spans/{k}"
                reason = _json_span(builder, inst, span)
                if reason:
                    reject(at, reason, json.dumps(span, ensure_ascii=False)[:4096])


def _json_span(builder: SpanBuilder, inst: tuple[str, str, str], span: Any) -> str | None:
    if not isinstance(span, dict):
        return "span is not an object"
    ids = []
    for names, width, what in ((("traceId", "trace_id"), 16, "trace id"),
                               (("spanId", "span_id"), 8, "span id"),
                               (("parentSpanId", "parent_span_id"), 8, "parent span id")):
        text = _get(span, *names, default="")
        if text == "":
            ids.append(b"")
            continue
        raw = hex_bytes(text, width)
        if raw is None:
            return f"bad {what} hex: {str(text)[:80]!r} (expected {2 * width} hex digits)"
        ids.append(raw)
    try:
        start = _uint(_get(span, "startTimeUnixNano", "start_time_unix_nano", default=0))
        end = _uint(_get(span, "endTimeUnixNano", "end_time_unix_nano", default=0))
    except ValueError as exc:
        return f"bad time: {exc}"
    kind = _enum(_get(span, "kind", default=0), KIND_NAMES, "SPAN_KIND_")
    status = _get(span, "status", default={}) or {}
    if not isinstance(status, dict):
        return "status is not an object"
    code = _enum(status.get("code", 0), STATUS_NAMES, "STATUS_CODE_")
    if kind is None:
        return f"unknown span kind {span.get('kind')!r}"
    if code is None:
        return f"unknown status code {status.get('code')!r}"
    name = span.get("name", "")
    message = status.get("message", "")
    if not isinstance(name, str) or not isinstance(message, str):
        return "name and status.message must be strings"
    return builder.add(ids[0], ids[1], ids[2], inst, name, start, end, kind, code, message)


def _json_attributes(items: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            continue
        value = item.get("value")
        if isinstance(value, dict) and value:
            v = value.get("stringValue", value.get("string_value"))
            out[item["key"]] = str(v if v is not None else next(iter(value.values())))
    return out


def _get(d: Any, *names: str, default: Any = None) -> Any:
    if not isinstance(d, dict):
        return default
    for n in names:
        if n in d:
            return d[n]
    return default


def _list(d: Any, *names: str) -> list[Any]:
    value = _get(d, *names, default=[])
    return value if isinstance(value, list) else []


def _uint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not an integer of nanoseconds")
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer of nanoseconds") from None
    if n < 0 or n >= 1 << 63:
        raise ValueError(f"{value!r} is out of range")
    return n


def _enum(value: Any, names: tuple[str, ...], prefix: str) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value if 0 <= value < len(names) else None
    if isinstance(value, str):
        name = value.upper().removeprefix(prefix).lower()
        return names.index(name) if name in names else None
    return None


def _instance(attrs: Mapping[str, str]) -> tuple[str, str, str]:
    return (attrs.get("service.name", ""), attrs.get("k8s.pod.name", ""),
            attrs.get("k8s.namespace.name", ""))


# -- protobuf -----------------------------------------------------------------------------------

def parse_proto(data: bytes, scope: str | None, reject: Reject) -> dict[str, SpanBatch]:
    """Spans per scope of a binary ``ExportTraceServiceRequest``."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        request = ExportTraceServiceRequest.FromString(data)
    except DecodeError as exc:
        raise TraceInputError(f"not a protobuf ExportTraceServiceRequest: {exc}") from None
    scopes = _Scopes(scope)
    for r, rs in enumerate(request.resource_spans):
        where = f"/resourceSpans/{r}"
        attrs = {kv.key: _proto_value(kv.value) for kv in rs.resource.attributes}
        builder = scopes.builder(attrs, f"{where}/resource")
        inst = _instance(attrs)
        for s, ss in enumerate(rs.scope_spans):
            for k, span in enumerate(ss.spans):
                reason = builder.add(span.trace_id, span.span_id, span.parent_span_id, inst,
                                     span.name, span.start_time_unix_nano,
                                     span.end_time_unix_nano, span.kind, span.status.code,
                                     span.status.message)
                if reason:
                    reject(f"{where}/scopeSpans/{s}/spans/{k}", reason, _proto_text(span))
    return scopes.batches()


def _proto_value(value: Any) -> str:
    which = value.WhichOneof("value")
    return "" if which is None else str(getattr(value, which))


def _proto_text(span: Any) -> str:
    return (f"traceId={span.trace_id.hex()} spanId={span.span_id.hex()} "
            f"parentSpanId={span.parent_span_id.hex()} name={span.name!r}")[:4096]


def looks_like_json(head: bytes) -> bool:
    return head.lstrip()[:1] in (b"{", b"[")

"""Trace ingest on every backend: Nezha's Online Boutique spans (as the span table) against
the Online Boutique topology, and OTLP requests built with the opentelemetry-proto classes.
Expected values come from a plain-Python reference of the documented definitions."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from ingest import inputs_for, run_ingest
from ingest.base import Input
from ingest.traces import NoScopeError
from ingest.traces import state as trace_state
from kg.config import Settings, load_settings
from kg.graph import KnowledgeGraph
from kg.timeseries import TimeSeriesStore, series_id
from ontology import mint_iri
from tests.conftest import SHARED_DATA

NEZHA = SHARED_DATA / "nezha-online-boutique" / "rca_data" / "2022-08-22" / "trace"
TOPOLOGY = SHARED_DATA / "topology" / "online-boutique" / "kubernetes-manifests.yaml"
HEADER = ["trace_id", "span_id", "parent_span_id", "service", "pod", "operation",
          "start_unix_nano", "end_unix_nano"]
SCOPE = "ob"
MS = 1_000_000
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z in ns: a bucket start
PROTOBUF = {"Content-Type": "application/x-protobuf"}


# -- data ------------------------------------------------------------------------------------

def nezha_rows(file: str = "03_53_trace.csv.gz", traces: int = 400) -> list[dict[str, str]]:
    """The spans of the first ``traces`` traces of a Nezha minute file."""
    keep: dict[str, None] = {}
    rows = []
    with gzip.open(NEZHA / file, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["TraceID"] not in keep:
                if len(keep) == traces:
                    continue
                keep[row["TraceID"]] = None
            rows.append(row)
    return rows


def service_of(pod: str) -> str:
    return pod.rsplit("-", 2)[0]  # FORMAT.md: the pod name without its last two parts


def span_table(rows: list[dict[str, str]], path: Path) -> Path:
    """Nezha's columns converted to the documented span table."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for r in rows:
            w.writerow([r["TraceID"], r["SpanID"], r["ParentID"], service_of(r["PodName"]),
                        r["PodName"], r["OperationName"], r["StartTimeUnixNano"],
                        r["EndTimeUnixNano"]])
    return path


def topology(kg: KnowledgeGraph, scope: str = SCOPE) -> None:
    report = run_ingest(kg, "topology", inputs_for("topology", [str(TOPOLOGY)]), scope=scope)
    assert not report.rejected


def samples(kg: KnowledgeGraph, scope: str, metric: str, labels: dict[str, str]
            ) -> dict[int, float]:
    sid = series_id(scope, metric, labels)
    found = TimeSeriesStore.open(kg.settings.data_dir, read_only=True).read([sid]).split()
    ts, val = found.get(sid, (np.empty(0), np.empty(0)))
    return dict(zip(ts.tolist(), val.tolist(), strict=True))


def calls(kg: KnowledgeGraph, kind: str = "Service") -> dict[tuple[str, str], list[Any]]:
    rows = kg.cypher(
        "MATCH (a:Entity)-[c:calls]->(b:Entity) WHERE a.kind = $k AND c.callCount IS NOT NULL "
        "RETURN a.name, b.name, c.callCount, c.errorCount, c.firstCallTime, c.lastCallTime",
        {"k": kind}).rows
    return {(r[0], r[1]): r[2:] for r in rows}


# -- a reference of the documented definitions, one span at a time ----------------------------

def reference(rows: list[dict[str, str]], step_s: int = 60) -> dict[str, Any]:
    spans = {(r["TraceID"], r["SpanID"]): r for r in rows}
    children: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        if (r["TraceID"], r["ParentID"]) in spans:
            children[(r["TraceID"], r["ParentID"])].append(r)
    edges: Counter[tuple[str, str]] = Counter()
    first: dict[tuple[str, str], int] = {}
    cells: dict[tuple[str, str, int], dict[str, list[float]]] = defaultdict(
        lambda: {"entry": [], "self": []})
    for key, r in spans.items():
        svc, start, end = service_of(r["PodName"]), int(r["StartTimeUnixNano"]), \
            int(r["EndTimeUnixNano"])
        parent = spans.get((r["TraceID"], r["ParentID"]))
        caller = service_of(parent["PodName"]) if parent else None
        if caller is not None and caller != svc:
            edges[(caller, svc)] += 1
            first[(caller, svc)] = min(first.get((caller, svc), start), start)
        covered, reach = 0, start
        for c in sorted(children[key], key=lambda c: int(c["StartTimeUnixNano"])):
            cs = min(max(int(c["StartTimeUnixNano"]), start), end)
            ce = min(max(int(c["EndTimeUnixNano"]), cs), end)
            covered += max(0, ce - max(cs, reach))
            reach = max(reach, ce)
        cell = cells[(svc, r["PodName"], start // (step_s * 10**9))]
        if all(service_of(c["PodName"]) == svc for c in children[key]):
            # (a client span calling another service has no self time of its own service)
            cell["self"].append((end - start - covered) / 1e9)
        if caller != svc:  # no span kind in Nezha: roots and callees' spans are entries
            cell["entry"].append((end - start) / 1e9)
    return {"edges": edges, "first": first, "cells": cells}


# -- Nezha + Online Boutique ----------------------------------------------------------------------

def test_nezha_spans_give_the_call_graph_and_series(kg: KnowledgeGraph, tmp_path: Path) -> None:
    topology(kg)
    rows = nezha_rows()
    report = run_ingest(kg, "traces", [Input.file(span_table(rows, tmp_path / "s.csv"))],
                        scope=SCOPE)
    assert report.rejected == [] and report.counts["spans"] == len(rows)
    ref = reference(rows)
    got = calls(kg)
    assert {k: v[0] for k, v in got.items()} == dict(ref["edges"])
    assert all(v[1] == 0 for v in got.values())  # Nezha spans carry no status
    # the observed edges are the topology's application services (no new ones created)
    assert report.counts.get("servicesCreated", 0) == 0
    for edge, first in ref["first"].items():  # ms precision in the graph
        assert got[edge][2].timestamp() == pytest.approx(first // MS / 1000)
    # every service's busiest bucket, by hand
    checked = 0
    for (svc, pod, bucket), cell in sorted(ref["cells"].items(),
                                           key=lambda kv: -len(kv[1]["entry"]))[:6]:
        labels = {"service": svc, "pod": pod}
        at = bucket * 60_000
        n = len(cell["entry"])
        assert samples(kg, SCOPE, "trace_request_rate", labels)[at] == pytest.approx(n / 60)
        assert samples(kg, SCOPE, "trace_error_ratio", labels)[at] == 0.0
        lat = np.array(cell["entry"])
        for stat, want in (("mean", lat.mean()), ("p50", np.quantile(lat, 0.5)),
                           ("p90", np.quantile(lat, 0.9)), ("p99", np.quantile(lat, 0.99))):
            got_v = samples(kg, SCOPE, "trace_latency_seconds", {**labels, "statistic": stat})
            assert got_v[at] == pytest.approx(want, rel=1e-9), (svc, stat)
        own = np.array(cell["self"])
        for stat, want in (("mean", own.mean()), ("p90", np.quantile(own, 0.9))):
            got_v = samples(kg, SCOPE, "trace_self_time_seconds", {**labels, "statistic": stat})
            assert got_v[at] == pytest.approx(want, rel=1e-9, abs=1e-12), (svc, stat)
        checked += 1
    assert checked == 6
    # the series resolve like metric labels: the pod to its Deployment (inferred)
    rows_ = kg.cypher(
        "MATCH (s:Entity)-[o:observes]->(e:Entity) WHERE s.metricName = 'trace_request_rate' "
        "AND s.labels = $labels RETURN e.iri, o.resolution",
        {"labels": json.dumps({"pod": "frontend-579b9bff58-t2dbm", "service": "frontend"},
                              sort_keys=True, separators=(",", ":"))}).rows
    assert rows_ == [[mint_iri(SCOPE, "Deployment", "default/frontend"), "inferred"]]


def test_reingesting_the_same_spans_changes_nothing(kg: KnowledgeGraph, tmp_path: Path) -> None:
    topology(kg)
    table = span_table(nezha_rows(traces=100), tmp_path / "s.csv")
    first = run_ingest(kg, "traces", [Input.file(table)], scope=SCOPE)
    before = calls(kg)
    again = run_ingest(kg, "traces", [Input.file(table)], scope=SCOPE)
    assert again.counts["spans"] == 0 and again.counts["duplicateSpans"] == first.counts["spans"]
    assert again.created == 0 and again.updated == 0
    assert calls(kg) == before


def test_parquet_table_and_a_directory(kg: KnowledgeGraph, tmp_path: Path) -> None:
    rows = nezha_rows(traces=50)
    table = pa.table({h: [r[n] for r in rows] for h, n in zip(
        HEADER, ["TraceID", "SpanID", "ParentID", "PodName", "PodName", "OperationName",
                 "StartTimeUnixNano", "EndTimeUnixNano"], strict=True)})
    table = table.set_column(3, "service", pa.array([service_of(p) for p in
                                                     table.column(3).to_pylist()]))
    table = table.set_column(6, "start_unix_nano", table.column(6).cast(pa.int64()))
    table = table.set_column(7, "end_unix_nano", table.column(7).cast(pa.int64()))
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "spans.parquet")
    (tmp_path / "in" / "package.json").write_text('{"name": "not traces"}')
    report = run_ingest(kg, "traces", inputs_for("traces", [str(tmp_path / "in")]),
                        scope=SCOPE)
    assert report.rejected == [] and report.counts["spans"] == len(rows)
    assert [Path(s.file).name for s in report.skipped] == ["package.json"]
    # no topology: the services are created so the observed call graph lands
    assert report.counts["servicesCreated"] == len({service_of(r["PodName"]) for r in rows})
    assert {k: v[0] for k, v in calls(kg).items()} == dict(reference(rows)["edges"])


def test_table_with_iso_times_status_and_kind(kg: KnowledgeGraph, tmp_path: Path) -> None:
    table = tmp_path / "spans.csv"
    table.write_text(
        "trace_id,span_id,parent_span_id,service,operation,start,end,status,status_message,kind\n"
        "a1,1,,frontend,GET /,2026-01-01T00:00:00Z,2026-01-01T00:00:00.100Z,ok,,server\n"
        "a1,2,1,cart,Get,2026-01-01T00:00:00.010Z,2026-01-01T00:00:00.090Z,ERROR,boom,server\n"
        "a1,3,2,cart,db,1767225600.02,1767225600.03,,,client\n"
        "a2,1,root,frontend,GET /,2026-01-01 01:00:30,2026-01-01 01:00:30.5,ok,,server\n"
        "\n"
        "a3,1,,frontend,GET /,2026-01-01T00:00:01Z,2026-01-01T00:00:02Z,maybe,,server\n"
        "a3,2,zz,frontend,GET /,2026-01-01T00:00:01Z,2026-01-01T00:00:02Z,ok,,sideways\n"
        "a3,3,1,frontend,GET /,yesterday,2026-01-01T00:00:02Z,ok,,server\n")
    report = run_ingest(kg, "traces", [Input.file(table)], scope="iso",
                        options={"tz": "Europe/Paris"})
    assert [(r.where, r.reason.split(":")[0]) for r in report.rejected] == [
        ("line 7", "unknown status"), ("line 8", "bad parent span id"),
        ("line 9", "bad start")]
    assert report.counts["spans"] == 4
    t = T0 // MS
    assert samples(kg, "iso", "trace_request_rate", {"service": "frontend"}) == \
        {t: pytest.approx(2 / 60)}  # the zone-less row is Paris time: 00:00:30Z
    assert samples(kg, "iso", "trace_latency_seconds", {
        "service": "frontend", "statistic": "mean"}) == {t: pytest.approx(0.3)}
    assert samples(kg, "iso", "trace_error_ratio", {"service": "cart"}) == {t: 1.0}
    assert samples(kg, "iso", "trace_self_time_seconds", {
        "service": "cart", "operation": "Get", "statistic": "mean"}) == {t: pytest.approx(0.07)}
    assert {k: v[:2] for k, v in calls(kg).items()} == {("frontend", "cart"): [1, 1]}


# -- OTLP, by hand --------------------------------------------------------------------------------

def span(trace: int, sid: int, parent: int, service: str, name: str, start_ms: float,
         end_ms: float, kind: int = Span.SPAN_KIND_INTERNAL, error: str | None = None,
         pod: str = "") -> dict[str, Any]:
    return {"trace": trace, "id": sid, "parent": parent, "service": service, "pod": pod,
            "name": name, "start": T0 + int(start_ms * MS), "end": T0 + int(end_ms * MS),
            "kind": kind, "error": error}


def request(spans: list[dict[str, Any]], cluster: str | None = None
            ) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    by_resource: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        by_resource[(s["service"], s["pod"])].append(s)
    for (service, pod), items in by_resource.items():
        rs = req.resource_spans.add()
        for key, value in (("service.name", service), ("k8s.pod.name", pod),
                           ("k8s.cluster.name", cluster or "")):
            if value:
                kv = rs.resource.attributes.add()
                kv.key, kv.value.string_value = key, value
        out = rs.scope_spans.add()
        for s in items:
            p = out.spans.add()
            p.trace_id = s["trace"].to_bytes(16, "big")
            p.span_id = s["id"].to_bytes(8, "big")
            if s["parent"]:
                p.parent_span_id = s["parent"].to_bytes(8, "big")
            p.name, p.kind = s["name"], s["kind"]
            p.start_time_unix_nano, p.end_time_unix_nano = s["start"], s["end"]
            if s["error"] is not None:
                p.status.code, p.status.message = Status.STATUS_CODE_ERROR, s["error"]
    return req


def as_json(req: ExportTraceServiceRequest) -> dict[str, Any]:
    """The OTLP/JSON encoding: hex ids, integer enums, decimal-string times."""
    doc: dict[str, Any] = {"resourceSpans": []}
    for rs in req.resource_spans:
        attrs = [{"key": kv.key, "value": {"stringValue": kv.value.string_value}}
                 for kv in rs.resource.attributes]
        spans = [{"traceId": s.trace_id.hex(), "spanId": s.span_id.hex(),
                  "parentSpanId": s.parent_span_id.hex(), "name": s.name, "kind": s.kind,
                  "startTimeUnixNano": str(s.start_time_unix_nano),
                  "endTimeUnixNano": str(s.end_time_unix_nano),
                  "status": {"code": s.status.code, "message": s.status.message}}
                 for ss in rs.scope_spans for s in ss.spans]
        doc["resourceSpans"].append({"resource": {"attributes": attrs},
                                     "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]})
    return doc


# One checkout: frontend (server 0-100 ms) calls cart through a client span (10-90 ms); cart's
# server span (15-85 ms) has an internal child (20-30 ms) and fails with "boom".
CHECKOUT = [
    span(1, 1, 0, "frontend", "GET /cart", 0, 100, Span.SPAN_KIND_SERVER, pod="frontend-1"),
    span(1, 2, 1, "frontend", "cart.Get", 10, 90, Span.SPAN_KIND_CLIENT, pod="frontend-1"),
    span(1, 3, 2, "cart", "Get", 15, 85, Span.SPAN_KIND_SERVER, error="boom"),
    span(1, 4, 3, "cart", "redis GET", 20, 30),
]


def test_self_time_latency_and_errors_by_hand(kg: KnowledgeGraph) -> None:
    report = run_ingest(kg, "traces", [Input.of_bytes(
        "t.json", json.dumps(as_json(request(CHECKOUT))).encode())], scope="shop")
    assert report.rejected == [] and report.counts["spans"] == 4
    t = T0 // MS
    fe = {"service": "frontend", "pod": "frontend-1"}
    # frontend's request took 100 ms, 80 of them waiting on cart: its self time is 20 ms;
    # its client span's 90-10-70 = 10 ms are no self time of frontend's (the time on the way
    # to cart: cart's call gap); cart's server span 70-10 = 60 ms, redis 10 ms
    assert samples(kg, "shop", "trace_latency_seconds", {**fe, "statistic": "mean"}) == \
        {t: pytest.approx(0.1)}
    assert samples(kg, "shop", "trace_self_time_seconds", {**fe, "statistic": "mean"}) == \
        {t: pytest.approx(0.02)}
    assert samples(kg, "shop", "trace_self_time_seconds", {**fe, "statistic": "p90"}) == \
        {t: pytest.approx(0.02)}
    assert samples(kg, "shop", "trace_self_time_seconds", {
        **fe, "operation": "GET /cart", "statistic": "mean"}) == {t: pytest.approx(0.02)}
    cart = {"service": "cart"}
    assert samples(kg, "shop", "trace_self_time_seconds", {**cart, "statistic": "mean"}) == \
        {t: pytest.approx(0.035)}
    assert samples(kg, "shop", "trace_latency_seconds", {**cart, "statistic": "p99"}) == \
        {t: pytest.approx(0.07)}
    assert samples(kg, "shop", "trace_request_rate", cart) == {t: pytest.approx(1 / 60)}
    assert samples(kg, "shop", "trace_error_ratio", cart) == {t: 1.0}
    assert samples(kg, "shop", "trace_error_ratio", fe) == {t: 0.0}
    assert samples(kg, "shop", "trace_request_rate", {**cart, "operation": "redis GET"}) == {}
    # frontend's client span waited 80 ms for cart's 70 ms server span: cart's call gap is
    # 10 ms (the network and queues on the way to cart); frontend was called by nobody
    assert samples(kg, "shop", "trace_call_gap_seconds", {**cart, "statistic": "mean"}) == \
        {t: pytest.approx(0.01)}
    assert samples(kg, "shop", "trace_call_gap_seconds", {**fe, "statistic": "mean"}) == {}
    got = calls(kg)
    assert {k: v[:2] for k, v in got.items()} == {("frontend", "cart"): [1, 1]}
    assert got[("frontend", "cart")][2].timestamp() == pytest.approx((T0 + 15 * MS) / 1e9)
    events = kg.cypher(
        "MATCH (e:Entity)-[:aboutEntity]->(x:Entity) WHERE e.eventKind = 'span-error' "
        "RETURN e.name, e.count, x.iri, e.startTime, e.attributes").rows
    assert len(events) == 1
    name, count, about, start, attributes = events[0]
    assert (name, count, about) == ("boom", 1, mint_iri("shop", "Service", "cart"))
    assert start.timestamp() == T0 / 1e9 and json.loads(attributes) == {"operations": ["Get"]}


def test_split_posts_equal_one_post_across_a_restart(settings: Settings) -> None:
    spans = [*CHECKOUT]
    for k in range(2, 8):  # more checkouts in the same bucket, some slower
        spans += [span(k, 1, 0, "frontend", "GET /cart", k, 60 + 9 * k, Span.SPAN_KIND_SERVER),
                  span(k, 2, 1, "frontend", "cart.Get", k + 5, 50 + 9 * k,
                       Span.SPAN_KIND_CLIENT),
                  span(k, 3, 2, "cart", "Get", k + 6, 40 + 9 * k, Span.SPAN_KIND_SERVER),
                  span(k, 4, 3, "cart", "redis GET", k + 7, 20 + k)]
    parents = [s for s in spans if s["kind"] != Span.SPAN_KIND_INTERNAL]
    children = [s for s in spans if s["kind"] == Span.SPAN_KIND_INTERNAL] + \
        [s for s in parents if s["service"] == "cart"]
    first = [s for s in spans if s in children]
    second = [s for s in spans if s not in children]  # the parents come after their children
    with TestClient(create_app(settings)) as c:
        one = c.post("/v1/traces?scope=one", content=request(spans).SerializeToString(),
                     headers=PROTOBUF)
        assert one.status_code == 200
        assert ExportTraceServiceResponse.FromString(one.content) == \
            ExportTraceServiceResponse()
        assert c.post("/v1/traces?scope=two", json=as_json(request(first))).status_code == 200
    trace_state._CACHE.clear()  # a restart: the second post reads the saved state
    with TestClient(create_app(settings)) as c:
        resp = c.post("/v1/traces?scope=two", json=as_json(request(second)))
        assert resp.status_code == 200 and resp.json() == {}
    kg = KnowledgeGraph.open(settings, writer=True)
    try:
        store = TimeSeriesStore.open(settings.data_dir, read_only=True)
        series = kg.cypher("MATCH (s:Entity) WHERE s.kind = 'MetricSeries' "
                           "RETURN s.ingestScope, s.metricName, s.labels").rows
        by_scope: dict[str, dict[tuple[str, str], dict[int, float]]] = defaultdict(dict)
        for scope, metric, labels in series:
            sid = series_id(scope, metric, json.loads(labels))
            ts, val = store.read([sid]).split()[sid]
            by_scope[scope][(metric, labels)] = dict(zip(ts.tolist(), val.tolist(),
                                                         strict=True))
        assert len(by_scope["one"]) >= 20
        assert by_scope["two"] == by_scope["one"]
        call_rows = kg.cypher(
            "MATCH (a:Entity)-[c:calls]->(b:Entity) RETURN a.iri, b.iri, c.callCount, "
            "c.errorCount").rows
        counts = {(a.split("/")[-3], b.split("/")[-1]): (n, e) for a, b, n, e in call_rows}
        assert counts == {("one", "cart"): (7, 1), ("two", "cart"): (7, 1)}
    finally:
        kg.close()


def test_one_span_per_post_in_any_order_equals_one_post(kg: KnowledgeGraph) -> None:
    spans = [s for k in range(6) for s in (
        span(k + 1, 1, 0, "frontend", "GET /", 100 * k, 100 * k + 80, Span.SPAN_KIND_SERVER),
        span(k + 1, 2, 1, "frontend", "cart.Get", 100 * k + 5, 100 * k + 70,
             Span.SPAN_KIND_CLIENT),
        span(k + 1, 3, 2, "cart", "Get", 100 * k + 9, 100 * k + 60 - k,
             Span.SPAN_KIND_SERVER, error="boom" if k % 2 else None),
        span(k + 1, 4, 3, "cart", "db", 100 * k + 10, 100 * k + 20 + k))]

    def post(scope: str, part: list[dict[str, Any]]) -> None:
        run_ingest(kg, "traces", [Input.of_bytes("p.pb", request(part).SerializeToString())],
                   scope=scope)

    post("whole", spans)
    order = np.random.default_rng(5).permutation(len(spans))
    for n, i in enumerate(order):  # 24 posts: more state parts than are kept unfolded
        if n == len(order) // 2:
            trace_state._CACHE.clear()  # and a restart half-way
        post("bits", [spans[i]])
    assert len(trace_state._CACHE[kg.settings.data_dir / "traces" / "bits"][1].parts) < 16
    for metric, stats in (("trace_request_rate", [None]), ("trace_error_ratio", [None]),
                          ("trace_latency_seconds", ["mean", "p50", "p90", "p99"]),
                          ("trace_self_time_seconds", ["mean", "p90"]),
                          ("trace_call_gap_seconds", ["mean", "p90"])):
        for svc in ("frontend", "cart"):
            for stat in stats:
                labels = {"service": svc} | ({"statistic": stat} if stat else {})
                whole = samples(kg, "whole", metric, labels)
                if metric == "trace_call_gap_seconds" and svc == "frontend":
                    assert whole == {}  # nobody calls the front end
                    continue
                assert whole and samples(kg, "bits", metric, labels) == whole, labels
    rows = kg.cypher("MATCH (a:Entity)-[c:calls]->(b:Entity) RETURN a.iri, c.callCount, "
                     "c.errorCount, c.firstCallTime").rows
    got = {iri.split("/")[-3]: rest for iri, *rest in rows}
    assert got["bits"] == got["whole"] and got["whole"][:2] == [6, 3]


def test_late_spans_are_counted_not_merged(kg: KnowledgeGraph) -> None:
    def post(spans: list[dict[str, Any]]) -> Any:
        return run_ingest(kg, "traces", [Input.of_bytes("r.pb", request(
            spans).SerializeToString())], scope="late", options={"grace": 120})

    post(CHECKOUT)
    later = [span(9, 1, 0, "cart", "Get", 10 * 60_000, 10 * 60_000 + 5,
                  Span.SPAN_KIND_SERVER)]
    post(later)  # ten minutes on: the first bucket is closed
    report = post([span(10, 1, 0, "cart", "Get", 1_000, 1_005, Span.SPAN_KIND_SERVER)])
    assert report.counts["lateSpans"] == 1 and report.counts["spans"] == 0
    assert "late" in report.notes[0]
    assert samples(kg, "late", "trace_request_rate", {"service": "cart"})[T0 // MS] == \
        pytest.approx(1 / 60)


# -- bad input ----------------------------------------------------------------------------------

def test_bad_rows_and_spans_are_rejected_where_they_are(kg: KnowledgeGraph,
                                                        tmp_path: Path) -> None:
    rows = nezha_rows(traces=20)
    table = span_table(rows, tmp_path / "s.csv")
    lines = table.read_text().splitlines()
    good = lines[1].split(",")
    bad = {
        "bad trace id": ["xyz" + good[0][3:], *good[1:]],
        "end before start": [*good[:6], good[7], good[6]],
        "missing service": [*good[:3], "", *good[4:]],
        "bad span id": [good[0], "0" * 17, *good[2:]],
    }
    lines += [",".join(v) for v in bad.values()]
    table.write_text("\n".join(lines) + "\n")
    report = run_ingest(kg, "traces", [Input.file(table)], scope=SCOPE)
    n = len(rows)
    got = {r.where: r.reason for r in report.rejected}
    assert list(got) == [f"line {n + 2 + k}" for k in range(4)]
    for (what, _), reason in zip(bad.items(), got.values(), strict=True):
        assert reason.startswith(what), (what, reason)
    assert report.counts["spans"] == n  # the good rows of the same file landed
    dead = (kg.settings.data_dir / "dead-letter" / "traces.jsonl").read_text().splitlines()
    assert [json.loads(x)["where"] for x in dead] == list(got)

    req = as_json(request(CHECKOUT, cluster="c1"))
    spans = req["resourceSpans"][1]["scopeSpans"][0]["spans"]
    spans[0]["spanId"] = "not-hex!"
    spans.append(dict(spans[0], spanId="00000000000000aa", status={"code": 7}))
    text = json.dumps(req) + "\n{oops\n" + json.dumps(as_json(request(CHECKOUT[:1], "c1")))
    report = run_ingest(kg, "traces", [Input.of_bytes("x.jsonl", text.encode())])
    assert [(r.where, r.reason.split(":")[0]) for r in report.rejected] == [
        ("line 1 /resourceSpans/1/scopeSpans/0/spans/0", "bad span id hex"),
        ("line 1 /resourceSpans/1/scopeSpans/0/spans/2", "unknown status code 7"),
        ("line 2", "not JSON"),
    ]
    assert report.counts["spans"] == 3  # the good spans of line 1, and line 3
    # no k8s.cluster.name and no --scope: the whole input is refused
    with pytest.raises(NoScopeError, match="k8s.cluster.name"):
        run_ingest(kg, "traces", [Input.of_bytes("y.json", json.dumps(
            as_json(request(CHECKOUT))).encode())])


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path / "d", store="embedded", api_token="s3cret")
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = "Bearer s3cret"
        yield c


def test_receiver_status_codes_gzip_and_partial_success(client: TestClient) -> None:
    body = request(CHECKOUT).SerializeToString()
    assert client.post("/v1/traces?scope=s", content=body, headers={
        **PROTOBUF, "Authorization": "Bearer wrong"}).status_code == 401
    r = client.post("/v1/traces?scope=s", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/x-protobuf" in r.json()["message"]
    r = client.post("/v1/traces?scope=s", content=b"\xff\xff\xff", headers=PROTOBUF)
    assert r.status_code == 400 and b"ExportTraceServiceRequest" in r.content
    for junk in (b"{not json", b'{"name": "x"}', b"[1]"):
        r = client.post("/v1/traces?scope=s", content=junk,
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == 3, junk
    assert client.post("/v1/traces?scope=s", json={}).json() == {}  # an empty request
    r = client.post("/v1/traces", content=body, headers=PROTOBUF)  # no scope anywhere
    assert r.status_code == 400 and b"k8s.cluster.name" in r.content
    r = client.post("/v1/traces", content=gzip.compress(request(
        CHECKOUT, cluster="c9").SerializeToString()), headers={**PROTOBUF,
                                                              "Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-type"] == PROTOBUF["Content-Type"]
    r = client.post("/v1/traces?scope=s", content=gzip.compress(body)[:20],
                    headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert r.status_code == 400
    bad = request(CHECKOUT)
    bad.resource_spans[0].scope_spans[0].spans[1].end_time_unix_nano = 1
    r = client.post("/v1/traces?scope=s2", content=bad.SerializeToString(), headers=PROTOBUF)
    resp = ExportTraceServiceResponse.FromString(r.content)
    assert r.status_code == 200 and resp.partial_success.rejected_spans == 1
    assert "/resourceSpans/0/scopeSpans/0/spans/1: end before start" in \
        resp.partial_success.error_message
    doc = client.post("/v1/traces?scope=s3", json=as_json(bad)).json()
    assert doc["partialSuccess"]["rejectedSpans"] in ("1", 1)


def test_span_table_over_http_and_dry_run(client: TestClient, tmp_path: Path) -> None:
    rows = nezha_rows(traces=30)
    body = span_table(rows, tmp_path / "s.csv").read_bytes()
    r = client.post("/v1/ingest/traces?name=s.csv", content=body)  # no scope: 422
    assert r.status_code == 422 and "scope" in r.json()["detail"]
    r = client.post("/v1/ingest/traces?scope=t&name=s.csv&dry_run=true", content=body)
    assert r.status_code == 200 and r.json()["rejected"] == 0, r.json()["rejections"][:3]
    assert r.json()["dryRun"] and r.json()["counts"]["servicesCreated"] > 0
    r = client.post("/v1/ingest/traces?scope=t&name=s.csv", content=body)
    assert r.status_code == 200 and r.json()["counts"]["spans"] == len(rows)
    q = client.post("/v1/cypher", json={"query": "MATCH ()-[c:calls]->() RETURN c.callCount"})
    assert sum(int(n) for n, in q.json()["rows"]) == sum(reference(rows)["edges"].values())


def test_cli_ingests_a_span_table(tmp_path: Path) -> None:
    table = span_table(nezha_rows(traces=30), tmp_path / "spans.csv")
    res = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "d"), "--store", "embedded",
                                   "ingest", "traces", str(table), "--scope", SCOPE,
                                   "-o", "step=30", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["kind"] == "traces" and report["counts"]["spans"] > 0
    res = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "d"), "--store", "embedded",
                                   "ingest", "traces", str(table), "--scope", SCOPE,
                                   "-o", "step=60"])
    assert res.exit_code != 0 and "step=30" in str(res.exception or res.output)
    res = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "d"), "--store", "embedded",
                                   "ingest", "traces", str(table), "--scope", SCOPE])
    assert res.exit_code == 0, res.output  # no step: the scope's

"""RCA's Prometheus pull against a real Prometheus and a real Alertmanager (no mocks).

A tiny HTTP target (``http.server`` in a thread) exposes ``app_request_latency_seconds`` of
the services ``frontend`` and ``cart``, which jump after a few scrapes, and a node metric of
host ``localhost``. A real Prometheus scrapes it every second (job ``shop`` at
``127.0.0.1:PORT``, job ``node`` at ``localhost:PORT``, job ``cart`` at a closed port, so
its ``up`` is 0) and evaluates two rules with ``for: 0s``: ``FrontendLatencyHigh`` and
``TargetDown`` (``up == 0``). A real Alertmanager (group_wait 1s) sends them to the webhook
of a real ``autocnc serve``.

The binaries come from Debian (``bash .ci/prometheus.sh install``): missing, the module is
skipped locally and fails under ``CI=true``. One Prometheus serves the whole module (its
first scrape comes ~5 s after start: target discovery is throttled); each test starts its
own Alertmanager / server with its own configuration. Prometheus re-sends firing alerts
every second, so a new Alertmanager on the same port gets them at once.
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from ingest import run_ingest
from ingest.base import Input
from kg.config import Settings
from kg.graph import KnowledgeGraph
from kg.prometheus import (
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnavailable,
)
from ontology import mint_iri
from reasoning.rca.evidence.prometheus import PrometheusSeries
from reasoning.rca.evidence.sources import SeriesData
from tests.conftest import backend_settings
from tests.live import (
    ALERTMANAGER,
    PROMETHEUS,
    PROMTOOL,
    Process,
    free_port,
    need,
    start_alertmanager,
    start_server,
    wait_for,
)

SCOPE = "shop"
JUMP_AFTER = 4  # scrapes of the app metrics before the latencies jump
BEFORE = {"frontend": 0.1, "cart": 0.05}
AFTER = {"frontend": 0.9, "cart": 0.8}
TOPOLOGY = """
entities:
  - {id: frontend, type: Service, properties: {name: frontend}}
  - {id: cart, type: Service, properties: {name: cart}}
  - {id: localhost, type: ComputeNode, properties: {name: localhost}}
relations:
  - {type: calls, source: frontend, target: cart}
  - {type: runsOn, source: cart, target: localhost}
  - {type: runsOn, source: frontend, target: localhost}
"""
RULES = """
groups:
  - name: shop
    rules:
      - alert: FrontendLatencyHigh
        expr: app_request_latency_seconds{service="frontend"} > 0.5
        for: 0s
        labels: {severity: warning}
      - alert: TargetDown
        expr: up == 0
        for: 0s
        labels: {severity: critical}
"""
FRONTEND = mint_iri(SCOPE, "Service", "frontend")
CART = mint_iri(SCOPE, "Service", "cart")
HOST = mint_iri(SCOPE, "ComputeNode", "localhost")


# -- the scrape target -------------------------------------------------------------------------

class Target:
    """Serves ``/metrics`` (the services' latency, jumping after JUMP_AFTER scrapes) and
    ``/node`` (a host metric) on 127.0.0.1."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.jumped_at: datetime | None = None
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = target.page(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write((body or "not found\n").encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def page(self, path: str) -> str | None:
        if path == "/node":
            return "# TYPE node_load1 gauge\nnode_load1 0.5\n"
        if path != "/metrics":
            return None
        self.scrapes += 1
        jumped = self.scrapes > JUMP_AFTER
        if jumped and self.jumped_at is None:
            self.jumped_at = datetime.now(UTC)
        values = AFTER if jumped else BEFORE
        lines = ["# TYPE app_request_latency_seconds gauge"]
        lines += [f'app_request_latency_seconds{{service="{s}"}} {v}' for s, v in values.items()]
        return "\n".join(lines) + "\n"


@dataclass
class Stack:
    target: Target
    prometheus: Process
    prom_url: str
    am_port: int
    closed_port: int
    tmp: Path

    def client(self, **bounds: int) -> PrometheusClient:
        return PrometheusClient(self.prom_url, httpx.Client(timeout=10), **bounds)


def prometheus_config(scrapes: str, am_port: int | None) -> str:
    alerting = (f'alerting: {{alertmanagers: [{{static_configs: [{{targets: '
                f'["127.0.0.1:{am_port}"]}}]}}]}}\n' if am_port else "")
    return ("global: {scrape_interval: 1s, evaluation_interval: 1s}\n" + alerting
            + "rule_files: [rules.yml]\nscrape_configs:\n" + scrapes)


def start_prometheus(tmp: Path, config: str, storage: Path | None = None
                     ) -> tuple[Process, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prometheus.yml").write_text(config)
    (tmp / "rules.yml").write_text(RULES)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Process.start("prometheus", [
        PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={storage or tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--rules.alert.resend-delay=1s", "--log.level=warn"], tmp / "prometheus.log",
        f"{url}/-/ready")
    return proc, url


def backfill(tsdb: Path, instance: str, minutes: int = 70) -> None:
    """The hour before the test of the target's latency, as if Prometheus had scraped it
    every 15 s (written with promtool): the reference RCA judges the jump against."""
    now = int(time.time())
    lines = ["# TYPE app_request_latency_seconds gauge"]
    for service, value in BEFORE.items():
        lines += [f'app_request_latency_seconds{{instance="{instance}",job="shop",'
                  f'service="{service}"}} {value * (1 + 0.02 * math.sin(t))} {t}'
                  for t in range(now - minutes * 60, now - 30, 15)]
    source = tsdb.parent / "history.om"
    source.write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source),
                    str(tsdb)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    need(PROMETHEUS, ALERTMANAGER, PROMTOOL)
    tmp = tmp_path_factory.mktemp("prometheus")
    target = Target()
    target.thread.start()
    am_port, closed = free_port(), free_port()
    scrapes = "".join(
        f'  - {{job_name: {job}, metrics_path: {path}, static_configs: [{{targets: ["{at}"]}}]}}\n'
        for job, path, at in [("shop", "/metrics", f"127.0.0.1:{target.port}"),
                              ("node", "/node", f"localhost:{target.port}"),
                              ("cart", "/metrics", f"localhost:{closed}")])
    backfill(tmp / "data", f"127.0.0.1:{target.port}")
    prom, url = start_prometheus(tmp, prometheus_config(scrapes, am_port))
    try:
        st = Stack(target, prom, url, am_port, closed, tmp)
        with st.client() as c:
            wait_for("the latency jump in Prometheus", lambda: any(
                s.values.size and s.values[-1] > 0.5 for s in c.query_range(
                    'app_request_latency_seconds{service="cart"}',
                    datetime.now(UTC) - timedelta(minutes=1), datetime.now(UTC), 1).series),
                timeout_s=60, alive=prom.check)
            wait_for("both alerts firing in Prometheus", lambda: {
                a.labels["alertname"] for a in c.alerts() if a.state == "firing"} >= {
                "FrontendLatencyHigh", "TargetDown"}, timeout_s=30, alive=prom.check)
        yield st
    finally:
        prom.stop()
        target.server.shutdown()


def load_topology(kg: KnowledgeGraph) -> None:
    report = run_ingest(kg, "topology", [Input.of_bytes("shop.yaml", TOPOLOGY.encode())],
                        scope=SCOPE, as_of=datetime(2026, 1, 1, tzinfo=UTC))
    assert not report.rejected


def target_series(instance: str, job: str) -> list[str]:
    """The selectors of the scrape_* series Prometheus writes for a target, sorted."""
    return [f'{m}{{instance="{instance}",job="{job}"}}' for m in sorted(
        ["scrape_duration_seconds", "scrape_samples_post_metric_relabeling",
         "scrape_samples_scraped", "scrape_series_added"])]


def by_entity(series: list[SeriesData]) -> dict[str, dict[str, SeriesData]]:
    out: dict[str, dict[str, SeriesData]] = {}
    for s in series:
        out.setdefault(s.ref.entity, {})[s.ref.key] = s
    return out


# -- the client -------------------------------------------------------------------------------

def test_client_reads_series_ranges_and_alerts(stack: Stack) -> None:
    now = datetime.now(UTC)
    with stack.client(max_series=2) as c:
        found = c.series(['{job=~"shop|node|cart"}'], now - timedelta(minutes=5), now)
        assert len(found.series) == 2 and found.truncated  # up, node_load1, latency x2, ...
        alerts = c.alerts()
    firing = {(a.labels["alertname"], a.labels.get("job")) for a in alerts
              if a.state == "firing"}
    assert ("TargetDown", "cart") in firing and ("FrontendLatencyHigh", "shop") in firing
    with stack.client() as c:
        with pytest.raises(PrometheusQueryError) as bad:
            c.query_range("up{", now - timedelta(minutes=1), now, 1)
        assert bad.value.error_type == "bad_data" and not bad.value.retryable
        with pytest.raises(PrometheusQueryError, match="widen the step"):
            c.query_range("up", now - timedelta(days=1), now, 1)  # 86,401 points
    with stack.client(max_response_bytes=64) as c:  # a real answer over the bound
        with pytest.raises(PrometheusQueryError, match="answer over 64 bytes") as big:
            c.series(['{job=~"shop|node|cart"}'], now - timedelta(minutes=5), now)
        assert big.value.error_type == "too_large"
    with PrometheusClient(f"http://127.0.0.1:{stack.target.port}", httpx.Client()) as c:
        with pytest.raises(PrometheusQueryError, match="not a Prometheus API answer"):
            c.series(["up"], now - timedelta(minutes=1), now)
    with PrometheusClient(f"http://127.0.0.1:{stack.closed_port}", httpx.Client()) as c:
        with pytest.raises(PrometheusUnavailable) as down:
            c.alerts()
        assert down.value.retryable


# -- the evidence source, both backends ------------------------------------------------------------

def test_fetch_pulls_the_target_series_resolved_to_their_entities(kg: KnowledgeGraph,
                                                                  stack: Stack) -> None:
    load_topology(kg)
    now = datetime.now(UTC)
    start = now - timedelta(minutes=2)
    with stack.client() as client:
        source = PrometheusSeries(kg, client, step_s=1, max_series=50)
        # an end in the future is cut at now: no steps that would repeat the last sample
        fetched = source.fetch([FRONTEND, CART, HOST], start, now + timedelta(minutes=10))
    asked = datetime.now(UTC)
    assert fetched.problems == []
    got = by_entity(fetched.series)
    port, closed = stack.target.port, stack.closed_port
    latency = ('app_request_latency_seconds'
               f'{{instance="127.0.0.1:{port}",job="shop",service="cart"}}')
    cart_up = f'up{{instance="localhost:{closed}",job="cart"}}'
    # the cart target's up == 0 and scrape_* series are the cart's (job cart), operator's
    # metrics first; Prometheus' ALERTS series are not evidence
    assert list(got[CART]) == [latency, cart_up, *target_series(f"localhost:{closed}", "cart")]
    assert list(got[FRONTEND]) == [latency.replace("cart", "frontend")]
    # the host: its node metric (instance without its port) and, standing in for its
    # exporter, the exporter's target series; not those of the cart target running on it
    assert list(got[HOST]) == [f'node_load1{{instance="localhost:{port}",job="node"}}',
                               f'up{{instance="localhost:{port}",job="node"}}',
                               *target_series(f"localhost:{port}", "node")]
    cart = got[CART][latency]
    assert cart.ref.source == "prometheus" and cart.ref.metric == "app_request_latency_seconds"
    assert dict(cart.ref.labels) == {"instance": f"127.0.0.1:{port}", "job": "shop",
                                     "service": "cart"}
    assert cart.ts_ms.dtype == np.int64 and np.all(np.diff(cart.ts_ms) == 1000)
    assert cart.ts_ms[-1] <= asked.timestamp() * 1000
    seen = set(np.round(cart.values, 2))
    assert {BEFORE["cart"], AFTER["cart"]} <= seen  # the jump, both sides of it
    assert np.all(got[CART][cart_up].values == 0)


def test_fetch_reports_what_it_could_not_get(kg: KnowledgeGraph, stack: Stack) -> None:
    load_topology(kg)
    end = datetime.now(UTC)
    start = end - timedelta(minutes=2)
    with stack.client() as client:
        bounded = PrometheusSeries(kg, client, step_s=1, max_series=2).fetch(
            [FRONTEND, CART, HOST, mint_iri(SCOPE, "Service", "gone")], start, end)
    assert len(bounded.series) == 2  # round-robin: one each for the first two entities
    assert {s.ref.entity for s in bounded.series} == {FRONTEND, CART}
    assert any("not in the graph" in p and "gone" in p for p in bounded.problems)
    assert any("kept 2 (prometheus_max_series)" in p for p in bounded.problems)
    down = PrometheusClient(f"http://127.0.0.1:{stack.closed_port}", httpx.Client(timeout=5))
    with down:
        fetched = PrometheusSeries(kg, down, step_s=15, max_series=50).fetch(
            [CART], start, end)
    assert fetched.series == []
    assert len(fetched.problems) == 1 and "cannot reach" in fetched.problems[0]


# -- webhook and RCA through a real Alertmanager and a real server, both backends -------------

@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path, stack: Stack
           ) -> Iterator[str]:
    """``autocnc serve`` on the backend of the test's parameter, with prometheus_url set."""
    settings: Settings = backend_settings(request.param, tmp_path / "data")
    proc, url = start_server(tmp_path, settings, {"AUTOCNC_PROMETHEUS_URL": stack.prom_url},
                             "prometheus_step_s: 1\n")
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, stack: Stack, server: str) -> Iterator[Process]:
    am, _ = start_alertmanager(tmp_path, (
        "route: {receiver: autocnc, group_by: [alertname], group_wait: 1s, "
        "group_interval: 1s, repeat_interval: 1h}\n"
        "receivers:\n  - name: autocnc\n    webhook_configs: "
        f'[{{url: "{server}/v1/alerts/alertmanager?scope={SCOPE}", send_resolved: true}}]\n'),
        port=stack.am_port)
    try:
        yield am
    finally:
        am.stop()


@pytest.mark.parametrize("server", ["embedded", "neo4j"], indirect=True)
def test_alerts_reach_rca_through_alertmanager(server: str, alertmanager: Process) -> None:
    with httpx.Client(base_url=server, timeout=60) as api:
        api.post("/v1/ingest/topology", params={"scope": SCOPE, "name": "shop.yaml"},
                 content=TOPOLOGY.encode()).raise_for_status()

        def incidents() -> dict[str, dict[str, Any]] | None:
            got = {i["groupKey"]: i for i in api.get("/v1/incidents").json()}
            return got if len(got) >= 2 else None

        found = wait_for("two incidents from Alertmanager", incidents, 40, alertmanager.check)
        about = dict(api.post("/v1/cypher", json={"query": (
            "MATCH (a:Entity)-[:aboutEntity]->(x:Entity) WHERE a.kind = 'Alert' "
            "RETURN a.name, x.iri")}).json()["rows"])
        # the latency alert is about the frontend (its service label); the up == 0 alert
        # about the scrape target's service (job cart), not the host it runs on
        assert about == {"FrontendLatencyHigh": FRONTEND, "TargetDown": CART}
        assert {k.split(":")[-1] for k in found} >= {'{alertname="FrontendLatencyHigh"}',
                                                     '{alertname="TargetDown"}'}
        frontend = next(i for k, i in found.items() if "FrontendLatencyHigh" in k)
        rca = api.post("/v1/rca", json={"incident": frontend["iri"]})
        assert rca.status_code == 200, rca.text
        answer = rca.json()
        assert answer["symptoms"][0]["entity"] == FRONTEND and answer["candidates"]
        # RCA pulled the series from Prometheus and cites the cart's latency jump
        assert "prometheus" in answer["evidence"]["sources"], answer["evidence"]
        assert answer["evidence"]["problems"] == []
        cited = [(s["source"], s["entity"], s["metric"]) for c in answer["candidates"]
                 for s in c["series"]]
        assert ("prometheus", CART, "app_request_latency_seconds") in cited, cited


# -- how long a pull takes -------------------------------------------------------------------

def test_fetch_time_of_a_30_minute_incident(kg: KnowledgeGraph, tmp_path: Path) -> None:
    """20 services, 5 series each (latency, requests, errors, process CPU, up), 40 minutes
    of 15 s samples backfilled with promtool; one fetch of a 30-minute window at 15 s."""
    need(PROMETHEUS, PROMTOOL)
    n, now = 20, int(time.time())
    names = [f"svc-{i:02d}" for i in range(n)]
    topo = "entities:\n" + "".join(f"  - {{id: {s}, type: Service, properties: {{name: {s}}}}}\n"
                                   for s in names)
    run_ingest(kg, "topology", [Input.of_bytes("svc.yaml", topo.encode())], scope=SCOPE,
               as_of=datetime(2026, 1, 1, tzinfo=UTC))
    families = [("app_request_latency_seconds", "gauge", "service"),
                ("app_requests", "counter", "service"), ("app_errors", "counter", "service"),
                ("process_cpu_seconds", "counter", "job"), ("up", "gauge", "job")]
    lines = []
    for family, kind, label in families:
        lines.append(f"# TYPE {family} {kind}")
        sample = family + ("_total" if kind == "counter" else "")
        for i, s in enumerate(names):
            extra = f',instance="10.0.0.{i}:8080"' if label == "job" else ""
            lines += [f'{sample}{{{label}="{s}"{extra}}} {(t % 600) / 60 + i} {t}'
                      for t in range(now - 2400, now, 15)]
    (tmp_path / "in.om").write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics",
                    str(tmp_path / "in.om"), str(tmp_path / "tsdb")], check=True,
                   capture_output=True)
    prom, url = start_prometheus(tmp_path, prometheus_config("  []\n", None),
                                 storage=tmp_path / "tsdb")
    try:
        settings = kg.settings.model_copy(update={"prometheus_url": url})
        source = PrometheusSeries(kg, PrometheusClient.from_settings(settings), step_s=15,
                                  max_series=200)
        end = datetime.fromtimestamp(now - 60, UTC)
        iris = [mint_iri(SCOPE, "Service", s) for s in names]
        assert kg.snapshot.node_count >= n  # built, as a server keeps it
        t0 = time.perf_counter()
        fetched = source.fetch(iris, end - timedelta(minutes=30), end)
        took = time.perf_counter() - t0
        source.close()
    finally:
        prom.stop()
    print(f"\nPrometheusSeries.fetch: {n} entities, 30 min at 15 s, "
          f"{len(fetched.series)} series x {fetched.series[0].ts_ms.size} points: "
          f"{took * 1000:.0f} ms")
    assert fetched.problems == []
    assert len(fetched.series) == 5 * n and {s.ref.entity for s in fetched.series} == set(iris)
    assert sorted({s.ts_ms.size for s in fetched.series}) == [121], fetched.series[0]
    assert took < 10

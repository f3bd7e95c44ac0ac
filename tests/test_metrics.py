"""``GET /metrics`` against its real peers: a real ``autocnc serve`` does work (an ingest with
a rejected record, webhook notifications, an RCA, a recommendation, an incident analysed in
the background), its scrape passes ``promtool check metrics`` and its counters moved by
exactly that work; a real Prometheus scrapes it and loads the sample alert rules of
deploy/prometheus/, which ``promtool`` checks and unit-tests.

The binaries come from Debian (``bash .ci/prometheus.sh install``): missing, those tests are
skipped locally and fail under ``CI=true``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from kg.config import Settings, load_settings
from tests.live import PROMETHEUS, PROMTOOL, Process, free_port, need, start_server, wait_for

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
TOKEN = "metrics-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCOPE = "shop"
# two good records and one of an unknown type (rejected, the rest lands)
TOPOLOGY = """
entities:
  - {id: frontend, type: Service, properties: {name: frontend}}
  - {id: cart, type: Service, properties: {name: cart}}
  - {id: gizmo, type: NoSuchType, properties: {name: gizmo}}
relations:
  - {type: calls, source: frontend, target: cart}
"""

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a text-format scrape, keyed by name and sorted labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


def webhook_payload(started: datetime) -> dict[str, Any]:
    alerts = [{"status": "firing", "startsAt": started.isoformat(),
               "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": f"f{i}",
               "labels": {"alertname": "LatencyHigh", "service": svc},
               "annotations": {"summary": f"{svc} is slow"}}
              for i, svc in enumerate(["frontend", "cart"])]
    return {"version": "4", "groupKey": '{}:{alertname="LatencyHigh"}', "status": "firing",
            "receiver": "autocnc", "groupLabels": {"alertname": "LatencyHigh"},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "", "alerts": alerts}


@dataclass
class Served:
    url: str
    before: str  # the scrape before the work
    after: str  # ... and once the work (and the incident's analysis) is done
    reports: dict[str, Any]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("metrics")
    settings = load_settings(data_dir=tmp / "data", store="embedded")
    proc, url = start_server(tmp, settings, {"AUTOCNC_API_TOKEN": TOKEN})
    try:
        with httpx.Client(base_url=url, timeout=60, headers=AUTH) as c:
            before = c.get("/metrics").text
            reports: dict[str, Any] = {}
            topo = c.post("/v1/ingest/topology", params={"scope": SCOPE, "name": "shop.yaml"},
                          content=TOPOLOGY)
            reports["topology"] = topo.raise_for_status().json()
            # started two minutes ago: the incident is due for analysis at once
            payload = webhook_payload(datetime.now(UTC) - timedelta(minutes=2))
            hook = c.post("/v1/alerts/alertmanager", params={"scope": SCOPE}, json=payload)
            reports["webhook"] = hook.raise_for_status().json()
            bad = c.post("/v1/alerts/alertmanager", params={"scope": SCOPE},
                         json={"version": "4", "alerts": "none"})
            assert bad.status_code == 422, bad.text
            rca = c.post("/v1/rca", json={"alerts": payload["alerts"], "scope": SCOPE})
            reports["rca"] = rca.raise_for_status().json()
            rec = c.post("/v1/recommendations", json={"text": "frontend latency is high"})
            reports["recommend"] = rec.raise_for_status().json()
            after = wait_for("the incident's analysis", lambda: (
                t if value(samples(t := c.get("/metrics").text),
                           "autocnc_rca_duration_seconds_count", trigger="incident") else None),
                alive=proc.check)
        yield Served(url, before, after, reports)
    finally:
        proc.stop()


# -- the scrape itself ----------------------------------------------------------------------------

def test_the_scrape_passes_promtool(served: Served) -> None:
    need(PROMTOOL)
    for text in (served.before, served.after):
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                               capture_output=True)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    bad = subprocess.run([PROMTOOL, "check", "metrics"],  # it does fail on a wrong one
                         input=b"# TYPE autocnc_x counter\nautocnc_x 1\n", capture_output=True)
    assert bad.returncode != 0


def test_counters_moved_by_the_work_done(served: Served) -> None:
    before, after = samples(served.before), samples(served.after)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    topo = served.reports["topology"]
    assert topo["rejected"] == 1 and topo["records"] >= 3
    assert moved("autocnc_ingest_records_total", source="topology") == topo["records"]
    assert moved("autocnc_ingest_rejected_records_total", source="topology") == 1
    assert served.reports["webhook"]["alerts"] == 2
    assert moved("autocnc_ingest_records_total", source="alertmanager") == 2
    assert moved("autocnc_ingest_rejected_records_total", source="alertmanager") == 0
    assert moved("autocnc_webhook_notifications_total", outcome="accepted") == 1
    assert moved("autocnc_webhook_notifications_total", outcome="invalid") == 1
    assert moved("autocnc_webhook_alerts_total") == 2
    assert moved("autocnc_webhook_request_duration_seconds_count") == 2
    assert moved("autocnc_webhook_group_commit_notifications_count") == 1
    assert moved("autocnc_webhook_group_commit_notifications_sum") == 1
    assert moved("autocnc_webhook_commit_duration_seconds_count") == 1
    assert moved("autocnc_rca_duration_seconds_count", trigger="request") == 1
    assert 0 < moved("autocnc_rca_duration_seconds_sum", trigger="request") < 60
    assert moved("autocnc_rca_duration_seconds_count", trigger="incident") == 1
    assert moved("autocnc_recommendation_duration_seconds_count") == 1
    # a latency lands in the buckets at or above it, and in no bucket below it
    webhook_s = moved("autocnc_webhook_request_duration_seconds_sum")
    assert moved("autocnc_webhook_request_duration_seconds_bucket", le="+Inf") == 2
    assert moved("autocnc_webhook_request_duration_seconds_bucket", le="60.0") == 2
    assert 0 < webhook_s < 120

    # read from memory at scrape time
    assert value(before, "autocnc_ready") == 1 and value(after, "autocnc_ready") == 1
    head = value(after, "autocnc_change_log_head")
    assert head > value(before, "autocnc_change_log_head")
    assert value(after, "autocnc_view_watermark", view="snapshot") == head
    assert value(after, "autocnc_view_lag_entries", view="snapshot") == 0
    rdf_lag = value(after, "autocnc_view_lag_entries", view="rdf")
    assert rdf_lag == head - value(after, "autocnc_view_watermark", view="rdf") >= 0
    assert ("autocnc_view_set_aside_records", (("view", "rdf"),)) in after
    assert value(after, "autocnc_view_set_aside_records", view="rdf") == 0
    assert value(after, "autocnc_incidents_tracked") == 1
    assert value(after, "autocnc_incidents_due") == 0
    assert value(after, "autocnc_webhook_queue_notifications") == 0
    assert value(after, "autocnc_query_workers_max") == 4
    assert 0 <= value(after, "autocnc_query_workers_busy") <= 4
    assert value(after, "autocnc_data_dir_bytes") > 100_000  # the stores' files
    assert ("autocnc_store_wal_bytes", ()) in after  # the embedded store logs ahead
    assert value(after, "process_resident_memory_bytes") > 10_000_000


def test_metrics_read_with_the_server_while_it_starts_and_the_token_setting(
        tmp_path: Path) -> None:
    """Before the stores are open (no lifespan ran) /metrics already answers, from memory;
    it is open like /healthz unless ``metrics_require_token``."""
    open_app = TestClient(create_app(Settings(data_dir=tmp_path, api_token=TOKEN)))
    got = open_app.get("/metrics")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain")
    assert value(samples(got.text), "autocnc_ready") == 0
    assert open_app.post("/v1/facts", json={}).status_code == 401  # writes still need it
    om = open_app.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    closed = TestClient(create_app(Settings(data_dir=tmp_path, api_token=TOKEN,
                                            metrics_require_token=True)))
    assert closed.get("/metrics").status_code == 401
    assert closed.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert closed.get("/metrics", headers=AUTH).status_code == 200


# -- a real Prometheus -----------------------------------------------------------------------------

def prom_query(url: str, expr: str) -> list[dict[str, Any]]:
    got = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert got["status"] == "success", got
    result: list[dict[str, Any]] = got["data"]["result"]
    return result


def test_prometheus_scrapes_autocnc_and_loads_its_alert_rules(served: Served,
                                                              tmp_path: Path) -> None:
    need(PROMETHEUS)
    target = served.url.removeprefix("http://")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(DEPLOY / "autocnc-rules.yml")],
              "scrape_configs": [{"job_name": "autocnc",
                                  "static_configs": [{"targets": [target]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    prom = Process.start("prometheus", [
        PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn"], tmp_path / "prometheus.log", f"{url}/-/ready")
    try:
        up = wait_for("a scrape of AutoCNC", lambda: prom_query(url, 'up{job="autocnc"}'),
                      timeout_s=60, alive=prom.check)
        assert up[0]["value"][1] == "1", up
        rejected = prom_query(url, 'autocnc_ingest_rejected_records_total{source="topology"}')
        assert [r["value"][1] for r in rejected] == ["1"]
        assert rejected[0]["metric"]["job"] == "autocnc"
        ready = prom_query(url, "autocnc_ready")
        assert [r["value"][1] for r in ready] == ["1"]

        names = [r["alert"] for g in yaml.safe_load((DEPLOY / "autocnc-rules.yml").read_text())[
            "groups"] for r in g["rules"]]

        def rules_evaluated() -> list[dict[str, Any]] | None:
            got = httpx.get(f"{url}/api/v1/rules", timeout=10).json()["data"]["groups"]
            rules = [r for g in got for r in g["rules"]]
            return rules if rules and all(r.get("lastEvaluation", "").startswith("2")
                                          and r["health"] != "unknown" for r in rules) else None

        rules = wait_for("the rules evaluated", rules_evaluated, timeout_s=30, alive=prom.check)
        assert sorted(r["name"] for r in rules) == sorted(names)
        assert all(r["health"] == "ok" for r in rules), rules
        # the set-up is healthy: nothing fires (AutoCNCIngestRejects is pending or firing)
        active = {r["name"] for r in rules if r["state"] != "inactive"}
        assert active <= {"AutoCNCIngestRejects"}, rules

        examples = re.search(r"^```promql\n(.*?)^```", DOCS.read_text(), re.M | re.S)
        assert examples is not None
        queries = [q for q in examples.group(1).splitlines() if q and not q.startswith("#")]
        assert len(queries) >= 4
        for q in queries:  # the docs' example queries run (an error fails prom_query)
            prom_query(url, q)
    finally:
        prom.stop()


# -- the sample configuration ----------------------------------------------------------------------

def test_the_sample_config_and_rules_pass_promtool() -> None:
    need(PROMTOOL)
    for argv in (["check", "config", "prometheus.yml"], ["check", "rules", "autocnc-rules.yml"],
                 ["test", "rules", "autocnc-rules.test.yml"]):
        run = subprocess.run([PROMTOOL, *argv], cwd=DEPLOY, capture_output=True)
        assert run.returncode == 0, (argv, run.stdout.decode(), run.stderr.decode())

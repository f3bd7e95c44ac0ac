"""Alerts ingest on the real rule files and the Alertmanager webhook example, both backends."""

from __future__ import annotations

import copy
import json
import re
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest import inputs_for, run_ingest
from ingest.alertmanager import AlertmanagerReceiver
from ingest.alerts import WebhookPayloadError, ingest_webhook, parse_duration
from ingest.base import IngestContext, IngestReport, Input, Sink
from kg.facts import Entity, FactBatch
from kg.graph import KnowledgeGraph
from ontology import mint_iri
from tests.conftest import SHARED_DATA

RULES = SHARED_DATA / "alert-rules"
WEBHOOK = SHARED_DATA / "alertmanager-webhook-example.json"
SCOPE = "kube-prometheus"
NOT_RULE_FILES = {"alertmanager-secret.yaml", "alertmanager-configmap.yaml", "rules.yml"}
_ALERT_LINE = re.compile(r"^\s*-\s+alert:\s*['\"]?([^'\"\s]+)", re.M)


def expected_alerts(folder: Path) -> Counter[str]:
    """Alert names of every file under ``folder``, counted without the YAML parser."""
    names: Counter[str] = Counter()
    for f in folder.rglob("*"):
        if f.is_file() and f.name != "LICENSE":
            names.update(_ALERT_LINE.findall(f.read_text()))
    return names


def definitions(kg: KnowledgeGraph, scope: str) -> Counter[str]:
    rows = kg.cypher("MATCH (d:Entity) WHERE 'AlertDefinition' IN d.types AND "
                     "d.ingestScope = $s RETURN d.name, count(*)", {"s": scope}).rows
    return Counter({name: n for name, n in rows})


def one(kg: KnowledgeGraph, query: str, params: dict[str, Any] | None = None) -> list[Any]:
    rows = kg.cypher(query, params).rows
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize(("text", "seconds"), [
    ("15m", 900.0), ("1h30m", 5400.0), ("0s", 0.0), ("0", 0.0), ("500ms", 0.5),
    ("1d", 86400.0), ("2w", 1209600.0), ("1m30s", 90.0)])
def test_prometheus_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["15 minutes", "m", "", "1.5h", "10x"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        parse_duration(text)


# -- rule files --------------------------------------------------------------------------------

def test_every_rule_file_ingests(kg: KnowledgeGraph) -> None:
    reports = {}
    for folder in sorted(p for p in RULES.iterdir() if p.is_dir()):
        reports[folder.name] = run_ingest(kg, "alerts", inputs_for("alerts", [str(folder)]),
                                          scope=folder.name)
        assert definitions(kg, folder.name) == expected_alerts(folder), folder.name
    assert sum(r.records for r in reports.values()) == 1043
    assert all(not r.rejected for r in reports.values())
    skipped = {Path(s.file).name: s.reason for r in reports.values() for s in r.skipped}
    assert set(skipped) == NOT_RULE_FILES
    assert "Alertmanager configuration" in skipped["alertmanager-secret.yaml"]
    assert "catalogue" in skipped["rules.yml"]
    assert reports[SCOPE].counts["recordingRules"] == 95
    assert reports["awesome-prometheus-alerts"].counts["alertDefinitions"] == 954
    # Sock Shop's docker-compose-alert.rules is Prometheus 2.x YAML: its rule lands, and
    # the ConfigMap's rule of the same name stays a distinct variant (severity differs)
    sock = {r[0]: r[1:] for r in kg.cypher(
        "MATCH (d:Entity) WHERE 'AlertDefinition' IN d.types AND d.ingestScope = 'sock-shop' "
        "RETURN d.severity, d.forSeconds, d.expression").rows}
    assert sock["email"][0] == 60.0 and "[1m]" in sock["email"][1]
    assert sock["slack"][0] == 300.0

    again = run_ingest(kg, "alerts", inputs_for("alerts", [str(RULES / SCOPE)]), scope=SCOPE)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 87)


def test_definition_properties_and_variants(kg: KnowledgeGraph) -> None:
    run_ingest(kg, "alerts", inputs_for("alerts", [str(RULES / SCOPE)]), scope=SCOPE)
    expr, for_s, severity, url, labels, summary = one(
        kg, "MATCH (d:Entity) WHERE d.iri = $iri RETURN d.expression, d.forSeconds, "
        "d.severity, d.runbookUrl, d.labels, d.summary",
        {"iri": mint_iri(SCOPE, "AlertDefinition", "KubePodCrashLooping")})
    assert expr.startswith("max_over_time(kube_pod_container_status_waiting_reason")
    assert (for_s, severity) == (900.0, "warning")
    assert url == "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"
    assert json.loads(labels) == {"severity": "warning"}
    assert summary == "Pod is crash looping."
    # one name, several rules: each variant keeps its own expression
    burn = kg.cypher("MATCH (d:Entity) WHERE d.name = 'KubeAPIErrorBudgetBurn' "
                     "RETURN d.iri, d.expression, d.forSeconds, d.labels").rows
    assert len(burn) == 4 and len({r[1] for r in burn}) == 4
    assert {json.loads(r[3])["long"] for r in burn} == {"1h", "6h", "1d", "3d"}
    assert mint_iri(SCOPE, "AlertDefinition", "KubeAPIErrorBudgetBurn/critical/long=1h,short=5m"
                    ) in {r[0] for r in burn}
    cert = {r[0] for r in kg.cypher("MATCH (d:Entity) WHERE d.name = "
                                    "'KubeClientCertificateExpiration' RETURN d.iri").rows}
    assert cert == {mint_iri(SCOPE, "AlertDefinition", f"KubeClientCertificateExpiration/{s}")
                    for s in ("warning", "critical")}


def test_bad_rules_are_rejected_and_good_ones_land(kg: KnowledgeGraph, tmp_path: Path) -> None:
    tmp_path = tmp_path / "rules"
    tmp_path.mkdir()
    good = "{alert: Good, expr: up == 0, for: 5m, labels: {severity: critical}}"
    (tmp_path / "mixed.yaml").write_text(
        "groups:\n- name: g\n  rules:\n"
        f"  - {good}\n"
        "  - {alert: NoExpr, for: 5m}\n"
        "  - {alert: BadFor, expr: up == 0, for: 5 minutes}\n"
        "  - {record: 'job:up:sum', expr: sum(up)}\n")
    (tmp_path / "old.rules").write_text('ALERT InstanceDown\n  IF up == 0\n  FOR 5m\n')
    report = run_ingest(kg, "alerts", inputs_for("alerts", [str(tmp_path)]), scope="t")
    assert report.records == 1 and report.counts["recordingRules"] == 1
    where = {r.where: r.reason for r in report.rejected}
    assert set(where) == {"/groups/0/rules/1", "/groups/0/rules/2"}
    assert "needs a non-empty `expr`" in where["/groups/0/rules/1"]
    assert "not a Prometheus duration" in where["/groups/0/rules/2"]
    assert [Path(s.file).name for s in report.skipped] == ["old.rules"]
    assert "Prometheus 1.x" in report.skipped[0].reason
    assert definitions(kg, "t") == Counter({"Good": 1})
    dead = (kg.settings.data_dir / "dead-letter" / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(line)["where"] for line in dead] == ["/groups/0/rules/1",
                                                            "/groups/0/rules/2"]


# -- Alertmanager webhook ----------------------------------------------------------------------

def k8s_topology(kg: KnowledgeGraph, scope: str = SCOPE) -> None:
    """The manifests' view: the checkout Deployment and its namespace, no running pods."""
    kg.write(FactBatch.of("test/k8s", [
        Entity(mint_iri(scope, "Namespace", "default"), "Namespace", {"name": "default"}),
        Entity(mint_iri(scope, "Deployment", "default/checkoutservice"), "Deployment",
               {"name": "checkoutservice", "namespaceName": "default"}),
    ]))


def context(kg: KnowledgeGraph, scope: str = SCOPE) -> IngestContext:
    report = IngestReport("alerts")
    return IngestContext(kg, report, Sink(kg, report), scope)


def alerts_of(kg: KnowledgeGraph) -> dict[str, list[Any]]:
    rows = kg.cypher("MATCH (a:Entity) WHERE 'Alert' IN a.types RETURN a.iri, a.alertStatus, "
                     "a.groupKey, a.startTime, a.endTime, a.validTo, a.name").rows
    return {r[0]: r[1:] for r in rows}


def test_webhook_occurrences_resolution_and_lifecycle(kg: KnowledgeGraph) -> None:
    run_ingest(kg, "alerts", inputs_for("alerts", [str(RULES / SCOPE)]), scope=SCOPE)
    k8s_topology(kg)
    payload = json.loads(WEBHOOK.read_text())
    first = run_ingest(kg, "alerts", [Input.file(WEBHOOK)], scope=SCOPE)
    assert first.counts["alerts"] == 2 and not first.rejected
    crash = mint_iri(SCOPE, "Alert", "196af9affe0c96a6/2024-05-14T09:21:37.512000Z")
    found = alerts_of(kg)
    assert len(found) == 2
    assert found[crash][:2] == ["firing", payload["groupKey"]]
    assert found[crash][3] is None and found[crash][4] is None  # not ended

    # subject labels first: the pod, not service=kube-state-metrics; the unknown running
    # pod is put in under its Deployment (inferred by its name's hash suffix)
    pod = mint_iri(SCOPE, "Pod", "default/checkoutservice-7c8b9d6f5d-x4k2p")
    deployment = mint_iri(SCOPE, "Deployment", "default/checkoutservice")
    about = {r[0]: r[1:] for r in kg.cypher(
        "MATCH (a:Entity)-[r:aboutEntity]->(e:Entity) RETURN a.name, e.iri, r.resolution").rows}
    assert about == {"KubePodCrashLooping": [pod, "inferred"],
                     "KubeDeploymentReplicasMismatch": [deployment, "exact"]}
    assert one(kg, "MATCH (w:Entity)-[r:manages]->(p:Entity) RETURN w.iri, p.iri, "
                   "r.resolution") == [deployment, pod, "inferred"]
    assert one(kg, "MATCH (a:Entity)-[:instanceOf]->(d:Entity) WHERE a.iri = $a RETURN d.iri",
               {"a": crash}) == [mint_iri(SCOPE, "AlertDefinition", "KubePodCrashLooping")]

    # the same notification again: nothing changes but lastSeen
    before = kg.store.fetch([crash], [])[0][crash].last_seen
    ctx = context(kg)
    ingest_webhook(ctx, payload, "alertmanager")
    assert (ctx.report.created, ctx.report.updated) == (0, 0) and ctx.report.unchanged == 8
    assert kg.store.fetch([crash], [])[0][crash].last_seen > before

    # resolved: the same occurrence is closed
    resolved = copy.deepcopy(payload)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2024-05-14T09:41:37.512Z"
    ingest_webhook(context(kg), resolved, "alertmanager")
    status, _, _, end, valid_to, _ = alerts_of(kg)[crash]
    assert status == "resolved" and end == valid_to and end.isoformat().startswith(
        "2024-05-14T09:41:37")
    # a late retry of the firing notification does not reopen it
    late = context(kg)
    ingest_webhook(late, payload, "alertmanager")
    assert late.report.counts["staleFiring"] == 1
    assert alerts_of(kg)[crash][0] == "resolved"
    # firing again later: a new occurrence of the same fingerprint
    again = copy.deepcopy(payload)
    again["alerts"][0]["startsAt"] = "2024-05-14T11:00:00Z"
    ingest_webhook(context(kg), again, "alertmanager")
    assert len(alerts_of(kg)) == 3


def test_unresolved_labels_are_kept_not_dropped(kg: KnowledgeGraph) -> None:
    payload = json.loads(WEBHOOK.read_text())
    stray = payload["alerts"][1]
    stray["labels"] = {"alertname": "NodeDown", "instance": "10.9.9.9:9100", "job": "node"}
    payload["alerts"] = [stray]
    ctx = context(kg)
    (rec,) = ingest_webhook(ctx, payload, "alertmanager")
    assert ctx.report.counts["unresolved"] == 1 and ctx.report.counts["definitionMissing"] == 1
    assert "NodeDown" in ctx.report.notes[0] and "10.9.9.9:9100" in ctx.report.notes[0]
    labels = one(kg, "MATCH (a:Entity) WHERE 'Alert' IN a.types RETURN a.labels")[0]
    assert json.loads(labels)["instance"] == "10.9.9.9:9100"
    assert kg.cypher("MATCH (a:Entity)-[r]->(e:Entity) WHERE a.iri = $a RETURN count(r)",
                     {"a": rec.entities[0].iri}).rows == [[0]]


def _broken(path: str, value: Any) -> dict[str, Any]:
    payload = json.loads(WEBHOOK.read_text())
    *parents, last = path.strip("/").split("/")
    node: Any = payload
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return payload


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "pointer"), [
    ("/version", "3", "/version"),
    ("/alerts/1/fingerprint", _DELETE, "/alerts/1/fingerprint"),
    ("/alerts/1/startsAt", "yesterday", "/alerts/1/startsAt"),
    ("/alerts/0/labels/severity", 3, "/alerts/0/labels/severity"),
    ("/alerts/0/status", "pending", "/alerts/0/status"),
    ("/groupKey", _DELETE, "/groupKey"),
])
def test_bad_payload_names_the_field_and_writes_nothing(kg: KnowledgeGraph, path: str,
                                                        value: Any, pointer: str) -> None:
    head = kg.store.head()
    with pytest.raises(WebhookPayloadError) as err:
        ingest_webhook(context(kg), _broken(path, value), "alertmanager")
    assert err.value.pointer == pointer
    assert kg.store.head() == head and not alerts_of(kg)


def test_ten_alert_payload_is_cheap(kg: KnowledgeGraph) -> None:
    """Python cost of a 10-alert notification with warm caches (the store write apart)."""
    run_ingest(kg, "alerts", inputs_for("alerts", [str(RULES / SCOPE)]), scope=SCOPE)
    k8s_topology(kg)
    payload = json.loads(WEBHOOK.read_text())
    payload["alerts"] = [dict(payload["alerts"][i % 2], fingerprint=f"{i:016x}")
                         for i in range(10)]
    receiver = AlertmanagerReceiver(kg)
    ctx = context(kg)
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        records = receiver.records(ctx, payload, "alertmanager")
        times.append(time.perf_counter() - t0)
    assert len(records) == 10
    # one batched store read is included; generous for shared CI machines
    assert statistics.median(times[3:]) < 0.05


def test_retry_after_resolution_in_one_group_commit_stays_closed(kg: KnowledgeGraph) -> None:
    """The API writes several notifications in one commit: the receiver itself must know
    that an occurrence it just closed is closed, before anything is in the store."""
    k8s_topology(kg)
    payload = json.loads(WEBHOOK.read_text())
    resolved = copy.deepcopy(payload)
    for a in resolved["alerts"]:
        a["status"], a["endsAt"] = "resolved", "2024-05-14T10:00:00Z"
    receiver, ctx = AlertmanagerReceiver(kg), context(kg)
    for body in (payload, resolved, payload):  # firing, resolved, a late firing retry
        for rec in receiver.records(ctx, body, "alertmanager"):
            ctx.sink.add(rec)
    ctx.sink.flush()
    assert ctx.report.counts["staleFiring"] == 2
    assert {v[0] for v in alerts_of(kg).values()} == {"resolved"}
    # the inferred pod stays inferred on every delivery, through the receiver's memory
    again = context(kg)
    for rec in receiver.records(again, resolved, "alertmanager"):
        again.sink.add(rec)
    again.sink.flush()
    assert (again.report.created, again.report.updated) == (0, 0)


# -- alarm logs (format events) -------------------------------------------------------------

def test_telecom_alarm_log_ingests_onto_its_topology(kg, tmp_path) -> None:
    """The microwave network's alarm log (first 3,000 alarms) on its device topology."""
    import csv as _csv

    from ingest import Input, inputs_for, run_ingest
    from tests.conftest import SHARED_DATA

    src = SHARED_DATA / "telecom-alarms" / "24V_439N_Microwave"
    edges = list(_csv.DictReader((src / "topology_edges.csv").open()))
    devices = sorted({d for e in edges for d in (e["device_a"], e["device_b"])}, key=int)
    native = {"entities": [{"id": d, "type": "NetworkNode", "properties": {"name": d}}
                           for d in devices],
              "relations": [{"type": "linkedTo", "source": e["device_a"],
                             "target": e["device_b"]} for e in edges]}
    topo = run_ingest(kg, "topology", [Input.of_bytes("mw.json", json.dumps(native).encode())],
                      scope="mw", as_of=datetime(2026, 1, 1, tzinfo=UTC))
    assert topo.rejected == []
    lines = (src / "Alarm.csv").read_text().splitlines()[:3001]
    log = tmp_path / "alarms.csv"
    log.write_text("\n".join(lines) + "\nx,1,notatime,0\n")
    report = run_ingest(kg, "alerts", inputs_for("alerts", [str(log)]), scope="mw",
                        options={"column_map": {"alarm_id": "event_type",
                                                "device_id": "entity",
                                                "start_timestamp": "time",
                                                "end_timestamp": "end_time"}})
    assert [r.where for r in report.rejected] == ["line 3002"]
    assert report.counts["alarms"] == 3001
    n_devices = len({line.split(",")[1] for line in lines[1:]})
    unresolved = report.counts.get("unresolved", 0)
    (alarms,) = kg.cypher("MATCH (a:Entity) WHERE a.kind = 'Alarm' RETURN count(a)").rows[0]
    assert alarms == 3000 - _dupes(lines[1:])
    (about,) = kg.cypher("MATCH (a:Entity)-[:aboutEntity]->(d:Entity) WHERE a.kind = 'Alarm' "
                         "RETURN count(DISTINCT d)").rows[0]
    assert about <= n_devices and about > 0 and unresolved < 3000
    from reasoning.causal.graph import events_from_graph

    table = events_from_graph(kg)
    assert len(table) == alarms - unresolved


def _dupes(rows: list[str]) -> int:
    keys = [tuple(r.split(",")[:3]) for r in rows]
    return len(keys) - len(set(keys))

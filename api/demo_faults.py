"""Fault injection for ``autocnc demo``: break the demo CNC, alert, and explain.

Two faults, as an operator would see them:

1. a backbone link fails — the link's packet-loss series turns anomalous (the metric
   evidence) and the deployments whose traffic is routed over it fire
   ``KubeDeploymentReplicasMismatch``-style alerts;
2. a GPU of a compute node fails — its error counter turns anomalous and the pods
   scheduled on that node crash-loop (``KubePodCrashLooping``).

The alerts go through the real webhook path (``POST /v1/alerts/alertmanager`` of the app,
in-process), the anomalies are written as the metrics stage would write them, and the RCA
is asked over HTTP (``POST /v1/rca`` for each incident's alerts).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

from fastapi.testclient import TestClient
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ingest.demo import DemoCNC
from kg.facts import Entity, FactBatch, Relation

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def _fp(*parts: str) -> str:
    return hashlib.sha1("/".join(parts).encode()).hexdigest()[:16]


def _anomaly(scope: str, entity: str, metric: str, z: float, at: datetime) -> FactBatch:
    from ontology import mint_iri

    key = f"{metric}/{entity.rsplit('/', 1)[-1]}"
    series = mint_iri(scope, "MetricSeries", key)
    anomaly = mint_iri(scope, "Anomaly", f"{key}/{at.strftime('%Y%m%dT%H%M%SZ')}")
    return FactBatch.of("demo/fault-injection", [
        Entity(series, "MetricSeries", {"metricName": metric, "seriesId": _fp(key)}),
        Entity(anomaly, "Anomaly", {"metricName": metric, "anomalyScore": z, "direction": "up",
                                    "startTime": at, "endTime": at + timedelta(minutes=10)}),
    ], [Relation("observes", series, entity), Relation("detectedIn", anomaly, series),
        Relation("aboutEntity", anomaly, entity)])


def _payload(group: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "4", "groupKey": group, "truncatedAlerts": 0, "status": "firing",
            "receiver": "autocnc", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager.demo",
            "alerts": alerts}


def _alert(name: str, labels: dict[str, str], at: datetime, summary: str) -> dict[str, Any]:
    labels = {"alertname": name, "severity": "warning", **labels}
    return {"status": "firing", "labels": labels, "annotations": {"summary": summary},
            "startsAt": at.isoformat().replace("+00:00", "Z"),
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus.demo",
            "fingerprint": _fp(*sorted(f"{k}={v}" for k, v in labels.items()))}


def _by_scope(iris: list[str]) -> dict[str, list[str]]:
    """Group Kubernetes IRIs by their cluster scope (…/demo/cluster/<site>/<Kind>/…)."""
    out: dict[str, list[str]] = {}
    for iri in iris:
        scope = iri.split("/id/", 1)[1].rsplit("/", 2)[0]
        out.setdefault(scope, []).append(iri)
    return out


def inject_and_explain(client: TestClient, d: DemoCNC, console: Console) -> list[bool]:
    """Inject both faults, fire their alerts through the webhook, print the RCA; returns
    whether each fault's injected cause was ranked first."""

    rels = d.batch.relations
    names = {e.iri: str(e.properties.get("name", e.iri.rsplit("/", 1)[-1]))
             for e in d.batch.entities}
    routed = Counter(r.end for r in rels if r.type == "routedOver")
    link = sorted(routed, key=lambda lk: (-routed[lk], lk))[0]
    deps = sorted(r.start for r in rels if r.type == "routedOver" and r.end == link)
    runs_on: dict[str, list[str]] = {}
    for r in rels:
        if r.type == "runsOn":
            runs_on.setdefault(r.end, []).append(r.start)

    def pods_on(node: str) -> list[str]:
        return sorted(p for kn in runs_on.get(node, []) for p in runs_on.get(kn, [])
                      if "/Pod/" in p)

    gpu_node, gpu = next((r.start, r.end) for r in sorted(rels, key=lambda r: r.end)
                         if r.type == "hasAccelerator" and "/GPU/" in r.end
                         and len(pods_on(r.start)) >= 2)
    pods = pods_on(gpu_node)
    faults = [
        ("backbone link failure", link, _anomaly("demo/backbone", link, "packet_loss_ratio",
                                                 14.0, T0),
         [(scope, [_alert("KubeDeploymentReplicasMismatch",
                          {"namespace": "default", "deployment": names[x]},
                          T0 + timedelta(seconds=40 + 10 * i),
                          f"{names[x]} lost its upstream") for i, x in enumerate(xs)])
          for scope, xs in _by_scope(deps).items()]),
        ("GPU fault", gpu, _anomaly("demo/site", gpu, "gpu_xid_errors", 20.0,
                                    T0 + timedelta(hours=1)),
         [(scope, [_alert("KubePodCrashLooping",
                          {"namespace": "default", "pod": names[x]},
                          T0 + timedelta(hours=1, seconds=30 + 10 * i),
                          f"{names[x]} is crash looping") for i, x in enumerate(xs)])
          for scope, xs in _by_scope(pods).items()]),
    ]
    hits = []
    for title, cause, anomaly, groups in faults:
        client.post("/v1/facts", json=anomaly.to_json()).raise_for_status()
        alerts: list[dict[str, Any]] = []
        for scope, group_alerts in groups:
            resp = client.post("/v1/alerts/alertmanager", params={"scope": scope},
                               json=_payload(f"{{}}:{{fault=\"{title}\"}}", group_alerts))
            resp.raise_for_status()
            alerts += [dict(a, scope=scope) for a in group_alerts]
        scope = groups[0][0]
        start = min(a["startsAt"] for a in alerts)
        end = max(a["startsAt"] for a in alerts)
        rca = client.post("/v1/rca", json={"window": {"start": start, "end": end},
                                           "store": True}).json()
        cands = rca.get("candidates", [])
        hit = bool(cands) and cands[0]["entity"] == cause
        hits.append(hit)
        verdict = "[green]finds it first[/green]" if hit else "[red]misses it[/red]"
        console.print(f"\n[bold]fault: {title}[/bold] at {unquote(cause.split('/id/')[1])}: "
                      f"{len(alerts)} alerts through the webhook ({len(groups)} cluster(s), "
                      f"scope e.g. {scope}); RCA {verdict}")
        table = Table("rank", "candidate", "type", "score", "hypothesis", "top signals")
        for column in table.columns:  # wrap, never cut, a name
            column.overflow = "fold"
        for c in cands[:3]:
            top = sorted(c["contributions"].items(), key=lambda kv: -kv[1])[:3]
            table.add_row(str(c["rank"]), unquote(c["entity"].split("/id/")[1]), c["kind"],
                          f"{c['score']:.2f}", c["hypothesis"],
                          ", ".join(f"{k} {v:.2f}" for k, v in top if v))
        console.print(table)
        if cands:
            path = max(cands[0]["paths"], key=lambda p: len(p["hops"]))
            hops = " ; ".join(f"{_short(h['effect'])} -{h['relation']}-> {_short(h['cause'])} "
                              f"(rule {h['rule']})" for h in path["hops"][::-1])
            console.print(escape(f"evidence path: alert {path['symptomName']} on "
                                 f"{_short(path['symptom'])}: {hops or 'itself'}"))
            for ev in cands[0]["evidence"][:2]:
                console.print(f"evidence event: {ev['kind']} {ev['detail']} at {ev['at']} "
                              f"(score {ev['score']:.1f})")
        console.print(f"explanation: {rca.get('explanation')}")
    return hits


def _short(iri: str) -> str:
    """``Kind name`` of an entity IRI (names repeat across kinds: a node and its machine)."""
    kind, name = iri.rsplit("/", 2)[-2:]
    return f"{kind} {unquote(name)}"

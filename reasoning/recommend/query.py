"""What a recommendation is asked for: an incident, alerts (webhook form) or free text.

Every form becomes one :class:`ProblemQuery`: the problem's text, the alert names and
labels, the ontology types of the entities involved (each with the path that led to it,
for the explanation), metric names, and the incident. An alert's ``generatorURL`` (the
Prometheus graph link every alert carries, ``…/graph?g0.expr=…``) gives its expression:
its metrics, the label names it matches on or groups by, and the values it matches, all of
which an alert keeps when its name is unknown. Annotations are Go templates in rule files
and rendered text in notifications; both are read through
:func:`reasoning.recommend.text.render_template`. ``runbook_url`` is never read: a
recommendation must not be told its answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from kg.errors import AutoCNCError
from reasoning.recommend.promql import expression_labels, expression_metrics, expression_values
from reasoning.recommend.text import (
    label_types,
    mentioned_types,
    render_template,
    template_labels,
)

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

IGNORED_ANNOTATIONS = frozenset({"runbook_url", "runbook", "dashboard_url", "generatorURL"})
TEXT_ANNOTATIONS = ("summary", "description", "message")
# labels that say where an alert came from, not what is wrong
PROVENANCE_LABELS = frozenset({"alertname", "prometheus", "receiver", "endpoint",
                               "instance", "job", "container_id", "uid", "fingerprint"})


class QueryNotFound(AutoCNCError):
    """The incident (or another entity) named by a request is not in the graph."""


class BadQuery(AutoCNCError):
    """A request is malformed; ``field`` names the offending part."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"{field}: {reason}")


@dataclass
class ProblemQuery:
    text: str = ""  # what lexical matching reads: prose and label values
    prose: str | None = None  # what the sentence model reads (default: ``text``)
    alert_names: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    # ontology type -> the chain that led to it, e.g. [incident, entity] or ["label:pod"]
    entity_types: dict[str, list[str]] = field(default_factory=dict)
    metrics: set[str] = field(default_factory=set)
    incident: str | None = None
    entities: list[str] = field(default_factory=list)
    expressions: list[str] = field(default_factory=list)  # from the alerts' generatorURL
    label_names: set[str] = field(default_factory=set)  # of the alerts and expressions

    @property
    def expression_text(self) -> str:
        """Words of the expressions: metric names and the label values they match
        (``kube_pod_container_status_restarts_total{job="kube-state-metrics"}``)."""
        return "\n".join([*sorted(self.metrics), *(v for e in self.expressions
                                                     for v in expression_values(e))])

    @property
    def sentence(self) -> str:
        return self.text if self.prose is None else self.prose

    @property
    def context(self) -> list[str]:
        """Keys the success statistics are kept by: the alert names."""
        return sorted(set(self.alert_names))

    def add_type(self, kind: str, via: list[str]) -> None:
        self.entity_types.setdefault(kind, via)

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text[:2000], "alertNames": self.alert_names,
                "labels": self.labels, "entityTypes": self.entity_types,
                "metrics": sorted(self.metrics), "incident": self.incident,
                "entities": self.entities, "expressions": self.expressions,
                "labelNames": sorted(self.label_names)}


# -- free text -------------------------------------------------------------------------------

def from_text(text: str) -> ProblemQuery:
    if not text.strip():
        raise BadQuery("text", "empty")
    q = ProblemQuery(text=text.strip())
    for t in sorted(mentioned_types(text)):
        q.add_type(t, ["text"])
    return q


# -- alerts ----------------------------------------------------------------------------------

def alerts_of(payload: Any) -> list[Mapping[str, Any]]:
    """The alerts of a webhook payload (``{"alerts": [...]}``), a list of alerts, or one
    alert (``{"labels": ..., "annotations": ...}``)."""
    if isinstance(payload, Mapping) and "alerts" in payload:
        alerts, at, single = payload["alerts"], "alert/alerts", False
    elif isinstance(payload, list):
        alerts, at, single = payload, "alert", False
    else:
        alerts, at, single = [payload], "alert", True
    if not isinstance(alerts, list) or not alerts:
        raise BadQuery(at, "needs at least one alert")
    for i, a in enumerate(alerts):
        where = at if single else f"{at}/{i}"
        if not isinstance(a, Mapping):
            raise BadQuery(where, "an alert is an object with labels and annotations")
        for part in ("labels", "annotations"):
            value = a.get(part, {})
            if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise BadQuery(f"{where}/{part}", "must be an object of text values")
        if not isinstance(a.get("generatorURL", ""), str):
            raise BadQuery(f"{where}/generatorURL", "must be text (a URL)")
    return alerts


def generator_expression(url: str) -> str | None:
    """The PromQL expression of a Prometheus ``generatorURL`` (its ``g0.expr``), or None."""
    from urllib.parse import parse_qs, urlsplit

    if not url:
        return None
    try:
        query = parse_qs(urlsplit(url).query)
    except ValueError:
        return None
    expr = next((v[0] for k, v in sorted(query.items()) if k.endswith(".expr") and v), None)
    return expr.strip() or None if expr else None


def from_alerts(payload: Any, kg: KnowledgeGraph | None = None, scope: str | None = None,
                *, lookup: str = "snapshot") -> ProblemQuery:
    """A query for alerts in webhook form; with ``kg`` and ``scope`` their labels are
    resolved to graph entities (the Alertmanager receiver's rule), without storing: in
    the analytic snapshot (``lookup="snapshot"``, a server's hot path) or with one read of
    the store (``"store"``, a one-off command that should not build the snapshot)."""
    alerts = alerts_of(payload)
    q = ProblemQuery()
    texts: list[str] = []
    prose: list[str] = []
    for a in alerts:
        labels = dict(a.get("labels") or {})
        annotations = {k: v for k, v in (a.get("annotations") or {}).items()
                       if k not in IGNORED_ANNOTATIONS}
        name = labels.get("alertname")
        if name and name not in q.alert_names:
            q.alert_names.append(name)
        for k, v in labels.items():
            q.labels.setdefault(k, v)
        refs = set(labels)
        if expr := generator_expression(str(a.get("generatorURL") or "")):
            if expr not in q.expressions:
                q.expressions.append(expr)
            q.metrics |= expression_metrics(expr)
            refs |= expression_labels(expr)
        for key in TEXT_ANNOTATIONS:
            if annotations.get(key):
                texts.append(render_template(annotations[key]))
                prose.append(texts[-1])
                refs |= template_labels(annotations[key])
        texts += [f"{k} {v}" for k, v in sorted(labels.items()) if k not in PROVENANCE_LABELS]
        q.label_names |= refs - PROVENANCE_LABELS
        for t in sorted(label_types(refs)):
            q.add_type(t, [f"label:{next(k for k in sorted(refs) if label_types([k]) == {t})}"])
    q.text = "\n".join(dict.fromkeys(t for t in texts if t))
    # label values (pod names, severities) are matched lexically; the sentence model reads
    # the alert's prose only (a third of the tokens: the embedding is the costly step)
    q.prose = "\n".join(dict.fromkeys(t for t in prose if t)) or q.text
    for t in sorted(mentioned_types(q.text)):
        q.add_type(t, ["text"])
    if kg is not None and scope:
        (_resolve_in_store if lookup == "store" else _resolve)(kg, q, alerts, scope)
    return q


def _resolve(kg: KnowledgeGraph, q: ProblemQuery, alerts: Sequence[Mapping[str, Any]],
             scope: str) -> None:
    """Labels to entities by the resolution rule of :mod:`ingest.resolve` (first existing
    candidate wins), looked up in the analytic snapshot rather than the store: no round
    trip on the hot path."""
    from ingest.resolve import candidates

    snap = kg.snapshot
    for a in alerts:
        for cand in candidates(scope, dict(a.get("labels") or {}), kg.settings.iri_base):
            node = snap.index.get(cand.iri)
            if node is None or not snap.alive[node]:
                continue
            if cand.iri not in q.entities:
                q.entities.append(cand.iri)
                for t in kg.onto.types_of(snap.kinds[node]):
                    q.add_type(t, [cand.iri])
            break


def _resolve_in_store(kg: KnowledgeGraph, q: ProblemQuery,
                      alerts: Sequence[Mapping[str, Any]], scope: str) -> None:
    """:func:`_resolve` with one ``fetch`` of every candidate instead of the snapshot."""
    from ingest.resolve import candidates

    per_alert = [candidates(scope, dict(a.get("labels") or {}), kg.settings.iri_base)
                 for a in alerts]
    found, _ = kg.store.fetch(sorted({c.iri for cs in per_alert for c in cs}), [])
    for cands in per_alert:
        for cand in cands:
            st = found.get(cand.iri)
            if st is None or st.valid_to is not None:
                continue
            if cand.iri not in q.entities:
                q.entities.append(cand.iri)
                for t in kg.onto.types_of(st.kind):
                    q.add_type(t, [cand.iri])
            break


# -- incidents -------------------------------------------------------------------------------

INCIDENT_ALERTS = (
    "MATCH (a:Entity)-[:partOfIncident]->(i:Entity {iri: $inc}) "
    "OPTIONAL MATCH (a)-[:aboutEntity]->(x:Entity) "
    "RETURN a.name, a.labels, a.summary, a.description, x.iri, x.kind, a.startTime")
INCIDENT_CAUSES = (
    "MATCH (i:Entity {iri: $inc})-[:hasResult]->(r:Entity)-[:hasCandidate]->(c:Entity)"
    "-[:candidateEntity]->(x:Entity) RETURN r.generatedAt, c.rank, x.iri, x.kind")
EVIDENCE_METRICS = (
    "MATCH (e:Entity)-[:aboutEntity]->(x:Entity) WHERE x.iri IN $ents AND e.kind = 'Anomaly' "
    "AND e.startTime >= $t0 RETURN DISTINCT e.metricName")


def from_incident(kg: KnowledgeGraph, incident: str, *, top_causes: int = 3) -> ProblemQuery:
    """A query for an incident: its alerts (names, labels, texts), the entities they are
    about, the top root-cause candidates of its latest RCA, and the metrics of their
    anomalies since shortly before the incident."""
    ents, _ = kg.store.fetch([incident], [])
    st = ents.get(incident)
    if st is None or st.kind != "Incident":
        raise QueryNotFound(f"no incident {incident} in the graph")
    rows = kg.store.query(INCIDENT_ALERTS, {"inc": incident}, max_rows=10_000).rows
    alerts = []
    for name, labels, summary, desc, _x, _k, _t in rows:
        lab = _labels(labels)
        if name:
            lab.setdefault("alertname", name)
        ann = {k: v for k, v in (("summary", summary), ("description", desc)) if v}
        alerts.append({"labels": lab, "annotations": ann})
    q = from_alerts(alerts) if alerts else ProblemQuery(text=str(st.props.get("name") or ""))
    q.incident = incident
    for *_, x, kind, _t in rows:
        if x and kind:
            _entity(kg, q, x, kind, [incident, x])
    causes = kg.store.query(INCIDENT_CAUSES, {"inc": incident}, max_rows=1000).rows
    if causes:
        latest = max(r[0] for r in causes if r[0] is not None) if any(
            r[0] for r in causes) else None
        for at, rank, x, kind in sorted(causes, key=lambda r: r[1] or 0):
            if at == latest and rank is not None and rank <= top_causes and kind:
                _entity(kg, q, x, kind, [incident, f"rootCause#{rank}", x])
    start = st.props.get("startTime") or min((r[6] for r in rows if r[6]), default=None)
    if q.entities and isinstance(start, datetime):
        q.metrics |= {m for (m,) in kg.store.query(
            EVIDENCE_METRICS, {"ents": q.entities, "t0": start - timedelta(minutes=30)},
            max_rows=10_000).rows if m}
    return q


def _entity(kg: KnowledgeGraph, q: ProblemQuery, iri: str, kind: str, via: list[str]) -> None:
    if iri not in q.entities:
        q.entities.append(iri)
    if kind in kg.onto.classes:
        for t in kg.onto.types_of(kind):
            q.add_type(t, via)


def _labels(raw: Any) -> dict[str, str]:
    if not raw:
        return {}
    try:
        doc = json.loads(str(raw))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

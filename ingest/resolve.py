"""Resolve observed labels (of an alert, a metric series, a log stream) to graph entities.

Labels name the same objects topology ingest created, by the IRI rule of docs/ingest.md, so
resolution computes candidate IRIs and keeps the first that exists in the store — one
``fetch`` for many label sets, no per-item round trips.

Order (first existing candidate wins):

1. subject labels: ``pod`` (with ``namespace``, default ``default``), then the workload
   labels ``deployment`` / ``statefulset`` / ``daemonset`` / ``replicaset``,
   ``node``, ``namespace``, ``cluster``;
2. only when no subject label is present: ``service``, ``instance`` (its host part),
   ``job``, ``host`` / ``hostname``, because these often name the exporter rather than the
   subject (``service=kube-state-metrics`` scrapes a crash-looping pod; it is not it).
   ``namespace`` and ``cluster`` alone do not make a label set about the namespace or the
   cluster when such a name is present: they qualify it (``{service="cart",
   namespace="shop"}`` is the Kubernetes Service ``shop/cart``), and the namespace and
   cluster come after those names.

A pod unknown to the graph maps to its workload by its name's hash suffix
(``cart-5d8f9c7b6-x2xkq`` → Deployment ``cart``, ``db-0`` → StatefulSet ``db``,
``agent-7xk2p`` → DaemonSet ``agent``), marked ``inferred``. Nothing found gives
``unresolved`` with the labels kept by the caller. A ``cluster`` label overrides the scope.

Prometheus' own labels (docs/prometheus.md):

- ``instance`` is the ``host:port`` of the scrape target; its host part (port stripped,
  ``[v6]:port`` too) is matched against node names.
- ``job`` names the scrape job, usually the service behind the target: the ``Service`` of
  that name.
- **Scrape-target labels.** Prometheus' per-target series (``up``, ``scrape_*``: label
  ``__name__``) and alerts on them (``up == 0``: the alert names in :data:`TARGET_ALERTS`
  and the setting ``prometheus_target_alerts``) are about the scrape *target*, the service
  or exporter that ``job``/``instance`` name, not about the host it runs on. Without
  subject labels they resolve by ``job`` first (KubernetesService, Service), then
  ``service``, and only then the ``instance`` host, marked ``inferred``: an exporter that
  does not answer is not evidence that its host is broken.
- The setting ``prometheus_label_map`` renames the operator's label names to the ones above
  before resolution (``kubernetes_pod_name`` → ``pod``), like Prometheus' ``labelmap``
  relabelling: a mapped label replaces one of the target name. A resolution then names the
  operator's label (``Resolution.label``), not the target name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ontology import mint_iri
from ontology.iri import FALLBACK_LABELS, RESOLUTION_LABELS, SUBJECT_LABELS  # noqa: F401

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph
    from kg.snapshot import AnalyticSnapshot

# Series Prometheus writes per scrape target, and well-known alerts on them (kube-prometheus,
# awesome-prometheus-alerts, Prometheus' own docs); their labels name the scrape target.
TARGET_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped",
                            "scrape_samples_post_metric_relabeling", "scrape_series_added"})
TARGET_ALERTS = frozenset({
    "TargetDown", "InstanceDown", "PrometheusTargetMissing",
    "PrometheusTargetMissingWithWarmupTime", "PrometheusAllTargetsMissing",
    "PrometheusJobMissing", "KubeletDown", "KubeSchedulerDown", "KubeControllerManagerDown",
    "KubeProxyDown", "KubeAPIDown", "KubeAPIInstanceUnreachable"})
NODE_KINDS = ("KubernetesNode", "ComputeNode", "Router", "Switch", "NetworkNode")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")

_DEPLOYMENT_POD = re.compile(r"^(?P<name>.+)-[a-z0-9]{5,10}-[a-z0-9]{5}$")
_STATEFUL_POD = re.compile(r"^(?P<name>.+)-\d+$")
_DAEMON_POD = re.compile(r"^(?P<name>.+)-[a-z0-9]{5}$")
_REPLICASET = re.compile(r"^(?P<name>.+)-[a-z0-9]{5,10}$")


@dataclass(frozen=True)
class Candidate:
    iri: str
    kind: str
    how: str  # exact | inferred
    label: str  # the label that produced it


@dataclass(frozen=True)
class Resolution:
    iri: str | None
    kind: str | None
    how: str  # exact | inferred | unresolved
    label: str | None = None

    @property
    def resolved(self) -> bool:
        return self.iri is not None


UNRESOLVED = Resolution(None, None, "unresolved")


def candidates(scope: str, labels: Mapping[str, str], base: str, *,
               label_map: Mapping[str, str] | None = None,
               target_alerts: Collection[str] = ()) -> list[Candidate]:
    """Candidate entities for ``labels`` in preference order (see the module doc).

    ``label_map`` renames the operator's labels first; ``target_alerts`` adds alert names
    to :data:`TARGET_ALERTS`."""
    origin: dict[str, str] = {}
    if label_map:
        labels, origin = apply_label_map(labels, label_map)
    scope = labels.get("cluster") or scope
    ns = labels.get("namespace") or "default"
    out: list[Candidate] = []

    def add(kind: str, key: str, label: str, how: str = "exact") -> None:
        out.append(Candidate(mint_iri(scope, kind, key, base), kind, how,
                             origin.get(label, label)))

    if pod := labels.get("pod"):
        add("Pod", f"{ns}/{pod}", "pod")
        for kind, name in _workload_of_pod(pod):
            add(kind, f"{ns}/{name}", "pod", "inferred")
    for label, kind in (("deployment", "Deployment"), ("statefulset", "StatefulSet"),
                        ("daemonset", "DaemonSet")):
        if workload := labels.get(label):
            add(kind, f"{ns}/{workload}", label)
    if rs := labels.get("replicaset"):
        if m := _REPLICASET.match(rs):
            add("Deployment", f"{ns}/{m['name']}", "replicaset", "inferred")
    if node := labels.get("node"):
        add("KubernetesNode", node, "node")
        add("ComputeNode", node, "node")
    specific = any(k in labels for k in SUBJECT_LABELS if k not in ("namespace", "cluster"))
    named = any(k in labels for k in FALLBACK_LABELS)
    if "namespace" in labels and (specific or not named):
        add("Namespace", labels["namespace"], "namespace")
    if specific or (("namespace" in labels or "cluster" in labels) and not named):
        if "cluster" in labels:
            add("KubernetesCluster", labels["cluster"], "cluster")
        return out
    if is_target(labels, target_alerts):
        for label in ("job", "service"):  # the target's own name first
            if target := labels.get(label):
                add("KubernetesService", f"{ns}/{target}", label)
                add("Service", target, label)
        for label in ("instance", "host", "hostname"):  # where it runs: a stand-in
            if value := labels.get(label):
                for kind in NODE_KINDS:
                    add(kind, _host_part(value), label, "inferred")
        return out
    if svc := labels.get("service"):
        add("KubernetesService", f"{ns}/{svc}", "service")
        add("Service", svc, "service")
    for label in ("instance", "host", "hostname"):
        if value := labels.get(label):
            host = _host_part(value)
            for kind in NODE_KINDS:
                add(kind, host, label)
    if job := labels.get("job"):
        add("Service", job, "job")
    if "namespace" in labels:  # only qualified the names above: the namespace comes last
        add("Namespace", labels["namespace"], "namespace")
    if "cluster" in labels:
        add("KubernetesCluster", labels["cluster"], "cluster")
    return out


def is_target(labels: Mapping[str, str], target_alerts: Collection[str] = ()) -> bool:
    """Whether ``labels`` are of a per-target series (``__name__`` ``up``, ``scrape_*``) or
    of an alert about a scrape target (its ``alertname`` in :data:`TARGET_ALERTS` or
    ``target_alerts``)."""
    if labels.get("__name__") in TARGET_METRICS:
        return True
    name = labels.get("alertname")
    return name is not None and (name in TARGET_ALERTS or name in target_alerts)


def apply_label_map(labels: Mapping[str, str], label_map: Mapping[str, str]
                    ) -> tuple[dict[str, str], dict[str, str]]:
    """``labels`` with each mapped label copied to its target name (replacing a label of
    that name, in the map's order), and target name -> the operator's label it came from."""
    out = dict(labels)
    origin: dict[str, str] = {}
    for source, target in label_map.items():
        value = labels.get(source)
        if value:  # Prometheus: an empty value is an absent label
            out[target] = value
            origin[target] = source
    return out, origin


def _workload_of_pod(pod: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if m := _DEPLOYMENT_POD.match(pod):
        found.append(("Deployment", m["name"]))
    if m := _STATEFUL_POD.match(pod):
        found.append(("StatefulSet", m["name"]))
    if m := _DAEMON_POD.match(pod):
        found.append(("DaemonSet", m["name"]))
    return found


def _host_part(instance: str) -> str:
    if instance.startswith("["):  # [v6]:port
        return instance[1:instance.find("]")] if "]" in instance else instance
    host, sep, port = instance.rpartition(":")
    return host if sep and port.isdigit() else instance


Lookup = Callable[[Sequence[str]], Mapping[str, str | None]]  # IRIs -> kind, None if absent


class Resolver:
    """Resolves many label sets with one lookup; caches what it has seen.

    By default it looks entities up in the graph store (one ``fetch`` per call, for the
    IRIs not seen before); :meth:`in_memory` looks them up in the analytic snapshot
    instead, for hot paths (principle 4). The label map and the extra scrape-target alert
    names come from the settings (``prometheus_label_map``, ``prometheus_target_alerts``).
    """

    def __init__(self, kg: KnowledgeGraph, *, lookup: Lookup | None = None) -> None:
        self.kg = kg
        self.lookup = lookup or self._fetch
        self.label_map: Mapping[str, str] = kg.settings.prometheus_label_map
        self.target_alerts: Collection[str] = frozenset(kg.settings.prometheus_target_alerts)
        self._known: dict[str, str | None] = {}  # iri -> kind, or None when absent

    @classmethod
    def in_memory(cls, kg: KnowledgeGraph) -> Resolver:
        """A resolver that reads the analytic snapshot (no store round trip)."""
        return cls(kg, lookup=lambda iris: snapshot_lookup(kg.snapshot, iris))

    def _fetch(self, iris: Sequence[str]) -> dict[str, str | None]:
        found, _ = self.kg.store.fetch(list(iris), [])
        out: dict[str, str | None] = {}
        for iri in iris:
            st = found.get(iri)
            out[iri] = st.kind if st is not None and st.valid_to is None else None
        return out

    def resolve_many(self, items: Sequence[tuple[str, Mapping[str, str]]]
                     ) -> list[Resolution]:
        base = self.kg.settings.iri_base
        cands = [candidates(scope, labels, base, label_map=self.label_map,
                            target_alerts=self.target_alerts) for scope, labels in items]
        todo = list({c.iri for cs in cands for c in cs if c.iri not in self._known})
        if todo:
            found = self.lookup(todo)
            for iri in todo:
                self._known[iri] = found.get(iri)
        out = []
        for cs in cands:
            hit = next((c for c in cs if self._known.get(c.iri)), None)
            out.append(Resolution(hit.iri, self._known[hit.iri], hit.how, hit.label)
                       if hit else UNRESOLVED)
        return out

    def resolve(self, scope: str, labels: Mapping[str, str]) -> Resolution:
        return self.resolve_many([(scope, labels)])[0]

    def forget(self) -> None:
        """Drop the cache (after topology changed)."""
        self._known.clear()


def snapshot_lookup(snap: AnalyticSnapshot, iris: Sequence[str]) -> dict[str, str | None]:
    """The kind of each of ``iris`` that is a valid entity of the snapshot, else None."""
    out: dict[str, str | None] = {}
    for iri in iris:
        i = snap.index.get(iri)
        out[iri] = snap.kinds[i] or None if i is not None and snap.alive[i] else None
    return out

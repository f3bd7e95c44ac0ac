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

A pod unknown to the graph maps to its workload by its name's hash suffix
(``cart-5d8f9c7b6-x2xkq`` → Deployment ``cart``, ``db-0`` → StatefulSet ``db``,
``agent-7xk2p`` → DaemonSet ``agent``), marked ``inferred``. Nothing found gives
``unresolved`` with the labels kept by the caller. A ``cluster`` label overrides the scope.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ontology import mint_iri

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

SUBJECT_LABELS = ("pod", "deployment", "statefulset", "daemonset", "replicaset", "node",
                  "namespace", "cluster")
FALLBACK_LABELS = ("service", "instance", "job", "host", "hostname")
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


def candidates(scope: str, labels: Mapping[str, str], base: str) -> list[Candidate]:
    """Candidate entities for ``labels`` in preference order (see the module doc)."""
    scope = labels.get("cluster") or scope
    ns = labels.get("namespace") or "default"
    out: list[Candidate] = []

    def add(kind: str, key: str, label: str, how: str = "exact") -> None:
        out.append(Candidate(mint_iri(scope, kind, key, base), kind, how, label))

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
    if "namespace" in labels:
        add("Namespace", labels["namespace"], "namespace")
    if any(k in labels for k in SUBJECT_LABELS):
        if "cluster" in labels:
            add("KubernetesCluster", labels["cluster"], "cluster")
        return out
    if svc := labels.get("service"):
        add("KubernetesService", f"{ns}/{svc}", "service")
        add("Service", svc, "service")
    for label in ("instance", "host", "hostname"):
        if value := labels.get(label):
            host = _host_part(value)
            for kind in ("KubernetesNode", "ComputeNode", "Router", "Switch", "NetworkNode"):
                add(kind, host, label)
    if job := labels.get("job"):
        add("Service", job, "job")
    return out


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


class Resolver:
    """Resolves many label sets with one store fetch; caches what it has seen."""

    def __init__(self, kg: KnowledgeGraph) -> None:
        self.kg = kg
        self._known: dict[str, str | None] = {}  # iri -> kind, or None when absent

    def resolve_many(self, items: Sequence[tuple[str, Mapping[str, str]]]
                     ) -> list[Resolution]:
        base = self.kg.settings.iri_base
        cands = [candidates(scope, labels, base) for scope, labels in items]
        todo = list({c.iri for cs in cands for c in cs if c.iri not in self._known})
        if todo:
            found, _ = self.kg.store.fetch(todo, [])
            for iri in todo:
                st = found.get(iri)
                self._known[iri] = st.kind if st is not None and st.valid_to is None else None
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

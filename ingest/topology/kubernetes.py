"""Kubernetes manifests (multi-document YAML or JSON; ``kind: List`` expanded), version 1.

The scope is the cluster. What becomes which fact (keys are ``namespace/name``):

- ``KubernetesCluster`` (key: the scope) and each ``Namespace`` (``partOf`` the cluster),
  with the scope-wide source ``topology/k8s:{scope}`` (shared by all manifest files of the
  scope, so never retired by one file's snapshot);
- ``Deployment`` / ``StatefulSet`` / ``DaemonSet``: the workload (``replicas``, pod
  template ``labels`` as JSON, ``selector``) ``inNamespace`` its namespace and ``hostedOn``
  the cluster; each container of its pod template a ``Container`` (key
  ``namespace/workload/container``, ``image``, first ``port``) ``partOf`` the workload;
- ``Service``: a ``KubernetesService`` (``serviceType``, first ``port``, ``selector``) that
  ``selects`` every workload of its namespace whose pod-template labels match its selector,
  and an application ``Service`` of the same name (key: the name) ``implementedBy`` those
  workloads — the node that service-dependency CSVs and alert ``service`` labels name;
- ``Ingress``: ``exposes`` the Kubernetes Services of its backends.

Other kinds (ConfigMap, ServiceAccount, NetworkPolicy, ...) are counted as ignored. A
document that is not valid YAML or lacks ``metadata.name`` is rejected with its line; the
other documents land.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ingest.base import IngestContext, Input, Record
from kg.facts import Entity, Relation

WORKLOAD_KINDS = {"Deployment": "Deployment", "StatefulSet": "StatefulSet",
                  "DaemonSet": "DaemonSet"}
_DOC_START = re.compile(r"^---(\s|$)")


@dataclass
class _Doc:
    line: int
    body: dict[str, Any]
    raw: str


@dataclass
class _Workload:
    iri: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)


def split_documents(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each YAML document, so one bad document stays alone."""
    start, lines = 1, list[str]()
    for n, line in enumerate(text.splitlines(), 1):
        if _DOC_START.match(line):
            if any(s.strip() and not s.lstrip().startswith("#") for s in lines):
                yield start, "\n".join(lines)
            start, lines = n + 1, []
        else:
            lines.append(line)
    if any(s.strip() and not s.lstrip().startswith("#") for s in lines):
        yield start, "\n".join(lines)


def records(ctx: IngestContext, inp: Input, scope: str, source: str) -> Iterator[Record]:
    docs: list[_Doc] = []
    for line, text in split_documents(inp.read_text()):
        try:
            body = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = line + (mark.line if mark else 0)
            ctx.sink.reject(inp.name, f"line {at}", f"not valid YAML: {exc}", text)
            continue
        items = body.get("items") if isinstance(body, dict) and body.get("kind") == "List" \
            else [body]
        for item in items or []:
            if item is None:
                continue
            if not isinstance(item, dict) or "kind" not in item:
                ctx.sink.reject(inp.name, f"line {line}", "a manifest must be an object with "
                                "'kind'", text)
                continue
            docs.append(_Doc(line, item, text))

    # The cluster and its namespaces are shared by every manifest file of the scope: they
    # carry the scope's source, not the file's, so no file's snapshot retires them and
    # ingesting the files in turn does not flip their provenance back and forth.
    shared = f"topology/k8s:{scope}"
    cluster = ctx.iri(scope, "KubernetesCluster", scope)
    yield Record(inp.name, "cluster", [Entity(cluster, "KubernetesCluster", {"name": scope},
                                              shared)])
    namespaces: set[str] = set()
    workloads: list[_Workload] = []

    def namespace(name: str) -> Record:
        iri = ctx.iri(scope, "Namespace", name)
        namespaces.add(name)
        return Record(inp.name, f"namespace {name}", [Entity(iri, "Namespace", {
            "name": name, "namespaceName": name}, shared)],
            [Relation("partOf", iri, cluster, source=shared)])

    later: list[_Doc] = []
    for doc in docs:
        kind = doc.body["kind"]
        meta = doc.body.get("metadata") or {}
        where = f"line {doc.line} ({kind})"
        name = meta.get("name") if isinstance(meta, dict) else None
        if not isinstance(name, str) or not name:
            ctx.sink.reject(inp.name, where, "metadata.name is required", doc.raw)
            continue
        if kind == "Namespace":
            yield namespace(name)
        elif kind in WORKLOAD_KINDS:
            ns = str(meta.get("namespace") or "default")
            if ns not in namespaces:
                yield namespace(ns)
            try:
                rec, wl = _workload(ctx, doc, scope, ns, name, cluster, source, inp.name)
            except (TypeError, ValueError, AttributeError) as exc:
                ctx.sink.reject(inp.name, where, f"bad {kind}: {exc}", doc.raw)
                continue
            workloads.append(wl)
            yield rec
        elif kind in ("Service", "Ingress"):
            later.append(doc)
        else:
            ctx.report.count(f"k8s.ignored.{kind}")
    for doc in later:  # after all workloads, so selectors can match any of them
        kind = doc.body["kind"]
        meta = doc.body["metadata"]
        ns = str(meta.get("namespace") or "default")
        where = f"line {doc.line} ({kind})"
        if ns not in namespaces:
            yield namespace(ns)
        try:
            if kind == "Service":
                rec = _service(ctx, doc, scope, ns, meta["name"], workloads, source, inp.name)
            else:
                rec = _ingress(ctx, doc, scope, ns, meta["name"], source, inp.name)
        except (TypeError, ValueError, AttributeError) as exc:
            ctx.sink.reject(inp.name, where, f"bad {kind}: {exc}", doc.raw)
            continue
        yield rec


def _workload(ctx: IngestContext, doc: _Doc, scope: str, ns: str, name: str, cluster: str,
              source: str, file: str) -> tuple[Record, _Workload]:
    kind = WORKLOAD_KINDS[doc.body["kind"]]
    spec = doc.body.get("spec") or {}
    template = spec.get("template") or {}
    labels = {str(k): str(v) for k, v in ((template.get("metadata") or {}).get("labels")
                                          or {}).items()}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    props: dict[str, Any] = {"name": name, "namespaceName": ns, "labels": _json(labels),
                             "selector": _selector(selector)}
    if kind != "DaemonSet":
        props["replicas"] = int(spec.get("replicas", 1))
    iri = ctx.iri(scope, kind, f"{ns}/{name}")
    entities = [Entity(iri, kind, props, source)]
    relations = [Relation("inNamespace", iri, ctx.iri(scope, "Namespace", ns), source=source),
                 Relation("hostedOn", iri, cluster, source=source)]
    pod_spec = template.get("spec") or {}
    for c in [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or [])]:
        cname = str(c["name"])
        cprops: dict[str, Any] = {"name": cname}
        if c.get("image"):
            cprops["image"] = str(c["image"])
        ports = [p.get("containerPort") for p in c.get("ports") or [] if p.get("containerPort")]
        if ports:
            cprops["port"] = int(ports[0])
        requests = (c.get("resources") or {}).get("requests") or {}
        if "cpu" in requests:
            cprops["cpuRequestCores"] = cpu_cores(requests["cpu"])
        if "memory" in requests:
            cprops["memoryRequestGiB"] = memory_gib(requests["memory"])
        citri = ctx.iri(scope, "Container", f"{ns}/{name}/{cname}")
        entities.append(Entity(citri, "Container", cprops, source))
        relations.append(Relation("partOf", citri, iri, source=source))
    return (Record(file, f"line {doc.line} ({doc.body['kind']} {ns}/{name})", entities,
                   relations, doc.raw), _Workload(iri, ns, labels))


def _service(ctx: IngestContext, doc: _Doc, scope: str, ns: str, name: str,
             workloads: list[_Workload], source: str, file: str) -> Record:
    spec = doc.body.get("spec") or {}
    selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
    props: dict[str, Any] = {"name": name, "namespaceName": ns,
                             "serviceType": str(spec.get("type") or "ClusterIP"),
                             "selector": _selector(selector)}
    ports = [p.get("port") for p in spec.get("ports") or [] if isinstance(p, Mapping)]
    if ports and ports[0] is not None:
        props["port"] = int(ports[0])
    iri = ctx.iri(scope, "KubernetesService", f"{ns}/{name}")
    app = ctx.iri(scope, "Service", name)
    relations = [Relation("inNamespace", iri, ctx.iri(scope, "Namespace", ns), source=source)]
    matched = [w for w in workloads if selector and w.namespace == ns
               and all(w.labels.get(k) == v for k, v in selector.items())]
    for w in matched:
        relations.append(Relation("selects", iri, w.iri, source=source))
        relations.append(Relation("implementedBy", app, w.iri, source=source))
    return Record(file, f"line {doc.line} (Service {ns}/{name})", [
        Entity(iri, "KubernetesService", props, source),
        Entity(app, "Service", {"name": name}, source),
    ], relations, doc.raw)


def _ingress(ctx: IngestContext, doc: _Doc, scope: str, ns: str, name: str, source: str,
             file: str) -> Record:
    spec = doc.body.get("spec") or {}
    backends: list[str] = []

    def backend(b: Mapping[str, Any] | None) -> None:
        if not b:
            return
        svc = (b.get("service") or {}).get("name") or b.get("serviceName")
        if svc:
            backends.append(str(svc))

    backend(spec.get("defaultBackend") or spec.get("backend"))
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            backend(path.get("backend"))
    iri = ctx.iri(scope, "Ingress", f"{ns}/{name}")
    rels = [Relation("inNamespace", iri, ctx.iri(scope, "Namespace", ns), source=source)]
    rels += [Relation("exposes", iri, ctx.iri(scope, "KubernetesService", f"{ns}/{svc}"),
                      source=source) for svc in dict.fromkeys(backends)]
    return Record(file, f"line {doc.line} (Ingress {ns}/{name})",
                  [Entity(iri, "Ingress", {"name": name, "namespaceName": ns}, source)],
                  rels, doc.raw)


_MEM_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")


def cpu_cores(q: Any) -> float:
    """A Kubernetes CPU quantity (``250m``, ``0.5``, ``2``) in cores."""
    text = str(q).strip()
    if text.endswith("m"):
        return float(text[:-1]) / 1000
    return float(text)


def memory_gib(q: Any) -> float:
    """A Kubernetes memory quantity (``64Mi``, ``1G``, ``128974848``) in GiB."""
    m = _QUANTITY.match(str(q).strip())
    if not m or m[2] not in _MEM_UNITS:
        raise ValueError(f"memory quantity {q!r} is not a Kubernetes quantity")
    return float(m[1]) * _MEM_UNITS[m[2]] / 2**30


def _selector(labels: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False)

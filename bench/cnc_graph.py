"""A seeded generator of large, sparse CNC graphs for the store benchmarks.

``generate_cnc(n_entities, n_relations)`` follows the modelling of :mod:`ingest.demo` (the
same classes, relation types and IRI scopes) at any size: regions of sites, each region with
one cloud data centre and edge sites; per site two routers, top-of-rack switches, compute
nodes with a network interface and GPU/NPU accelerators, a Kubernetes cluster with one
Kubernetes node per compute node, namespaces, Deployments with pods and containers,
Kubernetes services and application Services. A backbone of NetworkLinks joins each edge
site to its region's cloud (a third of the edge sites are single-homed) and the clouds in a
ring; regional Networks group routers and links. Deployments call a few others in their
cluster (a DAG, so ``calls+`` stays bounded) and edge ones sometimes call the regional cloud,
routed over the uplink.

The degree distribution is what a real CNC has: most nodes have 2–6 relations, a few hubs
(a cluster, a site, a regional network) have hundreds. The relation budget left after the
structure is filled with pod-to-pod calls along the deployment call graph (service-mesh
edges). Entities are created until ``n_entities`` is reached (the last site may be partial;
a relation to an entity that was not created is dropped), so the counts are exact. Every
fact satisfies ``ontology/shapes.ttl``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from kg.facts import Entity, Relation, Value
from ontology import DEFAULT_BASE, mint_iri

SOURCE = "autocnc-bench"
SITES_PER_REGION = 12  # one cloud data centre and 11 edge sites


@dataclass
class CNCGraph:
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # NetworkLink IRIs
    edge_sites: list[str] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)


@dataclass
class _Builder:
    """Collects facts within the entity budget; relations to missing entities are dropped."""

    rng: random.Random
    budget: int
    base: str
    out: CNCGraph = field(default_factory=CNCGraph)
    _rel_keys: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def full(self) -> bool:
        return len(self.out.entities) >= self.budget

    def ent(self, scope: str, kind: str, key: str, **props: Value) -> str | None:
        if self.full:
            return None
        iri = mint_iri(scope, kind, key, self.base)
        self.out.entities.append(Entity(iri, kind, {"name": key.rsplit("/", 1)[-1], **props}))
        return iri

    def rel(self, kind: str, a: str | None, b: str | None, **props: Value) -> bool:
        if a is None or b is None or (kind, a, b) in self._rel_keys:
            return False
        self._rel_keys.add((kind, a, b))
        self.out.relations.append(Relation(kind, a, b, props))
        return True


@dataclass
class _Site:
    name: str
    iri: str | None
    cloud: bool
    coords: tuple[float, float]
    routers: list[str | None]
    deployments: list[str] = field(default_factory=list)
    pods: dict[str, list[str]] = field(default_factory=dict)  # deployment -> pods
    ksvc: dict[str, str] = field(default_factory=dict)  # deployment -> its KubernetesService
    calls: list[tuple[str, str]] = field(default_factory=list)  # deployment call edges
    cluster: str | None = None


def generate_cnc(n_entities: int, n_relations: int, *, seed: int = 1,
                 base: str = DEFAULT_BASE) -> CNCGraph:
    """A CNC graph with exactly ``n_entities`` entities and at most ``n_relations`` relations."""
    b = _Builder(random.Random(seed), n_entities, base)
    sites: list[_Site] = []
    region = 0
    while not b.full:
        sites.extend(_region(b, region))
        region += 1
    _mesh(b, sites, n_relations)
    del b.out.relations[n_relations:]
    return b.out


def _region(b: _Builder, region: int) -> list[_Site]:
    net = b.ent("bench/backbone", "Network", f"region-{region}")
    lat0, lon0 = b.rng.uniform(22, 44), b.rng.uniform(102, 124)
    sites: list[_Site] = []
    for i in range(SITES_PER_REGION):
        if b.full:
            break
        cloud = i == 0
        name = f"r{region}-{'cloud' if cloud else 'edge'}-{i}"
        coords = (lat0 + b.rng.uniform(-3, 3), lon0 + b.rng.uniform(-3, 3))
        kind = "CloudDataCentre" if cloud else "EdgeSite"
        site = b.ent("bench/backbone", kind, name, latitude=round(coords[0], 4),
                     longitude=round(coords[1], 4), tier="cloud" if cloud else "edge",
                     region=f"region-{region}")
        routers: list[str | None] = []
        for r in (1, 2):
            router = b.ent("bench/backbone", "Router", f"{name}-r{r}", status="up")
            b.rel("locatedIn", router, site)
            b.rel("partOf", router, net)
            routers.append(router)
        s = _Site(name, site, cloud, coords, routers)
        if site and not cloud:
            b.out.edge_sites.append(site)
        _site_compute(b, s)
        sites.append(s)
    _backbone(b, net, sites)
    return sites


def _site_compute(b: _Builder, s: _Site) -> None:
    rng = b.rng
    scope, cscope = f"bench/site/{s.name}", f"bench/cluster/{s.name}"
    s.cluster = b.ent(cscope, "KubernetesCluster", s.name, kubernetesVersion="1.31")
    b.rel("locatedIn", s.cluster, s.iri)
    if s.cluster:
        b.out.clusters.append(s.cluster)
    kube_nodes: list[str] = []
    racks = rng.randint(4, 6) if s.cloud else rng.randint(1, 2)
    for rack in range(racks):
        tor = b.ent(scope, "Switch", f"{s.name}-tor{rack}", status="up")
        b.rel("locatedIn", tor, s.iri)
        for router in s.routers:
            b.rel("linkedTo", tor, router)
        for n in range(rng.randint(8, 12)):
            kn = _compute_node(b, s, scope, cscope, tor, f"{s.name}-rack{rack}-n{n}")
            if kn:
                kube_nodes.append(kn)
    if kube_nodes:
        _workloads(b, s, cscope, kube_nodes)


def _compute_node(b: _Builder, s: _Site, scope: str, cscope: str, tor: str | None,
                  name: str) -> str | None:
    rng = b.rng
    cores = 64 if s.cloud else rng.choice([16, 32])
    node = b.ent(scope, "ComputeNode", name, cpuCores=cores,
                 cpuUsedCores=round(cores * rng.uniform(0.1, 0.9), 1),
                 memoryGiB=float(cores * 4),
                 memoryUsedGiB=round(cores * 4 * rng.uniform(0.1, 0.9), 1),
                 utilisation=round(rng.uniform(0.05, 0.95), 3), status="up")
    b.rel("locatedIn", node, s.iri)
    nic = b.ent(scope, "NetworkInterface", f"{name}-eth0", interfaceName="eth0",
                bandwidthMbps=25_000.0,
                macAddress=":".join(f"{rng.randrange(256):02x}" for _ in range(6)))
    b.rel("hasInterface", node, nic)
    b.rel("linkedTo", nic, tor)
    gpus = (rng.choice([0, 2, 4]) if s.cloud else rng.choice([0, 0, 1]))
    for a in range(gpus):
        kind = "NPU" if (not s.cloud and rng.random() < 0.25) else "GPU"
        acc = b.ent(scope, kind, f"{name}-{kind.lower()}{a}",
                    acceleratorModel="A100" if s.cloud else "L4" if kind == "GPU" else "Ascend310",
                    acceleratorMemoryGiB=80.0 if s.cloud else 24.0, allocated=rng.random() < 0.5)
        b.rel("hasAccelerator", node, acc)
    kn = b.ent(cscope, "KubernetesNode", name)
    b.rel("runsOn", kn, node)
    b.rel("memberOf", kn, s.cluster)
    return kn


def _workloads(b: _Builder, s: _Site, cscope: str, kube_nodes: list[str]) -> None:
    """Namespaces of ~5 deployments each; pods, containers, a Service per namespace."""
    rng = b.rng
    n_dep = int(len(kube_nodes) * rng.uniform(1.2, 1.8))
    for first in range(0, n_dep, 5):
        ns_name = f"app{first // 5}"
        ns = b.ent(cscope, "Namespace", ns_name)
        b.rel("partOf", ns, s.cluster)
        app = b.ent(cscope, "Service", f"{ns_name}/{ns_name}",
                    slaLatencyMs=float(rng.choice([20, 50, 100])))
        deps: list[str] = []
        for d in range(first, min(first + 5, n_dep)):
            dep = _deployment(b, s, cscope, ns, ns_name, f"svc{d}", kube_nodes)
            if dep:
                b.rel("implementedBy", app, dep)
                deps.append(dep)
        # A DAG (so calls+ stays bounded): forward inside the namespace, and the last
        # deployment of a namespace calls into the namespaces built before it.
        for i, dep in enumerate(deps):
            later = deps[i + 1:] or s.deployments
            for callee in rng.sample(later, k=min(len(later), rng.randint(1, 2))):
                if b.rel("calls", dep, callee, callRate=round(rng.uniform(5, 500), 1),
                         protocol="grpc"):
                    s.calls.append((dep, callee))
        s.deployments.extend(deps)


def _deployment(b: _Builder, s: _Site, cscope: str, ns: str | None, ns_name: str, name: str,
                kube_nodes: list[str]) -> str | None:
    rng = b.rng
    replicas = rng.randint(1, 4)
    dep = b.ent(cscope, "Deployment", f"{ns_name}/{name}", replicas=replicas,
                image=f"registry.bench/{ns_name}/{name}:1.0", cpuRequestCores=0.5)
    b.rel("hostedOn", dep, s.cluster)
    b.rel("inNamespace", dep, ns)
    ksvc = b.ent(cscope, "KubernetesService", f"{ns_name}/{name}", port=8080,
                 serviceType="ClusterIP")
    b.rel("selects", ksvc, dep)
    b.rel("inNamespace", ksvc, ns)
    if dep is None:
        return None
    if ksvc:
        s.ksvc[dep] = ksvc
    pods = s.pods.setdefault(dep, [])
    for r in range(replicas):
        pod = b.ent(cscope, "Pod", f"{ns_name}/{name}-{r}", status="Running",
                    restartCount=rng.choice([0, 0, 0, 1, 3]))
        if pod is None:
            break
        pods.append(pod)
        b.rel("manages", dep, pod)
        b.rel("runsOn", pod, rng.choice(kube_nodes))
        b.rel("inNamespace", pod, ns)
        for c in range(rng.choice([1, 1, 2])):
            ctr = b.ent(cscope, "Container", f"{ns_name}/{name}-{r}/c{c}",
                        image=f"registry.bench/{ns_name}/{name}:1.0")
            b.rel("partOf", ctr, pod)
    return dep


def _backbone(b: _Builder, net: str | None, sites: list[_Site]) -> None:
    """Edge sites uplink to the region's cloud; two thirds also link to a neighbour."""
    if not sites:
        return
    cloud = sites[0]

    def link(a: _Site, c: _Site, ra: int, rc: int, bandwidth: float) -> str | None:
        km = _km(a.coords, c.coords)
        lk = b.ent("bench/backbone", "NetworkLink", f"{a.name}--{c.name}",
                   latencyMs=round(0.5 + km * 1.4 / 200.0, 3), bandwidthMbps=bandwidth,
                   utilisation=round(b.rng.uniform(0.05, 0.95), 3), status="up")
        b.rel("connectsTo", lk, a.routers[ra])
        b.rel("connectsTo", lk, c.routers[rc])
        b.rel("partOf", lk, net)
        if lk:
            b.out.links.append(lk)
        return lk

    for i, s in enumerate(sites[1:], start=1):
        up = link(s, cloud, 0, 0, 100_000.0)
        if i % 3 and i + 1 < len(sites):
            link(s, sites[i + 1], 1, 1, 40_000.0)
        # edge deployments sometimes call the cloud's first deployments, over the uplink
        for dep in s.deployments[::7]:
            if cloud.deployments:
                callee = b.rng.choice(cloud.deployments[:10])
                if b.rel("calls", dep, callee, callRate=round(b.rng.uniform(1, 50), 1),
                         protocol="grpc"):
                    s.calls.append((dep, callee))
                b.rel("routedOver", dep, up)


def _mesh(b: _Builder, sites: list[_Site], budget: int) -> None:
    """Service-mesh edges along the deployment call graph until the relation budget is spent:
    a caller's pod calls a callee's pod, or depends on the callee's Kubernetes service."""
    pods = {d: p for s in sites for d, p in s.pods.items()}
    ksvc = {d: k for s in sites for d, k in s.ksvc.items()}
    edges = [(d, e) for s in sites for d, e in s.calls if pods.get(d) and pods.get(e)]
    misses = 0
    while edges and len(b.out.relations) < budget and misses < 1000:
        caller, callee = b.rng.choice(edges)
        pod = b.rng.choice(pods[caller])
        if b.rng.random() < 0.5:
            added = b.rel("calls", pod, b.rng.choice(pods[callee]),
                          callRate=round(b.rng.uniform(1, 100), 1), protocol="grpc")
        else:
            added = b.rel("dependsOn", pod, ksvc.get(callee))
        misses = 0 if added else misses + 1


def _km(a: tuple[float, float], c: tuple[float, float]) -> float:
    (la1, lo1), (la2, lo2) = [(math.radians(x), math.radians(y)) for x, y in (a, c)]
    h = (math.sin((la2 - la1) / 2) ** 2
         + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2)
    return 6371.0 * 2 * math.asin(math.sqrt(h))

"""A seeded generator of a realistic cloud-edge-end CNC, for the demo, tests and benchmarks.

``generate_demo(seed)`` builds: cloud data centres and edge sites (real city coordinates)
joined by a backbone whose link latencies follow great-circle distance (fibre ~200 km/ms
plus equipment delay) and whose bandwidths depend on the tier; a third of the edge sites are
single-homed (one uplink). Every site has a router, compute nodes with CPU, memory and
GPU/NPU accelerators, and a Kubernetes cluster; end devices attach to edge sites. Three
services (VR rendering, video analytics, vehicle-to-everything) run as Deployments with
pods placed on the clusters, call each other, and are routed over the backbone.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from kg.facts import Entity, FactBatch, Relation, Value
from ontology import DEFAULT_BASE, mint_iri

SOURCE = "autocnc-demo"
NETWORK_SCOPE = "demo/backbone"

CLOUDS = [("cloud-beijing", 39.90, 116.40), ("cloud-shanghai", 31.23, 121.47),
          ("cloud-guangzhou", 23.13, 113.26)]
EDGES = [
    ("edge-tianjin", 39.34, 117.36), ("edge-shijiazhuang", 38.04, 114.51),
    ("edge-jinan", 36.65, 117.12), ("edge-qingdao", 36.07, 120.38),
    ("edge-nanjing", 32.06, 118.80), ("edge-hangzhou", 30.27, 120.16),
    ("edge-suzhou", 31.30, 120.58), ("edge-hefei", 31.82, 117.23),
    ("edge-wuhan", 30.59, 114.31), ("edge-changsha", 28.23, 112.94),
    ("edge-nanchang", 28.68, 115.86), ("edge-fuzhou", 26.07, 119.30),
    ("edge-xiamen", 24.48, 118.09), ("edge-shenzhen", 22.54, 114.06),
    ("edge-dongguan", 23.02, 113.75), ("edge-foshan", 23.02, 113.12),
    ("edge-nanning", 22.82, 108.32), ("edge-guiyang", 26.65, 106.63),
    ("edge-zhengzhou", 34.75, 113.62), ("edge-taiyuan", 37.87, 112.55),
    ("edge-shenyang", 41.80, 123.43), ("edge-dalian", 38.91, 121.61),
    ("edge-ningbo", 29.87, 121.54), ("edge-wuxi", 31.49, 120.31),
]
SERVICES = {
    # service: [(component, tier it runs at, needs GPU, calls)]
    "vr-rendering": [("vr-gateway", "edge", False, ["vr-renderer", "vr-session"]),
                     ("vr-renderer", "edge", True, ["vr-assets"]),
                     ("vr-session", "cloud", False, []),
                     ("vr-assets", "cloud", False, [])],
    "video-analytics": [("video-ingest", "edge", False, ["video-detector"]),
                        ("video-detector", "edge", True, ["video-index"]),
                        ("video-index", "cloud", False, [])],
    "v2x": [("v2x-rsu-gateway", "edge", False, ["v2x-fusion"]),
            ("v2x-fusion", "edge", True, ["v2x-map"]),
            ("v2x-map", "cloud", False, [])],
}


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    (la1, lo1), (la2, lo2) = [(math.radians(x), math.radians(y)) for x, y in (a, b)]
    h = (math.sin((la2 - la1) / 2) ** 2
         + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2)
    return 6371.0 * 2 * math.asin(math.sqrt(h))


def link_latency_ms(km: float) -> float:
    """Fibre paths run ~1.4x the great circle at ~200 km/ms, plus ~0.5 ms of equipment."""
    return round(0.5 + km * 1.4 / 200.0, 3)


@dataclass
class DemoCNC:
    """The generated facts plus the handles tests and the demo report need."""

    batch: FactBatch
    sites: dict[str, str] = field(default_factory=dict)  # site name -> IRI
    routers: dict[str, str] = field(default_factory=dict)  # site name -> router IRI
    links: dict[tuple[str, str], str] = field(default_factory=dict)  # (site, site) -> IRI
    single_homed: list[str] = field(default_factory=list)  # edge site names with one uplink
    clusters: dict[str, str] = field(default_factory=dict)  # site name -> cluster IRI
    kube_nodes: dict[str, list[str]] = field(default_factory=dict)  # site -> node IRIs


def generate_demo(seed: int = 7, base: str = DEFAULT_BASE, *, edge_sites: int = 24,
                  end_devices_per_edge: int = 2) -> DemoCNC:
    rng = random.Random(seed)
    ents: list[Entity] = []
    rels: list[Relation] = []
    out = DemoCNC(FactBatch(SOURCE))

    def iri(scope: str, kind: str, key: str) -> str:
        return mint_iri(scope, kind, key, base)

    def ent(i: str, kind: str, **props: Value) -> str:
        ents.append(Entity(i, kind, props))
        return i

    def rel(kind: str, a: str, b: str, **props: Value) -> None:
        rels.append(Relation(kind, a, b, props))

    net = ent(iri(NETWORK_SCOPE, "Network", "backbone"), "Network", name="backbone")
    coords: dict[str, tuple[float, float]] = {}
    edges = EDGES[:edge_sites]
    for name, lat, lon in [*CLOUDS, *edges]:
        cloud = name.startswith("cloud")
        kind = "CloudDataCentre" if cloud else "EdgeSite"
        site = ent(iri(NETWORK_SCOPE, kind, name), kind, name=name, latitude=lat,
                   longitude=lon, tier="cloud" if cloud else "edge",
                   region=name.split("-", 1)[1])
        out.sites[name] = site
        coords[name] = (lat, lon)
        router = ent(iri(NETWORK_SCOPE, "Router", f"{name}-r1"), "Router", name=f"{name}-r1",
                     status="up")
        rel("locatedIn", router, site)
        rel("partOf", router, net)
        out.routers[name] = router
        _site_compute(rng, iri, ent, rel, out, name, site, cloud)

    def link(a: str, b: str, bandwidth: float) -> None:
        key = f"{a}--{b}"
        lk = ent(iri(NETWORK_SCOPE, "NetworkLink", key), "NetworkLink", name=key,
                 latencyMs=link_latency_ms(great_circle_km(coords[a], coords[b])),
                 bandwidthMbps=bandwidth, utilisation=round(rng.uniform(0.05, 0.95), 3),
                 status="up")
        rel("connectsTo", lk, out.routers[a])
        rel("connectsTo", lk, out.routers[b])
        rel("partOf", lk, net)
        out.links[(a, b)] = lk

    cloud_names = [c[0] for c in CLOUDS]
    for i, a in enumerate(cloud_names):
        for b in cloud_names[i + 1:]:
            link(a, b, 400_000.0)
    edge_names = [e[0] for e in edges]
    for i, e in enumerate(edge_names):
        nearest = min(cloud_names, key=lambda c: great_circle_km(coords[e], coords[c]))
        link(e, nearest, 100_000.0)
        if i % 3 == 2:
            out.single_homed.append(e)
    multi = [e for e in edge_names if e not in out.single_homed]
    for e in multi:  # a ring between the multi-homed edge sites, by distance
        others = sorted((o for o in multi if o != e),
                        key=lambda o: great_circle_km(coords[e], coords[o]))
        for o in others[:2]:
            if (o, e) not in out.links and (e, o) not in out.links:
                link(e, o, 40_000.0)
    for e in edge_names:
        for d in range(end_devices_per_edge):
            dev = ent(iri(f"demo/site/{e}", "EndDevice", f"dev-{d}"), "EndDevice",
                      name=f"{e}-dev-{d}", tier="end", cpuCores=rng.choice([4, 8]))
            rel("linkedTo", dev, out.sites[e])
    _services(rng, iri, ent, rel, out, cloud_names, edge_names)
    out.batch = FactBatch.of(SOURCE, ents, rels)
    return out


def _site_compute(rng: random.Random, iri, ent, rel, out: DemoCNC, name: str, site: str,
                  cloud: bool) -> None:
    scope = f"demo/site/{name}"
    cluster_scope = f"demo/cluster/{name}"
    cluster = ent(iri(cluster_scope, "KubernetesCluster", name), "KubernetesCluster",
                  name=f"k8s-{name}", kubernetesVersion="1.31")
    rel("locatedIn", cluster, site)
    out.clusters[name] = cluster
    for n in range(8 if cloud else rng.randint(2, 4)):
        node_name = f"{name}-node-{n}"
        cores = 64 if cloud else rng.choice([16, 32])
        node = ent(iri(scope, "ComputeNode", node_name), "ComputeNode", name=node_name,
                   cpuCores=cores, cpuUsedCores=round(cores * rng.uniform(0.1, 0.9), 1),
                   memoryGiB=float(cores * 4),
                   memoryUsedGiB=round(cores * 4 * rng.uniform(0.1, 0.9), 1), status="up")
        rel("locatedIn", node, site)
        kn = ent(iri(cluster_scope, "KubernetesNode", node_name), "KubernetesNode",
                 name=node_name)
        rel("runsOn", kn, node)
        rel("memberOf", kn, cluster)
        out.kube_nodes.setdefault(name, []).append(kn)
        accel_count = 4 if cloud else rng.choice([0, 1, 2])
        for a in range(accel_count):
            kind = "NPU" if (not cloud and rng.random() < 0.25) else "GPU"
            acc = ent(iri(scope, kind, f"{node_name}-{kind.lower()}{a}"), kind,
                      name=f"{node_name}-{kind.lower()}{a}",
                      acceleratorModel=("A100" if cloud else
                                        "L4" if kind == "GPU" else "Ascend310"),
                      acceleratorMemoryGiB=80.0 if cloud else 24.0,
                      allocated=rng.random() < 0.5)
            rel("hasAccelerator", node, acc)


def _services(rng: random.Random, iri, ent, rel, out: DemoCNC, clouds: list[str],
              edges: list[str]) -> None:
    for svc_name, components in SERVICES.items():
        svc = ent(iri("demo/services", "Service", svc_name), "Service", name=svc_name,
                  slaLatencyMs=20.0 if svc_name != "video-analytics" else 50.0)
        placed: dict[str, list[tuple[str, str]]] = {}  # component -> [(site, deployment)]
        edge_sites = rng.sample(edges, k=max(2, len(edges) // 2))
        for comp, tier, gpu, _ in components:
            sites = edge_sites if tier == "edge" else [rng.choice(clouds)]
            for site in sites:
                cscope = f"demo/cluster/{site}"
                # Kubernetes keys follow the IRI rule: namespace/name (docs/ingest.md)
                dep = ent(iri(cscope, "Deployment", f"default/{comp}"), "Deployment", name=comp,
                          replicas=1, image=f"registry.demo/{svc_name}/{comp}:1.0",
                          cpuRequestCores=2.0 if gpu else 0.5)
                rel("hostedOn", dep, out.clusters[site])
                rel("implementedBy", svc, dep)
                placed.setdefault(comp, []).append((site, dep))
                pod_name = f"{comp}-{rng.getrandbits(36):09x}-{rng.getrandbits(20):05x}"
                pod = ent(iri(cscope, "Pod", f"default/{pod_name}"), "Pod", name=pod_name,
                          namespaceName="default", status="Running", restartCount=0)
                rel("manages", dep, pod)
                rel("runsOn", pod, rng.choice(out.kube_nodes[site]))
        for comp, _, _, calls in components:
            for callee in calls:
                for site, dep in placed[comp]:
                    # call the same-site instance, else the cloud one
                    targets = [d for s, d in placed[callee] if s == site] or \
                        [d for _, d in placed[callee]]
                    for t in targets:
                        rel("calls", dep, t, callRate=round(rng.uniform(5, 500), 1),
                            protocol="grpc")
                    if not any(s == site for s, _ in placed[callee]):
                        cloud_site = placed[callee][0][0]
                        lk = _uplink(out, site, cloud_site)
                        if lk:
                            rel("routedOver", dep, lk)


def _uplink(out: DemoCNC, site: str, cloud: str) -> str | None:
    return out.links.get((site, cloud)) or out.links.get((cloud, site)) or next(
        (lk for (a, b), lk in out.links.items() if site in (a, b) and b.startswith("cloud")),
        None)

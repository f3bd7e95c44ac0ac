"""GraphML networks, as published by the Internet Topology Zoo (format version 1).

- the graph becomes a ``Network`` (key: the scope; ``name`` from the graph's ``label`` or
  ``Network`` attribute; the other graph attributes kept in ``attributes``);
- each ``<node>`` a ``NetworkNode`` (key: the node id) ``partOf`` the network, with ``name``
  (``label``), ``latitude`` / ``longitude`` (``Latitude`` / ``Longitude``, decimal degrees),
  ``country``; other node attributes in ``attributes``;
- each ``<edge>`` a ``NetworkLink`` (key ``{source}--{target}``, ``#{n}`` added for the n-th
  parallel edge) ``partOf`` the network and ``connectsTo`` both end nodes, with
  ``bandwidthMbps`` from ``LinkSpeedRaw`` (bit/s) and ``latencyMs``. The Zoo gives no
  latency: it is estimated from the great-circle distance of the end points at the speed of
  light in fibre (about 2/3 c, 200 km per ms) and the link's ``derivation`` says so. Links
  with an end point without coordinates get no latency, and ``derivation`` says why.

Records: the graph, each node and each edge; a bad one is rejected as ``node <id>`` /
``edge <n>``, the rest lands.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from ingest.base import IngestContext, Input, Record
from kg.facts import Entity, Relation

NS = "{http://graphml.graphdrawing.org/xmlns}"
EARTH_RADIUS_KM = 6371.0088
FIBRE_KM_PER_MS = 199.86  # c / 1.5 (refractive index of silica fibre), in km per ms
NODE_FIELDS = {"label": "name", "Latitude": "latitude", "Longitude": "longitude",
               "Country": "country"}
IGNORED = {"id", "key"}  # GraphML bookkeeping repeated as data


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on the mean Earth radius."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))


def records(ctx: IngestContext, inp: Input, scope: str, source: str) -> Iterator[Record]:
    try:
        root = ET.fromstring(inp.read_bytes())
    except ET.ParseError as exc:
        ctx.sink.reject(inp.name, f"line {exc.position[0]}", f"not well-formed XML: {exc}")
        return
    keys = {k.get("id"): (k.get("attr.name") or k.get("id") or "?",
                          k.get("attr.type") or "string")
            for k in root.iter(f"{NS}key")}
    graph = root.find(f"{NS}graph")
    if graph is None:
        ctx.sink.reject(inp.name, "graphml", "no <graph> element")
        return
    network = ctx.iri(scope, "Network", scope)
    gdata = _data(graph, keys)
    name = str(gdata.pop("label", None) or gdata.get("Network") or scope)
    yield Record(inp.name, "graph", [Entity(network, "Network", {
        "name": name, "attributes": _json(gdata)}, source)])

    coords: dict[str, tuple[float, float]] = {}
    nodes: dict[str, str] = {}
    for node in graph.findall(f"{NS}node"):
        nid = node.get("id")
        where = f"node {nid}"
        if not nid:
            ctx.sink.reject(inp.name, "node", "a <node> without an id")
            continue
        try:
            props, lat_lon = _node_props(_data(node, keys))
        except ValueError as exc:
            ctx.sink.reject(inp.name, where, str(exc), ET.tostring(node, "unicode"))
            continue
        iri = ctx.iri(scope, "NetworkNode", nid)
        nodes[nid] = iri
        if lat_lon:
            coords[nid] = lat_lon
        yield Record(inp.name, where, [Entity(iri, "NetworkNode", props, source)],
                     [Relation("partOf", iri, network, source=source)])

    seen: dict[str, int] = {}
    for n, edge in enumerate(graph.findall(f"{NS}edge")):
        a, b = edge.get("source"), edge.get("target")
        where = f"edge {n} ({a}--{b})"
        if a not in nodes or b not in nodes:
            ctx.sink.reject(inp.name, where, f"end point {a if a not in nodes else b!r} is not "
                            "a node of this graph (or was rejected)", ET.tostring(edge, "unicode"))
            continue
        key = f"{a}--{b}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key += f"#{seen[key] - 1}"
        try:
            props = _link_props(_data(edge, keys), coords.get(a), coords.get(b))
        except ValueError as exc:
            ctx.sink.reject(inp.name, where, str(exc), ET.tostring(edge, "unicode"))
            continue
        link = ctx.iri(scope, "NetworkLink", key)
        ends = dict.fromkeys((nodes[a], nodes[b]))  # a self-loop has one end point
        yield Record(inp.name, where, [Entity(link, "NetworkLink", props, source)], [
            Relation("partOf", link, network, source=source),
            *(Relation("connectsTo", link, end, source=source) for end in ends),
        ])


def _data(elem: ET.Element, keys: dict[str | None, tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in elem.findall(f"{NS}data"):
        name, typ = keys.get(d.get("key"), (d.get("key") or "?", "string"))
        text = (d.text or "").strip()
        if name in IGNORED or text == "":
            continue
        if typ in ("int", "long", "integer"):
            try:
                out[name] = int(float(text))
                continue
            except ValueError:
                pass
        elif typ in ("double", "float"):
            try:
                out[name] = float(text)
                continue
            except ValueError:
                pass
        out[name] = text
    return out


def _node_props(data: dict[str, Any]) -> tuple[dict[str, Any], tuple[float, float] | None]:
    props: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k, v in data.items():
        if k in NODE_FIELDS:
            props[NODE_FIELDS[k]] = v
        else:
            extra[k] = v
    for axis in ("latitude", "longitude"):
        if axis in props and not isinstance(props[axis], float):
            raise ValueError(f"{axis} {props[axis]!r} is not a number")
    if "name" in props:
        props["name"] = str(props["name"])
    if extra:
        props["attributes"] = _json(extra)
    if "latitude" in props and "longitude" in props:
        return props, (props["latitude"], props["longitude"])
    return props, None


def _link_props(data: dict[str, Any], a: tuple[float, float] | None,
                b: tuple[float, float] | None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if label := data.pop("LinkLabel", None):
        props["name"] = str(label)
    raw = data.get("LinkSpeedRaw")
    if isinstance(raw, float) and raw >= 0:
        props["bandwidthMbps"] = raw / 1e6
    if a and b:
        km = great_circle_km(*a, *b)
        props["latencyMs"] = round(km / FIBRE_KM_PER_MS, 4)
        props["derivation"] = (f"latencyMs estimated from the great-circle distance of the "
                               f"end points ({km:.1f} km) at 2/3 c in fibre")
    else:
        props["derivation"] = "latencyMs unknown: an end point has no coordinates"
    if data:
        props["attributes"] = _json(data)
    return props


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False)

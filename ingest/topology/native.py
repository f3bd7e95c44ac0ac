"""The native topology format: entities and relations in YAML or JSON (format version 1).

    formatVersion: 1                 # optional, 1
    entities:
      - id: edge-7                   # natural key within the scope (or an absolute IRI)
        type: EdgeSite               # an ontology class
        properties: {name: Edge 7, latitude: 31.2, longitude: 121.5}
        validFrom: 2026-01-01T00:00:00Z   # optional, ISO 8601 with a zone
    relations:
      - type: locatedIn              # an ontology object property
        source: r1                   # an entity id of this file, or an absolute IRI
        target: edge-7
        properties: {latencyMs: 2.5} # edge properties only

Each entity and each relation is one record (its JSON pointer names it in rejections).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import yaml

from ingest.base import IngestContext, Input, Record
from kg.facts import Entity, Relation, utc

FORMAT_VERSION = 1


def _is_iri(ref: str) -> bool:
    return "://" in ref or ref.startswith("urn:")


def records(ctx: IngestContext, inp: Input, scope: str, source: str) -> Iterator[Record]:
    text = inp.read_text()
    try:
        doc = json.loads(text) if inp.name.lower().endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        line = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None),
                                                       "line", -1) + 1
        ctx.sink.reject(inp.name, f"line {line}", f"not valid YAML/JSON: {exc}")
        return
    if not isinstance(doc, Mapping):
        ctx.sink.reject(inp.name, "/", "a native topology document is an object with "
                        "'entities' and 'relations'")
        return
    version = doc.get("formatVersion", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        ctx.sink.reject(inp.name, "/formatVersion", f"unsupported formatVersion {version!r}")
        return
    ids: dict[str, str] = {}
    raw_entities = doc.get("entities") or []
    for raw in raw_entities:
        if isinstance(raw, Mapping) and isinstance(raw.get("type"), str) and raw.get("id"):
            key = str(raw["id"])
            ids[key] = key if _is_iri(key) else ctx.iri(scope, raw["type"], key)
    for i, raw in enumerate(raw_entities):
        where = f"/entities/{i}"
        try:
            yield Record(inp.name, where, [_entity(raw, ids, source)], raw=_dump(raw))
        except ValueError as exc:
            ctx.sink.reject(inp.name, where, str(exc), _dump(raw))
    for i, raw in enumerate(doc.get("relations") or []):
        where = f"/relations/{i}"
        try:
            yield Record(inp.name, where, relations=[_relation(raw, ids, source)], raw=_dump(raw))
        except ValueError as exc:
            ctx.sink.reject(inp.name, where, str(exc), _dump(raw))


def _entity(raw: Any, ids: Mapping[str, str], source: str) -> Entity:
    if not isinstance(raw, Mapping):
        raise ValueError("an entity must be an object")
    if not isinstance(raw.get("type"), str):
        raise ValueError("field 'type' (an ontology class) is required")
    if not raw.get("id"):
        raise ValueError("field 'id' is required")
    return Entity(ids[str(raw["id"])], raw["type"], _props(raw), source,
                  *_validity(raw))


def _relation(raw: Any, ids: Mapping[str, str], source: str) -> Relation:
    if not isinstance(raw, Mapping):
        raise ValueError("a relation must be an object")
    for name in ("type", "source", "target"):
        if not raw.get(name):
            raise ValueError(f"field '{name}' is required")
    ends = []
    for name in ("source", "target"):
        ref = str(raw[name])
        if ref in ids:
            ends.append(ids[ref])
        elif _is_iri(ref):
            ends.append(ref)
        else:
            raise ValueError(f"field '{name}': {ref!r} is neither an entity id of this file "
                             "nor an absolute IRI")
    return Relation(str(raw["type"]), ends[0], ends[1], _props(raw), source, *_validity(raw))


def _props(raw: Mapping[str, Any]) -> dict[str, Any]:
    props = raw.get("properties") or {}
    if not isinstance(props, Mapping):
        raise ValueError("field 'properties' must be an object")
    return dict(props)


def _validity(raw: Mapping[str, Any]) -> tuple[Any, Any]:
    out: list[datetime | None] = []
    for name in ("validFrom", "validTo"):
        value = raw.get(name)
        if value is None:
            out.append(None)
            continue
        if not isinstance(value, str):  # YAML reads unquoted timestamps as datetimes
            value = value.isoformat()
        out.append(utc(value, what=f"field '{name}'"))
    return out[0], out[1]


def _dump(raw: Any) -> str:
    return json.dumps(raw, default=str, ensure_ascii=False)

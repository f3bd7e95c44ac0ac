"""Alarm and event logs as CSV (format ``events``, version 1) → ``Alarm`` occurrences.

The same event table the causal learner reads (docs/causal.md), so an operator's alarm
export lands in the graph and can be learned from there:

| column | required | meaning |
|---|---|---|
| `time` | yes | ISO 8601 with a zone, or seconds since the Unix epoch (UTC) |
| `event_type` | yes | the alarm code / event name → an ``AlarmType`` (key: the code) |
| `entity` | yes | the natural key of the resource in the scope (a device id) |
| `end_time` | no | when it cleared (same forms as `time`; empty or equal to `time`: not known) |
| `severity` | no | kept as the alarm's severity |

Relative logs whose times start at 0 land in 1970, which keeps their spacing.
Each row becomes an ``Alarm`` (key ``{entity}/{event_type}/{time}``; ``startTime``,
``endTime``, ``severity``, ``name`` = the code) ``instanceOf`` its ``AlarmType`` and
``aboutEntity`` the resource: ``{scope}/{entity_kind}/{entity}`` with option
``entity_kind`` (default ``NetworkNode``). An entity that is not in the graph is kept on the
alarm (``labels`` = ``{"entity": ...}``) without ``aboutEntity``, counted ``unresolved``.
Bad rows are rejected with their line. Option ``column_map`` renames input columns
(JSON ``{"alarm_id": "event_type", "device_id": "entity", ...}``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ingest.base import IngestContext, Input, Record
from kg.facts import Entity, Relation, utc

FORMAT = "events"
REQUIRED = ("time", "event_type", "entity")


def _renames(ctx: IngestContext) -> Mapping[str, str]:
    rename = ctx.options.get("column_map") or {}
    return json.loads(rename) if isinstance(rename, str) else rename


def looks_like_events(ctx: IngestContext, inp: Input, text: str) -> bool:
    """A CSV whose header (after ``column_map``) has an ``event_type`` column."""
    rename = _renames(ctx)
    head = [rename.get(h.strip(), h.strip())
            for h in text.lstrip("\ufeff").split("\n", 1)[0].split(",")]
    return inp.name.lower().endswith(".csv") and "event_type" in head


def _time(raw: str, what: str) -> datetime:
    text = raw.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        return utc(text, what=what)


def ingest_events(ctx: IngestContext, inp: Input, text: str) -> None:
    scope = ctx.scope_for(inp)
    source = f"alerts/{FORMAT}:{scope}"
    kind = str(ctx.options.get("entity_kind") or "NetworkNode")
    if kind not in ctx.kg.onto.classes:
        ctx.sink.reject(inp.name, "file", f"option entity_kind: {kind!r} is not an ontology class")
        return
    rename = _renames(ctx)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = [rename.get(h.strip(), h.strip()) for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        ctx.sink.reject(inp.name, "line 1", f"missing column(s) {', '.join(missing)} "
                        f"(header: {', '.join(header)}; see option column_map)")
        return
    rows = [(n, dict(zip(header, r, strict=False))) for n, r in enumerate(reader, 2) if r]
    entities = {r["entity"].strip() for _, r in rows if r.get("entity")}
    iris = {e: ctx.iri(scope, kind, e) for e in entities}
    known, _ = ctx.kg.store.fetch(list(iris.values()), [])
    types: set[str] = set()
    ctx.progress.start(len(rows), f"alarms {inp.name}")
    for line, row in rows:
        try:
            rec = _record(ctx, inp.name, line, row, scope, source, iris, known, types)
        except (ValueError, KeyError) as exc:
            ctx.sink.reject(inp.name, f"line {line}", str(exc), ",".join(row.values()))
            continue
        ctx.sink.add(rec)
        ctx.progress.advance()
    ctx.report.count("alarms", len(rows))


def _record(ctx: IngestContext, file: str, line: int, row: Mapping[str, Any], scope: str,
            source: str, iris: Mapping[str, str], known: Mapping[str, Any], types: set[str]
            ) -> Record:
    code, entity = str(row["event_type"]).strip(), str(row["entity"]).strip()
    if not code or not entity:
        raise ValueError("event_type and entity must not be empty")
    start = _time(str(row["time"]), "time")
    props: dict[str, Any] = {"name": code, "startTime": start, "eventTime": start}
    end_raw = str(row.get("end_time") or "").strip()
    if end_raw:
        end = _time(end_raw, "end_time")
        if end < start:
            raise ValueError("end_time is before time")
        if end > start:
            props["endTime"] = end
    if row.get("severity"):
        props["severity"] = str(row["severity"]).strip()
    alarm = ctx.iri(scope, "Alarm", f"{entity}/{code}/{start.strftime('%Y%m%dT%H%M%S.%fZ')}")
    atype = ctx.iri(scope, "AlarmType", code)
    ents = [Entity(alarm, "Alarm", props, source, start)]
    if code not in types:
        types.add(code)
        ents.append(Entity(atype, "AlarmType", {"name": code}, source))
    rels = [Relation("instanceOf", alarm, atype, source=source)]
    target = iris[entity]
    if target in known:
        rels.append(Relation("aboutEntity", alarm, target, {"resolution": "exact"}, source))
    else:
        ents[0] = Entity(alarm, "Alarm", {**props, "labels": json.dumps({"entity": entity})},
                         source, start)
        ctx.report.count("unresolved")
    return Record(file, f"line {line}", ents, rels)

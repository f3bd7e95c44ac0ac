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
alarm (``labels`` = ``{"entity": ...}``) without ``aboutEntity``, counted ``unresolved``
and named in the report notes with its alarm count; with option ``unresolved=reference``
the alarm instead refers to the resource it names (``aboutEntity`` with ``resolution``
``unresolved``), which is created with just its name — a topology ingested later fills it
in — so the causal learner can use those alarms too. Option ``time_unit`` (``s``, ``ms``,
``us``, ``ns``; default ``s``) is the unit of numeric times. Bad rows are rejected with
their line. Option ``column_map`` renames input columns
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
UNRESOLVED = ("keep", "reference")  # option unresolved
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
MAX_NOTED = 200  # unresolved devices named in the notes; the count has them all


def _renames(ctx: IngestContext) -> Mapping[str, str]:
    rename = ctx.options.get("column_map") or {}
    return json.loads(rename) if isinstance(rename, str) else rename


def looks_like_events(ctx: IngestContext, inp: Input, text: str) -> bool:
    """A CSV whose header (after ``column_map``) has an ``event_type`` column."""
    rename = _renames(ctx)
    head = [rename.get(h.strip(), h.strip())
            for h in text.lstrip("\ufeff").split("\n", 1)[0].split(",")]
    return inp.name.lower().endswith(".csv") and "event_type" in head


def _time(raw: str, what: str, unit: float = 1.0) -> datetime:
    text = raw.strip()
    try:
        number = float(text)
    except ValueError:
        return utc(text, what=what)
    try:
        return datetime.fromtimestamp(number * unit, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{what} {text!r} is out of range (option time_unit?)") from None


def _options(ctx: IngestContext) -> tuple[str, float] | str:
    """(unresolved, time unit in seconds), or the error naming the bad option."""
    mode = str(ctx.options.get("unresolved") or "keep")
    if mode not in UNRESOLVED:
        return f"option unresolved: {mode!r} is not one of {', '.join(UNRESOLVED)}"
    unit = str(ctx.options.get("time_unit") or "s")
    if unit not in TIME_UNITS:
        return f"option time_unit: {unit!r} is not one of {', '.join(TIME_UNITS)}"
    return mode, TIME_UNITS[unit]


def ingest_events(ctx: IngestContext, inp: Input, text: str) -> None:
    scope = ctx.scope_for(inp)
    source = f"alerts/{FORMAT}:{scope}"
    kind = str(ctx.options.get("entity_kind") or "NetworkNode")
    if kind not in ctx.kg.onto.classes:
        ctx.sink.reject(inp.name, "file", f"option entity_kind: {kind!r} is not an ontology class")
        return
    opts = _options(ctx)
    if isinstance(opts, str):
        ctx.sink.reject(inp.name, "file", opts)
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
    missing_devices: dict[str, int] = {}
    ctx.progress.start(len(rows), f"alarms {inp.name}")
    for line, row in rows:
        try:
            rec = _record(ctx, inp.name, line, row, scope, source, iris, known, types, opts)
        except (ValueError, KeyError) as exc:
            ctx.sink.reject(inp.name, f"line {line}", str(exc), ",".join(row.values()))
            continue
        entity = str(row["entity"]).strip()
        if iris[entity] not in known:
            missing_devices[entity] = missing_devices.get(entity, 0) + 1
        ctx.sink.add(rec)
        ctx.progress.advance()
    ctx.report.count("alarms", len(rows))
    _note_unresolved(ctx, inp.name, kind, missing_devices, opts[0])


def _note_unresolved(ctx: IngestContext, file: str, kind: str, devices: dict[str, int],
                     mode: str) -> None:
    if not devices:
        return
    ctx.report.count("unresolvedDevices", len(devices))
    ranked = sorted(devices.items(), key=lambda kv: (-kv[1], kv[0]))
    listed = ", ".join(f"{d} ({n})" for d, n in ranked[:MAX_NOTED])
    more = f" and {len(ranked) - MAX_NOTED} more" if len(ranked) > MAX_NOTED else ""
    what = ("kept as unresolved references (a topology ingested later fills them in)"
            if mode == "reference" else "kept without a resource: causal learning leaves "
            "them out (ingest the topology first, or use -o unresolved=reference)")
    ctx.report.notes.append(f"{file}: {sum(devices.values())} alarms on {len(devices)} "
                            f"{kind}s not in the graph, {what}: {listed}{more}")


def _record(ctx: IngestContext, file: str, line: int, row: Mapping[str, Any], scope: str,
            source: str, iris: Mapping[str, str], known: Mapping[str, Any], types: set[str],
            opts: tuple[str, float]) -> Record:
    code, entity = str(row["event_type"]).strip(), str(row["entity"]).strip()
    if not code or not entity:
        raise ValueError("event_type and entity must not be empty")
    mode, unit = opts
    start = _time(str(row["time"]), "time", unit)
    props: dict[str, Any] = {"name": code, "startTime": start, "eventTime": start}
    end_raw = str(row.get("end_time") or "").strip()
    if end_raw:
        end = _time(end_raw, "end_time", unit)
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
        return Record(file, f"line {line}", ents, rels)
    ents[0] = Entity(alarm, "Alarm", {**props, "labels": json.dumps({"entity": entity})},
                     source, start)
    ctx.report.count("unresolved")
    if mode == "reference":
        kind = str(ctx.options.get("entity_kind") or "NetworkNode")
        ents.append(Entity(target, kind, {"name": entity}, source))
        rels.append(Relation("aboutEntity", alarm, target, {"resolution": "unresolved"},
                             source))
    return Record(file, f"line {line}", ents, rels)

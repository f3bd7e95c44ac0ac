"""The learner and the knowledge graph: event history in, causal knowledge out.

* :func:`history_from_graph` reads the event table from the graph's events — every
  ``Alert``, ``Alarm``, ``Anomaly`` or ``LogEvent`` with a time (``eventTime``, else
  ``startTime``), an event type (``instanceOf`` an EventType, or ``hasTemplate`` a log
  template) and the resource it is about (``aboutEntity``) — of one scope (events whose IRI
  was minted in the scope or a scope below it) or of all. Event types and entities are
  identified by IRI. Events of other kinds, without a type or time are skipped; typed events
  without a resource (alarms on devices the graph does not know) are counted per device
  name (their ``labels.entity``) in :attr:`EventHistory.unresolved`.
* :func:`topology_from_graph` takes the adjacency between those resources from the analytic
  snapshot (currently valid relations, any type, labelled with the relation type).
* :func:`store_edges` writes each learned edge as a ``CausalEdge`` entity (IRI
  ``mint_iri(scope, "CausalEdge", "{cause}->{effect}")``; ``confidence``, ``support``,
  ``weight``, ``lagSeconds``, ``viaRelation``, ``method``) with ``causeType`` and
  ``effectType`` relations to the event types, plus the short form ``cause -causes-> effect``
  carrying the same numbers. An indirect ("leads to") edge is a ``CausalEdge`` too, with
  ``method`` ``{METHOD}/leads-to``, its path in ``name`` (``a => b => c``) and the hops'
  channels in ``viaRelation``, but without the short form: ``causes`` is a direct link.
  Event types named by IRI are referenced as they are; plain names
  are minted as entities of ``type_class`` (e.g. ``AlarmType``) in the scope. Edges of an
  earlier run of the same scope that were not learned again are retired (``validTo``), never
  deleted; storing the same edges again changes nothing but ``lastSeen``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from kg.facts import Entity, FactBatch, Relation, now_utc, utc
from kg.graph import KnowledgeGraph
from kg.store import WriteSummary
from ontology import mint_iri
from reasoning.causal.events import EventTable, Topology
from reasoning.causal.learn import METHOD, CausalEdge

LEADS_TO_METHOD = f"{METHOD}/leads-to"  # the `method` of indirect ("leads to") edges

EVENT_CLASSES = ("Alert", "Alarm", "Anomaly", "LogEvent")

_EVENTS_QUERY = (
    "MATCH (e:Entity)-[:{rel}]->(t:Entity) MATCH (e)-[:aboutEntity]->(r:Entity) "
    "WHERE e.kind IN $kinds RETURN e.iri, t.iri, r.iri, e.eventTime, e.startTime"
)
_TYPED_QUERY = (
    "MATCH (e:Entity)-[:{rel}]->(t:Entity) WHERE e.kind IN $kinds "
    "RETURN e.iri, e.eventTime, e.startTime, e.labels"
)


@dataclass
class EventHistory:
    """The learner's event table, and the typed events it could not place on a resource."""

    events: EventTable
    unresolved: dict[str, int] = field(default_factory=dict)  # device name -> events

    @property
    def unresolved_events(self) -> int:
        return sum(self.unresolved.values())


def scope_prefix(kg: KnowledgeGraph, scope: str) -> str:
    """The IRI prefix of everything minted in ``scope`` (and the scopes below it)."""
    probe = mint_iri(scope, "k", "k", kg.settings.iri_base)
    return probe[:-len("k/k")]


def history_from_graph(kg: KnowledgeGraph, *, scope: str | None = None,
                       since: datetime | None = None, until: datetime | None = None,
                       kinds: Sequence[str] = EVENT_CLASSES) -> EventHistory:
    """The events of ``scope`` (None: every scope) in ``[since, until)``."""
    lo = utc(since).timestamp() if since else None
    hi = utc(until).timestamp() if until else None
    prefix = scope_prefix(kg, scope) if scope else ""

    def wanted(iri: str, when: object) -> float | None:
        if when is None or not iri.startswith(prefix):
            return None
        t = utc(when).timestamp()  # type: ignore[arg-type]
        return None if (lo is not None and t < lo) or (hi is not None and t >= hi) else t

    seen: dict[str, tuple[float, str, str]] = {}
    typed: dict[str, str] = {}  # typed events in range -> the device name of their labels
    for rel in ("instanceOf", "hasTemplate"):
        res = kg.store.query(_EVENTS_QUERY.format(rel=rel), {"kinds": list(kinds)},
                             max_rows=10_000_000)
        for iri, etype, entity, event_time, start_time in res.rows:
            t = wanted(iri, event_time or start_time)
            if t is not None and iri not in seen:
                seen[iri] = (t, etype, entity)
        res = kg.store.query(_TYPED_QUERY.format(rel=rel), {"kinds": list(kinds)},
                             max_rows=10_000_000)
        for iri, event_time, start_time, labels in res.rows:
            if wanted(iri, event_time or start_time) is not None:
                typed[iri] = _device(labels)
    unresolved: dict[str, int] = {}
    for iri, device in typed.items():
        if iri not in seen:
            unresolved[device] = unresolved.get(device, 0) + 1
    return EventHistory(EventTable.from_rows(sorted(seen.values())),
                        dict(sorted(unresolved.items(), key=lambda kv: (-kv[1], kv[0]))))


def events_from_graph(kg: KnowledgeGraph, *, scope: str | None = None,
                      since: datetime | None = None, until: datetime | None = None,
                      kinds: Sequence[str] = EVENT_CLASSES) -> EventTable:
    """The event table of the graph's events (see :func:`history_from_graph`)."""
    return history_from_graph(kg, scope=scope, since=since, until=until, kinds=kinds).events


def prior_from_graph(kg: KnowledgeGraph, *, exclude_source_prefix: str = "causal/"
                     ) -> list[tuple[str, str, str]]:
    """Asserted causal knowledge in the graph: ``causes`` links between event types that
    no learning run wrote (an alarm catalogue, an expert's file), as required pairs."""
    res = kg.store.query(
        "MATCH (a:Entity)-[r:causes]->(b:Entity) WHERE r.validTo IS NULL "
        "RETURN a.iri, b.iri, r.source", max_rows=1_000_000)
    return sorted({(str(a), str(b), "required") for a, b, src in res.rows
                   if not str(src or "").startswith(exclude_source_prefix)})


def _device(labels: object) -> str:
    try:
        value = json.loads(labels) if isinstance(labels, str) else labels
    except ValueError:
        return "(unknown)"
    if isinstance(value, dict) and value.get("entity"):
        return str(value["entity"])
    return "(unknown)"


def topology_from_graph(kg: KnowledgeGraph, entities: Iterable[str]) -> Topology:
    """Valid relations of the analytic snapshot between the given entities (by IRI)."""
    wanted = set(entities)
    snap = kg.snapshot
    edges = [(s, t, rel) for (rel, s, t), valid in snap.edges.items()
             if valid and s in wanted and t in wanted]
    return Topology.from_edges(edges)


def store_edges(kg: KnowledgeGraph, edges: Sequence[CausalEdge], *, scope: str,
                type_class: str = "EventType", as_of: datetime | None = None
                ) -> WriteSummary:
    """Write ``edges`` as causal knowledge in ``scope``; retire the scope's stale edges."""
    source = f"causal/{METHOD}:{scope}"
    entities: dict[str, Entity] = {}
    relations: list[Relation] = []
    current: set[str] = set()
    indirect: set[str] = set()
    base = kg.settings.iri_base  # the IRIs every other source mints

    def type_iri(name: str) -> str:
        if "://" in name:
            return name
        iri = mint_iri(scope, type_class, name, base)
        entities.setdefault(iri, Entity(iri, type_class, {"name": name}))
        return iri

    for e in edges:
        cause, effect = type_iri(e.cause), type_iri(e.effect)
        iri = mint_iri(scope, "CausalEdge", f"{e.cause}->{e.effect}", base)
        current.add(iri)
        numbers = {"confidence": round(e.confidence, 6), "support": e.support,
                   "weight": round(e.weight, 6), "lagSeconds": round(e.lag_seconds, 3)}
        direct = e.kind == "direct"
        name = (f"{_label(e.cause)} -> {_label(e.effect)}" if direct else
                " => ".join(_label(t) for t in e.path or (e.cause, e.effect)))
        entities[iri] = Entity(iri, "CausalEdge", {
            **numbers, "viaRelation": e.via, "method": METHOD if direct else LEADS_TO_METHOD,
            "name": name})
        relations += [Relation("causeType", iri, cause), Relation("effectType", iri, effect)]
        if direct:  # `causes` is the direct link; an indirect edge has no short form
            relations.append(Relation("causes", cause, effect, numbers))
        else:
            indirect.add(iri)
    retired_at = utc(as_of) if as_of else None
    for iri, cause, effect, method in _stored_edges(kg, source):
        if iri in current and not (iri in indirect and method == METHOD):
            continue
        when = retired_at or now_utc()
        if iri not in current:
            entities[iri] = Entity(iri, "CausalEdge", {}, valid_to=when)
        if method == METHOD:  # it had the direct short form: retire that too
            relations.append(Relation("causes", cause, effect, {}, valid_to=when))
    return kg.write(FactBatch.of(source, entities.values(), relations))


def _stored_edges(kg: KnowledgeGraph, source: str) -> list[tuple[str, str, str, str]]:
    res = kg.store.query(
        "MATCH (c:Entity)-[:causeType]->(a:Entity) MATCH (c)-[:effectType]->(b:Entity) "
        "WHERE c.source = $source AND c.validTo IS NULL RETURN c.iri, a.iri, b.iri, c.method",
        {"source": source}, max_rows=1_000_000)
    return [(str(c), str(a), str(b), str(m)) for c, a, b, m in res.rows]


def _label(name: str) -> str:
    return name.rsplit("/", 1)[-1] if "://" in name else name

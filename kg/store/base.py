"""The store contract and the backend-independent half of a write.

A write is planned in Python, the same way for every backend: read the current state of
the facts a batch touches (one query), merge, and sort each fact into *create*, *update*
(content changed) or *touch* (same content again: only ``lastSeen`` moves). The backend
then applies the plan and appends the batch to its change log in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from kg.errors import FactError
from kg.facts import Entity, FactBatch, Relation, Value, validate
from kg.schema import LABEL_PAIRS, StoreSchema, label_pairs
from ontology import Ontology
from ontology.shapes import ShapeSet

RelKey = tuple[str, str, str]  # (type, start iri, end iri)
COMPACTED = "compacted"  # the batch key of a change-log entry whose payload was dropped


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False  # more rows existed than the row cap

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


@dataclass
class WriteSummary:
    seq: int | None = None  # change-log sequence of the batch; None when nothing was written
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    relations_created: int = 0
    relations_updated: int = 0
    relations_unchanged: int = 0

    @property
    def facts(self) -> int:
        return (self.created + self.updated + self.unchanged + self.relations_created
                + self.relations_updated + self.relations_unchanged)


@dataclass(frozen=True)
class ChangeEntry:
    seq: int
    at: datetime
    batch: dict[str, Any]

    @property
    def opaque(self) -> bool:
        """The entry does not say what changed: a raw Cypher write, or an entry whose payload
        was dropped once every view had applied it (see :class:`Checkpointing`). A view that
        still needs it rebuilds from the store."""
        return "rawCypher" in self.batch or COMPACTED in self.batch

    def ops(self) -> tuple[str | None, str | None]:
        """Per entity and per relation of the batch: ``c`` created, ``u`` updated, ``t``
        touched (see :func:`plan_write`); None for entries written before ops were logged."""
        ops = self.batch.get("ops") or {}
        return ops.get("entities"), ops.get("relations")

    def touched(self) -> tuple[list[str], list[RelKey]]:
        return ([e["iri"] for e in self.batch.get("entities", [])],
                [(r["type"], r["start"], r["end"]) for r in self.batch.get("relations", [])])


@dataclass
class FactState:
    """What the store holds of one fact (entity or relation)."""

    kind: str  # class of an entity; relation type of a relation
    props: dict[str, Value] = field(default_factory=dict)
    source: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    first_seen: datetime | None = None
    last_seen: datetime | None = None

    def content(self) -> tuple[Any, ...]:
        return (self.kind, self.props, self.source, self.valid_from, self.valid_to)

    @classmethod
    def from_row(cls, kind: str, row: Mapping[str, Any],
                 prop_names: Sequence[str] | frozenset[str]) -> FactState:
        """The state in a stored row; ``prop_names`` are the ontology property columns."""
        if len(row) < len(prop_names):  # sparse rows: walk the row, not every column
            names = prop_names if isinstance(prop_names, frozenset) else frozenset(prop_names)
            props = {n: v for n, v in row.items() if n in names and v is not None}
        else:
            props = {n: row[n] for n in prop_names if row.get(n) is not None}
        return cls(
            kind=kind,
            props=props,
            source=row.get("source"), valid_from=row.get("validFrom"),
            valid_to=row.get("validTo"), first_seen=row.get("firstSeen"),
            last_seen=row.get("lastSeen"),
        )


@runtime_checkable
class GraphStore(Protocol):
    """A property-graph store of facts. Backends: ``embedded`` (LadybugDB), ``neo4j``."""

    schema: StoreSchema

    def upsert(self, batch: FactBatch) -> WriteSummary:
        """Write a batch atomically and idempotently; append it to the change log."""
        ...

    def query(self, cypher: str, params: Mapping[str, Any] | None = None, *,
              write: bool = False, timeout_s: float = 30.0,
              max_rows: int = 10_000) -> QueryResult:
        """Run Cypher; read-only and guarded unless ``write``."""
        ...

    def fetch(self, iris: Sequence[str], rel_keys: Sequence[RelKey]
              ) -> tuple[dict[str, FactState], dict[RelKey, FactState]]:
        """Current state of the given entities and relations (absent ones are left out)."""
        ...

    def kinds(self, iris: Sequence[str]) -> dict[str, str]:
        """The class of each given entity (absent ones are left out)."""
        ...

    def read(self, cypher: str, params: Mapping[str, Any] | None = None, *,
             max_rows: int | None = None) -> QueryResult:
        """Run one of the engine's own read queries (not operator input: no guard)."""
        ...

    def live(self, source: str) -> tuple[dict[str, str], list[RelKey]]:
        """Entities (iri -> class) and relations from ``source`` that are not retired."""
        ...

    def scan(self, chunk: int = 20_000) -> Iterator[tuple[dict[str, FactState],
                                                           dict[RelKey, FactState]]]:
        """Every entity and relation, in chunks (for rebuilding derived views)."""
        ...

    def changes(self, after: int, limit: int = 50) -> list[ChangeEntry]:
        """Change-log entries with ``seq > after``, oldest first."""
        ...

    def head(self) -> int:
        """The newest change-log sequence number (0 when empty)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Checkpointing(Protocol):
    """A store that logs writes ahead and folds the log into its files on a checkpoint
    (LadybugDB). A crash replays the log on the next open, so the server checkpoints
    while it runs: the log stays small and a restart quick. Neo4j checkpoints itself."""

    def log_bytes(self) -> int:
        """The size of the write-ahead log now."""
        ...

    def checkpoint(self, applied: int) -> None:
        """Fold the log into the database. The payloads of change-log entries up to
        ``applied`` (every view has them) may be dropped first: they are what a checkpoint
        rewrites, at a cost that grows with the log."""
        ...


@dataclass
class WritePlan:
    """Rows to create, rows to rewrite, and keys whose lastSeen alone moves. A row leaves
    out the properties it does not have; a rewritten row names those it removes (as None)."""

    now: datetime
    create: list[dict[str, Any]] = field(default_factory=list)
    update: list[dict[str, Any]] = field(default_factory=list)
    touch: list[str] = field(default_factory=list)
    rel_create: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rel_update: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rel_touch: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    kind_changed: dict[str, tuple[str, str]] = field(default_factory=dict)  # iri -> (old, new)
    summary: WriteSummary = field(default_factory=WriteSummary)
    changelog: str = ""

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.touch or self.rel_create
                    or self.rel_update or self.rel_touch)


def plan_write(batch: FactBatch, onto: Ontology, shapes: ShapeSet, schema: StoreSchema,
               fetch: Any, now: datetime, *, kinds: Any = None) -> WritePlan:
    """Validate ``batch`` and sort its facts into a :class:`WritePlan`.

    ``fetch`` is the store's :meth:`GraphStore.fetch`; it is called once, for the batch's
    entities and relations. ``kinds`` (the store's ``kinds``, optional) looks up only the class
    of relation ends outside the batch; without it, ``fetch`` reads their full state too.
    Raises FactError (nothing written) for the first invalid fact.

    A fact new to the store without a validity start of its own (its source gave no time)
    is valid from its first write: ``validFrom`` is ``now``, so every fact has one.

    The change-log payload is the validated batch plus ``ops``: one letter per entity and per
    relation, in batch order, saying what the write did with it (``c`` created, ``u`` updated,
    ``t`` touched: same content, only ``lastSeen`` moved). Derived views use it to apply a
    creation or a touch from the payload alone.
    """
    batch = validate(batch, onto)
    batch_iris = [e.iri for e in batch.entities]
    in_batch = set(batch_iris)
    ends = [iri for iri in dict.fromkeys(i for r in batch.relations for i in (r.start, r.end))
            if iri not in in_batch]
    rel_keys = [r.key for r in batch.relations]
    if kinds is None:
        old_entities, old_rels = fetch([*batch_iris, *ends], rel_keys)
        known: dict[str, str] = {}
    else:
        old_entities, old_rels = fetch(batch_iris, rel_keys)
        known = kinds(ends) if ends else {}
    plan = WritePlan(now=now)
    known.update((iri, s.kind) for iri, s in old_entities.items())
    ent_ops = []
    for e in batch.entities:
        old = old_entities.get(e.iri)
        state = _merged(e, old, now)
        shapes.check_entity(onto, e.iri, state.kind, state.props)
        known[e.iri] = state.kind
        if old is None:
            plan.create.append(_entity_row(e.iri, state, onto, now, now))
            plan.summary.created += 1
            ent_ops.append("c")
        elif state.content() == old.content():
            plan.touch.append(e.iri)
            plan.summary.unchanged += 1
            ent_ops.append("t")
        else:
            plan.update.append(_entity_row(e.iri, state, onto, old.first_seen, now)
                               | _removed(old, state))
            if old.kind != state.kind:
                plan.kind_changed[e.iri] = (old.kind, state.kind)
            plan.summary.updated += 1
            ent_ops.append("u")
    rel_ops = []
    for r in batch.relations:
        for end, name in ((r.start, "start"), (r.end, "end")):
            if end not in known:
                raise FactError(r.ref, f"{name} entity {end} is neither in the store nor in "
                                "this batch", field=name)
        shapes.check_relation(onto, r.ref, r.type, known[r.start], known[r.end])
        old = old_rels.get(r.key)
        state = _merged(r, old, now)
        row = {"start": r.start, "end": r.end, **_meta(state), **state.props}
        if old is None:
            row["firstSeen"] = row["lastSeen"] = now
            plan.rel_create.setdefault(r.type, []).append(row)
            plan.summary.relations_created += 1
            rel_ops.append("c")
        elif state.content() == old.content():
            plan.rel_touch.setdefault(r.type, []).append({"start": r.start, "end": r.end})
            plan.summary.relations_unchanged += 1
            rel_ops.append("t")
        else:
            row["firstSeen"], row["lastSeen"] = old.first_seen, now
            row.update(_removed(old, state))
            plan.rel_update.setdefault(r.type, []).append(row)
            plan.summary.relations_updated += 1
            rel_ops.append("u")
    doc = _with_valid_from(batch, now, ent_ops, rel_ops).to_json()
    doc["ops"] = {"entities": "".join(ent_ops), "relations": "".join(rel_ops)}
    plan.changelog = json.dumps(doc, separators=(",", ":"), sort_keys=True)
    return plan


def _merged(fact: Entity | Relation, old: FactState | None, now: datetime) -> FactState:
    """The state after ``fact``: properties merge (None removes), validity is the fact's;
    without a validity start of its own or stored, the fact is valid from ``now``."""
    props = dict(old.props) if old else {}
    for k, v in fact.properties.items():
        if v is None:
            props.pop(k, None)
        else:
            props[k] = v
    return FactState(
        kind=fact.type, props=props, source=fact.source,
        valid_from=fact.valid_from or (old.valid_from if old else None) or _start(fact, now),
        valid_to=fact.valid_to,
    )


def _start(fact: Entity | Relation, now: datetime) -> datetime:
    """The validity start of a fact that has none: its first write, or its end if that is
    earlier (a fact retired as it is first written)."""
    return min(now, fact.valid_to) if fact.valid_to else now


def _with_valid_from(batch: FactBatch, now: datetime, ent_ops: list[str],
                     rel_ops: list[str]) -> FactBatch:
    """``batch`` with ``now`` as the validity start of the facts it creates without one:
    the change log says what the store holds, and a view applies a creation from it."""
    if all(e.valid_from for e in batch.entities) and all(r.valid_from for r in batch.relations):
        return batch
    ents = tuple(replace(e, valid_from=_start(e, now)) if op == "c" and e.valid_from is None
                 else e for e, op in zip(batch.entities, ent_ops, strict=True))
    rels = tuple(replace(r, valid_from=_start(r, now)) if op == "c" and r.valid_from is None
                 else r for r, op in zip(batch.relations, rel_ops, strict=True))
    return FactBatch(batch.source, ents, rels)


def _removed(old: FactState, state: FactState) -> dict[str, None]:
    """The properties an update removes, as nulls: an updated row names every column that
    changes, so a store may rewrite only the columns its rows name."""
    gone = dict.fromkeys(old.props.keys() - state.props.keys())
    if "labels" in gone:
        gone[LABEL_PAIRS] = None
    return gone


def _meta(state: FactState) -> dict[str, Any]:
    return {"source": state.source, "validFrom": state.valid_from, "validTo": state.valid_to}


def _entity_row(iri: str, state: FactState, onto: Ontology, first_seen: datetime | None,
                now: datetime) -> dict[str, Any]:
    """The stored row; absent properties are left out (the stores write them as null)."""
    row = {
        "iri": iri, "kind": state.kind, "types": onto.types_of(state.kind), **_meta(state),
        "firstSeen": first_seen, "lastSeen": now, **state.props,
    }
    if "labels" in state.props:
        row[LABEL_PAIRS] = label_pairs(state.props["labels"])
    return row

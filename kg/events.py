"""The in-memory event index: events by time, kept in step with the change log.

RCA reads per analysis the events (anomalies, log events, alerts, alarms) of an incident's
time window with what they are about, the alerts that are its symptoms, which entities a
metric series observes, and the learned causal edges between event types. As graph-store
queries these cost tens of milliseconds each at 100k entities; this index answers them from
memory, in time proportional to the window (principle 4: no database round trips on hot
paths).

Like :class:`kg.snapshot.AnalyticSnapshot` it is derived from the graph store: built from a
scan, then caught up from change-log payloads alone, without reading the store. That is
exact because a write merges an entity's properties (one absent from the fact is kept, a
None removes it) and takes its class and validity from the fact as given
(:func:`kg.store.base._merged`): the index applies the same merge to the few properties it
keeps (:data:`PROPERTIES`), for every entity, so a later change of class or a late
``startTime`` finds the earlier values. Relations are never deleted (retiring one sets its
``validTo``), and the store queries the index replaces do not look at relation validity,
so its relation maps (:data:`RELATIONS`) only grow.

Results are equal to the store queries' as multisets (``tests/test_rca_events.py`` checks it
on both backends after writes, updates and retirements), in the order the embedded store
gives them: the events' creation order (their node ids in the snapshot, ``order``). Order
matters to RCA only between equals (which of two equally strong anomalies is the onset).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kg.facts import Value, coerce_value
from kg.schema import StoreSchema
from kg.store.base import FactState, RelKey

# What RCA reads of an entity (kg.events users: reasoning/rca).
PROPERTIES = ("startTime", "endTime", "anomalyScore", "metricName", "eventKind", "count",
              "name", "direction", "baselineValue", "observedValue", "alertStatus", "labels",
              "ingestScope", "confidence", "seriesId", "logLevel")
RELATIONS = ("aboutEntity", "instanceOf", "detectedIn", "observes", "causeType",
             "effectType", "partOfIncident", "hasTemplate")
EvidenceRow = tuple[Any, ...]  # the columns of reasoning.rca.EVIDENCE_QUERY
AlertRow = tuple[Any, ...]  # the columns of RCAService._ALERTS
LogCountRow = tuple[Any, ...]  # the columns of reasoning.rca.LOG_COUNTS_QUERY
_NONE: list[str | None] = [None]  # an OPTIONAL MATCH without a match: one null


@dataclass
class EventIndex:
    types: dict[str, str]  # tracked property -> its ontology range kind
    order: Mapping[str, int] = field(default_factory=dict)  # iri -> creation order
    props: dict[str, dict[str, Value]] = field(default_factory=dict)  # iri -> tracked props
    kinds: dict[str, str] = field(default_factory=dict)  # class, of iris in ``props``
    retired: set[str] = field(default_factory=set)  # entities with a validTo
    out: dict[str, dict[str, dict[str, None]]] = field(  # relation -> start -> ends
        default_factory=lambda: {r: {} for r in RELATIONS})
    members: dict[str, dict[str, None]] = field(default_factory=dict)  # incident -> alerts
    times: list[tuple[datetime, str]] = field(default_factory=list)  # sorted (startTime, iri)
    watermark: int = 0
    _observed: frozenset[str] | None = None  # caches, dropped when what they read changes
    _causal: dict[tuple[str, str], float] | None = None
    _series: dict[str, list[str]] | None = None  # entity -> the series observing it

    @classmethod
    def empty(cls, schema: StoreSchema, order: Mapping[str, int]) -> EventIndex:
        """An empty index; ``order`` (the snapshot's node ids) is kept up to date by its
        owner, and must know every entity before the index applies it."""
        types = {name: kind for name, kind in schema.entity_properties if name in PROPERTIES}
        return cls(types, order)

    # -- keeping in step ---------------------------------------------------------------------
    def apply_states(self, ents: Mapping[str, FactState], rels: Collection[RelKey]) -> None:
        """Add scanned facts (their full current state); :meth:`finish_scan` sorts after."""
        for iri, st in ents.items():
            kept = {k: v for k, v in st.props.items() if k in self.types}
            if kept:
                self.props[iri], self.kinds[iri] = kept, st.kind
                at = kept.get("startTime")
                if isinstance(at, datetime):
                    self.times.append((at, iri))
            if st.valid_to is not None:
                self.retired.add(iri)
        for key in rels:
            self._relation(*key)

    def finish_scan(self, watermark: int) -> None:
        self.times.sort()
        self.watermark = watermark
        self._observed = self._causal = self._series = None

    def apply_payload(self, batch: Mapping[str, Any]) -> None:
        """One change-log entry: merge each entity's tracked properties as the store did."""
        for f in batch.get("entities", []):
            self._entity(f["iri"], f["type"], f.get("properties") or {},
                         f.get("validTo") is not None)
        for f in batch.get("relations", []):
            self._relation(f["type"], f["start"], f["end"])

    def _entity(self, iri: str, kind: str, given: Mapping[str, Any], retired: bool) -> None:
        old = self.props.get(iri, {})
        new = dict(old)
        for k, v in given.items():
            if k not in self.types:
                continue
            if v is None:
                new.pop(k, None)
            else:
                new[k] = coerce_value(self.types[k], v)
        if old.get("startTime") != new.get("startTime"):
            self._move(iri, old.get("startTime"), new.get("startTime"))
        if new:
            self.props[iri], self.kinds[iri] = new, kind
        elif iri in self.props:
            del self.props[iri], self.kinds[iri]
        was_retired = iri in self.retired
        if retired:
            self.retired.add(iri)
        else:
            self.retired.discard(iri)
        if was_retired != retired or "confidence" in given:
            self._observed = self._causal = self._series = None

    def _move(self, iri: str, old: Any, new: Any) -> None:
        if isinstance(old, datetime):
            i = bisect.bisect_left(self.times, (old, iri))
            if i < len(self.times) and self.times[i] == (old, iri):
                del self.times[i]
        if isinstance(new, datetime):
            bisect.insort(self.times, (new, iri))

    def _relation(self, rel: str, start: str, end: str) -> None:
        ends = self.out.get(rel)
        if ends is None:
            return
        ends.setdefault(start, {})[end] = None
        if rel == "partOfIncident":
            self.members.setdefault(end, {})[start] = None
        elif rel in ("observes", "causeType", "effectType"):
            self._observed = self._causal = self._series = None

    # -- reading -----------------------------------------------------------------------------
    def between(self, t0: datetime, t1: datetime) -> list[str]:
        """Entities whose ``startTime`` is in ``[t0, t1]``, in creation order."""
        lo = bisect.bisect_left(self.times, (t0, ""))
        hi = bisect.bisect_right(self.times, (t1, "\U0010ffff"), lo)
        return sorted((iri for _, iri in self.times[lo:hi]), key=self.order.__getitem__)

    def targets(self, rel: str, iri: str) -> list[str]:
        return list(self.out[rel].get(iri, ()))

    def evidence_rows(self, kinds: Collection[str], t0: datetime, t1: datetime
                      ) -> list[EvidenceRow]:
        """The rows of ``reasoning.rca.EVIDENCE_QUERY``: events of ``kinds`` starting in
        ``[t0, t1]``, one per entity they are about × event type × series (OPTIONAL)."""
        rows: list[EvidenceRow] = []
        for iri in self.between(t0, t1):
            kind = self.kinds[iri]
            if kind not in kinds:
                continue
            p = self.props[iri]
            for x in self.targets("aboutEntity", iri):
                for t in self.targets("instanceOf", iri) or _NONE:
                    for s in self.targets("detectedIn", iri) or _NONE:
                        sp = self.props.get(s, {}) if s else {}
                        rows.append((iri, kind, x, p.get("startTime"), p.get("anomalyScore"),
                                     p.get("metricName"), p.get("eventKind"), p.get("count"),
                                     p.get("name"), t, p.get("direction"),
                                     p.get("baselineValue"), p.get("observedValue"),
                                     p.get("endTime"), sp.get("name"),
                                     sp.get("seriesId")))
        return rows

    def log_count_rows(self, t0: datetime, t1: datetime) -> list[LogCountRow]:
        """The rows of ``reasoning.rca.LOG_COUNTS_QUERY``: template counts of log streams
        (``LogEvent`` ``template-count``) starting in ``[t0, t1]``, one per entity they are
        about × template (OPTIONAL)."""
        rows: list[LogCountRow] = []
        for iri in self.between(t0, t1):
            p = self.props[iri]
            if self.kinds[iri] != "LogEvent" or p.get("eventKind") != "template-count":
                continue
            for x in self.targets("aboutEntity", iri):
                for t in self.targets("hasTemplate", iri) or _NONE:
                    rows.append((iri, x, p.get("startTime"), p.get("count"), t,
                                 p.get("logLevel")))
        return rows

    def alert_rows(self, iris: Collection[str]) -> list[AlertRow]:
        """The rows of ``RCAService._ALERTS`` for the entities ``iris`` that are alerts:
        one per entity about × definition (OPTIONAL)."""
        rows: list[AlertRow] = []
        for iri in iris:
            if self.kinds.get(iri) != "Alert":
                continue
            p = self.props[iri]
            for x in self.targets("aboutEntity", iri) or _NONE:
                for d in self.targets("instanceOf", iri) or _NONE:
                    rows.append((iri, p.get("name"), p.get("startTime"), x, d,
                                 p.get("alertStatus"), p.get("labels")))
        return rows

    def alerts_between(self, t0: datetime, t1: datetime, scope: str | None = None
                       ) -> list[AlertRow]:
        return self.alert_rows([i for i in self.between(t0, t1)
                                if scope is None or self.props[i].get("ingestScope") == scope])

    def alerts_of_incident(self, incident: str) -> list[AlertRow]:
        return self.alert_rows(sorted(self.members.get(incident, {}),
                                      key=self.order.__getitem__))

    def observed(self) -> frozenset[str]:
        """Entities that a series not retired ``observes`` (any relation validity)."""
        if self._observed is None:
            self._observed = frozenset(x for s, xs in self.out["observes"].items()
                                       if s not in self.retired for x in xs)
        return self._observed

    def series_of(self, entity: str) -> list[tuple[str, str, dict[str, str]]]:
        """``(series id, metric name, labels)`` of the series not retired that ``observes``
        ``entity`` (the local time-series store's ids), in creation order."""
        if self._series is None:
            found: dict[str, list[str]] = {}
            for s in sorted(self.out["observes"], key=self.order.__getitem__):
                if s not in self.retired:
                    for x in self.out["observes"][s]:
                        found.setdefault(x, []).append(s)
            self._series = found
        out = []
        for s in self._series.get(entity, ()):
            p = self.props.get(s, {})
            sid, metric = p.get("seriesId"), p.get("metricName")
            if sid and metric:
                raw = p.get("labels")
                labels = json.loads(raw) if isinstance(raw, str) and raw else {}
                out.append((str(sid), str(metric), {str(k): str(v) for k, v in labels.items()}))
        return out

    def causal_edges(self) -> dict[tuple[str, str], float]:
        """(cause type, effect type) -> confidence of the causal edges not retired; where two
        name one pair, the one created last wins."""
        if self._causal is None:
            out: dict[tuple[str, str], float] = {}
            effects = self.out["effectType"]
            for c in sorted(self.out["causeType"], key=self.order.__getitem__):
                causes = self.out["causeType"][c]
                if c in self.retired or c not in effects:
                    continue
                conf = self.props.get(c, {}).get("confidence")
                for a in causes:
                    for b in effects[c]:
                        out[(a, b)] = float(conf or 0.0)  # type: ignore[arg-type]
            self._causal = out
        return self._causal

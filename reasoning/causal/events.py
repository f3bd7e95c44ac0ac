"""The learner's input: an event table and the topology its entities sit on.

**Event table** (format version 1). One row per event occurrence: *when* (UTC), *what kind*
(the event type: an alert definition, a log template, an alarm type) and *where* (the entity
the event is about). Nothing else is read: severities, durations, labels play no part. As a
CSV file (UTF-8, header required, extra columns ignored)::

    time,event_type,entity
    2021-03-01T00:00:00Z,ALM-LINK-DOWN,ne-107
    1614556823,ALM-LOS,ne-260

``time`` is ISO 8601 with a zone (``Z`` or ``+hh:mm``) or a number of seconds since the Unix
epoch (UTC); ``event_type`` and ``entity`` are non-empty strings (names or IRIs). Rows are
checked one by one: a bad row raises :class:`CausalInputError` naming file and line.

**Topology** (format version 1). Undirected adjacency between entities, with the name of the
relation that links them (``connectsTo``, ``dependsOn``, ...). As a CSV file::

    source,target,relation
    ne-0,ne-204,connectsTo

``relation`` is optional (default ``linkedTo``). Self loops are dropped; an entity of the
event table that has no row is simply isolated (its events can only excite events of the
same entity).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from kg.errors import AutoCNCError
from kg.facts import utc

FORMAT_VERSION = 1
DEFAULT_RELATION = "linkedTo"
EVENT_COLUMNS = ("time", "event_type", "entity")
TOPOLOGY_COLUMNS = ("source", "target", "relation")


class CausalInputError(AutoCNCError):
    """An event table or topology cannot be read; ``where`` names the file and line."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class EventTable:
    """Events as parallel arrays, sorted by time; types and entities are coded as ints.

    ``times`` are seconds since the Unix epoch (UTC, float64); ``types[k]`` indexes
    ``type_names`` and ``entities[k]`` indexes ``entity_names``.
    """

    times: np.ndarray
    types: np.ndarray
    entities: np.ndarray
    type_names: tuple[str, ...]
    entity_names: tuple[str, ...]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[float | datetime | str, str, str]]) -> EventTable:
        """Build from ``(time, event_type, entity)`` rows; names are coded in sorted order
        so that the same events always give the same codes (learning is deterministic)."""
        times: list[float] = []
        types: list[str] = []
        ents: list[str] = []
        for n, (t, k, e) in enumerate(rows, 1):
            times.append(_seconds(t, f"row {n}"))
            types.append(_name(k, f"row {n}", "event_type"))
            ents.append(_name(e, f"row {n}", "entity"))
        return cls.from_arrays(np.asarray(times, dtype=np.float64), types, ents)

    @classmethod
    def from_arrays(cls, times: np.ndarray, types: Sequence[str],
                    entities: Sequence[str]) -> EventTable:
        type_names = tuple(sorted(set(types)))
        entity_names = tuple(sorted(set(entities)))
        tcode = {n: i for i, n in enumerate(type_names)}
        ecode = {n: i for i, n in enumerate(entity_names)}
        k = np.fromiter((tcode[x] for x in types), dtype=np.int64, count=len(types))
        v = np.fromiter((ecode[x] for x in entities), dtype=np.int64, count=len(entities))
        t = np.asarray(times, dtype=np.float64)
        order = np.lexsort((k, v, t))  # time first, then entity and type: a stable order
        return cls(t[order], k[order], v[order], type_names, entity_names)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def n_types(self) -> int:
        return len(self.type_names)

    @property
    def n_entities(self) -> int:
        return len(self.entity_names)

    @property
    def span(self) -> tuple[float, float]:
        """First and last event time (seconds); (0, 0) when empty."""
        if len(self.times) == 0:
            return (0.0, 0.0)
        return (float(self.times[0]), float(self.times[-1]))

    def counts(self) -> np.ndarray:
        """Number of events of each type."""
        return np.bincount(self.types, minlength=self.n_types)


@dataclass(frozen=True)
class Topology:
    """Undirected, labelled adjacency between entity names."""

    edges: tuple[tuple[str, str, str], ...] = ()  # (a, b, relation), a < b, unique
    relations: tuple[str, ...] = field(default=())

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str] | tuple[str, str, str]]) -> Topology:
        seen: set[tuple[str, str, str]] = set()
        for edge in edges:
            a, b = str(edge[0]), str(edge[1])
            rel = str(edge[2]) if len(edge) > 2 and edge[2] else DEFAULT_RELATION
            if a == b:
                continue
            seen.add((min(a, b), max(a, b), rel))
        ordered = tuple(sorted(seen))
        return cls(ordered, tuple(sorted({r for _, _, r in ordered})))

    def neighbours(self, names: Sequence[str]) -> dict[str, list[tuple[int, int]]]:
        """Per relation: the (entity, neighbour) index pairs among ``names``, both ways."""
        index = {n: i for i, n in enumerate(names)}
        out: dict[str, list[tuple[int, int]]] = {r: [] for r in self.relations}
        for a, b, rel in self.edges:
            ia, ib = index.get(a), index.get(b)
            if ia is None or ib is None:
                continue
            out[rel] += [(ia, ib), (ib, ia)]
        return out


# -- CSV files -------------------------------------------------------------------------------

def read_events_csv(path: str | Path) -> EventTable:
    """Read an event table CSV (columns ``time,event_type,entity``)."""
    rows: list[tuple[float, str, str]] = []
    with _open_csv(path, EVENT_COLUMNS[:3], EVENT_COLUMNS) as (reader, name):
        for n, row in enumerate(reader, 2):
            where = f"{name} line {n}"
            rows.append((_seconds(row.get("time"), where),
                         _name(row.get("event_type"), where, "event_type"),
                         _name(row.get("entity"), where, "entity")))
    times = np.fromiter((r[0] for r in rows), dtype=np.float64, count=len(rows))
    return EventTable.from_arrays(times, [r[1] for r in rows], [r[2] for r in rows])


def read_topology_csv(path: str | Path) -> Topology:
    """Read a topology CSV (columns ``source,target[,relation]``)."""
    edges: list[tuple[str, str, str]] = []
    with _open_csv(path, TOPOLOGY_COLUMNS[:2], TOPOLOGY_COLUMNS) as (reader, name):
        for n, row in enumerate(reader, 2):
            where = f"{name} line {n}"
            edges.append((_name(row.get("source"), where, "source"),
                          _name(row.get("target"), where, "target"),
                          (row.get("relation") or "").strip() or DEFAULT_RELATION))
    return Topology.from_edges(edges)


def write_events_csv(path: str | Path, rows: Iterable[tuple[float | str, str, str]]) -> int:
    """Write ``(time, event_type, entity)`` rows as an event table CSV; returns the count."""
    n = 0
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(EVENT_COLUMNS)
        for t, k, e in rows:
            out.writerow((_format_time(t), k, e))
            n += 1
    return n


def write_topology_csv(path: str | Path, edges: Iterable[tuple[str, str, str]]) -> int:
    n = 0
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(TOPOLOGY_COLUMNS)
        for edge in edges:
            out.writerow(edge)
            n += 1
    return n


class _open_csv:
    """A DictReader over a CSV file whose header must contain ``required``."""

    def __init__(self, path: str | Path, required: Sequence[str], known: Sequence[str]) -> None:
        self.path = Path(path)
        self.required = required
        self.known = known

    def __enter__(self) -> tuple[csv.DictReader[str], str]:
        self.fh = self.path.open(encoding="utf-8", newline="")
        reader = csv.DictReader(self.fh)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in self.required if c not in header]
        if missing:
            self.fh.close()
            raise CausalInputError(f"{self.path} line 1",
                                   f"missing column(s) {missing}; expected {list(self.known)}")
        reader.fieldnames = header
        return reader, str(self.path)

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def _seconds(value: object, where: str) -> float:
    if isinstance(value, datetime):
        try:
            return utc(value).timestamp()
        except ValueError as exc:
            raise CausalInputError(where, str(exc)) from exc
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise CausalInputError(where, f"time {value!r} is not finite")
        return float(value)
    text = str(value or "").strip()
    if not text:
        raise CausalInputError(where, "empty time")
    try:
        number = float(text)
    except ValueError:
        try:
            return utc(text, what="time").timestamp()
        except ValueError as exc:
            raise CausalInputError(where, str(exc)) from exc
    if not math.isfinite(number):
        raise CausalInputError(where, f"time {text!r} is not finite")
    return number


def _name(value: object, where: str, column: str) -> str:
    text = str(value or "").strip()
    if not text:
        raise CausalInputError(where, f"empty {column}")
    return text


def _format_time(t: float | str) -> str:
    return t if isinstance(t, str) else repr(float(t))

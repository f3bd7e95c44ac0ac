"""The one fact model: entities and relations with typed values and provenance.

A *fact* is one entity or one relation. Every fact carries its ``source`` (where it came
from), its validity in source time (``valid_from`` / ``valid_to``) and, once written, when
it was first and last seen (ingest time). All times are UTC.

A batch of facts is validated as a whole against the ontology (types, property names and
value types) and the SHACL shapes before anything is written; the first invalid fact raises
:class:`~kg.errors.FactError` naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kg.errors import FactError
from ontology import DEFAULT_BASE, Ontology, mint_iri

Value = str | int | float | bool | datetime | None

FORMAT_VERSION = 1  # of the JSON wire format of a batch (also the change-log payload)


def utc(value: datetime | str, *, what: str = "timestamp") -> datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO-8601 string with a zone."""
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{what} {value!r} is not ISO 8601") from exc
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a datetime or an ISO-8601 string, got {value!r}")
    if value.tzinfo is None:
        raise ValueError(f"{what} {value.isoformat()} has no time zone; give one (e.g. Z)")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Entity:
    """A node: an IRI, its ontology class (``type``) and typed properties."""

    iri: str
    type: str
    properties: Mapping[str, Value] = field(default_factory=dict)
    source: str | None = None  # defaults to the batch's source
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    @classmethod
    def minted(cls, scope: str, type: str, key: str, base: str = DEFAULT_BASE,
               **kwargs: Any) -> Entity:
        return cls(mint_iri(scope, type, key, base), type, **kwargs)

    @property
    def ref(self) -> str:
        return self.iri


@dataclass(frozen=True)
class Relation:
    """A directed edge ``start -type-> end`` typed by an ontology object property."""

    type: str
    start: str
    end: str
    properties: Mapping[str, Value] = field(default_factory=dict)
    source: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.type, self.start, self.end)

    @property
    def ref(self) -> str:
        return f"{self.type} {self.start} -> {self.end}"


@dataclass(frozen=True)
class FactBatch:
    """Facts written together: all of them, or none."""

    source: str
    entities: tuple[Entity, ...] = ()
    relations: tuple[Relation, ...] = ()

    def __len__(self) -> int:
        return len(self.entities) + len(self.relations)

    @classmethod
    def of(cls, source: str, entities: Iterable[Entity] = (),
           relations: Iterable[Relation] = ()) -> FactBatch:
        return cls(source, tuple(entities), tuple(relations))

    # -- wire format -------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def fact(f: Entity | Relation) -> dict[str, Any]:
            out: dict[str, Any] = (
                {"iri": f.iri, "type": f.type} if isinstance(f, Entity)
                else {"type": f.type, "start": f.start, "end": f.end}
            )
            if f.properties:
                out["properties"] = {k: _json_value(v) for k, v in f.properties.items()}
            if f.source:
                out["source"] = f.source
            if f.valid_from:
                out["validFrom"] = f.valid_from.isoformat()
            if f.valid_to:
                out["validTo"] = f.valid_to.isoformat()
            return out

        return {
            "formatVersion": FORMAT_VERSION,
            "source": self.source,
            "entities": [fact(e) for e in self.entities],
            "relations": [fact(r) for r in self.relations],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], *, base: str = DEFAULT_BASE,
                  default_source: str | None = None) -> FactBatch:
        """Read a batch document; entities give ``iri`` or ``scope`` + ``key``.

        Property values stay as given (strings for timestamps); :func:`validate` types them.
        """
        if not isinstance(doc, Mapping):
            raise FactError("batch", "a fact document must be a JSON/YAML object")
        version = doc.get("formatVersion", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise FactError("batch", f"unsupported formatVersion {version!r}",
                            field="formatVersion")
        source = doc.get("source", default_source)
        if not isinstance(source, str) or not source:
            raise FactError("batch", "a batch needs a non-empty 'source'", field="source")
        entities = []
        for i, raw in enumerate(doc.get("entities") or []):
            where = f"entities[{i}]"
            if not isinstance(raw, Mapping):
                raise FactError(where, "must be an object")
            iri = raw.get("iri")
            etype = raw.get("type")
            if not isinstance(etype, str):
                raise FactError(where, "needs a 'type' (an ontology class)", field="type")
            if iri is None:
                scope, key = raw.get("scope"), raw.get("key")
                if not isinstance(scope, str) or not scope or key in (None, ""):
                    raise FactError(where, "needs 'iri', or 'scope' and 'key'", field="iri")
                try:
                    iri = mint_iri(scope, etype, str(key), base)
                except UnicodeEncodeError:
                    raise FactError(where, "scope or key is no Unicode text (a lone "
                                    "surrogate)", field="key") from None
            entities.append(Entity(
                str(iri), etype, dict(raw.get("properties") or {}), raw.get("source"),
                _opt_time(raw.get("validFrom"), where, "validFrom"),
                _opt_time(raw.get("validTo"), where, "validTo"),
            ))
        relations = []
        for i, raw in enumerate(doc.get("relations") or []):
            where = f"relations[{i}]"
            if not isinstance(raw, Mapping):
                raise FactError(where, "must be an object")
            for name in ("type", "start", "end"):
                if not isinstance(raw.get(name), str) or not raw.get(name):
                    raise FactError(where, f"needs '{name}'", field=name)
            relations.append(Relation(
                raw["type"], raw["start"], raw["end"], dict(raw.get("properties") or {}),
                raw.get("source"),
                _opt_time(raw.get("validFrom"), where, "validFrom"),
                _opt_time(raw.get("validTo"), where, "validTo"),
            ))
        return cls(source, tuple(entities), tuple(relations))


def _json_value(v: Value) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def _opt_time(raw: Any, where: str, name: str) -> datetime | None:
    if raw is None:
        return None
    try:
        return utc(raw, what=name)
    except ValueError as exc:
        raise FactError(where, str(exc), field=name) from exc


# -- validation against the ontology ---------------------------------------------------------

def coerce_value(kind: str, value: Any) -> Value:
    """``value`` as the Python type of an ontology range kind, or ValueError."""
    if value is None:
        return None
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "double":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"{value!r} is not a finite number")
            return float(value)
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
    elif kind == "datetime":
        return utc(value)
    raise ValueError(f"expected {kind}, got {type(value).__name__} {value!r}")


_NOT_IN_IRI = re.compile(r'[\x00-\x20<>"{}|\\^`]')  # (N-Triples IRIREF excludes these too)


def _check_iri(ref: str, iri: str, name: str) -> None:
    if ":" not in iri or _NOT_IN_IRI.search(iri):
        raise FactError(ref, f"{iri!r} is not an absolute IRI", field=name)


def validate(batch: FactBatch, onto: Ontology) -> FactBatch:
    """The batch with every value typed and every fact checked against the ontology.

    Raises FactError naming the first bad fact; a duplicate fact in one batch is an error.
    """
    entities: list[Entity] = []
    seen: set[str] = set()
    for e in batch.entities:
        _check_iri(e.iri, e.iri, "iri")
        if e.iri in seen:
            raise FactError(e.iri, "appears twice in the batch")
        seen.add(e.iri)
        if e.type not in onto.classes:
            raise FactError(e.iri, f"unknown type {e.type!r} (not a class of the ontology)",
                            field="type")
        entities.append(Entity(
            e.iri, e.type, _typed_props(e.ref, e.properties, onto, edge=False),
            e.source or batch.source, e.valid_from, e.valid_to,
        ))
        _check_validity(e)
    relations: list[Relation] = []
    seen_rel: set[tuple[str, str, str]] = set()
    for r in batch.relations:
        if r.type not in onto.object_properties:
            raise FactError(r.ref, f"unknown relation type {r.type!r} "
                            "(not an object property of the ontology)", field="type")
        _check_iri(r.ref, r.start, "start")
        _check_iri(r.ref, r.end, "end")
        if r.key in seen_rel:
            raise FactError(r.ref, "appears twice in the batch")
        seen_rel.add(r.key)
        relations.append(Relation(
            r.type, r.start, r.end, _typed_props(r.ref, r.properties, onto, edge=True),
            r.source or batch.source, r.valid_from, r.valid_to,
        ))
        _check_validity(r)
    return FactBatch(batch.source, tuple(entities), tuple(relations))


def _check_validity(f: Entity | Relation) -> None:
    if f.valid_from and f.valid_to and f.valid_to < f.valid_from:
        raise FactError(f.ref, "validTo is before validFrom", field="validTo")


def _typed_props(ref: str, props: Mapping[str, Any], onto: Ontology, *,
                 edge: bool) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for name, value in props.items():
        prop = onto.datatype_properties.get(name)
        if prop is None:
            raise FactError(ref, f"unknown property {name!r} (not a datatype property "
                            "of the ontology)", field=name)
        if edge and not prop.edge:
            raise FactError(ref, f"property {name!r} is not allowed on relations "
                            "(not marked cnc:edgeProperty)", field=name)
        try:
            out[name] = coerce_value(prop.kind, value)
        except ValueError as exc:
            raise FactError(ref, str(exc), field=name) from exc
    return out


MAX_VALUE_BYTES = 64 * 1024  # the default of Settings.max_value_bytes


def too_long(text: str, limit: int) -> bool:
    """Whether ``text`` takes more than ``limit`` bytes in UTF-8 (encoded only when its
    length alone cannot tell)."""
    n = len(text)
    return n > limit or (n * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit)


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_values(batch: FactBatch, limit: int = MAX_VALUE_BYTES) -> None:
    """Raise FactError for the first IRI, source or string value over ``limit`` bytes, or
    that is no Unicode text (a lone surrogate, as JSON's ``\\udc00`` gives).

    One oversized value would otherwise land in the graph store and then be refused by the
    RDF view (its parser takes lines of up to 16 MiB); the limit is
    :attr:`kg.config.Settings.max_value_bytes`."""
    def check(ref: str, name: str, value: Any) -> None:
        if not isinstance(value, str):
            return
        if too_long(value, limit):
            raise FactError(ref, f"{name} is {len(value.encode('utf-8', 'surrogatepass'))} "
                            f"bytes, over the limit of {limit} bytes per value "
                            "(setting max_value_bytes)", field=name)
        if (m := _SURROGATE.search(value)) is not None:
            raise FactError(ref, f"{name} is no Unicode text: a lone surrogate "
                            f"U+{ord(m.group()):04X} at character {m.start() + 1}",
                            field=name)

    check("batch", "source", batch.source)
    for e in batch.entities:
        check(e.iri, "iri", e.iri)
        for name, value in (("type", e.type), ("source", e.source), *e.properties.items()):
            check(e.iri, name, value)
    for r in batch.relations:
        for name, value in (("start", r.start), ("end", r.end), ("type", r.type),
                            ("source", r.source), *r.properties.items()):
            check(r.ref, name, value)


def now_utc() -> datetime:
    return datetime.now(UTC)

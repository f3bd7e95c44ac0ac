"""SHACL shapes compiled to fast checks for the write path.

pySHACL validates a few thousand facts per second; the write path must do far more. The
shapes in ``shapes.ttl`` use a small subset of SHACL Core (listed in ``SUPPORTED``), which
this module compiles into plain Python checks. A shape using anything else is rejected
when the shapes are loaded, so no constraint is silently ignored; the test suite checks that
these checks and pySHACL agree on the same data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from ontology import ONTOLOGY_DIR, Ontology
from ontology.errors import FactError, OntologyError
from ontology.iri import CNC

SH = "http://www.w3.org/ns/shacl#"
SUPPORTED = {
    "path", "datatype", "minCount", "maxCount", "minInclusive", "maxInclusive", "in",
    "pattern", "class", "message", "name", "description", "severity",
}


@dataclass(frozen=True)
class PropertyCheck:
    shape: str
    path: str  # local name of the property
    min_count: int = 0
    max_count: int | None = None
    min_inclusive: float | None = None
    max_inclusive: float | None = None
    allowed: frozenset[str] | None = None
    pattern: re.Pattern[str] | None = None
    target_class: str | None = None  # sh:class on an object property path
    message: str | None = None

    def violation(self, value: Any) -> str | None:
        """Why a single (non-null, datatype-valued) value violates this check, else None."""
        if self.min_inclusive is not None and _num(value) < self.min_inclusive:
            return f"must be >= {self.min_inclusive:g}"
        if self.max_inclusive is not None and _num(value) > self.max_inclusive:
            return f"must be <= {self.max_inclusive:g}"
        if self.allowed is not None and str(value) not in self.allowed:
            return f"must be one of {sorted(self.allowed)}"
        if self.pattern is not None and not self.pattern.search(str(value)):
            return f"must match /{self.pattern.pattern}/"
        return None


def _num(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


@dataclass
class ShapeSet:
    """Checks per target class (cnc local name)."""

    by_class: dict[str, list[PropertyCheck]]

    def check_entity(self, onto: Ontology, ref: str, kind: str,
                     props: Mapping[str, Any]) -> None:
        for cls in onto.types_of(kind):
            for check in self.by_class.get(cls, ()):
                if check.target_class is not None:
                    continue  # object-property paths are checked on relations
                value = props.get(check.path)
                present = 0 if value is None else 1
                if present < check.min_count:
                    raise FactError(ref, _say(check, f"{cls} requires {check.path!r}"),
                                    field=check.path)
                if present and (why := check.violation(value)):
                    raise FactError(ref, _say(check, f"{check.path} {why}"), field=check.path)

    def check_relation(self, onto: Ontology, ref: str, rel_type: str, start_kind: str | None,
                       end_kind: str | None) -> None:
        if start_kind is None or end_kind is None:
            return
        for cls in onto.types_of(start_kind):
            for check in self.by_class.get(cls, ()):
                if (check.path == rel_type and check.target_class is not None
                        and not onto.is_subclass(end_kind, check.target_class)):
                    raise FactError(ref, _say(check, f"{rel_type} of a {cls} must point to a "
                                              f"{check.target_class}, not a {end_kind}"),
                                    field="end")


def _say(check: PropertyCheck, default: str) -> str:
    return f"{check.message} ({default})" if check.message else default


@cache
def load_shapes(onto: Ontology, path: Path | None = None) -> ShapeSet:
    import rdflib
    from rdflib.namespace import RDF

    path = path or ONTOLOGY_DIR / "shapes.ttl"
    graph = rdflib.Graph()
    try:
        graph.parse(path, format="turtle")
    except Exception as exc:
        raise OntologyError(f"cannot parse shapes {path}: {exc}") from exc
    sh = rdflib.Namespace(SH)
    by_class: dict[str, list[PropertyCheck]] = {}
    for shape in graph.subjects(RDF.type, sh.NodeShape):
        targets = [str(t) for t in graph.objects(shape, sh.targetClass)]
        for prop_node in graph.objects(shape, sh.property):
            used = {str(p)[len(SH):] for p, _ in graph.predicate_objects(prop_node)
                    if str(p).startswith(SH)}
            unsupported = used - SUPPORTED
            if unsupported:
                raise OntologyError(f"shape {shape} uses unsupported SHACL components "
                                    f"{sorted(unsupported)}; the write path supports "
                                    f"{sorted(SUPPORTED)}")
            path_iri = str(graph.value(prop_node, sh.path))
            if not path_iri.startswith(CNC):
                raise OntologyError(f"shape {shape}: sh:path {path_iri} is not a cnc property")
            name = path_iri[len(CNC):]

            def lit(p: rdflib.URIRef, node: rdflib.term.Node = prop_node) -> Any:
                v = graph.value(node, p)
                return None if v is None else v.toPython()  # type: ignore[attr-defined]

            in_list = graph.value(prop_node, sh["in"])
            allowed = (frozenset(str(x) for x in rdflib.collection.Collection(graph, in_list))
                       if in_list is not None else None)
            cls = graph.value(prop_node, sh["class"])
            min_inc, max_inc = lit(sh.minInclusive), lit(sh.maxInclusive)
            check = PropertyCheck(
                shape=str(shape), path=name,
                min_count=int(lit(sh.minCount) or 0),
                max_count=None if lit(sh.maxCount) is None else int(lit(sh.maxCount)),
                min_inclusive=None if min_inc is None else _num(min_inc),
                max_inclusive=None if max_inc is None else _num(max_inc),
                allowed=allowed,
                pattern=re.compile(str(lit(sh.pattern))) if lit(sh.pattern) else None,
                target_class=str(cls)[len(CNC):] if cls is not None else None,
                message=None if lit(sh.message) is None else str(lit(sh.message)),
            )
            if check.target_class is None and name not in onto.datatype_properties \
                    and name not in onto.object_properties:
                raise OntologyError(f"shape {shape}: unknown property cnc:{name}")
            for t in targets:
                if not t.startswith(CNC) or t[len(CNC):] not in onto.classes:
                    raise OntologyError(f"shape {shape}: target {t} is not a cnc class")
                by_class.setdefault(t[len(CNC):], []).append(check)
    return ShapeSet(by_class)

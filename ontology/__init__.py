"""The CNC ontology: loader, vocabulary model and IRI helpers.

The store derives its schema from what this module reads out of ``cnc.ttl``: node types are
the ontology's classes, relation types its object properties, typed columns its datatype
properties (range xsd:string, xsd:integer, xsd:double, xsd:boolean or xsd:dateTime).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

from ontology.iri import CNC, DEFAULT_BASE, mint_iri, relation_iri, slug

__all__ = [
    "CNC",
    "DEFAULT_BASE",
    "ClassInfo",
    "DatatypeProperty",
    "ObjectProperty",
    "Ontology",
    "ONTOLOGY_DIR",
    "load_ontology",
    "mint_iri",
    "relation_iri",
    "slug",
]

ONTOLOGY_DIR = Path(__file__).resolve().parent
XSD = "http://www.w3.org/2001/XMLSchema#"
VALUE_KINDS = {
    XSD + "string": "string",
    XSD + "integer": "integer",
    XSD + "double": "double",
    XSD + "boolean": "boolean",
    XSD + "dateTime": "datetime",
}
# Names the store uses for its own columns; no ontology property may take them.
RESERVED_NAMES = frozenset(
    {"iri", "kind", "types", "source", "validFrom", "validTo", "firstSeen", "lastSeen",
     "scope", "key", "type", "seq", "hash", "labelPairs"}
)


@dataclass(frozen=True)
class ClassInfo:
    name: str
    iri: str
    label: str
    comment: str
    parents: tuple[str, ...]
    ancestors: tuple[str, ...]  # every cnc superclass, nearest first, the class itself excluded
    # every superclass IRI, cnc and aligned (NORIA-O, SOSA, PROV, TIO), the class excluded
    super_iris: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatatypeProperty:
    name: str
    iri: str
    kind: str  # string | integer | double | boolean | datetime
    edge: bool  # may also be set on relations
    label: str
    comment: str


@dataclass(frozen=True)
class ObjectProperty:
    name: str
    iri: str
    domain: str | None
    range: str | None
    transitive: bool
    parents: tuple[str, ...]
    label: str
    comment: str
    super_iris: tuple[str, ...] = ()  # every super-property IRI (cnc and aligned), sorted


@dataclass(eq=False)  # hashed by identity: loaded once, cached
class Ontology:
    """The vocabulary of ``cnc.ttl`` as plain Python data (no rdflib objects)."""

    classes: dict[str, ClassInfo] = field(default_factory=dict)
    datatype_properties: dict[str, DatatypeProperty] = field(default_factory=dict)
    object_properties: dict[str, ObjectProperty] = field(default_factory=dict)
    version: str = ""
    path: Path | None = None

    def is_subclass(self, name: str, ancestor: str) -> bool:
        return name == ancestor or ancestor in self.classes[name].ancestors

    def types_of(self, name: str) -> list[str]:
        """The class and all its cnc superclasses, most specific first."""
        return [name, *self.classes[name].ancestors]

    def turtle(self) -> str:
        assert self.path is not None
        return self.path.read_text(encoding="utf-8")


def _local(iri: str) -> str | None:
    return iri[len(CNC):] if iri.startswith(CNC) else None


@cache
def load_ontology(path: Path | None = None) -> Ontology:
    """Read the ontology file (default: the packaged ``cnc.ttl``) into an :class:`Ontology`."""
    import rdflib
    from rdflib.namespace import OWL, RDF, RDFS

    from ontology.errors import OntologyError

    path = path or ONTOLOGY_DIR / "cnc.ttl"
    graph = rdflib.Graph()
    try:
        graph.parse(path, format="turtle")
    except Exception as exc:  # rdflib raises several unrelated types for syntax errors
        raise OntologyError(f"cannot parse ontology {path}: {exc}") from exc

    onto = Ontology(path=path)
    for s in graph.subjects(RDF.type, OWL.Ontology):
        onto.version = str(graph.value(s, OWL.versionInfo) or "")

    def text(s: rdflib.term.Node, p: rdflib.term.Node) -> str:
        return str(graph.value(s, p) or "")

    parents: dict[str, list[str]] = {}
    for s in graph.subjects(RDF.type, OWL.Class):
        name = _local(str(s))
        if name is None:
            continue
        parents[name] = sorted(
            n for o in graph.objects(s, RDFS.subClassOf) if (n := _local(str(o))) is not None
        )

    def ancestors(name: str) -> tuple[str, ...]:
        seen: list[str] = []
        frontier = list(parents.get(name, []))
        while frontier:
            nxt = frontier.pop(0)
            if nxt not in seen and nxt != name:
                seen.append(nxt)
                frontier.extend(parents.get(nxt, []))
        return tuple(seen)

    def supers(node: rdflib.URIRef, pred: rdflib.URIRef) -> tuple[str, ...]:
        """Every IRI above ``node`` along ``pred`` (transitively), itself excluded."""
        return tuple(sorted({str(o) for o in graph.transitive_objects(node, pred)
                             if isinstance(o, rdflib.URIRef) and o != node}))

    for name, ps in parents.items():
        iri = CNC + name
        onto.classes[name] = ClassInfo(
            name, iri, text(rdflib.URIRef(iri), RDFS.label),
            text(rdflib.URIRef(iri), RDFS.comment), tuple(ps), ancestors(name),
            supers(rdflib.URIRef(iri), RDFS.subClassOf),
        )

    edge_flag = rdflib.URIRef(CNC + "edgeProperty")
    meta_flag = rdflib.URIRef(CNC + "factMetadata")
    for s in graph.subjects(RDF.type, OWL.DatatypeProperty):
        name = _local(str(s))
        if name is None or graph.value(s, meta_flag) is not None:
            continue
        ranges = [str(r) for r in graph.objects(s, RDFS.range)]
        if len(ranges) != 1 or ranges[0] not in VALUE_KINDS:
            raise OntologyError(
                f"datatype property cnc:{name} needs exactly one range among "
                f"{sorted(VALUE_KINDS)}, has {ranges}"
            )
        if name in RESERVED_NAMES:
            raise OntologyError(f"datatype property cnc:{name} uses a reserved column name")
        flag: Any = graph.value(s, edge_flag)
        onto.datatype_properties[name] = DatatypeProperty(
            name, str(s), VALUE_KINDS[ranges[0]], bool(flag is not None and flag.toPython()),
            text(s, RDFS.label), text(s, RDFS.comment),
        )

    for s in graph.subjects(RDF.type, OWL.ObjectProperty):
        name = _local(str(s))
        if name is None:
            continue
        dom = graph.value(s, RDFS.domain)
        rng = graph.value(s, RDFS.range)
        onto.object_properties[name] = ObjectProperty(
            name, str(s),
            _local(str(dom)) if dom is not None else None,
            _local(str(rng)) if rng is not None else None,
            (s, RDF.type, OWL.TransitiveProperty) in graph,
            tuple(sorted(
                n for o in graph.objects(s, RDFS.subPropertyOf)
                if (n := _local(str(o))) is not None
            )),
            text(s, RDFS.label), text(s, RDFS.comment),
            supers(cast(rdflib.URIRef, s), RDFS.subPropertyOf),
        )
    clash = set(onto.datatype_properties) & set(onto.object_properties)
    if clash:
        raise OntologyError(f"names used both as datatype and object property: {sorted(clash)}")
    return onto

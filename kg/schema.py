"""The store schema, derived from the ontology: one logical model for every backend.

- Node type: every entity is a node ``Entity`` (a label in Neo4j, the node table in
  LadybugDB) with ``iri`` (unique), ``kind`` (its most specific class), ``types`` (the class
  and all its superclasses, so ``'ComputeSite' IN n.types`` finds edge sites), one typed
  column per ontology datatype property, and the fact metadata columns below.
  Neo4j also gets one label per class in ``types`` (``:Entity:EdgeSite:ComputeSite:Resource``).
- Relation types: one per ontology object property (``hostedOn``, ``calls``, ...), from
  Entity to Entity, with the fact metadata columns and the edge properties
  (datatype properties annotated ``cnc:edgeProperty``).
- Fact metadata on every node and relation: ``source``, ``validFrom``, ``validTo``
  (validity in source time), ``firstSeen``, ``lastSeen`` (ingest time), all UTC timestamps.
- The change log: ``ChangeLog`` nodes (``seq``, ``at``, ``batch``) written in the same
  transaction as the facts; derived views catch up from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ontology import Ontology

FACT_META = (
    ("source", "string"),
    ("validFrom", "datetime"),
    ("validTo", "datetime"),
    ("firstSeen", "datetime"),
    ("lastSeen", "datetime"),
)
ENTITY_TABLE = "Entity"
CHANGELOG_TABLE = "ChangeLog"


@dataclass(frozen=True)
class StoreSchema:
    entity_properties: tuple[tuple[str, str], ...]  # (name, kind) of ontology properties
    edge_properties: tuple[tuple[str, str], ...]
    relation_types: tuple[str, ...]
    classes: tuple[str, ...]

    @classmethod
    def from_ontology(cls, onto: Ontology) -> StoreSchema:
        props = tuple(sorted((p.name, p.kind) for p in onto.datatype_properties.values()))
        return cls(
            entity_properties=props,
            edge_properties=tuple((n, k) for n, k in props if onto.datatype_properties[n].edge),
            relation_types=tuple(sorted(onto.object_properties)),
            classes=tuple(sorted(onto.classes)),
        )

    @property
    def entity_columns(self) -> tuple[tuple[str, str], ...]:
        """Every column of the entity node, in a fixed order (``iri`` first)."""
        return (("iri", "string"), ("kind", "string"), ("types", "string[]"),
                *FACT_META, *self.entity_properties)

    @property
    def relation_columns(self) -> tuple[tuple[str, str], ...]:
        return (*FACT_META, *self.edge_properties)

"""The store schema, derived from the ontology: one logical model for every backend.

- Node type: every entity is a node ``Entity`` (a label in Neo4j, the node table in
  LadybugDB) with ``iri`` (unique), ``kind`` (its most specific class), ``types`` (the class
  and all its superclasses, so ``'ComputeSite' IN n.types`` finds edge sites), one typed
  column per ontology datatype property, and the fact metadata columns below.
  Neo4j also gets one label per class in ``types`` (``:Entity:EdgeSite:ComputeSite:Resource``).
- Relation types: one per ontology object property (``hostedOn``, ``calls``, ...), from
  Entity to Entity, with the fact metadata columns and the edge properties
  (datatype properties annotated ``cnc:edgeProperty``).
- ``labelPairs``: the entity's ``labels`` (a JSON object, as its source gave them) as a
  sorted list of ``key=value`` strings, so plain Cypher on both backends can filter on
  them (``'pod=checkout-1' IN n.labelPairs``); derived at write time, never written
  directly (see :func:`label_pairs`).
- Fact metadata on every node and relation: ``source``, ``validFrom``, ``validTo``
  (validity in source time), ``firstSeen``, ``lastSeen`` (ingest time), all UTC timestamps.
- The change log: ``ChangeLog`` nodes (``seq``, ``at``, ``batch``) written in the same
  transaction as the facts; derived views catch up from it.
"""

from __future__ import annotations

import json
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
LABEL_PAIRS = "labelPairs"  # derived from the ``labels`` property: see label_pairs()


def label_pairs(labels: object) -> list[str] | None:
    """The ``labelPairs`` column of an entity whose ``labels`` property is ``labels``.

    ``labels`` is a JSON object text (``{"pod": "checkout-1"}``); each entry becomes
    ``key=value``, sorted. A key's ``%`` and ``=`` are percent-encoded (``%25``, ``%3D``:
    neither occurs in Prometheus or Kubernetes label names), so a pair splits at its first
    ``=``; a value stays as it is, and one that is no string is written as JSON. Anything
    else (no labels, text that is no JSON object) has no pairs: None.
    """
    if not isinstance(labels, str) or not labels:
        return None
    try:
        doc = json.loads(labels)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    return sorted(f"{_pair_key(k)}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
                  for k, v in doc.items())


def _pair_key(key: str) -> str:
    return key.replace("%", "%25").replace("=", "%3D")


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
                (LABEL_PAIRS, "string[]"), *FACT_META, *self.entity_properties)

    @property
    def relation_columns(self) -> tuple[tuple[str, str], ...]:
        return (*FACT_META, *self.edge_properties)

"""IRIs: the namespace of the ontology and the one rule that mints entity IRIs.

Rule: ``{base}{scope}/{kind}/{key}``, each part percent-encoded, where

- ``base`` is the deployment's IRI base (default ``https://w3id.org/autocnc/id/``),
- ``scope`` is required and names what the natural key is unique within: a cluster, a
  network, a site (``cluster/edge-sh-01``, ``network/Abilene``); it may contain ``/``,
- ``kind`` is the ontology class's local name (``Pod``, ``Router``),
- ``key`` is the natural key inside the scope (pod name, GraphML node id).

So ``frontend`` in two clusters, or node ``0`` in two GraphML files, never collide.
Relations get an IRI derived from their type and end points (used by the RDF view).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from urllib.parse import quote

CNC = "https://w3id.org/autocnc/ontology#"
DEFAULT_BASE = "https://w3id.org/autocnc/id/"

# The observed labels that name entities by this rule (ingest/resolve.py resolves them): the
# subject labels first, the ones that often name an exporter rather than the subject after.
SUBJECT_LABELS = ("pod", "deployment", "statefulset", "daemonset", "replicaset", "node",
                  "namespace", "cluster")
FALLBACK_LABELS = ("service", "instance", "job", "host", "hostname")
RESOLUTION_LABELS = SUBJECT_LABELS + FALLBACK_LABELS


_PLAIN = re.compile(r"[A-Za-z0-9._~-]*")


@lru_cache(maxsize=65_536)  # scopes and kinds repeat on every fact
def slug(part: str, *, keep_slash: bool = False) -> str:
    """Percent-encode one IRI part; ``/`` is kept only inside scopes."""
    part = part.strip()
    if _PLAIN.fullmatch(part):
        return part
    return quote(part, safe="/-._~" if keep_slash else "-._~")


def mint_iri(scope: str, kind: str, key: str, base: str = DEFAULT_BASE) -> str:
    """The entity IRI for natural ``key`` of class ``kind`` inside ``scope``."""
    if not scope or not scope.strip("/ "):
        raise ValueError("an IRI needs a scope (a cluster, network or site)")
    if not kind or not key:
        raise ValueError("an IRI needs a kind and a natural key")
    if not base.endswith(("/", "#")):
        base += "/"
    return f"{base}{slug(scope.strip('/'), keep_slash=True)}/{slug(kind)}/{slug(key)}"


def relation_iri(rel_type: str, source: str, target: str, base: str = DEFAULT_BASE) -> str:
    """A stable IRI for the relation ``source -rel_type-> target``."""
    digest = hashlib.sha1(f"{rel_type}\x1f{source}\x1f{target}".encode()).hexdigest()[:20]
    return f"{base}rel/{rel_type}/{digest}"

"""Graph stores, picked by name from one registry (entry-point group ``autocnc.stores``).

Built in: ``embedded`` (LadybugDB, the default) and ``neo4j``. A third party adds a backend
by publishing a class with a ``connect(**options)`` factory under that entry-point group.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from kg.errors import ConfigError
from kg.store.base import (
    ChangeEntry,
    Checkpointing,
    FactState,
    GraphStore,
    QueryResult,
    RelKey,
    WriteSummary,
)

__all__ = ["ChangeEntry", "Checkpointing", "FactState", "GraphStore", "QueryResult", "RelKey",
           "WriteSummary", "available_stores", "open_store"]

_BUILTIN = {"embedded": "kg.store.embedded:LadybugStore", "neo4j": "kg.store.neo4j:Neo4jStore"}


def available_stores() -> dict[str, str]:
    found = dict(_BUILTIN)
    found.update({ep.name: ep.value for ep in entry_points(group="autocnc.stores")})
    return found


def open_store(name: str, **options: Any) -> GraphStore:
    """Connect the store registered as ``name`` with its options."""
    target = available_stores().get(name)
    if target is None:
        raise ConfigError(f"unknown store {name!r}; available: {sorted(available_stores())}")
    module_name, _, attr = target.partition(":")
    import importlib

    cls = getattr(importlib.import_module(module_name), attr)
    store: GraphStore = cls.connect(**options)
    return store

"""The RDF dataset a SPARQL protocol request names, shared by the RDF view and the result
serialisers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dataset:
    """The RDF dataset a request names (``default-graph-uri``, ``named-graph-uri``); it
    replaces the query's own (FROM, FROM NAMED). An empty list is an empty graph set."""

    default_graphs: tuple[str, ...] = ()
    named_graphs: tuple[str, ...] = ()

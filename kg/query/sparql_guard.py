"""Parse operator SPARQL before Oxigraph runs it: queries only, no SERVICE, no updates."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kg.errors import ForbiddenQuery, QueryError


@dataclass(frozen=True)
class QueryShape:
    """What the protocol needs to know of a query before running it."""

    form: str  # SELECT, ASK, CONSTRUCT or DESCRIBE
    has_dataset: bool  # the query names its dataset (FROM / FROM NAMED)
    prefixes: tuple[tuple[str, str], ...]  # its PREFIX declarations, for graph results


def check(query: str) -> str:
    """Return the query form (SELECT, ASK, CONSTRUCT, DESCRIBE) or raise.

    Uses rdflib's SPARQL 1.1 grammar: a syntax error raises QueryError with the parser's
    message; an update or a ``SERVICE`` clause (which would make Oxigraph call any URL)
    raises ForbiddenQuery.
    """
    return analyse(query).form


# the protocol asks for the shape, then the view checks the query: parsed once. Few entries:
# a query may be megabytes, and the worker's memory is bounded
@lru_cache(maxsize=2)
def analyse(query: str) -> QueryShape:
    """The query's shape, after the checks of :func:`check` (which raise the same)."""
    from pyparsing import ParseException
    from rdflib.plugins.sparql.parser import parseQuery, parseUpdate

    try:
        parsed = parseQuery(query)
    except ParseException as exc:
        try:
            parseUpdate(query)
        except ParseException:
            raise QueryError(f"SPARQL syntax error: {exc}") from exc
        raise ForbiddenQuery("SPARQL updates are not allowed on this endpoint") from exc
    prologue, body = parsed[0], parsed[1]
    if _contains(body, "ServiceGraphPattern"):
        raise ForbiddenQuery("SERVICE is not allowed: it makes the server call other URLs")
    prefixes = tuple((str(d["prefix"]) if "prefix" in d else "", str(d["iri"])) for d in prologue
                     if getattr(d, "name", None) == "PrefixDecl")
    return QueryShape(body.name.replace("Query", "").upper(), "datasetClause" in body,
                      prefixes)


def _contains(node: Any, name: str) -> bool:
    if getattr(node, "name", None) == name:
        return True
    if isinstance(node, dict):
        return any(_contains(v, name) for v in node.values())
    if isinstance(node, list | tuple):
        return any(_contains(v, name) for v in node)
    return False

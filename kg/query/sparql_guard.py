"""Parse operator SPARQL before Oxigraph runs it: queries only, no SERVICE, no updates."""

from __future__ import annotations

from typing import Any

from kg.errors import ForbiddenQuery, QueryError


def check(query: str) -> str:
    """Return the query form (SELECT, ASK, CONSTRUCT, DESCRIBE) or raise.

    Uses rdflib's SPARQL 1.1 grammar: a syntax error raises QueryError with the parser's
    message; an update or a ``SERVICE`` clause (which would make Oxigraph call any URL)
    raises ForbiddenQuery.
    """
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
    body = parsed[1]
    if _contains(body, "ServiceGraphPattern"):
        raise ForbiddenQuery("SERVICE is not allowed: it makes the server call other URLs")
    return body.name.replace("Query", "").upper()


def _contains(node: Any, name: str) -> bool:
    if getattr(node, "name", None) == name:
        return True
    if isinstance(node, dict):
        return any(_contains(v, name) for v in node.values())
    if isinstance(node, list | tuple):
        return any(_contains(v, name) for v in node)
    return False

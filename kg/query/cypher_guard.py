"""A lexical guard for operator Cypher, run before the engine's own read-only check.

The guard tokenises the query (string literals, backtick names and comments are skipped,
so a property value that says ``LOAD CSV`` does no harm) and rejects clauses that reach
files, the network or the database catalogue, and ``CALL`` of any procedure outside an
allowlist. Whether a query writes is decided by the engine itself (LadybugDB's read-only
database, Neo4j's ``EXPLAIN`` query type); the guard only adds a clearer message first.
"""

from __future__ import annotations

import re

from kg.errors import ForbiddenQuery, QueryError

# Procedures that only read the catalogue or the graph.
ALLOWED_PROCEDURES = frozenset({
    "db.labels", "db.relationshiptypes", "db.propertykeys", "db.schema.visualization",
    "db.schema.nodetypeproperties", "db.schema.reltypeproperties", "dbms.components",
    "show_tables", "table_info", "show_connection",
})
# First keyword of clauses that read files or URLs, load code, or switch databases.
FORBIDDEN_CLAUSES = {
    "LOAD": "LOAD reads files or URLs (LOAD CSV / LOAD FROM / LOAD EXTENSION)",
    "COPY": "COPY reads or writes files",
    "INSTALL": "INSTALL downloads extensions",
    "ATTACH": "ATTACH opens other databases",
    "EXPORT": "EXPORT writes files",
    "IMPORT": "IMPORT reads files",
    "USE": "USE switches databases",
    "CHECKPOINT": "CHECKPOINT is an administrative command",
}
WRITE_CLAUSES = frozenset({"CREATE", "MERGE", "SET", "DELETE", "REMOVE", "DROP", "ALTER",
                           "FOREACH", "DETACH", "TRUNCATE", "BEGIN", "COMMIT", "ROLLBACK"})

_TOKEN = re.compile(
    r"""\s+|//[^\n]*|/\*.*?\*/|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|`(?:``|[^`])*`"""
    r"""|(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<other>.)""",
    re.S,
)


def words(query: str) -> list[str]:
    """The keywords and identifiers of ``query`` in order, upper-cased; ``.`` kept."""
    out: list[str] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:  # an unterminated string or comment
            raise QueryError("unterminated string, name or comment in the query")
        pos = m.end()
        if m.group("word"):
            out.append(m.group("word").upper())
        elif m.group("other") in (".", "{", "(", ";"):
            out.append(m.group("other"))
    return out


def check(query: str, *, write: bool) -> None:
    """Raise ForbiddenQuery if ``query`` uses a forbidden clause (or writes, unless ``write``)."""
    toks = words(query)
    if not toks:
        raise QueryError("empty query")
    if ";" in toks[:-1]:
        raise ForbiddenQuery("one statement per query")
    prev = ""
    for i, tok in enumerate(toks):
        # Only a keyword at clause position counts; `n.load`, `n.set` are property names.
        if prev == ".":
            prev = tok
            continue
        if tok in FORBIDDEN_CLAUSES:
            raise ForbiddenQuery(f"{tok} is not allowed: {FORBIDDEN_CLAUSES[tok]}")
        if tok == "CALL" and i + 1 < len(toks) and toks[i + 1] not in ("{", "("):
            name = _dotted(toks, i + 1)
            if name.lower() not in ALLOWED_PROCEDURES:
                raise ForbiddenQuery(
                    f"CALL {name} is not allowed; allowed procedures: "
                    f"{', '.join(sorted(ALLOWED_PROCEDURES))}"
                )
        if not write and tok in WRITE_CLAUSES:
            raise ForbiddenQuery(f"{tok} writes; this query endpoint is read-only "
                                 "(use --write on the CLI for maintenance)")
        prev = tok


def _dotted(toks: list[str], i: int) -> str:
    parts = [toks[i]]
    while i + 2 < len(toks) and toks[i + 1] == ".":
        parts.append(toks[i + 2])
        i += 2
    return ".".join(parts)


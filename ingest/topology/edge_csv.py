"""What the edge CSV formats share (service dependencies, device links): the table, the
end entities of its rows, and the rows well-formed enough to become an edge.

An end entity is written only when this file owns it: one the store does not hold yet, or
one this source wrote before; another source's entity keeps its provenance, and this file's
snapshot never retires it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from ingest.base import IngestContext, Input
from kg.facts import Entity


class EdgeTable:
    """The rows of an edge CSV and the end entities they name (read with one store read)."""

    def __init__(self, ctx: IngestContext, inp: Input, header: list[str],
                 rows: list[tuple[int, list[str]]], ends: tuple[str, str],
                 scope: str, kind: str) -> None:
        self.ctx, self.inp, self.header, self.rows, self.ends = ctx, inp, header, rows, ends
        self.kind = kind
        names = {r[header.index(c)].strip() for _, r in rows if len(r) == len(header)
                 for c in ends}
        self.iris = {n: ctx.iri(scope, kind, n) for n in names if n}
        ctx.sink.flush()  # entities of files read just before must be visible
        self.existing, _ = ctx.kg.store.fetch(list(self.iris.values()), [])
        self._written: set[str] = set()

    def edges(self) -> Iterator[tuple[int, dict[str, str], str]]:
        """(line, stripped cells by column, raw line) of each row with as many fields as
        the header and both ends named; the others are rejected with their line."""
        a, b = self.ends
        for line, row in self.rows:
            raw = ",".join(row)
            if len(row) != len(self.header):
                self.ctx.sink.reject(self.inp.name, f"line {line}", f"{len(row)} fields, the "
                                     f"header has {len(self.header)}", raw)
                continue
            cells = dict(zip(self.header, (c.strip() for c in row), strict=True))
            if not cells[a] or not cells[b]:
                self.ctx.sink.reject(self.inp.name, f"line {line}",
                                     f"{a} and {b} must not be empty", raw)
                continue
            yield line, cells, raw

    def owned_ends(self, cells: dict[str, str], source: str) -> list[Entity]:
        """The row's end entities this file writes (each once per file)."""
        out = []
        for name in (cells[self.ends[0]], cells[self.ends[1]]):
            iri, old = self.iris[name], self.existing.get(self.iris[name])
            if iri not in self._written and (old is None or old.source == source):
                out.append(Entity(iri, self.kind, {"name": name}, source))
                self._written.add(iri)
        return out


def read_table(inp: Input) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The stripped header and the numbered rows (from line 2) of a CSV file."""
    reader = csv.reader(io.StringIO(inp.read_text().lstrip("\ufeff")))
    header = [h.strip() for h in next(reader, [])]
    return header, list(enumerate(reader, 2))

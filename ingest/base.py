"""What every ingest source shares: inputs, records, the sink, rejections and the report.

A source parses its inputs into :class:`Record` s — the facts that come from one input
record (a manifest document, a CSV row, a rule, an alert), accepted or rejected together —
and hands them to the :class:`Sink`. The sink batches records and writes them through the
one write path (:meth:`kg.graph.KnowledgeGraph.write`). A record whose facts are invalid is
rejected with its file, line (or JSON pointer) and reason, appended to the dead-letter file
``<data dir>/dead-letter/<kind>.jsonl``, and counted; the good records of the same input
still land. ``dry_run`` validates everything against the store's current state and writes
nothing (no dead-letter file either).

Sources are modules of this package with a function ``ingest(ctx, inputs)``; see
:mod:`ingest` for the registry.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kg.errors import AutoCNCError, FactError
from kg.facts import Entity, FactBatch, Relation, check_values, now_utc, validate
from kg.store.base import RelKey, WriteSummary, plan_write
from ontology import mint_iri

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

MAX_RAW = 4096  # characters of a rejected record kept in the dead-letter file


class IngestError(AutoCNCError):
    """An input that cannot be ingested at all (wrong format, bad option)."""


# -- inputs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Input:
    """One input: a file on disk or bytes received over HTTP, with a name for messages."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def file(cls, path: str | os.PathLike[str]) -> Input:
        p = Path(path)
        return cls(str(p), p)

    @classmethod
    def of_bytes(cls, name: str, data: bytes) -> Input:
        return cls(name, None, data)

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data or b"")

    def read_bytes(self) -> bytes:
        return self.path.read_bytes() if self.path is not None else (self.data or b"")

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8", errors="replace")

    def lines(self, encoding: str = "utf-8", errors: str = "replace") -> Iterator[str]:
        """Text lines without their line ends, streamed for files. ``errors`` as for
        :func:`open`: ``surrogateescape`` keeps undecodable bytes recognisable
        (:func:`undecodable`) where a source rejects such lines."""
        if self.path is not None:
            with self.path.open(encoding=encoding, errors=errors, newline="") as fh:
                for line in fh:
                    yield line.rstrip("\r\n")
        else:  # split like a file is read: only \n (and \r\n) end lines
            text = self.read_bytes().decode(encoding, errors)
            if not text:
                return
            yield from (line.rstrip("\r") for line in
                        (text[:-1] if text.endswith("\n") else text).split("\n"))

    def mtime(self) -> datetime | None:
        """The file's modification time (UTC), used as a snapshot time when none is given."""
        if self.path is None:
            return None
        from datetime import UTC

        return datetime.fromtimestamp(self.path.stat().st_mtime, UTC)


def expand(paths: Iterable[str | os.PathLike[str]], patterns: Sequence[str]) -> list[Input]:
    """Files named by ``paths``; a directory contributes its files matching ``patterns``
    (recursively, sorted). A missing path raises IngestError naming it."""
    out: list[Input] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted({f for pat in patterns for f in p.rglob(pat) if f.is_file()})
            out.extend(Input.file(f) for f in found)
        elif p.is_file():
            out.append(Input.file(p))
        else:
            raise IngestError(f"{p}: no such file or directory")
    return out


# Undecodable bytes (as surrogateescape gives them) and C0 control characters other than
# tab, line/form feed, carriage return and escape (ANSI colours): what binary data has
# and text does not.
_NOT_TEXT = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\udc80-\udcff]")


def undecodable(line: str, encoding: str) -> str | None:
    """Why ``line`` (read with ``errors="surrogateescape"``) is no text, or None."""
    m = _NOT_TEXT.search(line)
    if m is None:
        return None
    ch = m.group()
    if "\udc80" <= ch <= "\udcff":
        return (f"not {encoding} text: byte 0x{ord(ch) - 0xDC00:02x} at column "
                f"{m.start() + 1} (binary data, or another encoding: give it with the "
                "option encoding, e.g. -o encoding=latin-1)")
    return f"binary data: control character U+{ord(ch):04X} at column {m.start() + 1}"


def printable(text: str) -> str:
    """``text`` safe to write as UTF-8 (undecodable bytes as U+FFFD)."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace") \
        if _SURROGATE.search(text) else text


_SURROGATE = re.compile("[\ud800-\udfff]")


# -- records, rejections, report --------------------------------------------------------------

@dataclass(frozen=True)
class Rejection:
    file: str
    where: str  # "line 12", "row 5", "/groups/0/rules/3", "document 2"
    reason: str
    record: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "where": self.where, "reason": self.reason,
                "record": self.record}

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.reason}"


@dataclass
class Record:
    """The facts of one input record; they land or are rejected together."""

    file: str
    where: str
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    raw: str | None = None

    def refs(self) -> set[str]:
        return {e.iri for e in self.entities} | {r.ref for r in self.relations}


@dataclass
class IngestReport:
    kind: str
    dry_run: bool = False
    inputs: list[str] = field(default_factory=list)
    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    retired: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[Rejection] = field(default_factory=list)  # whole inputs not of this kind
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # source-specific counters

    def add(self, summary: WriteSummary) -> None:
        self.created += summary.created + summary.relations_created
        self.updated += summary.updated + summary.relations_updated
        self.unchanged += summary.unchanged + summary.relations_unchanged

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "dryRun": self.dry_run, "inputs": self.inputs,
            "records": self.records, "created": self.created, "updated": self.updated,
            "unchanged": self.unchanged, "retired": self.retired,
            "rejected": len(self.rejected), "skipped": len(self.skipped),
            "rejections": [r.to_json() for r in self.rejected[:1000]],
            "skippedInputs": [r.to_json() for r in self.skipped],
            "notes": self.notes, "counts": self.counts,
        }


class Progress(Protocol):
    def start(self, total: int | None, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...


class NoProgress:
    def start(self, total: int | None, description: str) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


# -- the sink ---------------------------------------------------------------------------------

class Sink:
    """Batches records into the graph; rejects bad records one by one, never the batch."""

    def __init__(self, kg: KnowledgeGraph, report: IngestReport, *, dry_run: bool = False,
                 batch_size: int = 5000) -> None:
        self.kg = kg
        self.report = report
        self.dry_run = dry_run
        self.batch_size = batch_size
        self._buffer: list[Record] = []
        self._facts = 0
        self._shapes: Any = None

    def add(self, record: Record, *, counted: bool = True) -> None:
        """Queue a record; ``counted=False`` for bookkeeping facts that are no input record."""
        self.report.records += counted
        self._buffer.append(record)
        self._facts += len(record.entities) + len(record.relations)
        if self._facts >= self.batch_size:
            self.flush()

    def reject(self, file: str, where: str, reason: str, raw: str | None = None) -> None:
        rej = Rejection(file, where, printable(reason), printable(raw[:MAX_RAW]) if raw else raw)
        self.report.rejected.append(rej)
        if not self.dry_run:
            path = self.kg.settings.data_dir / "dead-letter" / f"{self.report.kind}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps({"at": now_utc().isoformat(), "kind": self.report.kind,
                                     **rej.to_json()}, ensure_ascii=False) + "\n")

    def skip(self, file: str, reason: str) -> None:
        """An input that is not of this source's kind: reported, not an error."""
        self.report.skipped.append(Rejection(file, "file", reason))

    def flush(self) -> None:
        records, self._buffer, self._facts = self._buffer, [], 0
        checked = False
        while records:
            batch = _merge(records)
            if not len(batch):
                return
            try:
                self._write(batch)
                return
            except FactError as exc:
                if not checked:
                    # The batch validates as a whole; on the first error, check each record
                    # alone so all plainly invalid records are rejected in one pass.
                    checked = True
                    valid = [r for r in records if self._prevalidate(r)]
                    if len(valid) < len(records):
                        records = valid
                        continue
                bad = [r for r in records if exc.fact in r.refs()]
                if not bad:  # not attributable to one record: they all fail
                    bad = records
                for r in bad:
                    self.reject(r.file, r.where, str(exc), r.raw)
                records = [r for r in records if r not in bad]

    def write_now(self, batch: FactBatch, *, count: bool = True) -> WriteSummary:
        """Write facts that belong to no input record (retirements, bookkeeping)."""
        self.flush()
        return self._write(batch, count=count)

    def _prevalidate(self, record: Record) -> bool:
        try:
            batch = FactBatch.of("check", record.entities, record.relations)
            check_values(batch, self.kg.settings.max_value_bytes)
            validate(batch, self.kg.onto)
        except FactError as exc:
            self.reject(record.file, record.where, str(exc), record.raw)
            return False
        return True

    def _write(self, batch: FactBatch, *, count: bool = True) -> WriteSummary:
        if self.dry_run:
            check_values(batch, self.kg.settings.max_value_bytes)
            if self._shapes is None:
                from ontology.shapes import load_shapes

                self._shapes = load_shapes(self.kg.onto)
            summary = plan_write(batch, self.kg.onto, self._shapes, self.kg.store.schema,
                                 self.kg.store.fetch, now_utc()).summary
        else:
            summary = self.kg.write(batch)
        if count:
            self.report.add(summary)
        return summary


def _merge(records: Sequence[Record]) -> FactBatch:
    """One batch from several records; a fact that several records carry is written once
    (properties merged, the later record's values win)."""
    ents: dict[str, Entity] = {}
    rels: dict[RelKey, Relation] = {}
    source = "ingest"
    for rec in records:
        for e in rec.entities:
            old = ents.get(e.iri)
            ents[e.iri] = e if old is None else Entity(
                e.iri, e.type, {**old.properties, **e.properties}, e.source or old.source,
                e.valid_from or old.valid_from, e.valid_to)
            source = e.source or source
        for r in rec.relations:
            old_r = rels.get(r.key)
            rels[r.key] = r if old_r is None else Relation(
                r.type, r.start, r.end, {**old_r.properties, **r.properties},
                r.source or old_r.source, r.valid_from or old_r.valid_from, r.valid_to)
            source = r.source or source
    return FactBatch(source, tuple(ents.values()), tuple(rels.values()))


# -- the context a source runs in --------------------------------------------------------------

@dataclass
class IngestContext:
    kg: KnowledgeGraph
    report: IngestReport
    sink: Sink
    scope: str | None = None
    as_of: datetime | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    progress: Progress = field(default_factory=NoProgress)

    @property
    def base(self) -> str:
        return self.kg.settings.iri_base

    def scope_for(self, inp: Input, *, default: str | None = None) -> str:
        """The scope of an input: ``--scope`` with ``{stem}`` replaced by the input's file
        stem; ``default`` when no scope was given and the source has a natural one."""
        scope = self.scope if self.scope is not None else default
        if not scope:
            raise IngestError(f"{self.report.kind} ingest needs a scope (--scope): the "
                              "cluster, network or site its names belong to")
        return scope.replace("{stem}", inp.stem)

    def iri(self, scope: str, kind: str, key: str) -> str:
        try:
            return mint_iri(scope, kind, key, self.base)
        except UnicodeEncodeError:  # a lone surrogate, as a JSON \udXXX escape gives
            raise IngestError(f"{kind} {printable(key)!r} in scope {printable(scope)!r} is "
                              "no Unicode text (a lone surrogate)") from None

    @property
    def data_dir(self) -> Path:
        return self.kg.settings.data_dir


# -- snapshots: retire what a newer snapshot no longer has -------------------------------------

class SnapshotTooOld(IngestError):
    pass


@dataclass
class Snapshot:
    """One input applied as the complete state of ``source`` in its scope at ``at``.

    ``begin`` rejects a snapshot older than the last one applied (SnapshotTooOld); facts the
    records ``keep`` are live; ``commit`` retires (sets validTo on) every live fact of the
    source the snapshot no longer has — unless a record of it was rejected, because then
    "missing" may only mean "unreadable" — and records the snapshot's time.
    """

    ctx: IngestContext
    scope: str
    source: str
    at: datetime
    seen: set[str] = field(default_factory=set)
    seen_rels: set[RelKey] = field(default_factory=set)
    rejected_before: int = 0
    first: bool = True  # no snapshot of this source was applied before

    @property
    def iri(self) -> str:
        return self.ctx.iri(self.scope, "IngestSnapshot", self.source)

    def begin(self) -> Snapshot:
        ents, _ = self.ctx.kg.store.fetch([self.iri], [])
        old = ents.get(self.iri)
        last = old.props.get("generatedAt") if old else None
        if isinstance(last, datetime) and self.at < last:
            raise SnapshotTooOld(
                f"snapshot of {self.source} at {self.at.isoformat()} is older than the one "
                f"already applied ({last.isoformat()}); not applied")
        self.first = old is None
        self.rejected_before = len(self.ctx.report.rejected)
        return self

    def keep(self, record: Record) -> None:
        self.seen.update(e.iri for e in record.entities)
        self.seen_rels.update(r.key for r in record.relations)

    def commit(self) -> int:
        """Retire what this snapshot lacks and record it; returns how many facts retired.

        A first snapshot has nothing to retire: its facts stay in the sink's buffer, so many
        small inputs (a folder of network files) share write batches.
        """
        ctx = self.ctx
        marker = Entity(self.iri, "IngestSnapshot", {
            "generatedAt": self.at, "ingestScope": self.scope, "name": self.source},
            self.source, valid_from=self.at if self.first else None)  # kept once set
        if self.first:
            ctx.sink.add(Record("", "snapshot", [marker]), counted=False)
            return 0
        ctx.sink.flush()
        gone: list[Entity] = []
        gone_rels: list[Relation] = []
        if len(ctx.report.rejected) > self.rejected_before:
            ctx.report.notes.append(
                f"{self.source}: retirement skipped because records were rejected; fix them "
                "and ingest the snapshot again")
        else:
            ents, rels = ctx.kg.store.live(self.source)
            gone = [Entity(iri, kind, {}, self.source, valid_to=self.at)
                    for iri, kind in ents.items() if iri not in self.seen and iri != self.iri]
            gone_rels = [Relation(t, s, e, {}, self.source, valid_to=self.at)
                         for t, s, e in rels if (t, s, e) not in self.seen_rels]
        summary = ctx.sink.write_now(FactBatch.of(self.source, [*gone, marker], gone_rels),
                                     count=False)
        ctx.report.retired += len(gone) + len(gone_rels)
        ctx.report.created += summary.created
        ctx.report.updated += summary.updated - len(gone)
        ctx.report.unchanged += summary.unchanged
        return len(gone) + len(gone_rels)

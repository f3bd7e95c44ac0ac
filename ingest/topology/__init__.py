"""Topology ingest: the shape of the infrastructure, as snapshots of a scope.

Formats (docs/ingest/topology.md): ``native`` (YAML/JSON entities and relations),
``graphml`` (Internet Topology Zoo networks), ``k8s`` (Kubernetes manifests),
``dependencies`` (service dependency CSV) and ``links`` (device link CSV). Each input is
one snapshot of its source in its scope (:class:`ingest.base.Snapshot`): facts the previous
snapshot of the same source had and this one lacks are retired, an older snapshot is
rejected.

A fact is valid from the snapshot that brought it (``--as-of``, else the file's
modification time, else the ingest time): facts the store already holds live keep their
``validFrom``, new or revived ones take the snapshot's time.

Options: ``format`` (force one format instead of detecting it by extension and content),
``snapshot`` (the snapshot's name within the scope; default the file stem).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime

import yaml

from ingest.base import IngestContext, IngestError, Input, Record, Snapshot, SnapshotTooOld
from kg.facts import now_utc
from kg.store.base import FactState

from . import dependencies, graphml, kubernetes, links, native

PATTERNS = ("*.graphml", "*.yaml", "*.yml", "*.json", "*.csv")
FORMATS: dict[str, Callable[[IngestContext, Input, str, str], Iterator[Record]]] = {
    "native": native.records,
    "graphml": graphml.records,
    "k8s": kubernetes.records,
    "dependencies": dependencies.records,
    "links": links.records,
}


def detect(inp: Input) -> str | None:
    """The format of an input by extension, then content; None when it is not topology."""
    name = inp.name.lower()
    if name.endswith(".graphml"):
        return "graphml"
    if name.endswith(".csv"):
        return "links" if links.looks_like_links(inp.read_text()) else "dependencies"
    if name.endswith((".yaml", ".yml", ".json")):
        head = inp.read_text()
        try:
            docs = [d for d in yaml.safe_load_all(head) if d is not None]
        except yaml.YAMLError:
            # Unreadable as a whole: let the manifest reader reject the bad documents.
            return "k8s" if "apiVersion:" in head else "native"
        if any(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs):
            return "k8s"
        if any(isinstance(d, dict) and ("entities" in d or "relations" in d) for d in docs):
            return "native"
    return None


def ingest(ctx: IngestContext, inputs: list[Input]) -> None:
    forced = ctx.options.get("format")
    if forced is not None and forced not in FORMATS:
        raise IngestError(f"unknown topology format {forced!r}; one of {', '.join(FORMATS)}")
    ctx.progress.start(len(inputs), "topology")
    for inp in inputs:
        fmt = forced or detect(inp)
        if fmt is None:
            ctx.sink.skip(inp.name, "not a topology file (no GraphML, manifest, dependency "
                          "CSV or native entities/relations)")
            ctx.progress.advance()
            continue
        scope = ctx.scope_for(inp)
        name = str(ctx.options.get("snapshot") or inp.stem)
        source = f"topology/{fmt}:{scope}:{name}"
        at = ctx.as_of or inp.mtime() or now_utc()
        try:
            snap = Snapshot(ctx, scope, source, at).begin()
        except SnapshotTooOld as exc:
            ctx.sink.reject(inp.name, "file", str(exc))
            ctx.progress.advance()
            continue
        for record in since(ctx, list(FORMATS[fmt](ctx, inp, scope, source)), at):
            snap.keep(record)
            ctx.sink.add(record)
        snap.commit()
        ctx.report.count(f"files.{fmt}")
        ctx.progress.advance()


def since(ctx: IngestContext, records: list[Record], at: datetime) -> list[Record]:
    """``records`` with ``at`` as the validity start of each fact the store does not hold
    live (new, retired, or stored without one); live facts keep theirs (one store read)."""
    iris = list(dict.fromkeys(e.iri for r in records for e in r.entities))
    keys = list(dict.fromkeys(x.key for r in records for x in r.relations))
    ents, rels = ctx.kg.store.fetch(iris, keys)

    def live(old: FactState | None) -> bool:
        return old is not None and old.valid_to is None and old.valid_from is not None

    return [replace(r, entities=[e if e.valid_from or live(ents.get(e.iri))
                                 else replace(e, valid_from=at) for e in r.entities],
                    relations=[x if x.valid_from or live(rels.get(x.key))
                               else replace(x, valid_from=at) for x in r.relations])
            for r in records]

"""Ingest: every source an operator has, turned into facts through the one write path.

Sources (one module or package each): ``topology``, ``metrics``, ``logs``, ``runbooks``,
``alerts``, ``traces``.
Each module defines ``PATTERNS`` (file globs taken from a directory) and
``ingest(ctx, inputs)``; :func:`run_ingest` gives it a context (scope, snapshot time,
sink, report, progress) and returns the report. The formats are specified in docs/ingest.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ingest.base import (
    IngestContext,
    IngestError,
    IngestReport,
    Input,
    NoProgress,
    Progress,
    Sink,
    expand,
)

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

SOURCES = ("topology", "metrics", "logs", "runbooks", "alerts", "traces")

__all__ = ["SOURCES", "IngestContext", "IngestError", "IngestReport", "Input", "expand",
           "run_ingest", "source_module"]


def source_module(kind: str) -> Any:
    if kind not in SOURCES:
        raise IngestError(f"unknown ingest kind {kind!r}; one of {', '.join(SOURCES)}")
    return importlib.import_module(f"ingest.{kind}")


def run_ingest(kg: KnowledgeGraph, kind: str, inputs: Sequence[Input], *,
               scope: str | None = None, as_of: datetime | None = None,
               dry_run: bool = False, options: Mapping[str, Any] | None = None,
               progress: Progress | None = None, batch_size: int = 5000) -> IngestReport:
    """Ingest ``inputs`` of one ``kind``; rejected records are in the report, not raised."""
    module = source_module(kind)
    report = IngestReport(kind, dry_run=dry_run, inputs=[i.name for i in inputs])
    sink = Sink(kg, report, dry_run=dry_run, batch_size=batch_size)
    ctx = IngestContext(kg, report, sink, scope, as_of, dict(options or {}),
                        progress or NoProgress())
    module.ingest(ctx, list(inputs))
    sink.flush()
    return report


def inputs_for(kind: str, paths: Sequence[str]) -> list[Input]:
    """The files ``paths`` name for ``kind`` (directories expanded by its patterns)."""
    return expand(paths, source_module(kind).PATTERNS)

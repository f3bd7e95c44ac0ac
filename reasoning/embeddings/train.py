"""``autocnc train``: fit the embedding models on the graph and version them.

:func:`train_models` reads the triples of the analytic snapshot once, trains each model
asked for, and saves each as a new version in ``<data dir>/models/<name>/`` with its
metadata. ``refresh=True`` starts the KGE models from their current version (old entities
keep their vectors; ``refresh_epochs`` instead of ``epochs``) where one exists; the GNN is
small and always trained from scratch on every labelled case the graph holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ingest.base import Progress
from reasoning.embeddings.kge import MODELS, KGEConfig, KGEModel, train_kge
from reasoning.embeddings.store import ModelStore
from reasoning.embeddings.triples import graph_triples

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

ALL_MODELS = (*MODELS, "gnn")


def train_models(kg: KnowledgeGraph, models: Sequence[str] = ALL_MODELS, *,
                 refresh: bool = False, epochs: int | None = None, dim: int | None = None,
                 progress: Progress | None = None,
                 lock: AbstractContextManager[Any] | None = None) -> list[dict[str, Any]]:
    """Train and save ``models``; returns one summary per model (version, metadata, or why
    it was skipped). ``lock`` is held while the graph is read (the server's store lock),
    not while training."""
    unknown = sorted(set(models) - set(ALL_MODELS))
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(ALL_MODELS)}")
    data_dir = kg.settings.data_dir
    lock = lock or nullcontext()
    with lock:
        snap = kg.snapshot
        triples = graph_triples(snap, kg.onto)
        watermark = snap.watermark
    out: list[dict[str, Any]] = []
    for name in models:
        if name == "gnn":
            out.append(_train_gnn(kg, progress, lock))
            continue
        config = KGEConfig(model=name)  # type: ignore[arg-type]
        if epochs is not None:
            config = replace(config, epochs=epochs)
        if dim is not None:
            config = replace(config, dim=dim)
        parent = None
        if refresh and ModelStore(data_dir, name).current() is not None:
            parent = KGEModel.load(data_dir, name)  # type: ignore[arg-type]
            config = replace(parent.config, epochs=config.epochs,
                             refresh_epochs=epochs or parent.config.refresh_epochs)
        if not triples:
            out.append({"model": name, "skipped": "the graph has no triples to learn from"})
            continue
        model = train_kge(triples, config, parent=parent, progress=progress,
                          watermark=watermark)
        version = model.save(data_dir)
        out.append({"model": name, "version": version.version, **_brief(version.meta)})
    return out


def _train_gnn(kg: KnowledgeGraph, progress: Progress | None,
               lock: AbstractContextManager[Any]) -> dict[str, Any]:
    from reasoning.embeddings.gnn import train_gnn
    from reasoning.rca.train import feedback_cases

    with lock:
        cases, missing = feedback_cases(kg)
    if not cases:
        return {"model": "rca-gnn", "skipped": "no incident with a confirmed root cause among "
                f"its RCA candidates ({missing} without); send POST /v1/feedback"}
    gnn = train_gnn(cases, kg.onto, progress=progress,
                    sources={"feedback": len(cases), "feedbackUnusable": missing})
    version = gnn.save(kg.settings.data_dir)
    return {"model": "rca-gnn", "version": version.version, **_brief(version.meta)}


def _brief(meta: dict[str, Any]) -> dict[str, Any]:
    keep = ("mode", "parent", "epochs", "triples", "entities", "cases", "seconds",
            "trainHits1", "createdAt")
    out = {k: meta[k] for k in keep if k in meta}
    if meta.get("losses"):
        out["finalLoss"] = meta["losses"][-1]
    return out

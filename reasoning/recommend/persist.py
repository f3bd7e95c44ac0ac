"""The catalogue kept in the data directory, so a one-off command need not rebuild it.

``<data dir>/recommend/catalogue.npz`` holds ``meta`` (JSON: ``formatVersion``, the
change-log ``watermark`` it was built at, whether it was built with text vectors
(``embed``), the embedding model, the items and definitions with everything ranking reads)
and ``vectors`` / ``defVectors`` (float32, when there are). It is written atomically after
every build; a reader takes it when its format is this one and nothing the catalogue
depends on changed in the change log since its watermark (the
:class:`~reasoning.recommend.service.Recommender` checks), and rebuilds otherwise. The
indexes (BM25, families) are derived on load: they cost milliseconds.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from reasoning.recommend.catalogue import Catalogue, Definition, Item

FORMAT_VERSION = 1
CATALOGUE_FILE = Path("recommend") / "catalogue.npz"


def catalogue_path(data_dir: Path) -> Path:
    return data_dir / CATALOGUE_FILE


def save(cat: Catalogue, path: Path, watermark: int, embed: bool) -> None:
    meta = {"formatVersion": FORMAT_VERSION, "watermark": watermark, "embed": embed,
            "embeddingModel": cat.embedding_model, "notes": cat.notes,
            "items": [_plain(asdict(it)) for it in cat.items],
            "definitions": [_plain(asdict(d)) for d in cat.definitions]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    arrays: dict[str, Any] = {"meta": np.array(json.dumps(meta))}
    if cat.vectors is not None:
        arrays["vectors"] = cat.vectors
    if cat.def_vectors is not None:
        arrays["defVectors"] = cat.def_vectors
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def load(path: Path, embed: bool) -> tuple[Catalogue, int] | None:
    """The stored catalogue and its watermark; None when there is none of this format
    built the same way (with or without text vectors), or it cannot be read: it is only a
    cache."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("formatVersion") != FORMAT_VERSION or meta.get("embed") != embed:
                return None
            vectors = data["vectors"] if "vectors" in data else None
            def_vectors = data["defVectors"] if "defVectors" in data else None
        items = [Item(**_typed(Item, x)) for x in meta["items"]]
        defs = [Definition(**_typed(Definition, x)) for x in meta["definitions"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    cat = Catalogue(items, defs, vectors, def_vectors, meta.get("embeddingModel"),
                    list(meta.get("notes") or []))
    return cat, int(meta["watermark"])


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: sorted(v) if isinstance(v, set) else v for k, v in doc.items()}


def _typed(cls: type, doc: dict[str, Any]) -> dict[str, Any]:
    sets = {f.name for f in fields(cls) if str(f.type).startswith("set")}
    return {k: set(v) if k in sets else v for k, v in doc.items()}

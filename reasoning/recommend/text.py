"""Text handling of the recommender: tokens, BM25, alert templates, mentioned types.

- :func:`tokens`: words of a text for lexical matching — CamelCase split
  (``KubePodCrashLooping`` → kube pod crash looping), lower-cased, English stop words
  removed, plural / past / gerund endings stripped by a minimal stemmer (``failed`` →
  ``fail``, ``pods`` → ``pod``), so that an alert's prose meets a runbook's.
- :class:`BM25`: Okapi BM25 (k1 = 1.2, b = 0.75, Lucene's idf) over a fixed corpus, as a
  sparse term × document matrix so one query costs one sparse product.
- :func:`render_template`: Prometheus annotations are Go templates; ``{{ $labels.pod }}``
  becomes the word ``pod`` (the alert carries that label), other actions (``{{ $value |
  humanize }}``) are dropped.
- :func:`label_types` / :func:`mentioned_types`: ontology classes an alert's label names or
  a text name, with the same vocabulary runbook ingest uses for ``mentionedTypes``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from ingest.runbooks import VOCABULARY

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[a-z0-9]+")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.S)
_LABEL_REF = re.compile(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)")
_TYPES = re.compile("|".join(f"(?P<t{i}>\\b(?:{p})\\b)" for i, (p, _) in enumerate(VOCABULARY)),
                    re.I)

# Common English function words; they carry no problem-specific meaning.
STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers him his how i if in into is it its itself just me more
most my no nor not now of off on once only or other our out over own same she should so some
such than that the their theirs them then there these they this those through to too under
until up very was we were what when where which while who whom why will with would you your
""".split())

# Alert label names → the ontology class of the object the label names.
LABEL_TYPES: Mapping[str, str] = {
    "pod": "Pod", "container": "Container", "deployment": "Deployment",
    "statefulset": "StatefulSet", "daemonset": "DaemonSet", "namespace": "Namespace",
    "node": "KubernetesNode", "cluster": "KubernetesCluster", "service": "Service",
    "ingress": "Ingress", "endpoint": "Endpoint", "gpu": "GPU", "router": "Router",
    "interface": "NetworkInterface", "link": "NetworkLink",
}


_SUFFIXES = (("sses", "ss", 5), ("ies", "y", 5), ("ied", "y", 5), ("ing", "", 7),
             ("ed", "", 6), ("s", "", 4))


def stem(word: str) -> str:
    """A minimal English stemmer: plural, past and gerund endings and a final ``e``
    (``failed`` → ``fail``, ``schedules`` → ``schedul``); conservative, so distinct
    terms such as ``config`` and ``configuration`` stay apart."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl, min_len in _SUFFIXES:
        if len(word) < min_len or not word.endswith(suffix):
            continue
        if suffix == "s" and word.endswith(("ss", "us", "is")):
            break
        word = word[: len(word) - len(suffix)] + repl
        if suffix in ("ing", "ed") and word[-1] == word[-2] and word[-1] not in "lsz":
            word = word[:-1]  # running -> run, stopped -> stop
        break
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


def tokens(text: str) -> list[str]:
    """Lexical tokens of ``text`` (see the module doc)."""
    words = _WORD.findall(_CAMEL.sub(" ", text).lower())
    return [stem(w) for w in words if w not in STOP_WORDS]


def render_template(text: str) -> str:
    """A Prometheus annotation with its Go template actions replaced by the label names
    they print (``{{ $labels.pod }}`` → ``pod``); other actions are dropped."""
    def action(m: re.Match[str]) -> str:
        return " ".join(_LABEL_REF.findall(m.group(1))) or " "

    return re.sub(r"[ \t]+", " ", _TEMPLATE.sub(action, text)).strip()


def template_labels(text: str) -> set[str]:
    """Label names an annotation template prints: labels the alert carries."""
    return set(_LABEL_REF.findall(text))


def label_types(label_names: Iterable[str]) -> set[str]:
    return {LABEL_TYPES[n] for n in label_names if n in LABEL_TYPES}


def mentioned_types(text: str) -> set[str]:
    """Ontology classes ``text`` names (the runbook ingest vocabulary)."""
    return {VOCABULARY[int(m.lastgroup[1:])][1] for m in _TYPES.finditer(text) if m.lastgroup}


class BM25:
    """Okapi BM25 over a fixed list of documents."""

    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        docs = [Counter(tokens(d)) for d in documents]
        self.vocabulary: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for j, tf in enumerate(docs):
            for term, n in tf.items():
                rows.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                cols.append(j)
                vals.append(float(n))
        n_docs = len(docs)
        lengths = np.array([sum(tf.values()) for tf in docs], dtype=np.float64)
        avg = float(lengths.mean()) if n_docs and lengths.mean() > 0 else 1.0
        tf_m = sp.csr_matrix((vals, (rows, cols)), shape=(len(self.vocabulary), n_docs))
        df = np.diff(tf_m.indptr).astype(np.float64)
        self.idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        # precompute the saturated term weights: w = tf (k1 + 1) / (tf + k1 (1 - b + b L/avg))
        coo = tf_m.tocoo()
        norm = k1 * (1 - b + b * lengths[coo.col] / avg)
        weights = coo.data * (k1 + 1) / (coo.data + norm)
        self._w = sp.csr_matrix((weights, (coo.row, coo.col)), shape=tf_m.shape)
        self.size = n_docs

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query`` (repeated query terms count again)."""
        counts = Counter(t for t in tokens(query) if t in self.vocabulary)
        if not counts or not self.size:
            return np.zeros(self.size)
        idx = np.fromiter((self.vocabulary[t] for t in counts), dtype=np.int64)
        q = np.fromiter(counts.values(), dtype=np.float64) * self.idf[idx]
        return np.asarray(self._w[idx].T @ q).ravel()


def max_normalised(scores: np.ndarray) -> np.ndarray:
    """Scores divided by the best one (so the best document has 1), zeros stay zeros."""
    top = float(scores.max()) if scores.size else 0.0
    return scores / top if top > 0 else np.zeros_like(scores)


def idf_weights(sets: Sequence[set[str]]) -> dict[str, float]:
    """Inverse document frequency of set members (a type every plan names weighs ~0)."""
    n = len(sets)
    df = Counter(x for s in sets for x in s)
    return {x: math.log((n + 1) / (c + 0.5)) for x, c in df.items()}

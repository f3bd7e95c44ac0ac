"""The learned-signal stage of RCA: scores of trained models fused into the ranking.

The engine (:func:`reasoning.rca.engine.analyse`) scores candidates from the incident's
evidence with hand-made signals. This stage runs after it, on the candidates it returned:
every *enabled* learned signal computes a value in [0, 1] per candidate from a trained
model, and the value joins the candidate's ``signals``, ``weight × value`` its
``contributions``, and the contribution its ``score``; the candidates are then re-ranked
(ties by IRI, so the order is deterministic). A learned signal whose model is not trained
(or whose libraries are not installed) is skipped and the outcome says why; it never fails
the analysis.

Learned signals (:data:`SCORERS`, one scorer per name):

- ``gnn`` — the root-cause GNN (:func:`reasoning.embeddings.gnn.gnn_scores`): GraphSAGE
  over the candidates and the relations among them, their engine signals as features,
  trained on confirmed root causes. The model sees only the candidates returned
  (``RCAConfig.max_candidates``), so it re-ranks the top of the engine's list.

Which signals are on, and their weights, is configuration: :class:`LearnedSettings`, kept in
the ``"learned"`` section of the RCA weights file (``<data dir>/models/rca-weights.json``,
next to the engine's ``"weights"``)::

    {"formatVersion": 1, "weights": {...},
     "learned": {"gnn": {"enabled": false, "weight": 1.0, "basis": "..."}}}

Defaults (:data:`DEFAULT_LEARNED`): every learned signal **off**. A signal is switched on
only where a measured ablation shows it helps; on the PetShop benchmark the GNN does not
(docs/rca.md, "Learned signals"), so it stays off.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kg.errors import ConfigError
from reasoning.rca.engine import SIGNALS, Candidate

if TYPE_CHECKING:
    from kg.graph import KnowledgeGraph

LEARNED_SIGNALS = ("gnn",)
ENTRY_KEYS = {"enabled", "weight", "basis"}


@dataclass(frozen=True)
class LearnedSignal:
    """One learned signal's configuration: whether it is fused, and its weight."""

    enabled: bool = False
    weight: float = 1.0
    basis: str = ""  # why it is on or off (the measurement that decided), for the record


DEFAULT_LEARNED: Mapping[str, LearnedSignal] = {
    "gnn": LearnedSignal(False, 1.0, "off by default: no measured gain (docs/rca.md)")}


@dataclass(frozen=True)
class LearnedSettings:
    """Which learned signals RCA fuses, with their weights (see the module doc)."""

    signals: Mapping[str, LearnedSignal] = field(default_factory=lambda: dict(DEFAULT_LEARNED))
    source: str = "default"

    @property
    def enabled(self) -> list[str]:
        return [n for n in LEARNED_SIGNALS if n in self.signals and self.signals[n].enabled]

    def with_signal(self, name: str, *, enabled: bool, weight: float | None = None,
                    basis: str | None = None) -> LearnedSettings:
        """These settings with ``name`` switched on or off (weight and basis replaced when
        given)."""
        _check_name(name, self.source)
        old = self.signals.get(name, DEFAULT_LEARNED[name])
        new = LearnedSignal(enabled, old.weight if weight is None else float(weight),
                            old.basis if basis is None else basis)
        return replace(self, signals={**self.signals, name: new})

    def to_json(self) -> dict[str, Any]:
        return {n: {"enabled": s.enabled, "weight": s.weight, "basis": s.basis}
                for n, s in self.signals.items()}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], source: str) -> LearnedSettings:
        """Settings from a ``"learned"`` section; names missing there keep their default.
        Raises :class:`kg.errors.ConfigError` naming the offending entry."""
        signals = dict(DEFAULT_LEARNED)
        for name, entry in doc.items():
            _check_name(name, source)
            if not isinstance(entry, Mapping) or set(entry) - ENTRY_KEYS:
                raise ConfigError(f"{source}: learned.{name} must be an object with keys "
                                  f"{sorted(ENTRY_KEYS)}, got {entry!r}")
            enabled = entry.get("enabled", False)
            weight = entry.get("weight", DEFAULT_LEARNED[name].weight)
            if not isinstance(enabled, bool):
                raise ConfigError(f"{source}: learned.{name}.enabled must be true or false")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
                raise ConfigError(f"{source}: learned.{name}.weight must be a number >= 0, "
                                  f"got {weight!r}")
            signals[name] = LearnedSignal(enabled, float(weight), str(entry.get("basis", "")))
        return cls(signals, source)

    @classmethod
    def load(cls, path: Path) -> LearnedSettings:
        """The ``"learned"`` section of an RCA weights file; the defaults without one."""
        if not path.exists():
            return cls()
        doc = json.loads(path.read_text())
        return cls.from_json(doc.get("learned") or {}, str(path))


def _check_name(name: str, source: str) -> None:
    if name not in LEARNED_SIGNALS:
        raise ConfigError(f"{source}: unknown learned signal {name!r}; known: "
                          f"{', '.join(LEARNED_SIGNALS)}")
    if name in SIGNALS:  # a learned signal must not overwrite an engine signal
        raise ConfigError(f"learned signal {name!r} clashes with an engine signal")


@dataclass
class LearnedOutcome:
    """The re-ranked candidates, and what happened to each learned signal."""

    candidates: list[Candidate]
    applied: dict[str, str] = field(default_factory=dict)  # signal -> model version used
    skipped: dict[str, str] = field(default_factory=dict)  # enabled, but: why not applied
    disabled: list[str] = field(default_factory=list)  # configured off

    def to_json(self) -> dict[str, Any]:
        return {"applied": self.applied, "skipped": self.skipped, "disabled": self.disabled}


class SignalUnavailable(Exception):
    """A learned signal cannot be computed now (no trained model, missing libraries)."""


# A scorer: the candidates' values in [0, 1] (missing ones count 0) and the model version.
Scorer = Callable[["KnowledgeGraph", Sequence[Candidate]], tuple[dict[str, float], str]]


def gnn_signal(kg: KnowledgeGraph, candidates: Sequence[Candidate]
               ) -> tuple[dict[str, float], str]:
    """The root-cause GNN's likelihood of each candidate (the most likely has 1)."""
    from reasoning.embeddings.store import ModelStore

    try:
        from reasoning.embeddings.gnn import MODEL_NAME, gnn_scores
    except ImportError as exc:  # torch / torch-geometric: the [ml] extra
        raise SignalUnavailable(f"needs the [ml] extra ({exc})") from exc
    version = ModelStore(kg.settings.data_dir, MODEL_NAME).current()
    if version is None:
        raise SignalUnavailable(f"no trained {MODEL_NAME} model in "
                                f"{kg.settings.data_dir / 'models'}; run `autocnc train "
                                "--model gnn`")
    scores = gnn_scores(kg, [c.entity for c in candidates],
                        {c.entity: c.signals for c in candidates})
    return scores, version.version


SCORERS: dict[str, Scorer] = {"gnn": gnn_signal}


def apply_learned(kg: KnowledgeGraph, candidates: Sequence[Candidate],
                  settings: LearnedSettings | None = None) -> LearnedOutcome:
    """Fuse the enabled learned signals into ``candidates`` (the engine's ranking, best
    first) and re-rank them; see the module doc. The input candidates are not modified."""
    settings = settings or LearnedSettings()
    values: dict[str, Mapping[str, float]] = {}
    outcome = LearnedOutcome([], disabled=[n for n in LEARNED_SIGNALS
                                           if n not in settings.enabled])
    for name in settings.enabled:
        if not candidates:
            break
        try:
            values[name], outcome.applied[name] = SCORERS[name](kg, candidates)
        except SignalUnavailable as exc:
            outcome.skipped[name] = str(exc)
    weights = {n: settings.signals[n].weight for n in values}
    outcome.candidates = fuse(candidates, values, weights)
    return outcome


def fuse(candidates: Sequence[Candidate], values: Mapping[str, Mapping[str, float]],
         weights: Mapping[str, float]) -> list[Candidate]:
    """Copies of ``candidates`` with each signal of ``values`` (per candidate IRI; missing
    ones count 0) added to ``signals``, ``weights[name] ×`` it to ``contributions`` and
    ``score``, sorted by score (ties by IRI). Re-fusing a signal replaces its old value."""
    out = []
    for c in candidates:
        signals, contributions, score = dict(c.signals), dict(c.contributions), c.score
        for name, per in values.items():
            value = float(per.get(c.entity, 0.0))
            contribution = weights[name] * value
            score += contribution - contributions.get(name, 0.0)
            signals[name], contributions[name] = value, contribution
        out.append(replace(c, signals=signals, contributions=contributions, score=score))
    out.sort(key=lambda c: (-c.score, c.entity))
    return out

"""Knowledge-graph embeddings with PyKEEN: a transductive and an inductive model.

Models (registry :data:`MODELS`, picked by name):

- ``rotate`` — RotatE (Sun et al., ICLR 2019): entities are complex vectors, each relation
  a rotation, ``h ∘ r ≈ t``. Chosen as the transductive model because the graph's
  relations are a mix of the patterns RotatE represents and translation models do not:
  antisymmetric (``runsOn``, ``partOf``), inverse pairs written in both directions
  (``hostedOn`` / ``implementedBy``), symmetric (``connectsTo``), and compositions
  (pod ``runsOn`` node ``partOf`` cluster). Every entity has its own vector, so a new entity
  needs training: a refresh starts from the previous version (old entities keep their
  vectors, new ones start random) and trains a few epochs.
- ``nodepiece`` — InductiveNodePiece (Galkin et al., ICLR 2022), relation tokens only: an
  entity is represented by the bag of relation types around it (with direction), so
  parameters exist only per relation type (of the ontology, a fixed vocabulary). A freshly
  scheduled pod gets its vector from its relations at once, without retraining
  (:meth:`KGEModel.embed_graph`); entities with the same relation pattern share a vector,
  which makes it a type-level, not an identity-level, embedding.

Training uses PyKEEN's stochastic local closed-world loop with negative sampling (Adam),
reports progress per epoch, and saves each run as a new version
(:mod:`reasoning.embeddings.store`) with its metadata. Link prediction is evaluated with
filtered ranks against a degree baseline (:func:`evaluate_link_prediction`).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ingest.base import NoProgress, Progress
from kg.facts import now_utc
from reasoning.embeddings.store import ModelStore, library_versions
from reasoning.embeddings.triples import Triple, entities_of

ModelName = Literal["rotate", "nodepiece"]
MODELS: tuple[ModelName, ...] = ("rotate", "nodepiece")


@dataclass(frozen=True)
class KGEConfig:
    model: ModelName = "rotate"
    dim: int = 32  # complex dimensions for RotatE
    epochs: int = 40
    refresh_epochs: int = 10  # epochs of an incremental refresh
    batch_size: int = 512
    lr: float = 0.01
    negatives: int = 16
    num_tokens: int = 12  # NodePiece: relation tokens per entity
    seed: int = 0


def relation_vocabulary() -> list[str]:
    """Every object property of the ontology, sorted: ids stay stable across versions."""
    from ontology import load_ontology

    return sorted(load_ontology().object_properties)


def _factory(triples: Sequence[Triple], entity_to_id: dict[str, int],
             relation_to_id: dict[str, int], inverse: bool) -> Any:
    from pykeen.triples import TriplesFactory

    return TriplesFactory.from_labeled_triples(
        np.asarray(triples, dtype=str).reshape(-1, 3), entity_to_id=entity_to_id,
        relation_to_id=relation_to_id, create_inverse_triples=inverse, compact_id=False)


def _build(config: KGEConfig, tf: Any) -> Any:
    import torch

    torch.manual_seed(config.seed)
    if config.model == "rotate":
        from pykeen.models import RotatE

        return RotatE(triples_factory=tf, embedding_dim=config.dim, random_seed=config.seed)
    if config.model == "nodepiece":
        from pykeen.models import InductiveNodePiece

        return InductiveNodePiece(triples_factory=tf, inference_factory=tf,
                                  num_tokens=config.num_tokens, embedding_dim=config.dim,
                                  aggregation="mlp", random_seed=config.seed)
    raise ValueError(f"unknown KGE model {config.model!r}; one of {', '.join(MODELS)}")


def _inductive(config: KGEConfig) -> bool:
    return config.model == "nodepiece"


@dataclass
class KGEModel:
    config: KGEConfig
    model: Any  # the PyKEEN model
    entity_to_id: dict[str, int]
    relation_to_id: dict[str, int]
    triples: list[Triple]
    meta: dict[str, Any]

    @property
    def mode(self) -> str | None:
        return "validation" if _inductive(self.config) else None

    # -- vectors ---------------------------------------------------------------------------
    def entity_matrix(self) -> np.ndarray:
        """One row per entity id: real vectors (complex ones as [real, imaginary])."""
        import torch

        with torch.no_grad():
            rep = self.model.entity_representations[0] if self.mode is None else \
                self.model._get_entity_representations_from_inductive_mode(
                    mode=self.mode)[0]
            x = rep(indices=None)
        if torch.is_complex(x):
            x = torch.cat([x.real, x.imag], dim=-1)
        return x.detach().cpu().numpy().astype(np.float32)

    def entity_vectors(self) -> dict[str, np.ndarray]:
        m = self.entity_matrix()
        return {iri: m[i] for iri, i in self.entity_to_id.items()}

    def embed_graph(self, triples: Sequence[Triple]) -> dict[str, np.ndarray]:
        """Vectors of every entity of ``triples`` — entities never seen in training
        included — from the trained relation tokens, without training (NodePiece only)."""
        import torch

        if not _inductive(self.config):
            raise ValueError(f"{self.config.model} is transductive: new entities need "
                             "`autocnc train --refresh`; use the nodepiece model")
        ents = entities_of(triples)
        tf = _factory(triples, {e: i for i, e in enumerate(ents)}, self.relation_to_id,
                      inverse=True)
        rep = self.model.create_entity_representation_for_new_triples(tf)
        with torch.no_grad():
            x = rep(indices=None).detach().cpu().numpy().astype(np.float32)
        return {e: x[i] for i, e in enumerate(ents)}

    # -- scores ----------------------------------------------------------------------------
    def score_tails(self, heads: Sequence[int], relations: Sequence[int]) -> np.ndarray:
        import torch

        batch = torch.as_tensor(np.stack([heads, relations], axis=1), dtype=torch.long)
        with torch.no_grad():
            return self.model.score_t(batch, mode=self.mode).cpu().numpy()

    def score_heads(self, relations: Sequence[int], tails: Sequence[int]) -> np.ndarray:
        import torch

        batch = torch.as_tensor(np.stack([relations, tails], axis=1), dtype=torch.long)
        with torch.no_grad():
            return self.model.score_h(batch, mode=self.mode).cpu().numpy()

    # -- persistence -----------------------------------------------------------------------
    def save(self, data_dir: Path) -> Any:
        return ModelStore(data_dir, self.config.model).save(
            self.model, self.meta,
            {"entities.json": self.entity_to_id, "relations.json": self.relation_to_id,
             "triples.json": self.triples})

    @classmethod
    def load(cls, data_dir: Path, name: ModelName = "rotate") -> KGEModel:
        version = ModelStore(data_dir, name).require()
        config = KGEConfig(**version.meta["config"])
        entity_to_id = version.read_json("entities.json")
        relation_to_id = version.read_json("relations.json")
        triples = [tuple(t) for t in version.read_json("triples.json")]
        tf = _factory(triples, entity_to_id, relation_to_id, _inductive(config))
        model = _build(config, tf)
        version.load_into(model)
        model.eval()
        return cls(config, model, entity_to_id, relation_to_id, triples,  # type: ignore[arg-type]
                   version.meta)


# -- training --------------------------------------------------------------------------------

def train_kge(triples: Sequence[Triple], config: KGEConfig | None = None, *,
              parent: KGEModel | None = None, progress: Progress | None = None,
              watermark: int | None = None, validation: Sequence[Triple] = (),
              eval_every: int = 10) -> KGEModel:
    """Train ``config.model`` on ``triples``; with ``parent`` (an earlier version of the same
    model) an incremental refresh: its parameters are the start, ``refresh_epochs`` run.
    With ``validation`` triples, the filtered MRR on them is checked every ``eval_every``
    epochs and the best state is kept (early stopping after two checks without gain)."""
    from pykeen.training import SLCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback

    config = config or KGEConfig()
    if not triples:
        raise ValueError("no triples to train on: ingest topology, runbooks or rules first")
    report: Progress = progress or NoProgress()
    relation_to_id = {r: i for i, r in enumerate(relation_vocabulary())}
    unknown = sorted({r for _, r, _ in triples} - set(relation_to_id))
    if unknown:
        raise ValueError(f"relation types outside the ontology: {unknown}")
    entity_to_id = dict(parent.entity_to_id) if parent else {}
    for e in entities_of(triples):
        entity_to_id.setdefault(e, len(entity_to_id))  # old ids kept, new ones appended
    tf = _factory(triples, entity_to_id, relation_to_id, _inductive(config))
    model = _build(config, tf)
    if parent is not None:
        _warm_start(model, parent)
        # the loop re-initialises the weights on its first run: keep the warm start
        model.reset_parameters_ = lambda: model  # type: ignore[method-assign]
    epochs = config.refresh_epochs if parent else config.epochs
    kge = KGEModel(config, model, entity_to_id, relation_to_id, list(triples), {})

    class Report(TrainingCallback):
        def post_epoch(self, epoch: int, epoch_loss: float, **kwargs: Any) -> None:
            report.advance(1)

    report.start(epochs, f"training {config.model}")
    loop = SLCWATrainingLoop(model=model, triples_factory=tf, optimizer="Adam",
                             optimizer_kwargs={"lr": config.lr},
                             negative_sampler_kwargs={"num_negs_per_pos": config.negatives},
                             mode="training" if _inductive(config) else None)
    known = _known([*triples, *validation], entity_to_id, relation_to_id)
    checks = [e for e in range(eval_every, epochs, eval_every)] if validation else []
    best: tuple[float, int, dict[str, Any] | None] = (-1.0, epochs, None)
    losses: list[float] = []
    t0 = time.perf_counter()
    # PyKEEN runs gc.collect() after every epoch; freezing what exists now (the graph, the
    # snapshot) keeps that from rescanning the whole process each time.
    gc.freeze()
    try:
        done, stale = 0, 0
        for until in [*checks, epochs]:
            losses += loop.train(triples_factory=tf, num_epochs=until,
                                 batch_size=min(config.batch_size, max(len(triples), 1)),
                                 use_tqdm=False, callbacks=[Report()],
                                 continue_training=done > 0) or []
            done = until
            if not validation:
                continue
            model.eval()
            mrr = _mrr(kge, validation, known)
            model.train()
            if mrr > best[0]:
                best, stale = (mrr, until, _state(model)), 0
            elif (stale := stale + 1) >= 2:
                break
    finally:
        gc.unfreeze()
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    kge.meta = {
        "model": config.model, "config": asdict(config), "createdAt": now_utc().isoformat(),
        "mode": "incremental" if parent else "full",
        "parent": parent.meta.get("version") if parent else None, "epochs": best[1],
        "validationMrr": round(best[0], 6) if validation else None,
        "triples": len(triples), "entities": len(entity_to_id),
        "relations": len({r for _, r, _ in triples}), "watermark": watermark,
        "losses": [round(float(x), 6) for x in losses],
        "seconds": round(time.perf_counter() - t0, 3), "libraries": library_versions(),
    }
    return kge


def _state(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _warm_start(model: Any, parent: KGEModel) -> None:
    """Copy the parent's learnt parameters: same-shaped ones whole, entity tables row by
    row (old entities keep their ids, so their rows are a prefix of the new table).
    Buffers (NodePiece's token assignment) are not copied: they describe the new graph."""
    import torch

    new = dict(model.named_parameters())
    with torch.no_grad():
        for key, old in parent.model.named_parameters():
            target = new.get(key)
            if target is None:
                continue
            if target.shape == old.shape:
                target.copy_(old)
            elif target.dim() == old.dim() and target.shape[1:] == old.shape[1:] \
                    and target.shape[0] > old.shape[0]:
                target[: old.shape[0]].copy_(old)


# -- evaluation ------------------------------------------------------------------------------

Known = tuple[dict[tuple[int, int], set[int]], dict[tuple[int, int], set[int]]]


def _known(triples: Sequence[Triple], ids: dict[str, int], rel: dict[str, int]) -> Known:
    tails: dict[tuple[int, int], set[int]] = {}
    heads: dict[tuple[int, int], set[int]] = {}
    for h, r, t in triples:
        if h in ids and t in ids:
            tails.setdefault((ids[h], rel[r]), set()).add(ids[t])
            heads.setdefault((rel[r], ids[t]), set()).add(ids[h])
    return tails, heads


def _filtered_rank(scores: np.ndarray, true: int, known: set[int]) -> float:
    """Realistic rank of ``true`` among candidates, other known true answers removed."""
    s = scores.astype(np.float64, copy=True)
    others = [k for k in known if k != true]
    if others:
        s[others] = -np.inf
    higher = float(np.sum(s > s[true]))
    ties = float(np.sum(s == s[true])) - 1
    return 1.0 + higher + ties / 2.0


def _ranks(kge: KGEModel, triples: Sequence[Triple], known: Known,
           scores: np.ndarray | None = None) -> list[float]:
    """Filtered ranks of the tail and the head of each triple; with ``scores`` (one per
    entity) those rank every query instead of the model (the baseline)."""
    ids, rel = kge.entity_to_id, kge.relation_to_id
    cases = [(ids[h], rel[r], ids[t]) for h, r, t in triples if h in ids and t in ids]
    out: list[float] = []
    for lo in range(0, len(cases), 256):
        chunk = cases[lo: lo + 256]
        hs, rs, ts = (list(x) for x in zip(*chunk, strict=True))
        if scores is None:
            st, sh = kge.score_tails(hs, rs), kge.score_heads(rs, ts)
        else:
            st = sh = np.broadcast_to(scores, (len(chunk), len(scores)))
        for k, (h, r, t) in enumerate(chunk):
            out.append(_filtered_rank(st[k], t, known[0][(h, r)]))
            out.append(_filtered_rank(sh[k], h, known[1][(r, t)]))
    return out


def _mrr(kge: KGEModel, triples: Sequence[Triple], known: Known) -> float:
    ranks = _ranks(kge, triples, known)
    return float(np.mean(1.0 / np.asarray(ranks))) if ranks else 0.0


def evaluate_link_prediction(train: Sequence[Triple], valid: Sequence[Triple],
                             test: Sequence[Triple], config: KGEConfig,
                             progress: Progress | None = None) -> dict[str, float]:
    """Train on ``train`` (early stopping on ``valid``) and rank each ``test`` triple's
    head and tail among all entities, filtered by every known triple; the degree baseline
    ranks candidates by their degree in ``train``. MRR, Hits@1, Hits@10 of both."""
    kge = train_kge(train, config, progress=progress, validation=valid)
    known = _known([*train, *valid, *test], kge.entity_to_id, kge.relation_to_id)
    degree = np.zeros(len(kge.entity_to_id))
    for h, _, t in train:
        degree[kge.entity_to_id[h]] += 1
        degree[kge.entity_to_id[t]] += 1

    def metrics(rs: list[float], prefix: str = "") -> dict[str, float]:
        a = np.asarray(rs) if rs else np.asarray([float(len(degree))])
        return {f"{prefix}mrr": float(np.mean(1 / a)), f"{prefix}hits1": float(np.mean(a <= 1)),
                f"{prefix}hits10": float(np.mean(a <= 10))}

    return {**metrics(_ranks(kge, test, known)),
            **metrics(_ranks(kge, test, known, degree), "degree_"),
            "cases": float(len(test)), "entities": float(len(degree)),
            "epochs": float(kge.meta["epochs"]), "seconds": float(kge.meta["seconds"])}


def with_epochs(config: KGEConfig, epochs: int | None) -> KGEConfig:
    return config if epochs is None else replace(config, epochs=epochs)


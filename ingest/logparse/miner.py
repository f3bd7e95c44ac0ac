"""Template mining with drain3's Drain, its state kept as our own versioned JSON.

Each message is masked (:mod:`ingest.logparse.masking`) and given to
``drain3.drain.Drain``, which finds the cluster of similar messages (same token count,
same leading tokens, at least ``sim_th`` of the tokens equal) or starts a new one, and
generalises the cluster's template by replacing the tokens that differ with ``<*>``.

Two things are ours:

* **A memo** of masked message -> cluster. Most masked messages repeat exactly; the memo
  answers them without a tree search (the hot path of log ingest) and gives a repeated
  message the cluster it got the first time, so re-ingesting the same lines maps every
  line exactly as before (Drain's tree search alone may route a line elsewhere once later
  clusters have changed the prefix tree). The memo keeps the ``MEMO_MAX`` most recent
  messages.
* **Template versions.** Drain rewrites a cluster's template as it generalises it.
  :meth:`TemplateMiner.commit` compares each cluster with the version last committed:
  a new cluster becomes version 1, a changed one the next version; the graph keeps every
  version as its own ``LogTemplate`` linked by ``generalizedTo``.

The state file (``<data dir>/logs/miners/<name>.json``) holds ``formatVersion`` 1, the
miner's random id (part of every template IRI, so a miner started afresh never reuses the
IRIs of an older one), the configuration, the clusters with their committed version, the
prefix tree and the memo. drain3's own (pickle-based) persistence is not used.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drain3.drain import Drain, LogCluster, Node

from ingest.logparse.masking import Masker, render

STATE_FORMAT = 1
STATE_KIND = "autocnc.log-miner"
MEMO_MAX = 200_000


class MinerStateError(ValueError):
    """A miner state file that cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class MinerConfig:
    """The template miner's settings; the defaults are the generic configuration chosen by
    ``bench/log_templates.py`` (leave-one-system-out on Loghub 2k)."""

    sim_th: float = 0.8
    depth: int = 5
    max_children: int = 100
    masking: str = "ids"
    mask_paths: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.sim_th <= 1.0:
            raise ValueError(f"sim_th must be in (0, 1], got {self.sim_th!r}")
        if not 3 <= self.depth <= 16:
            raise ValueError(f"depth must be 3..16, got {self.depth!r}")
        if self.max_children < 2:
            raise ValueError(f"max_children must be at least 2, got {self.max_children!r}")
        Masker(self.masking)  # validates the variant

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> MinerConfig:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


@dataclass
class Version:
    """The committed version of a cluster's template."""

    version: int
    template: str  # masked template tokens joined by spaces
    valid_from: float  # source time (epoch s) from which this version holds


@dataclass(frozen=True)
class Change:
    """A template version created by :meth:`TemplateMiner.commit`."""

    cid: int
    version: int
    template: str
    valid_from: float
    previous: Version | None  # the version it generalises, None for a new cluster


@dataclass
class TemplateMiner:
    config: MinerConfig
    miner_id: str
    drain: Drain
    versions: dict[int, Version] = field(default_factory=dict)
    memo: dict[str, int] = field(default_factory=dict)
    masker: Masker = field(default_factory=Masker)
    created: dict[int, float] = field(default_factory=dict)  # since the last commit
    changed: dict[int, float] = field(default_factory=dict)

    @classmethod
    def new(cls, config: MinerConfig) -> TemplateMiner:
        return cls(config, uuid.uuid4().hex[:12], _drain(config),
                   masker=Masker(config.masking, paths=config.mask_paths))

    def add(self, content: str, time: float) -> int:
        """The cluster id of a message (mining it when its masked form is new)."""
        masked = self.masker.mask(content)
        cid = self.memo.get(masked)
        if cid is not None:
            return cid
        cluster, update = self.drain.add_log_message(masked)
        cid = cluster.cluster_id
        if update == "cluster_created":
            self.created[cid] = time
        elif update == "cluster_template_changed" and cid not in self.created:
            self.changed.setdefault(cid, time)
        if len(self.memo) >= MEMO_MAX:
            self.memo = dict(list(self.memo.items())[MEMO_MAX // 2:])
        self.memo[masked] = cid
        return cid

    def template(self, cid: int) -> str:
        return " ".join(self.drain.id_to_cluster[cid].log_template_tokens)

    def text(self, cid: int) -> str:
        """The current template of a cluster as shown to people (``<*>`` placeholders)."""
        return render(self.template(cid))

    def commit(self) -> list[Change]:
        """New versions for the clusters created or generalised since the last commit."""
        out: list[Change] = []
        for cid, at in self.created.items():
            v = Version(1, self.template(cid), at)
            self.versions[cid] = v
            out.append(Change(cid, 1, v.template, at, None))
        for cid, at in self.changed.items():
            old = self.versions.get(cid)
            tpl = self.template(cid)
            if old is None or old.template == tpl:
                continue
            v = Version(old.version + 1, tpl, max(at, old.valid_from))
            self.versions[cid] = v
            out.append(Change(cid, v.version, tpl, v.valid_from, old))
        self.created, self.changed = {}, {}
        return out

    # -- state ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        clusters = []
        for cid, c in sorted(self.drain.id_to_cluster.items()):
            v = self.versions.get(cid)
            clusters.append({"id": cid, "tokens": list(c.log_template_tokens), "size": c.size,
                             "version": v.version if v else 0,
                             "committed": v.template if v else None,
                             "validFrom": v.valid_from if v else None})
        return {"formatVersion": STATE_FORMAT, "kind": STATE_KIND, "minerId": self.miner_id,
                "config": self.config.to_json(),
                "clustersCounter": self.drain.clusters_counter, "clusters": clusters,
                "tree": _tree_json(self.drain.root_node), "memo": self.memo}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TemplateMiner:
        if doc.get("kind") != STATE_KIND:
            raise ValueError("not a log miner state")
        if doc.get("formatVersion") != STATE_FORMAT:
            raise ValueError(f"formatVersion {doc.get('formatVersion')!r} is not supported "
                             f"(this version reads {STATE_FORMAT})")
        config = MinerConfig.from_json(doc["config"])
        drain = _drain(config)
        versions: dict[int, Version] = {}
        for c in doc["clusters"]:
            cluster = LogCluster(c["tokens"], int(c["id"]))
            cluster.size = int(c["size"])
            drain.id_to_cluster[cluster.cluster_id] = cluster
            if c.get("version"):
                versions[cluster.cluster_id] = Version(int(c["version"]), c["committed"],
                                                       float(c["validFrom"]))
        drain.clusters_counter = int(doc["clustersCounter"])
        drain.root_node = _tree_from_json(doc["tree"])
        memo = {str(k): int(v) for k, v in doc.get("memo", {}).items()}
        return cls(config, str(doc["minerId"]), drain, versions, memo,
                   Masker(config.masking, paths=config.mask_paths))

    @classmethod
    def load(cls, path: Path) -> TemplateMiner:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_json(doc)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MinerStateError(
                f"log miner state {path} cannot be read ({exc}); move it away to start a "
                "new miner (its templates stay in the graph under the old miner id)") from exc

    def save(self, path: Path) -> None:
        """Write the state atomically (a crash leaves the old or the new file, never half)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")),
                       encoding="utf-8")
        os.replace(tmp, path)


def _drain(config: MinerConfig) -> Drain:
    return Drain(depth=config.depth, sim_th=config.sim_th, max_children=config.max_children)


def _tree_json(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if node.cluster_ids:
        out["ids"] = list(node.cluster_ids)
    if node.key_to_child_node:
        out["c"] = {k: _tree_json(v) for k, v in node.key_to_child_node.items()}
    return out


def _tree_from_json(doc: dict[str, Any]) -> Node:
    node = Node()
    node.cluster_ids = [int(i) for i in doc.get("ids", [])]
    node.key_to_child_node = {str(k): _tree_from_json(v) for k, v in doc.get("c", {}).items()}
    return node


def mine(contents: Iterable[str], config: MinerConfig) -> list[int]:
    """Cluster ids of messages mined in order by a fresh miner (for benchmarks)."""
    miner = TemplateMiner.new(config)
    return [miner.add(c, 0.0) for c in contents]

"""Fault-propagation rules as data (``ontology/rules/*.yaml``, format version 1).

A rule: a fault of an entity of class ``cause`` can impact an entity of class ``effect``
linked to it by ``relation`` (or any sub-property of it, answered at query time from the
ontology), pointing ``effect-to-cause`` (pod runsOn node) or ``cause-to-effect`` (container
partOf pod). ``weight`` in (0, 1] is how strongly the rule propagates; ``hypothesis`` names
the fault it suggests for the cause. See docs/rules.md.

:class:`PropagationGraph` compiles the rules against the analytic snapshot into one sparse
matrix ``W`` with ``W[effect, cause]`` = the strongest rule linking them, so RCA walks from
symptoms to causes with sparse matrix-vector products: no per-node database round trips.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import yaml

from kg.errors import ConfigError
from kg.snapshot import AnalyticSnapshot, Touched
from ontology import Ontology

RULES_DIR = Path(__file__).resolve().parents[1] / "ontology" / "rules"
FORMAT_VERSION = 1
DIRECTIONS = ("effect-to-cause", "cause-to-effect")


@dataclass(frozen=True)
class PropagationRule:
    id: str
    cause: str
    effect: str
    relation: str
    direction: str
    weight: float
    hypothesis: str
    description: str = ""


def load_rules(onto: Ontology, paths: Iterable[Path] | None = None) -> list[PropagationRule]:
    """Every rule of the YAML files (default: ontology/rules/*.yaml), checked against the
    ontology; ConfigError names the file, rule and field of the first bad one."""
    files = sorted(paths) if paths is not None else sorted(RULES_DIR.glob("*.yaml"))
    rules: list[PropagationRule] = []
    seen: set[str] = set()
    for path in files:
        try:
            doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read rules: {exc}") from exc
        if doc.get("formatVersion", FORMAT_VERSION) != FORMAT_VERSION:
            raise ConfigError(f"{path}: unsupported formatVersion {doc.get('formatVersion')!r}")
        for i, raw in enumerate(doc.get("rules") or []):
            rule = _rule(onto, raw, f"{path}: rules[{i}]")
            if rule.id in seen:
                raise ConfigError(f"{path}: rules[{i}]: duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            rules.append(rule)
    return rules


def _rule(onto: Ontology, raw: Any, where: str) -> PropagationRule:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a rule is a mapping")
    for name in ("id", "cause", "effect", "relation", "direction", "weight"):
        if raw.get(name) in (None, ""):
            raise ConfigError(f"{where}: field {name!r} is required")
    for name in ("cause", "effect"):
        if raw[name] not in onto.classes:
            raise ConfigError(f"{where}: {name} {raw[name]!r} is not an ontology class")
    if raw["relation"] not in onto.object_properties:
        raise ConfigError(f"{where}: relation {raw['relation']!r} is not an object property")
    if raw["direction"] not in DIRECTIONS:
        raise ConfigError(f"{where}: direction must be one of {', '.join(DIRECTIONS)}")
    weight = raw["weight"]
    if not isinstance(weight, int | float) or not 0 < weight <= 1:
        raise ConfigError(f"{where}: weight must be a number in (0, 1]")
    return PropagationRule(str(raw["id"]), raw["cause"], raw["effect"], raw["relation"],
                           raw["direction"], float(weight),
                           str(raw.get("hypothesis") or raw["id"]),
                           str(raw.get("description") or ""))


def sub_properties(onto: Ontology, name: str) -> set[str]:
    """``name`` and every object property below it (transitively)."""
    out = {name}
    changed = True
    while changed:
        changed = False
        for p, info in onto.object_properties.items():
            if p not in out and any(parent in out for parent in info.parents):
                out.add(p)
                changed = True
    return out


_Best = dict[tuple[int, int], tuple[float, int, str]]  # (effect, cause) -> weight, rule, rel


@dataclass
class PropagationGraph:
    """``W[effect, cause]``: the strongest rule weight by which ``cause`` can impact
    ``effect``; ``rule_of[(effect, cause)]`` the rule (index) and the relation used (ties:
    the first rule in file order, then the relation name).

    Compiled once (:meth:`build`), then patched from the snapshot's journal
    (:meth:`updated`): new relations, relations retired or back, retired entities only
    change the entries between the entities they touch, so topology churn (pods scheduled
    and deleted) does not recompile the whole graph."""

    W: sp.csr_matrix
    rule_of: dict[tuple[int, int], tuple[int, str]]
    rules: Sequence[PropagationRule]
    watermark: int

    @classmethod
    def build(cls, snap: AnalyticSnapshot, onto: Ontology,
              rules: Sequence[PropagationRule]) -> PropagationGraph:
        match = _Matcher(onto, rules)
        best: _Best = {}
        for key, valid in snap.edges.items():
            if valid and key[0] in match.by_rel:
                match.add(snap, key, best)
        n = snap.node_count
        if best:
            keys = np.array(list(best), dtype=np.int64)
            vals = np.array([v[0] for v in best.values()], dtype=np.float64)
            W = sp.csr_matrix((vals, (keys[:, 0], keys[:, 1])), shape=(n, n))
        else:
            W = sp.csr_matrix((n, n), dtype=np.float64)
        return cls(W, {k: (v[1], v[2]) for k, v in best.items()}, rules, snap.watermark)

    def updated(self, snap: AnalyticSnapshot, onto: Ontology,
                touched: Sequence[Touched]) -> PropagationGraph | None:
        """This graph brought up to ``snap`` by the changes ``touched`` lists (a new graph,
        or this one grown when nothing that rules read changed); None when a change needs a
        full :meth:`build` (an existing entity changed class or came back)."""
        match = _Matcher(onto, self.rules)
        old_n, n = self.W.shape[0], snap.node_count
        pairs: set[tuple[int, int]] = set()
        dead: set[int] = set()
        for t in touched:
            for i in t.changed_nodes:
                if snap.alive[i] or i in dead:  # a class change, or an entity come back
                    return None
                dead.add(i)
            for rel, start, end in t.relations:
                if rel in match.by_rel:
                    a, b = snap.index[start], snap.index[end]
                    pairs.add((min(a, b), max(a, b)))
        if not pairs and not dead:
            if old_n < n:
                self.W.resize((n, n))
            self.watermark = snap.watermark
            return self
        best: _Best = {}
        for a, b in sorted(pairs):  # every relation between the two, either way
            for rel in match.by_rel:
                for key in ((rel, snap.iris[a], snap.iris[b]), (rel, snap.iris[b], snap.iris[a])):
                    if snap.edges.get(key):
                        match.add(snap, key, best)
        coo = self.W.tocoo()
        rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
        drop = np.zeros(len(rows), dtype=bool)
        if dead:
            gone = np.fromiter(dead, dtype=np.int64)
            drop |= np.isin(rows, gone) | np.isin(cols, gone)
        if pairs:
            lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
            codes = lo * max(n, 1) + hi
            wanted = np.array([a * max(n, 1) + b for a, b in pairs], dtype=np.int64)
            drop |= np.isin(codes, wanted)
        keep = ~drop
        rule_of = self.rule_of  # handed over to the new graph: this one is replaced
        for effect, cause in zip(rows[drop].tolist(), cols[drop].tolist(), strict=True):
            rule_of.pop((effect, cause), None)
        rule_of.update({k: (v[1], v[2]) for k, v in best.items()})
        new = np.array(list(best), dtype=np.int64).reshape(-1, 2)
        W = sp.csr_matrix(
            (np.concatenate([coo.data[keep], [v[0] for v in best.values()]]),
             (np.concatenate([rows[keep], new[:, 0]]), np.concatenate([cols[keep], new[:, 1]]))),
            shape=(n, n))
        return PropagationGraph(W, rule_of, self.rules, snap.watermark)


class _Matcher:
    """Which rules a relation between two entities of given classes fires."""

    def __init__(self, onto: Ontology, rules: Sequence[PropagationRule]) -> None:
        self.onto, self.rules = onto, rules
        self.by_rel: dict[str, list[int]] = {}
        for r_i, rule in enumerate(rules):
            for rel in sorted(sub_properties(onto, rule.relation)):
                self.by_rel.setdefault(rel, []).append(r_i)
        self._is_a: dict[tuple[str, str], bool] = {}

    def is_a(self, kind: str, cls_name: str) -> bool:
        key = (kind, cls_name)
        if key not in self._is_a:
            self._is_a[key] = kind in self.onto.classes and self.onto.is_subclass(kind, cls_name)
        return self._is_a[key]

    def add(self, snap: AnalyticSnapshot, key: tuple[str, str, str], best: _Best) -> None:
        """Fold the rules the valid relation ``key`` fires into ``best``."""
        rel, start, end = key
        s, e = snap.index[start], snap.index[end]
        if not (snap.alive[s] and snap.alive[e]):
            return
        for r_i in self.by_rel[rel]:
            rule = self.rules[r_i]
            effect, cause = (s, e) if rule.direction == "effect-to-cause" else (e, s)
            if not (self.is_a(snap.kinds[cause], rule.cause)
                    and self.is_a(snap.kinds[effect], rule.effect)):
                continue
            old = best.get((effect, cause))
            # the strongest rule; among equals the first rule, then the relation name, so
            # that a patch and a full build agree whatever order they meet relations in
            if old is None or (-rule.weight, r_i, rel) < (-old[0], old[1], old[2]):
                best[(effect, cause)] = (rule.weight, r_i, rel)

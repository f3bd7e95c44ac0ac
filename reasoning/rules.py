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
from kg.snapshot import AnalyticSnapshot
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


@dataclass
class PropagationGraph:
    """``W[effect, cause]``: the strongest rule weight by which ``cause`` can impact
    ``effect``; ``rule_of[(effect, cause)]`` the rule (index) and the relation used."""

    W: sp.csr_matrix
    rule_of: dict[tuple[int, int], tuple[int, str]]
    rules: Sequence[PropagationRule]
    watermark: int

    @classmethod
    def build(cls, snap: AnalyticSnapshot, onto: Ontology,
              rules: Sequence[PropagationRule]) -> PropagationGraph:
        kind_ok: dict[tuple[str, str], bool] = {}

        def is_a(kind: str, cls_name: str) -> bool:
            key = (kind, cls_name)
            if key not in kind_ok:
                kind_ok[key] = kind in onto.classes and onto.is_subclass(kind, cls_name)
            return kind_ok[key]

        by_rel: dict[str, list[int]] = {}
        for r_i, rule in enumerate(rules):
            for rel in sub_properties(onto, rule.relation):
                by_rel.setdefault(rel, []).append(r_i)
        best: dict[tuple[int, int], tuple[float, int, str]] = {}
        for (rel, start, end), valid in snap.edges.items():
            if not valid or rel not in by_rel:
                continue
            s, e = snap.index[start], snap.index[end]
            if not (snap.alive[s] and snap.alive[e]):
                continue
            for r_i in by_rel[rel]:
                rule = rules[r_i]
                effect, cause = (s, e) if rule.direction == "effect-to-cause" else (e, s)
                if not (is_a(snap.kinds[cause], rule.cause)
                        and is_a(snap.kinds[effect], rule.effect)):
                    continue
                old = best.get((effect, cause))
                if old is None or rule.weight > old[0]:
                    best[(effect, cause)] = (rule.weight, r_i, rel)
        n = snap.node_count
        if best:
            keys = np.array(list(best), dtype=np.int64)
            vals = np.array([v[0] for v in best.values()], dtype=np.float64)
            W = sp.csr_matrix((vals, (keys[:, 0], keys[:, 1])), shape=(n, n))
        else:
            W = sp.csr_matrix((n, n), dtype=np.float64)
        return cls(W, {k: (v[1], v[2]) for k, v in best.items()}, rules, snap.watermark)

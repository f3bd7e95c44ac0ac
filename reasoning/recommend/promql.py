"""What the recommender reads from PromQL: metric names, label names and matched values.

A light reading, not a parser: strings, label matchers and grouping clauses are taken out,
and identifiers that are no function, keyword or duration are metric names.
"""

from __future__ import annotations

import re

_PROM_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_PROM_BRACES = re.compile(r"\{[^{}]*\}")
_PROM_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_PROM_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_PROM_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "bool",
                            "offset", "group_left", "group_right", "inf", "nan", "atan2"})
_MATCH_EQ = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\s*=\s*"((?:\\.|[^"\\])*)"')
_METRIC_IN_TEXT = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+){2,}\b")


def expression_metrics(expr: str) -> set[str]:
    """Metric names of a PromQL expression (identifiers that are no function, keyword,
    label or duration)."""
    text = _PROM_STRINGS.sub(" ", expr)
    text = _PROM_GROUPING.sub(" ", _PROM_BRACES.sub(" ", text))
    text = re.sub(r"\[[^\]]*\]", " ", text)
    out = set()
    for m in _PROM_IDENT.finditer(text):
        name = m.group(0)
        rest = text[m.end():].lstrip()
        if name.lower() in _PROM_KEYWORDS or rest.startswith("("):
            continue
        if "_" in name or ":" in name:
            out.add(name)
    return out


def expression_labels(expr: str) -> set[str]:
    """Label names an expression matches on or groups by."""
    text = _PROM_STRINGS.sub('""', expr)
    out = set()
    for m in _PROM_BRACES.finditer(text):
        out |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(0)))
    for m in _PROM_GROUPING.finditer(text):
        out |= {x.strip() for x in m.group(2).split(",") if x.strip()}
    return out


def expression_values(expr: str) -> list[str]:
    """The label values an expression matches exactly (``job="kube-state-metrics"``):
    what the selected series, and mostly the alert, carry."""
    return [m[1] for m in _MATCH_EQ.finditer(expr) if m[1]]


def text_metrics(text: str) -> set[str]:
    """Metric-like names (``node_filesystem_free_bytes``) in prose or commands."""
    return set(_METRIC_IN_TEXT.findall(text))

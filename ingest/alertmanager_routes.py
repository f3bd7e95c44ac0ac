"""Alertmanager's routing tree, read from its configuration: which route an alert takes and
so the group key its webhook notifications carry.

The webhook's ``groupKey`` is ``{route key}:{group labels}``: the route key is the chain of
the route's matchers from the root (``{}/{severity="page"}``), the group labels are the
alert's labels named by the route's ``group_by`` (all of them for ``...``), printed as Go
prints a label set (``{alertname="X", job="y"}``). The resync (:mod:`api.alert_resync`)
gives the alerts it reads from Alertmanager's API the same key, so they join the incidents
their webhook notifications join. This follows ``dispatch/route.go`` and
``pkg/labels/matcher.go`` of Alertmanager: children inherit the receiver and ``group_by``;
a route matches when all its matchers do; the first matching child wins unless it has
``continue``; a route none of whose children match is the match itself.

:func:`routing_tree` parses the configuration text (``GET /api/v2/status`` gives it);
:class:`RouteConfigError` names what it cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

from ingest.base import IngestError

_OPS = ("=~", "!~", "!=", "=")  # longest first
_ORDER = {"=": 0, "!=": 1, "=~": 2, "!~": 3}  # Go's MatchType order
_RESERVED = re.compile(r"[\s{}!=~,\\\"'`]")


class RouteConfigError(IngestError):
    """Alertmanager's configuration has no routing tree this module can read."""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str
    _re: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, name: str, op: str, value: str) -> Matcher:
        pattern = None
        if op in ("=~", "!~"):
            try:
                pattern = re.compile(f"(?:{value})")
            except re.error as exc:
                raise RouteConfigError(f"matcher {name}{op}{value!r}: {exc}") from None
        return cls(name, op, value, pattern)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")  # an absent label matches as the empty value
        if self._re is not None:
            hit = self._re.fullmatch(v) is not None
            return hit if self.op == "=~" else not hit
        return (v == self.value) if self.op == "=" else (v != self.value)

    def sort_key(self) -> tuple[str, str, int]:
        return (self.name, self.value, _ORDER[self.op])

    def __str__(self) -> str:
        if _RESERVED.search(self.name):
            return f"{go_quote(self.name)}{self.op}{go_quote(self.value)}"
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


@dataclass
class Route:
    receiver: str
    group_by: frozenset[str] | None  # None: every label (group_by: ['...'])
    matchers: tuple[Matcher, ...] = ()
    cont: bool = False
    routes: list[Route] = field(default_factory=list)
    parent: Route | None = None

    @property
    def key(self) -> str:
        own = "{" + ",".join(str(m) for m in self.matchers) + "}"
        return own if self.parent is None else f"{self.parent.key}/{own}"

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes the alert takes, depth first, left to right (Alertmanager's Match)."""
        if not all(m.matches(labels) for m in self.matchers):
            return []
        found: list[Route] = []
        for child in self.routes:
            got = child.match(labels)
            found.extend(got)
            if got and not child.cont:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        return {k: v for k, v in labels.items()
                if self.group_by is None or k in self.group_by}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """The ``groupKey`` of the webhook notifications of this route for these labels."""
        return f"{self.key}:{label_set(self.group_labels(labels))}"


def routing_tree(config_text: str) -> Route:
    """The routing tree of an Alertmanager configuration (YAML text)."""
    try:
        doc = yaml.safe_load(config_text)
    except yaml.YAMLError as exc:
        raise RouteConfigError(f"the configuration is not YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("route"), dict):
        raise RouteConfigError("the configuration has no route")
    return _route(doc["route"], None, "route")


def webhook_receivers(config_text: str, path: str = "/v1/alerts/alertmanager") -> set[str]:
    """Names of the receivers with a webhook posting to ``path`` (AutoCNC's receiver);
    empty when none does or the URLs are masked (newer Alertmanagers print ``<secret>``)."""
    try:
        doc = yaml.safe_load(config_text)
    except yaml.YAMLError:
        return set()
    out: set[str] = set()
    receivers = doc.get("receivers") if isinstance(doc, dict) else None
    for rec in receivers if isinstance(receivers, list) else []:
        if not isinstance(rec, dict):
            continue
        for hook in rec.get("webhook_configs") or []:
            url = hook.get("url") if isinstance(hook, dict) else None
            if isinstance(url, str) and urlsplit(url).path.rstrip("/").endswith(path):
                out.add(str(rec.get("name")))
    return out


def _route(doc: Mapping[str, Any], parent: Route | None, at: str) -> Route:
    receiver = doc.get("receiver") or (parent.receiver if parent else "")
    group_by: frozenset[str] | None = parent.group_by if parent else frozenset()
    names = doc.get("group_by")
    if names:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RouteConfigError(f"{at}.group_by: not a list of label names")
        group_by = None if "..." in names else frozenset(names)
    matchers: list[Matcher] = []
    for name, value in _mapping(doc.get("match"), f"{at}.match").items():
        matchers.append(Matcher.of(name, "=", value))
    for name, value in _mapping(doc.get("match_re"), f"{at}.match_re").items():
        # Alertmanager keys the route by the anchored form of a match_re regex
        matchers.append(Matcher.of(name, "=~", f"^(?:{value})$"))
    for text in doc.get("matchers") or []:
        matchers.extend(parse_matchers(str(text)))
    route = Route(str(receiver), group_by, tuple(sorted(matchers, key=Matcher.sort_key)),
                  bool(doc.get("continue")), [], parent)
    children = doc.get("routes") or []
    if not isinstance(children, list):
        raise RouteConfigError(f"{at}.routes: not a list")
    route.routes = [_route(c, route, f"{at}.routes[{i}]") for i, c in enumerate(children)
                    if isinstance(c, dict)]
    return route


def _mapping(obj: Any, at: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise RouteConfigError(f"{at}: not a mapping")
    return {str(k): str(v) for k, v in obj.items()}


_MATCHER = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[^\s!=~"]+)\s*(=~|!~|!=|=)\s*'
                      r'("(?:[^"\\]|\\.)*"|[^,]*?)\s*(?:,|$)')


def parse_matchers(text: str) -> list[Matcher]:
    """The matchers of one ``matchers`` item: ``name="v"``, ``name=~"re"``, ``name!=v`` ...,
    several separated by commas, optionally in braces."""
    s = text.strip()
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    out: list[Matcher] = []
    pos = 0
    while pos < len(s) and s[pos:].strip():
        m = _MATCHER.match(s, pos)
        if m is None or m.end() == pos:
            raise RouteConfigError(f"matcher {text!r}: cannot read it at {s[pos:]!r}")
        name, op, value = m.group(1), m.group(2), m.group(3)
        out.append(Matcher.of(_unquote(name), op, _unquote(value)))
        pos = m.end()
    return out


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] == '"':
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
                      s[1:-1])
    return s


def label_set(labels: Mapping[str, str]) -> str:
    """A label set as Go's ``model.LabelSet.String()`` prints it: names sorted,
    ``name="value"`` with Go's quoting, joined by ``", "``."""
    return "{" + ", ".join(f"{k}={go_quote(labels[k])}" for k in sorted(labels)) + "}"


def go_quote(s: str) -> str:
    """``strconv.Quote``: printable characters as they are, the rest escaped."""
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _SHORT:
            out.append(_SHORT[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


_SHORT = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
          "\v": "\\v"}


def routes_of(tree: Route, labels: Mapping[str, str], receivers: Sequence[str] = ()
              ) -> list[Route]:
    """The routes an alert takes, those to ``receivers`` first when given."""
    found = tree.match(labels)
    if receivers:
        wanted = set(receivers)
        found.sort(key=lambda r: r.receiver not in wanted)
    return found

"""Proactive content negotiation on an ``Accept`` header (RFC 9110, section 12.5.1).

Each offered type gets the quality of the most specific media range that matches it
(``text/csv`` before ``text/*`` before ``*/*``); the offer of highest quality wins, ties
going to the server's order of preference; quality 0 means "not acceptable". No header (or
an empty one) accepts anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MediaRange:
    type: str  # "text", or "*"
    subtype: str  # "csv", or "*"
    q: float

    def specificity(self, mime: str) -> int | None:
        """How specifically this range matches ``mime`` (2 exact, 1 type/*, 0 */*), or
        None when it does not match."""
        kind, _, sub = mime.partition("/")
        if self.type == "*":
            return 0 if self.subtype == "*" else None
        if self.type != kind:
            return None
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == sub else None


def parse_accept(header: str | None) -> list[MediaRange]:
    """The media ranges of an Accept header; malformed entries are left out (a client's
    typo must not make every answer unacceptable)."""
    ranges = []
    for part in (header or "").split(","):
        mime, *params = (p.strip() for p in part.split(";"))
        kind, slash, sub = mime.lower().partition("/")
        if not slash or not kind or not sub or (kind == "*" and sub != "*"):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 1.0
        ranges.append(MediaRange(kind, sub, q))
    return ranges


def quality(ranges: Sequence[MediaRange], mime: str) -> float:
    """How acceptable ``mime`` is (0 to 1) under ``ranges``."""
    if not ranges:
        return 1.0
    best: tuple[int, float] | None = None
    for r in ranges:
        spec = r.specificity(mime)
        if spec is not None and (best is None or spec > best[0]):
            best = (spec, r.q)
    return 0.0 if best is None else best[1]


def choose(ranges: Sequence[MediaRange],
           offers: Sequence[tuple[str, Sequence[str]]]) -> str | None:
    """The offer to serve: ``offers`` are (type served, the names it answers to) in the
    server's order of preference; None when none is acceptable."""
    best: tuple[float, str] | None = None
    for served, names in offers:
        q = max(quality(ranges, name) for name in names)
        if q > 0 and (best is None or q > best[0]):
            best = (q, served)
    return None if best is None else best[1]

"""Masking: the variable parts of a message replaced by a placeholder before mining.

First a date and time written out inside the message (``Fri Jul  1 10:20:30 2005``,
``2015-10-18 18:01:47,978``) becomes one placeholder. Then the message is split on white
space and each token is classified on its own, with surrounding brackets, quotes and
trailing punctuation set aside (``(uid=0),`` keeps its ``(`` and ``),``). Masked are:

* IPv4 addresses (optionally ``/`` before and ``:port`` after), numbers (integer,
  decimal, signed, exponent), hex (``0x..``, 8+ hex characters with a digit, UUIDs);
* paths (``/a/b``, option ``mask_paths``);
* in ``key=value`` the value, by these same rules (the key stays: ``uid=<*>``);
* variant ``ids`` (the default): every other token that still contains a digit — block
  and task ids, host names such as ``node-246``; variant ``standard`` instead replaces
  only the digit runs of such tokens (``node-<*>``).

Nothing here knows a particular system. All masks use one placeholder token ``<V>``:
placeholders compare equal in the template miner, so lines that differ only in masked
values share a template whatever the values' shapes (an all-digit hex id and one with
letters, say); rendered templates show it as ``<*>``. Drain's own ``<*>`` is not used for
masks because Drain does not count ``<*>`` as a matching token when it adds a message.

Tokens repeat a great deal in logs, so each distinct token is classified once and cached.
"""

from __future__ import annotations

import re

PLACEHOLDER = "<V>"
VARIANTS = ("ids", "standard")
_LEAD = "([{<\"'"
_TRAIL = ")]}>,;:.\"'!?"
_IP = re.compile(r"/?\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?")
_NUM = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?")
_HEX = re.compile(r"0[xX][0-9a-fA-F]+|(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}"
                  r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DIGITS = re.compile(r"\d+")
_DIGIT = re.compile(r"\d")
_MONTH = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_DATETIME = re.compile(  # a date and time written out inside a message spans several tokens
    r"\b(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? )?(?:" + _MONTH + r") +\d{1,2},? (?:\d{4} )?"
    r"\d\d:\d\d:\d\d"
    r"(?:[.,]\d+)?(?: \d{4})?\b"
    r"|\b\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?")
_CACHE_MAX = 500_000


def render(template: str) -> str:
    """A mined template as shown to people: every placeholder as ``<*>``."""
    return template.replace(PLACEHOLDER, "<*>")


class Masker:
    """Masks the tokens of messages (see the module doc); one per variant."""

    def __init__(self, variant: str = "ids", *, paths: bool = True) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown masking variant {variant!r}; one of {VARIANTS}")
        self.variant = variant
        self.paths = paths
        self._cache: dict[str, str] = {}

    def mask(self, content: str) -> str:
        """The message with its variable tokens masked, tokens joined by single spaces."""
        if ":" in content:
            content = _DATETIME.sub(" <V> ", content)
        cache = self._cache
        out = []
        for tok in content.split():
            m = cache.get(tok)
            if m is None:
                m = self.token(tok)
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[tok] = m
            out.append(m)
        return " ".join(out)

    def token(self, tok: str) -> str:
        i, j = 0, len(tok)
        while i < j and tok[i] in _LEAD:
            i += 1
        while j > i and tok[j - 1] in _TRAIL:
            j -= 1
        core = tok[i:j]
        if not core:
            return tok
        masked = self._core(core)
        return tok if masked is core else tok[:i] + masked + tok[j:]

    def _core(self, core: str) -> str:
        if _DIGIT.search(core) is None:
            if self.paths and core.startswith("/") and core.count("/") >= 2:
                return PLACEHOLDER
            return core
        if _IP.fullmatch(core):
            return PLACEHOLDER
        if _NUM.fullmatch(core):
            return PLACEHOLDER
        if _HEX.fullmatch(core):
            return PLACEHOLDER
        key, eq, value = core.partition("=")
        if eq and key and _DIGIT.search(key) is None and key[-1].isalnum():
            return f"{key}={self.token(value)}" if value else core
        if self.paths and core.startswith("/") and core.count("/") >= 2:
            return PLACEHOLDER
        if self.variant == "ids":
            return PLACEHOLDER
        return _DIGITS.sub(PLACEHOLDER, core)

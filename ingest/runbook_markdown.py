"""Read a Markdown runbook into its title, sections and steps.

Any Markdown file with text is a runbook. The prometheus-operator layout is the common
case: optional YAML front matter (``---`` … ``---``, its ``title`` a display title), one
level-1 heading (``# KubePodCrashLooping``), level-2 sections ``Meaning``, ``Impact``,
``Diagnosis``, ``Mitigation`` (others are kept too). Text before the first level-2
heading is the section ``Overview``; a file without level-2 headings is that one section.
Headings inside fenced code blocks are code, not headings.

Steps come from every section except the descriptive ones (Meaning, Impact, and an
Overview that other sections follow), in document order, one per top-level list item or
paragraph (nested list items belong to their item); a level-3+ heading names the steps
under it. A fenced code block is the ``command`` of the step right before it (the "run
this:" paragraph) when that step has none, else a step of its own. An inline code span
that starts with a known command-line tool (:data:`CLI_TOOLS`, e.g. ``kubectl -n
$NAMESPACE describe pod $POD``) is a command too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

DESCRIPTIVE = frozenset({"meaning", "impact"})
OVERVIEW = "Overview"  # the text before the first level-2 heading

# Command-line tools whose inline code spans are commands (first word, after a prompt).
CLI_TOOLS = frozenset({
    "kubectl", "oc", "helm", "etcdctl", "promtool", "amtool", "curl", "wget", "systemctl",
    "journalctl", "docker", "crictl", "ctr", "df", "du", "lsof", "sysctl", "ip", "ss",
    "netstat", "ping", "dig", "nslookup", "top", "free", "iostat", "vmstat", "chroot",
    "mount", "ethtool", "mdadm", "timedatectl", "chronyc", "ntpq", "cat", "grep", "ls",
    "aws", "gcloud", "az",
})

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^(\s*)(?:[-*+]|\d+[.)])\s+(.*)$")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_INLINE_CODE = re.compile(r"`([^`]+)`")
_ALERT_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_WORD = re.compile(r"[A-Za-z]{2,}")
_PROMPT = re.compile(r"^\s*[$#]\s+")


@dataclass
class Step:
    order: int
    section: str
    text: str
    command: str | None = None
    language: str | None = None
    subsection: str | None = None


@dataclass
class Runbook:
    name: str  # the alert it is for (see :func:`alert_name`)
    title: str | None  # the level-1 heading, else the front matter's title
    line: int  # of the level-1 heading (1 without one)
    sections: dict[str, str] = field(default_factory=dict)  # title -> Markdown text
    steps: list[Step] = field(default_factory=list)
    display_title: str | None = None  # the front matter's title

    def section(self, title: str) -> str | None:
        return next((t for k, t in self.sections.items() if k.lower() == title), None)


class NotARunbook(ValueError):
    """The Markdown has no text to act on (only front matter, headings or whitespace)."""


def alert_name(file_stem: str | None, heading: str | None) -> str | None:
    """The alert a runbook is for: the file's stem when it is an alert name (the upstream
    layout names each file after its alert), else the level-1 heading when that is one
    (one word, as Prometheus allows), else the stem."""
    for candidate in (file_stem, heading):
        if candidate and _ALERT_NAME.match(candidate):
            return candidate
    return file_stem or heading


def parse_runbook(text: str, file_stem: str | None = None) -> Runbook:
    """The runbook of ``text`` (see the module doc); NotARunbook when it has no text."""
    lines = text.splitlines()
    start, display = _front_matter(lines)
    heading: tuple[int, str] | None = None
    body: dict[str, list[str]] = {OVERVIEW: []}
    current, fence = OVERVIEW, None
    for n, line in enumerate(lines[start:], start + 1):
        if fence is None and (h := _HEADING.match(line)):
            level, head = len(h[1]), _TAG.sub("", h[2]).strip()
            if level == 1 and heading is None and not any(s.strip() for s in body[OVERVIEW]):
                heading = (n, head)
                continue
            if level == 2 and head:
                current = head if head not in body else f"{head} ({len(body) + 1})"
                body[current] = []
                continue
        if m := _FENCE.match(line):
            fence = m[1] if fence is None else (
                None if line.strip().startswith(fence[0] * len(fence)) else fence)
        body[current].append(line)
    sections = {k: "\n".join(v).strip() for k, v in body.items()}
    if not any(_prose(t) for t in sections.values()):
        raise NotARunbook("no text besides front matter and headings (an index page?)")
    if not sections[OVERVIEW] or len(sections) > 1 and not _prose(sections[OVERVIEW]):
        del sections[OVERVIEW]
    head_text = heading[1] if heading else None
    name = alert_name(file_stem, head_text) or OVERVIEW
    book = Runbook(name, head_text or display, heading[0] if heading else 1, {}, [],
                   display)
    book.sections = {k: v for k, v in sections.items() if v or k != OVERVIEW}
    steps_from = [k for k in book.sections
                  if k.lower() not in DESCRIPTIVE and (k != OVERVIEW or len(book.sections) == 1)]
    for title in steps_from:
        builder, fence = _StepBuilder(book, title), None
        for line in body[title]:
            if m := _FENCE.match(line):
                fence = builder.fence(fence, m[1], m[2], line)
            elif fence is not None:
                builder.code_line(line)
            else:
                builder.line(line)
        builder.close()
    return book


def _prose(markdown: str) -> bool:
    return bool(_WORD.search(markdown))


def _front_matter(lines: list[str]) -> tuple[int, str | None]:
    if not lines or lines[0].strip() != "---":
        return 0, None
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            try:
                meta = yaml.safe_load("\n".join(lines[1:i]))
            except yaml.YAMLError:
                meta = None
            title = meta.get("title") if isinstance(meta, dict) else None
            return i + 1, str(title) if title is not None else None
    return 0, None


class _StepBuilder:
    """Collects the steps of one section from its lines (see the module doc)."""

    def __init__(self, book: Runbook, section: str) -> None:
        self.book = book
        self.section = section
        self.active = section.lower() not in DESCRIPTIVE
        self.subsection: str | None = None
        self.block: list[str] = []  # the paragraph or list item being read
        self.code: list[str] | None = None
        self.language: str | None = None
        self.last: Step | None = None  # the step the next code block may belong to

    def line(self, line: str) -> None:
        if not self.active:
            return
        if not line.strip():
            self._end_block()
            return
        if h := _HEADING.match(line):
            self._end_block()
            self.subsection = _TAG.sub("", h[2]).strip()
            self.last = None
            return
        item = _ITEM.match(line)
        if item and len(item[1]) < 2:  # a new top-level item
            self._end_block()
        self.block.append(line.strip())

    def fence(self, open_fence: str | None, marker: str, lang: str, line: str) -> str | None:
        if open_fence is None:  # opening
            if self.active:
                self._end_block()
                self.code, self.language = [], lang or None
            return marker
        if not line.strip().startswith(open_fence[0] * len(open_fence)):
            self.code_line(line)
            return open_fence
        if self.active and self.code is not None:
            self._add_code("\n".join(self.code).strip())
        self.code = None
        return None

    def code_line(self, line: str) -> None:
        if self.active and self.code is not None:
            self.code.append(line)

    def close(self) -> None:
        self._end_block()
        if self.code:
            self._add_code("\n".join(self.code).strip())
            self.code = None

    def _end_block(self) -> None:
        if not self.block:
            return
        text = _TAG.sub("", " ".join(self.block)).strip()
        self.block = []
        if not text:
            return
        item = _ITEM.match(text)
        text = item[2] if item else text
        if not _WORD.search(re.sub(r"\]\([^)]*\)", "]", text)):
            return  # a bare link reference ("[1](https://...)") is no step
        commands = [c for c in (_inline_command(s) for s in _INLINE_CODE.findall(text)) if c]
        self.last = self._step(text, "\n".join(commands) or None, "shell" if commands else None)

    def _add_code(self, code: str) -> None:
        if not code:
            return
        if self.last is not None and self.last.command is None:
            self.last.command, self.last.language = code, self.language
        else:
            self._step(self.subsection or self.section, code, self.language)
        self.last = None

    def _step(self, text: str, command: str | None, language: str | None) -> Step:
        step = Step(len(self.book.steps) + 1, self.section, text, command, language,
                    self.subsection)
        self.book.steps.append(step)
        return step


def _inline_command(span: str) -> str | None:
    cmd = _PROMPT.sub("", span).strip()
    first = cmd.split(maxsplit=1)[0] if cmd else ""
    return cmd if first in CLI_TOOLS and " " in cmd else None


def plain_text(markdown: str) -> str:
    """Markdown without code blocks, tags and link targets, whitespace collapsed (for
    embedding and for finding mentioned types)."""
    out, fence = [], None
    for line in markdown.splitlines():
        if m := _FENCE.match(line):
            fence = None if fence else m[1]
            continue
        if fence is None:
            out.append(line)
    text = _TAG.sub(" ", "\n".join(out))
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[#*_>`]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()

"""Read a runbook in the prometheus-operator layout (Markdown) into sections and steps.

Layout: optional YAML front matter (``---`` … ``---``, its ``title`` is a display title);
one level-1 heading, the alert name (``# KubePodCrashLooping``); level-2 sections
``Meaning``, ``Impact``, ``Diagnosis``, ``Mitigation`` (others are kept too). Headings
inside fenced code blocks are code, not headings.

Steps come from every section except the descriptive ones (Meaning, Impact), in document
order, one per top-level list item or paragraph (nested list items belong to their item);
a level-3+ heading names the steps under it. A fenced code block is the ``command`` of the
step right before it (the "run this:" paragraph) when that step has none, else a step of
its own. An inline code span that starts with a known command-line tool (:data:`CLI_TOOLS`,
e.g. ``kubectl -n $NAMESPACE describe pod $POD``) is a command too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

DESCRIPTIVE = frozenset({"meaning", "impact"})
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
    name: str
    title: str | None
    line: int  # of the level-1 heading
    sections: dict[str, str] = field(default_factory=dict)  # title -> Markdown text
    steps: list[Step] = field(default_factory=list)

    def section(self, title: str) -> str | None:
        return next((t for k, t in self.sections.items() if k.lower() == title), None)


class NotARunbook(ValueError):
    """The Markdown lacks the runbook layout (a level-1 heading and ## sections)."""


def parse_runbook(text: str, file_stem: str | None = None) -> Runbook:
    """The runbook of ``text``; NotARunbook when it lacks the layout.

    The name is the level-1 heading when it is an alert name (one word, as Prometheus
    allows); otherwise (``# CPU Throttling High``) the file's stem, the upstream layout
    naming each file after its alert.
    """
    lines = text.splitlines()
    start, title = _front_matter(lines)
    book: Runbook | None = None
    body: dict[str, list[str]] = {}
    builder: _StepBuilder | None = None
    fence: str | None = None
    for n, line in enumerate(lines[start:], start + 1):
        if fence is None and (h := _HEADING.match(line)):
            level, head = len(h[1]), _TAG.sub("", h[2]).strip()
            if level == 1 and book is None:
                name = head if _ALERT_NAME.match(head) or not file_stem else file_stem
                book = Runbook(name, title or (head if name != head else None), n)
                continue
            if level == 2 and book is not None:
                if builder is not None:
                    builder.close()
                body.setdefault(head, [])
                builder = _StepBuilder(book, head)
                continue
        if builder is None:
            continue
        body[builder.section].append(line)
        if m := _FENCE.match(line):
            fence = builder.fence(fence, m[1], m[2], line)
        elif fence is not None:
            builder.code_line(line)
        else:
            builder.line(line)
    if builder is not None:
        builder.close()
    if book is None or not body:
        raise NotARunbook("no `# AlertName` heading followed by `## Section`s")
    book.sections = {k: "\n".join(v).strip() for k, v in body.items()}
    return book


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

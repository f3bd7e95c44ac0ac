"""In-memory counts of one input: lines per (emitter, time window, template), and what is
derived from them (error bursts, rare templates).

The graph never gets one node per log line. While an input is read, each line adds one to
its cell ``(emitter, window start, cluster)``; after the input, each cell becomes one
``template-count`` event with the cell's absolute count (see docs/ingest/logs.md for why
absolute counts keyed per input make re-ingest idempotent).

* **Error burst**: an emitter's error-level lines (``error``, ``critical``) in one window
  number at least ``burst_min`` and at least ``burst_factor`` times the emitter's mean per
  active window over the rest of the input.
* **Rare template**: a template with at most ``rare_max`` lines in an input of at least
  ``rare_min_lines`` lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.logparse.lines import SEVERITY, Emitter

ERROR = SEVERITY["error"]
LEVEL_NAMES = {v: k for k, v in SEVERITY.items()}


@dataclass(slots=True)
class Cell:
    count: int
    errors: int
    severity: int  # highest SEVERITY seen, -1 when no line had a level
    first_line: int


@dataclass(slots=True)
class ClusterUse:
    count: int
    first_time: float
    last_time: float
    first_line: int
    emitters: set[Emitter]


@dataclass(frozen=True)
class Burst:
    emitter: Emitter
    window: int
    errors: int
    severity: int
    first_line: int
    clusters: tuple[int, ...]  # the templates of its error lines, most frequent first


@dataclass
class InputCounts:
    window: int  # seconds
    cells: dict[tuple[Emitter, int, int], Cell] = field(default_factory=dict)
    clusters: dict[int, ClusterUse] = field(default_factory=dict)
    lines: int = 0

    def add(self, emitter: Emitter, time: float, cid: int, level: str | None,
            line_no: int) -> None:
        self.lines += 1
        w = int(time // self.window) * self.window
        sev = SEVERITY[level] if level else -1
        key = (emitter, w, cid)
        cell = self.cells.get(key)
        if cell is None:
            self.cells[key] = Cell(1, 1 if sev >= ERROR else 0, sev, line_no)
        else:
            cell.count += 1
            if sev >= ERROR:
                cell.errors += 1
            if sev > cell.severity:
                cell.severity = sev
        use = self.clusters.get(cid)
        if use is None:
            self.clusters[cid] = ClusterUse(1, time, time, line_no, {emitter})
        else:
            use.count += 1
            if time < use.first_time:
                use.first_time = time
            elif time > use.last_time:
                use.last_time = time
            use.emitters.add(emitter)

    def emitters(self) -> list[Emitter]:
        return list(dict.fromkeys(e for e, _, _ in self.cells))

    def bursts(self, burst_min: int, burst_factor: float) -> list[Burst]:
        per: dict[tuple[Emitter, int], list[tuple[int, Cell]]] = {}
        for (emitter, w, cid), cell in self.cells.items():
            per.setdefault((emitter, w), []).append((cid, cell))
        windows: dict[Emitter, int] = {}
        errors: dict[Emitter, int] = {}
        for (emitter, _), cells in per.items():
            windows[emitter] = windows.get(emitter, 0) + 1
            errors[emitter] = errors.get(emitter, 0) + sum(c.errors for _, c in cells)
        out = []
        for (emitter, w), cells in per.items():
            n = sum(c.errors for _, c in cells)
            if n < burst_min:
                continue
            others = windows[emitter] - 1
            baseline = (errors[emitter] - n) / others if others else 0.0
            if n < burst_factor * baseline:
                continue
            err = sorted(((c.errors, cid) for cid, c in cells if c.errors), reverse=True)
            out.append(Burst(emitter, w, n, max(c.severity for _, c in cells),
                             min(c.first_line for _, c in cells),
                             tuple(cid for _, cid in err)))
        return out

    def rare(self, rare_max: int, rare_min_lines: int) -> list[int]:
        if self.lines < rare_min_lines:
            return []
        return [cid for cid, use in self.clusters.items() if use.count <= rare_max]

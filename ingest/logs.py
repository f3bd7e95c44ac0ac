"""Log ingest: syslog, JSON lines and plain lines -> log templates and aggregated events.

Pipeline per input: detect the format (or take ``format``) -> read each line (time, level,
message, emitter labels; a bad line is rejected with file and line, the rest go on) ->
mine the message's template (drain3, :mod:`ingest.logparse.miner`) -> count it in memory
per (emitter, time window, template) -> after the input: commit template versions, save
the miner state, resolve the emitters to graph entities (:class:`ingest.resolve.Resolver`)
and write the aggregated facts through the sink:

* ``LogTemplate`` per template version (``templateText``, ``templateVersion``); a version
  that Drain generalised is retired (``validTo``) and ``generalizedTo`` its successor;
* ``LogEvent`` ``template-count`` per (stream, emitter, window, template) with the absolute
  ``count`` of that input, ``startTime``/``endTime``, ``hasTemplate`` and ``aboutEntity``;
* ``LogEvent`` ``new-template`` (first sight of a template), ``rare-template`` and
  ``error-burst`` (:mod:`ingest.logparse.counts`).

An emitter that resolves to no entity is kept: its events carry its ``labels`` and
``resolution: unresolved`` and have no ``aboutEntity``; the report counts them. The
format, options and the idempotence rule are specified in docs/ingest/logs.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ingest.base import IngestContext, IngestError, Input, Record, undecodable
from ingest.logparse.clock import Clock, zone
from ingest.logparse.counts import LEVEL_NAMES, InputCounts
from ingest.logparse.header import SAMPLE, plain_format
from ingest.logparse.lines import (
    JSON_LABELS,
    LEVEL_FIELDS,
    MESSAGE_FIELDS,
    TIME_FIELDS,
    BadLine,
    Emitter,
    HeaderFormat,
    JsonFormat,
    LineFormat,
    SyslogFormat,
    detect,
)
from ingest.logparse.masking import render
from ingest.logparse.miner import Change, MinerConfig, MinerStateError, TemplateMiner
from ingest.logparse.stamps import PatternError, time_format
from ingest.resolve import Resolution, Resolver
from kg.facts import Entity, Relation, now_utc, too_long

PATTERNS = ("*.log", "*.log.[0-9]*", "*.jsonl", "*.ndjson", "syslog", "messages")
FORMAT_VERSION = 1
PROGRESS_EVERY = 8192  # lines between progress updates


class LogOptions(BaseModel):
    """The ``options`` of a logs ingest (docs/ingest/logs.md lists them with examples)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["auto", "syslog", "json", "plain", "header"] = "auto"
    encoding: str = "utf-8"
    header: str | None = None
    tz: str = "UTC"
    time_format: str | None = None
    year: int | None = Field(None, ge=1970, le=2100)
    window: int = Field(60, ge=1, le=86_400)
    labels: dict[str, str] = Field(default_factory=dict)
    labels_from: dict[str, list[str] | str | None] = Field(default_factory=dict)
    message_field: list[str] | None = None
    time_field: list[str] | None = None
    level_field: list[str] | None = None
    stream: str | None = None
    miner: str | None = None
    sim_th: float = MinerConfig.sim_th
    depth: int = MinerConfig.depth
    masking: Literal["ids", "standard"] = "ids"
    mask_paths: bool = True
    burst_min: int = Field(10, ge=1)
    burst_factor: float = Field(3.0, ge=0)
    rare_max: int = Field(1, ge=0)
    rare_min_lines: int = Field(1000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _dashes(cls, v: Any) -> Any:
        """``time-format`` and ``time_format`` name the same option (CLI ``-o``)."""
        if isinstance(v, Mapping):
            return {str(k).replace("-", "_"): x for k, x in v.items()}
        return v

    @field_validator("labels", "labels_from", mode="before")
    @classmethod
    def _json_text(cls, v: Any) -> Any:
        """A mapping may come as JSON text (CLI flags, query strings)."""
        return json.loads(v) if isinstance(v, str) else v

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v: str) -> str:
        import codecs

        try:
            return codecs.lookup(v).name
        except LookupError:
            raise ValueError(f"unknown text encoding {v!r}") from None

    @field_validator("message_field", "time_field", "level_field", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> Any:
        return [p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else v

    def miner_config(self) -> MinerConfig:
        return MinerConfig(sim_th=self.sim_th, depth=self.depth, masking=self.masking,
                           mask_paths=self.mask_paths)


_MINER_OPTIONS = ("sim_th", "depth", "masking", "mask_paths")


def parse_options(raw: Mapping[str, Any]) -> LogOptions:
    """Options validated at load; IngestError names every bad key."""
    try:
        opts = LogOptions.model_validate(dict(raw))
        opts.miner_config()
        zone(opts.tz)
        if opts.time_format:
            time_format(opts.time_format)
        if opts.format == "header" and not opts.header:
            raise ValueError("format 'header' needs the option 'header' (a layout such as "
                             "'<Date> <Time> <Level> <Component>: <Content>')")
        if opts.header:
            HeaderFormat(Clock(zone(opts.tz), now_utc()), opts.header, [])
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        raise IngestError(f"logs options: {problems}") from exc
    except PatternError as exc:
        raise IngestError(f"logs options: time_format: {exc}") from exc
    except ValueError as exc:
        raise IngestError(f"logs options: {exc}") from exc
    return opts


def ingest(ctx: IngestContext, inputs: list[Input]) -> None:
    opts = parse_options(ctx.options)
    resolver = Resolver(ctx.kg)
    ctx.progress.start(sum(i.size for i in inputs), "logs")
    miners: dict[str, tuple[TemplateMiner, Path]] = {}
    for inp in inputs:
        scope = ctx.scope_for(inp)
        name = opts.miner or scope
        if name not in miners:
            miners[name] = _open_miner(ctx, opts, name)
        miner, path = miners[name]
        _ingest_input(ctx, opts, resolver, miner, path, scope, inp)


# -- the miner state ---------------------------------------------------------------------------

def miner_path(data_dir: Path, name: str) -> Path:
    return data_dir / "logs" / "miners" / f"{quote(name, safe='')}.json"


def _open_miner(ctx: IngestContext, opts: LogOptions, name: str
                ) -> tuple[TemplateMiner, Path]:
    path = miner_path(ctx.data_dir, name)
    if not path.exists():
        return TemplateMiner.new(opts.miner_config()), path
    try:
        miner = TemplateMiner.load(path)
    except MinerStateError as exc:
        raise IngestError(str(exc)) from exc
    given = {k: getattr(opts, k) for k in _MINER_OPTIONS if k in opts.model_fields_set}
    differ = {k: v for k, v in given.items() if getattr(miner.config, k) != v}
    if differ:
        raise IngestError(
            f"log miner {name!r} was built with {miner.config.to_json()}; the options "
            f"{differ} differ. Leave them out to go on with it, or name a new miner "
            "(option 'miner') to start one with these settings")
    return miner, path


# -- one input ----------------------------------------------------------------------------------

def _line_format(opts: LogOptions, inp: Input, clock: Clock) -> LineFormat:
    fmt: str = "header" if opts.header else opts.format
    sample = list(islice((s for s in inp.lines(opts.encoding, "surrogateescape")
                          if s.strip()), SAMPLE)) if fmt in ("auto", "plain") else []
    if fmt == "auto":
        fmt = detect(sample[:100])
    fields = {k: ([v] if isinstance(v, str) else v) for k, v in opts.labels_from.items()}
    if fmt == "json":
        labels = {**{k: list(v) for k, v in JSON_LABELS.items()}, **fields}
        return JsonFormat(clock, {k: v for k, v in labels.items() if v},
                          message=opts.message_field or MESSAGE_FIELDS,
                          time=opts.time_field or TIME_FIELDS,
                          level=opts.level_field or LEVEL_FIELDS)
    defaults: Mapping[str, list[str] | None] = {
        "syslog": {"host": ["host"]}, "header": {"host": ["Host"], "node": ["Node"]},
    }.get(fmt, {})
    pairs = [(label, names[0]) for label, names in {**defaults, **fields}.items() if names]
    if fmt == "syslog":
        return SyslogFormat(clock, pairs)
    if fmt == "header":
        assert opts.header is not None
        return HeaderFormat(clock, opts.header, pairs)
    return plain_format(sample, clock, pairs)


def _reference(ctx: IngestContext, inp: Input) -> datetime:
    """The time lines without a (full) timestamp are read against (see clock.py)."""
    return ctx.as_of or inp.mtime() or now_utc()


def _ingest_input(ctx: IngestContext, opts: LogOptions, resolver: Resolver,
                  miner: TemplateMiner, path: Path, scope: str, inp: Input) -> None:
    reference = _reference(ctx, inp)
    clock = Clock(zone(opts.tz), reference, opts.year,
                  time_format(opts.time_format) if opts.time_format else None)
    fmt = _line_format(opts, inp, clock)
    counts = InputCounts(opts.window)
    last = reference.timestamp()
    untimed = empty = chars = 0
    bad_times: list[tuple[int, str]] = []
    limit = ctx.kg.settings.max_value_bytes
    parse, mine, count = fmt.parse, miner.add, counts.add  # the hot loop: no lookups
    for n, line in enumerate(inp.lines(opts.encoding, "surrogateescape"), 1):
        chars += len(line) + 1
        if n % PROGRESS_EVERY == 0:
            ctx.progress.advance(chars)
            chars = 0
        if not line or line.isspace():
            empty += 1
            continue
        if problem := _not_a_line(line, opts.encoding, limit):
            ctx.sink.reject(inp.name, f"line {n}", problem, line[:200])
            continue
        try:
            parsed = parse(line)
        except BadLine as exc:
            ctx.sink.reject(inp.name, f"line {n}", str(exc), line)
            continue
        if parsed.time is None:
            untimed += 1  # continuation lines (stack traces) take the previous line's time
            if parsed.time_error is not None:  # kept, flagged and counted, never rejected
                bad_times.append((n, parsed.time_error))
        else:
            last = parsed.time
        count(parsed.emitter, last, mine(parsed.content, last), parsed.level, n)
    ctx.progress.advance(chars)
    changes = miner.commit()
    if not ctx.report.dry_run:
        miner.save(path)  # before the facts: a crash must not let cluster ids be reused
    report = ctx.report
    report.count("lines", counts.lines)
    report.count("linesWithoutTime", untimed)
    report.count("linesBadTime", len(bad_times))
    report.count("emptyLines", empty)
    report.notes.append(_detected(inp.name, fmt.describe(), counts.lines, untimed, bad_times))
    _Writer(ctx, opts, resolver, miner, scope, inp, fmt.name, counts).write(changes)


def _detected(name: str, layout: str, lines: int, untimed: int,
              bad_times: list[tuple[int, str]]) -> str:
    """The per-input note of what was detected and how many lines have no time."""
    note = f"{name}: {layout}; {untimed} of {lines} lines without a parsed time"
    if bad_times:
        n, why = bad_times[0]
        note += (f", {len(bad_times)} of them with a time that does not read (first: "
                 f"{name}:{n}: {why}; kept with the previous line's time)")
    return note


def _not_a_line(line: str, encoding: str, limit: int) -> str | None:
    """Why ``line`` cannot be mined (too long, binary, undecodable), or None. Checked
    before the miner sees it: its templates are saved before the facts are written."""
    if too_long(line, limit):
        return (f"line of {len(line.encode('utf-8', 'surrogateescape'))} bytes, over the "
                f"limit of {limit} bytes per log line (setting max_value_bytes)")
    return undecodable(line, encoding)


@dataclass
class _Writer:
    """Turns one input's counts and template changes into records for the sink."""

    ctx: IngestContext
    opts: LogOptions
    resolver: Resolver
    miner: TemplateMiner
    scope: str
    inp: Input
    format: str
    counts: InputCounts
    resolved: dict[Emitter, Resolution] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.source = f"logs/{self.format}:{self.scope}"
        self.miner_source = f"logs/miner:{self.scope}"
        self.stream = self._stream()

    def _stream(self) -> str:
        if self.opts.stream:
            return self.opts.stream.replace("{stem}", self.inp.stem).replace(
                "{name}", Path(self.inp.name).name)
        if self.inp.path is not None:
            return str(self.inp.path.resolve())
        return self.inp.name

    def write(self, changes: list[Change]) -> None:
        report, add = self.ctx.report, self.ctx.sink.add
        for change in changes:
            add(self._version_record(change))
        changed = {c.cid for c in changes}
        for cid in self.counts.clusters:  # the rest, unchanged: this heals a crash between
            if cid not in changed:  # the state save and the write
                add(Record(self.inp.name, f"template {cid}", [self._template(cid)]))
        report.count("templatesCreated", sum(c.previous is None for c in changes))
        report.count("templatesGeneralized", sum(c.previous is not None for c in changes))
        emitters = self.counts.emitters()
        self.resolved = self._resolve(emitters)
        for records, name in ((self._count_records(), "templateCounts"),
                              (self._new_records(changes), "newTemplates"),
                              (self._rare_records(), "rareTemplates"),
                              (self._burst_records(), "errorBursts")):
            n = 0
            for rec in records:
                add(rec)
                n += 1
            report.count(name, n)

    # -- templates ---------------------------------------------------------------------------
    def template_iri(self, cid: int, version: int) -> str:
        return self.ctx.iri(self.scope, "LogTemplate", f"{self.miner.miner_id}/{cid}/v{version}")

    def _template(self, cid: int) -> Entity:
        """The current version of a template. Its record is added before the events that
        link to it, so it is stored by then; a dry run stores nothing, so there every
        linking record carries it too."""
        v = self.miner.versions[cid]
        return Entity(self.template_iri(cid, v.version), "LogTemplate",
                      {"templateText": self.miner.text(cid), "templateVersion": v.version},
                      self.miner_source, _dt(v.valid_from))

    def _version_record(self, change: Change) -> Record:
        rec = Record(self.inp.name, f"template {change.cid}", [self._template(change.cid)])
        old = change.previous
        if old is not None:
            old_iri = self.template_iri(change.cid, old.version)
            rec.entities.append(Entity(
                old_iri, "LogTemplate",
                {"templateText": render(old.template), "templateVersion": old.version},
                self.miner_source, _dt(old.valid_from), _dt(change.valid_from)))
            rec.relations.append(Relation("generalizedTo", old_iri, rec.entities[0].iri, {},
                                          self.miner_source, _dt(change.valid_from)))
        return rec

    # -- events --------------------------------------------------------------------------------
    def _resolve(self, emitters: list[Emitter]) -> dict[Emitter, Resolution]:
        static = self.opts.labels
        items = [(self.scope, {**static, **dict(e)}) for e in emitters]
        resolved = dict(zip(emitters, self.resolver.resolve_many(items), strict=True))
        lost = [e for e, r in resolved.items() if not r.resolved]
        self.ctx.report.count("emittersResolved", len(emitters) - len(lost))
        self.ctx.report.count("emittersUnresolved", len(lost))
        lost_set = set(lost)
        self.ctx.report.count("linesUnresolved", sum(
            c.count for (e, _, _), c in self.counts.cells.items() if e in lost_set))
        return resolved

    def _event(self, kind: str, key: tuple[object, ...], emitter: Emitter | None,
               props: dict[str, Any], start: float, where: int) -> Record:
        digest = hashlib.sha1("\x1f".join(
            [self.miner.miner_id, self.stream, *map(str, key)]).encode()).hexdigest()[:24]
        iri = self.ctx.iri(self.scope, "LogEvent", f"{kind}/{digest}")
        props = {"eventKind": kind, "startTime": _dt(start), **props}
        rec = Record(self.inp.name, f"line {where}", [])
        if emitter is not None:
            labels = {**self.opts.labels, **dict(emitter)}
            if labels:
                props["labels"] = json.dumps(labels, sort_keys=True, ensure_ascii=False)
            res = self.resolved[emitter]
            if res.iri is None:
                props["resolution"] = "unresolved"
            else:
                rec.relations.append(Relation("aboutEntity", iri, res.iri,
                                              {"resolution": res.how}, self.source))
        rec.entities.append(Entity(iri, "LogEvent", props, self.source, _dt(start)))
        return rec

    def _link(self, rec: Record, cids: tuple[int, ...]) -> Record:
        event = rec.entities[0].iri
        for cid in cids:
            tpl = self._template(cid)
            if self.ctx.report.dry_run:  # nothing is stored: the link needs it in the batch
                rec.entities.append(tpl)
            rec.relations.append(Relation("hasTemplate", event, tpl.iri, {}, self.source))
        return rec

    def _count_records(self) -> Iterator[Record]:
        w = self.counts.window
        for (emitter, start, cid), cell in self.counts.cells.items():
            props: dict[str, Any] = {"count": cell.count, "endTime": _dt(start + w)}
            if cell.severity >= 0:
                props["logLevel"] = LEVEL_NAMES[cell.severity]
            rec = self._event("template-count", (_key(emitter), start, cid), emitter, props,
                              start, cell.first_line)
            yield self._link(rec, (cid,))

    def _new_records(self, changes: list[Change]) -> Iterator[Record]:
        for change in changes:
            use = self.counts.clusters.get(change.cid)
            if change.previous is not None or use is None:
                continue
            emitter = next(iter(use.emitters)) if len(use.emitters) == 1 else None
            rec = self._event("new-template", (change.cid,), emitter,
                              {"count": use.count, "endTime": _dt(use.last_time)},
                              use.first_time, use.first_line)
            yield self._link(rec, (change.cid,))

    def _rare_records(self) -> Iterator[Record]:
        for cid in self.counts.rare(self.opts.rare_max, self.opts.rare_min_lines):
            use = self.counts.clusters[cid]
            emitter = next(iter(use.emitters)) if len(use.emitters) == 1 else None
            rec = self._event("rare-template", ("input", cid), emitter,
                              {"count": use.count, "endTime": _dt(use.last_time)},
                              use.first_time, use.first_line)
            yield self._link(rec, (cid,))

    def _burst_records(self) -> Iterator[Record]:
        w = self.counts.window
        for b in self.counts.bursts(self.opts.burst_min, self.opts.burst_factor):
            props = {"count": b.errors, "endTime": _dt(b.window + w),
                     "logLevel": LEVEL_NAMES[b.severity]}
            rec = self._event("error-burst", (_key(b.emitter), b.window), b.emitter, props,
                              b.window, b.first_line)
            yield self._link(rec, b.clusters[:5])


def _key(emitter: Emitter) -> str:
    return json.dumps(sorted(emitter), ensure_ascii=False)


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)

"""``autocnc ingest <kind> PATH...``: every source through one command shape.

Writes go through the running server (``POST /v1/ingest/{kind}``, one request per file)
when it holds the data directory; otherwise the CLI opens the stores itself.

``-o`` is shared here: ``-o KEY=VALUE`` is a source option (docs/ingest/<kind>.md), a bare
``-o json`` (``table``, ``yaml``, ``csv``) the output format as everywhere else; the two
never collide, a source option always has ``=``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from api.output import FORMATS, JsonFlag, check_format, chosen, emit_doc
from kg.errors import AutoCNCError
from kg.facts import utc

console = Console(stderr=True)


def parse_options(option: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is read as JSON when it parses, else as text."""
    out: dict[str, Any] = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AutoCNCError(f"--option {item!r}: use KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def summary_line(report: dict[str, Any]) -> str:
    return (f"{report['kind']}: {report['records']} records from {len(report['inputs'])} "
            f"input(s): created {report['created']}, updated {report['updated']}, unchanged "
            f"{report['unchanged']}, retired {report['retired']}, rejected {report['rejected']}"
            f", skipped {report['skipped']}" + (" (dry run: nothing written)"
                                                if report["dryRun"] else ""))


def split_output(option: list[str] | None) -> tuple[str | None, list[str]]:
    """``-o`` values: the output format (a bare format name) and the source options."""
    formats = [o.strip().lower() for o in option or [] if "=" not in o
               and o.strip().lower() in FORMATS]
    if len(set(formats)) > 1:
        raise typer.BadParameter(f"conflicting output formats: {', '.join(formats)}",
                                 param_hint="'-o'")
    return (formats[0] if formats else None,
            [o for o in option or [] if "=" in o or o.strip().lower() not in FORMATS])


def print_report(report: dict[str, Any], fmt: str | bool = "table") -> None:
    """The report as ``fmt`` (table: rejections, notes and counts on stderr, the summary
    line on stdout)."""
    emit_doc("json" if fmt is True else "table" if fmt is False else fmt, report,
             human=_human)


def _human(report: Any) -> None:
    for r in report["rejections"][:20]:
        console.print(f"[red]rejected[/red] {r['file']}: {r['where']}: {r['reason']}")
    if report["rejected"] > 20:
        console.print(f"... and {report['rejected'] - 20} more (see the dead-letter file)")
    for r in report["skippedInputs"]:
        console.print(f"[yellow]skipped[/yellow] {r['file']}: {r['reason']}")
    for note in report["notes"][:20]:
        console.print(f"note: {note}")
    if report["counts"]:
        console.print("counts: " + ", ".join(f"{k} {v}" for k, v in
                                              sorted(report["counts"].items())))
    Console().print(summary_line(report))


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(reports[0])
    for r in reports[1:]:
        for k in ("records", "created", "updated", "unchanged", "retired", "rejected",
                  "skipped"):
            out[k] += r[k]
        for k in ("inputs", "rejections", "skippedInputs", "notes"):
            out[k] = out[k] + r[k]
        out["counts"] = {c: out["counts"].get(c, 0) + r["counts"].get(c, 0)
                         for c in {*out["counts"], *r["counts"]}}
    return out


IngestOutput = Annotated[str | None, typer.Option(
    "--output", metavar="FORMAT", callback=check_format(FORMATS),
    help="output format: table | json | yaml | csv (default table); -o FORMAT works too")]


def make_command(kind: str, helptext: str) -> Any:
    def command(
        paths: Annotated[list[str], typer.Argument(help="files or directories")],
        scope: Annotated[str | None, typer.Option(
            help="cluster, network or site the names belong to; {stem} = file stem")] = None,
        as_of: Annotated[str | None, typer.Option(
            help="snapshot / sample time for inputs without one (ISO 8601 with zone; "
                 "default: the file's modification time)")] = None,
        format: Annotated[str | None, typer.Option(
            "--format", help="force an input format instead of detecting it")] = None,
        tz: Annotated[str | None, typer.Option(
            help="time zone of timestamps without one (IANA name, e.g. Europe/Paris; "
                 "default UTC)")] = None,
        option: Annotated[list[str] | None, typer.Option(
            "--option", "-o", help="source option KEY=VALUE (docs/ingest/<kind>.md), "
            "repeatable; a bare table | json | yaml | csv is the output format")] = None,
        output: IngestOutput = None,
        dry_run: Annotated[bool, typer.Option(help="validate only, write nothing")] = False,
        allow_rejects: Annotated[bool, typer.Option(
            help="exit 0 even when records were rejected")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        from api.cli_context import RichProgress, http, open_graph, server, settings
        from ingest import inputs_for, run_ingest

        bare, option = split_output(option)
        if output and bare and output != bare:
            raise typer.BadParameter(f"conflicting output formats: {output}, {bare}",
                                     param_hint="'-o' / '--output'")
        fmt = chosen(output or bare, json_flag=as_json)
        opts = parse_options(option)
        if format:
            opts["format"] = format
        if tz:
            opts["tz"] = tz
        when: datetime | None = utc(as_of, what="--as-of") if as_of else None
        inputs = inputs_for(kind, paths)
        if not inputs:
            raise AutoCNCError(f"no {kind} input found in {', '.join(paths)}")
        s = settings()
        if (info := server(s)) is not None:
            reports = []
            for inp in inputs:
                params = {"scope": scope, "name": inp.name, "dry_run": str(dry_run).lower(),
                          "as_of": when.isoformat() if when else
                          (m.isoformat() if (m := inp.mtime()) else None),
                          "options": json.dumps(opts) if opts else None}
                resp = http(info, "POST", f"/v1/ingest/{kind}", content=inp.read_bytes(),
                            params={k: v for k, v in params.items() if v is not None},
                            headers={"Content-Type": "application/octet-stream"})
                reports.append(resp.json())
            report = merge_reports(reports)
        else:
            kg = open_graph(writer=True)
            try:
                with Progress(TextColumn("{task.description}"), BarColumn(),
                              MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                              transient=True, disable=fmt != "table") as bar:
                    report = run_ingest(kg, kind, inputs, scope=scope, as_of=when,
                                        dry_run=dry_run, options=opts,
                                        progress=RichProgress(bar)).to_json()
            finally:
                kg.close()
        print_report(report, fmt)
        if report["rejected"] and not allow_rejects:
            raise typer.Exit(1)

    command.__doc__ = helptext
    return command

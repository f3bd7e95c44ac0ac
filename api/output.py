"""How every ``autocnc`` command prints its answer: one ``-o/--output`` option, four formats.

``table`` is for people: Rich tables whose cells fold instead of being cut, so an IRI or a
name is always there in full (over several lines when the terminal is narrow). ``json``,
``yaml`` and ``csv`` are for scripts: the full values, nothing shortened, nothing else on
stdout (notes and progress go to stderr). A command that cannot print a format refuses it
before doing any work, with exit code 2 and the formats it supports (docs/cli.md).

Kept light on purpose: this module is imported by every command, including the ones that
only talk to a running server, so it imports nothing of the engine and ``yaml`` only when
YAML is asked for.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "yaml", "csv")
DEFAULT = "table"

stdout = Console(soft_wrap=False)
stderr = Console(stderr=True)


def check_format(supported: Sequence[str]) -> Callable[..., str | None]:
    """The option callback that refuses a format ``supported`` lacks (exit code 2)."""

    def check(ctx: typer.Context, value: str | None) -> str | None:
        if value is None:
            return None
        fmt = value.strip().lower()
        if fmt not in supported:
            raise typer.BadParameter(f"{value!r}: `{ctx.command_path}` prints "
                                     f"{', '.join(supported)}")
        return fmt
    return check


def output_param(*supported: str) -> Any:
    """The ``-o/--output`` option of a command that prints ``supported`` (default: all);
    use as ``Annotated[str | None, output_param("table", "json")]``."""
    formats = tuple(supported) or FORMATS
    return typer.Option("--output", "-o", metavar="FORMAT", callback=check_format(formats),
                        help=f"output format: {' | '.join(formats)} (default {formats[0]})")


Output = Annotated[str | None, output_param()]
# The old ``-f/--format`` of ``query`` and ``rca``: still works, deprecated for ``-o``.
FormatAlias = Annotated[str | None, typer.Option(
    "--format", "-f", metavar="FORMAT", callback=check_format(FORMATS),
    help="deprecated alias of -o/--output")]
# The older ``--json`` flag of some commands: kept as a shorthand of ``-o json``.
JsonFlag = Annotated[bool, typer.Option("--json", help="same as -o json")]


def chosen(output: str | None, *, format_alias: str | None = None, json_flag: bool = False,
           default: str = DEFAULT) -> str:
    """The format asked for by ``-o``, or by the older spellings: ``--json`` (a shorthand
    kept for scripts) and the deprecated ``-f/--format`` (a warning on stderr, stdout stays
    what the script expects). Two different answers are an error."""
    asked = {f for f in (output, format_alias, "json" if json_flag else None) if f}
    if len(asked) > 1:
        raise typer.BadParameter(f"conflicting output formats: {', '.join(sorted(asked))}; "
                                 "give -o/--output only", param_hint="'-o' / '--output'")
    if format_alias and not output:
        stderr.print("[yellow]warning:[/yellow] -f/--format is deprecated: use -o/--output")
    return asked.pop() if asked else default


def plain(value: Any) -> Any:
    """A value as JSON/YAML/CSV carry it: times as ISO 8601, the rest as JSON knows it."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def cell(value: Any) -> str:
    """A value in a table cell (and a CSV field)."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
          ) -> Table:
    """A Rich table whose cells fold rather than being cut: every identifier stays whole."""
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[cell(v) for v in r])
    return t


def _write(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def write_doc(fmt: str, doc: Any) -> None:
    """``doc`` as JSON or YAML, in full."""
    if fmt == "json":
        _write(json.dumps(plain(doc), indent=1, ensure_ascii=False))
    elif fmt == "yaml":
        import yaml

        _write(yaml.safe_dump(plain(doc), sort_keys=False, allow_unicode=True,
                              default_flow_style=False))
    else:
        raise ValueError(f"write_doc: {fmt!r} is not a document format")


def write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows([[cell(v) for v in r] for r in rows])
    sys.stdout.write(buf.getvalue())


def emit_rows(fmt: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
              doc: Any = None, title: str | None = None, footer: str | None = None) -> None:
    """Rows as a table or CSV; as JSON/YAML, ``doc`` when given (the full objects the rows
    were made from), else one object per row."""
    if fmt in ("json", "yaml"):
        write_doc(fmt, doc if doc is not None else
                  [dict(zip(columns, r, strict=True)) for r in rows])
    elif fmt == "csv":
        write_csv(columns, rows)
    else:
        stdout.print(table(columns, rows, title))
        if footer:
            stdout.print(footer)


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested document as (dotted key, value) pairs: ``views.rdf.lag``, ``candidates.0``."""
    if isinstance(doc, Mapping) and doc:
        return [kv for k, v in doc.items()
                for kv in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(doc, list | tuple) and doc and any(isinstance(v, Mapping | list | tuple)
                                                     for v in doc):
        return [kv for i, v in enumerate(doc) for kv in flatten(v, f"{prefix}.{i}")]
    return [(prefix, doc)]


def emit_doc(fmt: str, doc: Any, *, human: Callable[[Any], None] | None = None) -> None:
    """One document (a report, a status, a list of them): JSON/YAML in full; as a table and
    CSV, its fields flattened to ``field, value`` rows, unless ``human`` prints the table
    view itself."""
    if fmt in ("json", "yaml"):
        write_doc(fmt, doc)
    elif fmt == "csv":
        write_csv(["field", "value"], flatten(doc))
    elif human is not None:
        human(doc)
    else:
        stdout.print(table(["field", "value"], flatten(doc)))

"""``autocnc causal``: learn causal knowledge between event types from the graph's history.

Through the running server (``POST /v1/causal/learn``) when it holds the data directory;
otherwise the CLI opens the stores itself.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from kg.errors import AutoCNCError
from kg.facts import utc

console = Console()


def causal(
    scope: Annotated[str, typer.Option(help="scope the learned edges are kept in "
                                            "(a later run in the same scope replaces them)")],
    since: Annotated[str | None, typer.Option(help="first event time (ISO 8601 with zone)")
                     ] = None,
    until: Annotated[str | None, typer.Option(help="end of the range, exclusive")] = None,
    dry_run: Annotated[bool, typer.Option(help="learn and print, store nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Learn which event types cause which (topological Hawkes process over the alerts,
    alarms, anomalies and log events in the graph, along its topology; docs/causal.md) and
    store the edges as CausalEdge knowledge in SCOPE, where RCA's causal signal reads them."""
    from api.cli_context import http, open_graph, server, settings

    body = {"scope": scope, "since": since, "until": until, "dryRun": dry_run}
    s = settings()
    if (info := server(s)) is not None:
        result = http(info, "POST", "/v1/causal/learn", json=body).json()
    else:
        from reasoning.causal.run import learn_from_graph

        kg = open_graph(writer=not dry_run)
        try:
            result = learn_from_graph(kg, scope=scope, since=_time(since, "--since"),
                                      until=_time(until, "--until"),
                                      dry_run=dry_run).to_json()
        except ValueError as exc:
            raise AutoCNCError(str(exc)) from exc
        finally:
            kg.close()
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1, default=str) + "\n")
        return
    _print(result)


def _time(text: str | None, what: str) -> datetime | None:
    return utc(text, what=what) if text is not None else None


def _print(result: dict[str, Any]) -> None:
    console.print(f"{result['events']:,} events of {result['eventTypes']} types on "
                  f"{result['entities']:,} entities ({result['links']:,} links): "
                  f"{result['direct']} direct and {result['indirect']} indirect edges in "
                  f"{result['seconds']:.1f} s" + ("" if result["written"] else " (dry run)"))
    table = Table("cause", "effect", "kind", "confidence", "support", "lag s", "via")
    for e in result["edges"][:40]:
        table.add_row(_short(e["cause"]), _short(e["effect"]), e["kind"],
                      f"{e['confidence']:.3f}", str(e["support"]), f"{e['lag_seconds']:.0f}",
                      e["via"])
    console.print(table)


def _short(iri: str) -> str:
    return iri.rsplit("/", 1)[-1]

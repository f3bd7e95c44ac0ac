"""``autocnc causal``: learn causal knowledge between event types from the graph's history.

Through the running server (``POST /v1/causal/learn``) when it holds the data directory;
otherwise the CLI opens the stores itself and shows its progress on stderr.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from api.output import JsonFlag, Output, chosen, emit_doc, emit_rows, stdout
from api.output import stderr as errors
from kg.errors import AutoCNCError
from kg.facts import utc


def causal(
    scope: Annotated[str, typer.Option(help="the scope whose events are learned from (events "
                                            "minted in it or below it) and where the edges "
                                            "are kept (a later run replaces them)")],
    since: Annotated[str | None, typer.Option(help="first event time (ISO 8601 with zone)")
                     ] = None,
    until: Annotated[str | None, typer.Option(help="end of the range, exclusive")] = None,
    all_scopes: Annotated[bool, typer.Option(help="learn from the events of every scope")
                          ] = False,
    lag_min: Annotated[str | None, typer.Option(help="shortest typical lag, with unit "
                                                     "(default 3s)")] = None,
    lag_max: Annotated[str | None, typer.Option(help="longest typical lag, with unit "
                                                     "(default 50m)")] = None,
    kernels: Annotated[int | None, typer.Option(help="kernels spread over the lag range "
                                                     "(default 4)")] = None,
    min_lag: Annotated[str | None, typer.Option(help="a cause precedes its effect by more "
                                                     "than this, with unit (default 0)")
                       ] = None,
    penalty: Annotated[float | None, typer.Option(help="multiplies the BIC penalty "
                                                       "(default 1)")] = None,
    min_share: Annotated[float | None, typer.Option(help="share of an effect type's events "
                                                         "an edge must explain, 0..1 "
                                                         "(default 0)")] = None,
    edge_kinds: Annotated[str | None, typer.Option(help="comma-separated: direct, leads-to "
                                                        "(default direct)")] = None,
    prior: Annotated[Path | None, typer.Option(help="known causal knowledge: CSV "
                                                    "cause,effect,kind (required, "
                                                    "forbidden, oriented)")] = None,
    prior_from_graph: Annotated[bool, typer.Option(help="also use the causes links asserted "
                                                        "in the graph")] = True,
    dry_run: Annotated[bool, typer.Option(help="learn and print, store nothing")] = False,
    output: Output = None,
    as_json: JsonFlag = False,
) -> None:
    """Learn which event types cause which, from the graph's history of SCOPE.

    A topological Hawkes process over the alerts, alarms, anomalies and log events of
    SCOPE, along its topology (docs/causal.md); the edges are stored as CausalEdge
    knowledge in SCOPE, where RCA's causal signal reads them.

    -o csv prints one row per learned edge; -o json / yaml the whole outcome."""
    fmt = chosen(output, json_flag=as_json)
    from api.cli_context import http, open_graph, server, settings

    kinds = [k.strip() for k in edge_kinds.split(",")] if edge_kinds else None
    rows = _prior_rows(prior)
    body: dict[str, Any] = {
        "scope": scope, "since": since, "until": until, "allScopes": all_scopes,
        "lagMin": lag_min, "lagMax": lag_max, "kernels": kernels, "minLag": min_lag,
        "penalty": penalty, "minShare": min_share, "edgeKinds": kinds,
        "prior": rows, "priorFromGraph": prior_from_graph, "dryRun": dry_run}
    s = settings()
    if (info := server(s)) is not None:
        errors.print(f"learning on the server at {info['url']} (its log shows the progress)")
        result = http(info, "POST", "/v1/causal/learn",
                      json={k: v for k, v in body.items() if v is not None}).json()
    else:
        result = _learn_here(open_graph, body, since, until)
    if fmt == "csv":
        emit_rows(fmt, EDGE_COLUMNS, [[e[c] for c in EDGE_COLUMNS] for e in result["edges"]])
        return
    emit_doc(fmt, result, human=_print)


EDGE_COLUMNS = ["cause", "effect", "kind", "confidence", "share", "support", "lag_seconds",
                "via", "prior"]


def _learn_here(open_graph: Any, body: dict[str, Any], since: str | None,
                until: str | None) -> dict[str, Any]:
    from reasoning.causal.prior import CausalPrior
    from reasoning.causal.run import PeriodicProgress, config_from, learn_from_graph

    try:
        config = config_from(lag_min=body["lagMin"], lag_max=body["lagMax"],
                             kernels=body["kernels"], min_lag=body["minLag"],
                             penalty=body["penalty"], min_share=body["minShare"],
                             edge_kinds=body["edgeKinds"])
    except ValueError as exc:
        raise AutoCNCError(str(exc)) from exc
    given = CausalPrior.from_rows(
        [(r["cause"], r["effect"], r["kind"]) for r in body["prior"] or []], "--prior")
    kg = open_graph(writer=not body["dryRun"])
    try:
        return learn_from_graph(
            kg, scope=body["scope"], since=_time(since, "--since"),
            until=_time(until, "--until"), config=config, prior=given,
            prior_from_kg=body["priorFromGraph"], all_scopes=body["allScopes"],
            dry_run=body["dryRun"], progress=PeriodicProgress(errors.print)).to_json()
    except ValueError as exc:
        raise AutoCNCError(str(exc)) from exc
    finally:
        kg.close()


def _prior_rows(path: Path | None) -> list[dict[str, str]] | None:
    if path is None:
        return None
    from reasoning.causal.prior import read_prior_csv

    prior = read_prior_csv(path)  # CausalInputError names the file and line
    return [{"cause": a, "effect": b, "kind": k} for a, b, k in prior.to_rows()]


def _time(text: str | None, what: str) -> datetime | None:
    return utc(text, what=what) if text is not None else None


def _print(result: Any) -> None:
    stdout.print(f"{result['events']:,} events of {result['eventTypes']} types on "
                  f"{result['entities']:,} entities ({result['links']:,} links) in scope "
                  f"{result['scope']}: {result['direct']} direct and {result['indirect']} "
                  f"indirect edges in {result['seconds']:.1f} s"
                  + ("" if result["written"] else " (dry run)"))
    if result.get("unresolvedEvents"):
        devices = ", ".join(f"{d} ({n})" for d, n in result["unresolvedDevices"].items())
        errors.print(f"[yellow]{result['unresolvedEvents']:,} events left out: on devices the "
                     f"graph does not know: {devices}[/yellow]")
    edges = result["edges"]
    emit_rows("table", ["cause", "effect", "kind", "confidence", "share", "support",
                        "lag s", "via", "prior"],
              [[_short(e["cause"]), _short(e["effect"]), e["kind"], f"{e['confidence']:.3f}",
                f"{e['share']:.3f}", e["support"], f"{e['lag_seconds']:.0f}", e["via"],
                e["prior"]] for e in edges[:40]],
              footer=f"{len(edges)} edge(s)" + (" (-o csv or -o json lists every one)"
                                                 if len(edges) > 40 else ""))


def _short(iri: str) -> str:
    return iri.rsplit("/", 1)[-1]

"""``autocnc recommend``, ``autocnc feedback``, ``autocnc policies``, ``autocnc train``.

Like every command: when ``autocnc serve`` holds the data directory the work goes to its
API (``/v1/recommendations``, ``/v1/feedback``, ``/v1/policies``, ``/v1/models/train``),
otherwise the command opens the stores itself (read-only where it only reads).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.output import JsonFlag, Output, chosen, emit_doc, emit_rows
from kg.errors import AutoCNCError

console = Console()
err = Console(stderr=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AutoCNCError(f"cannot read {path}: {exc}") from exc


def _show(result: dict[str, Any]) -> None:
    table = Table("rank", "kind", "name", "score", "strongest signals", "reasons")
    for column in table.columns:  # wrap, never cut, a name
        column.overflow = "fold"
    for r in result["recommendations"]:
        top = sorted(r["contributions"].items(), key=lambda kv: -abs(kv[1]))[:3]
        reasons = "; ".join(_reason(x) for x in r["reasons"][:3])
        table.add_row(str(r["rank"]), r["kind"], r["name"], f"{r['score']:.3f}",
                      ", ".join(f"{k} {v:+.2f}" for k, v in top), reasons)
    console.print(table)
    for note in result.get("notes", []):
        err.print(f"note: {note}")
    err.print(f"{len(result['recommendations'])} recommendation(s) in "
              f"{result['tookMs']:.1f} ms")


def _reason(r: dict[str, Any]) -> str:
    sig = r.get("signal")
    if sig == "alertDefinition":
        return f"alert {r['alert']} ({r['relation']})"
    if sig == "entityTypes":
        return f"type {r['type']}"
    if sig == "successRate":
        return f"{r['successes']} ok / {r['failures']} failed"
    if sig == "text":
        return f"text lexical {r['lexical']:.2f} semantic {r['semantic']:.2f}"
    if sig == "metrics":
        return "metrics " + ", ".join(r["shared"][:3])
    return str(sig)


def recommend(
    text: Annotated[str | None, typer.Argument(help="free text describing the problem")] = None,
    incident: Annotated[str | None, typer.Option(help="IRI of an incident")] = None,
    alert: Annotated[Path | None, typer.Option(
        help="JSON file: an Alertmanager webhook payload, one alert or a list")] = None,
    scope: Annotated[str | None, typer.Option(
        help="cluster whose topology alert labels resolve against")] = None,
    limit: Annotated[int, typer.Option(help="how many answers")] = 10,
    kind: Annotated[list[str] | None, typer.Option(
        help="runbook | policy (repeatable; default both)")] = None,
    as_json: JsonFlag = False,
    output: Output = None,
) -> None:
    """Recommend runbooks and remediation policies for an incident, an alert or a problem
    described in words, each with its score and reasons (docs/recommend.md)."""
    from api.cli_context import http, open_graph, server, settings

    fmt = chosen(output, json_flag=as_json)

    given = [x for x in (text, incident, alert) if x is not None]
    if len(given) != 1:
        raise AutoCNCError("give exactly one of TEXT, --incident, --alert")
    body: dict[str, Any] = {"limit": limit, "kinds": kind or ["runbook", "policy"],
                            "scope": scope}
    if incident:
        body["incident"] = incident
    elif alert:
        body["alert"] = _read_json(alert)
    else:
        body["text"] = text
    s = settings()
    if (info := server(s)) is not None:
        result = http(info, "POST", "/v1/recommendations", json=body).json()
    else:
        from reasoning.recommend import Recommender, from_alerts, from_incident, from_text

        kg = open_graph(writer=False)
        try:
            if incident:
                query = from_incident(kg, incident)
            elif alert:
                query = from_alerts(body["alert"], kg, scope, lookup="store")
            else:
                query = from_text(str(text))
            result = Recommender(kg).recommend(query, limit=limit,
                                               kinds=body["kinds"]).to_json()
        finally:
            kg.close()
    if fmt == "csv":
        emit_rows(fmt, ["rank", "kind", "name", "iri", "score"],
                  [[r["rank"], r["kind"], r["name"], r["iri"], r["score"]]
                   for r in result["recommendations"]])
    else:
        emit_doc(fmt, result, human=_show)


def feedback(
    incident: Annotated[str | None, typer.Option(help="IRI of the incident")] = None,
    root_cause: Annotated[str | None, typer.Option(
        help="IRI of the confirmed root-cause entity")] = None,
    rejected: Annotated[bool, typer.Option(
        help="the root cause is rejected, not confirmed")] = False,
    recommendation: Annotated[str | None, typer.Option(
        help="IRI of the runbook or policy that was applied")] = None,
    succeeded: Annotated[bool | None, typer.Option(
        "--succeeded/--failed", help="outcome of the applied recommendation")] = None,
    agent: Annotated[str, typer.Option(help="who gives the feedback")] = "operator",
    comment: Annotated[str | None, typer.Option(help="free text")] = None,
    context: Annotated[list[str] | None, typer.Option(
        help="alert name of the problem (repeatable; default: the incident's)")] = None,
    scope: Annotated[str, typer.Option(help="scope of the feedback facts")] = "default",
    output: Output = None,
) -> None:
    """Record a confirmed root cause and/or the outcome of an applied recommendation; the
    ranking learns from it at once."""
    from api.cli_context import http, open_graph, server, settings

    fmt = chosen(output)

    body = {"incident": incident, "rootCause": root_cause, "accepted": not rejected,
            "recommendation": recommendation, "succeeded": succeeded, "agent": agent,
            "comment": comment, "context": context or [], "scope": scope}
    s = settings()
    if (info := server(s)) is not None:
        emit_doc(fmt, http(info, "POST", "/v1/feedback", json=body).json(),
                 human=console.print)
        return
    from reasoning.recommend import FeedbackInput, Recommender

    items = []
    if root_cause:
        items.append(FeedbackInput("rootCause", root_cause, not rejected, incident, agent,
                                   comment, tuple(context or ()), scope))
    if recommendation:
        if succeeded is None:
            raise AutoCNCError("--succeeded or --failed: say how the recommendation went")
        items.append(FeedbackInput("recommendation", recommendation, succeeded, incident,
                                   agent, comment, tuple(context or ()), scope))
    if not items:
        raise AutoCNCError("give --root-cause and/or --recommendation")
    kg = open_graph(writer=True)
    try:
        rec = Recommender(kg, embed=False)
        stored = [rec.feedback(fb).iri for fb in items]
    finally:
        kg.close()
    emit_doc(fmt, {"stored": stored}, human=_print_stored)


def _print_stored(doc: Any) -> None:
    for iri in doc["stored"]:
        console.print(f"stored {iri}")


def policies(
    paths: Annotated[list[str] | None, typer.Argument(
        help="policy files or folders (default: the examples in ontology/policies)")] = None,
    scope: Annotated[str, typer.Option(help="scope of the policies")] = "default",
    runbooks_scope: Annotated[str | None, typer.Option(
        help="scope of the runbooks they follow (default: --scope)")] = None,
    alerts_scope: Annotated[str | None, typer.Option(
        help="scope of the alert definitions they apply to (default: any)")] = None,
    as_json: JsonFlag = False,
    output: Output = None,
) -> None:
    """Load remediation policies (YAML, docs/recommend.md) as the complete policy set of
    the scope; invalid fields are listed by JSON pointer and nothing is written."""
    from api.cli_context import http, open_graph, server, settings
    from reasoning.recommend.policies import (
        POLICY_DIR,
        PolicyScopes,
        apply_policies,
        read_policies,
    )

    fmt = chosen(output, json_flag=as_json)
    parsed = read_policies(paths or [POLICY_DIR])
    s = settings()
    if (info := server(s)) is not None:
        reports = []
        for name, _ in parsed:
            params = {k: v for k, v in (("scope", scope), ("runbooks_scope", runbooks_scope),
                                        ("alerts_scope", alerts_scope), ("name", name))
                      if v is not None}
            reports.append(http(info, "POST", "/v1/policies", params=params,
                                content=Path(name).read_bytes(),
                                headers={"Content-Type": "application/yaml"}).json())
        report: Any = reports
    else:
        kg = open_graph(writer=True)
        try:
            report = apply_policies(kg, parsed, PolicyScopes(scope, runbooks_scope,
                                                             alerts_scope)).to_json()
        finally:
            kg.close()
    emit_doc(fmt, report, human=console.print)


def train(
    model: Annotated[list[str] | None, typer.Option(
        help="rotate | nodepiece | gnn (repeatable; default all)")] = None,
    refresh: Annotated[bool, typer.Option(
        help="continue the KGE models from their current version (incremental)")] = False,
    epochs: Annotated[int | None, typer.Option(help="training epochs")] = None,
    dim: Annotated[int | None, typer.Option(help="embedding dimensions")] = None,
    as_json: JsonFlag = False,
    output: Output = None,
) -> None:
    """Train the knowledge-graph embeddings (RotatE; InductiveNodePiece, which embeds new
    entities without retraining) and the root-cause GNN (on confirmed root causes); each
    is saved as a new version with its training metadata in <data dir>/models."""
    from api.cli_context import RichProgress, http, open_graph, server, settings

    fmt = chosen(output, json_flag=as_json)
    models = model or ["rotate", "nodepiece", "gnn"]
    s = settings()
    if (info := server(s)) is not None:
        result = http(info, "POST", "/v1/models/train",
                      json={"models": models, "refresh": refresh, "epochs": epochs}).json()
        summaries = result["models"]
    else:
        from reasoning.embeddings.train import train_models

        kg = open_graph(writer=False)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                          transient=True, disable=fmt != "table") as bar:
                try:
                    summaries = train_models(kg, models, refresh=refresh, epochs=epochs,
                                             dim=dim, progress=RichProgress(bar))
                except ValueError as exc:
                    raise AutoCNCError(str(exc)) from exc
        finally:
            kg.close()
    if fmt != "table":
        emit_doc(fmt, summaries)
        return
    for summary in summaries:
        if "skipped" in summary:
            err.print(f"[yellow]{summary['model']}: skipped[/yellow] — {summary['skipped']}")
        else:
            console.print(f"{summary['model']} {summary['version']}: " + ", ".join(
                f"{k} {v}" for k, v in summary.items() if k not in ("model", "version")))
